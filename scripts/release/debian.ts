/**
 * Files from Debian's packages, for either architecture: the glibc the Linux
 * binary links against, tini, the CA certificates. `apt-get download` fetches
 * the .deb (apt checks it against the signed archive index) and `dpkg-deb -x`
 * unpacks it under ~/.cache/halkyon/debian/, where it stays for later builds.
 * Nothing is installed on the machine.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from "node:fs"
import { homedir } from "node:os"
import { join } from "node:path"

const cacheDir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "halkyon", "debian")

/** What to tell whoever lacks a tool or an architecture. */
export const installHint = "run `bash scripts/release/install-tools.sh` as root (Debian): it installs buildah and qemu-user-static and adds arm64 to apt's architectures"

const run = (command: ReadonlyArray<string>, cwd: string) => {
  const result = Bun.spawnSync([...command], { cwd, stdout: "pipe", stderr: "pipe" })
  if (result.exitCode !== 0) {
    throw new Error(`${command.join(" ")} failed (exit ${result.exitCode}): ${result.stderr.toString().trim()}\n${installHint}`)
  }
  return result.stdout.toString()
}

/** Whether `command` is on PATH. */
export const hasCommand = (command: string) => Bun.which(command) !== null

/**
 * The unpacked contents of Debian package `name` for `arch` (a Go arch name:
 * amd64, arm64, or "all"), as a folder to read files from. The candidate
 * version apt knows is used; a cached unpack of it is reused.
 */
export const debianPackage = (name: string, arch: string) => {
  if (!hasCommand("apt-get") || !hasCommand("dpkg-deb")) throw new Error(`apt-get and dpkg-deb are needed to fetch ${name}:${arch} from Debian`)
  const spec = arch === "all" ? name : `${name}:${arch}`
  const version = /^\s*Candidate: (\S+)$/m.exec(run(["apt-cache", "policy", spec], "/"))?.[1]
  if (version === undefined || version === "(none)") {
    throw new Error(`apt knows no ${spec}: ${arch === "arm64" ? "arm64 is not among apt's architectures; " : ""}${installHint}`)
  }
  const dir = join(cacheDir, `${name}_${version.replaceAll(":", "%3a")}_${arch}`)
  if (existsSync(dir)) return dir
  const work = `${dir}.partial`
  rmSync(work, { recursive: true, force: true })
  mkdirSync(work, { recursive: true })
  run(["apt-get", "download", `${spec}=${version}`], work)
  const deb = readdirSync(work).find((f) => f.endsWith(".deb"))
  if (deb === undefined) throw new Error(`apt-get download ${spec} wrote no .deb`)
  run(["dpkg-deb", "-x", deb, "root"], work)
  // Complete unpacks only: a build killed halfway leaves a .partial folder, redone next time.
  renameSync(join(work, "root"), dir)
  rmSync(work, { recursive: true, force: true })
  return dir
}
