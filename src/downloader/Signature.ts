/**
 * Who published a release: `checksums.txt.sig`, a cosign `sign-blob`
 * signature (base64 of an ASN.1 ECDSA P-256 signature over the SHA-256 of
 * checksums.txt, as GoReleaser's cosign signing makes it), checked against
 * the public keys the operator was given for that repository. checksums.txt
 * then vouches for every archive of the release.
 *
 * Keys come as `[org/repo=]FILE` (a PEM public key, cosign.pub); a key
 * without a repository applies to every repository. Keyless (sigstore)
 * bundles are not read.
 */
import { createPublicKey, type KeyObject, verify } from "node:crypto"
import { readFileSync } from "node:fs"

export const SignatureAsset = "checksums.txt.sig"

export interface PluginKey {
  /** `org/repo`, or undefined for a key trusted for every repository. */
  readonly repository: string | undefined
  /** The file the key was read from, to name it in messages. */
  readonly file: string
  readonly key: KeyObject
}

const repositoryForm = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/

/** Reads `[org/repo=]FILE`: the key file must hold an ECDSA P-256 public key in PEM. Throws a message a user can act on. */
export const loadPluginKey = (entry: string): PluginKey => {
  const text = entry.trim()
  const eq = text.indexOf("=")
  const repository = eq < 0 ? undefined : text.slice(0, eq)
  const file = eq < 0 ? text : text.slice(eq + 1)
  if (repository !== undefined && !repositoryForm.test(repository)) {
    throw new Error(`--plugin-key ${JSON.stringify(entry)}: ${JSON.stringify(repository)} is not org/repo; write [org/repo=]FILE`)
  }
  if (file === "") throw new Error(`--plugin-key ${JSON.stringify(entry)}: no key file; write [org/repo=]FILE`)
  let pem: string
  try {
    pem = readFileSync(file, "utf8")
  } catch (e) {
    throw new Error(`--plugin-key: cannot read ${file}: ${e instanceof Error ? e.message : String(e)}`)
  }
  let key: KeyObject
  try {
    key = createPublicKey(pem)
  } catch {
    throw new Error(`--plugin-key: ${file} is not a PEM public key (cosign.pub, "-----BEGIN PUBLIC KEY-----")`)
  }
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw new Error(`--plugin-key: ${file} is not an ECDSA P-256 key, which cosign makes and halkyon checks`)
  }
  return { repository, file, key }
}

/** The keys that must have signed a release of `repository`; empty when none is configured for it. */
export const keysFor = (keys: ReadonlyArray<PluginKey>, repository: string) =>
  keys.filter((k) => k.repository === undefined || k.repository === repository)

/** Whether one of `keys` made `signature` (cosign's base64 text) over `signed`. */
export const signedByOneOf = (keys: ReadonlyArray<PluginKey>, signed: Uint8Array, signature: string): boolean => {
  const text = signature.trim()
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return false
  const bytes = Buffer.from(text, "base64")
  return keys.some((k) => {
    try {
      return verify("sha256", signed, k.key, bytes)
    } catch {
      return false
    }
  })
}
