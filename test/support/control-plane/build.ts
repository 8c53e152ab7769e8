// Builds (once) and caches the real kube-apiserver and etcd binaries that tests and demos run.
//
// Both upstream modules carry `replace` directives, so `go install module@version` refuses them.
// Instead we generate one tiny wrapper module per binary that `require`s the upstream module and
// holds a main package calling the real command. Each binary gets its own wrapper because
// k8s.io/kubernetes requires etcd v3.7 indirectly: in one shared module, minimal version selection
// would silently upgrade the etcd server we ask for. kubectl and kube-controller-manager, built from
// the same Kubernetes release, are each cached in a folder of their own with their own lock: adding
// them never invalidates a finished kube-apiserver/etcd cache.
//
//   bun test/support/control-plane/build.ts   # builds all four; prints the folder holding kube-apiserver and etcd

import {
  accessSync,
  closeSync,
  constants,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync
} from "node:fs"
import { homedir } from "node:os"
import { dirname, join } from "node:path"

/** The Kubernetes release whose kube-apiserver we build (Go module k8s.io/kubernetes). */
export const KUBERNETES_VERSION = "v1.37.2"
/** The etcd release we build (Go module go.etcd.io/etcd/server/v3). */
export const ETCD_VERSION = "v3.6.16"

export interface ControlPlaneBinaries {
  apiserver: string
  etcd: string
}

/** Folder holding every cached control-plane build: `${XDG_CACHE_HOME:-~/.cache}/halkyon/control-plane`. */
export function controlPlaneCacheRoot(): string {
  const xdg = process.env.XDG_CACHE_HOME
  const base = xdg !== undefined && xdg !== "" ? xdg : join(homedir(), ".cache")
  return join(base, "halkyon", "control-plane")
}

/** Folder holding the binaries of the pinned versions. */
export function controlPlaneBinDir(): string {
  return join(controlPlaneCacheRoot(), `${KUBERNETES_VERSION}-${ETCD_VERSION}`)
}

/**
 * Returns paths to kube-apiserver and etcd, building them on first use.
 * With `KUBEBUILDER_ASSETS` set (controller-runtime envtest convention) the binaries in that
 * folder are used as they are and nothing is built.
 */
export async function ensureControlPlaneBinaries(): Promise<ControlPlaneBinaries> {
  const assets = process.env.KUBEBUILDER_ASSETS
  if (assets !== undefined && assets !== "") return requireBinaries(assets, "KUBEBUILDER_ASSETS")

  const dir = controlPlaneBinDir()
  const cached = findBinaries(dir)
  if (cached !== undefined) return cached

  mkdirSync(controlPlaneCacheRoot(), { recursive: true })
  const release = await acquireLock(`${dir}.lock`)
  try {
    // Another process may have finished the build while we waited for the lock.
    return findBinaries(dir) ?? (await buildInto(dir))
  } finally {
    release()
  }
}

/** Folder holding kubectl of the pinned Kubernetes release, apart from the kube-apiserver/etcd folder. */
export function kubectlBinDir(): string {
  return join(controlPlaneCacheRoot(), `kubectl-${KUBERNETES_VERSION}`)
}

/** Folder holding kube-controller-manager of the pinned Kubernetes release, apart from the other binaries. */
export function controllerManagerBinDir(): string {
  return join(controlPlaneCacheRoot(), `kube-controller-manager-${KUBERNETES_VERSION}`)
}

/**
 * Returns the path to kubectl of the same release as kube-apiserver, building it on first use
 * (`KUBEBUILDER_ASSETS/kubectl` when that folder is given, as envtest ships one).
 */
export function ensureKubectl(): Promise<string> {
  return ensureKubernetesCommand(KUBECTL)
}

/**
 * Returns the path to kube-controller-manager of the same release as kube-apiserver, building it on
 * first use (`KUBEBUILDER_ASSETS/kube-controller-manager` when that folder has one: envtest's do not).
 */
export function ensureControllerManager(): Promise<string> {
  return ensureKubernetesCommand(CONTROLLER_MANAGER)
}

/** One more command of the Kubernetes release, cached in a folder of its own. */
interface KubernetesCommand {
  name: string
  dir: () => string
  main: string
  /** Arguments that make it print its version, as a smoke test before caching. */
  versionArgs: string
  /** Whether a KUBEBUILDER_ASSETS folder without it means "build ours" rather than an error. */
  optionalInAssets: boolean
}

async function ensureKubernetesCommand(command: KubernetesCommand): Promise<string> {
  const assets = process.env.KUBEBUILDER_ASSETS
  if (assets !== undefined && assets !== "") {
    const given = join(assets, command.name)
    if (isExecutable(given)) return given
    if (!command.optionalInAssets) throw new Error(`KUBEBUILDER_ASSETS=${assets} must contain an executable ${command.name}`)
  }
  const dir = command.dir()
  const path = join(dir, command.name)
  if (isExecutable(path)) return path

  mkdirSync(controlPlaneCacheRoot(), { recursive: true })
  const release = await acquireLock(`${dir}.lock`)
  try {
    if (!isExecutable(path)) await buildKubernetesCommandInto(command, dir)
    return path
  } finally {
    release()
  }
}

function binaryPaths(dir: string): ControlPlaneBinaries {
  return { apiserver: join(dir, "kube-apiserver"), etcd: join(dir, "etcd") }
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

function findBinaries(dir: string): ControlPlaneBinaries | undefined {
  const paths = binaryPaths(dir)
  return isExecutable(paths.apiserver) && isExecutable(paths.etcd) ? paths : undefined
}

function requireBinaries(dir: string, origin: string): ControlPlaneBinaries {
  const found = findBinaries(dir)
  if (found === undefined) {
    throw new Error(`${origin}=${dir} must contain executable kube-apiserver and etcd binaries`)
  }
  return found
}

// ---------------------------------------------------------------------------------------------
// Lock: two test files starting at once must not both spend ten minutes building.

const LOCK_POLL_MS = 1000

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM means the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

function readLockOwner(lockPath: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(lockPath, "utf8"), 10)
    return Number.isFinite(pid) ? pid : undefined
  } catch {
    return undefined // vanished or half-written: treat as "try again"
  }
}

/** Exclusive-creates `lockPath` holding our pid; waits while a live process owns it. */
async function acquireLock(lockPath: string): Promise<() => void> {
  let announced = false
  for (;;) {
    try {
      const fd = openSync(lockPath, "wx")
      writeFileSync(fd, String(process.pid))
      closeSync(fd)
      return () => rmSync(lockPath, { force: true })
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error
    }
    const owner = readLockOwner(lockPath)
    if (owner !== undefined && !isAlive(owner)) {
      // A build killed midway (Ctrl-C, SIGKILL) leaves its lock behind; its staging folder is
      // discarded too, so taking over is safe.
      rmSync(lockPath, { force: true })
      continue
    }
    if (!announced) {
      process.stderr.write(`halkyon: waiting for another control-plane build (pid ${owner ?? "?"}) to finish…\n`)
      announced = true
    }
    await Bun.sleep(LOCK_POLL_MS)
  }
}

// ---------------------------------------------------------------------------------------------
// Build

function goBinary(): string {
  // Bun's PATH in tests often lacks the Go toolchain, so fall back to the standard install folder.
  return process.env.GO ?? Bun.which("go") ?? "/usr/local/go/bin/go"
}

function goEnv(): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined) env[key] = value
  env.CGO_ENABLED = "0" // static binaries that run on any Linux host without a C toolchain
  // -mod=mod lets `go build` fill in go.sum of the freshly generated wrapper module.
  env.GOFLAGS = "-mod=mod -buildvcs=false"
  return env
}

function elapsed(startMs: number): string {
  return `${((performance.now() - startMs) / 1000).toFixed(1)}s`
}

function log(message: string): void {
  process.stderr.write(`halkyon: ${message}\n`)
}

/** Runs a go command; its output is kept quiet unless it fails (a cold build downloads hundreds of modules). */
async function runGo(args: string[], cwd: string): Promise<string> {
  const proc = Bun.spawn([goBinary(), ...args], { cwd, env: goEnv(), stdin: "ignore", stdout: "pipe", stderr: "pipe" })
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited
  ])
  if (code !== 0) {
    throw new Error(`go ${args.join(" ")} failed in ${cwd} (exit ${code}):\n${stderr.split("\n").slice(-60).join("\n")}`)
  }
  return stdout
}

interface GoModJson {
  Go?: string
  Godebug?: { Key: string; Value: string }[] | null
  Require?: { Path: string; Version: string }[] | null
}

/** Reads a module's go.mod (through the module proxy / cache) as `go mod edit -json` gives it. */
async function readUpstreamGoMod(module: string, version: string, cwd: string): Promise<GoModJson> {
  const info = JSON.parse(await runGo(["mod", "download", "-json", `${module}@${version}`], cwd)) as { GoMod?: string; Error?: string }
  if (info.GoMod === undefined) throw new Error(`cannot download ${module}@${version}: ${info.Error ?? "no go.mod"}`)
  return JSON.parse(await runGo(["mod", "edit", "-json", info.GoMod], cwd)) as GoModJson
}

/**
 * k8s.io/kubernetes requires its staging repositories (k8s.io/api, k8s.io/client-go, …) as v0.0.0 and
 * points them at ./staging with replace directives that do not apply to us. Each is published
 * separately as v0.<minor>.<patch>, so map every v0.0.0 requirement onto that tag. Only required
 * modules are mapped: some replaced-but-unused ones (sample-controller) are not published for
 * every release, and replacing them would make `go` try to fetch them.
 */
function stagingReplacements(kubernetesGoMod: GoModJson): string[] {
  const stagingVersion = KUBERNETES_VERSION.replace(/^v1\./, "v0.")
  return (kubernetesGoMod.Require ?? [])
    .filter((req) => req.Path.startsWith("k8s.io/") && req.Version === "v0.0.0")
    .map((req) => `\t${req.Path} => ${req.Path} ${stagingVersion}`)
}

async function localGoVersion(cwd: string): Promise<string> {
  return (await runGo(["env", "GOVERSION"], cwd)).trim().replace(/^go/, "")
}

const APISERVER_MAIN = `// Generated by halkyon test/support/control-plane/build.ts: same as k8s.io/kubernetes/cmd/kube-apiserver.
package main

import (
	"os"
	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
`

const ETCD_MAIN = `// Generated by halkyon test/support/control-plane/build.ts: same as the etcd binary's main.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
`

const KUBECTL_MAIN = `// Generated by halkyon test/support/control-plane/build.ts: same as k8s.io/kubernetes/cmd/kubectl.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"

	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

func main() {
	logs.GlogSetter(cmd.GetLogVerbosity(os.Args)) // nolint:errcheck
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
`

const CONTROLLER_MANAGER_MAIN =
  `// Generated by halkyon test/support/control-plane/build.ts: same as k8s.io/kubernetes/cmd/kube-controller-manager.
package main

import (
	"os"
	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
`

const KUBECTL: KubernetesCommand = {
  name: "kubectl",
  dir: kubectlBinDir,
  main: KUBECTL_MAIN,
  versionArgs: "version --client",
  optionalInAssets: false
}
const CONTROLLER_MANAGER: KubernetesCommand = {
  name: "kube-controller-manager",
  dir: controllerManagerBinDir,
  main: CONTROLLER_MANAGER_MAIN,
  versionArgs: "--version",
  optionalInAssets: true
}

/** A wrapper module requiring k8s.io/kubernetes at the pinned release, whose main is `main`. */
async function writeKubernetesModule(srcDir: string, goVersion: string, name: string, main: string): Promise<void> {
  mkdirSync(srcDir, { recursive: true })
  const upstream = await readUpstreamGoMod("k8s.io/kubernetes", KUBERNETES_VERSION, srcDir)
  const godebug = (upstream.Godebug ?? []).map((d) => `godebug ${d.Key}=${d.Value}\n`).join("")
  const goMod = `module halkyon.local/control-plane/${name}\n\ngo ${goVersion}\n\n${godebug}\n` +
    `require k8s.io/kubernetes ${KUBERNETES_VERSION}\n\nreplace (\n${stagingReplacements(upstream).join("\n")}\n)\n`
  writeFileSync(join(srcDir, "go.mod"), goMod)
  writeFileSync(join(srcDir, "main.go"), main)
}

function writeEtcdModule(srcDir: string, goVersion: string): void {
  mkdirSync(srcDir, { recursive: true })
  writeFileSync(
    join(srcDir, "go.mod"),
    `module halkyon.local/control-plane/etcd\n\ngo ${goVersion}\n\nrequire go.etcd.io/etcd/server/v3 ${ETCD_VERSION}\n`
  )
  writeFileSync(join(srcDir, "main.go"), ETCD_MAIN)
}

/** Stamps the release into the binary so /version reports it rather than v0.0.0-master. */
function kubernetesVersionLdflags(): string {
  const [major, minor] = KUBERNETES_VERSION.replace(/^v/, "").split(".")
  return ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"]
    .flatMap((pkg) => [
      `-X ${pkg}.gitVersion=${KUBERNETES_VERSION}`,
      `-X ${pkg}.gitMajor=${major ?? ""}`,
      `-X ${pkg}.gitMinor=${minor ?? ""}`,
      `-X ${pkg}.gitTreeState=clean`
    ])
    .join(" ")
}

async function goBuild(srcDir: string, output: string, extraLdflags = ""): Promise<void> {
  await runGo(["build", "-trimpath", `-ldflags=-s -w ${extraLdflags}`.trim(), "-o", output, "."], srcDir)
}

/** Removes staging folders left by builds that were killed midway (their owner pid is gone). */
function removeAbandonedStaging(root: string, prefix: string): void {
  for (const name of readdirSync(root)) {
    if (!name.startsWith(prefix)) continue
    const pid = Number.parseInt(name.slice(prefix.length), 10)
    if (Number.isFinite(pid) && !isAlive(pid)) rmSync(join(root, name), { recursive: true, force: true })
  }
}

/**
 * Builds both binaries in a staging folder, then renames the finished folder onto `dir`, so an
 * interrupted build never leaves a cache that looks complete.
 */
async function buildInto(dir: string): Promise<ControlPlaneBinaries> {
  const root = controlPlaneCacheRoot()
  const prefix = `.staging-${KUBERNETES_VERSION}-${ETCD_VERSION}-`
  removeAbandonedStaging(root, prefix)
  const staging = join(root, `${prefix}${process.pid}`)
  rmSync(staging, { recursive: true, force: true })
  const out = join(staging, "out")
  mkdirSync(out, { recursive: true })

  const start = performance.now()
  log(`building kube-apiserver ${KUBERNETES_VERSION} and etcd ${ETCD_VERSION} with ${goBinary()} (first run only; can take 10+ minutes)…`)
  try {
    const goVersion = await localGoVersion(staging)
    const staged = binaryPaths(out)

    let step = performance.now()
    writeEtcdModule(join(staging, "src", "etcd"), goVersion)
    await goBuild(join(staging, "src", "etcd"), staged.etcd)
    log(`built etcd in ${elapsed(step)}`)

    step = performance.now()
    await writeKubernetesModule(join(staging, "src", "kube-apiserver"), goVersion, "kube-apiserver", APISERVER_MAIN)
    await goBuild(join(staging, "src", "kube-apiserver"), staged.apiserver, kubernetesVersionLdflags())
    log(`built kube-apiserver in ${elapsed(step)}`)

    await checkRuns(staged.etcd, "--version", ETCD_VERSION.replace(/^v/, ""))
    await checkRuns(staged.apiserver, "--version", KUBERNETES_VERSION)
    publish(out, dir)
    log(`control plane binaries ready in ${dir} (took ${elapsed(start)})`)
    return binaryPaths(dir)
  } finally {
    rmSync(staging, { recursive: true, force: true })
  }
}

/** Builds one command in a staging folder and renames it onto `dir`, as `buildInto` does for the control plane. */
async function buildKubernetesCommandInto(command: KubernetesCommand, dir: string): Promise<void> {
  const root = controlPlaneCacheRoot()
  const prefix = `.staging-${command.name}-${KUBERNETES_VERSION}-`
  removeAbandonedStaging(root, prefix)
  const staging = join(root, `${prefix}${process.pid}`)
  rmSync(staging, { recursive: true, force: true })
  const out = join(staging, "out")
  mkdirSync(out, { recursive: true })

  const start = performance.now()
  log(`building ${command.name} ${KUBERNETES_VERSION} with ${goBinary()} (first run only)…`)
  try {
    const srcDir = join(staging, "src", command.name)
    await writeKubernetesModule(srcDir, await localGoVersion(staging), command.name, command.main)
    await goBuild(srcDir, join(out, command.name), kubernetesVersionLdflags())
    await checkRuns(join(out, command.name), command.versionArgs, KUBERNETES_VERSION)
    try {
      renameSync(out, dir)
    } catch (error) {
      if (!isExecutable(join(dir, command.name))) throw error
    }
    log(`${command.name} ready in ${dir} (took ${elapsed(start)})`)
  } finally {
    rmSync(staging, { recursive: true, force: true })
  }
}

/** A smoke test before caching: a binary that cannot print its version must not be cached. */
async function checkRuns(binary: string, flag: string, expected: string): Promise<void> {
  const proc = Bun.spawn([binary, ...flag.split(" ")], { stdin: "ignore", stdout: "pipe", stderr: "pipe" })
  const [stdout, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited])
  if (code !== 0 || !stdout.includes(expected)) {
    throw new Error(`${binary} ${flag} printed ${JSON.stringify(stdout)} (exit ${code}), expected ${expected}`)
  }
}

function publish(staged: string, dir: string): void {
  try {
    renameSync(staged, dir)
  } catch (error) {
    // Without a working lock another builder may have won the race; its result is as good as ours.
    if (findBinaries(dir) === undefined) throw error
  }
}

if (import.meta.main) {
  // One after the other: kubectl and kube-controller-manager then reuse most packages from Go's build cache.
  const binaries = await ensureControlPlaneBinaries()
  await ensureKubectl()
  await ensureControllerManager()
  console.log(dirname(binaries.apiserver))
}
