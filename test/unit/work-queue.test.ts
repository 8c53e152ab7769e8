/**
 * The work queue's guarantees (client-go's): coalescing, one worker per key,
 * per-key exponential backoff reset by forget, delayed adds coalescing to
 * the earliest, and timers that end with the queue's scope. Time is
 * TestClock's: no test waits for real.
 */
import { describe, expect, test } from "bun:test"
import { Effect, Exit, Fiber, Scope } from "effect"
import { TestClock } from "effect/testing"
import { makeWorkQueue } from "../../src/controller/WorkQueue.ts"

const backoff = { baseMs: 200, maxMs: 5_000 }
const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) =>
  Effect.runPromise(effect.pipe(Effect.scoped, Effect.provide(TestClock.layer())))

describe("WorkQueue", () => {
  test("a key added many times is queued once", () =>
    run(Effect.gen(function*() {
      const queue = yield* makeWorkQueue(backoff)
      for (let i = 0; i < 3; i++) yield* queue.add("ns/a")
      yield* queue.add("ns/b")
      expect(yield* queue.depth).toBe(2)
      expect(yield* queue.take).toBe("ns/a")
      expect(yield* queue.take).toBe("ns/b")
      expect(yield* queue.depth).toBe(0)
    })))

  test("a key is never handed to two workers at once: added while processed, it waits for done", () =>
    run(Effect.gen(function*() {
      const queue = yield* makeWorkQueue(backoff)
      yield* queue.add("ns/a")
      expect(yield* queue.take).toBe("ns/a")
      // Changed while a worker holds it: noted, not handed out.
      yield* queue.add("ns/a")
      yield* queue.add("ns/a")
      const second = yield* Effect.forkChild(queue.take)
      yield* Effect.yieldNow
      expect(yield* queue.depth).toBe(0)
      expect(second.pollUnsafe()).toBeUndefined()
      yield* queue.done("ns/a")
      expect(yield* Fiber.join(second)).toBe("ns/a")
      yield* queue.done("ns/a")
      // Processed once more for both adds, and then not again.
      expect(yield* queue.depth).toBe(0)
    })))

  test("failures back off per key, doubling to the maximum; forget starts again", () =>
    run(Effect.gen(function*() {
      const queue = yield* makeWorkQueue(backoff)
      const delays: Array<number> = []
      for (let i = 0; i < 7; i++) delays.push(yield* queue.addRateLimited("ns/a"))
      expect(delays).toEqual([200, 400, 800, 1600, 3200, 5000, 5000])
      // Another key has its own count.
      expect(yield* queue.addRateLimited("ns/b")).toBe(200)
      yield* queue.forget("ns/a")
      expect(yield* queue.addRateLimited("ns/a")).toBe(200)
    })))

  test("a rate-limited key is handed out only once its backoff has passed", () =>
    run(Effect.gen(function*() {
      const queue = yield* makeWorkQueue(backoff)
      yield* queue.addRateLimited("ns/a")
      yield* queue.addRateLimited("ns/a")
      // The first delay (200 ms) is pending; the second (400 ms) is later and is coalesced into it.
      yield* TestClock.adjust(199)
      expect(yield* queue.depth).toBe(0)
      yield* TestClock.adjust(1)
      expect(yield* queue.depth).toBe(1)
      expect(yield* queue.take).toBe("ns/a")
      yield* queue.done("ns/a")
      yield* TestClock.adjust(1_000)
      expect(yield* queue.depth).toBe(0)
    })))

  test("delayed adds coalesce to the earliest", () =>
    run(Effect.gen(function*() {
      const queue = yield* makeWorkQueue(backoff)
      yield* queue.addAfter("ns/a", 1_000)
      yield* queue.addAfter("ns/a", 300)
      yield* queue.addAfter("ns/a", 2_000)
      yield* TestClock.adjust(299)
      expect(yield* queue.depth).toBe(0)
      yield* TestClock.adjust(1)
      expect(yield* queue.take).toBe("ns/a")
      yield* queue.done("ns/a")
      yield* TestClock.adjust(5_000)
      expect(yield* queue.depth).toBe(0)
      // A zero delay is an add.
      yield* queue.addAfter("ns/b", 0)
      expect(yield* queue.depth).toBe(1)
    })))

  test("closing the queue's scope cancels its pending delayed adds", () =>
    run(Effect.gen(function*() {
      const scope = yield* Scope.make()
      const queue = yield* makeWorkQueue(backoff).pipe(Scope.provide(scope))
      yield* queue.addAfter("ns/a", 1_000)
      yield* queue.addRateLimited("ns/b")
      yield* Scope.close(scope, Exit.void)
      yield* TestClock.adjust(10_000)
      expect(yield* queue.depth).toBe(0)
    })))

  test("pending counts each key waiting, being processed or scheduled for later once, and every change of either is reported once", () =>
    run(Effect.gen(function*() {
      const reported: Array<string> = []
      const queue = yield* makeWorkQueue(backoff, (s) => reported.push(`${s.waiting}/${s.pending}`))
      yield* queue.add("ns/a")
      yield* queue.addAfter("ns/b", 500)
      expect(yield* queue.pending).toBe(2)
      expect(yield* queue.take).toBe("ns/a")
      // Being processed and added again: one key.
      yield* queue.add("ns/a")
      expect(yield* queue.depth).toBe(0)
      expect(yield* queue.pending).toBe(2)
      yield* queue.done("ns/a")
      expect(yield* queue.take).toBe("ns/a")
      yield* queue.done("ns/a")
      // Only the delayed key is left: the ready queue is empty, the work is not.
      expect(yield* queue.depth).toBe(0)
      expect(yield* queue.pending).toBe(1)
      yield* TestClock.adjust(500)
      expect(yield* queue.pending).toBe(1)
      expect(yield* queue.take).toBe("ns/b")
      yield* queue.done("ns/b")
      expect(yield* queue.pending).toBe(0)
      expect(reported).toEqual(["1/1", "1/2", "0/2", "1/2", "0/2", "0/1", "1/1", "0/1", "0/0"])
    })))
})
