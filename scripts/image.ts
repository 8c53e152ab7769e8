/**
 * npm run image: the operator's container image (Dockerfile, FROM scratch)
 * for linux/amd64 and linux/arm64, as OCI archives, assembled without a
 * container tool, a daemon or root:
 *
 *   dist/image/halkyon_<version>_linux_<arch>.oci.tar
 *
 * It compiles the Linux binary for the arch, stages its root filesystem in
 * dist/image/rootfs-<arch>/ (the binary, the glibc files it links, tini-static
 * and CA certificates from Debian's packages, users), then does what the
 * Dockerfile says (its COPY instructions become the one layer, the rest the
 * image config) and writes the archive (release/oci.ts). Prints each image's
 * compressed and unpacked sizes.
 */
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import pkg from "../package.json" with { type: "json" }
import { buildOperator, gitCommit } from "./build.ts"
import { debianPackage } from "./release/debian.ts"
import { type DockerRecipe, readDockerfile } from "./release/dockerfile.ts"
import { entriesOf, ociArchive, type TarEntry } from "./release/oci.ts"
import { buildUnlessFresh, inputsHash } from "./release/stamp.ts"

const root = resolve(import.meta.dir, "..")
export const imageDir = join(root, "dist/image")
export const dockerfile = join(root, "Dockerfile")

export type ImageArch = "amd64" | "arm64"
export const imageArches: ReadonlyArray<ImageArch> = ["amd64", "arm64"]

export const imageArchive = (arch: ImageArch) => join(imageDir, `halkyon_${pkg.version}_linux_${arch}.oci.tar`)
export const imageTag = `localhost/halkyon:${pkg.version}`

/** Where each arch's glibc keeps its libraries, and the loader's path (the ELF interpreter the binary names). */
const glibc = {
  amd64: { triplet: "x86_64-linux-gnu", loader: "/lib64/ld-linux-x86-64.so.2", bunTarget: "bun-linux-x64" },
  arm64: { triplet: "aarch64-linux-gnu", loader: "/lib/ld-linux-aarch64.so.1", bunTarget: "bun-linux-arm64" }
} as const

/** The libraries the binary links (`ldd dist/halkyon`); libstdc++ is linked in statically. */
const libraries = ["libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2"]

const userId = 65532

/** Folders on the way to `file` (inside `top`), mode 0755 whatever the umask. */
const makeParents = (top: string, file: string) => {
  const relative = file.slice(top.length + 1).split("/").slice(0, -1)
  relative.forEach((_, i) => {
    const dir = join(top, ...relative.slice(0, i + 1))
    mkdirSync(dir, { recursive: true })
    chmodSync(dir, 0o755)
  })
}

const copy = (top: string, from: string, to: string, mode: number) => {
  makeParents(top, to)
  copyFileSync(from, to)
  chmodSync(to, mode)
}

const write = (top: string, to: string, content: string) => {
  makeParents(top, to)
  writeFileSync(to, content)
  chmodSync(to, 0o644)
}

/** The CA bundle as update-ca-certificates builds it: every certificate Debian ships, in name order. */
const caBundle = async () => {
  const dir = join(await debianPackage("ca-certificates", "all"), "usr/share/ca-certificates/mozilla")
  return readdirSync(dir)
    .filter((f) => f.endsWith(".crt"))
    .sort()
    .map((f) => readFileSync(join(dir, f), "utf8").trimEnd() + "\n")
    .join("")
}

/** Stages dist/image/rootfs-<arch>/ and dist/image/writable/: the folders the Dockerfile copies. */
export const stageRootfs = async (arch: ImageArch) => {
  const rootfs = join(imageDir, `rootfs-${arch}`)
  rmSync(rootfs, { recursive: true, force: true })
  const { triplet, loader, bunTarget } = glibc[arch]
  makeParents(imageDir, join(rootfs, "usr/local/bin/halkyon"))
  buildOperator(join(rootfs, "usr/local/bin/halkyon"), bunTarget)
  chmodSync(join(rootfs, "usr/local/bin/halkyon"), 0o755)

  const libc6 = await debianPackage("libc6", arch)
  // Debian's libc6 keeps the real files in /lib/<triplet>/; the loader's well-known path is a symlink there.
  copy(rootfs, join(libc6, "lib", triplet, loader.split("/").pop() ?? ""), join(rootfs, loader), 0o755)
  for (const lib of libraries) copy(rootfs, join(libc6, "lib", triplet, lib), join(rootfs, "lib", triplet, lib), 0o755)

  copy(rootfs, join(await debianPackage("tini", arch), "usr/bin/tini-static"), join(rootfs, "usr/bin/tini"), 0o755)

  write(rootfs, join(rootfs, "etc/ssl/certs/ca-certificates.crt"), await caBundle())
  const passwd = `root:x:0:0:root:/root:/sbin/nologin\nhalkyon:x:${userId}:${userId}:halkyon operator:/tmp:/sbin/nologin\n`
  write(rootfs, join(rootfs, "etc/passwd"), passwd)
  write(rootfs, join(rootfs, "etc/group"), `root:x:0:\nhalkyon:x:${userId}:\n`)
  // glibc reads it to resolve host names (the plugin downloader, a kubeconfig naming a host).
  write(rootfs, join(rootfs, "etc/nsswitch.conf"), "hosts: files dns\n")
  mkdirSync(join(rootfs, "tmp"))
  chmodSync(join(rootfs, "tmp"), 0o1777)

  // The Dockerfile copies this one owned by the non-root user.
  const writable = join(imageDir, "writable")
  rmSync(writable, { recursive: true, force: true })
  mkdirSync(join(writable, "plugins"), { recursive: true })
  chmodSync(join(writable, "plugins"), 0o755)
  return rootfs
}

/** The image config's runtime part, as the Dockerfile declares it. */
export const runtimeConfig = (recipe: DockerRecipe) => ({
  User: recipe.user,
  Env: recipe.env,
  Entrypoint: recipe.entrypoint,
  Cmd: recipe.cmd,
  WorkingDir: recipe.workdir,
  ExposedPorts: Object.fromEntries(recipe.exposedPorts.map((p) => [p, {}]))
})

/** The layer: each COPY of the Dockerfile in turn, a later entry replacing an earlier one at the same path. */
const layerOf = (recipe: DockerRecipe) => {
  const entries = new Map<string, TarEntry>()
  for (const c of recipe.copies) {
    const under = c.to.replace(/^\/+|\/+$/g, "")
    for (const e of entriesOf(join(root, c.from), under, c.uid, c.gid)) entries.set(e.path, e)
  }
  return [...entries.values()]
}

/** Stages and assembles the image for `arch`; returns the OCI archive's path and its layer's sizes. */
export const buildImage = async (arch: ImageArch) => {
  await stageRootfs(arch)
  const recipe = readDockerfile(dockerfile, { TARGETARCH: arch })
  const { archive, compressedLayer, unpackedLayer } = ociArchive({
    architecture: arch,
    os: "linux",
    config: runtimeConfig(recipe),
    layer: layerOf(recipe),
    refName: imageTag,
    createdBy: "npm run image (scripts/image.ts), from the Dockerfile"
  })
  const out = imageArchive(arch)
  // Through a temporary name: an interrupted build never leaves an archive that looks complete.
  writeFileSync(`${out}.partial`, archive)
  renameSync(`${out}.partial`, out)
  return { out, compressedLayer, unpackedLayer }
}

const imageInputs = () =>
  inputsHash(
    ["src", "package.json", "package-lock.json", "Dockerfile", "scripts/image.ts", "scripts/build.ts", "scripts/release"].map((p) =>
      join(root, p)
    ),
    [gitCommit(), Bun.version]
  )

/** Builds both images unless those in dist/image were built from the same inputs (tests call this). */
export const ensureImages = () =>
  buildUnlessFresh(join(root, "dist/.image-stamp"), imageInputs(), imageArches.map(imageArchive), async () => {
    for (const arch of imageArches) await buildImage(arch)
  })

/** The sizes of an image: its layer as pulled (compressed) and unpacked (from the staged root filesystem). */
export const imageSizes = (arch: ImageArch) => {
  const du = (path: string): number =>
    statSync(path).isDirectory() ? readdirSync(path).reduce((sum, e) => sum + du(join(path, e)), 0) : statSync(path).size
  const listing = Bun.spawnSync(["tar", "-tvf", imageArchive(arch)], { stdout: "pipe" }).stdout.toString()
  const blobs = [...listing.matchAll(/^\S+\s+\S+\s+(\d+)\s.*blobs\/sha256\/\S+$/gm)].map((m) => Number(m[1]))
  // The layer is the one big blob; the manifest and config are a few hundred bytes.
  return {
    archive: statSync(imageArchive(arch)).size,
    compressedLayers: Math.max(...blobs),
    unpacked: du(join(imageDir, `rootfs-${arch}`))
  }
}

if (import.meta.main) {
  for (const arch of imageArches) {
    const started = performance.now()
    const { out } = await buildImage(arch)
    const s = imageSizes(arch)
    const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`
    console.log(
      `built ${out} in ${Math.round(performance.now() - started)} ms: ${mb(s.compressedLayers)} compressed (the OCI archive: ${
        mb(s.archive)
      }), ${mb(s.unpacked)} unpacked`
    )
  }
  writeFileSync(join(root, "dist/.image-stamp"), imageInputs())
}
