/**
 * What a plugin author writes: the capability logic, nothing about RPC.
 *
 * A plugin declares its category, the types and versions it serves, the
 * parameters it understands, and its dependents in the order they are applied
 * (or as a graph: `dependsOn`, `waitForReady`, `include`, `deletionPolicy`).
 * For each dependent it says how to build it from the Capability, optionally
 * how to update an existing one, and optionally how to tell it is ready.
 * `serve` (Serve.ts) turns that into a go-plugin gRPC plugin.
 */
import type { Capability } from "../api/Capability.ts"
import type { TypedObject } from "../kube/KubeObject.ts"
import { allowedValues, invalidValue, type ParameterKind, re2Problem, unknownParameter, valueAllowed } from "../api/ParameterRules.ts"
import { graphProblem } from "../protocol/DependentGraph.ts"
import * as Messages from "./DefinitionMessages.ts"

/** A Kubernetes object, as JSON: apiVersion, kind and metadata, and the fields of its kind. */
export type KubeObject = TypedObject

/**
 * Any Kubernetes object type a dependent can be declared with: ours
 * (`KubeObject`) or kubernetes-types' (`import type { Secret } from
 * "kubernetes-types/core/v1"`), whose apiVersion, kind and metadata are optional.
 */
export interface ObjectShape {
  readonly apiVersion?: string
  readonly kind?: string
  readonly metadata?: object
}

/**
 * What a dependent's `build` returns: the object, with apiVersion and kind
 * optional since `dependent()` fills them in from its declaration.
 */
export type Built<O extends ObjectShape> = Omit<O, "apiVersion" | "kind"> & Partial<Pick<O, "apiVersion" | "kind">>

/** A Capability type the plugin serves, e.g. postgres 15, 16, 17. */
export interface TypeDefinition {
  readonly type: string
  readonly versions: ReadonlyArray<string>
  /** Used when a Capability names no version. Default: the last of `versions`. */
  readonly defaultVersion?: string
}

/**
 * A parameter the plugin understands, read from `spec.parameters`. Its type
 * and bounds are enforced twice with the same rules and sentences: by the API
 * server, through the admission policy the operator derives from Describe
 * (a wrong value is refused by `kubectl apply`), and by the SDK's
 * CheckValidity (where the operator may not manage admission policies). A
 * value is always a string in a Capability; an empty one counts as not given.
 *
 * @example
 * ```ts
 * const parameters: ReadonlyArray<ParameterDefinition> = [
 *   { name: "DB_PORT", type: "integer", minimum: 1024, maximum: 65535, default: "5432" },
 *   { name: "TIER", type: "enum", values: ["dev", "prod"], default: "dev" },
 *   { name: "DB_NAME", pattern: "^[a-z][a-z0-9_]*$" },
 *   { name: "DB_PASSWORD", secret: true }
 * ]
 * ```
 */
export interface ParameterDefinition {
  readonly name: string
  readonly description?: string
  readonly required?: boolean
  /**
   * A secret parameter's value is never logged nor listed, and the API server
   * refuses it as a literal `value`: a Capability gives it with `valueFrom`.
   */
  readonly secret?: boolean
  /** Used when the Capability does not set the parameter; must itself be allowed. */
  readonly default?: string
  /** Default: "string" (any string, or one matching `pattern`). */
  readonly type?: ParameterKind
  /** The values an "enum" may take. */
  readonly values?: ReadonlyArray<string>
  /**
   * An RE2 regular expression a "string" value must match; it matches
   * anywhere unless anchored with ^ and $. Keep to the syntax RE2 and
   * JavaScript share: definePlugin refuses lookaround, backreferences, a
   * repeat count over 1000, `[]` and escapes the two read apart (`\u`, `\p`, `\A`…).
   */
  readonly pattern?: string
  /** Inclusive bounds of an "integer". */
  readonly minimum?: number
  readonly maximum?: number
}

/** The Capability as a dependent's functions see it: parameters resolved. */
export interface Context {
  readonly capability: Capability
  /** The Capability's name. */
  readonly name: string
  /** The Capability's namespace. */
  readonly namespace: string
  /** The requested version, or the type's default version. */
  readonly version: string
  /** Declared parameters with defaults applied, plus any others the Capability sets. */
  readonly parameters: Readonly<Record<string, string | undefined>>
  /**
   * This Capability's dependents as they exist now, by id (only its own
   * objects): what one a dependent depends on produced (a generated
   * password, an assigned port), in `build`, `include` and `update` (the
   * same as the build of that reconcile saw). Empty in `ready` and `validate`.
   * The operator asks for a build again once the dependents listed in
   * `dependsOn` are observed, and applies a dependent only from such a build.
   *
   * @example
   * ```ts
   * import type { Secret } from "kubernetes-types/core/v1"
   * const creds = ctx.observed.get<Secret>("creds")
   * const password = secretValue(creds, "password") ?? ""
   * ```
   */
  readonly observed: Observed
}

/** The dependents observed for a Capability, by id. */
export interface Observed {
  /** The object observed for the dependent `id`, or undefined when it does not exist (yet). */
  get<O extends ObjectShape = KubeObject>(id: string): O | undefined
  /** The ids observed. */
  readonly ids: ReadonlyArray<string>
}

/** What the operator does with a dependent's object when its Capability is deleted, or it is no longer built. */
export type DeletionPolicy = "delete" | "orphan"

export type ConditionState = "ready" | "pending" | "failed"

/** How ready a dependent is. */
export interface Condition {
  readonly state: ConditionState
  /** A CamelCase word, e.g. "ReplicasNotReady". */
  readonly reason?: string
  readonly message?: string
  readonly attributes?: Readonly<Record<string, string>>
}

/** Why fetching a dependent from the API server failed. */
export interface FetchError {
  /** The Kubernetes status reason, e.g. "NotFound". */
  readonly reason: string
  readonly message: string
  readonly code: number
}

/** One Kubernetes object the Capability needs. */
export interface DependentDefinition<O extends ObjectShape = KubeObject> {
  /** Stable across plugin versions, e.g. "config-secret". */
  readonly id: string
  readonly apiVersion: string
  readonly kind: string
  /**
   * Builds the desired object. Name and namespace usually derive from the
   * Capability's. apiVersion and kind may be left out: the SDK sends the
   * object with the declared ones (and refuses one that names others).
   */
  build(context: Context): Built<O>
  /**
   * Given the existing object and the freshly built one (apiVersion and kind
   * filled in), returns the object and the freshly built one, returns the object to
   * apply, or undefined when nothing needs to change. When absent, an existing
   * dependent is left as it is.
   */
  update?(existing: O, desired: O, context: Context): O | undefined
  /** Tells how ready the observed object is. When absent, it does not count for readiness. */
  ready?(observed: O, context: Context): Condition
  /** Default: true. The operator watches objects of this kind. */
  readonly watched?: boolean
  /** Default: true. A controller owner reference to the Capability is set. */
  readonly owned?: boolean
  /** Default: true. The operator creates the object when it is missing. */
  readonly created?: boolean
  /**
   * Default: false. This Secret holds the settings a workload binds to: the
   * operator publishes its name in the Capability's status.
   */
  readonly binding?: boolean
  /**
   * The ids of the dependents this one is applied after, and deleted before.
   * When no dependent of the plugin says, each comes after the one declared
   * before it. A cycle or an unknown id fails `definePlugin` (and the
   * operator refuses such a plugin at load).
   *
   * @example `dependsOn: ["creds", "config"]`
   */
  readonly dependsOn?: ReadonlyArray<string>
  /**
   * Default: false. The dependents that depend on this one are neither
   * created nor updated until `ready` says it is ready (the Capability's
   * status lists them as waiting for it).
   */
  readonly waitForReady?: boolean
  /**
   * Default: "delete". "orphan" keeps the object when the Capability is
   * deleted or the dependent is no longer built, without its owner reference
   * and halkyon's label: its data survives. A function decides per
   * Capability (the declared policy is then "delete").
   *
   * @example `deletionPolicy: (ctx) => (ctx.parameters.KEEP_SECRET === "true" ? "orphan" : "delete")`
   */
  readonly deletionPolicy?: DeletionPolicy | ((context: Context) => DeletionPolicy)
  /**
   * Whether the Capability wants this dependent now; when absent, always.
   * A dependent left out is not applied, and the operator removes it (by its
   * deletion policy) if it applied it before.
   *
   * @example `include: (ctx) => ctx.parameters.EXPOSE === "true"`
   */
  include?(context: Context): boolean
}

export interface PluginDefinition {
  /** The plugin's name in logs and listings, e.g. "postgres". */
  readonly name: string
  /** The Capability category served, e.g. "database". */
  readonly category: string
  readonly types: ReadonlyArray<TypeDefinition>
  readonly parameters?: ReadonlyArray<ParameterDefinition>
  /**
   * Default: false. When true, a Capability may give only the declared
   * parameters: the API server refuses any other name, naming the declared ones.
   */
  readonly refuseUnknownParameters?: boolean
  /** Extra validity checks; each returned string is an error for the user. */
  readonly validate?: (context: Context) => ReadonlyArray<string>
  /** In the order they are applied, unless they declare `dependsOn`. */
  // Method syntax in DependentDefinition keeps a dependent of a narrower object
  // type assignable here.
  readonly dependents: ReadonlyArray<DependentDefinition<ObjectShape>>
}

/**
 * Declares a plugin. Checks the declaration, so a mistake fails when the plugin
 * starts rather than on the first Capability.
 *
 * @example
 * ```ts
 * import { definePlugin, dependent, serve } from "@halkyon/sdk"
 * import type { Service } from "kubernetes-types/core/v1"
 *
 * const plugin = definePlugin({
 *   name: "memcached",
 *   category: "cache",
 *   types: [{ type: "memcached", versions: ["1.6"] }],
 *   dependents: [
 *     dependent<Service>({
 *       id: "service",
 *       apiVersion: "v1",
 *       kind: "Service",
 *       build: (ctx) => ({ metadata: { name: ctx.name, namespace: ctx.namespace }, spec: { ports: [{ port: 11211 }] } })
 *     })
 *   ]
 * })
 * serve(plugin)
 * ```
 */
export const definePlugin = (definition: PluginDefinition): PluginDefinition => {
  const problems: Array<string> = []
  if (definition.name.trim() === "") problems.push(Messages.nameEmpty)
  if (definition.category.trim() === "") problems.push(Messages.categoryEmpty)
  if (definition.types.length === 0) problems.push(Messages.noTypes)
  for (const t of definition.types) {
    if (t.versions.length === 0) problems.push(Messages.noVersions(t.type))
    if (t.defaultVersion !== undefined && !t.versions.includes(t.defaultVersion)) {
      problems.push(Messages.badDefault(t.type, t.defaultVersion, t.versions))
    }
  }
  problems.push(...parameterProblems(definition.parameters ?? []))
  const ids = new Set<string>()
  for (const d of definition.dependents) {
    if (ids.has(d.id)) problems.push(Messages.dependentIdTwice(d.id))
    ids.add(d.id)
  }
  const graph = graphProblem(definition.dependents.map((d) => ({ id: d.id, dependsOn: d.dependsOn ?? [] })))
  if (graph !== undefined) problems.push(graph)
  if (problems.length > 0) throw new Error(Messages.invalidDefinition(problems))
  return definition
}

/** The mistakes of parameter declarations: a name twice, an enum without values, bounds reversed, a bad pattern or default. */
const parameterProblems = (parameters: ReadonlyArray<ParameterDefinition>): Array<string> => {
  const problems: Array<string> = []
  const names = new Set<string>()
  for (const p of parameters) {
    if (names.has(p.name)) problems.push(Messages.parameterTwice(p.name))
    names.add(p.name)
    if (p.type === "enum" && (p.values ?? []).length === 0) problems.push(Messages.enumWithoutValues(p.name))
    if (p.minimum !== undefined && p.maximum !== undefined && p.minimum > p.maximum) {
      problems.push(Messages.boundsReversed(p.name, p.minimum, p.maximum))
    }
    if ((p.type ?? "string") === "string" && p.pattern !== undefined && p.pattern !== "") {
      try {
        new RegExp(p.pattern)
      } catch {
        problems.push(Messages.badPattern(p.name, p.pattern))
        continue
      }
      // JavaScript takes more than RE2: such a pattern would pass here and make the admission policy fail to apply.
      const notRe2 = re2Problem(p.pattern)
      if (notRe2 !== undefined) {
        problems.push(Messages.patternNotRe2(p.name, p.pattern, notRe2))
        continue
      }
    }
    const allowed = allowedValues(p)
    if (allowed !== undefined && p.default !== undefined && p.default !== "" && !valueAllowed(p, p.default)) {
      problems.push(Messages.defaultNotAllowed(p.name, p.default, allowed))
    }
  }
  return problems
}

/**
 * Declares a dependent with its object type, so `build`, `update` and
 * `ready` agree on it. apiVersion and kind are written once, in the
 * declaration: `build` may leave them out, and the object the operator gets
 * (and `update` is given as desired) has them; a `build` that returns others
 * fails, naming the dependent.
 *
 * @example
 * ```ts
 * import type { Service } from "kubernetes-types/core/v1"
 *
 * const service = dependent<Service>({
 *   id: "service",
 *   apiVersion: "v1",
 *   kind: "Service",
 *   build: (ctx) => ({ metadata: { name: ctx.name, namespace: ctx.namespace }, spec: { ports: [{ port: 5432 }] } })
 * })
 * ```
 */
export const dependent = <O extends ObjectShape = KubeObject>(definition: DependentDefinition<O>): DependentDefinition<O> => definition

/** A ready condition. @example `ready("ReplicasReady", "1/1 replicas ready")` */
export const ready = (reason = "Ready", message = ""): Condition => ({ state: "ready", reason, message })
/** A pending condition. @example `pending("ReplicasNotReady", "0/1 replicas ready")` */
export const pending = (reason: string, message: string): Condition => ({ state: "pending", reason, message })
/** A failed condition. @example `failed("ImagePullFailed", "image postgres:99 not found")` */
export const failed = (reason: string, message: string): Condition => ({ state: "failed", reason, message })

/**
 * A Secret's entry, decoded (Secrets hold base64 in `data`), from an
 * observed Secret; undefined when the Secret or the key is missing.
 *
 * @example
 * ```ts
 * const password = secretValue(ctx.observed.get<Secret>("creds"), "password") ?? ""
 * ```
 */
export const secretValue = (
  secret: { readonly data?: { readonly [key: string]: string }; readonly stringData?: { readonly [key: string]: string } } | undefined,
  key: string
): string | undefined => {
  const encoded = secret?.data?.[key]
  if (encoded !== undefined) return Buffer.from(encoded, "base64").toString("utf8")
  return secret?.stringData?.[key]
}

/**
 * What CheckValidity finds wrong with the given parameters' values and names, with the admission
 * policy's sentences. It lives here, and reaches the services as an argument, because the rules it
 * shares with definePlugin would otherwise become a module that loads before the handshake.
 */
export type ParameterCheck = (plugin: PluginDefinition, capability: Capability) => Array<string>

export const parameterErrors: ParameterCheck = (plugin, capability) => {
  const errors: Array<string> = []
  const declared = plugin.parameters ?? []
  for (const given of capability.spec.parameters ?? []) {
    const d = declared.find((p) => p.name === given.name)
    if (d === undefined) {
      if (plugin.refuseUnknownParameters === true) errors.push(unknownParameter(given.name, plugin.name, declared.map((p) => p.name)))
      continue
    }
    const value = given.value ?? ""
    const allowed = allowedValues(d)
    if (value !== "" && allowed !== undefined && !valueAllowed(d, value)) errors.push(invalidValue(d.name, plugin.name, allowed))
  }
  return errors
}
