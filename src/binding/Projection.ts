/**
 * The Workload Projection of the Service Binding spec, as pure functions of a
 * pod template: what one ServiceBinding adds to it, and how to take exactly
 * that away again. No I/O: the controller (BindingController.ts) reads the
 * workload and the Secret, and applies `intent` with server-side apply under
 * the binding's own field manager, so the API server merges it with the
 * user's fields and removes it on unbind; `project` and `unproject` state the
 * same result on a template in memory (and are what the table test checks).
 *
 * What one binding adds:
 * - a volume `svcb-<name>`: a projected volume of the binding Secret, plus,
 *   when `type` or `provider` is overridden, that entry from a pod template
 *   annotation (downward API) in place of the Secret's;
 * - in each selected container and init container (all when `containers` is
 *   not given): a mount of it at `$SERVICE_BINDING_ROOT/<name>`, the variable
 *   itself (`/bindings`) when the container has none, and each `env` mapping
 *   as a `secretKeyRef` (an overridden type/provider as a `fieldRef`);
 * - annotations on the template: the Secret's content hash (a new hash rolls
 *   the workload), the overrides, and which containers got
 *   `SERVICE_BINDING_ROOT` from this binding (so unprojection removes only
 *   that).
 */
import { createHash } from "node:crypto"
import type { EnvMapping } from "../api/ServiceBinding.ts"

export const DefaultRoot = "/bindings"
export const RootVariable = "SERVICE_BINDING_ROOT"
const VolumePrefix = "svcb-"

export interface EnvVar {
  readonly name: string
  readonly value?: string
  readonly valueFrom?: unknown
}
export interface VolumeMount {
  readonly name: string
  readonly mountPath: string
  readonly readOnly?: boolean
}
export interface Container {
  readonly name: string
  readonly env?: ReadonlyArray<EnvVar>
  readonly volumeMounts?: ReadonlyArray<VolumeMount>
  readonly [key: string]: unknown
}
export interface Volume {
  readonly name: string
  readonly [key: string]: unknown
}
export interface PodTemplate {
  readonly metadata?: { readonly annotations?: Readonly<Record<string, string>>; readonly [key: string]: unknown }
  readonly spec?: {
    readonly containers?: ReadonlyArray<Container>
    readonly initContainers?: ReadonlyArray<Container>
    readonly volumes?: ReadonlyArray<Volume>
    readonly [key: string]: unknown
  }
}

/** What the projection needs of a ServiceBinding. */
export interface Binding {
  /** metadata.name: names the volume and annotations, unique in the namespace. */
  readonly name: string
  /** The directory under $SERVICE_BINDING_ROOT: spec.name, else metadata.name. */
  readonly directory: string
  readonly type?: string | undefined
  readonly provider?: string | undefined
  readonly env?: ReadonlyArray<EnvMapping> | undefined
  readonly containers?: ReadonlyArray<string> | undefined
}

/** What the projection needs of the binding Secret. */
export interface BoundSecret {
  readonly name: string
  /** Its data, as the API returns it (base64 values): hashed, and its keys listed when an entry is overridden. */
  readonly data: Readonly<Record<string, string>>
}

const shortHash = (text: string) => createHash("sha256").update(text).digest("hex").slice(0, 10)

/** A DNS label for the binding's volume: `svcb-<name>`, shortened with a hash past 63 characters. */
export const volumeName = (bindingName: string): string => {
  const plain = `${VolumePrefix}${bindingName.replaceAll(".", "-")}`
  return plain.length <= 63 ? plain : `${plain.slice(0, 52).replace(/-+$/, "")}-${shortHash(bindingName)}`
}

/** The template annotations of a binding; their names fit the 63 characters a key's name part allows. */
export const annotationKeys = (bindingName: string) => {
  const volume = volumeName(bindingName)
  return {
    secretHash: `secret-hash.servicebinding.io/${volume}`,
    type: `type.servicebinding.io/${volume}`,
    provider: `provider.servicebinding.io/${volume}`,
    root: `root.servicebinding.io/${volume}`
  }
}

/** The content hash of a Secret's data, independent of key order. */
export const secretHash = (data: Readonly<Record<string, string>>): string =>
  createHash("sha256").update(JSON.stringify(Object.keys(data).sort().map((k) => [k, data[k]]))).digest("hex").slice(0, 16)

const selected = (binding: Binding, container: Container) => binding.containers === undefined || binding.containers.includes(container.name)

const annotationRef = (key: string) => ({ fieldRef: { fieldPath: `metadata.annotations['${key}']` } })

/** The overridden entries (type, provider) and the annotation each is read from. */
const overrides = (binding: Binding) => {
  const keys = annotationKeys(binding.name)
  const result: Array<{ entry: "type" | "provider"; value: string; annotation: string }> = []
  if (binding.type !== undefined) result.push({ entry: "type", value: binding.type, annotation: keys.type })
  if (binding.provider !== undefined) result.push({ entry: "provider", value: binding.provider, annotation: keys.provider })
  return result
}

const bindingVolume = (binding: Binding, secret: BoundSecret): Volume => {
  const overridden = overrides(binding)
  const secretSource = overridden.length === 0
    ? { secret: { name: secret.name } }
    : {
      secret: {
        name: secret.name,
        // Listing the items is the only way to leave the overridden entries out of the Secret's part.
        items: Object.keys(secret.data).filter((k) => !overridden.some((o) => o.entry === k)).sort().map((key) => ({ key, path: key }))
      }
    }
  return {
    name: volumeName(binding.name),
    projected: {
      sources: [
        secretSource,
        ...(overridden.length === 0
          ? []
          : [{
            downwardAPI: {
              items: overridden.map((o) => ({ path: o.entry, fieldRef: { fieldPath: `metadata.annotations['${o.annotation}']` } }))
            }
          }])
      ]
    }
  }
}

/** A container's $SERVICE_BINDING_ROOT as set (a literal value), or undefined. */
const rootOf = (container: Container): { readonly set: boolean; readonly value: string | undefined } => {
  const variable = container.env?.find((e) => e.name === RootVariable)
  return { set: variable !== undefined, value: variable?.value }
}

/**
 * The fields this binding owns in the template: what server-side apply sends
 * under the binding's field manager. `template` is the workload's current
 * one; what this binding projected before does not change the answer.
 */
export const intent = (template: PodTemplate, binding: Binding, secret: BoundSecret): PodTemplate => {
  const base = unproject(template, binding)
  const keys = annotationKeys(binding.name)
  const overridden = overrides(binding)
  const rootAdded: Array<string> = []
  const containerIntent = (container: Container): Container => {
    const root = rootOf(container)
    // Never reset a root the workload sets; a root set from elsewhere (valueFrom) cannot be read: the default is used.
    const path = root.value ?? DefaultRoot
    if (!root.set) rootAdded.push(container.name)
    // A literal root is co-owned (same value, so never reset): another binding's unbind then cannot take it away from this one.
    const env: Array<EnvVar> = root.set && root.value === undefined ? [] : [{ name: RootVariable, value: path }]
    for (const mapping of binding.env ?? []) {
      const override = overridden.find((o) => o.entry === mapping.key)
      env.push({
        name: mapping.name,
        valueFrom: override === undefined ? { secretKeyRef: { name: secret.name, key: mapping.key } } : annotationRef(override.annotation)
      })
    }
    return {
      name: container.name,
      ...(env.length === 0 ? {} : { env }),
      volumeMounts: [{ name: volumeName(binding.name), mountPath: `${path.replace(/\/+$/, "")}/${binding.directory}`, readOnly: true }]
    }
  }
  const containers = (base.spec?.containers ?? []).filter((c) => selected(binding, c)).map(containerIntent)
  const initContainers = (base.spec?.initContainers ?? []).filter((c) => selected(binding, c)).map(containerIntent)
  const annotations: Record<string, string> = { [keys.secretHash]: secretHash(secret.data) }
  for (const o of overridden) annotations[o.annotation] = o.value
  if (rootAdded.length > 0) annotations[keys.root] = [...new Set(rootAdded)].join(",")
  return {
    metadata: { annotations },
    spec: {
      containers,
      ...(initContainers.length === 0 ? {} : { initContainers }),
      volumes: [bindingVolume(binding, secret)]
    }
  }
}

/** Puts `items` into `list`, replacing those of the same name in place, appending the others. */
const mergeByName = <T extends { readonly name: string }>(list: ReadonlyArray<T> | undefined, items: ReadonlyArray<T>): Array<T> => {
  const result = [...(list ?? [])]
  for (const item of items) {
    const at = result.findIndex((x) => x.name === item.name)
    if (at === -1) result.push(item)
    else result[at] = item
  }
  return result
}

const mergeContainers = (containers: ReadonlyArray<Container> | undefined, wanted: ReadonlyArray<Container> | undefined) =>
  containers?.map((c) => {
    const w = wanted?.find((x) => x.name === c.name)
    if (w === undefined) return c
    return {
      ...c,
      ...(w.env === undefined ? {} : { env: mergeByName(c.env, w.env) }),
      // Mounts are keyed by path, as the API server's merge does.
      volumeMounts: [
        ...(c.volumeMounts ?? []).filter((m) => !(w.volumeMounts ?? []).some((n) => n.mountPath === m.mountPath)),
        ...(w.volumeMounts ?? [])
      ]
    }
  })

/** The template with this binding projected: the result server-side apply of `intent` gives. */
export const project = (template: PodTemplate, binding: Binding, secret: BoundSecret): PodTemplate => {
  const base = unproject(template, binding)
  const wanted = intent(base, binding, secret)
  const spec = base.spec ?? {}
  const containers = mergeContainers(spec.containers, wanted.spec?.containers)
  const initContainers = mergeContainers(spec.initContainers, wanted.spec?.initContainers)
  return {
    ...base,
    metadata: { ...base.metadata, annotations: { ...base.metadata?.annotations, ...wanted.metadata?.annotations } },
    spec: {
      ...spec,
      ...(containers === undefined ? {} : { containers }),
      ...(initContainers === undefined ? {} : { initContainers }),
      volumes: mergeByName(spec.volumes, wanted.spec?.volumes ?? [])
    }
  }
}

/** The template without this binding: its volume, mounts, env entries, the roots it added and its annotations. Other fields are untouched. */
export const unproject = (template: PodTemplate, binding: Binding): PodTemplate => {
  const volume = volumeName(binding.name)
  const keys = annotationKeys(binding.name)
  const annotations = template.metadata?.annotations ?? {}
  const rootAddedTo = new Set((annotations[keys.root] ?? "").split(",").filter((n) => n !== ""))
  const ours = new Set((binding.env ?? []).map((e) => e.name))
  const isProjectedEnv = (e: EnvVar) => {
    if (!ours.has(e.name) || e.valueFrom === undefined || e.value !== undefined) return false
    const from = e.valueFrom as { secretKeyRef?: unknown; fieldRef?: { fieldPath?: string } }
    return from.secretKeyRef !== undefined || (from.fieldRef?.fieldPath ?? "").includes(volume)
  }
  // Roots this binding added that another binding's mount still needs: that binding takes them over.
  const handedOver = new Map<string, Array<string>>()
  const clean = (c: Container): Container => {
    const mounts = (c.volumeMounts ?? []).filter((m) => m.name !== volume)
    const heir = mounts.find((m) => m.name.startsWith(VolumePrefix))
    // The root goes only where this binding added it and no other binding's mount still needs it.
    const dropRoot = rootAddedTo.has(c.name) && heir === undefined
    if (rootAddedTo.has(c.name) && heir !== undefined) handedOver.set(heir.name, [...(handedOver.get(heir.name) ?? []), c.name])
    const env = (c.env ?? []).filter((e) => !isProjectedEnv(e) && !(dropRoot && e.name === RootVariable && e.value === DefaultRoot))
    const { env: _env, volumeMounts: _mounts, ...rest } = c
    return { ...rest, ...(env.length === 0 ? {} : { env }), ...(mounts.length === 0 ? {} : { volumeMounts: mounts }) } as Container
  }
  const spec = template.spec
  if (spec === undefined) return template
  const containers = spec.containers?.map(clean)
  const initContainers = spec.initContainers?.map(clean)
  const remaining: Record<string, string> = Object.fromEntries(
    Object.entries(annotations).filter(([k]) => !Object.values(keys).includes(k))
  )
  for (const [heir, names] of handedOver) {
    const key = `root.servicebinding.io/${heir}`
    remaining[key] = [...new Set([...(remaining[key] ?? "").split(",").filter((n) => n !== ""), ...names])].join(",")
  }
  const { annotations: _a, ...metadata } = template.metadata ?? {}
  const volumes = (spec.volumes ?? []).filter((v) => v.name !== volume)
  const { volumes: _v, ...specRest } = spec
  return {
    ...template,
    ...(template.metadata === undefined
      ? {}
      : { metadata: { ...metadata, ...(Object.keys(remaining).length === 0 ? {} : { annotations: remaining }) } }),
    spec: {
      ...specRest,
      ...(containers === undefined ? {} : { containers }),
      ...(initContainers === undefined ? {} : { initContainers }),
      ...(volumes.length === 0 ? {} : { volumes })
    }
  }
}
