/**
 * The memory limit of each local plugin process (`--plugin-memory-limit`),
 * enforced the strongest way this process is allowed to:
 *
 * - `cgroup-v2`: a child cgroup per plugin process with `memory.max` (and no
 *   swap), where this process's own cgroup v2 group has the memory controller
 *   and is writable (root in a container, or a delegated group). The kernel's
 *   OOM killer kills the plugin; `memory.events` counts it (`oom_kill`).
 * - `cgroup-v1`: the same with the v1 memory controller (`memory.limit_in_bytes`,
 *   `memory.oom_control`'s `oom_kill`), on hosts still mounting v1.
 * - `watchdog`: no cgroup is writable (an ordinary user without delegation):
 *   the resident set size of the plugin is sampled from /proc every
 *   SampleEveryMs and the plugin SIGKILLed once over the limit. It is not the
 *   kernel's guarantee: a plugin allocating faster than the sampling may go
 *   over for up to one interval, and its children are not counted.
 *
 * Each launch reports, after the process exits, whether the limit killed it
 * and by which of the three, with the evidence (the kernel's count or the
 * watchdog's own sample). It does not restart anything: PluginHost does.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Duration, Effect, Schedule, type Scope } from "effect"
export { formatBytes, parseMemoryQuantity } from "../config/HostConfig.ts"

export type MemoryEnforcement = "cgroup-v2" | "cgroup-v1" | "watchdog"

/** Why a plugin was killed for its memory, for logs, conditions and metrics. */
export interface MemoryKill {
  readonly by: MemoryEnforcement
  readonly limitBytes: number
  /** The kernel's oom_kill count of the plugin's group, or the watchdog's last sample. */
  readonly evidence: string
}

/** One plugin process put under the limit. */
export interface LimitedProcess {
  /** After the process exited: whether the limit killed it. */
  readonly killed: Effect.Effect<MemoryKill | undefined>
}

export interface MemoryLimiter {
  readonly enforcement: MemoryEnforcement
  readonly limitBytes: number
  /** Why a stronger enforcement was not available, for the start-up log. */
  readonly fallbackReason: string | undefined
  /** The plugin's group, ready for its next process (before it is spawned); then the process put in it. */
  readonly prepare: (plugin: string) => Effect.Effect<(pid: number) => Effect.Effect<LimitedProcess, never, Scope.Scope>>
  /** Removes the groups made, once their processes are gone (when the host stops). */
  readonly cleanup: Effect.Effect<void>
}

const SampleEveryMs = 50

const read = (path: string) => readFileSync(path, "utf8")
const tryRead = (path: string) => {
  try {
    return read(path)
  } catch {
    return undefined
  }
}
/** `key value` lines (memory.events, memory.oom_control) as numbers. */
const counter = (text: string | undefined, key: string) => {
  const match = new RegExp(`^${key} (\\d+)$`, "m").exec(text ?? "")
  return match === null ? 0 : Number(match[1])
}

/** This process's cgroup paths, from /proc/self/cgroup. */
const ownGroups = () => {
  const lines = (tryRead("/proc/self/cgroup") ?? "").split("\n")
  const v2 = lines.find((l) => l.startsWith("0::"))?.slice(3)
  const v1 = lines.map((l) => /^\d+:([^:]*):(.*)$/.exec(l)).find((m) => m !== null && m[1]?.split(",").includes("memory"))?.[2]
  return { v2, v1 }
}

interface GroupLayout {
  readonly enforcement: "cgroup-v2" | "cgroup-v1"
  /** Where the plugin groups are made. */
  readonly parent: string
}

/** Finds a writable cgroup v2 group with the memory controller for children, or says why not. */
const cgroupV2 = (own: string | undefined): GroupLayout | string => {
  if (own === undefined) return "no cgroup v2 hierarchy"
  const mount = existsSync("/sys/fs/cgroup/cgroup.controllers") ? "/sys/fs/cgroup" : "/sys/fs/cgroup/unified"
  const dir = join(mount, own)
  const controllers = tryRead(join(dir, "cgroup.controllers"))
  if (controllers === undefined) return `cgroup v2 is not mounted at ${mount}`
  if (!controllers.split(/\s+/).includes("memory")) return `cgroup v2 group ${dir} lacks the memory controller`
  try {
    if (!read(join(dir, "cgroup.subtree_control")).split(/\s+/).includes("memory")) {
      // A group holding processes cannot hand controllers to children: this process moves into a leaf first.
      try {
        writeFileSync(join(dir, "cgroup.subtree_control"), "+memory")
      } catch {
        const leaf = join(dir, "halkyon-operator")
        mkdirSync(leaf, { recursive: true })
        writeFileSync(join(leaf, "cgroup.procs"), String(process.pid))
        writeFileSync(join(dir, "cgroup.subtree_control"), "+memory")
      }
    }
    return { enforcement: "cgroup-v2", parent: dir }
  } catch (e) {
    return `cgroup v2 group ${dir} is not writable (${e instanceof Error ? e.message : String(e)})`
  }
}

/** Finds a writable cgroup v1 memory group, or says why not. */
const cgroupV1 = (own: string | undefined): GroupLayout | string => {
  if (own === undefined) return "no cgroup v1 memory controller"
  const dir = join("/sys/fs/cgroup/memory", own)
  const probe = join(dir, `halkyon-probe-${process.pid}`)
  try {
    mkdirSync(probe)
    rmdirSync(probe)
    return { enforcement: "cgroup-v1", parent: dir }
  } catch (e) {
    return `cgroup v1 memory group ${dir} is not writable (${e instanceof Error ? e.message : String(e)})`
  }
}

const groupLimiter = (layout: GroupLayout, limitBytes: number, fallbackReason: string | undefined): MemoryLimiter => {
  const v2 = layout.enforcement === "cgroup-v2"
  // One group per plugin, kept across its restarts: its oom_kill count is the plugin's history, for whoever inspects it.
  const made = new Set<string>()
  const prepare = (plugin: string) =>
    Effect.sync(() => {
      const dir = join(layout.parent, `halkyon-plugin-${plugin.replace(/[^A-Za-z0-9_.-]/g, "_")}-${process.pid}`)
      mkdirSync(dir, { recursive: true })
      made.add(dir)
      if (v2) {
        writeFileSync(join(dir, "memory.max"), String(limitBytes))
        // Without this, a plugin over its limit would be swapped out, slow, rather than killed.
        if (existsSync(join(dir, "memory.swap.max"))) writeFileSync(join(dir, "memory.swap.max"), "0")
      } else {
        writeFileSync(join(dir, "memory.limit_in_bytes"), String(limitBytes))
        if (existsSync(join(dir, "memory.memsw.limit_in_bytes"))) {
          writeFileSync(join(dir, "memory.memsw.limit_in_bytes"), String(limitBytes))
        }
      }
      return dir
    }).pipe(Effect.map((dir) => (pid: number) =>
      Effect.sync(() => {
        // The runtime's start-up before this write is charged to the operator's group, not the plugin's.
        try {
          appendFileSync(join(dir, "cgroup.procs"), String(pid))
        } catch {
          // Exited already (nothing to limit), or the group went away: no kill to report.
          return { killed: Effect.undefined } satisfies LimitedProcess
        }
        const events = () => tryRead(join(dir, v2 ? "memory.events" : "memory.oom_control"))
        const before = counter(events(), "oom_kill")
        const limited: LimitedProcess = {
          killed: Effect.sync(() => {
            const after = counter(events(), "oom_kill")
            return after > before
              ? { by: layout.enforcement, limitBytes, evidence: `${v2 ? "memory.events" : "memory.oom_control"} oom_kill ${after}` }
              : undefined
          })
        }
        return limited
      })
    ))
  // After the launcher's finalizers killed the processes: only an empty group can go.
  const cleanup = Effect.forEach([...made], (dir) =>
    Effect.sync(() => rmdirSync(dir)).pipe(
      Effect.retry({ schedule: Schedule.spaced(Duration.millis(100)), times: 20 }),
      Effect.ignore
    ), { discard: true })
  return { enforcement: layout.enforcement, limitBytes, fallbackReason, prepare, cleanup }
}

/** Resident set size of a process in bytes, from /proc; undefined once it is gone. */
export const residentBytes = (pid: number): number | undefined => {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(tryRead(`/proc/${pid}/status`) ?? "")
  return match === null ? undefined : Number(match[1]) * 1024
}

const watchdogLimiter = (limitBytes: number, fallbackReason: string): MemoryLimiter => ({
  enforcement: "watchdog",
  limitBytes,
  fallbackReason,
  cleanup: Effect.void,
  prepare: () =>
    Effect.succeed((pid: number) =>
      Effect.gen(function*() {
        let kill: MemoryKill | undefined
        yield* Effect.sync(() => {
          const rss = residentBytes(pid)
          if (rss === undefined || rss <= limitBytes || kill !== undefined) return rss !== undefined
          kill = { by: "watchdog", limitBytes, evidence: `resident set ${Math.ceil(rss / 1024)}Ki sampled over the limit` }
          try {
            process.kill(pid, "SIGKILL")
          } catch {
            // Gone already.
          }
          return false
        }).pipe(
          Effect.repeat({ schedule: Schedule.spaced(Duration.millis(SampleEveryMs)), while: (alive) => alive }),
          Effect.forkScoped
        )
        const limited: LimitedProcess = { killed: Effect.sync(() => kill) }
        return limited
      })
    )
})

/**
 * The limiter for `limitBytes` on this host: a cgroup v2 group, else a v1
 * memory group, else the watchdog, with the reasons the stronger ones failed.
 */
export const makeMemoryLimiter = (limitBytes: number): MemoryLimiter => {
  if (process.platform !== "linux") return watchdogLimiter(limitBytes, `cgroups are Linux's (this is ${process.platform})`)
  const own = ownGroups()
  const v2 = cgroupV2(own.v2)
  if (typeof v2 !== "string") return groupLimiter(v2, limitBytes, undefined)
  const v1 = cgroupV1(own.v1)
  if (typeof v1 !== "string") return groupLimiter(v1, limitBytes, v2)
  return watchdogLimiter(limitBytes, `${v2}; ${v1}`)
}
