/**
 * Leader election's timing, on TestClock, against the in-memory API server's
 * Leases (resourceVersions and conflicts as the server's): a free Lease is
 * taken at once and renewed every retry period; another candidate takes it
 * only once its record has gone unchanged for the lease duration by the
 * candidate's own clock, and right then; a leader whose renewals fail
 * steps down at the renew deadline, before the Lease expires; closing the
 * scope releases it; of two candidates racing, one leads.
 */
import { describe, expect, test } from "bun:test"
import { KubeConfig } from "@kubernetes/client-node"
import { Context, Effect, Exit, Fiber, Layer, Logger, Scope } from "effect"
import { TestClock } from "effect/testing"
import { KubeApiError } from "../../src/kube/Errors.ts"
import { LeaderElection } from "../../src/operator/LeaderElection.ts"
import { type FakeKube, makeFakeKube } from "../support/FakeKube.ts"
import { fakeLeaseApi } from "../support/FakeLeases.ts"

const Timing = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 }
const leaseRef = { apiVersion: "coordination.k8s.io/v1", kind: "Lease", namespace: "ops", name: "halkyon" }

interface Candidate {
  readonly election: LeaderElection["Service"]
  /** Closes the candidate's scope: it stops and releases the Lease if it leads. */
  readonly stop: Effect.Effect<void>
}

const candidate = (kube: FakeKube, identity: string, timing = Timing, wallClock?: () => number) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const leaseApi = fakeLeaseApi(kube)
    const where = { namespace: "ops", name: "halkyon" }
    const layer = LeaderElection.layer({ kubeconfig: new KubeConfig(), leaseApi, ...where, identity, ...timing, wallClock })
    const context = yield* Layer.buildWithScope(layer, scope)
    const result: Candidate = { election: Context.get(context, LeaderElection), stop: Scope.close(scope, Exit.void) }
    return result
  })

/** Lets the fake API's answers (promises) arrive: a few turns of the event loop, no time on the test clock. */
const flush = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
})

/** Moves the test clock on in small steps, letting the API's answers arrive at each. */
const advance = (ms: number, step = 250) =>
  Effect.gen(function*() {
    for (let done = 0; done < ms; done += step) {
      yield* TestClock.adjust(Math.min(step, ms - done))
      yield* flush
    }
  })

const leaseSpec = (kube: FakeKube) =>
  Effect.map(kube.client.get(leaseRef), (lease) => {
    const spec = lease.spec as {
      holderIdentity?: string
      leaseDurationSeconds?: number
      renewTime?: string
      acquireTime?: string
      leaseTransitions?: number
    }
    return {
      holder: spec.holderIdentity,
      durationSeconds: spec.leaseDurationSeconds,
      renewMs: spec.renewTime === undefined ? undefined : Date.parse(spec.renewTime),
      acquireMs: spec.acquireTime === undefined ? undefined : Date.parse(spec.acquireTime),
      transitions: spec.leaseTransitions
    }
  })

const unreachable = new KubeApiError({ code: 0, reason: "Unreachable", detail: "connection refused", request: "lease" })

const run = <A, E>(body: (kube: FakeKube) => Effect.Effect<A, E, Scope.Scope>) =>
  Effect.runPromise(Effect.scoped(body(makeFakeKube())).pipe(Effect.provide(TestClock.layer()), Effect.provide(Logger.layer([]))))

describe("LeaderElection", () => {
  test("a free Lease is taken at once, and renewed every retry period", () =>
    run((kube) =>
      Effect.gen(function*() {
        const a = yield* candidate(kube, "a")
        yield* a.election.awaitLeadership
        expect(yield* a.election.isLeader).toBe(true)
        expect(yield* leaseSpec(kube)).toEqual({ holder: "a", durationSeconds: 15, renewMs: 0, acquireMs: 0, transitions: 0 })
        yield* advance(2_000)
        expect((yield* leaseSpec(kube)).renewMs).toBe(2_000)
        yield* advance(2_000)
        expect(yield* leaseSpec(kube)).toEqual({ holder: "a", durationSeconds: 15, renewMs: 4_000, acquireMs: 0, transitions: 0 })
      })
    ))

  test("another candidate takes a Lease only once its record has not changed for the lease duration, and right then", () =>
    run((kube) =>
      Effect.gen(function*() {
        const a = yield* candidate(kube, "a")
        yield* a.election.awaitLeadership
        // a dies without releasing: the API refuses everything while it stops.
        const restore = kube.intercept(() => unreachable)
        yield* a.stop
        restore()
        const b = yield* candidate(kube, "b")
        yield* advance(15_000)
        expect(yield* b.election.isLeader).toBe(false)
        expect((yield* leaseSpec(kube)).holder).toBe("a")
        // Seen unchanged by b since 0, for 15 s: expired one millisecond after, and b tries right then.
        yield* advance(1, 1)
        expect(yield* b.election.isLeader).toBe(true)
        expect(yield* leaseSpec(kube)).toEqual({ holder: "b", durationSeconds: 15, renewMs: 15_001, acquireMs: 15_001, transitions: 1 })
      })
    ))

  test("expiry counts from when the candidate first saw the record, whatever its renewTime says (clock skew)", () =>
    run((kube) =>
      Effect.gen(function*() {
        // a's wall clock is an hour ahead: its renewTime lies in everyone else's future.
        const ahead = yield* TestClock.testClockWith((c) => Effect.succeed(() => c.currentTimeMillisUnsafe() + 3_600_000))
        const a = yield* candidate(kube, "a", Timing, ahead)
        yield* a.election.awaitLeadership
        const restore = kube.intercept(() => unreachable)
        yield* a.stop
        restore()
        yield* advance(5_000)
        const b = yield* candidate(kube, "b")
        yield* advance(15_000)
        expect(yield* b.election.isLeader).toBe(false)
        yield* advance(1, 1)
        expect(yield* b.election.isLeader).toBe(true)
        expect((yield* leaseSpec(kube)).holder).toBe("b")
      })
    ))

  test("a leader whose renewals fail steps down at the renew deadline, while the Lease still holds", () =>
    run((kube) =>
      Effect.gen(function*() {
        const a = yield* candidate(kube, "a")
        yield* a.election.awaitLeadership
        kube.intercept((r) => (r.verb === "replace" ? unreachable : undefined))
        const lost = yield* Effect.forkChild(a.election.lost)
        yield* advance(9_750)
        expect(yield* a.election.isLeader).toBe(true)
        expect(lost.pollUnsafe()).toBeUndefined()
        yield* advance(250)
        expect(yield* a.election.isLeader).toBe(false)
        yield* Fiber.join(lost)
        // No one else could take it for 5 s more.
        const lease = yield* leaseSpec(kube)
        expect(lease.holder).toBe("a")
        expect((lease.renewMs ?? 0) + Timing.leaseDurationMs).toBe(15_000)
      })
    ))

  test("the write check (--leader-check-writes) allows writes up to the renew deadline and refuses them from then on", () =>
    run((kube) =>
      Effect.gen(function*() {
        const a = yield* candidate(kube, "a")
        expect(a.election.refuseWrite()).toMatch(/does not hold lease/)
        yield* a.election.awaitLeadership
        expect(a.election.refuseWrite()).toBeUndefined()
        kube.intercept((r) => (r.verb === "replace" ? unreachable : undefined))
        // The last renewal was sent at 0: allowed up to just before the 10 s renew deadline.
        yield* advance(9_750)
        expect(a.election.refuseWrite()).toBeUndefined()
        // At the deadline (the loop steps down at the same instant) and after it.
        yield* TestClock.adjust(250)
        expect(a.election.refuseWrite()).toMatch(/^a (has not renewed|does not hold) lease ops\/halkyon.*: not writing$/)
        yield* advance(10_000)
        expect(a.election.refuseWrite()).toMatch(/not writing/)
      })
    ))

  test("closing the scope releases the Lease, and a waiting candidate takes it at its next try", () =>
    run((kube) =>
      Effect.gen(function*() {
        const a = yield* candidate(kube, "a")
        yield* a.election.awaitLeadership
        const b = yield* candidate(kube, "b")
        yield* flush
        expect(yield* b.election.isLeader).toBe(false)
        yield* a.stop
        expect(yield* a.election.isLeader).toBe(false)
        expect(yield* leaseSpec(kube)).toMatchObject({ holder: "", durationSeconds: 1 })
        yield* advance(2_000)
        expect(yield* b.election.isLeader).toBe(true)
        expect((yield* leaseSpec(kube)).transitions).toBe(1)
      })
    ))

  test("two candidates racing for a missing Lease: one leads, the other waits", () =>
    run((kube) =>
      Effect.gen(function*() {
        const [a, b] = yield* Effect.all([candidate(kube, "a"), candidate(kube, "b")])
        const leaders = Effect.map(Effect.all([a.election.isLeader, b.election.isLeader]), (both) => both.filter(Boolean))
        yield* flush
        expect(yield* leaders).toEqual([true])
        yield* advance(6_000)
        expect(yield* leaders).toEqual([true])
        expect(kube.requests.filter((r) => r.verb === "create").length).toBe(2)
      })
    ))

  test("options that would let two replicas lead at once are refused", () =>
    run((kube) =>
      Effect.gen(function*() {
        const refused = yield* Effect.flip(candidate(kube, "a", { leaseDurationMs: 10_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 }))
        expect(refused.message).toContain("must be positive and shorter than the lease duration")
      })
    ))
})
