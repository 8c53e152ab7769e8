/**
 * The Workload Resource Mapping of the Service Binding spec, against the pure
 * code: Fixed JSONPaths parsed (and refused), the mapping entry chosen by
 * version with the PodSpec-able defaults filled in, a binding projected
 * through a mapping into a custom workload whose pod template sits at
 * non-standard paths, and the unbind giving back exactly what was there.
 */
import { describe, expect, test } from "bun:test"
import type { ClusterWorkloadResourceMapping } from "../../src/api/WorkloadResourceMapping.ts"
import {
  bindMapped,
  boundWith,
  mappingAnnotation,
  mergePatchOf,
  parsePath,
  PodSpecable,
  projectMapped,
  refuseMapped,
  type ResolvedMapping,
  resolveMapping,
  unbindMapped,
  unprojectMapped
} from "../../src/binding/Mapping.ts"
import { annotationKeys, type Binding, type BoundSecret } from "../../src/binding/Projection.ts"

const b64 = (s: string) => Buffer.from(s).toString("base64")
const secret: BoundSecret = { name: "db-config", data: { type: b64("redis"), uri: b64("redis://cache:6379") } }
const binding: Binding = { name: "db", directory: "db" }

describe("parsePath", () => {
  const cases: ReadonlyArray<[string, boolean, ReadonlyArray<string | number | null> | "error"]> = [
    [".spec.template.spec.volumes", false, ["spec", "template", "spec", "volumes"]],
    [".spec['template'].spec[\"volumes\"]", false, ["spec", "template", "spec", "volumes"]],
    ["$.name", false, ["name"]],
    [".metadata.annotations['example.com/key']", false, ["metadata", "annotations", "example.com/key"]],
    [".spec.containers[*]", false, "error"],
    [".spec.containers[0]", false, "error"],
    [".spec.containers[*]", true, ["spec", "containers", null]],
    [".spec.containers.*", true, ["spec", "containers", null]],
    [".spec.containers[2].env", true, ["spec", "containers", 2, "env"]],
    ["..name", true, "error"],
    [".spec.containers[?(@.name=='app')]", true, "error"],
    ["spec.template", false, "error"],
    ["", false, "error"],
    ["$", false, "error"],
    [".a['']", false, "error"]
  ]
  for (const [expression, wildcards, expected] of cases) {
    test(`${JSON.stringify(expression)}${wildcards ? " (container path)" : ""}: ${expected === "error" ? "refused" : JSON.stringify(expected)}`, () => {
      const parsed = parsePath(expression, wildcards)
      if (expected === "error") expect("error" in parsed).toBe(true)
      else expect(parsed).toEqual({ steps: expected })
    })
  }
})

const mapping = (versions: ClusterWorkloadResourceMapping["spec"]["versions"]): ClusterWorkloadResourceMapping => ({
  metadata: { name: "batches.example.com" },
  spec: { versions }
})

describe("resolveMapping", () => {
  test("no mapping: the spec's PodSpec-able default", () => expect(resolveMapping(undefined, "v1")).toEqual(PodSpecable))

  test("the exact version wins over *, * serves the others, and no entry at all is the default", () => {
    const m = mapping([{ version: "*", volumes: ".spec.any" }, { version: "v2", volumes: ".spec.two" }])
    expect(resolveMapping(m, "v2")).toMatchObject({ volumes: ["spec", "two"] })
    expect(resolveMapping(m, "v1")).toMatchObject({ volumes: ["spec", "any"] })
    expect(resolveMapping(mapping([{ version: "v9" }]), "v1")).toEqual(PodSpecable)
  })

  test("what an entry leaves out is the PodSpec-able default: annotations, volumes, containers, env, volumeMounts", () => {
    expect(resolveMapping(mapping([{ version: "v1" }]), "v1")).toEqual(PodSpecable)
    expect(resolveMapping(mapping([{ version: "v1", containers: [{ path: ".spec.workers[*]" }] }]), "v1")).toEqual({
      ...PodSpecable,
      containers: [{ path: ["spec", "workers", null], name: undefined, env: ["env"], volumeMounts: ["volumeMounts"] }]
    })
  })

  test("an invalid path is refused with the field named and the reason", () => {
    const resolved = resolveMapping(
      mapping([{ version: "*", annotations: ".spec.meta[*]", containers: [{ path: ".spec.workers[?(@.x)]", name: "name" }] }]),
      "v1"
    )
    expect("error" in resolved).toBe(true)
    const error = (resolved as { error: string }).error
    expect(error).toContain("ClusterWorkloadResourceMapping batches.example.com spec.versions[0].annotations")
    expect(error).toContain("uses [*], which a Fixed JSONPath (fields only) may not")
    expect(error).toContain("spec.versions[0].containers[0].path")
    expect(error).toContain("spec.versions[0].containers[0].name")
  })
})

/** A CronJob-like custom workload: its pod template's parts at paths of its own. */
const batch = {
  apiVersion: "example.com/v1",
  kind: "Batch",
  metadata: { name: "nightly", namespace: "apps", labels: { app: "nightly" } },
  spec: {
    schedule: "0 3 * * *",
    runner: {
      podAnnotations: { team: "data" },
      workers: [
        { name: "app", image: "app:1", env: [{ name: "LOG", value: "info" }] },
        { name: "sidecar", image: "sidecar:1" }
      ],
      setup: { title: "migrate", image: "migrate:1", environment: [{ name: "MODE", value: "up" }] },
      disks: [{ name: "scratch", emptyDir: {} }]
    }
  }
}
const batchMapping = resolveMapping(
  mapping([{
    version: "*",
    annotations: ".spec.runner.podAnnotations",
    containers: [
      { path: ".spec.runner.workers[*]", name: ".name" },
      { path: ".spec.runner.setup", name: ".title", env: ".environment", volumeMounts: ".mounts" }
    ],
    volumes: ".spec.runner.disks"
  }]),
  "v1"
) as ResolvedMapping

const mount = { name: "svcb-db", mountPath: "/bindings/db", readOnly: true }
const root = { name: "SERVICE_BINDING_ROOT", value: "/bindings" }
const volume = { name: "svcb-db", projected: { sources: [{ secret: { name: "db-config" } }] } }

describe("projection through a mapping", () => {
  const cases: ReadonlyArray<{
    readonly name: string
    readonly workload: unknown
    readonly mapping: ResolvedMapping
    readonly binding: Binding
    readonly expected: unknown
  }> = [
    {
      name: "every mapped container, whatever its path and field names, gets the mount and the root; the volume joins the mapped list",
      workload: batch,
      mapping: batchMapping,
      binding,
      expected: {
        ...batch,
        spec: {
          ...batch.spec,
          runner: {
            podAnnotations: {
              team: "data",
              [annotationKeys("db").secretHash]: expect.any(String),
              [annotationKeys("db").root]: "app,sidecar,migrate"
            },
            workers: [
              { name: "app", image: "app:1", env: [{ name: "LOG", value: "info" }, root], volumeMounts: [mount] },
              { name: "sidecar", image: "sidecar:1", env: [root], volumeMounts: [mount] }
            ],
            setup: { title: "migrate", image: "migrate:1", environment: [{ name: "MODE", value: "up" }, root], mounts: [mount] },
            disks: [{ name: "scratch", emptyDir: {} }, volume]
          }
        }
      }
    },
    {
      name: "the containers filter applies to the names the mapping's name expressions resolve; env mappings become secretKeyRefs",
      workload: batch,
      mapping: batchMapping,
      binding: { ...binding, containers: ["migrate"], env: [{ name: "CACHE_URL", key: "uri" }] },
      expected: {
        ...batch,
        spec: {
          ...batch.spec,
          runner: {
            ...batch.spec.runner,
            podAnnotations: { team: "data", [annotationKeys("db").secretHash]: expect.any(String), [annotationKeys("db").root]: "migrate" },
            setup: {
              ...batch.spec.runner.setup,
              environment: [
                { name: "MODE", value: "up" },
                root,
                { name: "CACHE_URL", valueFrom: { secretKeyRef: { name: "db-config", key: "uri" } } }
              ],
              mounts: [mount]
            },
            disks: [{ name: "scratch", emptyDir: {} }, volume]
          }
        }
      }
    },
    {
      name: "a fragment without a name expression is bound even under a containers filter",
      workload: batch,
      mapping: { ...batchMapping, containers: [{ ...batchMapping.containers[0]!, name: undefined }] },
      binding: { ...binding, containers: ["nobody"] },
      expected: {
        ...batch,
        spec: {
          ...batch.spec,
          runner: {
            ...batch.spec.runner,
            podAnnotations: {
              team: "data",
              [annotationKeys("db").secretHash]: expect.any(String),
              [annotationKeys("db").root]: expect.any(String)
            },
            workers: [
              { name: "app", image: "app:1", env: [{ name: "LOG", value: "info" }, root], volumeMounts: [mount] },
              { name: "sidecar", image: "sidecar:1", env: [root], volumeMounts: [mount] }
            ],
            disks: [{ name: "scratch", emptyDir: {} }, volume]
          }
        }
      }
    },
    {
      name: "locations that do not exist are created (annotations, volumes, env, mounts)",
      workload: { apiVersion: "example.com/v1", kind: "Bare", metadata: { name: "b" }, spec: { runner: { workers: [{ name: "app" }] } } },
      mapping: batchMapping,
      binding,
      expected: {
        apiVersion: "example.com/v1",
        kind: "Bare",
        metadata: { name: "b" },
        spec: {
          runner: {
            podAnnotations: { [annotationKeys("db").secretHash]: expect.any(String), [annotationKeys("db").root]: "app" },
            workers: [{ name: "app", env: [root], volumeMounts: [mount] }],
            disks: [volume]
          }
        }
      }
    },
    {
      name: "the PodSpec-able default binds a kind without a mapping at .spec.template",
      workload: { kind: "Custom", spec: { template: { spec: { containers: [{ name: "app" }], initContainers: [{ name: "init" }] } } } },
      mapping: PodSpecable,
      binding: { ...binding, containers: ["app"] },
      expected: {
        kind: "Custom",
        spec: {
          template: {
            metadata: { annotations: { [annotationKeys("db").secretHash]: expect.any(String), [annotationKeys("db").root]: "app" } },
            spec: {
              containers: [{ name: "app", env: [root], volumeMounts: [mount] }],
              initContainers: [{ name: "init" }],
              volumes: [volume]
            }
          }
        }
      }
    }
  ]
  for (const c of cases) {
    test(c.name, () => {
      const projected = projectMapped(c.workload, c.mapping, c.binding, secret)
      expect(projected).toEqual(c.expected)
      // Projecting again changes nothing; unprojecting gives back exactly the workload.
      expect(projectMapped(projected, c.mapping, c.binding, secret)).toEqual(projected)
      expect(unprojectMapped(projected, c.mapping, c.binding)).toEqual(c.workload)
    })
  }

  test("the input is never changed", () => {
    const before = structuredClone(batch)
    projectMapped(batch, batchMapping, binding, secret)
    expect(batch).toEqual(before)
  })
})

describe("bind and unbind remember the mapping", () => {
  test("the mapping used is kept on the workload; unbind uses it even when given another", () => {
    const bound = bindMapped(batch, batchMapping, binding, secret)
    expect(boundWith(bound, "db")).toEqual(batchMapping)
    expect(bound.metadata).toMatchObject({ annotations: { [mappingAnnotation("db")]: JSON.stringify(batchMapping) } })
    expect(unbindMapped(bound, binding, PodSpecable)).toEqual(batch)
  })

  test("binding again with the same mapping changes nothing", () => {
    const bound = bindMapped(batch, batchMapping, binding, secret)
    expect(bindMapped(bound, batchMapping, binding, secret)).toEqual(bound)
    expect(mergePatchOf(bound, bindMapped(structuredClone(bound), batchMapping, binding, secret))).toEqual({})
  })

  test("a changed mapping: the projection made with the old one is removed, then made with the new one", () => {
    const moved = resolveMapping(
      mapping([{
        version: "*",
        containers: [{ path: ".spec.runner.workers[*]", name: ".name" }],
        volumes: ".spec.runner.extraDisks",
        annotations: ".spec.runner.podAnnotations"
      }]),
      "v1"
    ) as ResolvedMapping
    const first = bindMapped(batch, batchMapping, binding, secret)
    const second = bindMapped(first, moved, binding, secret)
    // Nothing left where only the old mapping reached: the setup container, the old volume list.
    expect(second.spec.runner.setup).toEqual(batch.spec.runner.setup)
    expect(second.spec.runner.disks).toEqual(batch.spec.runner.disks)
    expect((second.spec.runner as Record<string, unknown>).extraDisks).toEqual([volume])
    expect(boundWith(second, "db")).toEqual(moved)
    expect(unbindMapped(second, binding, PodSpecable)).toEqual(batch)
  })

  test("two bindings through one mapping: unbinding one leaves the other whole", () => {
    const other: Binding = { name: "cache", directory: "cache" }
    const both = bindMapped(bindMapped(batch, batchMapping, binding, secret), batchMapping, other, { ...secret, name: "cache-config" })
    const onlyCache = unbindMapped(both, binding, PodSpecable)
    expect(onlyCache).toEqual(bindMapped(batch, batchMapping, other, { ...secret, name: "cache-config" }))
    expect(unbindMapped(onlyCache, other, PodSpecable)).toEqual(batch)
  })
})

describe("mergePatchOf", () => {
  const cases: ReadonlyArray<[string, unknown, unknown, unknown]> = [
    ["no change: an empty patch", { a: 1, b: [1] }, { a: 1, b: [1] }, {}],
    ["a removed field is null", { a: 1, b: 2 }, { a: 1 }, { b: null }],
    ["nested objects are patched field by field", { s: { x: 1, y: 2 } }, { s: { x: 1, y: 3 } }, { s: { y: 3 } }],
    ["a list is sent whole", { l: [1, 2] }, { l: [1, 2, 3] }, { l: [1, 2, 3] }],
    ["a new field is sent", { a: 1 }, { a: 1, n: { deep: true } }, { n: { deep: true } }],
    ["the same content in another key order is no change", { l: [{ a: 1, b: 2 }] }, { l: [{ b: 2, a: 1 }] }, {}]
  ]
  for (const [name, before, after, patch] of cases) test(name, () => expect(mergePatchOf(before, after)).toEqual(patch))
})

describe("what a mapped workload refuses, before anything is written", () => {
  const cacheUrl = { name: "CACHE_URL", key: "uri" }
  test("a variable of spec.env's name in a mapped container, set by the user: EnvCollision naming it", () => {
    const taken = structuredClone(batch)
    taken.spec.runner.setup.environment.push({ name: "CACHE_URL", value: "redis://mine" })
    const refusal = refuseMapped(taken, batchMapping, { ...binding, env: [cacheUrl] })
    expect(refusal?.reason).toBe("EnvCollision")
    expect(refusal?.message).toContain("CACHE_URL in container migrate")
  })
  test("the binding's own earlier projection is not a collision", () => {
    const boundHere = bindMapped(batch, batchMapping, { ...binding, env: [cacheUrl] }, secret)
    expect(refuseMapped(boundHere, batchMapping, { ...binding, env: [cacheUrl] })).toBeUndefined()
  })
  test("a root set by valueFrom in a mapped container: UnreadableRoot", () => {
    const rooted = structuredClone(batch)
    rooted.spec.runner.setup.environment.push({ name: "SERVICE_BINDING_ROOT", valueFrom: { fieldRef: { fieldPath: "x" } } } as never)
    expect(refuseMapped(rooted, batchMapping, binding)?.reason).toBe("UnreadableRoot")
    expect(refuseMapped(rooted, batchMapping, { ...binding, containers: ["app"] })).toBeUndefined()
  })
})
