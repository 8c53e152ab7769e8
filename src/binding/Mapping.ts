/**
 * Workload Resource Mapping (the Service Binding spec's
 * ClusterWorkloadResourceMapping) as pure functions of a workload object:
 * which mapping entry applies, its JSONPath expressions parsed, the
 * workload's pieces gathered into a pod template for Projection.ts, and the
 * projected (or unprojected) template written back to where the mapping says
 * those pieces live. No I/O: the controller reads the mapping and the
 * workload and sends the difference as a JSON merge patch.
 *
 * - The annotations, volumes, and each fragment's name, env and volumeMounts
 *   are Fixed JSONPaths: fields only (`.a.b`, `['a']`). Container `path`s may
 *   also hold `[*]` (each element, or each value) and `[N]`.
 * - A missing location is created when something is projected into it, and
 *   left absent when nothing is.
 * - The resolved mapping a workload was bound with is kept in its annotation
 *   `mapping.servicebinding.io/<volume>`: unbinding uses that one, and a
 *   changed mapping first unbinds with it, then binds with the new one, as
 *   the spec asks.
 */
import type { ClusterWorkloadResourceMapping } from "../api/WorkloadResourceMapping.ts"
import {
  type Binding,
  type BoundSecret,
  type Container,
  type PodTemplate,
  project,
  type Refusal,
  refuseTemplate,
  unproject,
  volumeName
} from "./Projection.ts"

/** A step of a container path: a field, an index, or null for `[*]`. */
export type Step = string | number | null

export interface ContainerMapping {
  readonly path: ReadonlyArray<Step>
  readonly name?: ReadonlyArray<string> | undefined
  readonly env: ReadonlyArray<string>
  readonly volumeMounts: ReadonlyArray<string>
}

/** A mapping entry with its expressions parsed and its defaults filled in. */
export interface ResolvedMapping {
  readonly annotations: ReadonlyArray<string>
  readonly containers: ReadonlyArray<ContainerMapping>
  readonly volumes: ReadonlyArray<string>
}

const podSpecContainers: ReadonlyArray<ContainerMapping> = ["containers", "initContainers"].map((list) => ({
  path: ["spec", "template", "spec", list, null],
  name: ["name"],
  env: ["env"],
  volumeMounts: ["volumeMounts"]
}))

/** The spec's default: the mapping of a PodSpec-able resource (Deployment and the like). */
export const PodSpecable: ResolvedMapping = {
  annotations: ["spec", "template", "metadata", "annotations"],
  containers: podSpecContainers,
  volumes: ["spec", "template", "spec", "volumes"]
}

/** A JSONPath parsed into steps, or why it could not be. */
export type Parsed<T> = { readonly steps: ReadonlyArray<T> } | { readonly error: string }

/**
 * Parses a JSONPath of fields (`.a`, `['a']`, `["a"]`), after an optional `$`;
 * with `wildcards`, `[*]`, `.*` and `[N]` too. At least one step.
 */
export const parsePath = (expression: string, wildcards: boolean): Parsed<Step> => {
  const steps: Array<Step> = []
  let i = expression.startsWith("$") ? 1 : 0
  const fail = (why: string) => ({ error: `${JSON.stringify(expression)} ${why}` })
  while (i < expression.length) {
    const c = expression[i]
    if (c === ".") {
      const m = /^[^.[\]'"\s]+/.exec(expression.slice(i + 1))
      if (m === null) return fail(`has no field name after the dot at ${i}`)
      if (m[0] === "*") {
        if (!wildcards) return fail("uses a wildcard, which a Fixed JSONPath may not")
        steps.push(null)
      } else if (m[0] === "..") return fail("uses recursive descent")
      else steps.push(m[0])
      i += 1 + m[0].length
    } else if (c === "[") {
      const rest = expression.slice(i)
      const quoted = /^\[\s*(?:'([^']*)'|"([^"]*)")\s*\]/.exec(rest)
      const star = /^\[\s*\*\s*\]/.exec(rest)
      const index = /^\[\s*(\d+)\s*\]/.exec(rest)
      if (quoted !== null) {
        const name = quoted[1] ?? quoted[2] ?? ""
        if (name === "") return fail(`has an empty field name at ${i}`)
        steps.push(name)
        i += quoted[0].length
      } else if (star !== null || index !== null) {
        if (!wildcards) return fail(`uses ${(star ?? index)![0]}, which a Fixed JSONPath (fields only) may not`)
        steps.push(star !== null ? null : Number(index![1]))
        i += (star ?? index)![0].length
      } else return fail(`has an operator at ${i} that is not supported (fields, [*] and [N] are)`)
    } else return fail(`is not a JSONPath of fields: ${JSON.stringify(c)} at ${i} (write .field or ['field'])`)
  }
  if (steps.length === 0) return fail("names no field")
  return { steps }
}

const fixed = (expression: string | undefined, fallback: ReadonlyArray<string>, where: string): ReadonlyArray<string> | string => {
  if (expression === undefined) return fallback
  const parsed = parsePath(expression, false)
  return "error" in parsed ? `${where}: ${parsed.error}` : (parsed.steps as ReadonlyArray<string>)
}

/**
 * The entry of `mapping` for `version` (exact, else `*`) with its paths parsed
 * and defaults filled in; the PodSpec-able default with no mapping or no
 * matching entry; or what is wrong with the entry (a message naming the field).
 */
export const resolveMapping = (
  mapping: ClusterWorkloadResourceMapping | undefined,
  version: string
): ResolvedMapping | { readonly error: string } => {
  if (mapping === undefined) return PodSpecable
  const versions = mapping.spec.versions
  let at = versions.findIndex((v) => v.version === version)
  if (at === -1) at = versions.findIndex((v) => v.version === "*")
  const entry = versions[at]
  if (entry === undefined) return PodSpecable
  const field = `ClusterWorkloadResourceMapping ${mapping.metadata.name} spec.versions[${at}]`
  const errors: Array<string> = []
  const take = <T>(value: T | string): T => {
    if (typeof value === "string") errors.push(value)
    return value as T
  }
  const annotations = take(fixed(entry.annotations, PodSpecable.annotations, `${field}.annotations`))
  const volumes = take(fixed(entry.volumes, PodSpecable.volumes, `${field}.volumes`))
  const containers = entry.containers === undefined
    ? podSpecContainers
    : entry.containers.map((c, j): ContainerMapping => {
      const where = `${field}.containers[${j}]`
      const path = parsePath(c.path, true)
      if ("error" in path) errors.push(`${where}.path: ${path.error}`)
      return {
        path: "error" in path ? [] : path.steps,
        name: c.name === undefined ? undefined : take(fixed(c.name, [], `${where}.name`)),
        env: take(fixed(c.env, ["env"], `${where}.env`)),
        volumeMounts: take(fixed(c.volumeMounts, ["volumeMounts"], `${where}.volumeMounts`))
      }
    })
  if (errors.length > 0) return { error: errors.join("; ") }
  return { annotations, containers, volumes }
}

type Json = Record<string, unknown>
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v)

const get = (value: unknown, path: ReadonlyArray<string | number>): unknown =>
  path.reduce<unknown>((v, key) => (typeof v === "object" && v !== null ? (v as Record<string | number, unknown>)[key] : undefined), value)

/** The concrete locations (fields and indexes) a container path matches in `value`. */
export const matches = (value: unknown, path: ReadonlyArray<Step>): ReadonlyArray<ReadonlyArray<string | number>> => {
  const [first, ...rest] = path
  if (path.length === 0) return isObject(value) ? [[]] : []
  if (first === null) {
    const keys: ReadonlyArray<string | number> = Array.isArray(value) ? value.map((_, i) => i) : isObject(value) ? Object.keys(value) : []
    return keys.flatMap((k) => matches((value as Record<string | number, unknown>)[k], rest).map((p) => [k, ...p]))
  }
  const next = get(value, [first!])
  return next === undefined ? [] : matches(next, rest).map((p) => [first!, ...p])
}

/** A deep copy of JSON data. */
const copy = <T>(value: T): T => structuredClone(value)

const isEmpty = (v: unknown) => v === undefined || (Array.isArray(v) && v.length === 0) || (isObject(v) && Object.keys(v).length === 0)

/**
 * Sets `value` at `path` in `target` (mutated), creating the objects on the
 * way; an empty value leaves the location as it was when it was absent or
 * empty, and removes it otherwise (with the objects around it it leaves empty).
 */
const put = (target: Json, path: ReadonlyArray<string | number>, value: unknown, before: unknown) => {
  if (path.length === 0) return
  // Empty: absent if it was (or held only what is now gone), as it was if it was empty.
  if (isEmpty(value)) value = isEmpty(before) ? before : undefined
  const nodes: Array<Record<string | number, unknown>> = [target]
  for (const key of path.slice(0, -1)) {
    const node = nodes[nodes.length - 1]!
    const next = node[key]
    if (typeof next !== "object" || next === null) {
      if (value === undefined) return
      node[key] = {}
    }
    nodes.push(node[key] as Record<string | number, unknown>)
  }
  const last = path[path.length - 1]!
  if (value !== undefined) {
    nodes[nodes.length - 1]![last] = value
    return
  }
  delete nodes[nodes.length - 1]![last]
  // The objects a projection created on the way (now empty) go with it.
  for (let i = nodes.length - 1; i > 0 && isObject(nodes[i]) && Object.keys(nodes[i]!).length === 0; i--) delete nodes[i - 1]![path[i - 1]!]
}

/** One container-like fragment of the workload: where it is, and its name in the gathered template. */
interface Fragment {
  readonly at: ReadonlyArray<string | number>
  readonly mapping: ContainerMapping
  readonly name: string
  /** Whether the name came from the workload (so spec.workload.containers filters it). */
  readonly named: boolean
}

/** The workload's pieces as a pod template (containers and init containers alike in spec.containers), and where each came from. */
export const gather = (
  workload: unknown,
  mapping: ResolvedMapping
): { readonly template: PodTemplate; readonly fragments: ReadonlyArray<Fragment> } => {
  const fragments: Array<Fragment> = []
  mapping.containers.forEach((m, i) => {
    for (const at of matches(workload, m.path)) {
      const raw = m.name === undefined ? undefined : get(get(workload, at), m.name)
      const named = typeof raw === "string" && raw !== ""
      fragments.push({ at, mapping: m, name: named ? raw : `#${i}/${at.join("/")}`, named })
    }
  })
  const containers = fragments.map((f): Container => {
    const fragment = get(workload, f.at)
    const env = get(fragment, f.mapping.env)
    const volumeMounts = get(fragment, f.mapping.volumeMounts)
    return {
      name: f.name,
      ...(Array.isArray(env) ? { env } : {}),
      ...(Array.isArray(volumeMounts) ? { volumeMounts } : {})
    } as Container
  })
  const annotations = get(workload, mapping.annotations)
  const volumes = get(workload, mapping.volumes)
  return {
    template: {
      metadata: isObject(annotations) ? { annotations: annotations as Record<string, string> } : {},
      spec: { containers, ...(Array.isArray(volumes) ? { volumes } : {}) }
    },
    fragments
  }
}

/** The workload with the template's annotations, volumes, and each fragment's env and mounts written where the mapping says. */
const scatter = <W>(workload: W, mapping: ResolvedMapping, fragments: ReadonlyArray<Fragment>, template: PodTemplate): W => {
  const result = copy(workload) as Json
  put(result, mapping.annotations, template.metadata?.annotations, get(workload, mapping.annotations))
  put(result, mapping.volumes, template.spec?.volumes, get(workload, mapping.volumes))
  fragments.forEach((f, i) => {
    const container = template.spec?.containers?.[i]
    for (const [path, value] of [[f.mapping.env, container?.env], [f.mapping.volumeMounts, container?.volumeMounts]] as const) {
      put(result, [...f.at, ...path], value, get(workload, [...f.at, ...path]))
    }
  })
  return result as W
}

/** Unnamed fragments are always bound: they join the binding's container filter under their gathered names. */
const withUnnamed = (binding: Binding, fragments: ReadonlyArray<Fragment>): Binding =>
  binding.containers === undefined
    ? binding
    : { ...binding, containers: [...binding.containers, ...fragments.filter((f) => !f.named).map((f) => f.name)] }

/** The workload with this binding projected through the mapping. */
export const projectMapped = <W>(workload: W, mapping: ResolvedMapping, binding: Binding, secret: BoundSecret): W => {
  const { template, fragments } = gather(workload, mapping)
  return scatter(workload, mapping, fragments, project(template, withUnnamed(binding, fragments), secret))
}

/** The workload without this binding's projection, found through the mapping. */
export const unprojectMapped = <W>(workload: W, mapping: ResolvedMapping, binding: Binding): W => {
  const { template, fragments } = gather(workload, mapping)
  return scatter(workload, mapping, fragments, unproject(template, binding))
}

/** The workload annotation that keeps the mapping a binding was projected with. */
export const mappingAnnotation = (bindingName: string): string => `mapping.servicebinding.io/${volumeName(bindingName)}`

const annotationsOf = (workload: unknown): Readonly<Record<string, string>> => {
  const a = get(workload, ["metadata", "annotations"])
  return isObject(a) ? (a as Record<string, string>) : {}
}

/** The mapping this binding was projected with into the workload, if it was. */
export const boundWith = (workload: unknown, bindingName: string): ResolvedMapping | undefined => {
  const text = annotationsOf(workload)[mappingAnnotation(bindingName)]
  if (text === undefined) return undefined
  try {
    return JSON.parse(text) as ResolvedMapping
  } catch {
    return undefined
  }
}

const withMarker = <W>(workload: W, bindingName: string, mapping: ResolvedMapping | undefined): W => {
  const result = copy(workload) as Json
  const { [mappingAnnotation(bindingName)]: _old, ...others } = annotationsOf(workload)
  const annotations = mapping === undefined ? others : { ...others, [mappingAnnotation(bindingName)]: JSON.stringify(mapping) }
  put(result, ["metadata", "annotations"], Object.keys(annotations).length === 0 ? undefined : annotations, undefined)
  return result as W
}

/**
 * The workload bound through `mapping`: what the binding projected before
 * (with the mapping it used then) removed first, then projected anew, and the
 * mapping remembered for the unbind.
 */
export const bindMapped = <W>(workload: W, mapping: ResolvedMapping, binding: Binding, secret: BoundSecret): W => {
  const before = boundWith(workload, binding.name)
  const clean = before === undefined ? workload : unprojectMapped(workload, before, binding)
  return withMarker(projectMapped(clean, mapping, binding, secret), binding.name, mapping)
}

/**
 * Why the binding may not be projected into the workload through `mapping`
 * (refuseTemplate), judged once what it projected before is removed: a
 * variable still there then is someone else's.
 */
export const refuseMapped = (workload: unknown, mapping: ResolvedMapping, binding: Binding): Refusal | undefined => {
  const before = boundWith(workload, binding.name)
  const clean = before === undefined ? workload : unprojectMapped(workload, before, binding)
  const { template, fragments } = gather(clean, mapping)
  return refuseTemplate(template, withUnnamed(binding, fragments), () => false)
}

/** The workload unbound, through the mapping it was bound with (else `fallback`), its marker gone. */
export const unbindMapped = <W>(workload: W, binding: Binding, fallback: ResolvedMapping): W =>
  withMarker(unprojectMapped(workload, boundWith(workload, binding.name) ?? fallback, binding), binding.name, undefined)

/** JSON with object keys sorted: the server's copy (its own key order) and ours compare equal when their content does. */
const canonical = (value: unknown): string =>
  JSON.stringify(
    value,
    (_key, v: unknown) => isObject(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v
  )

/**
 * The JSON merge patch (RFC 7386) that turns `before` into `after`: changed
 * fields, nulls for removed ones, lists whole.
 */
export const mergePatchOf = (before: unknown, after: unknown): unknown => {
  if (!isObject(before) || !isObject(after)) return after
  const patch: Json = {}
  for (const key of Object.keys(before)) if (!(key in after)) patch[key] = null
  for (const [key, value] of Object.entries(after)) {
    if (!(key in before)) patch[key] = value
    else if (canonical(before[key]) !== canonical(value)) patch[key] = mergePatchOf(before[key], value)
  }
  return patch
}
