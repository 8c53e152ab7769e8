/**
 * Failures of calls to a plugin. Every call has a deadline, so a dead or hung
 * plugin gives one of these, never a hang.
 */
import { Schema } from "effect"

/** The plugin could not be reached, or went away during the call. */
export class PluginUnavailable extends Schema.TaggedError<PluginUnavailable>()("PluginUnavailable", {
  plugin: Schema.String,
  method: Schema.String,
  detail: Schema.String,
  /** The plugin went away because its memory limit killed it. */
  memoryKilled: Schema.optionalKey(Schema.Boolean)
}) {
  override get message() {
    return `plugin ${this.plugin} is unavailable (${this.method}): ${this.detail}; it is restarted automatically, check its logs if this persists`
  }
}

/** The plugin did not answer within the call's deadline. */
export class PluginTimeout extends Schema.TaggedError<PluginTimeout>()("PluginTimeout", {
  plugin: Schema.String,
  method: Schema.String,
  timeoutMs: Schema.Number
}) {
  override get message() {
    return `plugin ${this.plugin} did not answer ${this.method} within ${this.timeoutMs} ms; it may be hung, and is restarted if it stops answering health checks`
  }
}

/** The plugin answered with an error status; its message is for the user. */
export class PluginCallFailed extends Schema.TaggedError<PluginCallFailed>()("PluginCallFailed", {
  plugin: Schema.String,
  method: Schema.String,
  code: Schema.Number,
  detail: Schema.String
}) {
  override get message() {
    return `plugin ${this.plugin} failed ${this.method}: ${this.detail}`
  }
}

/** The plugin already has as many calls in flight as its share of the workers allows. */
export class PluginBusy extends Schema.TaggedError<PluginBusy>()("PluginBusy", {
  plugin: Schema.String,
  method: Schema.String,
  inFlight: Schema.Number
}) {
  override get message() {
    return `plugin ${this.plugin} is busy: ${this.inFlight} calls already in flight, its share of the reconcile workers; ${this.method} is retried later`
  }
}

export type PluginCallError = PluginUnavailable | PluginTimeout | PluginCallFailed | PluginBusy
