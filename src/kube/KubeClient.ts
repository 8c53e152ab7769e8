/**
 * KubeClient: the operator's access to the API server, for any kind, by
 * apiVersion and kind: get, list, watch, server-side apply, status patches,
 * deletes and Events. Kinds are mapped to their REST paths by discovery,
 * cached per group version. `impersonating(user)` gives the same client
 * acting as another user (Impersonate-User), as the operator acts as each
 * plugin's ServiceAccount.
 *
 * Requests go through the runtime's own fetch, given the CA, client
 * certificate and headers that client-node derives from the kubeconfig
 * (client certificates, tokens, exec plugins) as fetch's `tls` option; it
 * keeps connections alive by itself. (An https.Agent through node-fetch did
 * the same at several times the CPU per request.)
 *
 * Every request names the client in its User-Agent (`halkyon/<version>`, and
 * the replica's leader-election identity when there is one), which the API
 * server records in its audit log. `beforeWrite`, when given, is asked before
 * every request that is not a read; a refusal fails the write unsent.
 *
 * It does not cache objects or retry: the controller's watches and work queue
 * do that.
 */
import type https from "node:https"
import type { KubeConfig } from "@kubernetes/client-node"
import { Context, Effect, Layer, Schema, Stream } from "effect"
import type { KubeObject } from "./KubeObject.ts"
import { version } from "../Version.ts"
import { KubeApiError } from "./Errors.ts"

/** How to delete: `uid`, the precondition that only this very object goes. */
export interface DeleteOptions {
  readonly uid?: string
}

export interface ObjectRef {
  readonly apiVersion: string
  readonly kind: string
  readonly namespace?: string | undefined
  readonly name: string
}

export interface ListOptions {
  readonly namespace?: string | undefined
  readonly labelSelector?: string | undefined
  /**
   * Only each object's metadata (PartialObjectMetadata, as controller-runtime's
   * metadata-only watches): what tells that an object changed, without its data
   * (a Secret's values, say) crossing the wire or sitting in memory.
   */
  readonly metadataOnly?: boolean | undefined
}

const MetadataList = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
const MetadataObject = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"

export type WatchEvent =
  | { readonly type: "ADDED" | "MODIFIED" | "DELETED"; readonly object: KubeObject }
  | { readonly type: "BOOKMARK"; readonly resourceVersion: string }

const Status = Schema.Struct({ reason: Schema.optional(Schema.String), message: Schema.optional(Schema.String) })
const decodeStatus = Schema.decodeUnknownOption(Status)

const APIResourceList = Schema.Struct({
  resources: Schema.Array(Schema.Struct({ name: Schema.String, kind: Schema.String, namespaced: Schema.Boolean }))
})
const decodeResources = Schema.decodeUnknownEffect(APIResourceList)

/** A non-2xx answer as an error, with the reason and message of the Status the server sent. */
const refusal = (response: Response, text: string, request: string): KubeApiError => {
  const status = decodeStatus((() => {
    try {
      return JSON.parse(text) as unknown
    } catch {
      return {}
    }
  })())
  const reason = status._tag === "Some" ? status.value.reason ?? response.statusText : response.statusText
  const detail = status._tag === "Some" ? status.value.message ?? text : text
  return new KubeApiError({ code: response.status, reason, detail, request })
}

/** How long a single request may take; watches are bounded by the server's timeoutSeconds. */
const RequestTimeoutMs = 30_000
/** How long the server keeps a watch open before the client watches again. */
const WatchTimeoutSeconds = 300

/** What KubeClient offers; `impersonating` gives the same acting as another user. */
export interface KubeApi {
  readonly get: (ref: ObjectRef) => Effect.Effect<KubeObject, KubeApiError>
  readonly list: (
    apiVersion: string,
    kind: string,
    options?: ListOptions
  ) => Effect.Effect<{ readonly items: ReadonlyArray<KubeObject>; readonly resourceVersion: string }, KubeApiError>
  /** Streams changes from `resourceVersion`; ends when the server closes the watch. */
  readonly watch: (
    apiVersion: string,
    kind: string,
    options: ListOptions & { readonly resourceVersion: string; readonly timeoutSeconds?: number }
  ) => Stream.Stream<WatchEvent, KubeApiError>
  /**
   * Server-side apply with a field manager. Conflicts are forced (we own what
   * we apply) unless `force` is false, when a field another manager set to
   * another value fails the apply (409).
   */
  readonly apply: (
    object: KubeObject,
    fieldManager: string,
    options?: { readonly force?: boolean }
  ) => Effect.Effect<KubeObject, KubeApiError>
  /** A JSON merge patch (lists are replaced whole), as `fieldManager`. */
  readonly mergePatch: (ref: ObjectRef, patch: unknown, fieldManager: string) => Effect.Effect<KubeObject, KubeApiError>
  /** A JSON merge patch of the status subresource. */
  readonly patchStatus: (ref: ObjectRef, status: unknown) => Effect.Effect<KubeObject, KubeApiError>
  /**
   * Deletes an object in the background (its own dependents are the garbage
   * collector's). With `uid`, only that very object: another of the same name
   * is left alone (409).
   */
  readonly delete: (ref: ObjectRef, options?: DeleteOptions) => Effect.Effect<void, KubeApiError>
  /** Creates an object (used for Events). */
  readonly create: (object: KubeObject) => Effect.Effect<KubeObject, KubeApiError>
  /**
   * Whether a kind is namespaced, from discovery (cached per group version);
   * undefined when the server does not serve the kind.
   */
  readonly namespaced: (apiVersion: string, kind: string) => Effect.Effect<boolean | undefined, KubeApiError>
  /** A kind's resource name (its plural), from discovery; undefined when the server does not serve the kind. */
  readonly plural: (apiVersion: string, kind: string) => Effect.Effect<string | undefined, KubeApiError>
  /** The server's URL, for logs. */
  readonly server: string
  /**
   * The same client acting as `user` (an Impersonate-User header), sharing
   * credentials and discovery. Only the user is sent: for a ServiceAccount
   * user the API server adds its fixed groups itself (system:serviceaccounts,
   * system:serviceaccounts:<namespace>), and sending them would need
   * `impersonate` on groups as well.
   */
  readonly impersonating: (user: string) => KubeApi
  /** The impersonated user; undefined when requests carry the kubeconfig's own identity. */
  readonly actingAs: string | undefined
}

export interface KubeClientOptions {
  /** Who this replica is (its leader-election identity), put in the User-Agent: `halkyon/<version> (<identity>)`. */
  readonly identity?: string | undefined
  /** Asked before every write (create, apply, patch, delete); a reason given refuses the write without sending it. */
  readonly beforeWrite?: (() => string | undefined) | undefined
}

export class KubeClient extends Context.Service<KubeClient, KubeApi>()("halkyon/kube/KubeClient") {
  static readonly layer = (kc: KubeConfig, options: KubeClientOptions = {}) => Layer.effect(KubeClient, make(kc, options))
}

/** The User-Agent of halkyon's requests: the version, and the replica's identity when it has one. */
export const userAgentOf = (identity: string | undefined) => `halkyon/${version}${identity === undefined ? "" : ` (${identity})`}`

/** The TLS settings fetch takes. */
interface TlsOptions {
  readonly ca?: string
  readonly cert?: string
  readonly key?: string
  readonly rejectUnauthorized?: boolean
  readonly serverName?: string
}

/** How long the TLS settings and auth headers derived from the kubeconfig are reused (tokens rotate). */
const AuthRefreshMs = 60_000

/** What an impersonating client shares with the one it came from. */
interface Shared {
  readonly discovery: Map<string, Map<string, { plural: string; namespaced: boolean }>>
  readonly fetchInit: () => Promise<{ tls: TlsOptions; headers: Record<string, string> }>
}

const make = Effect.fnUntraced(function*(kc: KubeConfig, clientOptions: KubeClientOptions, actingAs?: string, shared?: Shared) {
  const server = (kc.getCurrentCluster()?.server ?? "").replace(/\/+$/, "")
  const userAgent = userAgentOf(clientOptions.identity)
  const beforeWrite = clientOptions.beforeWrite
  const discovery: Shared["discovery"] = shared?.discovery ?? new Map()
  const impersonation: Record<string, string> = actingAs === undefined ? {} : { "Impersonate-User": actingAs }

  // What client-node derives from the kubeconfig, reused for a while and then
  // derived again, so that rotated tokens and exec credentials are seen.
  let auth: { at: number; init: Promise<{ tls: TlsOptions; headers: Record<string, string> }> } | undefined
  const fetchInit = shared?.fetchInit ?? (() => {
    if (auth === undefined || Date.now() - auth.at > AuthRefreshMs) {
      auth = {
        at: Date.now(),
        init: (async () => {
          const options: https.RequestOptions = {}
          await kc.applyToHTTPSOptions(options)
          const headers: Record<string, string> = {}
          for (const [k, v] of Object.entries(options.headers ?? {})) if (v !== undefined) headers[k] = String(v)
          const pem = (
            value: unknown
          ) => (value === undefined || value === null ? undefined : Buffer.isBuffer(value) ? value.toString("utf8") : String(value))
          const tls: TlsOptions = {
            ...(pem(options.ca) === undefined ? {} : { ca: pem(options.ca) }),
            ...(pem(options.cert) === undefined ? {} : { cert: pem(options.cert) }),
            ...(pem(options.key) === undefined ? {} : { key: pem(options.key) }),
            ...(options.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
            ...(typeof options.servername === "string" ? { serverName: options.servername } : {})
          }
          return { tls, headers }
        })()
      }
    }
    return auth.init
  })

  /**
   * Sends one request and hands the response to `read`, all within one
   * deadline (RequestTimeoutMs; a watch's is its server-side timeout and a
   * margin, should that never arrive on a half-open connection). A watch
   * outlives this effect: only its own `signal` or its deadline ends it. A
   * non-2xx answer fails with the Status the server sent. One controller
   * and one timer per request: this is the operator's hottest path.
   */
  const send = <A>(
    method: string,
    path: string,
    options: { body?: unknown; contentType?: string; signal?: AbortSignal; stream?: boolean; accept?: string },
    read: (response: Response) => Promise<A>
  ): Effect.Effect<A, KubeApiError> =>
    Effect.callback<A, KubeApiError>((resume) => {
      const label = `${method} ${path}`
      const controller = new AbortController()
      const deadlineMs = options.stream === true ? (WatchTimeoutSeconds + 30) * 1000 : RequestTimeoutMs
      const timer = setTimeout(() => controller.abort(new Error(`no answer within ${deadlineMs} ms`)), deadlineMs)
      const outer = options.signal
      const stop = () => {
        clearTimeout(timer)
        controller.abort(outer?.reason)
      }
      outer?.addEventListener("abort", stop, { once: true })
      const settle = (effect: Effect.Effect<A, KubeApiError>) => {
        if (options.stream !== true) {
          clearTimeout(timer)
          outer?.removeEventListener("abort", stop)
        }
        resume(effect)
      }
      const unreachable = (e: unknown) =>
        Effect.fail(
          new KubeApiError({ code: 0, reason: "Unreachable", detail: e instanceof Error ? e.message : String(e), request: label })
        )
      fetchInit()
        .then(({ tls, headers }): Promise<Response | KubeApiError> => {
          const body = options.body === undefined ? undefined : JSON.stringify(options.body)
          // Asked last, with nothing left to wait on before the request goes
          // out: deriving credentials above (an exec plugin) can take seconds.
          const refused = method === "GET" || beforeWrite === undefined ? undefined : beforeWrite()
          if (refused !== undefined) {
            return Promise.resolve(new KubeApiError({ code: 0, reason: "WriteRefused", detail: refused, request: label }))
          }
          return fetch(`${server}${path}`, {
            tls,
            headers: body === undefined
              ? { ...headers, ...impersonation, "User-Agent": userAgent, Accept: options.accept ?? "application/json" }
              : {
                ...headers,
                ...impersonation,
                "User-Agent": userAgent,
                Accept: options.accept ?? "application/json",
                "Content-Type": options.contentType ?? "application/json"
              },
            method,
            ...(body === undefined ? {} : { body }),
            signal: controller.signal
          })
        })
        .then(
          (response) => {
            if (response instanceof KubeApiError) return settle(Effect.fail(response))
            if (!response.ok) {
              return response.text().then(
                (text) => settle(Effect.fail(refusal(response, text, label))),
                () => settle(Effect.fail(refusal(response, "", label)))
              )
            }
            return read(response).then(
              (value) => settle(Effect.succeed(value)),
              (e: unknown) =>
                settle(Effect.fail(new KubeApiError({ code: response.status, reason: "BadResponse", detail: String(e), request: label })))
            )
          },
          (e: unknown) => settle(unreachable(e))
        )
      // Interrupted (the operator is stopping): the request is aborted.
      return Effect.sync(stop)
    })

  const json = (method: string, path: string, options: { body?: unknown; contentType?: string; accept?: string } = {}) =>
    send(method, path, options, (response) => response.json() as Promise<unknown>)

  const resourcesOf = (apiVersion: string, refresh: boolean) =>
    Effect.gen(function*() {
      const cached = discovery.get(apiVersion)
      if (cached !== undefined && !refresh) return cached
      const path = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`
      const list = yield* json("GET", path).pipe(
        Effect.flatMap((body) =>
          decodeResources(body).pipe(
            Effect.mapError((e) => new KubeApiError({ code: 200, reason: "BadResponse", detail: e.message, request: `GET ${path}` }))
          )
        )
      )
      const byKind = new Map(
        list.resources.filter((r) => !r.name.includes("/")).map((r) => [r.kind, { plural: r.name, namespaced: r.namespaced }])
      )
      discovery.set(apiVersion, byKind)
      return byKind
    })

  const restPath = (
    apiVersion: string,
    resource: { plural: string; namespaced: boolean },
    namespace: string | undefined,
    name: string | undefined
  ) => {
    const base = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`
    const ns = resource.namespaced && namespace !== undefined ? `/namespaces/${encodeURIComponent(namespace)}` : ""
    return `${base}${ns}/${resource.plural}${name === undefined ? "" : `/${encodeURIComponent(name)}`}`
  }

  /** The REST path of a kind (and of one object of it). A kind unknown in the cache triggers one rediscovery. */
  const pathOf = (apiVersion: string, kind: string, namespace: string | undefined, name?: string) => {
    const known = discovery.get(apiVersion)?.get(kind)
    if (known !== undefined) return Effect.succeed(restPath(apiVersion, known, namespace, name))
    return Effect.gen(function*() {
      let resource = (yield* resourcesOf(apiVersion, false)).get(kind)
      if (resource === undefined) resource = (yield* resourcesOf(apiVersion, true)).get(kind)
      if (resource === undefined) {
        return yield* new KubeApiError({
          code: 404,
          reason: "NotFound",
          detail: `the server has no kind ${kind} in ${apiVersion} (is its CRD installed?)`,
          request: `discover ${apiVersion}`
        })
      }
      return restPath(apiVersion, resource, namespace, name)
    })
  }

  const resourceOf = (apiVersion: string, kind: string) => {
    const known = discovery.get(apiVersion)?.get(kind)
    if (known !== undefined) return Effect.succeed<{ plural: string; namespaced: boolean } | undefined>(known)
    return Effect.gen(function*() {
      return (yield* resourcesOf(apiVersion, false)).get(kind) ?? (yield* resourcesOf(apiVersion, true)).get(kind)
    }).pipe(Effect.catchIf((e) => e.notFound, () => Effect.succeed(undefined)))
  }
  const namespaced = (apiVersion: string, kind: string) => resourceOf(apiVersion, kind).pipe(Effect.map((r) => r?.namespaced))
  const plural = (apiVersion: string, kind: string) => resourceOf(apiVersion, kind).pipe(Effect.map((r) => r?.plural))

  const query = (params: Record<string, string | number | boolean | undefined>) => {
    let text = ""
    for (const key in params) {
      const value = params[key]
      if (value !== undefined) text += `${text === "" ? "?" : "&"}${key}=${encodeURIComponent(String(value))}`
    }
    return text
  }

  const asObject = (value: unknown) => value as KubeObject

  const get = (ref: ObjectRef) =>
    pathOf(ref.apiVersion, ref.kind, ref.namespace, ref.name).pipe(Effect.flatMap((path) => json("GET", path)), Effect.map(asObject))

  const list = (apiVersion: string, kind: string, options: ListOptions = {}) =>
    pathOf(apiVersion, kind, options.namespace).pipe(
      Effect.flatMap((path) =>
        json(
          "GET",
          `${path}${query({ labelSelector: options.labelSelector })}`,
          options.metadataOnly === true ? { accept: MetadataList } : {}
        )
      ),
      Effect.map((body) => {
        const b = body as { items?: Array<KubeObject>; metadata?: { resourceVersion?: string } }
        // Lists omit each item's apiVersion and kind.
        return { items: (b.items ?? []).map((i) => ({ ...i, apiVersion, kind })), resourceVersion: b.metadata?.resourceVersion ?? "" }
      })
    )

  const watch = (apiVersion: string, kind: string, options: ListOptions & { resourceVersion: string; timeoutSeconds?: number }) =>
    Stream.unwrap(
      Effect.gen(function*() {
        const path = yield* pathOf(apiVersion, kind, options.namespace)
        const abort = yield* Effect.acquireRelease(Effect.sync(() => new AbortController()), (c) => Effect.sync(() => c.abort()))
        const url = `${path}${
          query({
            watch: true,
            allowWatchBookmarks: true,
            resourceVersion: options.resourceVersion,
            labelSelector: options.labelSelector,
            timeoutSeconds: options.timeoutSeconds ?? WatchTimeoutSeconds
          })
        }`
        const response = yield* send(
          "GET",
          url,
          { signal: abort.signal, stream: true, ...(options.metadataOnly === true ? { accept: MetadataObject } : {}) },
          (r) => Promise.resolve(r)
        )
        const body = response.body
        if (body === null) {
          return yield* new KubeApiError({
            code: 0,
            reason: "WatchBroken",
            detail: "the watch answered without a body",
            request: `WATCH ${path}`
          })
        }
        return Stream.fromReadableStream({
          evaluate: () => body,
          // Aborting the watch (its scope closing) errors the body: that is its normal end.
          onError: (e) => new KubeApiError({ code: 0, reason: "WatchBroken", detail: String(e), request: `WATCH ${path}` })
        }).pipe(
          Stream.decodeText,
          Stream.splitLines,
          Stream.filter((line) => line.trim() !== ""),
          Stream.mapEffect((line) => {
            let event: { type: string; object: KubeObject & { code?: number; reason?: string; message?: string } }
            try {
              event = JSON.parse(line) as typeof event
            } catch (e) {
              return Effect.fail(
                new KubeApiError({
                  code: 0,
                  reason: "WatchBroken",
                  detail: `unreadable watch event: ${String(e)}`,
                  request: `WATCH ${path}`
                })
              )
            }
            if (event.type === "ERROR") {
              // e.g. 410 Expired: the resource version is too old; the caller relists.
              return Effect.fail(
                new KubeApiError({
                  code: event.object.code ?? 500,
                  reason: event.object.reason ?? "Error",
                  detail: event.object.message ?? "",
                  request: `WATCH ${path}`
                })
              )
            }
            if (event.type === "BOOKMARK") {
              return Effect.succeed<WatchEvent>({ type: "BOOKMARK", resourceVersion: event.object.metadata.resourceVersion ?? "" })
            }
            // Watch events name their object's kind, as lists do not; a copy only when one does not.
            const object = event.object.apiVersion === apiVersion && event.object.kind === kind
              ? event.object
              : { ...event.object, apiVersion, kind }
            return Effect.succeed<WatchEvent>({ type: event.type as "ADDED" | "MODIFIED" | "DELETED", object })
          })
        )
      })
    )

  const apply = (object: KubeObject, fieldManager: string, options: { readonly force?: boolean } = {}) =>
    pathOf(object.apiVersion, object.kind, object.metadata.namespace, object.metadata.name).pipe(
      Effect.flatMap((path) =>
        json("PATCH", `${path}${query({ fieldManager, force: options.force ?? true })}`, {
          body: object,
          contentType: "application/apply-patch+yaml"
        })
      ),
      Effect.map(asObject)
    )

  const patch = (ref: ObjectRef, body: unknown, suffix: string, fieldManager: string | undefined) =>
    pathOf(ref.apiVersion, ref.kind, ref.namespace, ref.name).pipe(
      Effect.flatMap((path) =>
        json("PATCH", `${path}${suffix}${query({ fieldManager })}`, { body, contentType: "application/merge-patch+json" })
      ),
      Effect.map(asObject)
    )
  const mergePatch = (ref: ObjectRef, body: unknown, fieldManager: string) => patch(ref, body, "", fieldManager)
  const patchStatus = (ref: ObjectRef, status: unknown) => patch(ref, { status }, "/status", undefined)

  const remove = (ref: ObjectRef, options?: DeleteOptions) =>
    pathOf(ref.apiVersion, ref.kind, ref.namespace, ref.name).pipe(
      Effect.flatMap((path) =>
        options?.uid === undefined ? json("DELETE", path) : json("DELETE", path, {
          body: { apiVersion: "v1", kind: "DeleteOptions", propagationPolicy: "Background", preconditions: { uid: options.uid } }
        })
      ),
      Effect.asVoid
    )

  const create = (object: KubeObject) =>
    pathOf(object.apiVersion, object.kind, object.metadata.namespace).pipe(
      Effect.flatMap((path) => json("POST", path, { body: object })),
      Effect.map(asObject)
    )

  const impersonating = (user: string): KubeApi => Effect.runSync(make(kc, clientOptions, user, { discovery, fetchInit }))

  return KubeClient.of({
    get,
    list,
    watch,
    apply,
    mergePatch,
    patchStatus,
    delete: remove,
    create,
    namespaced,
    plural,
    server,
    impersonating,
    actingAs
  })
})
