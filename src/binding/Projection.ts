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
 *
 * What the spec requires and the projection cannot give is refused before
 * anything is written (`refuseSecret`, `refuseTemplate`): a binding without
 * a `type` entry, an `env` key the Secret lacks, a root set by `valueFrom`
 * (its value cannot be read to place the mount), and an env var of the
 * same name that someone else set (taking it over would lose it on unbind).
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
export const overrides = (binding: Binding) => {
  const keys = annotationKeys(binding.name)
  const result: Array<{ entry: "type" | "provider"; value: string; annotation: string }> = []
  if (binding.type !== undefined) result.push({ entry: "type", value: binding.type, annotation: keys.type })
  if (binding.provider !== undefined) result.push({ entry: "provider", value: binding.provider, annotation: keys.provider })
  return result
}

/** The binding's volume: a projected volume of the Secret, and of the overridden entries from annotations. */
export const bindingVolume = (binding: Binding, secret: BoundSecret): Volume => {
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

/** Why a binding is not projected: a condition reason and a message that says what to change. */
export interface Refusal {
  readonly reason: "MissingType" | "MissingKey" | "UnreadableRoot" | "EnvCollision"
  readonly message: string
}

const quoted = (names: ReadonlyArray<string>) => names.map((n) => `"${n}"`).join(", ")

/**
 * Whether the Secret can make this binding, as the spec requires: a `type`
 * entry (the Secret's, or `spec.type`), and every `env` key an entry of the
 * Secret (or an overridden type/provider). Undefined when it can.
 */
export const refuseSecret = (binding: Binding, secret: BoundSecret): Refusal | undefined => {
  const overridden = new Set<string>(overrides(binding).map((o) => o.entry))
  const has = (key: string) => overridden.has(key) || Object.hasOwn(secret.data, key)
  if (!overridden.has("type") && (secret.data.type ?? "") === "") {
    return {
      reason: "MissingType",
      message: `the binding Secret ${secret.name} has no type entry, which the Service Binding spec requires: ` +
        `add one to the Secret, or set spec.type on the ServiceBinding`
    }
  }
  const missing = [...new Set((binding.env ?? []).map((e) => e.key).filter((k) => !has(k)))]
  if (missing.length === 0) return undefined
  return {
    reason: "MissingKey",
    message: `spec.env refers to ${missing.length === 1 ? "key" : "keys"} ${quoted(missing)}, which the binding Secret ${secret.name} ` +
      `does not hold (it has ${Object.keys(secret.data).length === 0 ? "none" : quoted(Object.keys(secret.data).sort())}): ` +
      `fix spec.env, or add the ${missing.length === 1 ? "key" : "keys"} to the Secret`
  }
}

/**
 * Whether this binding can be projected into the template: no selected
 * container sets SERVICE_BINDING_ROOT with `valueFrom`, and none has an env
 * var of a name spec.env projects that someone else set. `owns(container,
 * variable)` says whether an existing variable is this binding's own earlier
 * projection; by default, whether `unproject` would remove it. Undefined
 * when it can.
 */
export const refuseTemplate = (
  template: PodTemplate,
  binding: Binding,
  owns: (container: string, variable: string) => boolean = ownedByUnprojection(template, binding)
): Refusal | undefined => {
  const containers = [...(template.spec?.containers ?? []), ...(template.spec?.initContainers ?? [])].filter((c) => selected(binding, c))
  for (const c of containers) {
    const root = c.env?.find((e) => e.name === RootVariable)
    if (root !== undefined && root.value === undefined && root.valueFrom !== undefined) {
      return {
        reason: "UnreadableRoot",
        message: `container ${c.name} sets ${RootVariable} with valueFrom, whose value cannot be read to place the binding's mount: ` +
          `give it a literal value, or leave it out (${DefaultRoot} is then used)`
      }
    }
  }
  const names = new Set((binding.env ?? []).map((e) => e.name))
  const taken = containers.flatMap((c) =>
    (c.env ?? []).filter((e) => names.has(e.name) && !owns(c.name, e.name)).map((e) => `${e.name} in container ${c.name}`)
  )
  if (taken.length === 0) return undefined
  return {
    reason: "EnvCollision",
    message: `spec.env would take over ${taken.join(", ")}, set by someone else, not this binding: ` +
      `rename the variable in spec.env, or remove it from the workload`
  }
}

/** Whether a variable is this binding's own projection, as `unproject` tells it: unprojected, it is gone. */
const ownedByUnprojection = (template: PodTemplate, binding: Binding) => {
  const clean = unproject(template, binding)
  const left = new Set(
    [...(clean.spec?.containers ?? []), ...(clean.spec?.initContainers ?? [])].flatMap((c) =>
      (c.env ?? []).map((e) => `${c.name}/${e.name}`)
    )
  )
  return (container: string, variable: string) => !left.has(`${container}/${variable}`)
}

/** spec.env's variables: each from its Secret entry, or from the annotation of an overridden one (type, provider). */
export const bindingEnv = (binding: Binding, secret: BoundSecret): Array<EnvVar> => {
  const overridden = overrides(binding)
  return (binding.env ?? []).map((mapping) => {
    const override = overridden.find((o) => o.entry === mapping.key)
    return {
      name: mapping.name,
      valueFrom: override === undefined ? { secretKeyRef: { name: secret.name, key: mapping.key } } : annotationRef(override.annotation)
    }
  })
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
    // Never reset a root the workload sets. One set by valueFrom cannot be read: refuseTemplate refuses it first.
    const path = root.value ?? DefaultRoot
    if (!root.set) rootAdded.push(container.name)
    // A literal root is co-owned (same value, so never reset): another binding's unbind then cannot take it away from this one.
    const env: Array<EnvVar> = [
      ...(root.set && root.value === undefined ? [] : [{ name: RootVariable, value: path }]),
      ...bindingEnv(binding, secret)
    ]
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
export const mergeByName = <T extends { readonly name: string }>(list: ReadonlyArray<T> | undefined, items: ReadonlyArray<T>): Array<T> => {
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
