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
    return `${this.spec} in ${this.dir} no longer matches what was installed: ${
      this.problems.join("; ")
    }. Reinstall it with: halkyon plugins install ${this.spec} --plugins-dir ${this.dir}`
  }
}

export class LockUnreadable extends Schema.TaggedError<LockUnreadable>()("LockUnreadable", {
  path: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `${this.path} cannot be read (${this.detail}); move it away and install the plugins again`
  }
}

export class FileConflict extends Schema.TaggedError<FileConflict>()("FileConflict", {
  spec: Schema.String,
  file: Schema.String,
  owner: Schema.String
}) {
  override get message() {
    return this.owner === ""
      ? `cannot install ${this.spec}: ${this.file} is already in the plugins folder and was not installed by halkyon; remove or rename it, then install again`
      : `cannot install ${this.spec}: ${this.file} belongs to ${this.owner}, installed in the same folder; plugins from two releases cannot share a file name`
  }
}

export class LockWriteFailed extends Schema.TaggedError<LockWriteFailed>()("LockWriteFailed", {
  dir: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `could not update the plugins folder ${this.dir}: ${this.detail}; check that it is writable and has space, then install again (an interrupted install is completed by the next run)`
  }
}

export class FolderBusy extends Schema.TaggedError<FolderBusy>()("FolderBusy", {
  dir: Schema.String,
  pid: Schema.Number,
  /** The mutex file to remove when no halkyon holds it. */
  mutex: Schema.String
}) {
  override get message() {
    return `another halkyon (pid ${this.pid}) has been installing into ${this.dir} for over a minute; wait for it, or if no halkyon is running remove ${this.mutex}`
  }
}

export class PluginNotLocked extends Schema.TaggedError<PluginNotLocked>()("PluginNotLocked", {
  name: Schema.String,
  dir: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `not starting ${this.name} from ${this.dir}: ${this.detail}, and only installed plugins may run here (--require-locked). ` +
      `Install it with halkyon plugins install (a lock file names it), or remove the file`
  }
}
