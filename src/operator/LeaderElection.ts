/**
 * LeaderElection: which replica of the operator leads, decided on a
 * coordination.k8s.io/v1 Lease with client-go's leaderelection semantics.
 *
 * A candidate takes the Lease when it is free (no holder, as after a
 * release), expired or already its own (a restarted process with the same
 * identity). As in client-go, expiry is judged by this replica's own
 * monotonic clock: the Lease has expired when its record (holder, renew time,
 * transitions) has not changed for leaseDurationSeconds since this replica
 * last saw it change. No replica compares another's wall-clock times with
 * its own, so clock skew between replicas cannot hand the Lease over early.
 * The leader renews every
 * retry period; when no renewal has succeeded within the renew deadline it
 * stops leading, before any other candidate may take the expired Lease: the
 * deadline is shorter than the lease duration and both count from the moment
 * the renewal was sent. Every write carries the resourceVersion it was based
 * on, so of two candidates racing for the same Lease the API server lets one
 * win. Closing the layer's scope releases the Lease (no holder, a 1 s
 * duration) so that another replica takes over at once.
 *
 * It owns the Lease object and the election loop. It does not start or stop
 * the work that needs leadership: the controller awaits `awaitLeadership` and
 * watches `lost`. After a loss it stays a candidate and may lead again.
 *
 * Safety rests on the replicas' clocks running at about the same rate (not
 * on them showing the same time): a leader stops leading renewDeadline after
 * its last successful renewal was sent, and a candidate waits a whole
 * leaseDuration after it last saw the Lease change.
 */
import {
  ApiException,
  type ConfigurationOptions,
  CoordinationV1Api,
  type KubeConfig,
  Observable,
  type V1Lease,
  V1MicroTime
} from "@kubernetes/client-node"
import { Clock, Context, Deferred, Duration, Effect, Exit, Fiber, Layer } from "effect"
import { LeaderElectionInvalidOptions, LeaseApiError } from "./Errors.ts"
import { userAgentOf } from "../kube/KubeClient.ts"

/** The three Lease calls the election makes, as client-node's CoordinationV1Api has them. */
export type LeaseApi = Pick<CoordinationV1Api, "readNamespacedLease" | "createNamespacedLease" | "replaceNamespacedLease">

export interface LeaderElectionOptions {
  readonly kubeconfig: KubeConfig
  /** The Lease API; client-node's, from the kubeconfig, unless given (tests give an in-memory one). */
  readonly leaseApi?: LeaseApi | undefined
  readonly namespace: string
  /** The Lease's name. */
  readonly name: string
  /** Unique per replica (e.g. pod name plus a random suffix); also its Lease writes' User-Agent. */
  readonly identity: string
  /** How long the Lease holds without renewal; written in whole seconds, rounded up. */
  readonly leaseDurationMs: number
  /** The leader steps down when no renewal succeeded for this long; shorter than the lease duration. */
  readonly renewDeadlineMs: number
  /** Between two attempts to acquire or renew. */
  readonly retryPeriodMs: number
  /** The wall clock written into the Lease for people and other tools to read; never used to judge expiry. */
  readonly wallClock?: () => number
}

export class LeaderElection extends Context.Service<LeaderElection, {
  /** Completes once this replica leads (at once if it leads now). */
  readonly awaitLeadership: Effect.Effect<void>
  /**
   * Completes when the latest term of leadership ends (at once if it has
   * ended already); when this replica has never led, waits for a term to
   * begin and end. So `awaitLeadership` then `lost` never misses a loss.
   */
  readonly lost: Effect.Effect<void>
  /** Whether this replica leads now: it holds the Lease and its last renewal is within the renew deadline. */
  readonly isLeader: Effect.Effect<boolean>
  /**
   * The same, synchronously and without a request, for a check before each
   * write (`--leader-check-writes`): undefined while this replica leads, else
   * why not. It reads this replica's monotonic clock, so it turns false at the
   * renew deadline even before the election loop notices.
   */
  readonly refuseWrite: () => string | undefined
  readonly identity: string
}>()("halkyon/operator/LeaderElection") {
  static readonly layer = (options: LeaderElectionOptions) => Layer.effect(LeaderElection, make(options))
}

/** The Lease's spec, times as wall-clock milliseconds. */
interface LeaseRecord {
  readonly holder: string
  readonly durationMs: number
  readonly acquireTime: number | undefined
  readonly renewTime: number | undefined
  readonly transitions: number
}

type Attempt =
  /** We hold the Lease; `sentAt` (monotonic) is when the write that says so was sent. */
  | { readonly _tag: "Held"; readonly lease: V1Lease; readonly sentAt: number }
  /** `expiresAt` is monotonic: when this replica may take the Lease if it does not change before. */
  | { readonly _tag: "HeldByOther"; readonly holder: string; readonly expiresAt: number }

// The generated client types MicroTime as a Date but hands back the JSON
// string; both forms are read here.
const millisOf = (value: unknown): number | undefined => {
  if (value instanceof Date) return value.getTime()
  if (typeof value === "string") {
    const parsed = Date.parse(value)
    return Number.isNaN(parsed) ? undefined : parsed
  }
  return undefined
}

const recordOf = (lease: V1Lease): LeaseRecord => ({
  holder: lease.spec?.holderIdentity ?? "",
  durationMs: (lease.spec?.leaseDurationSeconds ?? 0) * 1000,
  acquireTime: millisOf(lease.spec?.acquireTime),
  renewTime: millisOf(lease.spec?.renewTime),
  transitions: lease.spec?.leaseTransitions ?? 0
})

/** What changes at every renewal or transition: a record seen again unchanged is not a sign of life. */
const recordKey = (record: LeaseRecord) =>
  `${record.holder}|${record.renewTime ?? ""}|${record.acquireTime ?? ""}|${record.transitions}|${record.durationMs}`

const validate = (o: LeaderElectionOptions): string | undefined => {
  if (o.identity === "") return "the identity is empty"
  if (o.name === "" || o.namespace === "") return "the lease needs a name and a namespace"
  if (!(o.leaseDurationMs >= 1000)) {
    return `the lease duration must be at least 1 s (the Lease counts whole seconds), got ${o.leaseDurationMs} ms`
  }
  if (!(o.renewDeadlineMs > 0 && o.renewDeadlineMs < o.leaseDurationMs)) {
    return `the renew deadline (${o.renewDeadlineMs} ms) must be positive and shorter than the lease duration (${o.leaseDurationMs} ms)`
  }
  if (!(o.retryPeriodMs > 0 && o.retryPeriodMs < o.renewDeadlineMs)) {
    return `the retry period (${o.retryPeriodMs} ms) must be positive and shorter than the renew deadline (${o.renewDeadlineMs} ms)`
  }
  return undefined
}

const make = Effect.fnUntraced(function*(options: LeaderElectionOptions) {
  const invalid = validate(options)
  if (invalid !== undefined) return yield* new LeaderElectionInvalidOptions({ detail: invalid })
  const { namespace, name, identity, renewDeadlineMs, retryPeriodMs } = options
  // Effect's Clock rather than Date.now and performance.now, so that TestClock drives the timing.
  const clock = yield* Clock.Clock
  /** Monotonic milliseconds, for our own deadlines; Lease times use the wall clock other replicas share. */
  const monotonic = () => Number(clock.monotonicTimeNanosUnsafe()) / 1_000_000
  const wallClock = options.wallClock ?? (() => clock.currentTimeMillisUnsafe())
  const leaseName = `${namespace}/${name}`
  const leaseDurationSeconds = Math.ceil(options.leaseDurationMs / 1000)
  const api: LeaseApi = options.leaseApi ?? options.kubeconfig.makeApiClient(CoordinationV1Api)
  const annotate = Effect.annotateLogs({ lease: leaseName, identity })

  // The state is written by the election fiber only (and by the release
  // once that fiber is gone); readers see it synchronously.
  let leading = false
  /** Monotonic time the latest successful write of ours was sent. */
  let renewedAt = 0
  /** The Lease as we last read or wrote it: its resourceVersion is the base of our next write. */
  let observed: V1Lease | undefined
  /** The latest term's end; undefined until we first lead. */
  let term: Deferred.Deferred<void> | undefined
  /** Completed with the term's end when the next term begins. */
  let nextTerm = Deferred.makeUnsafe<Deferred.Deferred<void>>()
  let failuresInARow = 0
  let lastSeenHolder: string | undefined
  /** The other holder's record as last seen, and when (monotonic) it was first seen so. */
  let observedKey: string | undefined
  let observedAt = 0

  /** Monotonic time at which the Lease expires for this replica, if it does not change before. */
  const expiryOf = (record: LeaseRecord) => {
    const key = recordKey(record)
    if (key !== observedKey) {
      observedKey = key
      observedAt = monotonic()
    }
    return observedAt + record.durationMs
  }

  const leadsNow = () => leading && monotonic() - renewedAt < renewDeadlineMs

  // client-node has no request timeout: the abort signal of the effect is
  // handed to each request, so a timeout or an interruption cancels it.
  const withSignal = (signal: AbortSignal): ConfigurationOptions => ({
    middleware: [{
      pre: (context) => {
        context.setSignal(signal)
        context.setHeaderParam("User-Agent", userAgentOf(identity))
        return new Observable(Promise.resolve(context))
      },
      post: (context) => new Observable(Promise.resolve(context))
    }],
    middlewareMergeStrategy: "append"
  })

  const toError = (operation: LeaseApiError["operation"], e: unknown) => {
    if (e instanceof ApiException) {
      const status = (() => {
        try {
          const body: unknown = typeof e.body === "string" ? JSON.parse(e.body) : e.body
          return typeof body === "object" && body !== null ? body as { reason?: unknown; message?: unknown } : {}
        } catch {
          return {}
        }
      })()
      return new LeaseApiError({
        lease: leaseName,
        operation,
        code: e.code,
        reason: typeof status.reason === "string" ? status.reason : "Unknown",
        detail: typeof status.message === "string" ? status.message : String(e.body)
      })
    }
    return new LeaseApiError({
      lease: leaseName,
      operation,
      code: 0,
      reason: "Unreachable",
      detail: e instanceof Error ? e.message : String(e)
    })
  }

  const call = <A>(operation: LeaseApiError["operation"], run: (options: ConfigurationOptions) => Promise<A>) =>
    Effect.tryPromise({ try: (signal) => run(withSignal(signal)), catch: (e) => toError(operation, e) })

  const read = call("read", (o) => api.readNamespacedLease({ name, namespace }, o)).pipe(
    Effect.map((lease): V1Lease | undefined => lease),
    Effect.catchIf((e) => e.code === 404, () => Effect.succeed(undefined))
  )

  const spec = (record: Omit<LeaseRecord, "durationMs"> & { readonly durationSeconds: number }) => ({
    holderIdentity: record.holder,
    leaseDurationSeconds: record.durationSeconds,
    // V1MicroTime, not Date: the API server rejects the millisecond form a Date serializes to.
    acquireTime: record.acquireTime === undefined ? undefined : new V1MicroTime(record.acquireTime),
    renewTime: record.renewTime === undefined ? undefined : new V1MicroTime(record.renewTime),
    leaseTransitions: record.transitions
  })

  /** Replaces the Lease, based on `base`'s resourceVersion: a Conflict if anyone wrote since. */
  const update = (operation: "update" | "release", base: V1Lease, record: Parameters<typeof spec>[0]) =>
    call(operation, (o) => api.replaceNamespacedLease({ name, namespace, body: { ...base, spec: { ...base.spec, ...spec(record) } } }, o))

  const ours = (now: number) => ({ holder: identity, durationSeconds: leaseDurationSeconds, renewTime: now })

  /** One round of client-go's tryAcquireOrRenew. */
  const tryAcquireOrRenew = Effect.gen(function*() {
    // Fast path: the leader renews from the Lease it wrote last, without reading it first.
    if (leading && observed !== undefined) {
      const record = recordOf(observed)
      const sentAt = monotonic()
      const renewed = yield* update("update", observed, {
        ...ours(wallClock()),
        acquireTime: record.acquireTime,
        transitions: record.transitions
      }).pipe(
        Effect.map((lease) => ({ _tag: "Held", lease, sentAt }) as const),
        Effect.catchIf((e) => e.code === 409 || e.code === 404, () => Effect.succeed(undefined))
      )
      if (renewed !== undefined) return renewed as Attempt
    }
    const current = yield* read
    if (current === undefined) {
      const sentAt = monotonic()
      const now = wallClock()
      const lease = yield* call("create", (o) =>
        api.createNamespacedLease({
          namespace,
          body: {
            apiVersion: "coordination.k8s.io/v1",
            kind: "Lease",
            metadata: { name, namespace },
            spec: spec({ ...ours(now), acquireTime: now, transitions: 0 })
          }
        }, o))
      return { _tag: "Held", lease, sentAt } as Attempt
    }
    observed = current
    const record = recordOf(current)
    if (record.holder !== "" && record.holder !== identity) {
      const expiresAt = expiryOf(record)
      if (monotonic() <= expiresAt) return { _tag: "HeldByOther", holder: record.holder, expiresAt } as Attempt
    }
    // Renewing our own Lease keeps its acquireTime and count; taking it over is a transition.
    const mine = record.holder === identity
    const sentAt = monotonic()
    const now = wallClock()
    const lease = yield* update("update", current, {
      ...ours(now),
      acquireTime: mine ? record.acquireTime ?? now : now,
      transitions: mine ? record.transitions : record.transitions + 1
    })
    return { _tag: "Held", lease, sentAt } as Attempt
  })

  const attempt = (timeoutMs: number) =>
    tryAcquireOrRenew.pipe(
      Effect.timeoutOrElse({
        duration: Duration.millis(Math.max(1, timeoutMs)),
        orElse: () =>
          Effect.fail(
            new LeaseApiError({
              lease: leaseName,
              operation: "acquire or renew",
              code: 0,
              reason: "Timeout",
              detail: `no answer within ${Math.round(timeoutMs)} ms`
            })
          )
      })
    )

  const beginTerm = (sentAt: number, lease: V1Lease) =>
    Effect.gen(function*() {
      leading = true
      renewedAt = sentAt
      observed = lease
      const ended = Deferred.makeUnsafe<void>()
      term = ended
      const begun = nextTerm
      nextTerm = Deferred.makeUnsafe()
      Deferred.doneUnsafe(begun, Exit.succeed(ended))
      const record = recordOf(lease)
      yield* Effect.logInfo(`${identity} acquired leadership on lease ${leaseName} (transitions: ${record.transitions})`)
    })

  const endTerm = () => {
    leading = false
    if (term !== undefined) Deferred.doneUnsafe(term, Exit.void)
  }

  const lose = (why: string) =>
    Effect.suspend(() => {
      endTerm()
      return Effect.logWarning(`${identity} lost leadership on lease ${leaseName}: ${why}`)
    })

  const reportFailure = (error: LeaseApiError) => {
    // A lost race is routine; an unreachable API server is worth one warning per outage.
    if (error.code === 409) return Effect.logDebug(error.message)
    failuresInARow += 1
    if (failuresInARow > 1) return Effect.logDebug(error.message)
    return Effect.logWarning(`${error.message}; retrying every ${retryPeriodMs} ms`)
  }

  /** One step of the loop; returns how long to wait before the next. */
  const step = Effect.gen(function*() {
    const began = monotonic()
    const untilNextPeriod = () => Math.max(0, retryPeriodMs - (monotonic() - began))
    if (leading) {
      const remaining = renewedAt + renewDeadlineMs - began
      if (remaining <= 0) {
        yield* lose(`no renewal succeeded within the renew deadline (${renewDeadlineMs} ms)`)
        return 0
      }
      const result = yield* Effect.result(attempt(remaining))
      if (result._tag === "Failure") {
        yield* reportFailure(result.failure)
        return Math.min(untilNextPeriod(), Math.max(0, renewedAt + renewDeadlineMs - monotonic()))
      }
      failuresInARow = 0
      const outcome = result.success
      if (outcome._tag === "Held") {
        renewedAt = outcome.sentAt
        observed = outcome.lease
        return untilNextPeriod()
      }
      yield* lose(`the lease is held by ${outcome.holder}`)
      return untilNextPeriod()
    }
    const result = yield* Effect.result(attempt(renewDeadlineMs))
    if (result._tag === "Failure") {
      yield* reportFailure(result.failure)
      return untilNextPeriod()
    }
    failuresInARow = 0
    const outcome = result.success
    if (outcome._tag === "Held") {
      yield* beginTerm(outcome.sentAt, outcome.lease)
      return untilNextPeriod()
    }
    if (outcome.holder !== lastSeenHolder) {
      lastSeenHolder = outcome.holder
      yield* Effect.logDebug(`lease ${leaseName} is held by ${outcome.holder}`)
    }
    // Try again right when the Lease expires rather than up to a period later.
    return Math.min(untilNextPeriod(), Math.max(0, outcome.expiresAt - monotonic() + 1))
  })

  const loop = Effect.gen(function*() {
    for (;;) {
      const wait = yield* step.pipe(
        // A bug must not end the election silently: log it and go on.
        Effect.catchDefect((defect) => Effect.logError(`leader election step failed: ${String(defect)}`).pipe(Effect.as(retryPeriodMs)))
      )
      if (wait > 0) yield* Effect.sleep(Duration.millis(wait))
    }
  }).pipe(annotate)

  /** Hands the Lease over: no holder and a 1 s duration, so that a candidate takes it at its next try. */
  const release = Effect.gen(function*() {
    if (!leading || observed === undefined) return
    const base = observed
    // Stop claiming leadership before the Lease is free.
    endTerm()
    const now = wallClock()
    const freed = { holder: "", durationSeconds: 1, acquireTime: now, renewTime: now, transitions: recordOf(base).transitions }
    const written = yield* update("release", base, freed).pipe(
      // A renewal interrupted in flight may have landed: retry on the Lease as it is, if it is still ours.
      Effect.catchIf(
        (e) => e.code === 409,
        () =>
          read.pipe(Effect.flatMap((current) =>
            current !== undefined && recordOf(current).holder === identity
              ? update("release", current, { ...freed, transitions: recordOf(current).transitions })
              : Effect.succeed(undefined)
          ))
      ),
      Effect.timeoutOrElse({
        duration: Duration.millis(renewDeadlineMs),
        orElse: () =>
          Effect.fail(
            new LeaseApiError({
              lease: leaseName,
              operation: "release",
              code: 0,
              reason: "Timeout",
              detail: `no answer within ${renewDeadlineMs} ms`
            })
          )
      }),
      Effect.result
    )
    if (written._tag === "Failure") {
      yield* Effect.logWarning(
        `${identity} stopped leading but could not release lease ${leaseName}; it expires on its own: ${written.failure.message}`
      )
    } else if (written.success === undefined) {
      yield* Effect.logInfo(`${identity} stopped leading; lease ${leaseName} had already passed to another holder`)
    } else {
      yield* Effect.logInfo(`${identity} released lease ${leaseName}`)
    }
  }).pipe(annotate)

  const fiber = yield* Effect.forkScoped(loop)
  // Added after the fork, so it runs first on close: stop the loop, then release.
  yield* Effect.addFinalizer(() => Fiber.interrupt(fiber).pipe(Effect.andThen(release)))

  return LeaderElection.of({
    awaitLeadership: Effect.suspend(() => leadsNow() ? Effect.void : Deferred.await(nextTerm).pipe(Effect.asVoid)),
    lost: Effect.suspend(() => term !== undefined ? Deferred.await(term) : Deferred.await(nextTerm).pipe(Effect.flatMap(Deferred.await))),
    isLeader: Effect.sync(leadsNow),
    refuseWrite: () =>
      leadsNow()
        ? undefined
        : leading
        ? `${identity} has not renewed lease ${leaseName} within the renew deadline (${renewDeadlineMs} ms): not writing`
        : `${identity} does not hold lease ${leaseName}: not writing`,
    identity
  })
})
