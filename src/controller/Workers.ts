/**
 * Workers: the generic loop between a work queue and a reconcile function,
 * as controller-runtime's reconcileHandler runs it.
 *
 * - `concurrency` workers take keys; the queue never hands one key to two.
 * - A success forgets the key's backoff; a result with `requeueAfterMs`
 *   queues it again after that delay; a failure queues it again after the
 *   key's exponential backoff and is logged with the delay.
 * - When the workers' scope closes, a reconcile in progress gets
 *   `shutdownTimeoutMs` to finish, then is abandoned (the next leader, or the
 *   next start, reconciles it again); after `fence` it gets no time at all,
 *   as when leadership is lost and another replica may be writing already.
 *
 * It knows nothing of Kubernetes or Capabilities: keys are strings and
 * `kind` only names them in logs.
 */
import { Duration, Effect, Fiber, type Scope } from "effect"
import type { WorkQueue } from "./WorkQueue.ts"

export interface ReconcileResult {
  /** Reconcile this key again after this long, even without an event. */
  readonly requeueAfterMs?: number | undefined
}

export type ReconcileOutcome = "success" | "error" | "requeue"

export interface WorkersOptions<E extends { readonly message: string }> {
  /** What a key names, for logs ("capability"); also the log annotation's key. */
  readonly kind: string
  readonly queue: WorkQueue
  readonly concurrency: number
  /** How long in-flight reconciles may take to finish once the workers are stopping. */
  readonly shutdownTimeoutMs: number
  readonly reconcile: (key: string) => Effect.Effect<ReconcileResult, E>
  /** Told of every reconcile, for metrics. */
  readonly onReconciled?: ((outcome: ReconcileOutcome, seconds: number) => void) | undefined
}

/**
 * Runs a reconcile to its end, unless the worker is interrupted (the workers
 * are stopping): then it gets `boundMs` more before it is interrupted too.
 */
const finishWithin = <A>(
  reconcile: Effect.Effect<A>,
  label: string,
  annotations: Record<string, string>,
  boundMs: () => number,
  restore: <X, E, R>(effect: Effect.Effect<X, E, R>) => Effect.Effect<X, E, R>
) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(Effect.interruptible(reconcile))
    return yield* restore(Fiber.join(fiber)).pipe(
      Effect.onInterrupt(() => {
        const bound = boundMs()
        if (bound <= 0) {
          return Effect.logWarning(`reconcile of ${label} interrupted: this replica may no longer write`).pipe(
            Effect.annotateLogs(annotations),
            Effect.andThen(Fiber.interrupt(fiber))
          )
        }
        return Fiber.await(fiber).pipe(
          Effect.timeoutOrElse({
            duration: Duration.millis(bound),
            orElse: () =>
              Effect.logWarning(
                `reconcile of ${label} did not finish within ${bound} ms of shutdown: abandoned, it is reconciled again at the next start`
              ).pipe(
                Effect.annotateLogs(annotations),
                Effect.andThen(Fiber.interrupt(fiber))
              )
          })
        )
      })
    )
  })

export interface RunningWorkers {
  /** From now on, closing the workers interrupts reconciles in progress at once, with no time to finish. */
  readonly fence: Effect.Effect<void>
}

/** Forks `concurrency` workers into the current scope; they stop when it closes. */
export const runWorkers = Effect.fnUntraced(function*<E extends { readonly message: string }>(
  options: WorkersOptions<E>
): Effect.fn.Return<RunningWorkers, never, Scope.Scope> {
  const { queue, kind } = options
  let fenced = false
  const graceMs = () => (fenced ? 0 : options.shutdownTimeoutMs)
  const worker = Effect.uninterruptibleMask((restore) =>
    Effect.gen(function*() {
      const key = yield* restore(queue.take)
      const label = `${kind} ${key}`
      const annotations = { [kind]: key }
      const started = performance.now()
      const exit = yield* finishWithin(options.reconcile(key).pipe(Effect.exit), label, annotations, graceMs, restore)
      const seconds = (performance.now() - started) / 1000
      if (exit._tag === "Success") {
        yield* queue.forget(key)
        const after = exit.value.requeueAfterMs
        if (after !== undefined) yield* queue.addAfter(key, after)
        options.onReconciled?.(after === undefined ? "success" : "requeue", seconds)
      } else {
        const delay = yield* queue.addRateLimited(key)
        const reason = exit.cause.reasons[0]
        const message = reason?._tag === "Fail" ? reason.error.message : String(exit.cause)
        yield* Effect.logWarning(`reconciling ${label} failed: ${message}; retrying in ${delay} ms`).pipe(Effect.annotateLogs(annotations))
        options.onReconciled?.("error", seconds)
      }
      yield* queue.done(key)
    })
  )
  for (let i = 0; i < options.concurrency; i++) yield* Effect.forever(worker).pipe(Effect.forkScoped)
  return { fence: Effect.sync(() => void (fenced = true)) } satisfies RunningWorkers
})
