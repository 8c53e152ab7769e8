/**
 * The work queue between watches and workers, with client-go's guarantees:
 * - a key is queued at most once however many events name it (coalescing);
 * - a key is never handed to two workers at once: a key added while it is
 *   being processed is queued again when its worker is done;
 * - failures are retried with per-key exponential backoff, reset on success;
 * - delayed adds (requeue after) coalesce to the earliest.
 *
 * It knows nothing of Kubernetes: keys are strings ("namespace/name").
 * `onChange` is told its sizes whenever they change, for gauges: a gauge
 * updated only after a reconcile would read 0 with a key just added, being
 * processed or waiting out a delay.
 */
import { Clock, Duration, Effect, Queue, type Scope } from "effect"
import { makeKeyedBackoff } from "../config/Backoff.ts"

export interface BackoffOptions {
  readonly baseMs: number
  readonly maxMs: number
}

export interface QueueSizes {
  /** Keys ready for a worker. */
  readonly waiting: number
  /** Keys not finished: ready, being processed, or scheduled to be added later (requeue after, backoff), each counted once. */
  readonly pending: number
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
  /** Keys waiting, being processed or scheduled for later, each counted once. */
  readonly pending: Effect.Effect<number>
}

export const makeWorkQueue = Effect.fnUntraced(function*(
  backoff: BackoffOptions,
  onChange?: (sizes: QueueSizes) => void
): Effect.fn.Return<WorkQueue, never, Scope.Scope> {
  const ready = yield* Queue.unbounded<string>()
  const dirty = new Set<string>()
  const processing = new Set<string>()
  // Per key, its capped exponential backoff; forgotten on success.
  const failures = makeKeyedBackoff(backoff.baseMs, backoff.maxMs)
  const scheduled = new Map<string, number>()
  const scope = yield* Effect.scope
  // Kept per key as it changes, so that sizes cost nothing however many keys there are. A ready key is dirty
  // and not being processed (one added meanwhile is queued when its worker is done).
  const waitingKeys = new Set<string>()
  const unfinished = new Set<string>()
  let last: QueueSizes = { waiting: 0, pending: 0 }
  const touch = (key: string) => {
    if (dirty.has(key) && !processing.has(key)) waitingKeys.add(key)
    else waitingKeys.delete(key)
    if (dirty.has(key) || processing.has(key) || scheduled.has(key)) unfinished.add(key)
    else unfinished.delete(key)
    if (onChange === undefined || (waitingKeys.size === last.waiting && unfinished.size === last.pending)) return
    last = { waiting: waitingKeys.size, pending: unfinished.size }
    onChange(last)
  }

  const add = (key: string) =>
    Effect.suspend(() => {
      if (dirty.has(key)) return Effect.void
      dirty.add(key)
      touch(key)
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
      touch(key)
      return yield* Effect.sleep(Duration.millis(delayMs)).pipe(
        Effect.andThen(
          Effect.suspend(() => {
            if (scheduled.get(key) !== at) return Effect.void
            // Added before it leaves the schedule, so that it never looks finished in between.
            return add(key).pipe(Effect.andThen(Effect.sync(() => {
              scheduled.delete(key)
              touch(key)
            })))
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
        touch(key)
      })
    )
  )

  const done = (key: string) =>
    Effect.suspend(() => {
      processing.delete(key)
      touch(key)
      return dirty.has(key) ? Queue.offer(ready, key).pipe(Effect.asVoid) : Effect.void
    })

  return {
    add,
    addAfter,
    addRateLimited,
    forget: (key) => Effect.sync(() => failures.reset(key)),
    take,
    done,
    depth: Queue.size(ready),
    pending: Effect.sync(() => unfinished.size)
  }
})
