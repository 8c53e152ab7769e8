/**
 * The generic worker loop between a work queue and a reconcile function:
 * failures retried with per-key backoff, requeueAfter honoured, a success
 * forgets the backoff, one key never reconciled twice at once, and on
 * shutdown a reconcile in flight finishes within the timeout or is
 * abandoned. Time is TestClock's.
 */
import { describe, expect, test } from "bun:test"
import { Clock, Deferred, Effect, Exit, Fiber, Logger, Scope } from "effect"
import { TestClock } from "effect/testing"
import { makeWorkQueue } from "../../src/controller/WorkQueue.ts"
import { type ReconcileOutcome, type ReconcileResult, runWorkers } from "../../src/controller/Workers.ts"

class Refused {
  readonly _tag = "Refused"
  readonly message = "refused"
}

interface Harness {
  /** Every reconcile started: key and the clock's time. */
  readonly started: Array<string>
  readonly outcomes: Array<ReconcileOutcome>
  readonly logs: Array<string>
  readonly queue: Effect.Success<ReturnType<typeof makeWorkQueue>>
  /** Closes the workers' scope (a shutdown); completes when they have stopped. */
  readonly stop: Effect.Effect<void>
}

/**
 * Starts workers whose reconcile answers with `answer(key, attempt)` (attempt
 * counts from 1 per key).
 */
const start = Effect.fnUntraced(function*(
  answer: (key: string, attempt: number) => Effect.Effect<ReconcileResult, Refused>,
  options: { readonly concurrency?: number; readonly shutdownTimeoutMs?: number } = {}
) {
  const started: Array<string> = []
  const outcomes: Array<ReconcileOutcome> = []
  const logs: Array<string> = []
  const attempts = new Map<string, number>()
  const queue = yield* makeWorkQueue({ baseMs: 200, maxMs: 5_000 })
  const scope = yield* Scope.make()
  yield* runWorkers({
    kind: "thing",
    queue,
    concurrency: options.concurrency ?? 1,
    shutdownTimeoutMs: options.shutdownTimeoutMs ?? 1_000,
    reconcile: (key) =>
      Effect.gen(function*() {
        const attempt = (attempts.get(key) ?? 0) + 1
        attempts.set(key, attempt)
        started.push(`${key}@${yield* Clock.currentTimeMillis}`)
        return yield* answer(key, attempt)
      }),
    onReconciled: (outcome) => void outcomes.push(outcome)
  }).pipe(
    Scope.provide(scope),
    Effect.provide(Logger.layer([Logger.make((o) => void logs.push(String(o.message)))]))
  )
  const harness: Harness = { started, outcomes, logs, queue, stop: Scope.close(scope, Exit.void) }
  return harness
})

const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) =>
  Effect.runPromise(effect.pipe(Effect.scoped, Effect.provide(TestClock.layer())))

/** Lets the workers run what is ready now, without time passing. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

describe("Workers", () => {
  test("a failure is retried after the key's backoff, which doubles; a success forgets it", () =>
    run(Effect.gen(function*() {
      // Fails twice, succeeds, then fails once more.
      const w = yield* start((_key, attempt) => (attempt === 3 ? Effect.succeed({}) : Effect.fail(new Refused())))
      yield* w.queue.add("a")
      yield* settle
      yield* TestClock.adjust(199)
      expect(w.started).toEqual(["a@0"])
      yield* TestClock.adjust(1)
      yield* settle
      expect(w.started).toEqual(["a@0", "a@200"])
      yield* TestClock.adjust(400)
      yield* settle
      expect(w.started).toEqual(["a@0", "a@200", "a@600"])
      expect(w.outcomes).toEqual(["error", "error", "success"])
      // Forgotten: the next failure waits the base delay again, not 800 ms.
      yield* w.queue.add("a")
      yield* settle
      yield* TestClock.adjust(200)
      yield* settle
      expect(w.started).toEqual(["a@0", "a@200", "a@600", "a@600", "a@800"])
      expect(w.logs).toContain("reconciling thing a failed: refused; retrying in 400 ms")
    })))

  test("requeueAfter: the key is reconciled again after that delay, and not before", () =>
    run(Effect.gen(function*() {
      const w = yield* start((_key, attempt) => Effect.succeed(attempt === 1 ? { requeueAfterMs: 5_000 } : {}))
      yield* w.queue.add("a")
      yield* settle
      yield* TestClock.adjust(4_999)
      yield* settle
      expect(w.started).toEqual(["a@0"])
      yield* TestClock.adjust(1)
      yield* settle
      expect(w.started).toEqual(["a@0", "a@5000"])
      expect(w.outcomes).toEqual(["requeue", "success"])
      yield* TestClock.adjust(60_000)
      expect(w.started.length).toBe(2)
    })))

  test("several workers reconcile different keys at once, never one key twice at once", () =>
    run(Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      let running = 0
      let most = 0
      const busy = new Set<string>()
      let overlap = false
      const w = yield* start((key) =>
        Effect.gen(function*() {
          if (busy.has(key)) overlap = true
          busy.add(key)
          running += 1
          most = Math.max(most, running)
          yield* Deferred.await(gate)
          running -= 1
          busy.delete(key)
          return {}
        }), { concurrency: 3 })
      yield* w.queue.add("a")
      yield* w.queue.add("b")
      yield* settle
      // a changes while it is being reconciled.
      yield* w.queue.add("a")
      yield* settle
      expect(w.started.sort()).toEqual(["a@0", "b@0"])
      yield* Deferred.succeed(gate, undefined)
      yield* settle
      expect(w.started.length).toBe(3)
      expect(most).toBe(2)
      expect(overlap).toBe(false)
    })))

  test("shutdown: a reconcile in flight finishes within the timeout, and the workers stop", () =>
    run(Effect.gen(function*() {
      let finished = false
      const reconcile = () => Effect.sleep(500).pipe(Effect.andThen(Effect.sync(() => void (finished = true))), Effect.as({}))
      const w = yield* start(reconcile, { shutdownTimeoutMs: 1_000 })
      yield* w.queue.add("a")
      yield* settle
      const stopping = yield* Effect.forkChild(w.stop)
      yield* settle
      yield* TestClock.adjust(499)
      yield* settle
      // The shutdown waits for the reconcile.
      expect(stopping.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust(1)
      yield* Fiber.join(stopping)
      expect(finished).toBe(true)
      // Stopped: nothing more is taken.
      yield* w.queue.add("b")
      yield* settle
      expect(w.started).toEqual(["a@0"])
    })))

  test("shutdown: a reconcile that outlasts the timeout is abandoned, with a warning", () =>
    run(Effect.gen(function*() {
      let interrupted = false
      const reconcile = () =>
        Effect.sleep(60_000).pipe(Effect.as({}), Effect.onInterrupt(() => Effect.sync(() => void (interrupted = true))))
      const w = yield* start(reconcile, { shutdownTimeoutMs: 1_000 })
      yield* w.queue.add("a")
      yield* settle
      const stopping = yield* Effect.forkChild(w.stop)
      yield* settle
      yield* TestClock.adjust(999)
      yield* settle
      expect(interrupted).toBe(false)
      yield* TestClock.adjust(1)
      yield* Fiber.join(stopping)
      expect(interrupted).toBe(true)
      expect(w.logs).toContain(
        "reconcile of thing a did not finish within 1000 ms of shutdown: abandoned, it is reconciled again at the next start"
      )
    })))
})
