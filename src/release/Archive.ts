/**
 * Release archives: a .tar.gz or .zip holding one executable at its top
 * level, and the GoReleaser-format checksums.txt beside them. Written
 * in-process (tar from npm, zip by hand) so a build gives the same archives
 * on any OS, whatever tar or zip it has; timestamps are fixed and owners left
 * out, so the same binary gives the same archive bytes. Used by the release
 * scripts and by `halkyon plugins build --release`.
 */
import { createHash } from "node:crypto"
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { basename, join } from "node:path"
import { crc32, deflateRawSync } from "node:zlib"
import * as tar from "tar"

/** Every archive entry gets this time: 2026-01-01T00:00:00Z (reproducible archives). */
const fixedTime = new Date(Date.UTC(2026, 0, 1))

/** Writes a gzipped tar at `out` with `file` inside, at the top level, as `name`, mode 0755. */
export const writeTarGz = async (out: string, file: string, name: string) => {
  // tar takes modes and names from the file system: stage a copy with both right.
  const staging = mkdtempSync(join(tmpdir(), "halkyon-archive-"))
  try {
    const staged = join(staging, name)
    copyFileSync(file, staged)
    chmodSync(staged, 0o755)
    await tar.create({ file: out, cwd: staging, gzip: true, portable: true, mtime: fixedTime }, [name])
  } finally {
    rmSync(staging, { recursive: true, force: true })
  }
  return out
}

const dosTime = (d: Date) => (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | (d.getUTCSeconds() >> 1)
const dosDate = (d: Date) => ((d.getUTCFullYear() - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate()

/**
 * Writes a zip at `out` with `file` inside as `name`, deflated. One entry,
 * under 4 GiB, so the plain (not zip64) format suffices. Unix mode 0755 goes
 * into the external attributes for unzip on Unix; Windows ignores it.
 */
export const writeZip = (out: string, file: string, name: string) => {
  const data = readFileSync(file)
  const compressed = deflateRawSync(data)
  const nameBytes = Buffer.from(name, "utf8")
  const crc = crc32(data) >>> 0
  const time = dosTime(fixedTime)
  const date = dosDate(fixedTime)

  const local = Buffer.alloc(30)
  local.writeUInt32LE(0x04034b50, 0) // local file header
  local.writeUInt16LE(20, 4) // version needed: 2.0 (deflate)
  local.writeUInt16LE(0x0800, 6) // flags: UTF-8 name
  local.writeUInt16LE(8, 8) // deflate
  local.writeUInt16LE(time, 10)
  local.writeUInt16LE(date, 12)
  local.writeUInt32LE(crc, 14)
  local.writeUInt32LE(compressed.length, 18)
  local.writeUInt32LE(data.length, 22)
  local.writeUInt16LE(nameBytes.length, 26)
  local.writeUInt16LE(0, 28)

  const central = Buffer.alloc(46)
  central.writeUInt32LE(0x02014b50, 0) // central directory header
  central.writeUInt16LE((3 << 8) | 20, 4) // made by: Unix, 2.0
  central.writeUInt16LE(20, 6)
  central.writeUInt16LE(0x0800, 8)
  central.writeUInt16LE(8, 10)
  central.writeUInt16LE(time, 12)
  central.writeUInt16LE(date, 14)
  central.writeUInt32LE(crc, 16)
  central.writeUInt32LE(compressed.length, 20)
  central.writeUInt32LE(data.length, 24)
  central.writeUInt16LE(nameBytes.length, 28)
  // extra, comment, disk number, internal attributes: 0
  central.writeUInt32LE((0o100755 << 16) >>> 0, 38) // external attributes: regular file, 0755
  central.writeUInt32LE(0, 42) // offset of the local header

  const centralOffset = local.length + nameBytes.length + compressed.length
  const centralSize = central.length + nameBytes.length
  const end = Buffer.alloc(22)
  end.writeUInt32LE(0x06054b50, 0) // end of central directory
  end.writeUInt16LE(1, 8)
  end.writeUInt16LE(1, 10)
  end.writeUInt32LE(centralSize, 12)
  end.writeUInt32LE(centralOffset, 16)

  writeFileSync(out, Buffer.concat([local, nameBytes, compressed, central, nameBytes, end]))
  return out
}

export const sha256File = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex")

/** Writes `<dir>/checksums.txt`: `<sha256>  <file name>` per file, sorted by name, as GoReleaser does. */
export const writeChecksums = (dir: string, files: ReadonlyArray<string>) => {
  const lines = [...files]
    .map((f) => ({ name: basename(f), sum: sha256File(f) }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((e) => `${e.sum}  ${e.name}\n`)
  const out = join(dir, "checksums.txt")
  writeFileSync(out, lines.join(""))
  return out
}
