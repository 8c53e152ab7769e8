/**
 * ParameterReferences: a Capability parameter given by reference
 * (`valueFrom: {secretKeyRef | configMapKeyRef: {name, key}}`) resolved to an
 * ordinary `{name, value}` before the plugin sees the Capability, so the plugin
 * protocol does not change.
 *
 * - It reads the referenced object in the Capability's namespace, with the
 *   client it was given (in a cluster, the references' own ServiceAccount:
 *   the operator's role holds no Secret).
 * - It keeps an index of which Capability references which object, so that a
 *   watch event on a Secret or ConfigMap (CapabilityController watches their
 *   metadata only) enqueues exactly the Capabilities that use it.
 * - It keeps the data of referenced objects only, and only once their kind's
 *   watch has listed (before that, every resolve reads from the API server);
 *   an object no Capability references any more is dropped.
 * - `redact` removes every resolved value from a text the operator is about to
 *   write to a status, an Event or a log (a plugin's message may echo one).
 * - It registers each Capability's resolved values in Redactions, which the
 *   plugin host applies to every line a plugin writes, and drops them when
 *   the Capability no longer references them.
 *
 * It does not watch (the controller does) and never logs a value.
 */
import { Context, Effect, Layer, Queue } from "effect"
import type { Capability, Parameter } from "../api/Capability.ts"
import type { KubeApiError } from "../kube/Errors.ts"
import { type KubeApi, KubeClient } from "../kube/KubeClient.ts"
import type { KubeObject } from "../kube/KubeObject.ts"
import { Redactions, redactor } from "../plugin-host/Redactions.ts"

export type ReferencedKind = "Secret" | "ConfigMap"
export const ReferencedKinds: ReadonlyArray<ReferencedKind> = ["Secret", "ConfigMap"]

/** One parameter's reference, in the Capability's namespace. */
export interface ParameterReference {
  readonly parameter: string
  readonly kind: ReferencedKind
  readonly namespace: string
  readonly name: string
  readonly key: string
}

/** The references of a Capability's parameters, in order. */
export const referencesOf = (capability: Capability): ReadonlyArray<ParameterReference> => {
  const namespace = capability.metadata.namespace ?? ""
  return (capability.spec.parameters ?? []).flatMap((p): Array<ParameterReference> => {
    const from = p.valueFrom
    if (from === undefined) return []
    if (from.secretKeyRef !== undefined) return [{ parameter: p.name, kind: "Secret", namespace, ...from.secretKeyRef }]
    if (from.configMapKeyRef !== undefined) return [{ parameter: p.name, kind: "ConfigMap", namespace, ...from.configMapKeyRef }]
    return []
  })
}

/** How a reference is named in messages: never its value. */
export const describeReference = (r: ParameterReference) => `parameter ${r.parameter}: ${r.kind} ${r.namespace}/${r.name}, key ${r.key}`

/**
 * The Capability with each reference replaced by `{name, value: value(parameter)}`
 * (just `{name}` when that is undefined): the operator passes resolved values,
 * `halkyon plugins render` the reference itself (placeholderOf), with no
 * cluster to read and no value to leak.
 */
export const withValues = (
  raw: KubeObject,
  value: (p: Parameter) => string | undefined
): KubeObject => {
  const spec = raw.spec as { readonly parameters?: ReadonlyArray<Parameter> } | undefined
  if (spec?.parameters === undefined || !spec.parameters.some((p) => p.valueFrom !== undefined)) return raw
  const parameters = spec.parameters.map((p) => {
    if (p.valueFrom === undefined) return p
    const v = value(p)
    return v === undefined ? { name: p.name } : { name: p.name, value: v }
  })
  return { ...raw, spec: { ...spec, parameters } }
}

/** The placeholder render passes for a reference: the reference, not the value. */
export const placeholderOf = (p: Parameter): string => {
  const from = p.valueFrom
  if (from?.secretKeyRef !== undefined) return `<from Secret ${from.secretKeyRef.name}, key ${from.secretKeyRef.key}>`
  if (from?.configMapKeyRef !== undefined) return `<from ConfigMap ${from.configMapKeyRef.name}, key ${from.configMapKeyRef.key}>`
  return ""
}

/** What resolving a Capability's references gave. */
export type Resolution =
  | {
    readonly _tag: "Resolved"
    /** The Capability as the plugin sees it: references replaced by `{name, value}`. */
    readonly capability: KubeObject
    /** Removes from a text every value resolved for it, and for any other Capability (Redactions). */
    readonly redact: (text: string) => string
  }
  | { readonly _tag: "NotFound"; readonly message: string }

const objectKeyOf = (kind: string, namespace: string, name: string) => `${kind}/${namespace}/${name}`

/** The value of `key` in a Secret's or ConfigMap's data, decoded; undefined when absent. */
const valueIn = (kind: ReferencedKind, object: KubeObject, key: string): string | undefined => {
  const data = object.data as Readonly<Record<string, string>> | undefined
  const binary = object.binaryData as Readonly<Record<string, string>> | undefined
  if (kind === "Secret") {
    const encoded = data?.[key]
    return encoded === undefined ? undefined : Buffer.from(encoded, "base64").toString("utf8")
  }
  const text = data?.[key]
  if (text !== undefined) return text
  const encoded = binary?.[key]
  return encoded === undefined ? undefined : Buffer.from(encoded, "base64").toString("utf8")
}

export { Redacted } from "../plugin-host/Redactions.ts"

export class ParameterReferences extends Context.Service<ParameterReferences, {
  /**
   * Resolves the Capability's references (and remembers them, for the
   * watch): the Capability as the plugin sees it, or which reference is
   * missing. An API error other than NotFound fails (retried with backoff).
   */
  readonly resolve: (key: string, raw: KubeObject, capability: Capability) => Effect.Effect<Resolution, KubeApiError>
  /** The Capability is gone: its references are forgotten. */
  readonly forget: (key: string) => void
  /**
   * A referenced kind's watch saw `object` change (or go): its data is
   * dropped and the keys of the Capabilities that reference it returned.
   */
  readonly changed: (object: KubeObject, deleted: boolean) => ReadonlyArray<string>
  /** The kind's watch has listed: from now on the data of referenced objects is kept between reconciles. */
  readonly markSynced: (kind: ReferencedKind) => void
  /** Each kind once, when a Capability first references it: the controller starts its watch then. */
  readonly kindsInUse: Queue.Dequeue<ReferencedKind>
  /** The identity references are read and watched with. */
  readonly client: KubeApi
  /** How many objects are referenced, and how many of them have their data kept. */
  readonly size: () => { readonly referenced: number; readonly kept: number }
}>()("halkyon/reconciler/ParameterReferences") {
  /**
   * Reads with `as` when given (the references' own identity), else with the
   * operator's KubeClient; registers values in the Redactions it is given
   * (the operator's: the one its plugin host reads).
   */
  static readonly layerNoDeps = (as?: (kube: KubeApi) => KubeApi) =>
    Layer.effect(
      ParameterReferences,
      Effect.gen(function*() {
        const kube = yield* KubeClient
        return yield* make(as === undefined ? kube : as(kube), yield* Redactions)
      })
    )
  /** With Redactions of its own (no plugin host reads them): for a reconciler under test. */
  static readonly layer = (as?: (kube: KubeApi) => KubeApi) =>
    ParameterReferences.layerNoDeps(as).pipe(Layer.provideMerge(Redactions.layer))
}

export const make = Effect.fnUntraced(function*(client: KubeApi, redactions: Redactions["Service"]) {
  const kindsInUse = yield* Queue.unbounded<ReferencedKind>()
  const started = new Set<ReferencedKind>()
  const synced = new Set<ReferencedKind>()
  /** Capability key -> the object keys it references; object key -> the Capabilities referencing it. */
  const byCapability = new Map<string, ReadonlySet<string>>()
  const byObject = new Map<string, Set<string>>()
  /** The data of referenced objects (synced kinds only), with the resourceVersion read. */
  const kept = new Map<string, { readonly resourceVersion: number; readonly object: KubeObject }>()
  /** The newest resourceVersion a watch showed for each referenced object: an older read is not kept. */
  const seen = new Map<string, number>()

  const release = (objectKey: string, capabilityKey: string) => {
    const users = byObject.get(objectKey)
    if (users === undefined) return
    users.delete(capabilityKey)
    if (users.size > 0) return
    byObject.delete(objectKey)
    kept.delete(objectKey)
    seen.delete(objectKey)
  }

  const track = (key: string, references: ReadonlyArray<ParameterReference>) => {
    const now = new Set(references.map((r) => objectKeyOf(r.kind, r.namespace, r.name)))
    for (const old of byCapability.get(key) ?? []) if (!now.has(old)) release(old, key)
    if (now.size === 0) byCapability.delete(key)
    else byCapability.set(key, now)
    for (const objectKey of now) {
      let users = byObject.get(objectKey)
      if (users === undefined) byObject.set(objectKey, users = new Set())
      users.add(key)
    }
    for (const r of references) {
      if (!started.has(r.kind)) {
        started.add(r.kind)
        Queue.offerUnsafe(kindsInUse, r.kind)
      }
    }
  }

  /** The referenced object: kept, or read; undefined when it does not exist. */
  const read = (r: ParameterReference) => {
    const objectKey = objectKeyOf(r.kind, r.namespace, r.name)
    const hit = kept.get(objectKey)
    if (hit !== undefined) return Effect.succeed<KubeObject | undefined>(hit.object)
    return client.get({ apiVersion: "v1", kind: r.kind, namespace: r.namespace, name: r.name }).pipe(
      Effect.map((object): KubeObject | undefined => {
        const resourceVersion = Number(object.metadata.resourceVersion)
        const newest = seen.get(objectKey)
        // Kept only while referenced, watched, and not older than what the watch last showed.
        if (
          synced.has(r.kind) && byObject.has(objectKey) && !Number.isNaN(resourceVersion) &&
          (newest === undefined || resourceVersion >= newest)
        ) {
          // Only what a value is read from: no managedFields, annotations or labels.
          const { data, binaryData } = object
          kept.set(objectKey, {
            resourceVersion,
            object: { apiVersion: "v1", kind: r.kind, metadata: { name: r.name, namespace: r.namespace }, data, binaryData }
          })
        }
        return object
      }),
      Effect.catchIf((e) => e.notFound, () => Effect.succeed(undefined))
    )
  }

  const resolve = (key: string, raw: KubeObject, capability: Capability) =>
    Effect.gen(function*() {
      const references = referencesOf(capability)
      track(key, references)
      if (references.length === 0) {
        redactions.set(key, [])
        return { _tag: "Resolved", capability: raw, redact: redactions.redact } satisfies Resolution
      }
      const values = new Map<string, string>()
      for (const r of references) {
        const object = yield* read(r)
        if (object === undefined) {
          return {
            _tag: "NotFound",
            message: `${describeReference(r)}: the ${r.kind} does not exist; create it (the Capability is reconciled when it appears)`
          } satisfies Resolution
        }
        const value = valueIn(r.kind, object, r.key)
        if (value === undefined) {
          return {
            _tag: "NotFound",
            message: `${describeReference(r)}: the ${r.kind} has no key ${r.key}; add it (the Capability is reconciled when it changes)`
          } satisfies Resolution
        }
        values.set(r.parameter, value)
      }
      // Before the plugin sees them: whatever it logs from now on is redacted.
      redactions.set(key, [...values.values()])
      const own = redactor([...values.values()])
      return {
        _tag: "Resolved",
        capability: withValues(raw, (p) => values.get(p.name)),
        // Its own values (still redacted should the Capability be forgotten meanwhile), then every other Capability's: a
        // plugin may echo another's.
        redact: (text: string) => redactions.redact(own(text))
      } satisfies Resolution
    })

  const changed = (object: KubeObject, deleted: boolean): ReadonlyArray<string> => {
    const objectKey = objectKeyOf(object.kind, object.metadata.namespace ?? "", object.metadata.name)
    const users = byObject.get(objectKey)
    // Not referenced: nothing is recorded about it.
    if (users === undefined) return []
    const resourceVersion = Number(object.metadata.resourceVersion)
    const known = seen.get(objectKey) ?? kept.get(objectKey)?.resourceVersion
    // A relist's or a repeated event's news are no news.
    if (!deleted && !Number.isNaN(resourceVersion) && known === resourceVersion) return []
    if (!Number.isNaN(resourceVersion)) seen.set(objectKey, Math.max(seen.get(objectKey) ?? 0, resourceVersion))
    kept.delete(objectKey)
    return [...users]
  }

  const forget = (key: string) => {
    track(key, [])
    redactions.set(key, [])
  }

  return ParameterReferences.of({
    resolve,
    forget,
    changed,
    markSynced: (kind) => void synced.add(kind),
    kindsInUse,
    client,
    size: () => ({ referenced: byObject.size, kept: kept.size })
  })
})
