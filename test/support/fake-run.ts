/**
 * Running fast-tier tests against the in-memory API server (FakeKube): a
 * wait that lets fibers run without time passing, and the layers a
 * controller under test needs (the fake, a logger into an array, a scope,
 * TestClock).
 */
import { Effect, Logger, type Scope } from "effect"
import { TestClock } from "effect/testing"
import type { KubeClient } from "../../src/kube/KubeClient.ts"
import type { FakeKube } from "./FakeKube.ts"

/** Waits, without time passing, until `condition` holds: at most `turns` yields to the other fibers, then dies naming `what`. */
export const untilTurns = (condition: () => boolean | Promise<boolean>, what: string, turns = 20_000) =>
  Effect.gen(function*() {
    for (let i = 0; i < turns; i++) {
      const held = condition()
      if (typeof held === "boolean" ? held : yield* Effect.promise(() => held)) return
      yield* Effect.yieldNow
    }
    return yield* Effect.die(new Error(`never happened: ${what}`))
  })

/** Runs `body` against `kube`, its log messages pushed to `logs`, in a scope, on TestClock. */
export const runWithFakeKube = (kube: FakeKube, logs: Array<string>, body: Effect.Effect<void, unknown, Scope.Scope | KubeClient>) =>
  Effect.runPromise(
    body.pipe(
      Effect.provide(kube.layer),
      Effect.provide(Logger.layer([Logger.make((o) => void logs.push(String(o.message)))])),
      Effect.scoped,
      Effect.provide(TestClock.layer())
    )
  )
