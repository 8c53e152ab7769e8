/**
 * Trusting plugins (docs/security.md, "Trusting plugins"): signatures,
 * digest pins, the lock file, transport and tokens, reserved names, locked
 * folders, and probes during a slow install. Through the compiled binary,
 * against release pages on loopback; keys and signatures are made here with
 * the platform's crypto, as cosign sign-blob makes them.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { generateKeyPairSync, type KeyObject, sign } from "node:crypto"
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { goArch, goOs } from "../../src/Version.ts"
import { type Cluster, startCluster, startOperator, untilReady } from "../support/cluster.ts"
import { builtPlugin, eventually, root } from "../support/paths.ts"
import { checksums, folderMaker, openReleasePages, type ReleaseServers, sha256, tarGz, type TestCa } from "../support/releases.ts"

const halkyon = join(root, "dist/halkyon")
const archName = `halkyon_plugin_${goOs}_${goArch}.tar.gz`
const encode = (text: string) => new TextEncoder().encode(text)
const bundle = readFileSync(builtPlugin("postgres.js"))

let ca: TestCa
let servers: ReleaseServers
let close = async () => {}
const work = mkdtempSync(join(tmpdir(), "halkyon-supply-chain-"))

beforeAll(async () => {
  ;({ ca, servers, close } = await openReleasePages(work))
})
afterAll(() => close())

const freshFolder = folderMaker(work)

/** A cosign-style key pair: the public key as a PEM file, the private key to sign with. */
const keyPair = (name: string) => {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" })
  const file = join(work, `${name}.pub`)
  writeFileSync(file, publicKey.export({ type: "spki", format: "pem" }))
  return { file, privateKey }
}
/** What `cosign sign-blob --key` prints: base64 of the DER ECDSA signature over the blob's SHA-256. */
const cosignSign = (privateKey: KeyObject, blob: Uint8Array) => sign("sha256", blob, privateKey).toString("base64")

const run = async (args: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const proc = Bun.spawn([halkyon, ...args], {
    env: { ...process.env, NODE_EXTRA_CA_CERTS: ca.caFile, GITHUB_TOKEN: "", HALKYON_PLUGINS: "", HALKYON_RELEASE_TOKEN: "", ...env },
    stdout: "pipe",
    stderr: "pipe"
  })
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  return { code, stdout, stderr: stderr.replaceAll("\\\"", "\"") }
}
const install = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  run(["plugins", "install", "--release-base-url", servers.base, ...args], env)

/** Publishes a release of the postgres bundle with its checksums.txt, signed when a key is given. */
const publish = (
  release: string,
  options: { readonly signWith?: KeyObject; readonly body?: Uint8Array; readonly tamper?: boolean } = {}
) => {
  const archive = tarGz([{ path: "postgres.js", body: options.body ?? bundle }])
  const sums = encode(checksums({ [archName]: archive }))
  const signature: Record<string, Uint8Array> = options.signWith === undefined
    ? {}
    : { "checksums.txt.sig": encode(cosignSign(options.signWith, sums)) }
  // Tampered: checksums.txt altered after signing (a line for another archive added).
  const published = options.tamper === true ? encode(`${"1".repeat(64)}  extra.tar.gz\n${new TextDecoder().decode(sums)}`) : sums
  servers.publish(release, { [archName]: archive, "checksums.txt": published, ...signature })
  return archive
}

const expectNothingInstalled = (dir: string) => expect(readdirSync(dir)).toEqual([])

describe("signatures (--plugin-key)", () => {
  const acme = keyPair("acme")
  const other = keyPair("other")

  test("a release signed by the repository's key installs, and the lock records it as signed", async () => {
    const dir = freshFolder()
    publish("acme/signed@v1", { signWith: acme.privateKey })
    const result = await install(["acme/signed@v1", "--plugins-dir", dir, "--plugin-key", `acme/signed=${acme.file}`])
    expect(result.code).toBe(0)
    expect(result.stdout).toContain("checksums.txt signed and matched")
    expect(JSON.parse(readFileSync(join(dir, "plugins.lock"), "utf8")).plugins[0].checksum).toBe("signed")
  })

  test("signed with another key: refused, naming the key and the repository", async () => {
    const dir = freshFolder()
    publish("acme/wrongkey@v1", { signWith: other.privateKey })
    const result = await install(["acme/wrongkey@v1", "--plugins-dir", dir, "--plugin-key", `acme/wrongkey=${acme.file}`])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain(`the checksums.txt of acme/wrongkey@v1 is not signed by ${acme.file}`)
    expectNothingInstalled(dir)
  })

  test("checksums.txt altered after signing: refused", async () => {
    const dir = freshFolder()
    publish("acme/tampered@v1", { signWith: acme.privateKey, tamper: true })
    const result = await install(["acme/tampered@v1", "--plugins-dir", dir, "--plugin-key", acme.file])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain("is not signed by")
    expectNothingInstalled(dir)
  })

  test("no signature for a keyed repository: refused, naming the missing asset", async () => {
    const dir = freshFolder()
    publish("acme/unsigned@v1")
    const result = await install(["acme/unsigned@v1", "--plugins-dir", dir], { HALKYON_PLUGIN_KEYS: `acme/unsigned=${acme.file}` })
    expect(result.code).toBe(1)
    expect(result.stderr).toContain(`acme/unsigned@v1 must be signed with ${acme.file}, but its release has no`)
    expect(result.stderr).toContain("checksums.txt.sig")
    expectNothingInstalled(dir)
  })

  test("a key for another repository does not apply: an unsigned release installs as before", async () => {
    const dir = freshFolder()
    publish("acme/free@v1")
    const result = await install(["acme/free@v1", "--plugins-dir", dir, "--plugin-key", `someone/else=${acme.file}`])
    expect(result.code).toBe(0)
    expect(result.stdout).toContain("matches checksums.txt")
  })

  test("a key file that is not an ECDSA P-256 public key is a flag error", async () => {
    const bad = join(work, "not-a-key.pub")
    writeFileSync(bad, "hello")
    const result = await install(["acme/free@v1", "--plugins-dir", freshFolder(), "--plugin-key", bad])
    expect(result.code).not.toBe(0)
    expect(result.stderr).toContain(`${bad} is not a PEM public key`)
  })
})

describe("digest pins and the lock file", () => {
  test("a #sha256: pin that matches installs; one that does not is refused with both digests", async () => {
    const archive = publish("acme/pinned@v1")
    const ok = freshFolder()
    expect((await install([`acme/pinned@v1#sha256:${sha256(archive)}`, "--plugins-dir", ok])).code).toBe(0)
    const refused = freshFolder()
    const wrong = "2".repeat(64)
    const result = await install([`acme/pinned@v1#sha256:${wrong}`, "--plugins-dir", refused])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain(`${archName} of acme/pinned@v1 has SHA-256 ${sha256(archive)}, but the spec pins ${wrong}`)
    expectNothingInstalled(refused)
  })

  test("plugins lock records every platform's digest without installing; install --lock installs exactly that", async () => {
    const archive = publish("acme/locked@v1")
    // The other platforms' archives are listed in checksums.txt too.
    const others = { "halkyon_plugin_linux_arm64.tar.gz": encode("arm"), "halkyon_plugin_darwin_arm64.tar.gz": encode("mac") }
    const all: Record<string, Uint8Array> = { [archName]: archive, ...others }
    servers.publish("acme/locked@v1", { ...all, "checksums.txt": encode(checksums(all)) })
    const lockFile = join(work, "halkyon.lock")
    const from = servers.requests.length
    const platforms = [`${goOs}_${goArch}`, "linux_arm64", "darwin_arm64"].filter((p, i, a) => a.indexOf(p) === i)
    const locked = await run([
      "plugins",
      "lock",
      "acme/locked@v1",
      "--platform",
      platforms.join(","),
      "--lock",
      lockFile,
      "--release-base-url",
      servers.base
    ])
    expect(locked.code).toBe(0)
    // Only checksums.txt was read: nothing downloaded, nothing installed.
    expect(
      servers.requests.slice(from).every((r) => r.path.endsWith("checksums.txt") || r.path.includes(encodeURIComponent("checksums.txt")))
    ).toBe(true)
    const lock = JSON.parse(readFileSync(lockFile, "utf8"))
    expect(lock.plugins).toEqual([{
      repository: "acme/locked",
      tag: "v1",
      archives: Object.fromEntries(
        platforms.sort().map((p) => {
          const asset = `halkyon_plugin_${p}.tar.gz`
          return [p, { asset, sha256: sha256(all[asset] ?? new Uint8Array()) }]
        })
      )
    }])

    const dir = freshFolder()
    const result = await install(["--plugins-dir", dir, "--lock", lockFile])
    expect(result.code).toBe(0)
    expect(result.stdout).toContain("acme/locked@v1: installed postgres.js")
    expect(result.stdout).toContain("matches its pin")
  })

  test("with --lock: an unlisted spec, another tag, and a republished archive are refused", async () => {
    publish("acme/kept@v1")
    const lockFile = join(work, "kept.lock")
    expect(
      (await run([
        "plugins",
        "lock",
        "acme/kept@v1",
        "--platform",
        `${goOs}_${goArch}`,
        "--lock",
        lockFile,
        "--release-base-url",
        servers.base
      ])).code
    ).toBe(0)
    publish("acme/kept@v2")
    publish("acme/stranger@v1")
    const dir = freshFolder()
    const unlisted = await install(["acme/stranger@v1", "--plugins-dir", dir, "--lock", lockFile])
    expect(unlisted.stderr).toContain(`acme/stranger@v1 is refused by the lock file ${lockFile}: it lists no release of this repository`)
    const otherTag = await install(["acme/kept@v2", "--plugins-dir", dir, "--lock", lockFile])
    expect(otherTag.stderr).toContain("it pins acme/kept@v1")
    // The same tag republished with other bytes (and a matching checksums.txt): the lock's digest decides.
    publish("acme/kept@v1", { body: encode("// republished") })
    const republished = await install(["acme/kept@v1", "--plugins-dir", dir, "--lock", lockFile])
    expect(republished.code).toBe(1)
    expect(republished.stderr).toContain(`but the lock file ${lockFile} pins`)
    expectNothingInstalled(dir)
  })

  test("a plugin file no install recorded is refused in a locked folder (--require-locked), a recorded one runs", async () => {
    const dir = freshFolder()
    publish("acme/recorded@v1")
    expect((await install(["acme/recorded@v1", "--plugins-dir", dir])).code).toBe(0)
    copyFileSync(builtPlugin("postgres.js"), join(dir, "copied.js"))
    const list = await run(["plugins", "list", "--plugins-dir", dir, "-o", "json", "--require-locked"])
    expect(list.code).toBe(1)
    const rows = JSON.parse(list.stdout) as ReadonlyArray<{ name: string; state: string; error?: string }>
    expect(rows.find((r) => r.name === "postgres.js")?.state).toBe("running")
    const copied = rows.find((r) => r.name === "copied.js")
    expect(copied?.state).toBe("failed")
    expect(copied?.error).toContain("no install recorded it in plugins.lock")
  })

  test("manifests --lock ships the lock in a ConfigMap and runs the operator with --lock and --require-locked", async () => {
    publish("acme/shipped@v1")
    const lockFile = join(work, "shipped.lock")
    expect(
      (await run([
        "plugins",
        "lock",
        "acme/shipped@v1",
        "--platform",
        "linux_amd64,linux_arm64",
        "--lock",
        lockFile,
        "--release-base-url",
        servers.base,
        "--allow-unverified"
      ])).code
    ).not.toBe(0)
    servers.publish("acme/shipped@v1", {
      "halkyon_plugin_linux_amd64.tar.gz": encode("a"),
      "halkyon_plugin_linux_arm64.tar.gz": encode("b"),
      "checksums.txt": encode(
        checksums({ "halkyon_plugin_linux_amd64.tar.gz": encode("a"), "halkyon_plugin_linux_arm64.tar.gz": encode("b") })
      )
    })
    expect(
      (await run([
        "plugins",
        "lock",
        "acme/shipped@v1",
        "--platform",
        "linux_amd64,linux_arm64",
        "--lock",
        lockFile,
        "--release-base-url",
        servers.base
      ])).code
    ).toBe(0)
    const manifests = await run(["manifests", "--lock", lockFile, "--plugins", "acme/shipped@v1"])
    expect(manifests.code).toBe(0)
    expect(manifests.stdout).toContain("kind: ConfigMap")
    expect(manifests.stdout).toContain("name: halkyon-plugins-lock")
    expect(manifests.stdout).toContain(sha256(encode("b")))
    expect(manifests.stdout).toContain("- '--lock'")
    expect(manifests.stdout).toContain("- /etc/halkyon/plugins-lock.json")
    expect(manifests.stdout).toContain("- '--require-locked'")
    expect(manifests.stdout).toContain("readOnly: true")
    const disagreeing = await run(["manifests", "--lock", lockFile, "--plugins", "acme/shipped@v2"])
    expect(disagreeing.code).not.toBe(0)
    expect(disagreeing.stderr).toContain("which the lock file")
  })
})

describe("transport, tokens and reserved names", () => {
  test("an http:// release URL is refused unless --insecure-release-url", async () => {
    const result = await run([
      "plugins",
      "install",
      "acme/x@v1",
      "--plugins-dir",
      freshFolder(),
      "--release-base-url",
      "http://127.0.0.1:9"
    ])
    expect(result.code).not.toBe(0)
    expect(result.stderr).toContain("is not https: refused")
    expect(result.stderr).toContain("--insecure-release-url")
  })

  test("GITHUB_TOKEN never reaches a mirror; HALKYON_RELEASE_TOKEN reaches only the mirror's own origin", async () => {
    publish("acme/tokens@v1")
    const from = servers.requests.length
    const result = await install(["acme/tokens@v1", "--plugins-dir", freshFolder()], {
      GITHUB_TOKEN: "gh-secret",
      HALKYON_RELEASE_TOKEN: "mirror-secret"
    })
    expect(result.code).toBe(0)
    const requests = servers.requests.slice(from)
    expect(requests.length).toBeGreaterThan(0)
    for (const r of requests) expect(r.authorization).toBe(r.server === "release" ? "Bearer mirror-secret" : undefined)
    expect(`${result.stdout}${result.stderr}`).not.toContain("secret")
  })

  test("an archive carrying plugins.lock at its top level is refused", async () => {
    const dir = freshFolder()
    const archive = tarGz([{ path: "postgres.js", body: bundle }, { path: "plugins.lock", body: "{\"version\":1,\"plugins\":[]}" }])
    servers.publish("acme/sneaky@v1", { [archName]: archive, "checksums.txt": encode(checksums({ [archName]: archive })) })
    const result = await install(["acme/sneaky@v1", "--plugins-dir", dir])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain("plugins.lock is a name the plugins folder reserves")
    expectNothingInstalled(dir)
  })
})

describe("halkyon run while it installs (local control plane)", () => {
  let cluster: Cluster
  beforeAll(async () => {
    cluster = await startCluster()
  }, 120_000)
  afterAll(async () => {
    await cluster?.plane.stop()
  })

  test("probes answer during a slow install (/readyz says what it installs); --install-timeout ends it and the operator runs", async () => {
    const archive = tarGz([{ path: "postgres.js", body: bundle }])
    // The archive stalls after 1000 bytes: every try times out, and the install as a whole is cut at 4 s.
    servers.publish("acme/slow@v1", {
      [archName]: [{ kind: "stall", body: archive, sendBytes: 1000 }],
      "checksums.txt": encode(checksums({ [archName]: archive }))
    })
    const dir = join(work, "run-slow")
    const operator = startOperator(cluster, dir, ["--install-timeout", "4s", "--download-timeout", "1s"], cluster.plane.kubeconfigPath, {
      NODE_EXTRA_CA_CERTS: ca.caFile,
      HALKYON_PLUGINS: "acme/slow@v1",
      HALKYON_RELEASE_BASE_URL: servers.base
    })
    try {
      const portLine = () => operator.logs.find((l) => l.includes("serving health probes"))
      expect(await eventually(() => portLine() !== undefined, 20_000)).toBe(true)
      const port = /:(\d+)(?:\D|$)/.exec(portLine()?.split(" on ").pop() ?? "")?.[1]
      const healthz = await fetch(`http://127.0.0.1:${port}/healthz`)
      expect(healthz.status).toBe(200)
      const readyz = await fetch(`http://127.0.0.1:${port}/readyz`)
      expect(readyz.status).toBe(503)
      expect(await readyz.text()).toContain("installing acme/slow@v1")
      expect(operator.logs.some((l) => l.includes("operator ready"))).toBe(false)
      await untilReady(operator, 60_000)
      expect(operator.logs.join("\n")).toContain("installing acme/slow@v1 took longer than 4000 ms and was abandoned")
    } finally {
      await operator.stop()
    }
  }, 120_000)
})
