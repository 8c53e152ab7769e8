/**
 * Release pages on loopback for the downloader's tests: an HTTPS "release
 * host" at https://localhost:<port> that answers
 * /<org>/<repo>/releases/download/<tag>/<asset> with a redirect to a second
 * HTTPS server at https://127.0.0.1:<port> standing for object storage, as
 * GitHub does. Both use a throwaway CA (NODE_EXTRA_CA_CERTS=ca.pem lets
 * halkyon trust it). Assets can misbehave on chosen tries. Also: tar.gz
 * archives built byte by byte, so that tests can make the hostile ones.
 */
import { createHash } from "node:crypto"
import { createReadStream, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import type { IncomingMessage, ServerResponse } from "node:http"
import { createServer, type Server } from "node:https"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { gzipSync } from "node:zlib"

// ---- a test CA and a certificate for localhost and 127.0.0.1 ------------------------------------

export interface TestCa {
  readonly dir: string
  readonly caFile: string
  readonly key: string
  readonly cert: string
}

const openssl = (args: ReadonlyArray<string>, cwd: string) => {
  const result = Bun.spawnSync(["openssl", ...args], { cwd, stdout: "pipe", stderr: "pipe" })
  if (result.exitCode !== 0) throw new Error(`openssl ${args.join(" ")}: ${result.stderr.toString()}`)
}

export const makeTestCa = (): TestCa => {
  const dir = mkdtempSync(join(tmpdir(), "halkyon-ca-"))
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
  openssl(["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=halkyon test CA"], dir)
  openssl(["req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"], dir)
  writeFileSync(join(dir, "ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
  openssl([
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.pem",
    "-days",
    "2",
    "-extfile",
    "ext"
  ], dir)
  return {
    dir,
    caFile: join(dir, "ca.pem"),
    key: readFileSync(join(dir, "server.key"), "utf8"),
    cert: readFileSync(join(dir, "server.pem"), "utf8")
  }
}

// ---- servers ----------------------------------------------------------------------------------

/** What an asset does on one try: its bytes, or a misbehaviour. */
export type Answer =
  | { readonly kind: "bytes"; readonly body: Uint8Array; readonly throttle?: { readonly chunk: number; readonly everyMs: number } }
  | { readonly kind: "status"; readonly status: number; readonly headers?: Record<string, string> }
  /** A file on disk, streamed (a whole release folder need not sit in memory). */
  | { readonly kind: "file"; readonly path: string }
  /** Takes the request and never answers. */
  | { readonly kind: "silent" }
  /** Sends headers and part of the body, then nothing more, keeping the connection open. */
  | { readonly kind: "stall"; readonly body: Uint8Array; readonly sendBytes: number }
  /** Sends headers and part of the body, then drops the connection (no TLS close) or closes it cleanly. */
  | { readonly kind: "broken"; readonly body: Uint8Array; readonly sendBytes: number; readonly ending: "drop" | "close" }

/** An asset's answers by try: the last one repeats. */
export type Asset = Uint8Array | ReadonlyArray<Answer>

export interface Request {
  readonly server: "release" | "storage"
  readonly path: string
  readonly authorization: string | undefined
  readonly at: number
}

export interface ReleaseServers {
  readonly base: string
  readonly storage: string
  readonly requests: Array<Request>
  /** Publishes (or replaces) a release's assets. */
  readonly publish: (release: string, assets: Record<string, Asset>) => void
  readonly tries: (release: string, asset: string) => number
  readonly close: () => Promise<void>
}

const listen = (server: Server, host: string) =>
  new Promise<number>((resolve) => server.listen(0, host, () => resolve((server.address() as AddressInfo).port)))

const answer = (res: ServerResponse, a: Answer) => {
  switch (a.kind) {
    case "silent":
      return
    case "file":
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(statSync(a.path).size) })
      createReadStream(a.path).pipe(res)
      return
    case "stall":
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(a.body.byteLength) })
      res.write(a.body.subarray(0, a.sendBytes))
      return
    case "status":
      res.writeHead(a.status, { "content-length": "0", ...a.headers })
      res.end()
      return
    case "broken": {
      const socket = res.socket
      if (socket === null) return
      socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: ${a.body.byteLength}\r\n\r\n`)
      socket.write(a.body.subarray(0, a.sendBytes))
      setTimeout(() => (a.ending === "drop" ? socket.destroy() : socket.end()), 50)
      return
    }
    case "bytes": {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(a.body.byteLength) })
      if (a.throttle === undefined) {
        res.end(a.body)
        return
      }
      const { chunk, everyMs } = a.throttle
      let sent = 0
      const timer = setInterval(() => {
        if (res.destroyed) return clearInterval(timer)
        res.write(a.body.subarray(sent, sent + chunk))
        sent += chunk
        if (sent >= a.body.byteLength) {
          clearInterval(timer)
          res.end()
        }
      }, everyMs)
      res.on("close", () => clearInterval(timer))
    }
  }
}

export const startReleaseServers = async (ca: TestCa): Promise<ReleaseServers> => {
  const releases = new Map<string, Map<string, Asset>>()
  const tryCounts = new Map<string, number>()
  const requests: Array<Request> = []
  const record = (server: Request["server"], req: IncomingMessage) =>
    requests.push({ server, path: req.url ?? "", authorization: req.headers.authorization, at: Date.now() })

  let storagePort = 0
  const release = createServer({ key: ca.key, cert: ca.cert }, (req, res) => {
    record("release", req)
    const match = /^\/(.+)\/releases\/download\/([^/]+)\/([^/?]+)$/.exec(req.url ?? "")
    const assets = match === null ? undefined : releases.get(`${match[1]}@${decodeURIComponent(match[2] ?? "")}`)
    if (match === null || assets === undefined || !assets.has(decodeURIComponent(match[3] ?? ""))) {
      res.writeHead(404, { "content-type": "text/plain" })
      res.end("Not Found")
      return
    }
    // Like GitHub: the asset itself is served by another host, under a signed address.
    const key = `${match[1]}@${decodeURIComponent(match[2] ?? "")}/${decodeURIComponent(match[3] ?? "")}`
    res.writeHead(302, { location: `https://127.0.0.1:${storagePort}/blobs/${encodeURIComponent(key)}?signature=abc` })
    res.end()
  })
  const storage = createServer({ key: ca.key, cert: ca.cert }, (req, res) => {
    record("storage", req)
    const key = decodeURIComponent((req.url ?? "").replace(/^\/blobs\//, "").replace(/\?.*$/, ""))
    const slash = key.lastIndexOf("/")
    const asset = releases.get(key.slice(0, slash))?.get(key.slice(slash + 1))
    if (asset === undefined) {
      res.writeHead(404)
      res.end()
      return
    }
    const tries = (tryCounts.get(key) ?? 0) + 1
    tryCounts.set(key, tries)
    const answers: ReadonlyArray<Answer> = asset instanceof Uint8Array ? [{ kind: "bytes", body: asset }] : asset
    answer(res, answers[Math.min(tries, answers.length) - 1] ?? { kind: "status", status: 500 })
  })
  const releasePort = await listen(release, "127.0.0.1")
  storagePort = await listen(storage, "127.0.0.1")
  return {
    base: `https://localhost:${releasePort}`,
    storage: `https://127.0.0.1:${storagePort}`,
    requests,
    publish: (name, assets) => {
      releases.set(name, new Map(Object.entries(assets)))
      for (const asset of Object.keys(assets)) tryCounts.delete(`${name}/${asset}`)
    },
    tries: (name, asset) => tryCounts.get(`${name}/${asset}`) ?? 0,
    close: async () => {
      release.closeAllConnections()
      storage.closeAllConnections()
      await Promise.all([new Promise((r) => release.close(r)), new Promise((r) => storage.close(r))])
    }
  }
}

// ---- archives ---------------------------------------------------------------------------------

export interface TarEntry {
  readonly path: string
  readonly type?: "file" | "folder" | "symlink" | "hardlink" | "chardev" | "fifo"
  readonly body?: Uint8Array | string
  readonly mode?: number
  readonly linkTarget?: string
  /** The size the header claims, if not the body's. */
  readonly claimedSize?: number
}

const typeFlags = { file: "0", hardlink: "1", symlink: "2", chardev: "3", folder: "5", fifo: "6" } as const

const octal = (value: number, width: number) => value.toString(8).padStart(width - 1, "0") + "\0"

/** A ustar header and body, written by hand so that anything can be put in. */
const tarEntry = (e: TarEntry): Uint8Array => {
  const body = typeof e.body === "string" ? new TextEncoder().encode(e.body) : (e.body ?? new Uint8Array())
  const header = new Uint8Array(512)
  const put = (text: string, offset: number, width: number) => header.set(new TextEncoder().encode(text).subarray(0, width), offset)
  put(e.path, 0, 100)
  put(octal(e.mode ?? (e.type === "folder" ? 0o755 : 0o644), 8), 100, 8)
  put(octal(0, 8), 108, 8)
  put(octal(0, 8), 116, 8)
  put(octal(e.claimedSize ?? body.byteLength, 12), 124, 12)
  put(octal(Math.floor(Date.now() / 1000), 12), 136, 12)
  put("        ", 148, 8)
  put(typeFlags[e.type ?? "file"], 156, 1)
  put(e.linkTarget ?? "", 157, 100)
  put("ustar\0", 257, 6)
  put("00", 263, 2)
  const sum = header.reduce((a, b) => a + b, 0)
  put(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8)
  const padded = new Uint8Array(512 + Math.ceil(body.byteLength / 512) * 512)
  padded.set(header)
  padded.set(body, 512)
  return padded
}

/** A .tar.gz of the entries, in order. */
export const tarGz = (entries: ReadonlyArray<TarEntry>): Uint8Array => {
  const parts = entries.map(tarEntry)
  const size = parts.reduce((a, p) => a + p.byteLength, 0) + 1024
  const tar = new Uint8Array(size)
  let offset = 0
  for (const p of parts) {
    tar.set(p, offset)
    offset += p.byteLength
  }
  return gzipSync(tar)
}

export const sha256 = (bytes: Uint8Array | string) => createHash("sha256").update(bytes).digest("hex")

/** GoReleaser's checksums.txt for the given assets. */
export const checksums = (assets: Record<string, Uint8Array>) =>
  Object.entries(assets)
    .map(([name, bytes]) => `${sha256(bytes)}  ${name}`)
    .join("\n") + "\n"

/** A release folder as it is (say dist/plugin-releases/<name>), every file an asset. */
export const folderAssets = (dir: string): Record<string, Asset> =>
  Object.fromEntries(readdirSync(dir).map((name) => [name, [{ kind: "file", path: join(dir, name) }]]))

export const removeCa = (ca: TestCa) => rmSync(ca.dir, { recursive: true, force: true })

/** A test CA and release servers trusting it, for one test file; `close` also removes the file's work folder. */
export const openReleasePages = async (work: string) => {
  const ca = makeTestCa()
  const servers = await startReleaseServers(ca)
  return {
    ca,
    servers,
    close: async () => {
      await servers.close()
      removeCa(ca)
      rmSync(work, { recursive: true, force: true })
    }
  }
}

/** Makes empty plugins folders, each new, inside `work`. */
export const folderMaker = (work: string) => {
  let folders = 0
  return () => {
    const dir = join(work, `plugins-${++folders}`)
    mkdirSync(dir)
    return dir
  }
}
