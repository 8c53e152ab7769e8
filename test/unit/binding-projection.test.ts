/**
 * The Workload Projection section of the Service Binding spec, case by case,
 * against the pure projector: mounts at $SERVICE_BINDING_ROOT/<name>, the
 * root set only where absent and never reset, the containers filter, env
 * mappings as secretKeyRef, type/provider overrides, the rollout hash, and
 * an unprojection that gives back exactly the template it was given.
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
      name: "a root set from elsewhere (valueFrom) is left as it is; the mount goes under /bindings",
      template: template([
        container("app", { env: [{ name: "SERVICE_BINDING_ROOT", valueFrom: { configMapKeyRef: { name: "cfg", key: "root" } } }] })
      ]),
      binding,
      check: (p) => {
        expect(envOf(p, "app")).toEqual([{ name: "SERVICE_BINDING_ROOT", valueFrom: { configMapKeyRef: { name: "cfg", key: "root" } } }])
        expect(mountsOf(p, "app")[0]?.mountPath).toBe("/bindings/db")
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
