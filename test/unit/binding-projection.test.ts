/**
 * The Workload Projection section of the Service Binding spec, case by case,
 * against the pure projector: mounts at $SERVICE_BINDING_ROOT/<name>, the
 * root set only where absent and never reset, the containers filter, env
 * mappings as secretKeyRef, type/provider overrides, the rollout hash, and
 * an unprojection that gives back exactly the template it was given; then
 * what the spec's MUSTs refuse before anything is written (no type entry, an
 * env key the Secret lacks, a root set by valueFrom, someone else's
 * variable of the same name).
 */
import { describe, expect, test } from "bun:test"
import {
  annotationKeys,
  type Binding,
  type BoundSecret,
  type Container,
  intent,
  type PodTemplate,
  project,
  type Refusal,
  refuseSecret,
  refuseTemplate,
  secretHash,
  unproject,
  volumeName
} from "../../src/binding/Projection.ts"

const b64 = (s: string) => Buffer.from(s).toString("base64")
const secret: BoundSecret = {
  name: "db-config",
  data: { type: b64("postgresql"), provider: b64("halkyon"), uri: b64("postgresql://u:p@db:5432/app"), password: b64("p") }
}
const binding: Binding = { name: "db", directory: "db" }
const container = (name: string, extra: Partial<Container> = {}): Container => ({ name, image: `${name}:1`, ...extra })
const template = (containers: ReadonlyArray<Container>, initContainers?: ReadonlyArray<Container>): PodTemplate => ({
  metadata: { labels: { app: "web" } },
  spec: { containers, ...(initContainers === undefined ? {} : { initContainers }), volumes: [{ name: "cache", emptyDir: {} }] }
})
const web = template([container("app", { env: [{ name: "LOG", value: "debug" }] }), container("sidecar")], [container("migrate")])
const containerOf = (t: PodTemplate, name: string) =>
  [...(t.spec?.containers ?? []), ...(t.spec?.initContainers ?? [])].find((c) => c.name === name)
const mountsOf = (t: PodTemplate, name: string) => containerOf(t, name)?.volumeMounts ?? []
const envOf = (t: PodTemplate, name: string) => containerOf(t, name)?.env ?? []
const root = (t: PodTemplate, name: string) => envOf(t, name).find((e) => e.name === "SERVICE_BINDING_ROOT")

describe("projection", () => {
  const cases: ReadonlyArray<{
    readonly name: string
    readonly template: PodTemplate
    readonly binding: Binding
    readonly check: (projected: PodTemplate) => void
  }> = [
    {
      name: "without a containers filter every container and init container is bound at /bindings/<name>, and the root is set",
      template: web,
      binding,
      check: (p) => {
        for (const c of ["app", "sidecar", "migrate"]) {
          expect(mountsOf(p, c)).toEqual([{ name: "svcb-db", mountPath: "/bindings/db", readOnly: true }])
          expect(root(p, c)).toEqual({ name: "SERVICE_BINDING_ROOT", value: "/bindings" })
        }
        expect(p.spec?.volumes).toEqual([
          { name: "cache", emptyDir: {} },
          { name: "svcb-db", projected: { sources: [{ secret: { name: "db-config" } }] } }
        ])
      }
    },
    {
      name: "spec.name names the directory; metadata.name still names the volume",
      template: web,
      binding: { name: "web-to-db", directory: "account-db" },
      check: (p) => expect(mountsOf(p, "app")).toEqual([{ name: "svcb-web-to-db", mountPath: "/bindings/account-db", readOnly: true }])
    },
    {
      name: "a containers filter binds only the containers it names; a name that matches none is ignored",
      template: web,
      binding: { ...binding, containers: ["app", "nope"] },
      check: (p) => {
        expect(mountsOf(p, "app")).toHaveLength(1)
        expect(containerOf(p, "sidecar")).toEqual(container("sidecar"))
        expect(containerOf(p, "migrate")).toEqual(container("migrate"))
      }
    },
    {
      name: "the filter selects init containers by name too",
      template: web,
      binding: { ...binding, containers: ["migrate"] },
      check: (p) => {
        expect(mountsOf(p, "migrate")).toHaveLength(1)
        expect(mountsOf(p, "app")).toEqual([])
      }
    },
    {
      name: "a root the workload sets is used and never reset",
      template: template([container("app", { env: [{ name: "SERVICE_BINDING_ROOT", value: "/etc/svc/" }] })]),
      binding,
      check: (p) => {
        expect(root(p, "app")).toEqual({ name: "SERVICE_BINDING_ROOT", value: "/etc/svc/" })
        expect(mountsOf(p, "app")[0]?.mountPath).toBe("/etc/svc/db")
        expect(p.metadata?.annotations?.[annotationKeys("db").root]).toBeUndefined()
      }
    },
    {
      name: "env mappings become secretKeyRef entries, beside the container's own",
      template: web,
      binding: { ...binding, containers: ["app"], env: [{ name: "DATABASE_URL", key: "uri" }] },
      check: (p) => {
        expect(envOf(p, "app")).toEqual([
          { name: "LOG", value: "debug" },
          { name: "SERVICE_BINDING_ROOT", value: "/bindings" },
          { name: "DATABASE_URL", valueFrom: { secretKeyRef: { name: "db-config", key: "uri" } } }
        ])
      }
    },
    {
      name: "a type override replaces the Secret's type entry in the volume and in env, from a template annotation",
      template: web,
      binding: { ...binding, type: "mysql", env: [{ name: "BOUND_TYPE", key: "type" }] },
      check: (p) => {
        const keys = annotationKeys("db")
        expect(p.metadata?.annotations?.[keys.type]).toBe("mysql")
        expect(p.spec?.volumes?.find((v) => v.name === "svcb-db")).toEqual({
          name: "svcb-db",
          projected: {
            sources: [
              { secret: { name: "db-config", items: ["password", "provider", "uri"].map((key) => ({ key, path: key })) } },
              { downwardAPI: { items: [{ path: "type", fieldRef: { fieldPath: `metadata.annotations['${keys.type}']` } }] } }
            ]
          }
        })
        expect(envOf(p, "app").find((e) => e.name === "BOUND_TYPE")).toEqual({
          name: "BOUND_TYPE",
          valueFrom: { fieldRef: { fieldPath: `metadata.annotations['${keys.type}']` } }
        })
      }
    },
    {
      name: "a provider override does the same for provider, leaving type to the Secret",
      template: web,
      binding: { ...binding, provider: "acme" },
      check: (p) => {
        const keys = annotationKeys("db")
        expect(p.metadata?.annotations?.[keys.provider]).toBe("acme")
        const volume = p.spec?.volumes?.find((v) => v.name === "svcb-db") as unknown as {
          projected: { sources: Array<Record<string, { items: Array<{ path: string }> }>> }
        }
        expect(volume.projected.sources[0]?.secret?.items.map((i) => i.path)).toEqual(["password", "type", "uri"])
        expect(volume.projected.sources[1]?.downwardAPI?.items.map((i) => i.path)).toEqual(["provider"])
      }
    },
    {
      name: "the template carries the Secret's content hash, so a new content rolls the workload",
      template: web,
      binding,
      check: (p) => expect(p.metadata?.annotations?.[annotationKeys("db").secretHash]).toBe(secretHash(secret.data))
    },
    {
      name: "a binding name past 63 characters still gives a valid volume name",
      template: web,
      binding: { name: "a".repeat(70), directory: "x" },
      check: (p) => {
        const name = volumeName("a".repeat(70))
        expect(name.length).toBeLessThanOrEqual(63)
        expect(p.spec?.volumes?.some((v) => v.name === name)).toBe(true)
      }
    }
  ]
  for (const c of cases) {
    test(c.name, () => c.check(project(c.template, c.binding, secret)))
    test(`${c.name}: unprojection gives back the template exactly`, () => {
      expect(unproject(project(c.template, c.binding, secret), c.binding)).toEqual(c.template)
    })
    test(`${c.name}: projecting twice is projecting once`, () => {
      const once = project(c.template, c.binding, secret)
      expect(project(once, c.binding, secret)).toEqual(once)
    })
  }
})

describe("projection, beyond one binding", () => {
  test("the hash ignores key order and changes with any value", () => {
    expect(secretHash({ a: "1", b: "2" })).toBe(secretHash({ b: "2", a: "1" }))
    expect(secretHash({ a: "1", b: "2" })).not.toBe(secretHash({ a: "1", b: "3" }))
  })

  test("a new Secret content changes only the hash annotation", () => {
    const before = project(web, binding, secret)
    const after = project(before, binding, { ...secret, data: { ...secret.data, password: b64("q") } })
    expect(unproject(after, binding)).toEqual(unproject(before, binding))
    expect(after.metadata?.annotations?.[annotationKeys("db").secretHash]).not.toBe(
      before.metadata?.annotations?.[annotationKeys("db").secretHash]
    )
  })

  test("two bindings share the root; unbinding one leaves the other whole, root included", () => {
    const cache: Binding = { name: "cache", directory: "cache", env: [{ name: "REDIS_URL", key: "uri" }] }
    const both = project(project(web, binding, secret), cache, { name: "cache-config", data: { uri: b64("redis://c") } })
    const onlyCache = unproject(both, binding)
    // The roots the first binding added pass to the one whose mounts still need them.
    expect(onlyCache).toEqual(project(web, cache, { name: "cache-config", data: { uri: b64("redis://c") } }))
    expect(root(onlyCache, "app")).toEqual({ name: "SERVICE_BINDING_ROOT", value: "/bindings" })
    expect(unproject(onlyCache, cache)).toEqual(web)
  })

  test("the intent holds only the binding's fields: no image, no other container's, no other volume", () => {
    const wanted = intent(web, { ...binding, containers: ["app"], env: [{ name: "DATABASE_URL", key: "uri" }] }, secret)
    expect(wanted.spec).toEqual({
      containers: [{
        name: "app",
        env: [
          { name: "SERVICE_BINDING_ROOT", value: "/bindings" },
          { name: "DATABASE_URL", valueFrom: { secretKeyRef: { name: "db-config", key: "uri" } } }
        ],
        volumeMounts: [{ name: "svcb-db", mountPath: "/bindings/db", readOnly: true }]
      }],
      volumes: [{ name: "svcb-db", projected: { sources: [{ secret: { name: "db-config" } }] } }]
    })
  })
})

describe("what the projection refuses, before anything is written", () => {
  const valueFromRoot = { name: "SERVICE_BINDING_ROOT", valueFrom: { configMapKeyRef: { name: "cfg", key: "root" } } }
  const noType: BoundSecret = { name: "plain", data: { uri: b64("x://y"), empty: "" } }
  const secretCases: ReadonlyArray<{
    readonly name: string
    readonly binding: Binding
    readonly secret: BoundSecret
    readonly refused: Refusal["reason"] | undefined
    readonly says?: ReadonlyArray<string>
  }> = [
    { name: "a Secret with a type entry", binding, secret, refused: undefined },
    {
      name: "a Secret without a type entry, and no spec.type",
      binding,
      secret: noType,
      refused: "MissingType",
      says: ["plain has no type entry", "set spec.type"]
    },
    {
      name: "a Secret with an empty type entry",
      binding,
      secret: { ...secret, data: { ...secret.data, type: "" } },
      refused: "MissingType"
    },
    {
      name: "a Secret without a type entry, given by spec.type",
      binding: { ...binding, type: "mysql" },
      secret: noType,
      refused: undefined
    },
    {
      name: "env keys the Secret lacks are named, with those it has",
      binding: { ...binding, type: "t", env: [{ name: "A", key: "uri" }, { name: "B", key: "host" }, { name: "C", key: "port" }] },
      secret: noType,
      refused: "MissingKey",
      says: ["keys \"host\", \"port\"", "it has \"empty\", \"uri\"", "fix spec.env"]
    },
    {
      name: "an env key of an empty entry is a key",
      binding: { ...binding, type: "t", env: [{ name: "E", key: "empty" }] },
      secret: noType,
      refused: undefined
    },
    {
      name: "an env key of an overridden entry needs nothing of the Secret",
      binding: { ...binding, type: "t", provider: "p", env: [{ name: "T", key: "type" }, { name: "P", key: "provider" }] },
      secret: noType,
      refused: undefined
    }
  ]
  for (const c of secretCases) {
    test(`${c.name}: ${c.refused ?? "projected"}`, () => {
      const refusal = refuseSecret(c.binding, c.secret)
      expect(refusal?.reason).toBe(c.refused)
      for (const words of c.says ?? []) expect(refusal?.message).toContain(words)
    })
  }

  const dbUrl = { name: "DATABASE_URL", key: "uri" }
  const templateCases: ReadonlyArray<{
    readonly name: string
    readonly template: PodTemplate
    readonly binding: Binding
    readonly refused: Refusal["reason"] | undefined
    readonly says?: ReadonlyArray<string>
  }> = [
    {
      name: "a root set by valueFrom in a selected container",
      template: template([container("app", { env: [valueFromRoot] })]),
      binding,
      refused: "UnreadableRoot",
      says: ["container app sets SERVICE_BINDING_ROOT with valueFrom", "give it a literal value"]
    },
    {
      name: "a root set by valueFrom in an init container",
      template: template([container("app")], [container("migrate", { env: [valueFromRoot] })]),
      binding,
      refused: "UnreadableRoot"
    },
    {
      name: "a root set by valueFrom in a container the filter leaves out",
      template: template([container("app"), container("other", { env: [valueFromRoot] })]),
      binding: { ...binding, containers: ["app"] },
      refused: undefined
    },
    {
      name: "a variable of spec.env's name that the user set",
      template: template([container("app", { env: [{ name: "DATABASE_URL", value: "postgresql://mine" }] })]),
      binding: { ...binding, env: [dbUrl] },
      refused: "EnvCollision",
      says: ["DATABASE_URL in container app, set by someone else", "rename the variable in spec.env"]
    },
    {
      name: "a variable of that name in a container the filter leaves out",
      template: template([container("app"), container("sidecar", { env: [{ name: "DATABASE_URL", value: "x" }] })]),
      binding: { ...binding, containers: ["app"], env: [dbUrl] },
      refused: undefined
    },
    {
      name: "the binding's own earlier projection",
      template: project(web, { ...binding, env: [dbUrl] }, secret),
      binding: { ...binding, env: [dbUrl] },
      refused: undefined
    },
    {
      // (A secretKeyRef looks the same whoever set it: the controller asks the server's managedFields, below.)
      name: "another binding's projection of the same variable, from its type override",
      template: project(web, { name: "other", directory: "other", type: "t", env: [{ name: "KIND", key: "type" }] }, secret),
      binding: { ...binding, env: [{ name: "KIND", key: "type" }] },
      refused: "EnvCollision"
    }
  ]
  for (const c of templateCases) {
    test(`${c.name}: ${c.refused ?? "projected"}`, () => {
      const refusal = refuseTemplate(c.template, c.binding)
      expect(refusal?.reason).toBe(c.refused)
      for (const words of c.says ?? []) expect(refusal?.message).toContain(words)
    })
  }

  test("ownership, when told (the server's managedFields), overrides what unprojection would guess", () => {
    const mine = template([
      container("app", { env: [{ name: "DATABASE_URL", valueFrom: { secretKeyRef: { name: "db-config", key: "uri" } } }] })
    ])
    const b = { ...binding, env: [dbUrl] }
    expect(refuseTemplate(mine, b)).toBeUndefined()
    expect(refuseTemplate(mine, b, () => false)?.reason).toBe("EnvCollision")
    expect(refuseTemplate(mine, b, (c, v) => c === "app" && v === "DATABASE_URL")).toBeUndefined()
  })
})
