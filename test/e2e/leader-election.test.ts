/**
 * Leader election against a real API server: two electors on one Lease,
 * handing over on release, taking over when the leader is cut off, and
 * riding out API server restarts. Short durations: lease 2 s, renew deadline
 * 1.5 s, retry period 0.25 s.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { connect, createServer, type Socket } from "node:net"
import { CoordinationV1Api, KubeConfig, V1MicroTime } from "@kubernetes/client-node"
import { Context, Effect, Exit, Fiber, Layer, Logger, Scope } from "effect"
import { type ControlPlane, startControlPlane } from "../support/control-plane/start.ts"
import { LeaderElection, type LeaderElectionOptions } from "../../src/operator/LeaderElection.ts"
import { eventually } from "../support/paths.ts"

// The first run builds kube-apiserver and etcd from source.
const FIRST_BUILD_TIMEOUT_MS = 30 * 60 * 1000
const NAMESPACE = "default"
const short = { leaseDurationMs: 2000, renewDeadlineMs: 1500, retryPeriodMs: 250 }

let plane: ControlPlane | undefined
const controlPlane = () => {
  if (plane === undefined) throw new Error("control plane did not start")
  return plane
}

beforeAll(async () => {
  plane = await startControlPlane()
}, FIRST_BUILD_TIMEOUT_MS)

afterAll(async () => {
  await plane?.stop()
}, 60_000)

const logLines: Array<string> = []
const collect = Logger.layer([
  Logger.make((o) => {
    const line = Logger.formatLogFmt.log(o)
    logLines.push(line)
    if (process.env.HALKYON_TEST_LOGS === "1") console.error(line)
  })
])
const logsAbout = (text: string) => logLines.filter((l) => l.includes(text))

const kubeconfig = (server?: string) => {
  const kc = new KubeConfig()
  kc.loadFromFile(controlPlane().kubeconfigPath)
  if (server === undefined) return kc
  const rewired = new KubeConfig()
  rewired.loadFromOptions({
    clusters: kc.clusters.map((c) => ({ ...c, server })),
    users: kc.users,
    contexts: kc.contexts,
    currentContext: kc.currentContext
  })
  return rewired
}

interface Elector {
  readonly identity: string
  readonly election: LeaderElection["Service"]
  readonly isLeader: () => boolean
  readonly awaitLeadership: (timeoutMs: number) => Promise<boolean>
  /** When `lost` completed (performance.now()), if it did. */
  readonly lostAt: () => number | undefined
  /** Closes the layer's scope: stops the loop and releases the Lease. */
  readonly close: () => Promise<void>
}

const startElector = async (
  identity: string,
  lease: string,
  overrides: Partial<LeaderElectionOptions> = {}
): Promise<Elector> => {
  const scope = Effect.runSync(Scope.make())
  const layer = LeaderElection.layer({ kubeconfig: kubeconfig(), namespace: NAMESPACE, name: lease, identity, ...short, ...overrides })
    .pipe(
      Layer.provide(collect)
    )
  const election = Context.get(await Effect.runPromise(Layer.buildWithScope(layer, scope)), LeaderElection)
  let lostAt: number | undefined
  let closed: Promise<void> | undefined
  const watcher = Effect.runFork(election.lost.pipe(Effect.tap(() => Effect.sync(() => void (lostAt = performance.now())))))
  return {
    identity,
    election,
    isLeader: () => Effect.runSync(election.isLeader),
    awaitLeadership: (timeoutMs) =>
      Effect.runPromise(election.awaitLeadership.pipe(Effect.timeoutOption(timeoutMs), Effect.map((o) => o._tag === "Some"))),
    lostAt: () => lostAt,
    close: () => {
      closed ??= (async () => {
        await Effect.runPromise(Scope.close(scope, Exit.void))
        await Effect.runPromise(Fiber.interrupt(watcher))
      })()
      return closed
    }
  }
}

const coordination = () => kubeconfig().makeApiClient(CoordinationV1Api)

const readLease = async (name: string) => {
  const lease = await coordination().readNamespacedLease({ name, namespace: NAMESPACE })
  const time = (v: unknown) => (v === undefined ? undefined : new Date(String(v instanceof Date ? v.toISOString() : v)).getTime())
  return {
    holder: lease.spec?.holderIdentity ?? "",
    durationSeconds: lease.spec?.leaseDurationSeconds,
    transitions: lease.spec?.leaseTransitions,
    acquireTime: time(lease.spec?.acquireTime),
    renewTime: time(lease.spec?.renewTime)
  }
}

/**
 * Samples every elector's isLeader every 10 ms: how many samples found two
 * leaders at once, and when each was last seen leading.
 */
const monitor = (electors: ReadonlyArray<Elector>) => {
  let samples = 0
  let overlaps = 0
  const led = new Map<string, number>()
  const timer = setInterval(() => {
    samples += 1
    const leaders = electors.filter((e) => e.isLeader())
    if (leaders.length > 1) overlaps += 1
    for (const e of leaders) led.set(e.identity, (led.get(e.identity) ?? 0) + 1)
  }, 10)
  return {
    stop: () => {
      clearInterval(timer)
      return { samples, overlaps, led: (identity: string) => led.get(identity) ?? 0 }
    }
  }
}

/** Resolves with performance.now() once `check` holds; rejects after `timeoutMs`. */
const whenTrue = async (check: () => boolean, timeoutMs: number, what: string) => {
  if (!(await eventually(check, timeoutMs, 5))) throw new Error(`${what} did not happen within ${timeoutMs} ms`)
  return performance.now()
}

/** A TCP relay to the API server (on `port`, or a free one) that can be cut, as a network partition would. */
const startRelay = async (port = 0) => {
  const target = new URL(controlPlane().server)
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname)
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on("error", () => {})
      s.on("close", () => {
        client.destroy()
        upstream.destroy()
        sockets.delete(s)
      })
    }
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve))
  const address = server.address()
  const bound = typeof address === "object" && address !== null ? address.port : 0
  return {
    server: `https://127.0.0.1:${bound}`,
    cut: () => {
      server.close()
      for (const s of sockets) s.destroy()
    }
  }
}

test("two electors on one lease: exactly one leads, and the lease names it", async () => {
  const lease = "halkyon-two"
  const [a, b] = await Promise.all([startElector("two-a", lease), startElector("two-b", lease)])
  try {
    const first = await Promise.race([a.awaitLeadership(5000), b.awaitLeadership(5000)])
    expect(first).toBe(true)
    const watch = monitor([a, b])
    // Longer than the lease: several renewals.
    await Bun.sleep(2500)
    const seen = watch.stop()
    const leader = a.isLeader() ? a : b
    const other = leader === a ? b : a
    expect(seen.samples).toBeGreaterThan(100)
    expect(seen.overlaps).toBe(0)
    expect(seen.led(leader.identity)).toBe(seen.samples)
    expect(seen.led(other.identity)).toBe(0)
    const record = await readLease(lease)
    expect(record.holder).toBe(leader.identity)
    expect(record.transitions).toBe(0)
    expect(record.durationSeconds).toBe(2)
    expect(record.renewTime ?? 0).toBeGreaterThan((record.acquireTime ?? 0) + 2000)
    expect(Date.now() - (record.renewTime ?? 0)).toBeLessThan(1000)
    expect(logsAbout(`${leader.identity} acquired leadership on lease default/${lease}`)).toHaveLength(1)
    expect(logsAbout(`${other.identity} acquired`)).toHaveLength(0)
    expect(leader.lostAt()).toBeUndefined()
  } finally {
    await Promise.all([a.close(), b.close()])
  }
})

for (const skewed of ["candidate", "leader"] as const) {
  test(`${skewed === "leader" ? "the leader" : "a candidate"} 20 s ahead: the candidate never takes the lease from the renewing leader, who never loses it early`, async () => {
    const lease = `halkyon-skew-${skewed}`
    const ahead = { wallClock: () => Date.now() + 20_000 }
    const a = await startElector(`skew-${skewed}-a`, lease, skewed === "leader" ? ahead : {})
    try {
      expect(await a.awaitLeadership(5000)).toBe(true)
      const b = await startElector(`skew-${skewed}-b`, lease, skewed === "candidate" ? ahead : {})
      try {
        const watch = monitor([a, b])
        // Three lease durations (2 s each) of renewals every 250 ms.
        await Bun.sleep(6000)
        const seen = watch.stop()
        expect(seen.overlaps).toBe(0)
        expect(seen.led(b.identity)).toBe(0)
        expect(seen.led(a.identity)).toBe(seen.samples)
        expect(a.lostAt()).toBeUndefined()
        expect((await readLease(lease)).holder).toBe(a.identity)
      } finally {
        await b.close()
      }
    } finally {
      await a.close()
    }
  })
}

test("a candidate takes a lease nobody renews once it has seen it unchanged for the lease duration, judged by its own clock", async () => {
  const lease = "halkyon-abandoned"
  // A holder that wrote once and died, with a renew time far in the future (its clock was wrong).
  await coordination().createNamespacedLease({
    namespace: NAMESPACE,
    body: {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: lease, namespace: NAMESPACE },
      spec: { holderIdentity: "dead", leaseDurationSeconds: 2, renewTime: new V1MicroTime(Date.now() + 3_600_000), leaseTransitions: 0 }
    }
  })
  const started = performance.now()
  const b = await startElector("abandoned-b", lease)
  try {
    expect(await b.awaitLeadership(10_000)).toBe(true)
    const took = performance.now() - started
    // Not before the 2 s it must see the lease unchanged, and within a retry period or two of it.
    expect(took).toBeGreaterThanOrEqual(2000)
    expect(took).toBeLessThan(4000)
    expect((await readLease(lease)).transitions).toBe(1)
  } finally {
    await b.close()
  }
})

test("release: the holder is emptied and the duration set to 1 s, acquire and renew times to the release", async () => {
  const lease = "halkyon-release"
  const a = await startElector("release-a", lease)
  expect(await a.awaitLeadership(5000)).toBe(true)
  const before = Date.now()
  await a.close()
  const record = await readLease(lease)
  expect(record).toMatchObject({ holder: "", durationSeconds: 1, transitions: 0 })
  expect(record.renewTime).toBe(record.acquireTime)
  expect(record.renewTime ?? 0).toBeGreaterThanOrEqual(before - 1)
  expect(a.isLeader()).toBe(false)
  expect(a.lostAt()).toBeNumber()
  expect(logsAbout(`release-a released lease default/${lease}`)).toHaveLength(1)
})

test("closing the leader's scope hands the lease over at once, well under the lease duration", async () => {
  const lease = "halkyon-handover"
  const a = await startElector("handover-a", lease)
  expect(await a.awaitLeadership(5000)).toBe(true)
  const b = await startElector("handover-b", lease)
  try {
    await Bun.sleep(500)
    expect(b.isLeader()).toBe(false)
    const watch = monitor([a, b])
    const closing = performance.now()
    await a.close()
    const tookOver = await whenTrue(b.isLeader, 5000, "handover-b leading")
    const seen = watch.stop()
    console.log(`handover: ${Math.round(tookOver - closing)} ms after closing the leader's scope`)
    // A candidate retries every 250 ms: it sees the freed lease at its next try.
    expect(tookOver - closing).toBeLessThan(short.retryPeriodMs + 500)
    expect(seen.overlaps).toBe(0)
    expect(a.lostAt()).toBeNumber()
    const record = await readLease(lease)
    expect(record).toMatchObject({ holder: "handover-b", durationSeconds: 2, transitions: 1 })
    expect(logsAbout(`handover-a released lease default/${lease}`)).toHaveLength(1)
    expect(logsAbout(`handover-b acquired leadership on lease default/${lease} (transitions: 1)`)).toHaveLength(1)
  } finally {
    await b.close()
  }
})

test("a leader cut off from the API server steps down within the renew deadline; the other takes over once the lease expires", async () => {
  const lease = "halkyon-partition"
  const relay = await startRelay()
  const a = await startElector("partition-a", lease, { kubeconfig: kubeconfig(relay.server) })
  expect(await a.awaitLeadership(5000)).toBe(true)
  const b = await startElector("partition-b", lease)
  try {
    await Bun.sleep(600)
    const watch = monitor([a, b])
    const cut = performance.now()
    relay.cut()
    const bLeads = await whenTrue(b.isLeader, 5000, "partition-b leading")
    const seen = watch.stop()
    const aLost = a.lostAt()
    expect(aLost).toBeNumber()
    const lostAfter = (aLost ?? 0) - cut
    const takenAfter = bLeads - cut
    console.log(`partition: leader stepped down after ${Math.round(lostAfter)} ms, the other took over after ${Math.round(takenAfter)} ms`)
    // The last renewal was sent at most a retry period before the cut.
    expect(lostAfter).toBeLessThanOrEqual(short.renewDeadlineMs + 100)
    expect(lostAfter).toBeGreaterThanOrEqual(short.renewDeadlineMs - short.retryPeriodMs - 50)
    // Not before the lease expired, and within lease duration + retry period.
    expect(takenAfter).toBeGreaterThanOrEqual(short.leaseDurationMs - short.retryPeriodMs - 50)
    expect(takenAfter).toBeLessThanOrEqual(short.leaseDurationMs + short.retryPeriodMs)
    expect(aLost ?? Infinity).toBeLessThan(bLeads)
    expect(seen.overlaps).toBe(0)
    const record = await readLease(lease)
    expect(record).toMatchObject({ holder: "partition-b", transitions: 1 })
    expect(logsAbout(`partition-a lost leadership on lease default/${lease}: no renewal succeeded within the renew deadline (1500 ms)`))
      .toHaveLength(1)
    // A cut-off former leader has nothing to release: closing it leaves the lease to the new one.
    await a.close()
    expect((await readLease(lease)).holder).toBe("partition-b")
    expect(b.isLeader()).toBe(true)
  } finally {
    await Promise.all([a.close(), b.close()])
  }
})

test("an API server restart shorter than the renew deadline does not cost the leader its leadership", async () => {
  const lease = "halkyon-restart-long"
  // A restart takes ~3 s here: a 10 s renew deadline outlasts it.
  const patient = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 250 }
  const a = await startElector("restart-a", lease, patient)
  expect(await a.awaitLeadership(5000)).toBe(true)
  const b = await startElector("restart-b", lease, patient)
  try {
    await Bun.sleep(500)
    const watch = monitor([a, b])
    const began = performance.now()
    await controlPlane().restartApiServer()
    const restartMs = performance.now() - began
    const restartedAt = Date.now()
    expect(restartMs).toBeLessThan(patient.renewDeadlineMs)
    // The leader renews again once the API server is back.
    expect(await eventually(async () => ((await readLease(lease).catch(() => undefined))?.renewTime ?? 0) > restartedAt, 5000, 50)).toBe(
      true
    )
    const seen = watch.stop()
    console.log(`restart (renew deadline 10 s): took ${Math.round(restartMs)} ms; leader kept leading at all ${seen.samples} samples`)
    expect(seen.led("restart-a")).toBe(seen.samples)
    expect(seen.led("restart-b")).toBe(0)
    expect(a.lostAt()).toBeUndefined()
    expect(await readLease(lease)).toMatchObject({ holder: "restart-a", transitions: 0 })
    expect(logsAbout("restart-a lost leadership")).toHaveLength(0)
  } finally {
    await Promise.all([a.close(), b.close()])
  }
}, 60_000)

test("a restart longer than the renew deadline: leadership may lapse but is re-acquired, never held by two", async () => {
  const lease = "halkyon-restart-short"
  const a = await startElector("lapse-a", lease)
  expect(await a.awaitLeadership(5000)).toBe(true)
  const b = await startElector("lapse-b", lease)
  try {
    await Bun.sleep(500)
    const watch = monitor([a, b])
    await controlPlane().restartApiServer()
    const back = performance.now()
    // Once the API server answers: the lease is ours to renew, or expired for anyone to take.
    const resumed = await whenTrue(
      () => a.isLeader() || b.isLeader(),
      short.leaseDurationMs + short.retryPeriodMs + 1000,
      "someone leading"
    )
    await Bun.sleep(600)
    const seen = watch.stop()
    const leader = a.isLeader() ? a : b
    const lapsed = a.lostAt() !== undefined
    console.log(
      `restart (renew deadline 1.5 s): ${lapsed ? "the leader lost leadership" : "the leader kept leadership"}; ` +
        `${leader.identity} leads ${Math.round(resumed - back)} ms after the API server was ready`
    )
    expect(seen.overlaps).toBe(0)
    expect([a.isLeader(), b.isLeader()].filter(Boolean)).toHaveLength(1)
    const record = await readLease(lease)
    expect(record.holder).toBe(leader.identity)
    // Re-acquiring one's own lease is no transition; a takeover is one.
    expect(record.transitions).toBe(leader === a ? 0 : 1)
    if (lapsed) {
      expect(logsAbout("lapse-a lost leadership")).toHaveLength(1)
      if (leader === a) expect(logsAbout("lapse-a acquired leadership")).toHaveLength(2)
    } else {
      expect(leader).toBe(a)
      expect(seen.led("lapse-a")).toBe(seen.samples)
    }
  } finally {
    await Promise.all([a.close(), b.close()])
  }
}, 60_000)

test("API errors are retried every period, never fatal: an elector started while the API server is unreachable leads once it is reachable", async () => {
  const lease = "halkyon-unreachable"
  // A port nothing listens on yet.
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve))
  const address = probe.address()
  const port = typeof address === "object" && address !== null ? address.port : 0
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  const a = await startElector("unreachable-a", lease, { kubeconfig: kubeconfig(`https://127.0.0.1:${port}`) })
  let relay: Awaited<ReturnType<typeof startRelay>> | undefined
  try {
    await Bun.sleep(1000)
    expect(a.isLeader()).toBe(false)
    // One warning for the outage, with the tagged error's message; later failures only at debug level.
    expect(logsAbout(`read of lease default/${lease} failed: the API server could not be reached`).filter((l) => l.includes("level=WARN")))
      .toHaveLength(1)
    relay = await startRelay(port)
    expect(await a.awaitLeadership(short.retryPeriodMs + 1000)).toBe(true)
    expect((await readLease(lease)).holder).toBe("unreachable-a")
  } finally {
    await a.close()
    relay?.cut()
  }
})

test("settings that cannot give safe election are a tagged error", async () => {
  const build = (overrides: Partial<LeaderElectionOptions>) =>
    Effect.runPromise(
      Effect.scoped(
        Layer.build(
          LeaderElection.layer({ kubeconfig: kubeconfig(), namespace: NAMESPACE, name: "x", identity: "x", ...short, ...overrides })
        )
      ).pipe(
        Effect.flip
      )
    )
  expect(await build({ renewDeadlineMs: 2000 })).toMatchObject({
    _tag: "LeaderElectionInvalidOptions",
    message: "invalid leader election settings: the renew deadline (2000 ms) must be positive and shorter than the lease duration (2000 ms)"
  })
  expect((await build({ retryPeriodMs: 1500 })).message).toContain(
    "the retry period (1500 ms) must be positive and shorter than the renew deadline (1500 ms)"
  )
  expect((await build({ identity: "" })).message).toContain("the identity is empty")
  expect((await build({ leaseDurationMs: 500, renewDeadlineMs: 400, retryPeriodMs: 100 })).message).toContain("at least 1 s")
})
