/**
 * CallGuard: a plugin's budget of calls in flight and its circuit breaker,
 * over a fake connection whose calls take the time the test gives them
 * (TestClock), so nothing here sleeps.
 */
import { describe, expect, test } from "bun:test"
import { Deferred, Duration, Effect, Fiber, type Scope } from "effect"
import { TestClock } from "effect/testing"
import { PluginTimeout } from "../../src/plugin-client/Errors.ts"
import type { PluginConnection } from "../../src/plugin-client/PluginClient.ts"
import { Breaker, guardConnection } from "../../src/plugin-host/CallGuard.ts"
import { makeKeyedBackoff } from "../../src/config/Backoff.ts"
import { PluginRetryBaseMs, PluginRetryMaxMs } from "../../src/reconciler/Reconciler.ts"

describe("breaker state machine", () => {
  test("trips once, on the threshold's timeout in a row", () => {
    const breaker = new Breaker(3)
    expect([breaker.record("Build", "timeout"), breaker.record("Build", "timeout")]).toEqual([false, false])
    expect(breaker.state).toBe("closed")
    expect(breaker.record("Build", "timeout")).toBe(true)
    expect(breaker.state).toBe("open")
    expect(breaker.record("Build", "timeout")).toBe(false)
  })
  test("an answer to the method, even an error, resets its count", () => {
    const breaker = new Breaker(2)
    breaker.record("Build", "timeout")
    breaker.record("Build", "ok")
    breaker.record("Build", "timeout")
    breaker.record("Build", "other")
    expect(breaker.consecutiveTimeouts).toBe(0)
    expect(breaker.record("Build", "timeout")).toBe(false)
    expect(breaker.record("Build", "timeout")).toBe(true)
  })
  test("answers to another method do not hide a method that always hangs", () => {
    const breaker = new Breaker(3)
    const trips = [1, 2, 3].flatMap(() => [breaker.record("CheckValidity", "ok"), breaker.record("BuildDependents", "timeout")])
    expect(trips).toEqual([false, false, false, false, false, true])
  })
})

/** A connection whose BuildDependents waits `callMs` then answers, or times out after it when `hang`. */
const fakeConnection = (callMs: number, hang: () => boolean): PluginConnection => {
  const unused = Effect.die(new Error("unused"))
  return {
    describe: unused,
    checkValidity: () => Effect.succeed([]),
    buildDependents: () =>
      Effect.sleep(Duration.millis(callMs)).pipe(
        Effect.andThen(
          hang() ? Effect.fail(new PluginTimeout({ plugin: "p", method: "BuildDependents", timeoutMs: callMs })) : Effect.succeed([])
        )
      ),
    updateDependent: () => unused,
    evaluateConditions: () => Effect.succeed([]),
    ping: Effect.void,
    shutdown: Effect.void
  }
}

const run = <A, E>(body: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromise(Effect.scoped(body).pipe(Effect.provide(TestClock.layer())))

describe("call budget", () => {
  test("calls past the budget wait at most waitMs, then fail PluginBusy; the budget's own calls finish", () =>
    run(Effect.gen(function*() {
      const busy: Array<string> = []
      const guard = yield* guardConnection(fakeConnection(10_000, () => false), {
        plugin: "slow",
        permits: 2,
        waitMs: 500,
        threshold: 3,
        onBusy: (p) => void busy.push(p)
      })
      const [first, second, third] = yield* Effect.forEach(
        [1, 2, 3],
        () => Effect.forkChild(Effect.result(guard.connection.buildDependents({})))
      )
      yield* TestClock.adjust("499 millis")
      expect(third?.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust("1 millis")
      const refused = yield* Fiber.join(third as NonNullable<typeof third>)
      expect(refused._tag === "Failure" ? refused.failure._tag : "Success").toBe("PluginBusy")
      expect(busy).toEqual(["slow"])
      yield* TestClock.adjust("10 seconds")
      for (const fiber of [first, second]) expect((yield* Fiber.join(fiber as NonNullable<typeof first>))._tag).toBe("Success")
    })))

  test("a permit freed within waitMs lets the waiting call through", () =>
    run(Effect.gen(function*() {
      const guard = yield* guardConnection(fakeConnection(300, () => false), { plugin: "p", permits: 1, waitMs: 500, threshold: 3 })
      const first = yield* Effect.forkChild(guard.connection.buildDependents({}))
      const second = yield* Effect.forkChild(Effect.result(guard.connection.buildDependents({})))
      yield* TestClock.adjust("600 millis")
      yield* Fiber.join(first)
      expect((yield* Fiber.join(second))._tag).toBe("Success")
    })))
})

describe("circuit breaker", () => {
  test("after 3 timeouts in a row: tripped with a reason, and calls fail at once as PluginUnavailable", () =>
    run(Effect.gen(function*() {
      const trips: Array<string> = []
      const guard = yield* guardConnection(fakeConnection(1_000, () => true), {
        plugin: "hung",
        permits: 4,
        waitMs: 100,
        threshold: 3,
        onTrip: (p) => void trips.push(p)
      })
      const tripped = yield* Deferred.make<string>()
      yield* guard.tripped.pipe(Effect.flatMap((r) => Deferred.succeed(tripped, r)), Effect.forkChild)
      for (let i = 0; i < 3; i++) {
        const call = yield* Effect.forkChild(Effect.flip(guard.connection.buildDependents({})))
        yield* TestClock.adjust("1 second")
        expect((yield* Fiber.join(call))._tag).toBe("PluginTimeout")
      }
      expect(yield* Deferred.await(tripped)).toContain("3 calls in a row timed out (BuildDependents)")
      expect(trips).toEqual(["hung"])
      const refused = yield* Effect.flip(guard.connection.checkValidity({}))
      expect(refused._tag).toBe("PluginUnavailable")
      expect(refused.message).toContain("degraded after 3 calls in a row timed out")
    })))

  test("health checks and Describe pass unguarded", () =>
    run(Effect.gen(function*() {
      const inner = fakeConnection(1, () => false)
      const guard = yield* guardConnection(inner, { plugin: "p", permits: 1, waitMs: 1, threshold: 1 })
      expect(guard.connection.ping).toBe(inner.ping)
      expect(guard.connection.describe).toBe(inner.describe)
    })))
})

describe("retrying a Capability whose plugin is down, busy or timing out", () => {
  test("exponential from 1 s, capped at a minute, and from 1 s again after a reset", async () => {
    const backoff = makeKeyedBackoff(PluginRetryBaseMs, PluginRetryMaxMs)
    const delays = await Effect.runPromise(Effect.forEach([1, 2, 3, 4, 5, 6, 7, 8], () => backoff.next("ns/db")))
    expect(delays).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000])
    backoff.reset("ns/db")
    expect(await Effect.runPromise(backoff.next("ns/db"))).toBe(1_000)
    expect(await Effect.runPromise(backoff.next("ns/other"))).toBe(1_000)
  })
})
