/**
 * HTTP GETs of release assets, done as release pages need: redirects
 * followed by hand so that a token meant for the release host never reaches
 * another host (GitHub redirects downloads to object storage), a timeout for
 * the answer and another for each read of the body, and retries with
 * exponential backoff on network errors, 5xx and 429 (waiting as long as
 * Retry-After asks). A 404 is an answer, not a failure to retry.
 * HTTPS_PROXY / HTTP_PROXY / NO_PROXY are honoured by the runtime's fetch.
 */
import { Duration, Effect, Schedule, Scope } from "effect"
import { AssetNotFound, DownloadFailed, DownloadRefused, Transient } from "./Errors.ts"

export interface HttpSettings {
  /** Sent as a bearer token, to `tokenOrigins` only. */
  readonly token: string | undefined
  readonly tokenOrigins: ReadonlyArray<string>
  /** From sending the request to the response's headers. */
  readonly answerTimeoutMs: number
  /** Longest wait for the next piece of a body. */
  readonly readTimeoutMs: number
  /** Tries in all, the first included. */
  readonly attempts: number
  readonly backoffBaseMs: number
  /** A longer Retry-After than this is cut down to it. */
  readonly maxRetryAfterMs: number
}

export const defaultHttpSettings = (token: string | undefined, tokenOrigins: ReadonlyArray<string>): HttpSettings => ({
  token,
  tokenOrigins,
  answerTimeoutMs: 30_000,
  readTimeoutMs: 30_000,
  attempts: 5,
  backoffBaseMs: 500,
  maxRetryAfterMs: 60_000
})

const MaxRedirects = 10

export interface AssetBody {
  /** Where the bytes came from, after redirects. */
  readonly url: string
  /** Content-Length, when the server sent one. */
  readonly size: number | undefined
  /** The next piece of the body, or undefined at its end. */
  readonly read: Effect.Effect<Uint8Array | undefined, Transient>
  /**
   * Hands every piece of the body to `take`, in order, waiting whenever it
   * returns a promise: one effect for a whole large body, whose pieces would
   * each cost an effect's run through `read`.
   */
  readonly forEach: (take: (chunk: Uint8Array) => Promise<void> | undefined) => Effect.Effect<void, Transient>
}

const describe = (error: unknown) => (error instanceof Error ? error.message : String(error))

/** Retry-After as seconds or an HTTP date, in ms. */
export const parseRetryAfter = (value: string | null, now = Date.now()): number | undefined => {
  if (value === null) return undefined
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

const isRedirect = (status: number) => [301, 302, 303, 307, 308].includes(status)

/** Sends one GET, following redirects; the body is read within the scope. */
const open = (url: URL, settings: HttpSettings) =>
  Effect.gen(function*() {
    const controller = new AbortController()
    yield* Effect.addFinalizer(() => Effect.sync(() => controller.abort()))
    let current = url
    for (let hop = 0; hop <= MaxRedirects; hop++) {
      const headers: Record<string, string> = { "user-agent": "halkyon", accept: "application/octet-stream" }
      if (settings.token !== undefined && settings.tokenOrigins.includes(current.origin)) headers.authorization = `Bearer ${settings.token}`
      const target = current.href
      const response = yield* Effect.tryPromise({
        try: () => fetch(target, { redirect: "manual", headers, signal: controller.signal }),
        catch: (e) => new Transient({ url: target, detail: describe(e) })
      }).pipe(
        Effect.timeoutOrElse({
          duration: Duration.millis(settings.answerTimeoutMs),
          orElse: () => Effect.fail(new Transient({ url: target, detail: `no answer within ${settings.answerTimeoutMs} ms` }))
        })
      )
      if (isRedirect(response.status)) {
        const location = response.headers.get("location")
        void response.body?.cancel()
        if (location === null) return yield* new Transient({ url: target, detail: `HTTP ${response.status} without a Location` })
        const next = new URL(location, current)
        if (current.protocol === "https:" && next.protocol !== "https:") {
          return yield* new DownloadRefused({ url: target, status: response.status })
        }
        current = next
        continue
      }
      if (response.status === 404) {
        void response.body?.cancel()
        return yield* new AssetNotFound({ url: url.href })
      }
      if (response.status === 429 || response.status === 408 || response.status >= 500) {
        void response.body?.cancel()
        const retryAfterMs = parseRetryAfter(response.headers.get("retry-after"))
        return yield* new Transient({
          url: target,
          detail: `HTTP ${response.status}`,
          ...(retryAfterMs === undefined ? {} : { retryAfterMs: Math.min(retryAfterMs, settings.maxRetryAfterMs) })
        })
      }
      if (response.status < 200 || response.status > 299 || response.body === null) {
        void response.body?.cancel()
        return yield* new DownloadRefused({ url: target, status: response.status })
      }
      return { response, body: response.body, url: target }
    }
    return yield* new Transient({ url: url.href, detail: `more than ${MaxRedirects} redirects` })
  })

const asBody = (opened: { response: Response; body: ReadableStream<Uint8Array>; url: string }, settings: HttpSettings): AssetBody => {
  const reader = opened.body.getReader()
  const length = opened.response.headers.get("content-length")
  const size = length === null || !/^\d+$/.test(length) ? undefined : Number(length)
  let received = 0
  let stalled = false
  // A plain timer per read: racing each of a large body's reads against an
  // Effect timeout cost more than the hashing.
  const next = () =>
    new Promise<Awaited<ReturnType<typeof reader.read>>>((resolve, reject) => {
      const timer = setTimeout(() => {
        stalled = true
        reject(new Error("stalled"))
        void reader.cancel().catch(() => undefined)
      }, settings.readTimeoutMs)
      reader.read().then(
        (result) => {
          clearTimeout(timer)
          resolve(result)
        },
        (error: unknown) => {
          clearTimeout(timer)
          reject(error)
        }
      )
    })
  const broken = (e: unknown) =>
    new Transient({
      url: opened.url,
      detail: stalled
        ? `no data for ${settings.readTimeoutMs} ms after ${received} bytes`
        : `the download broke off after ${received} bytes: ${describe(e)}`
    })
  const ended = () =>
    size !== undefined && received !== size
      ? new Transient({ url: opened.url, detail: `the body ended after ${received} of ${size} bytes` })
      : undefined
  const read = Effect.tryPromise({ try: next, catch: broken }).pipe(
    Effect.flatMap(({ done, value }) => {
      if (!done) {
        received += value.byteLength
        return Effect.succeed(value)
      }
      const short = ended()
      return short === undefined ? Effect.succeed(undefined) : Effect.fail(short)
    })
  )
  const forEach = (take: (chunk: Uint8Array) => Promise<void> | undefined) =>
    Effect.flatMap(
      Effect.tryPromise({
        try: async () => {
          for (;;) {
            const { done, value } = await next()
            if (done) return
            received += value.byteLength
            const wait = take(value)
            if (wait !== undefined) await wait
          }
        },
        catch: broken
      }),
      () => {
        const short = ended()
        return short === undefined ? Effect.void : Effect.fail(short)
      }
    )
  return { url: opened.url, size, read, forEach }
}

/**
 * GETs `url` and hands its body to `consume`, trying again from scratch on
 * transient failures, in the body or in `consume`'s reads. Each try runs in
 * a scope of its own, so whatever `consume` made for a failed try is gone
 * before the next.
 */
export const download = <A, E, R>(
  url: URL,
  settings: HttpSettings,
  consume: (body: AssetBody) => Effect.Effect<A, E, R>
): Effect.Effect<A, Exclude<E, Transient> | AssetNotFound | DownloadRefused | DownloadFailed, Exclude<R, Scope.Scope>> => {
  let tries = 0
  const once = Effect.scoped(
    Effect.gen(function*() {
      tries += 1
      const opened = yield* open(url, settings)
      return yield* consume(asBody(opened, settings))
    })
  ).pipe(
    Effect.tapError((e) =>
      e instanceof Transient && tries < settings.attempts
        ? Effect.logWarning(`download of ${url.href} failed (try ${tries} of ${settings.attempts}): ${e.detail}; trying again`)
        : Effect.void
    )
  )
  const schedule = Schedule.exponential(Duration.millis(settings.backoffBaseMs)).pipe(
    Schedule.upTo({ times: settings.attempts - 1 }),
    Schedule.modifyDelay(({ input, duration }) =>
      Effect.succeed(input instanceof Transient && input.retryAfterMs !== undefined ? Duration.millis(input.retryAfterMs) : duration)
    )
  )
  return once.pipe(
    Effect.retry({ schedule, while: (e) => e instanceof Transient }),
    Effect.catchIf(
      (e): e is Transient => e instanceof Transient,
      (e) => Effect.fail(new DownloadFailed({ url: url.href, attempts: tries, detail: e.detail }))
    )
  ) as Effect.Effect<A, Exclude<E, Transient> | AssetNotFound | DownloadRefused | DownloadFailed, Exclude<R, Scope.Scope>>
}
