/**
 * An OCI image archive, unpacked as a runtime unpacks it (digests and
 * diff_ids checked), and run from its root filesystem alone, without
 * privileges: in a user namespace (unshare, util-linux) with fresh PID and
 * mount namespaces, its entrypoint PID 1 there, /proc mounted, the root
 * filesystem read-only and writable folders mounted over /tmp and /plugins,
 * as the Deployment of `halkyon manifests` runs it. How the image's users
 * become real depends on what the caller may map: root runs the entrypoint
 * with chroot as the real user; an ordinary user with subordinate ids
 * (/etc/subuid, /etc/subgid, newuidmap: what rootless podman uses) maps 0 to
 * itself and 1-65536 to that range, so distinct users stay distinct; without
 * them, a nested user namespace maps only the image's user, to the caller.
 */
import { createHash } from "node:crypto"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync } from "node:fs"
import { tmpdir, userInfo } from "node:os"
import { join } from "node:path"
import { gunzipSync } from "node:zlib"

/** Extracts with modes as recorded (/tmp 1777); files belong to whoever runs the test, the layer's owners are read from it. */
const untar = (file: string, into: string) => {
  const result = Bun.spawnSync(["tar", "-xpf", file, "-C", into, "--no-same-owner"], { stdout: "pipe", stderr: "pipe" })
  if (result.exitCode !== 0) throw new Error(`tar -xf ${file} failed: ${result.stderr.toString()}`)
}

export interface ImageConfig {
  readonly architecture: string
  readonly os: string
  readonly rootfs: { readonly type: string; readonly diff_ids: ReadonlyArray<string> }
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
  readonly size: number
}

const sha256 = (data: Uint8Array) => `sha256:${createHash("sha256").update(data).digest("hex")}`

/** Unpacks `archive` (an oci-archive) into a fresh folder; returns its config, root filesystem and layer files. */
export const unpackImage = (archive: string) => {
  const dir = mkdtempSync(join(tmpdir(), "halkyon-image-"))
  const layout = join(dir, "layout")
  const rootfs = join(dir, "rootfs")
  mkdirSync(layout)
  mkdirSync(rootfs)
  untar(archive, layout)
  // Every blob read is checked against its descriptor, as a runtime checks what it pulls.
  const blob = (d: Descriptor) => {
    const file = join(layout, "blobs", ...d.digest.split(":"))
    const data = readFileSync(file)
    if (sha256(data) !== d.digest || data.length !== d.size) throw new Error(`${archive}: blob ${d.digest} does not match its descriptor`)
    return { file, data }
  }
  const json = <T>(d: Descriptor) => JSON.parse(blob(d).data.toString("utf8")) as T
  const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8")) as { manifests: ReadonlyArray<Descriptor> }
  if (index.manifests.length !== 1 || index.manifests[0] === undefined) {
    throw new Error(`${archive} holds ${index.manifests.length} manifests, expected one`)
  }
  const manifest = json<{ config: Descriptor; layers: ReadonlyArray<Descriptor> }>(index.manifests[0])
  const config = json<ImageConfig>(manifest.config)
  const diffIds = manifest.layers.map((l) => sha256(gunzipSync(blob(l).data)))
  if (JSON.stringify(diffIds) !== JSON.stringify(config.rootfs.diff_ids)) {
    throw new Error(`${archive}: the layers' diff_ids are not the config's`)
  }
  // Layers in order, with exact modes (/tmp is 1777), as a runtime applies them.
  for (const layer of manifest.layers) untar(blob(layer).file, rootfs)
  return { dir, rootfs, config, layers: manifest.layers.map((l) => ({ ...l, file: blob(l).file })) }
}

/** `rwxr-xr-t` → 1755: the permission string GNU tar lists, as an octal mode. */
const octalMode = (perms: string) => {
  const bit = (i: number, set: string) => (set.includes(perms[i] ?? "-") ? 1 : 0)
  const special = bit(2, "sS") * 4 + bit(5, "sS") * 2 + bit(8, "tT")
  const triple = (i: number) => bit(i, "r") * 4 + bit(i + 1, "w") * 2 + bit(i + 2, "xst")
  return `${special === 0 ? "" : special}${triple(0)}${triple(3)}${triple(6)}`
}

/**
 * Every entry of a gzipped layer, as GNU tar lists it (type, mode, numeric
 * owner, path): `f 755 0:0 /usr/bin/tini`. The owners a runtime gives the files.
 */
export const layerInventory = (layerFile: string) => {
  const listed = Bun.spawnSync(["tar", "--numeric-owner", "-tvzf", layerFile], { stdout: "pipe", stderr: "pipe" })
  if (listed.exitCode !== 0) throw new Error(`tar -tvzf ${layerFile} failed: ${listed.stderr.toString()}`)
  return listed.stdout.toString().trimEnd().split("\n").map((line) => {
    const [perms = "", owner = "", , , , ...name] = line.split(/\s+/)
    const type = perms[0] === "-" ? "f" : perms[0] === "l" ? "l" : perms[0] ?? "?"
    return `${type} ${octalMode(perms.slice(1))} ${owner.replace("/", ":")} /${name.join(" ").replace(/\/$/, "")}`
  })
}

/** The id `pid` runs as inside its own user namespace: its uid here, mapped through its uid_map. */
export const uidInside = (pid: number) => {
  const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1])
  // Read from another namespace, each line is: first id inside, first id as seen here, count.
  for (const line of readFileSync(`/proc/${pid}/uid_map`, "utf8").trim().split("\n")) {
    const [inside = 0, outside = 0, count = 0] = line.trim().split(/\s+/).map(Number)
    if (uid >= outside && uid < outside + count) return inside + (uid - outside)
  }
  throw new Error(`uid ${uid} of process ${pid} is not mapped in its user namespace`)
}

/** The start of the 65536 subordinate ids `file` gives this user, if it gives them. */
const subordinateStart = (file: string) => {
  const { username, uid } = userInfo()
  let text = ""
  try {
    text = readFileSync(file, "utf8")
  } catch {
    return undefined
  }
  for (const line of text.split("\n")) {
    const [name = "", start = "", count = ""] = line.trim().split(":")
    if ((name === username || name === String(uid)) && Number(count) >= 65536) return Number(start)
  }
  return undefined
}

/** The unshare flags of a user namespace mapping 0 to the caller and 1-65536 to its subordinate ids, when it has them. */
const subordinateMapping = () => {
  if (Bun.which("newuidmap") === null || Bun.which("newgidmap") === null) return undefined
  const uids = subordinateStart("/etc/subuid")
  const gids = subordinateStart("/etc/subgid")
  if (uids === undefined || gids === undefined) return undefined
  return ["--user", "--map-root-user", `--map-users=${uids},1,65536`, `--map-groups=${gids},1,65536`]
}

const isRoot = () => process.getuid?.() === 0

/**
 * Fails, in one line, unless files and processes can have distinct owners (the
 * operator's and the plugin-runner's): as root, or with subordinate ids.
 */
export const requireSubordinateIds = () => {
  if (isRoot() || subordinateMapping() !== undefined) return
  throw new Error(
    `this test gives the operator and the plugin-runner distinct user ids: ${userInfo().username} needs 65536 subordinate ids ` +
      "in /etc/subuid and /etc/subgid and newuidmap/newgidmap (package uidmap), as rootless podman does"
  )
}

/** Runs `script` (sh, with `path` as $1) as root of a user namespace holding the pod's ids, or as root. */
const asIdsRoot = (script: string, path: string) => {
  requireSubordinateIds()
  const command = ["/bin/sh", "-c", script, "sh", path]
  const result = Bun.spawnSync(isRoot() ? command : ["unshare", ...(subordinateMapping() ?? []), ...command], {
    stdout: "pipe",
    stderr: "pipe"
  })
  if (result.exitCode !== 0) throw new Error(`${script} ${path}: ${result.stderr.toString().trim()}`)
}

/** Gives `path` an owner and mode as a pod's volume has them (the ids as the containers see them). */
export const ownAs = (path: string, uid: number, gid: number, mode: number) =>
  asIdsRoot(`chown ${uid}:${gid} "$1" && chmod ${mode.toString(8)} "$1"`, path)

/** Removes what `ownAs` gave away, and what the containers wrote. */
export const removeAsOwner = (path: string) => asIdsRoot(`rm -rf "$1"`, path)

/**
 * Fails, in one line, unless this machine lets an ordinary user run the image:
 * unshare and findmnt (util-linux) and unprivileged user namespaces.
 */
export const requireUserNamespaces = () => {
  for (const tool of ["unshare", "findmnt"]) {
    if (Bun.which(tool) === null) throw new Error(`running the image needs ${tool}: install util-linux`)
  }
  const probe = Bun.spawnSync(["unshare", "--user", "--map-root-user", "--mount", "--pid", "--fork", "true"], {
    stdout: "pipe",
    stderr: "pipe"
  })
  if (probe.exitCode !== 0) {
    throw new Error(
      `running the image needs unprivileged user namespaces, which this kernel refuses (${probe.stderr.toString().trim()}): ` +
        "allow them (sysctl user.max_user_namespaces=15000, kernel.unprivileged_userns_clone=1 where it exists, " +
        "or an AppArmor profile for unshare)"
    )
  }
}

export interface ContainerOptions {
  /** Host folders mounted over container paths (read-write), e.g. { "/tmp": hostDir }. */
  readonly mounts?: Record<string, string>
  /** Extra environment, beside the image's Env. */
  readonly env?: Record<string, string>
}

/**
 * The command that runs the image's entrypoint with `args` (its Cmd when
 * none) as the image's user, in its working folder, inside `rootfs` only.
 */
export const containerCommand = (rootfs: string, image: ImageConfig, args?: ReadonlyArray<string>, options: ContainerOptions = {}) => {
  const [uid = "0", gid = uid] = (image.config.User ?? "0:0").split(":")
  if (!/^\d+$/.test(uid) || !/^\d+$/.test(gid)) throw new Error(`the image's User must be numeric uid:gid, got ${image.config.User}`)
  const argv = [...(image.config.Entrypoint ?? []), ...(args ?? image.config.Cmd ?? [])]
  const env = [...(image.config.Env ?? []), ...Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`)]
  const unshare = Bun.which("unshare") ?? "unshare"
  const chroot = Bun.which("chroot", { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" }) ?? "/usr/sbin/chroot"
  const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`
  const mapping = isRoot() ? [] : subordinateMapping()
  const start = mapping === undefined
    // Only the caller's id: a nested namespace maps the image's user (and only it) to the outer root, which is the caller.
    ? `${q(unshare)} --user --map-user=${uid} --map-group=${gid} --root=${q(rootfs)} --wd=${q(image.config.WorkingDir ?? "/")} --`
    : `${q(chroot)} --userspec=${uid}:${gid} ${q(rootfs)}`
  const script = [
    "set -e",
    // Mount points, as a runtime makes them (the image has no /proc).
    ...["/proc", ...Object.keys(options.mounts ?? {})].map((at) => `mkdir -p ${q(join(rootfs, at))}`),
    // Read-only, as readOnlyRootFilesystem: true makes it. A user namespace may not clear the flags the
    // mount it binds from has (nosuid, nodev, ...): the remount repeats them.
    `mount --bind ${q(rootfs)} ${q(rootfs)}`,
    `flags=$(findmnt -n -o VFS-OPTIONS -T ${q(rootfs)} | sed -e 's/^rw,//' -e 's/,rw,/,/')`,
    `mount -o "remount,bind,ro,$flags" ${q(rootfs)}`,
    `mount -t proc proc ${q(join(rootfs, "proc"))}`,
    ...Object.entries(options.mounts ?? {}).map(([at, from]) => `mount --bind ${q(from)} ${q(join(rootfs, at))}`),
    `exec /usr/bin/env -i ${env.map(q).join(" ")} ${start} ${argv.map(q).join(" ")}`
  ].join("\n")
  // A new PID namespace makes the entrypoint PID 1; when it exits the kernel ends whatever is left.
  // --kill-child: the container goes when this command is killed.
  const namespaces = [...(mapping ?? ["--user", "--map-root-user"]), "--pid", "--kill-child", "--mount", "--propagation", "private"]
  return [unshare, ...namespaces, "--", "/bin/sh", "-c", script]
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

/** The PID (on the host) of the container's PID 1: the only child of `unshare --kill-child` (which forks). */
export const containerInit = (unsharePid: number) => childrenOf(unsharePid)[0]

/**
 * Ends a container that containerCommand started, whatever state it is in:
 * its PID 1 first (the kernel then ends everything in its PID namespace),
 * then `unshare`. Killing `unshare` alone is not enough where the container
 * changes user: a change of credentials clears the parent-death signal that
 * --kill-child gave PID 1, which then outlives it with the operator and its
 * plugins.
 */
export const killContainer = (unshare: { readonly pid: number; kill(signal?: number | NodeJS.Signals): void }) => {
  const init = containerInit(unshare.pid)
  try {
    if (init !== undefined) process.kill(init, "SIGKILL")
  } catch {
    // already gone
  }
  unshare.kill("SIGKILL")
}
