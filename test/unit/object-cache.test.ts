/**
 * The object cache: the newest version wins whatever the order of arrival,
 * `holds` recognises the very version (an echo), managedFields are dropped,
 * and a kind counts as synced only once marked.
 */
import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import type { KubeObject } from "../../src/kube/KubeObject.ts"
import { ObjectCache } from "../../src/controller/ObjectCache.ts"

const secret = (resourceVersion: string | undefined, data = "x"): KubeObject => ({
  apiVersion: "v1",
  kind: "Secret",
  metadata: {
    name: "s",
    namespace: "ns",
    ...(resourceVersion === undefined ? {} : { resourceVersion }),
    managedFields: [{ manager: "halkyon", operation: "Apply" }]
  },
  data: { value: data }
})
const ref = { apiVersion: "v1", kind: "Secret", namespace: "ns", name: "s" }
const withCache = <A>(body: (cache: ObjectCache["Service"]) => A) =>
  Effect.runSync(Effect.provide(Effect.map(ObjectCache, body), ObjectCache.layer))

describe("ObjectCache", () => {
  test("a newer version replaces an older one; an older one arriving late does not", () =>
    withCache((cache) => {
      cache.put(secret("5", "five"))
      cache.put(secret("3", "three"))
      expect(cache.get(ref)?.data).toEqual({ value: "five" })
      cache.put(secret("7", "seven"))
      expect(cache.get(ref)?.data).toEqual({ value: "seven" })
      expect(cache.size()).toBe(1)
    }))

  test("resourceVersions compare as numbers, not text", () =>
    withCache((cache) => {
      cache.put(secret("10", "ten"))
      cache.put(secret("9", "nine"))
      expect(cache.get(ref)?.data).toEqual({ value: "ten" })
    }))

  test("an unreadable resourceVersion counts as newer", () =>
    withCache((cache) => {
      cache.put(secret("10", "ten"))
      cache.put(secret(undefined, "unversioned"))
      expect(cache.get(ref)?.data).toEqual({ value: "unversioned" })
    }))

  test("holds tells the very version apart from another", () =>
    withCache((cache) => {
      cache.put(secret("4"))
      expect(cache.holds(secret("4"))).toBe(true)
      expect(cache.holds(secret("5"))).toBe(false)
      expect(cache.holds({ ...secret("4"), metadata: { name: "other", namespace: "ns", resourceVersion: "4" } })).toBe(false)
    }))

  test("a removal older than the cached version is ignored; a current one removes", () =>
    withCache((cache) => {
      cache.put(secret("6"))
      cache.remove(secret("5"))
      expect(cache.get(ref)).toBeDefined()
      cache.remove(secret("8"))
      expect(cache.get(ref)).toBeUndefined()
      expect(cache.size()).toBe(0)
    }))

  test("managedFields are dropped on the way in", () =>
    withCache((cache) => {
      cache.put(secret("1"))
      expect(cache.get(ref)?.metadata.managedFields).toBeUndefined()
    }))

  test("objects are told apart by apiVersion, kind, namespace and name", () =>
    withCache((cache) => {
      cache.put(secret("1"))
      cache.put({ ...secret("1"), kind: "ConfigMap" })
      cache.put({ ...secret("1"), metadata: { name: "s", namespace: "other", resourceVersion: "1" } })
      expect(cache.size()).toBe(3)
      expect(cache.get({ ...ref, namespace: "elsewhere" })).toBeUndefined()
    }))

  test("a kind is synced only once marked, per apiVersion and kind", () =>
    withCache((cache) => {
      expect(cache.synced("v1", "Secret")).toBe(false)
      cache.markSynced("v1", "Secret")
      expect(cache.synced("v1", "Secret")).toBe(true)
      expect(cache.synced("v1", "ConfigMap")).toBe(false)
      expect(cache.synced("v2", "Secret")).toBe(false)
    }))
})
