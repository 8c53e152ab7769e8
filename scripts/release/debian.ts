/**
 * Files from Debian's packages, for either architecture: the glibc the Linux
 * binary links against, tini, the CA certificates, qemu-user. Fetched over
 * HTTP from the Debian archive as apt fetches them, without apt or root: the
 * suite's InRelease (its signature checked with gpgv against Debian's archive
 * keyring), the Packages index it lists (SHA256 checked), the newest version
 * of the package across the suites, its .deb (SHA256 checked from the index).
 * The .deb is read with our own ar reader and tar, and unpacked under
 * ~/.cache/halkyon/debian/, where it stays for later builds. Nothing is
 * installed on the machine.
 */
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { homedir } from "node:os"
import { basename, join } from "node:path"

const cacheDir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "halkyon", "debian")

/** The release the image's files come from, and where (the mirrors Debian's own sources.list names). */
const release = "bookworm"
const archives = [
  { base: process.env.HALKYON_DEBIAN_MIRROR ?? "http://deb.debian.org/debian", suites: [release, `${release}-updates`] },
  { base: process.env.HALKYON_DEBIAN_SECURITY_MIRROR ?? "http://deb.debian.org/debian-security", suites: [`${release}-security`] }
]
const keyring = process.env.HALKYON_DEBIAN_KEYRING ?? "/usr/share/keyrings/debian-archive-keyring.gpg"

/** Whether `command` is on PATH. */
export const hasCommand = (command: string) => Bun.which(command) !== null

/** Fails, in one line, when a tool this module runs is missing. */
const requireTools = () => {
  const missing = [
    ...["tar", "xz", "gpgv"].filter((c) => !hasCommand(c)),
    ...(existsSync(keyring) ? [] : [`Debian's archive keyring (${keyring}; or set HALKYON_DEBIAN_KEYRING)`])
  ]
  if (missing.length > 0) {
    const packages = "Debian/Ubuntu: xz-utils gpgv debian-archive-keyring"
    throw new Error(`fetching Debian packages needs ${missing.join(", ")}: install them (${packages})`)
  }
}

const run = (command: ReadonlyArray<string>) => {
  const result = Bun.spawnSync([...command], { stdout: "pipe", stderr: "pipe" })
  if (result.exitCode !== 0) throw new Error(`${command.join(" ")} failed (exit ${result.exitCode}): ${result.stderr.toString().trim()}`)
  return result.stdout
}

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex")

const download = async (url: string) => {
  const response = await fetch(url, { signal: AbortSignal.timeout(300_000) })
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`)
  return new Uint8Array(await response.arrayBuffer())
}

/** Writes through a temporary name, so that an interrupted write never looks complete. */
const writeAtomically = (file: string, data: Uint8Array | string) => {
  mkdirSync(join(file, ".."), { recursive: true })
  // The process id keeps two builds at once from writing the same temporary file.
  writeFileSync(`${file}.${process.pid}.partial`, data)
  renameSync(`${file}.${process.pid}.partial`, file)
}

/** The SHA256 of each file a suite's signed InRelease lists, by path (`main/binary-amd64/Packages.xz`). */
const releaseSums = async (base: string, suite: string) => {
  const signed = join(cacheDir, "tmp", `${suite}.InRelease`)
  writeAtomically(signed, await download(`${base}/dists/${suite}/InRelease`))
  // Only what the signature covers is read: gpgv writes it out once the signature checks.
  const verified = run(["gpgv", "--quiet", "--keyring", keyring, "--output", "-", signed]).toString()
  const section = /^SHA256:\n((?: .*\n?)*)/m.exec(verified)?.[1] ?? ""
  return new Map(
    section.split("\n").filter((l) => l !== "").map((l) => {
      const [sum = "", , path = ""] = l.trim().split(/\s+/)
      return [path, sum] as const
    })
  )
}

/** One package's fields in a Packages index. */
interface Stanza {
  readonly version: string
  readonly filename: string
  readonly sha256: string
  readonly base: string
}

const indexes = new Map<string, Promise<string>>()

/** A suite's Packages index for `arch` (holding Architecture: all packages too), kept by its checksum. */
const packagesIndex = (base: string, suite: string, arch: string) => {
  const key = `${base} ${suite} ${arch}`
  const known = indexes.get(key)
  if (known !== undefined) return known
  const loading = (async () => {
    const path = `main/binary-${arch}/Packages.xz`
    const sum = (await releaseSums(base, suite)).get(path)
    if (sum === undefined) throw new Error(`${base}/dists/${suite}/InRelease lists no ${path}`)
    const prefix = `${suite}_${arch}_`
    const cached = join(cacheDir, "indexes", `${prefix}${sum}.Packages`)
    if (existsSync(cached)) return readFileSync(cached, "utf8")
    const xz = await download(`${base}/dists/${suite}/${path}`)
    if (sha256(xz) !== sum) throw new Error(`${base}/dists/${suite}/${path}: SHA256 ${sha256(xz)}, InRelease says ${sum}`)
    const compressed = join(cacheDir, "tmp", `${sum}.Packages.xz`)
    writeAtomically(compressed, xz)
    const text = run(["xz", "--decompress", "--stdout", compressed]).toString()
    rmSync(compressed)
    // The suite's older indexes are of no more use.
    mkdirSync(join(cacheDir, "indexes"), { recursive: true })
    for (const old of readdirSync(join(cacheDir, "indexes")).filter((f) => f.startsWith(prefix))) rmSync(join(cacheDir, "indexes", old))
    writeAtomically(cached, text)
    return text
  })()
  indexes.set(key, loading)
  loading.catch(() => indexes.delete(key))
  return loading
}

/** The stanzas of `name` in an index (one per version it holds). */
const stanzasOf = (index: string, name: string, base: string): Array<Stanza> => {
  const found: Array<Stanza> = []
  const marker = `Package: ${name}\n`
  for (let at = index.indexOf(marker); at !== -1; at = index.indexOf(marker, at + 1)) {
    if (at !== 0 && index[at - 1] !== "\n") continue
    const end = index.indexOf("\n\n", at)
    const text = index.slice(at, end === -1 ? undefined : end)
    const field = (f: string) => new RegExp(`^${f}: (.+)$`, "m").exec(text)?.[1]
    const version = field("Version")
    const filename = field("Filename")
    const sum = field("SHA256")
    if (version !== undefined && filename !== undefined && sum !== undefined) found.push({ version, filename, sha256: sum, base })
  }
  return found
}

const isDigit = (c: string | undefined) => c !== undefined && c >= "0" && c <= "9"
/** dpkg's order of a character in a version's non-digit run: ~ before the end, letters before other characters. */
const charOrder = (c: string | undefined) =>
  c === undefined || isDigit(c) ? 0 : /[A-Za-z]/.test(c) ? c.charCodeAt(0) : c === "~" ? -1 : c.charCodeAt(0) + 256

/** dpkg's comparison of an upstream version or a revision: alternating non-digit and digit runs. */
const compareRuns = (a: string, b: string) => {
  let i = 0
  let j = 0
  while (i < a.length || j < b.length) {
    while ((i < a.length && !isDigit(a[i])) || (j < b.length && !isDigit(b[j]))) {
      const diff = charOrder(a[i]) - charOrder(b[j])
      if (diff !== 0) return diff
      i++
      j++
    }
    while (a[i] === "0") i++
    while (b[j] === "0") j++
    let firstDiff = 0
    while (isDigit(a[i]) && isDigit(b[j])) {
      if (firstDiff === 0) firstDiff = a.charCodeAt(i) - b.charCodeAt(j)
      i++
      j++
    }
    if (isDigit(a[i])) return 1
    if (isDigit(b[j])) return -1
    if (firstDiff !== 0) return firstDiff
  }
  return 0
}

/** Compares two Debian versions (`[epoch:]upstream[-revision]`) as dpkg does: negative, 0 or positive. */
export const compareDebianVersions = (a: string, b: string) => {
  const split = (v: string) => {
    const colon = v.indexOf(":")
    const epoch = colon === -1 ? 0 : Number(v.slice(0, colon))
    const rest = colon === -1 ? v : v.slice(colon + 1)
    const dash = rest.lastIndexOf("-")
    return { epoch, upstream: dash === -1 ? rest : rest.slice(0, dash), revision: dash === -1 ? "" : rest.slice(dash + 1) }
  }
  const x = split(a)
  const y = split(b)
  return x.epoch - y.epoch || compareRuns(x.upstream, y.upstream) || compareRuns(x.revision, y.revision)
}

/** The members of an ar archive (a .deb is one: debian-binary, control.tar.*, data.tar.*). */
export const arMembers = (archive: Uint8Array) => {
  const text = (from: number, length: number) => new TextDecoder().decode(archive.subarray(from, from + length))
  if (text(0, 8) !== "!<arch>\n") throw new Error("not an ar archive")
  const members = new Map<string, Uint8Array>()
  let at = 8
  while (at + 60 <= archive.length) {
    const name = text(at, 16).trim().replace(/\/$/, "")
    const size = Number(text(at + 48, 10).trim())
    if (text(at + 58, 2) !== "`\n" || !Number.isSafeInteger(size)) throw new Error(`bad ar member header at byte ${at}`)
    members.set(name, archive.subarray(at + 60, at + 60 + size))
    // Members start at even offsets.
    at += 60 + size + (size % 2)
  }
  return members
}

/** The newest version of `name` for `arch` (Debian's name; "all" for architecture-independent packages) across the suites. */
const resolve = async (name: string, arch: string) => {
  const indexArch = arch === "all" ? "amd64" : arch
  const candidates: Array<Stanza> = []
  for (const { base, suites } of archives) {
    for (const suite of suites) candidates.push(...stanzasOf(await packagesIndex(base, suite, indexArch), name, base))
  }
  const newest = candidates.sort((a, b) => compareDebianVersions(b.version, a.version))[0]
  if (newest === undefined) throw new Error(`Debian ${release} has no package ${name} for ${arch}`)
  return newest
}

/** The .deb of a stanza, from the cache or the archive, its SHA256 checked either way. */
const fetchDeb = async (stanza: Stanza) => {
  const file = join(cacheDir, "debs", basename(stanza.filename))
  const data = existsSync(file) ? new Uint8Array(readFileSync(file)) : await download(`${stanza.base}/${stanza.filename}`)
  if (sha256(data) !== stanza.sha256) {
    throw new Error(`${stanza.filename}: SHA256 ${sha256(data)}, the Packages index says ${stanza.sha256}`)
  }
  if (!existsSync(file)) writeAtomically(file, data)
  return data
}

/**
 * The unpacked contents of Debian package `name` for `arch` (a Go arch name:
 * amd64, arm64, or "all"), as a folder to read files from: all of it, or only
 * the paths in `only` (`./usr/bin/qemu-aarch64-static`). The newest version
 * the suites hold is used; a cached unpack of it is reused.
 */
export const debianPackage = async (name: string, arch: string, only: ReadonlyArray<string> = []) => {
  requireTools()
  const stanza = await resolve(name, arch)
  const subset = only.length === 0 ? "" : `_${sha256(new TextEncoder().encode(only.join("\0"))).slice(0, 12)}`
  const dir = join(cacheDir, `${name}_${stanza.version.replaceAll(":", "%3a")}_${arch}${subset}`)
  if (existsSync(dir)) return dir
  const members = arMembers(await fetchDeb(stanza))
  const dataName = [...members.keys()].find((m) => m.startsWith("data.tar"))
  const data = dataName === undefined ? undefined : members.get(dataName)
  if (dataName === undefined || data === undefined) throw new Error(`${stanza.filename} holds no data.tar`)
  const work = `${dir}.${process.pid}.partial`
  rmSync(work, { recursive: true, force: true })
  mkdirSync(join(work, "root"), { recursive: true })
  writeFileSync(join(work, dataName), data)
  // tar tells the compression (xz, gzip, zstd) from the name.
  run(["tar", "-xf", join(work, dataName), "-C", join(work, "root"), ...only])
  // Complete unpacks only: a build killed halfway leaves a .partial folder, redone next time.
  if (!existsSync(dir)) renameSync(join(work, "root"), dir)
  rmSync(work, { recursive: true, force: true })
  return dir
}

/** The Debian architecture of this machine (for tools such as qemu-user that run here). */
export const hostDebianArch = () => {
  if (process.arch === "x64") return "amd64"
  if (process.arch === "arm64") return "arm64"
  throw new Error(`no Debian tools for a ${process.arch} machine: the tests run on x86-64 or arm64 Linux`)
}

/** qemu-aarch64-static from Debian's qemu-user-static, for running linux/arm64 binaries here (no binfmt_misc needed). */
export const qemuAarch64 = async () => {
  const path = "./usr/bin/qemu-aarch64-static"
  return join(await debianPackage("qemu-user-static", hostDebianArch(), [path]), path)
}
