/**
 * PluginClient: typed RPC to a plugin that has handshaken. Every call has a
 * deadline and fails with a tagged error (Errors.ts); objects travel as JSON
 * and are decoded with Schema on arrival. Connecting also opens go-plugin's
 * stdio stream (relayed into our log) and broker stream, as go-plugin hosts do.
 *
 * It does not start or supervise processes: that is the plugin host's job.
 */
import { Context, Effect, Layer, Schema, type Scope } from "effect"
import { HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health.ts"
import { ConditionState, type DeletionPolicy, type PluginDescription } from "../gen/halkyon/capability/v1/capability.ts"
import { type StdioData, StdioData_Channel } from "../gen/plugin/grpc_stdio.ts"
import type { Handshake } from "../protocol/Handshake.ts"
import {
  BuildDependents,
  CheckValidity,
  Describe,
  EvaluateConditions,
  HealthCheck,
  Shutdown,
  StartStream,
  StreamStdio,
  UpdateDependent
} from "../protocol/Methods.ts"
import { Status } from "../protocol/GrpcWire.ts"
import { jsonBytes, jsonText, type Method } from "../protocol/Rpc.ts"
import { Metrics } from "../metrics/Metrics.ts"
import { TypedObjectSchema } from "../kube/KubeObject.ts"
import type { Certificate } from "../protocol/Mtls.ts"
import { PluginCallFailed, type PluginCallError, PluginTimeout, PluginUnavailable } from "./Errors.ts"
import { CallError, type Channel, makeChannel } from "./GrpcChannel.ts"

const isKubeObject = Schema.is(TypedObjectSchema)

/** A plugin's JSON object, parsed once and checked against TypedObjectSchema; undefined if it is not one. */
const parseKubeObject = (bytes: Uint8Array): Record<string, unknown> | undefined => {
  let value: unknown
  try {
    value = JSON.parse(jsonText(bytes))
  } catch {
    return undefined
  }
  return isKubeObject(value) ? (value as Record<string, unknown>) : undefined
}

export interface BuiltDependent {
  readonly id: string
  /** The object exactly as the plugin built it (JSON), checked to be a Kubernetes object. */
  readonly object: Record<string, unknown>
  /** The object's size as the plugin sent it (JSON bytes). */
  readonly bytes: number
  /** Replaces the declared deletion policy for this Capability, when the plugin sets it. */
  readonly deletionPolicy?: DeletionPolicy | undefined
}

export type Observation =
  | { readonly id: string; readonly object: unknown }
  | { readonly id: string; readonly error: { readonly reason: string; readonly message: string; readonly code: number } }

export interface DependentCondition {
  readonly id: string
  readonly state: "ready" | "pending" | "failed"
  readonly reason: string
  readonly message: string
  readonly attributes: Readonly<Record<string, string>>
}

/** One live connection to a plugin. */
export interface PluginConnection {
  readonly describe: Effect.Effect<PluginDescription, PluginCallError>
  readonly checkValidity: (capability: unknown) => Effect.Effect<ReadonlyArray<string>, PluginCallError>
  /** `observed`: this Capability's own dependents as they exist (objects only), for the plugin to build from. */
  readonly buildDependents: (
    capability: unknown,
    observed?: ReadonlyArray<{ readonly id: string; readonly object: unknown }>
  ) => Effect.Effect<ReadonlyArray<BuiltDependent>, PluginCallError>
  /** `observed`: what buildDependents was shown, so the desired object is built from the same state. */
  readonly updateDependent: (
    id: string,
    capability: unknown,
    existing: unknown,
    observed?: ReadonlyArray<{ readonly id: string; readonly object: unknown }>
  ) => Effect.Effect<
    { readonly needsUpdate: boolean; readonly updated: Record<string, unknown> | undefined; readonly bytes: number },
    PluginCallError
  >
  readonly evaluateConditions: (
    capability: unknown,
    observed: ReadonlyArray<Observation>
  ) => Effect.Effect<ReadonlyArray<DependentCondition>, PluginCallError>
  /** A health check of service "plugin"; fails unless SERVING. */
  readonly ping: Effect.Effect<void, PluginCallError>
  /** Asks the plugin to stop. UNAVAILABLE counts as success: Go plugins stop before answering. */
  readonly shutdown: Effect.Effect<void, PluginCallError>
}

export interface ConnectOptions {
  /** The plugin's name, for errors and logs. */
  readonly name: string
  readonly handshake: Handshake
  readonly certificate: Certificate | undefined
  /** Deadline of each call. */
  readonly callTimeoutMs: number
  /** Receives what the plugin sends over go-plugin's stdio stream. */
  readonly onStdio?: (channel: "stdout" | "stderr", data: Uint8Array) => void
}

/**
 * The connection with each call about a Capability passed through `wrap`, its arguments forwarded
 * untouched: a wrapper (a call budget, a reason for a failure) cannot drop an argument a call gains.
 */
export const wrapCalls = (
  connection: PluginConnection,
  wrap: <A>(method: string, call: Effect.Effect<A, PluginCallError>) => Effect.Effect<A, PluginCallError>
): PluginConnection => ({
  ...connection,
  checkValidity: (...args) => wrap("CheckValidity", connection.checkValidity(...args)),
  buildDependents: (...args) => wrap("BuildDependents", connection.buildDependents(...args)),
  updateDependent: (...args) => wrap("UpdateDependent", connection.updateDependent(...args)),
  evaluateConditions: (...args) => wrap("EvaluateConditions", connection.evaluateConditions(...args))
})

/** Told of every call and how long it took, failed ones included (for metrics). */
export type CallObserver = (plugin: string, method: string, seconds: number) => void

/** Observed objects as the wire carries them. */
const wireObserved = (observed: ReadonlyArray<{ readonly id: string; readonly object: unknown }>) =>
  observed.map((o) => ({ id: o.id, observation: { $case: "object" as const, value: jsonBytes(o.object) } }))

const stateName: Partial<Record<ConditionState, DependentCondition["state"]>> = {
  [ConditionState.CONDITION_STATE_READY]: "ready",
  [ConditionState.CONDITION_STATE_PENDING]: "pending",
  [ConditionState.CONDITION_STATE_FAILED]: "failed"
}

export class PluginClient extends Context.Service<PluginClient, {
  /** Connects to a plugin that has handshaken; the connection closes with the scope. */
  readonly connect: (options: ConnectOptions) => Effect.Effect<PluginConnection, never, Scope.Scope>
}>()("halkyon/plugin-client/PluginClient") {
  /** Every call is timed into Metrics. */
  static readonly layer = Layer.effect(
    PluginClient,
    Effect.map(Effect.service(Metrics), (metrics) => PluginClient.of({ connect: (options) => connect(options, metrics.pluginCall) }))
  )
}

const connect = Effect.fnUntraced(function*(options: ConnectOptions, observe: CallObserver | undefined) {
  const { name, callTimeoutMs } = options
  const channel = yield* Effect.acquireRelease(
    Effect.sync(() => makeChannel(options)),
    (channel) => Effect.sync(() => channel.close())
  )

  const call = <I, O>(method: Method<I, O>, request: I, timeoutMs = callTimeoutMs): Effect.Effect<O, PluginCallError> =>
    Effect.callback<O, PluginCallError>((resume) => {
      const started = performance.now()
      const cancel = channel.unary(method, request, timeoutMs, (outcome) => {
        observe?.(name, method.name, (performance.now() - started) / 1000)
        resume(outcome instanceof CallError ? Effect.fail(toCallError(name, method.name, timeoutMs, outcome)) : Effect.succeed(outcome))
      })
      // Interrupted (the reconcile was abandoned): the call is cancelled, and still observed.
      return Effect.sync(cancel)
    })

  yield* openSideStreams(channel, options)

  // One reconcile hands the same Capability object to three or four calls:
  // it is encoded once (cached objects are replaced, never changed, on update).
  const encoded = new WeakMap<object, Buffer>()
  const capabilityBytes = (capability: unknown) => {
    if (typeof capability !== "object" || capability === null) return jsonBytes(capability)
    let bytes = encoded.get(capability)
    if (bytes === undefined) encoded.set(capability, bytes = jsonBytes(capability))
    return bytes
  }

  const malformed = (method: string, detail: string) =>
    new PluginCallFailed({ plugin: name, method, code: Status.INTERNAL, detail: `the plugin returned ${detail}` })

  const connection: PluginConnection = {
    describe: call(Describe, {}),
    checkValidity: (capability) => call(CheckValidity, { capability: capabilityBytes(capability) }).pipe(Effect.map((r) => r.errors)),
    buildDependents: (capability, observed = []) =>
      call(BuildDependents, {
        capability: capabilityBytes(capability),
        observed: wireObserved(observed)
      }).pipe(
        Effect.flatMap((r) =>
          Effect.forEach(r.dependents, (d) => {
            const object = parseKubeObject(d.object)
            return object !== undefined
              ? Effect.succeed({ id: d.id, object, bytes: d.object.byteLength, deletionPolicy: d.deletionPolicy })
              : Effect.fail(
                malformed(
                  "BuildDependents",
                  `dependent ${d.id} that is not a Kubernetes object (JSON with apiVersion, kind and metadata.name)`
                )
              )
          })
        )
      ),
    updateDependent: (id, capability, existing, observed = []) =>
      call(UpdateDependent, {
        id,
        capability: capabilityBytes(capability),
        existing: jsonBytes(existing),
        observed: wireObserved(observed)
      }).pipe(
        Effect.flatMap(
          (r): Effect.Effect<{ needsUpdate: boolean; updated: Record<string, unknown> | undefined; bytes: number }, PluginCallError> => {
            if (!r.needsUpdate) return Effect.succeed({ needsUpdate: false, updated: undefined, bytes: 0 })
            const updated = parseKubeObject(r.updated)
            return updated !== undefined
              ? Effect.succeed({ needsUpdate: true, updated, bytes: r.updated.byteLength })
              : Effect.fail(malformed("UpdateDependent", `an updated ${id} that is not a Kubernetes object`))
          }
        )
      ),
    evaluateConditions: (capability, observed) =>
      call(EvaluateConditions, {
        capability: capabilityBytes(capability),
        observed: observed.map((o) =>
          "error" in o
            ? { id: o.id, observation: { $case: "error" as const, value: o.error } }
            : { id: o.id, observation: { $case: "object" as const, value: jsonBytes(o.object) } }
        )
      }).pipe(
        Effect.map((r) =>
          r.conditions.map((c) => ({
            id: c.id,
            state: stateName[c.state] ?? "failed",
            reason: c.reason,
            message: c.message,
            attributes: { ...c.attributes }
          }))
        )
      ),
    ping: call(HealthCheck, { service: "plugin" }).pipe(
      Effect.flatMap((r) =>
        r.status === HealthCheckResponse_ServingStatus.SERVING
          ? Effect.void
          : Effect.fail(
            new PluginUnavailable({ plugin: name, method: "Health.Check", detail: `status ${HealthCheckResponse_ServingStatus[r.status]}` })
          )
      )
    ),
    shutdown: call(Shutdown, {}).pipe(
      Effect.asVoid,
      Effect.catchTag("PluginUnavailable", () => Effect.void)
    )
  }
  return connection
})

/** go-plugin hosts open the stdio and broker streams right after connecting. */
const openSideStreams = (channel: Channel, options: ConnectOptions) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      // UNIMPLEMENTED (older plugins) and the end of the connection end them quietly.
      const stdio = channel.serverStream(
        StreamStdio,
        {},
        (data: StdioData) => options.onStdio?.(data.channel === StdioData_Channel.STDOUT ? "stdout" : "stderr", data.data)
      )
      const broker = channel.bidiStream(StartStream)
      return { stdio, broker }
    }),
    ({ stdio, broker }) =>
      Effect.sync(() => {
        stdio.cancel()
        broker.cancel()
      })
  )

const toCallError = (plugin: string, method: string, timeoutMs: number, error: CallError): PluginCallError => {
  switch (error.code) {
    case Status.DEADLINE_EXCEEDED:
      return new PluginTimeout({ plugin, method, timeoutMs })
    case Status.UNAVAILABLE:
    case Status.CANCELLED:
      return new PluginUnavailable({ plugin, method, detail: error.details })
    default:
      return new PluginCallFailed({ plugin, method, code: error.code, detail: error.details })
  }
}
