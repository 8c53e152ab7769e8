/**
 * What the lock can find wrong with an installed plugin.
 */
import { Schema } from "effect"

export class PluginModified extends Schema.TaggedError<PluginModified>()("PluginModified", {
  spec: Schema.String,
  dir: Schema.String,
  problems: Schema.Array(Schema.String)
}) {
  override get message() {
    return `${this.spec} in ${this.dir} no longer matches what was installed: ${this.problems.join("; ")}. Reinstall it with: halkyon plugins install ${this.spec} --plugins-dir ${this.dir}`
  }
}
