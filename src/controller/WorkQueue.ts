/**
 * The work queue between watches and workers, with client-go's guarantees:
 * - a key is queued at most once however many events name it (coalescing);
 * - a key is never handed to two workers at once: a key added while it is
 *   being processed is queued again when its worker is done;
 * - failures are retried with per-key exponential backoff, reset on success;
 * - delayed adds (requeue after) coalesce to the earliest.
 *
 * It knows nothing of Kubernetes: keys are strings ("namespace/name").
 */
import { Clock, Duration, Effect, Queue, type Scope } from "effect"
import { makeKeyedBackoff } from "../config/Backoff.ts"

export interface BackoffOptions {
  readonly baseMs: number
  readonly maxMs: number
}

export interface WorkQueue {
  readonly add: (key: string) => Effect.Effect<void>
  readonly addAfter: (key: string, delayMs: number) => Effect.Effect<void>
  /** Adds after the key's backoff, which doubles at each call until `forget`. */
  readonly addRateLimited: (key: string) => Effect.Effect<number>
  readonly forget: (key: string) => Effect.Effect<void>
  /** Waits for a key that no other worker holds. */
  readonly take: Effect.Effect<string>
  readonly done: (key: string) => Effect.Effect<void>
  /** Keys waiting (not counting those being processed). */
  readonly depth: Effect.Effect<number>
}

export const makeWorkQueue = Effect.fnUntraced(function*(backoff: BackoffOptions): Effect.fn.Return<WorkQueue, never, Scope.Scope> {
  const ready = yield* Queue.unbounded<string>()
  const dirty = new Set<string>()
  const processing = new Set<string>()
  // Per key, its capped exponential backoff; forgotten on success.
  const failures = makeKeyedBackoff(backoff.baseMs, backoff.maxMs)
  const scheduled = new Map<string, number>()
  const scope = yield* Effect.scope

  const add = (key: string) =>
    Effect.suspend(() => {
      if (dirty.has(key)) return Effect.void
      dirty.add(key)
      return processing.has(key) ? Effect.void : Queue.offer(ready, key).pipe(Effect.asVoid)
    })

  const addAfter = (key: string, delayMs: number) =>
    Effect.gen(function*() {
      if (delayMs <= 0) return yield* add(key)
      // The Effect clock, not Date.now: it is the one Effect.sleep uses (and TestClock moves).
      const at = (yield* Clock.currentTimeMillis) + delayMs
      const existing = scheduled.get(key)
      if (existing !== undefined && existing <= at) return
      scheduled.set(key, at)
      return yield* Effect.sleep(Duration.millis(delayMs)).pipe(
        Effect.andThen(
          Effect.suspend(() => {
            if (scheduled.get(key) !== at) return Effect.void
            scheduled.delete(key)
            return add(key)
          })
        ),
        Effect.forkIn(scope),
        Effect.asVoid
      )
    })

  const addRateLimited = (key: string) =>
    Effect.gen(function*() {
      const delay = yield* failures.next(key)
      yield* addAfter(key, delay)
      return delay
    })

  const take = Queue.take(ready).pipe(
    Effect.tap((key) =>
      Effect.sync(() => {
        processing.add(key)
        dirty.delete(key)
      })
    )
  )

  const done = (key: string) =>
    Effect.suspend(() => {
      processing.delete(key)
      return dirty.has(key) ? Queue.offer(ready, key).pipe(Effect.asVoid) : Effect.void
    })

  return {
    add,
    addAfter,
    addRateLimited,
    forget: (key) => Effect.sync(() => failures.reset(key)),
    take,
    done,
    depth: Queue.size(ready)
  }
})
