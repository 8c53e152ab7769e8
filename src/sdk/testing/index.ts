/**
 * `@halkyon/sdk/testing`: test a plugin in this process (`testPlugin`, over
 * the SDK's pure functions) or as a process through the real handshake
 * (`launchPlugin`, with a typed client for the five capability calls).
 */
export { type CapabilityInput, type Observation, type PluginHarness, testPlugin } from "./InProcess.ts"
export { type LaunchedPlugin, launchPlugin, type LaunchOptions, PluginCallError } from "./Process.ts"
