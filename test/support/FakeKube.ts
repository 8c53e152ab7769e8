/**
 * FakeKube: an in-memory API server behind the KubeClient interface, for unit
 * tests. It keeps what the operator relies on honestly:
 * - one resourceVersion counter for every write, as etcd's revision; a write
 *   that names an older resourceVersion fails with 409 Conflict;
 * - 404 NotFound for a missing object, 409 AlreadyExists for a second create;
 * - server-side apply: each field manager owns the fields it applied; a field
 *   another manager owns with another value is a 409 Conflict unless forced
 *   (which takes the field over); fields a manager stops applying are removed
 *   unless another manager owns them; merge patches and creates are "Update"
 *   operations that take over the fields they change; as on the server, one
 *   managedFields entry per manager, operation and subresource (FieldsV1).
 *   Lists are atomic (the real server merges some lists by key; the fake
 *   does not);
 * - generation counts changes outside metadata and status; the status is a
 *   subresource (ignored by apply and merge patches of the object);
 * - owner references are kept, and deleting an owner deletes its dependents
 *   (the garbage collector, at once);
 * - watches replay from a resourceVersion, send bookmarks when asked, and fail
 *   with 410 Expired when that version was compacted away; a label selector
 *   turns objects that stop (start) matching into DELETED (ADDED) events;
 * - a metadata-only list or watch (PartialObjectMetadata) carries each
 *   object's apiVersion, kind and metadata, nothing else.
 *
 * Tests steer it with `compact`, `bookmark`, `endWatches`, `dropWatches`,
 * `holdWatches`/`resumeWatches`, `intercept` (to fail chosen requests) and
 * `hold` (to keep chosen requests open), and read `requests` and `objects`.
 */
import { Cause, Clock, Effect, Latch, Layer, Queue, Stream } from "effect"
import { KubeApiError } from "../../src/kube/Errors.ts"
import { KubeClient, type ListOptions, type ObjectRef, type WatchEvent } from "../../src/kube/KubeClient.ts"
import type { KubeObject } from "../../src/kube/KubeObject.ts"

export type Verb = "get" | "list" | "watch" | "apply" | "mergePatch" | "patchStatus" | "delete" | "create" | "replace"

export interface Request {
  readonly verb: Verb
  readonly apiVersion: string
  readonly kind: string
  readonly namespace?: string | undefined
  readonly name?: string | undefined
  readonly fieldManager?: string | undefined
}

export interface FakeKubeOptions {
  /** Kinds without a namespace (Namespace, CapabilityInfo, ...). */
  readonly clusterScoped?: ReadonlyArray<string>
  /**
   * The manager the server records for requests that name none (creates and
   * status patches); the real one derives it from the User-Agent.
   */
  readonly defaultManager?: string
  /**
   * Scheduler turns between a write's commit and its answer, so that the
   * watch event of a write can arrive before the writer hears back, as over a
   * network. None by default.
   */
  readonly answerLagTurns?: number
}

type Json = unknown
type Path = ReadonlyArray<string>

/** One managedFields entry: the server keeps one per manager, operation and subresource. */
interface ManagerEntry {
  readonly manager: string
  operation: "Apply" | "Update"
  subresource?: "status"
  fields: Map<string, Path>
  time: string
}

interface Stored {
  object: Record<string, Json> & KubeObject
  /** By entryKey. */
  managers: Map<string, ManagerEntry>
}

const entryKey = (manager: string, operation: ManagerEntry["operation"], subresource?: "status") =>
  `${manager}\u0000${operation}\u0000${subresource ?? ""}`

interface Change {
  readonly rv: number
  readonly type: "ADDED" | "MODIFIED" | "DELETED"
  readonly before: KubeObject | undefined
  readonly after: KubeObject
}

interface Watcher {
  readonly apiVersion: string
  readonly kind: string
  readonly namespace: string | undefined
  readonly selector: (labels: Readonly<Record<string, string>> | undefined) => boolean
  readonly queue: Queue.Queue<WatchEvent, KubeApiError | Cause.Done>
}

const clone = <A>(value: A): A => structuredClone(value)
const metadataOf = (o: KubeObject): KubeObject => ({ apiVersion: o.apiVersion, kind: o.kind, metadata: o.metadata })
const isRecord = (value: unknown): value is Record<string, Json> => typeof value === "object" && value !== null && !Array.isArray(value)

const deepEqual = (a: Json, b: Json): boolean => {
  if (a === b) return true
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]))
  }
  if (!isRecord(a) || !isRecord(b)) return false
  const ka = Object.keys(a)
  return ka.length === Object.keys(b).length && ka.every((k) => k in b && deepEqual(a[k], b[k]))
}

/** Metadata the server owns: never part of a manager's fields. */
const ServerMetadata = new Set([
  "name",
  "namespace",
  "uid",
  "resourceVersion",
  "generation",
  "creationTimestamp",
  "deletionTimestamp",
  "managedFields",
  "selfLink"
])

/** The leaf paths of an object's fields (objects recurse; lists, scalars and empty objects are leaves). */
const leaves = (value: Json, prefix: Path = [], out = new Map<string, Path>()): Map<string, Path> => {
  if (isRecord(value) && Object.keys(value).length > 0) {
    for (const [k, v] of Object.entries(value)) {
      if (prefix.length === 0 && (k === "apiVersion" || k === "kind" || k === "status")) continue
      if (prefix.length === 1 && prefix[0] === "metadata" && ServerMetadata.has(k)) continue
      leaves(v, [...prefix, k], out)
    }
  } else if (prefix.length > 0) {
    out.set(JSON.stringify(prefix), prefix)
  }
  return out
}

const at = (value: Json, path: Path): Json => {
  let current = value
  for (const segment of path) {
    if (!isRecord(current)) return undefined
    current = current[segment]
  }
  return current
}

const setAt = (target: Record<string, Json>, path: Path, value: Json) => {
  let current = target
  for (const segment of path.slice(0, -1)) {
    const next = current[segment]
    if (!isRecord(next)) current[segment] = {}
    current = current[segment] as Record<string, Json>
  }
  current[path[path.length - 1] as string] = clone(value)
}

/** Removes a field, and the objects it leaves empty. */
const deleteAt = (target: Record<string, Json>, path: Path) => {
  const parents: Array<Record<string, Json>> = [target]
  for (const segment of path.slice(0, -1)) {
    const next = parents[parents.length - 1]?.[segment]
    if (!isRecord(next)) return
    parents.push(next)
  }
  delete parents[parents.length - 1]?.[path[path.length - 1] as string]
  for (let i = parents.length - 1; i > 0; i--) {
    if (Object.keys(parents[i] as object).length > 0) break
    delete parents[i - 1]?.[path[i - 1] as string]
  }
}

/** RFC 7386 JSON merge patch. */
const mergePatchJson = (target: Json, patch: Json): Json => {
  if (!isRecord(patch)) return clone(patch)
  const result: Record<string, Json> = isRecord(target) ? clone(target) : {}
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete result[k]
    else result[k] = mergePatchJson(result[k], v)
  }
  return result
}

/** What the generation follows: everything but metadata and status. */
const specOf = (object: Json) => {
  const { metadata: _m, status: _s, ...rest } = object as Record<string, Json>
  return rest
}

/** The server's FieldsV1 rendering of a set of paths: {"f:spec": {"f:replicas": {}}}. */
const fieldsV1 = (paths: Iterable<Path>) => {
  const root: Record<string, Json> = {}
  for (const path of paths) {
    let node = root
    for (const segment of path) {
      const key = `f:${segment}`
      if (!isRecord(node[key])) node[key] = {}
      node = node[key] as Record<string, Json>
    }
  }
  return root
}

/**
 * A label selector as the API server reads it: comma-separated requirements,
 * each `key`, `!key`, `key=value`, `key==value`, `key!=value`,
 * `key in (a,b)` or `key notin (a,b)`.
 */
export const parseLabelSelector = (selector: string | undefined): (labels: Readonly<Record<string, string>> | undefined) => boolean => {
  if (selector === undefined || selector.trim() === "") return () => true
  const requirements: Array<(labels: Readonly<Record<string, string>>) => boolean> = []
  // Commas inside parentheses belong to a set.
  const parts = selector.match(/[^,(]+(\([^)]*\))?[^,]*/g) ?? []
  for (const raw of parts) {
    const part = raw.trim()
    if (part === "") continue
    let m: RegExpMatchArray | null
    if ((m = part.match(/^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/)) !== null) {
      const [, key = "", op, list = ""] = m
      const values = new Set(list.split(",").map((v) => v.trim()))
      const inSet = (l: Readonly<Record<string, string>>) => l[key] !== undefined && values.has(l[key])
      requirements.push(op === "in" ? inSet : (l) => !inSet(l))
    } else if ((m = part.match(/^([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)$/)) !== null) {
      const [, key = "", op, value = ""] = m
      requirements.push(op === "!=" ? (l) => l[key] !== value : (l) => l[key] === value)
    } else if ((m = part.match(/^!\s*([\w./-]+)$/)) !== null) {
      const key = m[1] ?? ""
      requirements.push((l) => l[key] === undefined)
    } else if ((m = part.match(/^([\w./-]+)$/)) !== null) {
      const key = m[1] ?? ""
      requirements.push((l) => l[key] !== undefined)
    } else {
      throw new Error(`unparsable label selector requirement: ${part}`)
    }
  }
  return (labels) => requirements.every((r) => r(labels ?? {}))
}

export interface FakeKube {
  /** The KubeClient service, backed by this fake. */
  readonly client: KubeClient["Service"]
  readonly layer: Layer.Layer<KubeClient>
  /**
   * A PUT, which KubeClient does not make but client-node's typed APIs do
   * (the Lease's): the whole object but its status, at the resourceVersion it names.
   */
  readonly replace: (object: KubeObject, fieldManager?: string) => Effect.Effect<KubeObject, KubeApiError>
  /** Every request, in order. */
  readonly requests: Array<Request>
  /** Fails the requests `decide` answers with an error (until the returned function is called). */
  readonly intercept: (decide: (request: Request) => KubeApiError | undefined) => () => void
  /**
   * Runs the effect `decide` answers for a request before the request goes
   * through (until the returned function is called): a write held open while
   * a test watches what else starts.
   */
  readonly hold: (decide: (request: Request) => Effect.Effect<void> | undefined) => () => void
  /** The stored objects of a kind (copies, with managedFields). */
  readonly objects: (apiVersion: string, kind: string, namespace?: string) => Array<KubeObject>
  /** The latest resourceVersion. */
  readonly resourceVersion: () => string
  /** Forgets the history of changes: watches from an older resourceVersion now fail with 410 Expired. */
  readonly compact: () => void
  /** Sends every open watch a BOOKMARK at the latest resourceVersion. */
  readonly bookmark: () => void
  /** Ends every open watch as the server does at its timeout. */
  readonly endWatches: () => void
  /** Breaks every open watch as a dropped connection does (code 0). */
  readonly dropWatches: () => void
  /** Open watches. */
  readonly watchCount: () => number
  /** Holds new watch requests (a slow or restarting server) until `resumeWatches`; they then start from the version they name. */
  readonly holdWatches: () => void
  readonly resumeWatches: () => void
}

export const makeFakeKube = (options: FakeKubeOptions = {}): FakeKube => {
  const clusterScoped = new Set(options.clusterScoped ?? ["Namespace", "CapabilityInfo", "CustomResourceDefinition"])
  const defaultManager = options.defaultManager ?? "Bun"
  const store = new Map<string, Stored>()
  const history: Array<Change> = []
  const watchers = new Set<Watcher>()
  const requests: Array<Request> = []
  const interceptors = new Set<(request: Request) => KubeApiError | undefined>()
  const holds = new Set<(request: Request) => Effect.Effect<void> | undefined>()
  let revision = 0
  let compactedBelow = 0
  let uids = 0
  const watchGate = Latch.makeUnsafe(true)

  const namespaceOf = (kind: string, namespace: string | undefined) => (clusterScoped.has(kind) ? undefined : namespace ?? "default")
  const keyOf = (apiVersion: string, kind: string, namespace: string | undefined, name: string) =>
    `${apiVersion}/${kind}/${namespaceOf(kind, namespace) ?? ""}/${name}`
  const label = (request: Request) =>
    `${request.verb} ${request.kind} ${request.namespace === undefined ? "" : `${request.namespace}/`}${request.name ?? ""}`.trim()
  const error = (request: Request, code: number, reason: string, detail: string) =>
    new KubeApiError({ code, reason, detail, request: label(request) })

  /** Logs the request, fails it if an interceptor says so, and runs the holds it meets. */
  const admit = (request: Request) =>
    Effect.suspend(() => {
      requests.push(request)
      for (const decide of interceptors) {
        const refusal = decide(request)
        if (refusal !== undefined) return Effect.fail(refusal)
      }
      const held = [...holds].flatMap((decide) => {
        const hold = decide(request)
        return hold === undefined ? [] : [hold]
      })
      return held.length === 0 ? Effect.void : Effect.forEach(held, (hold) => hold, { discard: true })
    })

  const render = (stored: Stored): KubeObject => {
    const object = clone(stored.object)
    const managedFields = [...stored.managers.values()].map((entry) => ({
      manager: entry.manager,
      operation: entry.operation,
      apiVersion: object.apiVersion,
      time: entry.time,
      fieldsType: "FieldsV1",
      fieldsV1: fieldsV1(entry.fields.values()),
      ...(entry.subresource === undefined ? {} : { subresource: entry.subresource })
    }))
    return { ...object, metadata: { ...object.metadata, managedFields } }
  }

  const notify = (change: Change) => {
    history.push(change)
    for (const w of [...watchers]) {
      const event = eventFor(w, change)
      if (event !== undefined) Queue.offerUnsafe(w.queue, event)
    }
  }

  /** What a watch sees of a change: label selectors make objects appear and disappear. */
  const eventFor = (w: Omit<Watcher, "queue">, change: Change): WatchEvent | undefined => {
    const { after, before } = change
    if (after.apiVersion !== w.apiVersion || after.kind !== w.kind) return undefined
    if (w.namespace !== undefined && after.metadata.namespace !== w.namespace) return undefined
    const now = w.selector(after.metadata.labels)
    const then = before !== undefined && w.selector(before.metadata.labels)
    if (change.type === "DELETED") return now ? { type: "DELETED", object: clone(after) } : undefined
    if (now && (change.type === "ADDED" || then)) return { type: change.type, object: clone(after) }
    if (now) return { type: "ADDED", object: clone(after) }
    if (then) return { type: "DELETED", object: clone(after) }
    return undefined
  }

  /** Stores a new version: the next resourceVersion, generation when the spec changed. */
  const commit = (key: string, stored: Stored, before: KubeObject | undefined, type: Change["type"]) => {
    revision += 1
    const previousGeneration = stored.object.metadata.generation ?? 0
    const specChanged = before !== undefined && !deepEqual(specOf(before), specOf(stored.object))
    const generation = before === undefined ? 1 : specChanged ? previousGeneration + 1 : previousGeneration
    stored.object = { ...stored.object, metadata: { ...stored.object.metadata, resourceVersion: String(revision), generation } }
    if (type === "DELETED") store.delete(key)
    else store.set(key, stored)
    const after = render(stored)
    notify({ rv: revision, type, before, after })
    return after
  }

  const now = Clock.currentTimeMillis.pipe(Effect.map((ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z")))

  /** A write naming a resourceVersion must name the current one; one naming a uid, the object's. */
  const precondition = (request: Request, stored: Stored, object: Json) => {
    const uid = at(object, ["metadata", "uid"]) as string | undefined
    if (uid !== undefined && uid !== stored.object.metadata.uid) {
      const detail = `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${stored.object.metadata.uid ?? ""}`
      return Effect.fail(error(request, 409, "Conflict", detail))
    }
    const wanted = at(object, ["metadata", "resourceVersion"]) as string | undefined
    if (wanted !== undefined && wanted !== stored.object.metadata.resourceVersion) {
      const detail = `Operation cannot be fulfilled on ${request.kind} "${request.name}": the object has been modified; ` +
        "please apply your changes to the latest version and try again"
      return Effect.fail(error(request, 409, "Conflict", detail))
    }
    return Effect.void
  }

  /** Records `manager` as owning the fields an update changed, taking them from the others. */
  const takeOver = (stored: Stored, before: Json, after: Json, manager: string, time: string, subresource?: "status") => {
    const old = leaves(before)
    const fresh = leaves(after)
    const changed = [...fresh].filter(([k, p]) => !old.has(k) || !deepEqual(at(before, p), at(after, p)))
    const removed = [...old.keys()].filter((k) => !fresh.has(k))
    for (const entry of stored.managers.values()) {
      for (const [k] of changed) entry.fields.delete(k)
      for (const k of removed) entry.fields.delete(k)
    }
    if (changed.length > 0) {
      const id = entryKey(manager, "Update", subresource)
      const entry = stored.managers.get(id) ??
        {
          manager,
          operation: "Update" as const,
          fields: new Map<string, Path>(),
          time,
          ...(subresource === undefined ? {} : { subresource })
        }
      for (const [k, p] of changed) entry.fields.set(k, p)
      entry.time = time
      stored.managers.set(id, entry)
    }
    for (const [id, entry] of stored.managers) if (entry.fields.size === 0) stored.managers.delete(id)
  }

  const statusPaths = (status: Json): Map<string, Path> => {
    const out = new Map<string, Path>()
    for (const [k, p] of leaves({ s: status })) out.set(k, ["status", ...p.slice(1)])
    return out
  }

  const missing = (request: Request) => error(request, 404, "NotFound", `${request.kind} "${request.name}" not found`)

  const get = (ref: ObjectRef) => {
    const request: Request = { verb: "get", apiVersion: ref.apiVersion, kind: ref.kind, namespace: ref.namespace, name: ref.name }
    return admit(request).pipe(
      Effect.andThen(Effect.suspend(() => {
        const stored = store.get(keyOf(ref.apiVersion, ref.kind, ref.namespace, ref.name))
        return stored === undefined ? Effect.fail(missing(request)) : Effect.succeed(render(stored))
      }))
    )
  }

  const matching = (apiVersion: string, kind: string, options: ListOptions) => {
    const selector = parseLabelSelector(options.labelSelector)
    return [...store.values()]
      .map((s) => s.object)
      .filter((o) => o.apiVersion === apiVersion && o.kind === kind)
      .filter((o) => options.namespace === undefined || o.metadata.namespace === options.namespace)
      .filter((o) => selector(o.metadata.labels))
  }

  /** The matching objects as the server answers them. */
  const renderAll = (apiVersion: string, kind: string, options: ListOptions) =>
    matching(apiVersion, kind, options).map((o) =>
      render(store.get(keyOf(apiVersion, kind, o.metadata.namespace, o.metadata.name)) as Stored)
    )

  const list = (apiVersion: string, kind: string, options: ListOptions = {}) =>
    admit({ verb: "list", apiVersion, kind, namespace: options.namespace }).pipe(
      Effect.andThen(Effect.sync(() => {
        const items = renderAll(apiVersion, kind, options)
        return { items: options.metadataOnly === true ? items.map(metadataOf) : items, resourceVersion: String(revision) }
      }))
    )

  const watch = (
    apiVersion: string,
    kind: string,
    options: ListOptions & { readonly resourceVersion: string; readonly timeoutSeconds?: number }
  ) =>
    Stream.unwrap(Effect.gen(function*() {
      const request: Request = { verb: "watch", apiVersion, kind, namespace: options.namespace }
      yield* watchGate.await
      yield* admit(request)
      // "0": any version will do; the server starts with the objects as they are.
      const fromAny = options.resourceVersion === "0"
      const from = options.resourceVersion === "" || fromAny ? revision : Number(options.resourceVersion)
      if (Number.isNaN(from)) return yield* error(request, 400, "BadRequest", `invalid resource version ${options.resourceVersion}`)
      // As the server: a version older than the oldest it still has is gone.
      if (from < compactedBelow) {
        return yield* error(request, 410, "Expired", `too old resource version: ${from} (${compactedBelow})`)
      }
      const queue = yield* Queue.unbounded<WatchEvent, KubeApiError | Cause.Done>()
      const selector = parseLabelSelector(options.labelSelector)
      const watcher: Watcher = { apiVersion, kind, namespace: options.namespace, selector, queue }
      // Replay and subscription in one step, so that no change falls between them.
      const replay: Array<WatchEvent> = fromAny
        ? renderAll(apiVersion, kind, options).map((object) => ({ type: "ADDED", object }))
        : history.filter((c) => c.rv > from).map((c) => eventFor(watcher, c)).filter((e) => e !== undefined)
      Queue.offerAllUnsafe(queue, replay)
      yield* Effect.acquireRelease(Effect.sync(() => watchers.add(watcher)), () => Effect.sync(() => watchers.delete(watcher)))
      const events = Stream.fromQueue(queue)
      return options.metadataOnly === true
        ? Stream.map(events, (e): WatchEvent => (e.type === "BOOKMARK" ? e : { type: e.type, object: metadataOf(e.object) }))
        : events
    }))

  const apply = (object: KubeObject, fieldManager: string, applyOptions: { readonly force?: boolean } = {}) =>
    Effect.gen(function*() {
      const namespace = namespaceOf(object.kind, object.metadata.namespace)
      const { apiVersion, kind } = object
      const request: Request = { verb: "apply", apiVersion, kind, namespace, name: object.metadata.name, fieldManager }
      yield* admit(request)
      const time = yield* now
      const key = keyOf(object.apiVersion, object.kind, namespace, object.metadata.name)
      const existing = store.get(key)
      const applied = leaves(object)
      // A create ignores a resourceVersion and a uid (as the server: they are preconditions of updates only).
      if (existing === undefined) {
        const created: Record<string, Json> = { apiVersion: object.apiVersion, kind: object.kind }
        for (const path of applied.values()) setAt(created, path, at(object, path))
        const fromApply = created.metadata as Record<string, Json> | undefined
        const metadata = { ...fromApply, name: object.metadata.name, uid: `uid-${++uids}`, creationTimestamp: time }
        const stored: Stored = {
          object: { ...created, metadata: namespace === undefined ? metadata : { ...metadata, namespace } } as Stored["object"],
          managers: new Map([[entryKey(fieldManager, "Apply"), { manager: fieldManager, operation: "Apply", fields: applied, time }]])
        }
        return commit(key, stored, undefined, "ADDED")
      }
      yield* precondition(request, existing, object)
      const force = applyOptions.force ?? true
      const mineKey = entryKey(fieldManager, "Apply")
      // Every other entry counts, this manager's own Update entry included (as on the server).
      const others = [...existing.managers].filter(([id, e]) => id !== mineKey && e.subresource === undefined).map(([, e]) => e)
      const conflicts: Array<string> = []
      for (const [k, path] of applied) {
        for (const entry of others) {
          if (!entry.fields.has(k) || deepEqual(at(existing.object, path), at(object, path))) continue
          const using = entry.operation === "Update" ? ` using ${object.apiVersion}` : ""
          conflicts.push(`conflict with "${entry.manager}"${using}: .${path.join(".")}`)
        }
      }
      if (conflicts.length > 0 && !force) {
        const count = `${conflicts.length} conflict${conflicts.length === 1 ? "" : "s"}`
        return yield* error(request, 409, "Conflict", `Apply failed with ${count}: ${conflicts.join(", ")}`)
      }
      const before = render(existing)
      const next = clone(existing.object) as Record<string, Json>
      const mine = existing.managers.get(mineKey)
      // Fields this manager applied before and no longer does go, unless another entry owns them too.
      for (const [k, path] of mine?.fields ?? []) {
        if (applied.has(k)) continue
        if (!others.some((e) => e.fields.has(k))) deleteAt(next, path)
      }
      for (const path of applied.values()) setAt(next, path, at(object, path))
      if (force) {
        for (const entry of others) {
          for (const [k, path] of applied) if (entry.fields.has(k) && !deepEqual(at(before, path), at(object, path))) entry.fields.delete(k)
        }
        for (const [id, entry] of existing.managers) if (entry.fields.size === 0) existing.managers.delete(id)
      }
      existing.managers.set(mineKey, { manager: fieldManager, operation: "Apply", fields: applied, time })
      const unchanged = deepEqual(next, existing.object)
      existing.object = next as Stored["object"]
      // A no-op apply writes nothing: the resourceVersion stays, no event.
      if (unchanged && mine !== undefined && [...applied.keys()].every((k) => mine.fields.has(k)) && mine.fields.size === applied.size) {
        return render(existing)
      }
      return commit(key, existing, before, "MODIFIED")
    })

  const mergePatch = (ref: ObjectRef, patch: unknown, fieldManager: string) =>
    Effect.gen(function*() {
      const request: Request = { verb: "mergePatch", ...ref, fieldManager }
      yield* admit(request)
      const time = yield* now
      const key = keyOf(ref.apiVersion, ref.kind, ref.namespace, ref.name)
      const existing = store.get(key)
      if (existing === undefined) return yield* missing(request)
      yield* precondition(request, existing, patch)
      const before = render(existing)
      const { status: _ignored, ...rest } = isRecord(patch) ? patch : {}
      const merged = mergePatchJson(existing.object, rest) as Record<string, Json>
      // Identity is the server's.
      const metadata = { ...(merged.metadata as Record<string, Json>) }
      for (const field of ServerMetadata) {
        const kept = (existing.object.metadata as unknown as Record<string, Json>)[field]
        if (kept === undefined) delete metadata[field]
        else metadata[field] = kept
      }
      const next = { ...merged, metadata } as unknown as Stored["object"]
      takeOver(existing, existing.object, next, fieldManager, time)
      existing.object = next
      if (next.metadata.deletionTimestamp !== undefined && (next.metadata.finalizers ?? []).length === 0) {
        const gone = commit(key, existing, before, "DELETED")
        collectGarbage(next.metadata.uid)
        return gone
      }
      return commit(key, existing, before, "MODIFIED")
    })

  const patchStatus = (ref: ObjectRef, status: unknown) =>
    Effect.gen(function*() {
      const request: Request = { verb: "patchStatus", apiVersion: ref.apiVersion, kind: ref.kind, namespace: ref.namespace, name: ref.name }
      yield* admit(request)
      const time = yield* now
      const key = keyOf(ref.apiVersion, ref.kind, ref.namespace, ref.name)
      const existing = store.get(key)
      if (existing === undefined) return yield* missing(request)
      const before = render(existing)
      const previous = (existing.object as { status?: Json }).status
      const next = mergePatchJson(previous ?? {}, status)
      const old = statusPaths(previous ?? {})
      const fresh = statusPaths(next)
      const changed = [...fresh].filter(([k, p]) => !old.has(k) || !deepEqual(at(existing.object, p), at({ status: next }, p)))
      for (const entry of existing.managers.values()) for (const k of old.keys()) if (!fresh.has(k)) entry.fields.delete(k)
      if (changed.length > 0) {
        const id = entryKey(defaultManager, "Update", "status")
        const entry = existing.managers.get(id) ??
          { manager: defaultManager, operation: "Update" as const, subresource: "status" as const, fields: new Map<string, Path>(), time }
        for (const [k, p] of changed) entry.fields.set(k, p)
        entry.time = time
        existing.managers.set(id, entry)
      }
      existing.object = { ...existing.object, status: next }
      return commit(key, existing, before, "MODIFIED")
    })

  const remove = (ref: ObjectRef, options?: { readonly uid?: string }): Effect.Effect<void, KubeApiError> =>
    Effect.gen(function*() {
      const request: Request = { verb: "delete", apiVersion: ref.apiVersion, kind: ref.kind, namespace: ref.namespace, name: ref.name }
      yield* admit(request)
      const key = keyOf(ref.apiVersion, ref.kind, ref.namespace, ref.name)
      const existing = store.get(key)
      if (existing === undefined) return yield* missing(request)
      if (options?.uid !== undefined) yield* precondition(request, existing, { metadata: { uid: options.uid } })
      const before = render(existing)
      // Finalizers hold the object, marked for deletion, until the last is removed.
      if ((existing.object.metadata.finalizers ?? []).length > 0) {
        if (existing.object.metadata.deletionTimestamp !== undefined) return
        const time = yield* now
        existing.object = { ...existing.object, metadata: { ...existing.object.metadata, deletionTimestamp: time } }
        commit(key, existing, before, "MODIFIED")
        return
      }
      commit(key, existing, before, "DELETED")
      collectGarbage(existing.object.metadata.uid)
    })

  /** The garbage collector: dependents whose owner is gone go too. */
  const collectGarbage = (uid: string | undefined) => {
    if (uid === undefined) return
    for (const [key, stored] of [...store]) {
      const owners = stored.object.metadata.ownerReferences ?? []
      if (owners.length > 0 && owners.every((o) => o.uid === uid || ![...store.values()].some((s) => s.object.metadata.uid === o.uid))) {
        if (!store.has(key)) continue
        commit(key, stored, render(stored), "DELETED")
        collectGarbage(stored.object.metadata.uid)
      }
    }
  }

  const create = (object: KubeObject) =>
    Effect.gen(function*() {
      const namespace = namespaceOf(object.kind, object.metadata.namespace)
      const request: Request = { verb: "create", apiVersion: object.apiVersion, kind: object.kind, namespace, name: object.metadata.name }
      yield* admit(request)
      const time = yield* now
      const key = keyOf(object.apiVersion, object.kind, namespace, object.metadata.name)
      if (store.has(key)) return yield* error(request, 409, "AlreadyExists", `${object.kind} "${object.metadata.name}" already exists`)
      const { status: _status, ...rest } = clone(object) as Record<string, Json>
      const metadata: Record<string, Json> = { ...(rest.metadata as Record<string, Json>), uid: `uid-${++uids}`, creationTimestamp: time }
      for (const field of ["resourceVersion", "generation", "managedFields", "deletionTimestamp"]) delete metadata[field]
      if (namespace !== undefined) metadata.namespace = namespace
      const stored: Stored = { object: { ...rest, metadata } as unknown as Stored["object"], managers: new Map() }
      takeOver(stored, {}, stored.object, defaultManager, time)
      return commit(key, stored, undefined, "ADDED")
    })

  const replace = (object: KubeObject, fieldManager = defaultManager) =>
    Effect.gen(function*() {
      const namespace = namespaceOf(object.kind, object.metadata.namespace)
      const { apiVersion, kind } = object
      const request: Request = { verb: "replace", apiVersion, kind, namespace, name: object.metadata.name, fieldManager }
      yield* admit(request)
      const time = yield* now
      const key = keyOf(object.apiVersion, object.kind, namespace, object.metadata.name)
      const existing = store.get(key)
      if (existing === undefined) return yield* missing(request)
      yield* precondition(request, existing, object)
      const before = render(existing)
      const { status: _ignored, ...rest } = clone(object) as Record<string, Json>
      const metadata: Record<string, Json> = { ...(rest.metadata as Record<string, Json>) }
      for (const field of ServerMetadata) {
        const kept = (existing.object.metadata as unknown as Record<string, Json>)[field]
        if (kept === undefined) delete metadata[field]
        else metadata[field] = kept
      }
      const previousStatus = (existing.object as { status?: Json }).status
      const next = { ...rest, metadata, ...(previousStatus === undefined ? {} : { status: previousStatus }) } as unknown as Stored["object"]
      takeOver(existing, existing.object, next, fieldManager, time)
      existing.object = next
      return commit(key, existing, before, "MODIFIED")
    })

  const lagTurns = options.answerLagTurns ?? 0
  const lagged = <A extends ReadonlyArray<unknown>, B, E>(write: (...args: A) => Effect.Effect<B, E>) => (...args: A) =>
    lagTurns === 0 ? write(...args) : write(...args).pipe(Effect.tap(() => Effect.repeat(Effect.yieldNow, { times: lagTurns - 1 })))
  const client = KubeClient.of({
    get,
    list,
    watch,
    apply: lagged(apply),
    mergePatch: lagged(mergePatch),
    patchStatus: lagged(patchStatus),
    delete: lagged(remove),
    create: lagged(create),
    // Every kind is served; the cluster-scoped ones are those named in the options.
    namespaced: (_apiVersion, kind) => Effect.succeed(!clusterScoped.has(kind)),
    plural: (_apiVersion, kind) => Effect.succeed(`${kind.toLowerCase()}s`),
    server: "fake://kube",
    // No RBAC here: an impersonating client acts as its user in name only.
    impersonating: (user) => ({ ...client, actingAs: user }),
    actingAs: undefined
  })

  return {
    client,
    layer: Layer.succeed(KubeClient, client),
    replace,
    requests,
    intercept: (decide) => {
      interceptors.add(decide)
      return () => void interceptors.delete(decide)
    },
    hold: (decide) => {
      holds.add(decide)
      return () => void holds.delete(decide)
    },
    objects: (apiVersion, kind, namespace) => renderAll(apiVersion, kind, { namespace }),
    resourceVersion: () => String(revision),
    compact: () => {
      compactedBelow = revision
      history.length = 0
    },
    bookmark: () => {
      for (const w of [...watchers]) Queue.offerUnsafe(w.queue, { type: "BOOKMARK", resourceVersion: String(revision) })
    },
    // Watchers are copied before they are told: a watcher told may watch again at once, which must not be told too.
    endWatches: () => {
      const open = [...watchers]
      watchers.clear()
      for (const w of open) Queue.endUnsafe(w.queue)
    },
    dropWatches: () => {
      const open = [...watchers]
      watchers.clear()
      for (const w of open) {
        const broken = new KubeApiError({ code: 0, reason: "WatchBroken", detail: "connection reset", request: `WATCH ${w.kind}` })
        Queue.failCauseUnsafe(w.queue, Cause.fail(broken))
      }
    },
    watchCount: () => watchers.size,
    holdWatches: () => void Latch.closeUnsafe(watchGate),
    resumeWatches: () => void Latch.openUnsafe(watchGate)
  }
}

/** PluginIdentity settings for tests on this fake: no impersonation, so plugins act with the client's identity. */
export const withoutImpersonation = {
  mode: "never",
  namespace: "halkyon-system",
  regenerate: "halkyon manifests",
  servedNamespace: undefined
} as const
