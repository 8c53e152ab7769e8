/**
 * PluginIdentity: as whom a plugin's dependents are read, watched and
 * written. When impersonation is on, each plugin acts as its own
 * ServiceAccount, `halkyon-plugin-<name>` in the operator's namespace, so the
 * API server holds every plugin to the role `halkyon manifests` derived from
 * its Describe; otherwise plugins act with the operator's own identity.
 *
 * Whether impersonation is on is decided once, at start (`decide`), from the
 * mode and a SelfSubjectAccessReview per plugin then present:
 * - always: on; start fails when the operator may not impersonate one of them;
 * - never: off;
 * - auto: on when the operator may impersonate every one of them, else off,
 *   said once in the log.
 *
 * It does not check what plugins return (the reconciler does) and never
 * changes its mind after start: a plugin added later is impersonated too, and
 * a 403 then names the missing grant.
 */
import { Context, Effect, Layer, Schema } from "effect"
import { pluginServiceAccountName, pluginUser } from "../api/PluginRbac.ts"
import { type KubeApi, type KubeApiError, KubeClient } from "../kube/KubeClient.ts"

export type ImpersonationMode = "auto" | "always" | "never"
export const ImpersonationModes: ReadonlyArray<ImpersonationMode> = ["auto", "always", "never"]

export interface PluginIdentitySettings {
  readonly mode: ImpersonationMode
  /** Where the plugins' ServiceAccounts are: the operator's namespace. */
  readonly namespace: string
  /** The command that regenerates the RBAC, for messages. */
  readonly regenerate: string
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
  /** Whether plugins act as their own ServiceAccounts. */
  readonly impersonating: Effect.Effect<boolean>
  /** Decides, once, from the mode and the plugins present at start. */
  readonly decide: (plugins: ReadonlyArray<string>) => Effect.Effect<void, ImpersonationRefused | KubeApiError>
  readonly settings: PluginIdentitySettings
}>()("halkyon/reconciler/PluginIdentity") {
  static readonly layer = (settings: PluginIdentitySettings) => Layer.effect(PluginIdentity, make(settings))
}

/** Whether the API server lets the current identity impersonate a ServiceAccount (any, without a name). */
const mayImpersonate = (kube: KubeApi, namespace: string, name: string | undefined) =>
  kube.create({
    apiVersion: "authorization.k8s.io/v1",
    kind: "SelfSubjectAccessReview",
    metadata: { name: "" },
    spec: { resourceAttributes: { verb: "impersonate", group: "", resource: "serviceaccounts", namespace, ...(name === undefined ? {} : { name }) } }
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

  const decide = Effect.fn("PluginIdentity.decide")(function*(plugins: ReadonlyArray<string>) {
    if (settings.mode === "never") {
      yield* Effect.logWarning("--impersonate=never: plugins act with the operator's own identity; the API server does not confine them to their roles")
      return
    }
    const names = [...new Set(plugins.map(pluginServiceAccountName))].sort()
    const refused: Array<string> = []
    // With no plugin yet, whether any ServiceAccount of the namespace may be impersonated.
    for (const name of names.length === 0 ? [undefined] : names) {
      if (!(yield* mayImpersonate(kube, settings.namespace, name))) refused.push(`${settings.namespace}/${name ?? "*"}`)
    }
    if (refused.length === 0) {
      on = true
      yield* Effect.logInfo(`plugins act as their own ServiceAccounts (${PluginUserPattern(settings.namespace)}), held by the API server to their roles`)
      return
    }
    if (settings.mode === "always") {
      return yield* new ImpersonationRefused({ user: "the operator", refused, regenerate: settings.regenerate })
    }
    yield* Effect.logWarning(
      `plugins act with your identity: the operator may not impersonate ${refused.join(", ")}, so the API server does not confine plugins to their roles ` +
        `(apply the RBAC from \`${settings.regenerate}\` to confine them, or pass --impersonate=never to silence this)`
    )
  })

  return PluginIdentity.of({
    clientFor,
    userOf: (plugin) => (on ? pluginUser(settings.namespace, plugin) : undefined),
    impersonating: Effect.sync(() => on),
    decide,
    settings
  })
})

const PluginUserPattern = (namespace: string) => `system:serviceaccount:${namespace}:halkyon-plugin-<name>`
