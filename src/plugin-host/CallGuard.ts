/**
 * What stands between the reconcilers and one plugin's calls:
 *
 * - a budget: at most `permits` calls in flight (its share of the reconcile
 *   workers); a call that cannot start within `waitMs` fails with PluginBusy,
 *   so that the Capability is retried with backoff instead of holding a worker;
 * - a circuit breaker: after `threshold` calls in a row of one method time out, the plugin
 *   is degraded (every call fails at once with PluginUnavailable) and
 *   `tripped` completes, for the host to restart it, even if the plugin still
 *   answers health checks.
 *
 * Describe, health checks and Shutdown are the host's own and pass unguarded.
 */
import { Deferred, Duration, Effect, Option, Semaphore } from "effect"
import type { PluginCallError } from "../plugin-client/Errors.ts"
import { PluginBusy, PluginUnavailable } from "../plugin-client/Errors.ts"
import { type PluginConnection, wrapCalls } from "../plugin-client/PluginClient.ts"

export type CallOutcome = "ok" | "timeout" | "other"

/**
 * The breaker's state machine. Pure: `record` says what a call's outcome
 * does to it, and returns true on the one call that trips it. Timeouts count
 * per method, and only an answer to that method (success or error) resets
 * its count: a plugin that answers CheckValidity at once and hangs in every
 * BuildDependents is hung all the same.
 */
export class Breaker {
  private readonly timeouts = new Map<string, number>()
  private open = false

  constructor(readonly threshold: number) {}

  record(method: string, outcome: CallOutcome): boolean {
    if (this.open) return false
    const count = outcome === "timeout" ? (this.timeouts.get(method) ?? 0) + 1 : 0
    this.timeouts.set(method, count)
    if (count < this.threshold) return false
    this.open = true
    return true
  }

  get state(): "closed" | "open" {
    return this.open ? "open" : "closed"
  }

  /** The longest run of timeouts in a row of any one method. */
  get consecutiveTimeouts(): number {
    let most = 0
    for (const n of this.timeouts.values()) most = Math.max(most, n)
    return most
  }
}

export interface GuardOptions {
  readonly plugin: string
  /** Calls in flight at most. */
  readonly permits: number
  /** How long a call may wait for a permit. */
  readonly waitMs: number
  /** Timeouts in a row that trip the breaker. */
  readonly threshold: number
  readonly onBusy?: (plugin: string) => void
  readonly onTrip?: (plugin: string) => void
}

export interface GuardedConnection {
  readonly connection: PluginConnection
  /** Completes, with the reason, when the breaker trips. */
  readonly tripped: Effect.Effect<string>
}

export const guardConnection = Effect.fnUntraced(function*(inner: PluginConnection, options: GuardOptions) {
  const semaphore = yield* Semaphore.make(options.permits)
  const breaker = new Breaker(options.threshold)
  const trip = yield* Deferred.make<string>()
  let inFlight = 0

  const guarded = <A>(method: string, call: Effect.Effect<A, PluginCallError>): Effect.Effect<A, PluginCallError> =>
    Effect.suspend(() => {
      if (breaker.state === "open") {
        return Effect.fail(
          new PluginUnavailable({
            plugin: options.plugin,
            method,
            detail: `degraded after ${options.threshold} calls in a row timed out; it is being restarted`
          })
        )
      }
      return Effect.scoped(
        Semaphore.takeScoped(semaphore, 1).pipe(
          Effect.timeoutOption(Duration.millis(options.waitMs)),
          Effect.flatMap(Option.match({
            onNone: () => {
              options.onBusy?.(options.plugin)
              return Effect.fail(new PluginBusy({ plugin: options.plugin, method, inFlight }))
            },
            onSome: () => {
              inFlight += 1
              return call.pipe(
                Effect.onExit((exit) =>
                  Effect.suspend(() => {
                    inFlight -= 1
                    // An interrupted call (the reconcile was abandoned) says nothing about the plugin.
                    if (exit._tag === "Failure" && exit.cause.reasons.every((r) => r._tag === "Interrupt")) return Effect.void
                    const outcome: CallOutcome = exit._tag === "Success"
                      ? "ok"
                      : exit.cause.reasons.some((r) => r._tag === "Fail" && r.error._tag === "PluginTimeout")
                      ? "timeout"
                      : "other"
                    if (!breaker.record(method, outcome)) return Effect.void
                    options.onTrip?.(options.plugin)
                    return Deferred.succeed(
                      trip,
                      `degraded: ${options.threshold} calls in a row timed out (${method}), though it may still answer health checks`
                    )
                  })
                )
              )
            }
          }))
        )
      )
    })

  const guardedConnection: GuardedConnection = { connection: wrapCalls(inner, guarded), tripped: Deferred.await(trip) }
  return guardedConnection
})
