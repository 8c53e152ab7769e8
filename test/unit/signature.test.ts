/**
 * Checking who published a release: cosign-style signatures over
 * checksums.txt, keys per repository, and the digest pin of a spec.
 */
import { describe, expect, test } from "bun:test"
import { generateKeyPairSync, sign } from "node:crypto"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { keysFor, loadPluginKey, signedByOneOf } from "../../src/downloader/Signature.ts"
import { parsePluginSpec, PluginSpec } from "../../src/downloader/PluginSpec.ts"

const dir = mkdtempSync(join(tmpdir(), "halkyon-signature-"))
const pair = (name: string, curve = "prime256v1") => {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: curve })
  const file = join(dir, `${name}.pub`)
  writeFileSync(file, publicKey.export({ type: "spki", format: "pem" }))
  return { file, privateKey }
}
const blob = new TextEncoder().encode("abc  halkyon_plugin_linux_amd64.tar.gz\n")

describe("signatures", () => {
  const acme = pair("acme")
  const other = pair("other")

  test("a signature by the key verifies; by another key, over other bytes, or not base64, it does not", () => {
    const keys = [loadPluginKey(`acme/redis=${acme.file}`)]
    const good = sign("sha256", blob, acme.privateKey).toString("base64")
    expect(signedByOneOf(keys, blob, `${good}\n`)).toBe(true)
    expect(signedByOneOf(keys, blob, sign("sha256", blob, other.privateKey).toString("base64"))).toBe(false)
    expect(signedByOneOf(keys, new TextEncoder().encode("other"), good)).toBe(false)
    expect(signedByOneOf(keys, blob, "not base64!")).toBe(false)
  })

  test("a key applies to its repository; one without a repository applies to all", () => {
    const keys = [loadPluginKey(`acme/redis=${acme.file}`), loadPluginKey(other.file)]
    expect(keysFor(keys, "acme/redis").map((k) => k.file)).toEqual([acme.file, other.file])
    expect(keysFor(keys, "acme/kafka").map((k) => k.file)).toEqual([other.file])
  })

  test("bad key entries are refused with what to write", () => {
    expect(() => loadPluginKey(`not a repo=${acme.file}`)).toThrow("is not org/repo; write [org/repo=]FILE")
    expect(() => loadPluginKey("acme/redis=")).toThrow("no key file")
    expect(() => loadPluginKey(join(dir, "missing.pub"))).toThrow("cannot read")
    const p384 = pair("p384", "secp384r1")
    expect(() => loadPluginKey(p384.file)).toThrow("is not an ECDSA P-256 key")
  })
})

describe("digest pins in specs", () => {
  test("#sha256:<hex> pins the archive, lower-cased; anything else after # is refused", () => {
    const hex = "AB".repeat(32)
    const pinned = parsePluginSpec(`acme/redis@v1#sha256:${hex}`)
    if (!(pinned instanceof PluginSpec)) throw new Error(pinned.message)
    expect(pinned.digest).toBe(hex.toLowerCase())
    expect(pinned.toString()).toBe("acme/redis@v1")
    const bad = parsePluginSpec("acme/redis@v1#md5:00")
    expect(bad instanceof PluginSpec ? "parsed" : bad.message).toContain("a pin is written #sha256:<64 hex digits>")
  })
})
