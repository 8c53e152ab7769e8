/**
 * The informer against the in-memory API server: list then watch; a watch the
 * server ends is resumed from the last version seen (bookmarks included)
 * without a relist; a dropped connection, and a version compacted away (410
 * Gone), end in a relist that reports what was deleted meanwhile.
 */
import { describe, expect, test } from "bun:test"
import { Effect, Logger, Queue, type Scope } from "effect"
import { TestClock } from "effect/testing"
import { inform } from "../../src/controller/Informer.ts"
import { KubeApiError } from "../../src/kube/Errors.ts"
import type { KubeClient } from "../../src/kube/KubeClient.ts"
import type { KubeObject } from "../../src/kube/KubeObject.ts"
import { type FakeKube, makeFakeKube } from "../support/FakeKube.ts"
import { untilTurns } from "../support/fake-run.ts"

interface Seen {
  readonly name: string
  readonly deleted: boolean
  readonly listed: boolean
  readonly value?: unknown
}

const configMap = (name: string, value: string, labels?: Record<string, string>): KubeObject => ({
  apiVersion: "v1",
  kind: "ConfigMap",
  metadata: { name, namespace: "ns", ...(labels === undefined ? {} : { labels }) },
  data: { value }
})
const ref = (name: string) => ({ apiVersion: "v1", kind: "ConfigMap", namespace: "ns", name })

/** Waits, without time passing, until `condition` holds (the informer's fiber gets to run in between). */
const until = (condition: () => boolean | Promise<boolean>, what: string) => untilTurns(condition, what, 10_000)

const lists = (kube: FakeKube) => kube.requests.filter((r) => r.verb === "list").length

/** Starts an informer on ConfigMaps; returns what it reports, one entry at a time, and the log. */
const start = Effect.fnUntraced(function*(kube: FakeKube, labelSelector?: string) {
  const seen = yield* Queue.unbounded<Seen>()
  const synced = yield* Queue.unbounded<void>()
  const logs: Array<string> = []
  yield* inform({
    apiVersion: "v1",
    kind: "ConfigMap",
    namespace: "ns",
    labelSelector,
    onObject: (object, deleted, listed) =>
      Queue.offer(seen, {
        name: object.metadata.name,
        deleted,
        listed,
        ...(deleted ? {} : { value: (object.data as { value?: unknown }).value })
      }),
    onSynced: Queue.offer(synced, undefined)
  }).pipe(
    Effect.provide(kube.layer),
    Effect.provide(Logger.layer([Logger.make((o) => void logs.push(String(o.message)))])),
    Effect.forkScoped
  )
  const next = (n: number) => Effect.all(Array.from({ length: n }, () => Queue.take(seen)))
  return { seen, next, synced: Queue.take(synced), logs }
})

const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope | KubeClient>) =>
  Effect.runPromise(effect.pipe(Effect.provide(makeFakeKube().layer), Effect.scoped, Effect.provide(TestClock.layer())))

describe("Informer", () => {
  test("lists every object, reports synced, then watches from the list's version", () =>
    run(Effect.gen(function*() {
      const kube = makeFakeKube()
      yield* kube.client.create(configMap("a", "1"))
      yield* kube.client.create(configMap("b", "1"))
      const informer = yield* start(kube)
      expect(yield* informer.next(2)).toEqual([
        { name: "a", deleted: false, listed: true, value: "1" },
        { name: "b", deleted: false, listed: true, value: "1" }
      ])
      yield* informer.synced
      yield* until(() => kube.watchCount() === 1, "a watch")
      expect(kube.requests.find((r) => r.verb === "watch")).toBeDefined()
      yield* kube.client.mergePatch(ref("a"), { data: { value: "2" } }, "me")
      yield* kube.client.delete(ref("b"))
      expect(yield* informer.next(2)).toEqual([
        { name: "a", deleted: false, listed: false, value: "2" },
        { name: "b", deleted: true, listed: false }
      ])
      expect(lists(kube)).toBe(1)
    })))

  test("a watch the server ends is resumed from the last version seen, without a relist and without missing a change", () =>
    run(Effect.gen(function*() {
      const kube = makeFakeKube()
      yield* kube.client.create(configMap("a", "1"))
      const informer = yield* start(kube)
      yield* informer.next(1)
      yield* until(() => kube.watchCount() === 1, "a watch")
      kube.endWatches()
      // Changed between the end of one watch and the next.
      yield* kube.client.mergePatch(ref("a"), { data: { value: "2" } }, "me")
      expect(yield* informer.next(1)).toEqual([{ name: "a", deleted: false, listed: false, value: "2" }])
      yield* until(() => kube.watchCount() === 1, "the watch again")
      expect(lists(kube)).toBe(1)
      expect(kube.requests.filter((r) => r.verb === "watch").length).toBe(2)
    })))

  test("a bookmark moves the version a watch resumes from: no relist after a compaction past the last change", () =>
    run(Effect.gen(function*() {
      const kube = makeFakeKube()
      yield* kube.client.create(configMap("a", "1"))
      // Changes the informer does not select move the version on.
      yield* kube.client.create(configMap("other", "1", { unrelated: "yes" }))
      const informer = yield* start(kube, "!unrelated")
      yield* informer.next(1)
      yield* until(() => kube.watchCount() === 1, "a watch")
      yield* kube.client.mergePatch(ref("other"), { data: { value: "2" } }, "me")
      // The bookmark comes before the end of the watch, and the next watch only after the compaction.
      kube.bookmark()
      kube.holdWatches()
      kube.endWatches()
      kube.compact()
      kube.resumeWatches()
      yield* until(() => kube.watchCount() === 1, "the watch again")
      yield* kube.client.mergePatch(ref("a"), { data: { value: "2" } }, "me")
      expect(yield* informer.next(1)).toEqual([{ name: "a", deleted: false, listed: false, value: "2" }])
      expect(lists(kube)).toBe(1)
    })))

  test("410 Gone: a watch resuming from a compacted version relists at once and reports what was deleted meanwhile", () =>
    run(Effect.gen(function*() {
      const kube = makeFakeKube()
      yield* kube.client.create(configMap("a", "1"))
      yield* kube.client.create(configMap("b", "1"))
      const informer = yield* start(kube)
      yield* informer.next(2)
      yield* informer.synced
      yield* until(() => kube.watchCount() === 1, "a watch")
      // The watch ends and the server is slow to take the next; meanwhile b
      // goes, c comes, and the history is compacted.
      kube.holdWatches()
      kube.endWatches()
      yield* kube.client.delete(ref("b"))
      yield* kube.client.create(configMap("c", "1"))
      kube.compact()
      kube.resumeWatches()
      const relisted = yield* informer.next(3)
      expect(relisted).toEqual([
        { name: "b", deleted: true, listed: true },
        { name: "a", deleted: false, listed: true, value: "1" },
        { name: "c", deleted: false, listed: true, value: "1" }
      ])
      yield* informer.synced
      expect(lists(kube)).toBe(2)
      // The first watch, the one refused with 410, and the one after the relist.
      yield* until(() => kube.watchCount() === 1, "the watch again")
      expect(kube.requests.filter((r) => r.verb === "watch").length).toBe(3)
      // At once: no pause as after a broken connection.
      expect(informer.logs.some((l) => l.includes("broke"))).toBe(false)
    })))

  test("a dropped connection: relisted after a second, and whatever changed meanwhile is reported", () =>
    run(Effect.gen(function*() {
      const kube = makeFakeKube()
      yield* kube.client.create(configMap("a", "1"))
      yield* kube.client.create(configMap("b", "1"))
      const informer = yield* start(kube)
      yield* informer.next(2)
      yield* until(() => kube.watchCount() === 1, "a watch")
      kube.dropWatches()
      yield* kube.client.delete(ref("a"))
      yield* kube.client.mergePatch(ref("b"), { data: { value: "2" } }, "me")
      yield* until(() => informer.logs.some((l) => l.includes("broke")), "the break noticed")
      // Not before the pause.
      yield* TestClock.adjust(999)
      expect(lists(kube)).toBe(1)
      yield* TestClock.adjust(1)
      expect(yield* informer.next(2)).toEqual([
        { name: "a", deleted: true, listed: true },
        { name: "b", deleted: false, listed: true, value: "2" }
      ])
      expect(lists(kube)).toBe(2)
    })))

  test("a failing list is retried with backoff until it succeeds", () =>
    run(Effect.gen(function*() {
      const kube = makeFakeKube()
      yield* kube.client.create(configMap("a", "1"))
      const refusal = new KubeApiError({ code: 503, reason: "ServiceUnavailable", detail: "etcd", request: "list" })
      const stop = kube.intercept((r) => (r.verb === "list" ? refusal : undefined))
      const informer = yield* start(kube)
      yield* until(() => lists(kube) === 1, "a first list")
      yield* TestClock.adjust(250)
      yield* until(() => lists(kube) === 2, "a second list")
      stop()
      yield* TestClock.adjust(500)
      expect(yield* informer.next(1)).toEqual([{ name: "a", deleted: false, listed: true, value: "1" }])
      expect(lists(kube)).toBe(3)
    })))
})
