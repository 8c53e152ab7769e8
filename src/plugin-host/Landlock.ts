/**
 * Keeps a local plugin from reading the operator's kubeconfig files, where the
 * kernel offers Landlock (Linux 5.13+), without privileges. Landlock confines
 * the process that asks, and what it executes afterwards: so the host starts
 * its own executable in this mode (HALKYON_LANDLOCK_EXEC names the plan),
 * which restricts itself and then execve()s the plugin, before any of the CLI
 * loads. Both are done through libc with bun:ffi.
 *
 * Landlock only grants: to hide a few files, the rules grant reading
 * everything else, i.e. every sibling of each hidden file and of each of its
 * folders, walking down from /. Only file reading is restricted: the plugin
 * still lists folders, writes, executes and makes sockets as before. A file
 * created after the plugin starts in a folder on a hidden file's path is
 * unreadable to it too.
 */
import { dlopen, FFIType, ptr } from "bun:ffi"
import { closeSync, lstatSync, openSync, readdirSync, realpathSync } from "node:fs"
import { join } from "node:path"
import { LandlockExecKey } from "./LandlockKey.ts"

const SYS_landlock_create_ruleset = 444
const SYS_landlock_add_rule = 445
const SYS_landlock_restrict_self = 446
const LANDLOCK_CREATE_RULESET_VERSION = 1
const LANDLOCK_RULE_PATH_BENEATH = 1
const LANDLOCK_ACCESS_FS_READ_FILE = 1 << 2
const PR_SET_NO_NEW_PRIVS = 38
const O_PATH = 0o10000000
const O_CLOEXEC = 0o2000000

export interface ExecPlan {
  /** Files and folders the plugin must not read. */
  readonly hidden: ReadonlyArray<string>
  readonly command: string
  readonly args: ReadonlyArray<string>
  /** Variables the plugin gets that this helper must not see (Bun's own: BUN_BE_BUN would make it a bare runtime). */
  readonly env: Readonly<Record<string, string>>
}

const libc = () =>
  dlopen("libc.so.6", {
    syscall: { args: [FFIType.i64, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64], returns: FFIType.i64 },
    prctl: { args: [FFIType.i32, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64], returns: FFIType.i32 },
    execve: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 }
  }).symbols

/** The Landlock ABI version the kernel offers; 0 when it offers none (or this is not Linux). */
export const landlockAbi = (): number => {
  if (process.platform !== "linux") return 0
  try {
    const lib = libc()
    const abi = Number(lib.syscall(SYS_landlock_create_ruleset, 0, 0, LANDLOCK_CREATE_RULESET_VERSION, 0))
    return abi > 0 ? abi : 0
  } catch {
    return 0
  }
}

/** The paths to grant so that everything but `hidden` (real paths) stays readable. */
export const grantsAround = (hidden: ReadonlyArray<string>, list = (dir: string) => readdirSync(dir)): Array<string> => {
  const grants: Array<string> = []
  const walk = (dir: string) => {
    let entries: Array<string>
    try {
      entries = list(dir)
    } catch {
      return
    }
    for (const entry of entries) {
      const path = join(dir, entry)
      if (hidden.includes(path)) continue
      if (hidden.some((h) => h.startsWith(`${path}/`))) walk(path)
      else grants.push(path)
    }
  }
  if (hidden.length > 0) walk("/")
  return grants
}

/** Real paths of what exists among `paths`; a link is hidden by its target. */
export const realHidden = (paths: ReadonlyArray<string>): Array<string> => {
  const real = new Set<string>()
  for (const path of paths) {
    try {
      real.add(realpathSync(path))
    } catch {
      // absent: nothing to hide
    }
  }
  return [...real]
}

/** Confines this process as the plan says, then becomes the plugin. Returns only on failure, with why. */
export const confineAndExec = (plan: ExecPlan, env: Record<string, string>): string => {
  const lib = libc()
  const ruleset = new BigUint64Array([BigInt(LANDLOCK_ACCESS_FS_READ_FILE)])
  const fd = Number(lib.syscall(SYS_landlock_create_ruleset, BigInt(ptr(ruleset)), 8, 0, 0))
  if (fd < 0) return "landlock_create_ruleset failed"
  const rule = new DataView(new ArrayBuffer(12))
  for (const path of grantsAround(realHidden(plan.hidden))) {
    // A link would grant its target: what it points to is granted (or not) where it really is.
    if (lstatSync(path, { throwIfNoEntry: false })?.isSymbolicLink() !== false) continue
    let parent: number
    try {
      parent = openSync(path, O_PATH | O_CLOEXEC)
    } catch {
      continue
    }
    rule.setBigUint64(0, BigInt(LANDLOCK_ACCESS_FS_READ_FILE), true)
    rule.setInt32(8, parent, true)
    const added = Number(lib.syscall(SYS_landlock_add_rule, fd, LANDLOCK_RULE_PATH_BENEATH, BigInt(ptr(rule)), 0))
    closeSync(parent)
    if (added !== 0) return `landlock_add_rule failed for ${path}`
  }
  if (lib.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) !== 0) return "prctl(PR_SET_NO_NEW_PRIVS) failed"
  if (Number(lib.syscall(SYS_landlock_restrict_self, fd, 0, 0, 0)) !== 0) return "landlock_restrict_self failed"
  const strings = (list: ReadonlyArray<string>) => {
    const buffers = list.map((s) => Buffer.from(`${s}\0`))
    const pointers = new BigUint64Array(buffers.length + 1)
    buffers.forEach((b, i) => (pointers[i] = BigInt(ptr(b))))
    return { buffers, pointers }
  }
  const argv = strings([plan.command, ...plan.args])
  const envp = strings(Object.entries(env).map(([k, v]) => `${k}=${v}`))
  lib.execve(ptr(Buffer.from(`${plan.command}\0`)), ptr(argv.pointers), ptr(envp.pointers))
  return `execve ${plan.command} failed`
}

/**
 * The helper's whole life, synchronous so that it ends (in execve) before
 * anything else of halkyon loads: read the plan, confine, become the plugin;
 * exit 126 with why if that fails.
 */
export const runLandlockExec = () => {
  const raw = process.env[LandlockExecKey] ?? ""
  let plan: ExecPlan
  try {
    const parsed = JSON.parse(raw) as ExecPlan
    const valid = Array.isArray(parsed.hidden) && typeof parsed.command === "string" && Array.isArray(parsed.args)
    if (!valid || typeof parsed.env !== "object" || parsed.env === null) throw new Error("bad plan")
    plan = parsed
  } catch {
    process.stderr.write(`halkyon: ${LandlockExecKey} does not hold a plan: ${raw.slice(0, 200)}\n`)
    process.exit(126)
  }
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (k !== LandlockExecKey && v !== undefined) env[k] = v
  const why = confineAndExec(plan, { ...env, ...plan.env })
  process.stderr.write(`halkyon: cannot start the plugin confined: ${why}\n`)
  process.exit(126)
}
