/**
 * The halkyon plugin SDK, published as `@halkyon/sdk` (packages/sdk, built by
 * scripts/build-sdk.ts): what plugin authors import. A plugin declares its
 * capability logic with `definePlugin` and `dependent`, then calls `serve`.
 * `@halkyon/sdk/testing` (testing/) tests it. See docs/plugins/typescript.md
 * for a walk-through and plugins/postgres for a full plugin.
 */
export type { Capability, CapabilitySpec, Parameter } from "../api/Capability.ts"
export type { ParameterKind } from "../api/ParameterRules.ts"
export { bindingEntries, type BindingEntries, checkBindingEntries } from "./Binding.ts"
export { makeLogger, type Logger } from "./Log.ts"
export type {
  Built,
  Condition,
  ConditionState,
  Context,
  DeletionPolicy,
  DependentDefinition,
  FetchError,
  KubeObject,
  ObjectShape,
  Observed,
  ParameterDefinition,
  PluginDefinition,
  TypeDefinition
} from "./Plugin.ts"
export { definePlugin, dependent, failed, pending, ready, secretValue } from "./Plugin.ts"
export { serve, type ServeOptions } from "./Serve.ts"
