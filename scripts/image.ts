/**
 * npm run image: the operator's container image (Dockerfile, FROM scratch)
 * for linux/amd64 and linux/arm64, built with buildah, without a Docker
 * daemon, into OCI archives:
 *
 *   dist/image/halkyon_<version>_linux_<arch>.oci.tar
 *
 * It compiles the Linux binary for the arch, stages its root filesystem in
 * dist/image/rootfs-<arch>/ (the binary, the glibc files it links, tini-static
 * and CA certificates from Debian's packages, users) and builds the
 * Dockerfile with buildah's own storage under dist/.buildah (vfs: no overlay
 * mounts needed). Prints each image's compressed and unpacked sizes.
 */
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import pkg from "../package.json" with { type: "json" }
import { buildOperator, gitCommit } from "./build.ts"
import { debianPackage, hasCommand, installHint } from "./release/debian.ts"
import { buildUnlessFresh, inputsHash } from "./release/stamp.ts"

const root = resolve(import.meta.dir, "..")
export const imageDir = join(root, "dist/image")

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

const copy = (from: string, to: string, mode: number) => {
  mkdirSync(join(to, ".."), { recursive: true })
  copyFileSync(from, to)
  chmodSync(to, mode)
}

/** The CA bundle as update-ca-certificates builds it: every certificate Debian ships, in name order. */
const caBundle = () => {
  const dir = join(debianPackage("ca-certificates", "all"), "usr/share/ca-certificates/mozilla")
  return readdirSync(dir)
    .filter((f) => f.endsWith(".crt"))
    .sort()
    .map((f) => readFileSync(join(dir, f), "utf8").trimEnd() + "\n")
    .join("")
}

/** Stages dist/image/rootfs-<arch>/: everything the image holds but its writable folders. */
export const stageRootfs = (arch: ImageArch) => {
  const rootfs = join(imageDir, `rootfs-${arch}`)
  rmSync(rootfs, { recursive: true, force: true })
  const { triplet, loader, bunTarget } = glibc[arch]
  buildOperator(join(rootfs, "usr/local/bin/halkyon"), bunTarget)

  const libc6 = debianPackage("libc6", arch)
  // Debian's libc6 keeps the real files in /lib/<triplet>/; the loader's well-known path is a symlink there.
  copy(join(libc6, "lib", triplet, loader.split("/").pop() ?? ""), join(rootfs, loader), 0o755)
  for (const lib of libraries) copy(join(libc6, "lib", triplet, lib), join(rootfs, "lib", triplet, lib), 0o755)

  copy(join(debianPackage("tini", arch), "usr/bin/tini-static"), join(rootfs, "usr/bin/tini"), 0o755)

  mkdirSync(join(rootfs, "etc/ssl/certs"), { recursive: true })
  writeFileSync(join(rootfs, "etc/ssl/certs/ca-certificates.crt"), caBundle())
  writeFileSync(join(rootfs, "etc/passwd"), `root:x:0:0:root:/root:/sbin/nologin\nhalkyon:x:${userId}:${userId}:halkyon operator:/tmp:/sbin/nologin\n`)
  writeFileSync(join(rootfs, "etc/group"), `root:x:0:\nhalkyon:x:${userId}:\n`)
  // glibc reads it to resolve host names (the plugin downloader, a kubeconfig naming a host).
  writeFileSync(join(rootfs, "etc/nsswitch.conf"), "hosts: files dns\n")
  mkdirSync(join(rootfs, "tmp"))
  chmodSync(join(rootfs, "tmp"), 0o1777)

  // The Dockerfile copies this one owned by the non-root user.
  const writable = join(imageDir, "writable")
  rmSync(writable, { recursive: true, force: true })
  mkdirSync(join(writable, "plugins"), { recursive: true })
  chmodSync(join(writable, "plugins"), 0o755)
  return rootfs
}

const buildah = (args: ReadonlyArray<string>) => {
  const storage = join(root, "dist/.buildah")
  const result = Bun.spawnSync(
    ["buildah", "--root", join(storage, "root"), "--runroot", join(storage, "run"), "--storage-driver", "vfs", ...args],
    { cwd: root, stdout: "pipe", stderr: "pipe" }
  )
  if (result.exitCode !== 0) throw new Error(`buildah ${args.join(" ")} failed (exit ${result.exitCode}):\n${result.stderr.toString()}${result.stdout.toString()}`)
  return result.stdout.toString()
}

/** Stages and builds the image for `arch`; returns the OCI archive's path. */
export const buildImage = (arch: ImageArch) => {
  if (!hasCommand("buildah")) throw new Error(`buildah is not installed: ${installHint}`)
  stageRootfs(arch)
  const tag = `${imageTag}-${arch}`
  // --timestamp 0: the same inputs give the same image.
  buildah(["bud", "--quiet", "--timestamp", "0", "--platform", `linux/${arch}`, "--build-arg", `TARGETARCH=${arch}`, "-f", join(root, "Dockerfile"), "-t", tag, root])
  const out = imageArchive(arch)
  rmSync(out, { force: true })
  // gzip -9: about 2 MB less to pull than the default level, for a second more here.
  buildah(["push", "--quiet", "--compression-format", "gzip", "--compression-level", "9", tag, `oci-archive:${out}:${imageTag}`])
  buildah(["rmi", "--force", tag])
  return out
}

const imageInputs = () =>
  inputsHash(
    ["src", "package.json", "package-lock.json", "Dockerfile", "scripts/image.ts", "scripts/build.ts", "scripts/release"].map((p) => join(root, p)),
    [gitCommit(), Bun.version]
  )

/** Builds both images unless those in dist/image were built from the same inputs (tests call this). */
export const ensureImages = () =>
  buildUnlessFresh(join(root, "dist/.image-stamp"), imageInputs(), imageArches.map(imageArchive), async () => {
    for (const arch of imageArches) buildImage(arch)
  })

/** The sizes of an image: its layers as pulled (compressed) and unpacked (from the staged root filesystem). */
export const imageSizes = (arch: ImageArch) => {
  const du = (path: string): number =>
    statSync(path).isDirectory() ? readdirSync(path).reduce((sum, e) => sum + du(join(path, e)), 0) : statSync(path).size
  const listing = Bun.spawnSync(["tar", "-tvf", imageArchive(arch)], { stdout: "pipe" }).stdout.toString()
  const blobs = [...listing.matchAll(/^\S+\s+\S+\s+(\d+)\s.*blobs\/sha256\/\S+$/gm)].map((m) => Number(m[1]))
  // The layer is the one big blob; the manifest and config are a few hundred bytes.
  return { archive: statSync(imageArchive(arch)).size, compressedLayers: Math.max(...blobs), unpacked: du(join(imageDir, `rootfs-${arch}`)) }
}

if (import.meta.main) {
  for (const arch of imageArches) {
    const started = performance.now()
    const out = buildImage(arch)
    const s = imageSizes(arch)
    const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`
    console.log(`built ${out} in ${Math.round(performance.now() - started)} ms: ${mb(s.compressedLayers)} compressed (the OCI archive: ${mb(s.archive)}), ${mb(s.unpacked)} unpacked`)
  }
  writeFileSync(join(root, "dist/.image-stamp"), imageInputs())
}
