/**
 * How a download shows its progress: on a terminal, a bar redrawn in place
 * on stderr with bytes, total and speed; elsewhere (CI, a pod's log), an
 * info line every few seconds, so that a slow download is never silent.
 */
import { Effect } from "effect"

export interface Progress {
  /** Counts bytes received; a plain function, called for every piece of a download. */
  readonly advance: (bytes: number) => void
  readonly finish: Effect.Effect<void>
}

const megabytes = (bytes: number) => `${(bytes / 1_000_000).toFixed(1)} MB`

const BarWidth = 24
const RedrawMs = 100
const LogEveryMs = 5_000

/** `log` receives the periodic lines written off a terminal. */
export const progressFor = (
  label: string,
  total: number | undefined,
  log: (line: string) => void,
  terminal = process.stderr.isTTY === true
): Progress => {
  const started = Date.now()
  let received = 0
  let shownAt = 0
  let drawn = false
  const describe = () => {
    const seconds = (Date.now() - started) / 1000
    const speed = seconds > 0 ? `${megabytes(received / seconds)}/s` : ""
    return total === undefined || total === 0
      ? `${megabytes(received)}  ${speed}`
      : `${megabytes(received)} / ${megabytes(total)}  ${Math.floor((received / total) * 100)}%  ${speed}`
  }
  const bar = () => {
    if (total === undefined || total === 0) return ""
    const filled = Math.min(BarWidth, Math.round((received / total) * BarWidth))
    return `[${"#".repeat(filled)}${"-".repeat(BarWidth - filled)}] `
  }
  return {
    advance: (bytes) => {
      received += bytes
      const now = Date.now()
      if (terminal) {
        if (now - shownAt < RedrawMs) return
        shownAt = now
        drawn = true
        process.stderr.write(`\r\x1b[K${label} ${bar()}${describe()}`)
        return
      }
      if (now - (shownAt || started) < LogEveryMs) return
      shownAt = now
      log(`downloading ${label}: ${describe()}`)
    },
    finish: Effect.sync(() => {
      if (drawn) process.stderr.write("\r\x1b[K")
    })
  }
}
