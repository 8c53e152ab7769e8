/**
 * What a process that hosts plugins does to itself on Linux so that plugins
 * running as the same user cannot read it: PR_SET_DUMPABLE 0 (through libc,
 * with bun:ffi) makes its /proc/<pid>/environ, mem, maps, fd and the like
 * owned by root and refused to other processes of the same uid, and forbids
 * them ptrace. It is reset by execve, so the plugins it starts stay ordinary.
 *
 * It cannot hide what any process may read of another (cmdline, stat), nor
 * files the user can read (a kubeconfig): docs/security.md says what holds.
 */
import { Effect } from "effect"
import type { HostSettings } from "../config/HostConfig.ts"
import { hidingAvailable } from "./PluginLauncher.ts"

const PR_SET_DUMPABLE = 4
const PR_GET_DUMPABLE = 3

export type Hardening = { readonly applied: true } | { readonly applied: false; readonly reason: string }

/** Calls prctl(PR_SET_DUMPABLE, 0); says why not when it cannot. */
export const makeUndumpable: Effect.Effect<Hardening> = Effect.promise(async (): Promise<Hardening> => {
  if (process.platform !== "linux") return { applied: false, reason: `not Linux (${process.platform})` }
  if (typeof Bun === "undefined") return { applied: false, reason: "not running on Bun (bun:ffi is needed)" }
  try {
    const { dlopen, FFIType } = await import("bun:ffi")
    const args = [FFIType.i32, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64]
    const libc = dlopen("libc.so.6", { prctl: { args, returns: FFIType.i32 } })
    try {
      if (libc.symbols.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) !== 0) return { applied: false, reason: "prctl(PR_SET_DUMPABLE) failed" }
      return libc.symbols.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) === 0
        ? { applied: true }
        : { applied: false, reason: "prctl(PR_GET_DUMPABLE) still reports dumpable" }
    } finally {
      libc.close()
    }
  } catch (e) {
    return { applied: false, reason: `libc could not be loaded: ${e instanceof Error ? e.message : String(e)}` }
  }
})

/** Hardens this process once, and says what local plugins can read of its credentials. */
export const hardenPluginHost = (settings: HostSettings) =>
  Effect.gen(function*() {
    const outcome = yield* makeUndumpable
    if (outcome.applied) yield* Effect.logDebug("this process's /proc entries are now unreadable to plugins (PR_SET_DUMPABLE 0)")
    else {
      yield* Effect.logWarning(
        `plugins running as this user can read this process's /proc entries (environment included): ${outcome.reason}`
      )
    }
    const hidden = settings.hiddenFromPlugins ?? []
    if (settings.pluginRunner !== undefined || hidden.length === 0) return
    const hiding = hidingAvailable(hidden)
    if (hiding.ok) yield* Effect.logDebug(`plugins cannot read ${hidden.join(", ")} (Landlock)`)
    else yield* Effect.logWarning(`plugins can read the kubeconfig files (${hidden.join(", ")}): ${hiding.reason}`)
  })
