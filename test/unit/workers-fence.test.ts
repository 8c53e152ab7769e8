/**
 * Fencing: once leadership is lost, closing the workers interrupts a
 * reconcile in progress at once instead of giving it the graceful shutdown
 * timeout, during which another leader may already write.
 */
import { expect, test } from "bun:test"
import { Effect, Exit, Fiber, Layer, Logger, Scope } from "effect"
import { TestClock } from "effect/testing"
import { runWorkers } from "../../src/controller/Workers.ts"
import { makeWorkQueue } from "../../src/controller/WorkQueue.ts"

const quiet = Layer.mergeAll(Logger.layer([]), TestClock.layer())

/** Starts one worker on a reconcile that never ends; resolves once it is in progress. */
const stuckWorkers = (fence: boolean) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    let started!: () => void
    const inProgress = new Promise<void>((resolve) => (started = resolve))
    let interrupted = false
    const workers = yield* Effect.gen(function*() {
      const queue = yield* makeWorkQueue({ baseMs: 10, maxMs: 100 })
      const running = yield* runWorkers({
        kind: "capability",
        queue,
        concurrency: 1,
        shutdownTimeoutMs: 60_000,
        reconcile: () =>
          Effect.sync(() => started()).pipe(
            Effect.andThen(Effect.never),
            Effect.onInterrupt(() => Effect.sync(() => void (interrupted = true)))
          )
      })
      yield* queue.add("ns/stuck")
      return running
    }).pipe(Scope.provide(scope))
    yield* Effect.promise(() => inProgress)
    if (fence) yield* workers.fence
    // Closing waits for the reconcile: 60 s unfenced (on the test clock), not at all fenced.
    const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
    yield* TestClock.adjust("59 seconds")
    yield* Effect.yieldNow
    const after59s = { closed: closing.pollUnsafe() !== undefined, interrupted }
    yield* TestClock.adjust("2 seconds")
    yield* Fiber.await(closing)
    return { after59s, after61s: { closed: true, interrupted } }
  }).pipe(Effect.provide(quiet))

test("fenced, a reconcile in progress is interrupted at once when the workers close", async () => {
  expect(await Effect.runPromise(stuckWorkers(true))).toEqual({
    after59s: { closed: true, interrupted: true },
    after61s: { closed: true, interrupted: true }
  })
})

test("unfenced, it is given the graceful shutdown timeout of 60 s, then interrupted", async () => {
  expect(await Effect.runPromise(stuckWorkers(false))).toEqual({
    after59s: { closed: false, interrupted: false },
    after61s: { closed: true, interrupted: true }
  })
})
