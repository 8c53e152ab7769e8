/**
 * An OCI image archive, unpacked as a runtime unpacks it, and run from its
 * root filesystem alone: a chroot in fresh PID and mount namespaces (its
 * entrypoint is PID 1 there), /proc mounted, the root filesystem read-only and
 * fresh writable folders mounted over /tmp and /plugins, as the Deployment of
 * `halkyon manifests` runs it. Needs root (unshare, mount, chroot).
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

/** GNU tar, as root: owners and modes as recorded, no umask. */
const untar = (file: string, into: string) => {
  const result = Bun.spawnSync(["tar", "-xpf", file, "-C", into, "--same-owner", "--numeric-owner"], { stdout: "pipe", stderr: "pipe" })
  if (result.exitCode !== 0) throw new Error(`tar -xf ${file} failed: ${result.stderr.toString()}`)
}

export interface ImageConfig {
  readonly architecture: string
  readonly os: string
  readonly config: {
    readonly User?: string
    readonly Env?: ReadonlyArray<string>
    readonly Entrypoint?: ReadonlyArray<string>
    readonly Cmd?: ReadonlyArray<string>
    readonly WorkingDir?: string
    readonly ExposedPorts?: Record<string, unknown>
  }
}

interface Descriptor {
  readonly mediaType: string
  readonly digest: string
}

/** Unpacks `archive` (an oci-archive) into a fresh folder; returns its config and root filesystem. */
export const unpackImage = (archive: string) => {
  const dir = mkdtempSync(join(tmpdir(), "halkyon-image-"))
  const layout = join(dir, "layout")
  const rootfs = join(dir, "rootfs")
  mkdirSync(layout)
  mkdirSync(rootfs)
  untar(archive, layout)
  const blob = (d: Descriptor) => join(layout, "blobs", ...d.digest.split(":"))
  const json = <T>(d: Descriptor) => JSON.parse(readFileSync(blob(d), "utf8")) as T
  const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8")) as { manifests: ReadonlyArray<Descriptor> }
  if (index.manifests.length !== 1 || index.manifests[0] === undefined) throw new Error(`${archive} holds ${index.manifests.length} manifests, expected one`)
  const manifest = json<{ config: Descriptor; layers: ReadonlyArray<Descriptor & { size: number }> }>(index.manifests[0])
  // Layers in order, with owners and exact modes (/tmp is 1777), as a runtime applies them.
  for (const layer of manifest.layers) untar(blob(layer), rootfs)
  return { dir, rootfs, config: json<ImageConfig>(manifest.config), layers: manifest.layers }
}

export interface ContainerOptions {
  /** Host folders mounted over container paths (read-write), e.g. { "/tmp": hostDir }. */
  readonly mounts?: Record<string, string>
  /** Extra environment, beside the image's Env. */
  readonly env?: Record<string, string>
}

/**
 * The command that runs the image's entrypoint with `args` (its Cmd when
 * none) as the image's user, inside `rootfs` only.
 */
export const containerCommand = (rootfs: string, image: ImageConfig, args?: ReadonlyArray<string>, options: ContainerOptions = {}) => {
  const user = image.config.User ?? "0:0"
  const argv = [...(image.config.Entrypoint ?? []), ...(args ?? image.config.Cmd ?? [])]
  const env = [...(image.config.Env ?? []), ...Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`)]
  const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`
  const script = [
    "set -e",
    // Mount points, as a runtime makes them (the image has no /proc).
    ...["/proc", ...Object.keys(options.mounts ?? {})].map((at) => `mkdir -p ${q(join(rootfs, at))}`),
    // Read-only, as readOnlyRootFilesystem: true makes it.
    `mount --bind ${q(rootfs)} ${q(rootfs)}`,
    `mount -o remount,bind,ro ${q(rootfs)}`,
    `mount -t proc proc ${q(join(rootfs, "proc"))}`,
    ...Object.entries(options.mounts ?? {}).map(([at, from]) => `mount --bind ${q(from)} ${q(join(rootfs, at))}`),
    `exec env -i ${env.map(q).join(" ")} /usr/sbin/chroot --userspec=${q(user)} ${q(rootfs)} ${argv.map(q).join(" ")}`
  ].join("\n")
  // A new PID namespace makes the entrypoint PID 1; when it exits the kernel ends whatever is left.
  return ["unshare", "--pid", "--fork", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script]
}

/** The children of a process (any of its threads may have started them), from /proc. */
export const childrenOf = (pid: number) =>
  readdirSync("/proc")
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => {
      try {
        // The parent is the 2nd field after the command, which is in parentheses and may hold spaces.
        return Number(readFileSync(`/proc/${e}/stat`, "utf8").split(") ")[1]?.split(" ")[1]) === pid
      } catch {
        return false // it exited while we looked
      }
    })
    .map(Number)

/** The PID (on the host) of the container's PID 1: the only child of `unshare --fork`. */
export const containerInit = (unsharePid: number) => childrenOf(unsharePid)[0]
