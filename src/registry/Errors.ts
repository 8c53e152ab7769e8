/** Failed registry look-ups, saying what is available instead. */
import { Schema } from "effect"

export class NoPluginFound extends Schema.TaggedError<NoPluginFound>()("NoPluginFound", {
  category: Schema.String,
  type: Schema.String,
  version: Schema.String,
  available: Schema.Array(Schema.String)
}) {
  override get message() {
    const what = `category "${this.category}", type "${this.type}"${this.version === "" ? "" : `, version "${this.version}"`}`
    const offer = this.available.length === 0 ? "no plugins are loaded" : `available: ${this.available.join("; ")}`
    return `no plugin serves ${what}; ${offer}`
  }
}

export class PluginNotAvailable extends Schema.TaggedError<PluginNotAvailable>()("PluginNotAvailable", {
  plugin: Schema.String,
  reason: Schema.String,
  /** It stopped because its memory limit killed it. */
  memoryKilled: Schema.optionalKey(Schema.Boolean)
}) {
  override get message() {
    return `plugin ${this.plugin} is not available right now: ${this.reason}`
  }
}

/** A plugin whose category or type cannot name a CapabilityInfo: refused at load. */
export class InvalidPluginDescription extends Schema.TaggedError<InvalidPluginDescription>()("InvalidPluginDescription", {
  plugin: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `plugin ${this.plugin} is refused: ${this.detail}; other plugins are not affected`
  }
}
