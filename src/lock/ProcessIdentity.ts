/**
 * Who holds a staging folder or the folder's mutex: a pid and, where the
 * system tells it (Linux: /proc/<pid>/stat), the process's start time. A
 * restarted container's process usually gets the pid its predecessor had;
 * the start time tells them apart, so the leftovers of the old one are
 * recognised as stale at once. Without /proc (macOS, Windows) the pid alone
 * decides, as before.
 */
import { readFileSync } from "node:fs"

export interface ProcessIdentity {
  readonly pid: number
  /** Clock ticks since boot at which the process started; "" where unknown. */
  readonly start: string
}

/** Field 22 of /proc/<pid>/stat, read after the command name (which may hold spaces and parentheses). */
export const startTimeOf = (pid: number): string => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? ""
  } catch {
    return ""
  }
}

export const thisProcess: ProcessIdentity = { pid: process.pid, start: startTimeOf(process.pid) }

/** `<pid>.<start>`, as staging names and the mutex file carry it. */
export const formatIdentity = (identity: ProcessIdentity) =>
  identity.start === "" ? String(identity.pid) : `${identity.pid}.${identity.start}`

/** Reads `<pid>` or `<pid>.<start>`; undefined if it is neither. */
export const parseIdentity = (text: string): ProcessIdentity | undefined => {
  const match = /^(\d+)(?:\.(\d+))?$/.exec(text.trim())
  if (match === null) return undefined
  const pid = Number(match[1])
  return pid > 0 && Number.isSafeInteger(pid) ? { pid, start: match[2] ?? "" } : undefined
}

const pidAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

export const isThisProcess = (identity: ProcessIdentity) =>
  identity.pid === thisProcess.pid && (identity.start === "" || thisProcess.start === "" || identity.start === thisProcess.start)

/** Whether the process that wrote `identity` still runs: same pid, and the same start where both are known. */
export const isRunning = (identity: ProcessIdentity) => {
  if (identity.pid === thisProcess.pid) return isThisProcess(identity)
  if (!pidAlive(identity.pid)) return false
  if (identity.start === "") return true
  const start = startTimeOf(identity.pid)
  return start === "" || start === identity.start
}
