/**
 * The one shape of a Kubernetes object that every layer shares: what the API
 * client reads and writes, what a plugin returns (decoded with
 * `TypedObjectSchema` before anything else looks at it), and what the SDK lets
 * an author write. Types only, and one small Schema: no client code.
 */
import { Schema } from "effect"

export interface OwnerReference {
  readonly apiVersion: string
  readonly kind: string
  readonly name: string
  readonly uid: string
  readonly controller?: boolean
  readonly blockOwnerDeletion?: boolean
}

export interface ObjectMeta {
  readonly name: string
  readonly namespace?: string
  readonly uid?: string
  readonly generation?: number
  readonly resourceVersion?: string
  readonly labels?: Readonly<Record<string, string>>
  readonly annotations?: Readonly<Record<string, string>>
  readonly ownerReferences?: ReadonlyArray<OwnerReference>
  readonly deletionTimestamp?: string
  readonly creationTimestamp?: string
  /** Each holds the object, once marked for deletion, until its controller removes it. */
  readonly finalizers?: ReadonlyArray<string>
  /** Who set which fields: the server keeps one entry per manager and operation. */
  readonly managedFields?: ReadonlyArray<{ readonly manager?: string; readonly operation?: string; readonly subresource?: string }>
}

/** What every object has: apiVersion, kind and metadata. A plugin author's typed objects extend it. */
export interface TypedObject {
  readonly apiVersion: string
  readonly kind: string
  readonly metadata: ObjectMeta
}

/** A Kubernetes object as JSON: its typed head, and whatever else it holds. */
export interface KubeObject extends TypedObject {
  readonly [key: string]: unknown
}

/** The head of an object as a plugin returns it: kind and name at least. */
export const TypedObjectSchema = Schema.Struct({
  apiVersion: Schema.String,
  kind: Schema.String,
  metadata: Schema.Struct({ name: Schema.String, namespace: Schema.optional(Schema.String) })
})

/** A namespaced object's key, "namespace/name" (cluster-scoped: "/name"), as work queues use it. */
export const objectKey = (object: TypedObject): string => `${object.metadata.namespace ?? ""}/${object.metadata.name}`
