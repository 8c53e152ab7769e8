/**
 * PluginIdentity: as whom a plugin's dependents are read, watched and
 * written. When impersonation is on, each plugin acts as its own
 * ServiceAccount, `halkyon-plugin-<name>` in the operator's namespace, so the
 * API server holds every plugin to the role `halkyon manifests` derived from
 * its Describe; otherwise plugins act with the operator's own identity.
 *
 * Whether impersonation is on is decided once, at start (`decide`), from the
 * mode and, for each plugin then present, two SelfSubjectAccessReviews: may
 * the operator impersonate its ServiceAccount, and may that ServiceAccount
 * (impersonated) get its first declared kind, i.e. is its role bound:
 * - always: on; start fails when the operator may not impersonate one of
 *   them (a role not bound is a warning, and 403s with the fix later);
 * - never: off;
 * - auto: on when both hold for every plugin, else off, said once in the
 *   log. A laptop's admin may impersonate anyone, but without the RBAC of
 *   `halkyon manifests` applied its plugins' ServiceAccounts could do
 *   nothing: they act with the user's identity then.
 *
 * It does not check what plugins return (the reconciler does) and never
 * changes its mind after start: a plugin added later is impersonated too, and
 * a 403 then names the missing grant.
 */
import { Context, Effect, Layer, Schema } from "effect"
import { type DeclaredDependent, groupOf, missingPermission, pluginServiceAccountName, pluginUser, resourceOf } from "../api/PluginRbac.ts"
import type { KubeApiError } from "../kube/Errors.ts"
import { type KubeApi, KubeClient } from "../kube/KubeClient.ts"

export type ImpersonationMode = "auto" | "always" | "never"
export const ImpersonationModes: ReadonlyArray<ImpersonationMode> = ["auto", "always", "never"]

export interface PluginIdentitySettings {
  readonly mode: ImpersonationMode
  /** Where the plugins' ServiceAccounts are: the operator's namespace. */
  readonly namespace: string
  /** The command that regenerates the RBAC, for messages. */
  readonly regenerate: string
  /** The one namespace the operator serves, where plugins' roles are bound; undefined: all. */
  readonly servedNamespace: string | undefined
}

/** A plugin present at start, with the kinds it declares. */
export interface PresentPlugin {
  readonly name: string
  readonly dependents: ReadonlyArray<Pick<DeclaredDependent, "apiVersion" | "kind">>
}

export class ImpersonationRefused extends Schema.TaggedError<ImpersonationRefused>()("ImpersonationRefused", {
  user: Schema.String,
  refused: Schema.Array(Schema.String),
  regenerate: Schema.String
}) {
  override get message() {
    return `--impersonate=always, but the API server does not let ${this.user} impersonate ${this.refused.join(", ")}: ` +
      `apply the RBAC for these plugins (${this.regenerate}), or run with --impersonate=auto`
  }
}

export class PluginIdentity extends Context.Service<PluginIdentity, {
  /** The client a plugin's dependents are read, watched and written with. */
  readonly clientFor: (plugin: string) => KubeApi
  /** The user a plugin acts as; undefined when it acts with the operator's identity. */
  readonly userOf: (plugin: string) => string | undefined
  /** Decides, once, from the mode and the plugins present at start. */
  readonly decide: (plugins: ReadonlyArray<PresentPlugin>) => Effect.Effect<void, ImpersonationRefused | KubeApiError>
  readonly settings: PluginIdentitySettings
}>()("halkyon/reconciler/PluginIdentity") {
  static readonly layer = (settings: PluginIdentitySettings) => Layer.effect(PluginIdentity, make(settings))
}

/** Whether the API server lets the client's identity do something (a SelfSubjectAccessReview). */
const may = (kube: KubeApi, attributes: Record<string, string | undefined>) =>
  kube.create({
    apiVersion: "authorization.k8s.io/v1",
    kind: "SelfSubjectAccessReview",
    metadata: { name: "" },
    spec: { resourceAttributes: Object.fromEntries(Object.entries(attributes).filter(([, v]) => v !== undefined)) }
  }).pipe(Effect.map((review) => (review as { status?: { allowed?: boolean } }).status?.allowed === true))

const make = Effect.fnUntraced(function*(settings: PluginIdentitySettings) {
  const kube = yield* KubeClient
  let on = false
  const clients = new Map<string, KubeApi>()

  const clientFor = (plugin: string): KubeApi => {
    if (!on) return kube
    let client = clients.get(plugin)
    if (client === undefined) clients.set(plugin, client = kube.impersonating(pluginUser(settings.namespace, plugin)))
    return client
  }

  const decide = Effect.fn("PluginIdentity.decide")(function*(plugins: ReadonlyArray<PresentPlugin>) {
    if (settings.mode === "never") {
      yield* Effect.logInfo(
        "--impersonate=never: plugins act with the operator's own identity; the API server does not confine them to their roles"
      )
      return
    }
    const refused: Array<string> = []
    const unbound: Array<string> = []
    // With no plugin yet, whether any ServiceAccount of the namespace may be impersonated.
    const checked = plugins.length === 0 ? [undefined] : [...plugins].sort((a, b) => a.name.localeCompare(b.name))
    for (const plugin of checked) {
      const name = plugin === undefined ? undefined : pluginServiceAccountName(plugin.name)
      const id = `${settings.namespace}/${name ?? "*"}`
      if (!(yield* may(kube, { verb: "impersonate", group: "", resource: "serviceaccounts", namespace: settings.namespace, name }))) {
        refused.push(id)
        continue
      }
      const first = plugin?.dependents[0]
      if (plugin === undefined || first === undefined) continue
      const as = kube.impersonating(pluginUser(settings.namespace, plugin.name))
      const bound = yield* may(as, {
        verb: "get",
        group: groupOf(first.apiVersion),
        resource: resourceOf(first.kind),
        namespace: settings.servedNamespace
      })
      if (!bound) unbound.push(id)
    }
    if (refused.length === 0 && (unbound.length === 0 || settings.mode === "always")) {
      if (unbound.length > 0) {
        yield* Effect.logWarning(
          `no role is bound to ${unbound.join(", ")}: their plugins' writes will be refused until \`${settings.regenerate}\` is applied`
        )
      }
      on = true
      yield* Effect.logInfo(
        `plugins act as their own ServiceAccounts (${PluginUserPattern(settings.namespace)}), held by the API server to their roles`
      )
      return
    }
    if (settings.mode === "always") {
      return yield* new ImpersonationRefused({ user: "the operator", refused, regenerate: settings.regenerate })
    }
    const why = [
      ...(refused.length === 0 ? [] : [`the operator may not impersonate ${refused.join(", ")}`]),
      ...(unbound.length === 0 ? [] : [`no role is bound to ${unbound.join(", ")}`])
    ].join(" and ")
    yield* Effect.logWarning(
      `plugins act with your identity: ${why}, so the API server does not confine plugins to their roles ` +
        `(apply the RBAC from \`${settings.regenerate}\` to confine them, or pass --impersonate=never to choose this explicitly)`
    )
  })

  return PluginIdentity.of({
    clientFor,
    userOf: (plugin) => (on ? pluginUser(settings.namespace, plugin) : undefined),
    decide,
    settings
  })
})

const PluginUserPattern = (namespace: string) => `system:serviceaccount:${namespace}:halkyon-plugin-<name>`

/**
 * The status message of a 403 on a plugin's dependent: who the API server
 * saw, the permission it refused (verb, resource, group, namespace, read
 * from its answer), why, and the command that regenerates the RBAC.
 */
export const describeForbidden = (refusal: {
  /** The API server's message. */
  readonly detail: string
  /** The dependent, e.g. "StatefulSet db (statefulset)". */
  readonly object: string
  readonly plugin: string
  /** The plugin's ServiceAccount user when impersonating. */
  readonly actingAs: string | undefined
  readonly regenerate: string
}): string => {
  const named = missingPermission(refusal.detail)
  const fix = `Regenerate and apply the RBAC: ${refusal.regenerate} | kubectl apply -f -`
  if (named === undefined) {
    return `${refusal.object}: the API server refused it to ${refusal.actingAs ?? "the operator"}: ${refusal.detail}. ${fix}`
  }
  const where = named.namespace === undefined ? "" : ` in namespace ${named.namespace}`
  const permission = `${named.verb} on resource "${named.resource}" in API group "${named.group}"${where}`
  const why = named.verb === "impersonate"
    ? `the operator may not act as plugin ${refusal.plugin}'s ServiceAccount: the RBAC was generated without this plugin`
    : `plugin ${refusal.plugin}'s role lacks this permission, e.g. the plugin declares a kind its RBAC was not generated for`
  return `${refusal.object}: the API server refused ${named.user} ${permission} (${why}). ${fix}`
}
