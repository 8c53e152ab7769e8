/**
 * The errors of this folder's modules, each telling a user what went wrong and what to do.
 */
import { Schema } from "effect"

/** How a plugin spec is written. */
export const ExpectedForm = "org/repo@tag[#sha256:<archive digest>], e.g. halkyon-io/postgres-plugin@v1.2.0"

export class MalformedChecksums extends Schema.TaggedError<MalformedChecksums>()("MalformedChecksums", {
  url: Schema.String,
  lineNumber: Schema.Number,
  line: Schema.String
}) {
  override get message() {
    return `${this.url} line ${this.lineNumber} is not "<sha256>  <file>": ${
      JSON.stringify(this.line.slice(0, 120))
    }; the release's checksums.txt is damaged, ask its publisher to fix it`
  }
}

export class ChecksumMismatch extends Schema.TaggedError<ChecksumMismatch>()("ChecksumMismatch", {
  spec: Schema.String,
  asset: Schema.String,
  expected: Schema.String,
  actual: Schema.String
}) {
  override get message() {
    return `${this.asset} of ${this.spec} does not match the release's checksums.txt: expected SHA-256 ${this.expected}, got ${this.actual}. Nothing was installed; the file may have been tampered with or replaced, tell the plugin's publisher`
  }
}

export class ChecksumsMissing extends Schema.TaggedError<ChecksumsMissing>()("ChecksumsMissing", {
  spec: Schema.String,
  url: Schema.String
}) {
  override get message() {
    return `${this.spec} publishes no checksums.txt (${this.url}), so it cannot be verified: nothing was installed. ` +
      `Ask its publisher for a checksums.txt, or pass --allow-unverified (HALKYON_ALLOW_UNVERIFIED=true) to install it anyway`
  }
}

export class SignatureMissing extends Schema.TaggedError<SignatureMissing>()("SignatureMissing", {
  spec: Schema.String,
  url: Schema.String,
  keys: Schema.Array(Schema.String)
}) {
  override get message() {
    return `${this.spec} must be signed with ${this.keys.join(" or ")}, but its release has no ${this.url}: nothing was installed`
  }
}

export class SignatureInvalid extends Schema.TaggedError<SignatureInvalid>()("SignatureInvalid", {
  spec: Schema.String,
  keys: Schema.Array(Schema.String),
  detail: Schema.String
}) {
  override get message() {
    return `the checksums.txt of ${this.spec} is not signed by ${this.keys.join(" or ")} (${this.detail}): nothing was installed. ` +
      `The release was altered, or signed with another key; check with its publisher which key signs it`
  }
}

export class DigestMismatch extends Schema.TaggedError<DigestMismatch>()("DigestMismatch", {
  spec: Schema.String,
  asset: Schema.String,
  /** Where the expected digest came from: the spec's pin, or the lock file. */
  source: Schema.String,
  expected: Schema.String,
  actual: Schema.String
}) {
  override get message() {
    return `${this.asset} of ${this.spec} has SHA-256 ${this.actual}, but ${this.source} pins ${this.expected}: nothing was installed. ` +
      `The release changed since it was pinned; pin it again only if its publisher confirms the change`
  }
}

export class NotInLock extends Schema.TaggedError<NotInLock>()("NotInLock", {
  spec: Schema.String,
  lock: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `${this.spec} is refused by the lock file ${this.lock}: ${this.detail}. To change what is installed, update the lock with: halkyon plugins lock ${this.spec} --lock ${this.lock}`
  }
}

export class InstallTimedOut extends Schema.TaggedError<InstallTimedOut>()("InstallTimedOut", {
  spec: Schema.String,
  timeoutMs: Schema.Number
}) {
  override get message() {
    return `installing ${this.spec} took longer than ${this.timeoutMs} ms and was abandoned: nothing was installed. ` +
      `Check the release host, or raise --install-timeout`
  }
}

export class NoReleaseAsset extends Schema.TaggedError<NoReleaseAsset>()("NoReleaseAsset", {
  spec: Schema.String,
  platform: Schema.String,
  tried: Schema.Array(Schema.String)
}) {
  override get message() {
    return `${this.spec} has no release archive for ${this.platform}: tried ${
      this.tried.join(", ")
    }. Check the repository and tag, or ask its publisher for a ${this.platform} build`
  }
}

export class NotAPluginArchive extends Schema.TaggedError<NotAPluginArchive>()("NotAPluginArchive", {
  spec: Schema.String,
  asset: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `${this.asset} of ${this.spec} is not a plugin archive: ${this.detail}. Nothing was installed`
  }
}

export class InvalidPluginSpec extends Schema.TaggedError<InvalidPluginSpec>()("InvalidPluginSpec", {
  entry: Schema.String,
  problem: Schema.String
}) {
  override get message() {
    return `invalid plugin ${JSON.stringify(this.entry)}: ${this.problem}; expected ${ExpectedForm}`
  }
}

export class AssetNotFound extends Schema.TaggedError<AssetNotFound>()("AssetNotFound", { url: Schema.String }) {
  override get message() {
    return `${this.url} does not exist (HTTP 404)`
  }
}

export class DownloadRefused extends Schema.TaggedError<DownloadRefused>()("DownloadRefused", {
  url: Schema.String,
  status: Schema.Number
}) {
  override get message() {
    const hint = this.status === 401 || this.status === 403
      ? "the release may be private or the host's rate limit reached: set GITHUB_TOKEN to a token that can read it"
      : "check the release's address (--release-base-url, HALKYON_RELEASE_BASE_URL)"
    return `${this.url} answered HTTP ${this.status}: ${hint}`
  }
}

export class DownloadFailed extends Schema.TaggedError<DownloadFailed>()("DownloadFailed", {
  url: Schema.String,
  attempts: Schema.Number,
  detail: Schema.String
}) {
  override get message() {
    return `could not download ${this.url} (${this.attempts} ${
      this.attempts === 1 ? "try" : "tries"
    }): ${this.detail}; check the network, the proxy (HTTPS_PROXY, NO_PROXY) and that the release host is up, then run the install again`
  }
}

/** A failure worth another try. */
export class Transient extends Schema.TaggedError<Transient>()("Transient", {
  url: Schema.String,
  detail: Schema.String,
  retryAfterMs: Schema.optional(Schema.Number)
}) {}

export class UnsafeArchive extends Schema.TaggedError<UnsafeArchive>()("UnsafeArchive", {
  asset: Schema.String,
  entry: Schema.String,
  problem: Schema.String
}) {
  override get message() {
    return `refused ${this.asset}: entry ${
      JSON.stringify(this.entry)
    } ${this.problem}. Nothing was installed; a plugin archive holds only regular files and folders inside it, so ask the plugin's publisher to fix the release`
  }
}

/** The plugins folder's filesystem is full (or the process may write no more): nothing of the archive is kept. */
export class NoSpaceForPlugin extends Schema.TaggedError<NoSpaceForPlugin>()("NoSpaceForPlugin", {
  asset: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `no room to unpack ${this.asset} in the plugins folder (${this.detail}). Nothing was installed and the plugins already there are as they were; free some space there, or give the folder more, and install again`
  }
}

export class DamagedArchive extends Schema.TaggedError<DamagedArchive>()("DamagedArchive", {
  asset: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `${this.asset} is not a readable .tar.gz archive (${this.detail}). Nothing was installed; check that the release asset is complete`
  }
}
