/**
 * Backoff: capped exponential delays, per key, driven by Effect's Schedule
 * (and so by its Clock: a TestClock steps them in tests). The work queue
 * backs off failed keys with it, the reconciler Capabilities whose plugin is
 * unavailable, and the plugin host restarts of a crashing plugin.
 */
import { Clock, Duration, Effect, Schedule } from "effect"

/** base, 2 × base, 4 × base … up to max. */
export const cappedExponential = (baseMs: number, maxMs: number) =>
  Schedule.min([Schedule.exponential(Duration.millis(baseMs)), Schedule.spaced(Duration.millis(maxMs))])

export interface KeyedBackoff {
  /** The key's next delay, in ms: base at the first call after a reset, then doubling to max. */
  readonly next: (key: string) => Effect.Effect<number>
  /** Starts the key's backoff again from its base. */
  readonly reset: (key: string) => void
}

export const makeKeyedBackoff = (baseMs: number, maxMs: number): KeyedBackoff => {
  const firstStep = Schedule.toStep(cappedExponential(baseMs, maxMs))
  const steps = new Map<string, Effect.Success<typeof firstStep>>()
  return {
    next: (key) =>
      Effect.gen(function*() {
        let step = steps.get(key)
        if (step === undefined) steps.set(key, step = yield* firstStep)
        // The schedule never ends: its step never halts.
        const [, delay] = yield* step(yield* Clock.currentTimeMillis, undefined).pipe(Effect.orDie)
        return Duration.toMillis(delay)
      }),
    reset: (key) => void steps.delete(key)
  }
}
