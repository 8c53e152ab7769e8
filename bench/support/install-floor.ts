/**
 * The floor of `halkyon plugins install` on this runtime, for
 * bench:download: the least a compiled Bun program must do to install a
 * one-file plugin archive, and nothing else. It fetches the archive (the
 * runtime's fetch follows the redirect), takes its SHA-256, gunzips it with
 * the native DecompressionStream, reads the tar headers by hand, writes the
 * files and takes each one's SHA-256. No retries, no checksums.txt, no
 * safety checks, no lock, no CLI: never use it to install anything.
 *
 *   install-floor <url> <folder>
 */
import { closeSync, mkdirSync, openSync, writeSync } from "node:fs"
import { join } from "node:path"

const [url, folder] = [process.argv[2] ?? "", process.argv[3] ?? ""]
mkdirSync(folder, { recursive: true })
const response = await fetch(url)
if (!response.ok || response.body === null) throw new Error(`${url}: HTTP ${response.status}`)
const archive = new Bun.CryptoHasher("sha256")
const inflated = response.body
  .pipeThrough(new TransformStream<Uint8Array, Uint8Array<ArrayBuffer>>({
    transform(chunk, out) {
      archive.update(chunk)
      out.enqueue(chunk as Uint8Array<ArrayBuffer>)
    }
  }))
  .pipeThrough(new DecompressionStream("gzip"))

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes).replace(/\0.*$/s, "").trim()
let header = new Uint8Array(0)
let fd = -1
let fileLeft = 0
let skip = 0
let file: Bun.CryptoHasher | undefined
const sums: Array<string> = []
for await (const chunk of inflated) {
  let at = 0
  while (at < chunk.length) {
    if (fileLeft > 0) {
      const part = chunk.subarray(at, at + Math.min(fileLeft, chunk.length - at))
      writeSync(fd, part)
      file?.update(part)
      fileLeft -= part.length
      at += part.length
      if (fileLeft === 0) {
        closeSync(fd)
        sums.push(file?.digest("hex") ?? "")
      }
      continue
    }
    if (skip > 0) {
      const n = Math.min(skip, chunk.length - at)
      skip -= n
      at += n
      continue
    }
    const take = chunk.subarray(at, at + 512 - header.length)
    at += take.length
    header = Buffer.concat([header, take])
    if (header.length < 512) continue
    const block = header
    header = new Uint8Array(0)
    if (block.every((b) => b === 0)) continue
    const size = Number.parseInt(text(block.subarray(124, 136)) || "0", 8)
    const padding = (512 - (size % 512)) % 512
    if (block[156] === 0x30 || block[156] === 0) {
      fd = openSync(join(folder, text(block.subarray(0, 100))), "w", 0o755)
      file = new Bun.CryptoHasher("sha256")
      fileLeft = size
      skip = padding
      if (size === 0) closeSync(fd)
    } else skip = size + padding
  }
}
console.log(JSON.stringify({ sha256: archive.digest("hex"), files: sums }))
