/**
 * An OCI image archive assembled without a container tool or privileges: the
 * layer as a tar we write ourselves (entries sorted by path, every mtime 0,
 * owners and modes as given, not as on disk), gzipped; the image config; the
 * manifest; the index; all in the image-layout's tar (`oci-archive:` to
 * skopeo, `podman load`). The same inputs give the same bytes.
 */
import { createHash } from "node:crypto"
import { lstatSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { gzipSync } from "node:zlib"

/** One entry of a tar: a folder, or a file with its bytes. */
export interface TarEntry {
  /** Relative, without a leading slash (`etc/passwd`); folders without a trailing one. */
  readonly path: string
  readonly kind: "dir" | "file"
  readonly mode: number
  readonly uid: number
  readonly gid: number
  readonly data?: Uint8Array
}

const block = 512
const encoder = new TextEncoder()

/** A ustar header: fixed-width fields, numbers in octal, the checksum over the header with its own field as spaces. */
const header = (entry: TarEntry, name: string, size: number) => {
  const h = new Uint8Array(block)
  const put = (at: number, width: number, text: string) => {
    const bytes = encoder.encode(text)
    if (bytes.length > width) throw new Error(`tar: ${entry.path}: field "${text}" is wider than ${width}`)
    h.set(bytes, at)
  }
  const octal = (at: number, width: number, n: number) => put(at, width, `${n.toString(8).padStart(width - 1, "0")}\0`)
  // Names over 100 bytes go in the prefix field, split at a slash.
  const split = encoder.encode(name).length <= 100 ? -1 : name.lastIndexOf("/", 155)
  put(0, 100, split === -1 ? name : name.slice(split + 1))
  if (split !== -1) put(345, 155, name.slice(0, split))
  octal(100, 8, entry.mode)
  octal(108, 8, entry.uid)
  octal(116, 8, entry.gid)
  octal(124, 12, size)
  octal(136, 12, 0)
  put(148, 8, "        ")
  put(156, 1, entry.kind === "dir" ? "5" : "0")
  put(257, 6, "ustar\0")
  put(263, 2, "00")
  const sum = h.reduce((s, b) => s + b, 0)
  put(148, 8, `${sum.toString(8).padStart(6, "0")}\0 `)
  return h
}

/** A tar of `entries` in path order, ending in the two zero blocks. */
export const tarOf = (entries: ReadonlyArray<TarEntry>) => {
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
  const parts: Array<Uint8Array> = []
  for (const entry of sorted) {
    const data = entry.kind === "file" ? (entry.data ?? new Uint8Array()) : new Uint8Array()
    parts.push(header(entry, entry.kind === "dir" ? `${entry.path}/` : entry.path, data.length), data)
    if (data.length % block !== 0) parts.push(new Uint8Array(block - (data.length % block)))
  }
  parts.push(new Uint8Array(2 * block))
  return Buffer.concat(parts)
}

/**
 * The entries under folder `dir`, as `under/<relative path>`, owned by
 * uid:gid, with the modes they have on disk (whoever stages them sets those).
 * Only folders and regular files: an image staged with anything else is a mistake.
 */
export const entriesOf = (dir: string, under: string, uid: number, gid: number): Array<TarEntry> =>
  readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    const at = under === "" ? name : `${under}/${name}`
    const s = lstatSync(path)
    const mode = s.mode & 0o7777
    if (s.isDirectory()) return [{ path: at, kind: "dir", mode, uid, gid } as const, ...entriesOf(path, at, uid, gid)]
    if (s.isFile()) return [{ path: at, kind: "file", mode, uid, gid, data: readFileSync(path) } as const]
    throw new Error(`${path}: only folders and regular files go into the image`)
  })

const sha256 = (data: Uint8Array) => `sha256:${createHash("sha256").update(data).digest("hex")}`

export const mediaTypes = {
  index: "application/vnd.oci.image.index.v1+json",
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layer: "application/vnd.oci.image.layer.v1.tar+gzip"
} as const

/** The runtime part of an image config (the OCI spec's `config` object). */
export interface ImageRuntimeConfig {
  readonly User: string
  readonly Env: ReadonlyArray<string>
  readonly Entrypoint: ReadonlyArray<string>
  readonly Cmd: ReadonlyArray<string>
  readonly WorkingDir: string
  readonly ExposedPorts: Record<string, Record<string, never>>
}

export interface OciImage {
  readonly architecture: string
  readonly os: string
  readonly config: ImageRuntimeConfig
  /** The image's one layer. */
  readonly layer: ReadonlyArray<TarEntry>
  /** The name `podman load` and `skopeo` give it (org.opencontainers.image.ref.name). */
  readonly refName: string
  /** What made the layer, for the config's history. */
  readonly createdBy: string
}

/** The image as an OCI image-layout tar; also the layer's sizes. */
export const ociArchive = (image: OciImage) => {
  const layerTar = tarOf(image.layer)
  // Level 9: a smaller pull for a second more here. zlib writes no time or name into the gzip header.
  const layerGz = gzipSync(layerTar, { level: 9 })
  const epoch = "1970-01-01T00:00:00Z"
  const config = encoder.encode(JSON.stringify({
    created: epoch,
    architecture: image.architecture,
    os: image.os,
    config: image.config,
    rootfs: { type: "layers", diff_ids: [sha256(layerTar)] },
    history: [{ created: epoch, created_by: image.createdBy }]
  }))
  const manifest = encoder.encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: mediaTypes.manifest,
    config: { mediaType: mediaTypes.config, digest: sha256(config), size: config.length },
    layers: [{ mediaType: mediaTypes.layer, digest: sha256(layerGz), size: layerGz.length }]
  }))
  const index = encoder.encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: mediaTypes.index,
    manifests: [{
      mediaType: mediaTypes.manifest,
      digest: sha256(manifest),
      size: manifest.length,
      platform: { architecture: image.architecture, os: image.os },
      annotations: { "org.opencontainers.image.ref.name": image.refName }
    }]
  }))
  const file = (path: string, data: Uint8Array): TarEntry => ({ path, kind: "file", mode: 0o644, uid: 0, gid: 0, data })
  const dir = (path: string): TarEntry => ({ path, kind: "dir", mode: 0o755, uid: 0, gid: 0 })
  const blob = (data: Uint8Array) => file(`blobs/sha256/${sha256(data).slice("sha256:".length)}`, data)
  const archive = tarOf([
    file("oci-layout", encoder.encode(JSON.stringify({ imageLayoutVersion: "1.0.0" }))),
    file("index.json", index),
    dir("blobs"),
    dir("blobs/sha256"),
    blob(config),
    blob(manifest),
    blob(layerGz)
  ])
  return { archive, compressedLayer: layerGz.length, unpackedLayer: layerTar.length }
}
