/**
 * PluginHost: the plugins of the plugins folder, each started, supervised and
 * stopped.
 *
 * Each plugin file gets a supervisor fiber: launch (PluginProcess), register
 * in the registry, then watch for its exit or for failed health checks. A
 * plugin that stops is marked unavailable and restarted with capped
 * exponential backoff; one that keeps crashing is reported at error level and
 * waits longer each time, never in a tight loop. Calls from the reconcilers
 * go through a CallGuard: a budget of calls in flight per plugin, and a
 * breaker that restarts a plugin whose calls keep timing out even while it
 * answers health checks. A plugin whose category or type is not a valid name
 * is refused once, not restarted. The folder is watched: a new
 * file is loaded, a removed one stopped and unregistered, a replaced one
 * replaced make-before-break: the new file is started beside the old
 * process, and only once its handshake and Describe succeed does it take the
 * old one's place (registered first, then the old one stopped). A new file
 * that fails to start leaves the old process serving, and the failure is
 * reported; the old process runs the code it was started with until it
 * stops. One bad plugin never stops the others.
 *
 * Closing the layer's scope stops every plugin at once (Shutdown, grace,
 * SIGTERM, SIGKILL) and removes their socket folders.
 */
import { statSync, watch } from "node:fs"
import { Context, Deferred, Duration, Effect, Exit, FiberMap, Layer, Option, Schedule, Scope } from "effect"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { HostConfig, type HostSettings } from "../config/HostConfig.ts"
import { makeKeyedBackoff } from "../config/Backoff.ts"
import { PluginClient } from "../plugin-client/PluginClient.ts"
import { Metrics } from "../metrics/Metrics.ts"
import { PluginRegistry } from "../registry/PluginRegistry.ts"
import { type PluginFile, type PluginForm, scanFolder, type SkippedEntry } from "./PluginFiles.ts"
import { guardConnection } from "./CallGuard.ts"
import { attach, launch, type LaunchedPlugin, reattachedFile } from "./PluginProcess.ts"
import type { MemoryKill } from "./MemoryLimit.ts"
import { formatBytes } from "../config/HostConfig.ts"
import { type PluginConnection, wrapCalls } from "../plugin-client/PluginClient.ts"
import { type PluginCallError, PluginUnavailable } from "../plugin-client/Errors.ts"
import { PluginLauncher } from "./PluginLauncher.ts"
import { Redactions } from "./Redactions.ts"
import { hardenPluginHost } from "./ProcessHardening.ts"
import { runnerLauncher } from "./RunnerLauncher.ts"
import { PluginsFolderMissing } from "./Errors.ts"
import { checkInstalled } from "../lock/InstalledCheck.ts"

export type PluginState = "starting" | "running" | "restarting" | "failed"

export interface PluginStatus {
  readonly name: string
  readonly path: string
  readonly form: PluginForm
  readonly state: PluginState
  readonly pid: number | undefined
  /** Spawn to handshake, in ms, of the latest start. */
  readonly startMs: number | undefined
  readonly protocolVersion: number | undefined
  readonly launched: LaunchedPlugin | undefined
  /** Why the latest start failed or the plugin stopped. */
  readonly error: string | undefined
  readonly restarts: number
}

const isFolder = (path: string) => {
  try {
    return statSync(path).isDirectory()
  } catch {
    return false
  }
}

/** Consecutive failed health checks before a plugin counts as hung. */
const HealthFailures = 3
/** A plugin that ran this long is no longer "crashing": its backoff resets. */
const StableAfterMs = 60_000

export class PluginHost extends Context.Service<PluginHost, {
  readonly statuses: Effect.Effect<ReadonlyArray<PluginStatus>>
  readonly skipped: Effect.Effect<ReadonlyArray<SkippedEntry>>
  /** Completes once every plugin found so far has started or failed once. */
  readonly awaitSettled: Effect.Effect<void>
  /** Reads the folder again now (the watcher also does). */
  readonly rescan: Effect.Effect<void>
}>()("halkyon/plugin-host/PluginHost") {
  /**
   * The host over `settings` with all it needs but metrics, exposing the
   * registry it fills and the Redactions its plugins' output goes through
   * (the reconciler registers resolved secret values there). Plugins are spawned here, or by the plugin runner the
   * settings name; this process first makes its /proc entries unreadable to them.
   */
  static readonly layer = (settings: HostSettings) =>
    Layer.effect(PluginHost, Effect.suspend(() => make())).pipe(
      Layer.provideMerge(Layer.merge(PluginRegistry.layer, Redactions.layer)),
      Layer.provide(Layer.effectDiscard(hardenPluginHost(settings))),
      Layer.provide(Layer.mergeAll(
        HostConfig.layer(settings),
        PluginClient.layer,
        NodeServices.layer,
        settings.pluginRunner === undefined
          ? PluginLauncher.localHiding(settings.hiddenFromPlugins ?? [], settings.pluginMemoryLimitBytes).pipe(
            Layer.provide(NodeServices.layer)
          )
          : runnerLauncher(settings.pluginRunner)
      ))
    )
}

const make = Effect.fn("PluginHost.make")(function*() {
  const config = yield* HostConfig
  // Reattached plugins alone need no folder.
  const folder = isFolder(config.pluginsDir)
  if (!folder && config.reattach.length === 0) return yield* new PluginsFolderMissing({ path: config.pluginsDir })
  const reattached = new Set(config.reattach.map((r) => r.name))
  const registry = yield* PluginRegistry
  const metrics = yield* Metrics
  const services = yield* Effect.context<PluginLauncher | PluginClient | Redactions>()
  const statuses = new Map<string, PluginStatus>()
  const files = new Map<string, PluginFile>()
  let skipped: ReadonlyArray<SkippedEntry> = []
  const supervisors = yield* FiberMap.make<string>()

  const setStatus = (file: PluginFile, patch: Partial<PluginStatus>) => {
    const current = statuses.get(file.name) ?? {
      name: file.name,
      path: file.path,
      form: file.form,
      state: "starting" as const,
      pid: undefined,
      startMs: undefined,
      protocolVersion: undefined,
      launched: undefined,
      error: undefined,
      restarts: 0
    }
    statuses.set(file.name, { ...current, ...patch })
    if (patch.state !== undefined && patch.state !== "starting") Deferred.doneUnsafe(settledOnce(file.name), Effect.void)
  }

  // Completed when a plugin's start has ended one way or the other (or the plugin was removed).
  const settled = new Map<string, Deferred.Deferred<void>>()
  const settledOnce = (name: string) => {
    let deferred = settled.get(name)
    if (deferred === undefined) settled.set(name, deferred = Deferred.makeUnsafe<void>())
    return deferred
  }

  const observer = { logLinesDropped: metrics.pluginLogLinesDropped }

  /**
   * Starts a plugin file in a scope of its own, to be handed to the
   * supervisor that then runs it: how a replacement is tried before the
   * running process is stopped.
   */
  const tryStart = (file: PluginFile) =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const exit = yield* launch(file, config, observer).pipe(Scope.provide(scope), Effect.provideContext(services), Effect.exit)
      if (Exit.isFailure(exit)) {
        yield* Scope.close(scope, exit)
        const error = Exit.findErrorOption(exit)
        return { _tag: "Failed", reason: Option.isSome(error) ? error.value.message : String(exit.cause) } as const
      }
      return { _tag: "Started", launched: exit.value, scope } as const
    })
  type Started = Extract<Effect.Success<ReturnType<typeof tryStart>>, { readonly _tag: "Started" }>

  /**
   * Runs one start of the plugin until it stops (`started`: one already
   * made); says why it stopped, and whether to give up on it.
   */
  const runOnce = (
    file: PluginFile,
    started?: Started
  ): Effect.Effect<{ readonly reason: string; readonly final: boolean; readonly memoryKill?: MemoryKill }> =>
    Effect.scoped(
      Effect.gen(function*() {
        // A plugin started by hand (--reattach) is connected to, never launched.
        const target = file.form === "reattached" ? config.reattach.find((r) => r.name === file.name) : undefined
        const launched = target !== undefined
          ? yield* attach(target, config)
          : started === undefined
          ? yield* launch(file, config, observer)
          : yield* Effect.addFinalizer((exit) => Scope.close(started.scope, exit)).pipe(Effect.as(started.launched))
        const guarded = yield* guardConnection(launched.connection, {
          plugin: file.name,
          permits: config.pluginCallPermits,
          waitMs: config.pluginCallWaitMs,
          threshold: config.breakerThreshold,
          onBusy: metrics.pluginCallRejected,
          onTrip: metrics.pluginBreakerTripped
        })
        // Registered before it is "running": that state settles awaitSettled, after which callers resolve it.
        yield* registry.register(file.name, launched.description, explainMemoryKills(guarded.connection, launched))
        setStatus(file, {
          state: "running",
          pid: launched.pid,
          startMs: launched.startMs,
          protocolVersion: launched.handshake.appVersion,
          launched,
          error: undefined
        })
        yield* Effect.logInfo(`plugin ${file.name} running`).pipe(
          Effect.annotateLogs({
            plugin: file.name,
            pid: launched.pid,
            category: launched.description.category,
            types: launched.description.types.map((t) => `${t.type}@${t.versions.join("|")}`).join(","),
            startMs: launched.startMs
          })
        )
        const exited = launched.exited.pipe(
          Effect.flatMap((code) =>
            launched.memoryKill.pipe(
              Effect.map((kill) =>
                kill === undefined ? { reason: `exited with code ${code}` } : { reason: memoryKillReason(kill), memoryKill: kill }
              )
            )
          )
        )
        const hung = healthWatch(launched, config)
        // A plugin that answers health checks but times out on every call is degraded: closed, then restarted.
        const degraded = guarded.tripped.pipe(Effect.tap((reason) => registry.markUnavailable(file.name, reason)))
        const reasonOnly = (reason: Effect.Effect<string>) => reason.pipe(Effect.map((reason) => ({ reason })))
        return { ...(yield* Effect.raceAll([exited, reasonOnly(hung), reasonOnly(degraded)])), final: false }
      })
    ).pipe(
      Effect.provideContext(services),
      Effect.catch((error) => Effect.succeed({ reason: error.message, final: error._tag === "InvalidPluginDescription" }))
    )

  /** Capped exponential backoff between restarts, per plugin. */
  const restartDelays = makeKeyedBackoff(config.restartBaseMs, config.restartMaxMs)

  const supervise = Effect.fn("PluginHost.supervise")(function*(file: PluginFile, started?: Started) {
    let crashes = 0
    restartDelays.reset(file.name)
    let first = started
    for (;;) {
      const began = Date.now()
      const { reason, final, memoryKill } = yield* runOnce(file, first)
      first = undefined
      yield* registry.markUnavailable(file.name, reason, memoryKill !== undefined)
      if (memoryKill !== undefined) {
        metrics.pluginMemoryKilled(file.name, memoryKill.by)
        yield* Effect.logError(`plugin ${file.name} ${reason}`).pipe(
          Effect.annotateLogs({ plugin: file.name, memoryEnforcement: memoryKill.by, memoryLimitBytes: memoryKill.limitBytes })
        )
      }
      if (!config.restart || final) {
        setStatus(file, { state: "failed", error: reason, pid: undefined, launched: undefined })
        yield* Effect.logError(reason).pipe(Effect.annotateLogs({ plugin: file.name }))
        return
      }
      if (Date.now() - began > StableAfterMs) {
        crashes = 1
        restartDelays.reset(file.name)
      } else crashes += 1
      const delay = yield* restartDelays.next(file.name)
      const restarts = (statuses.get(file.name)?.restarts ?? 0) + 1
      setStatus(file, { state: "restarting", error: reason, pid: undefined, launched: undefined, restarts })
      metrics.pluginRestarted(file.name)
      const log = crashes >= 5 ? Effect.logError : Effect.logWarning
      yield* log(
        crashes >= 5
          ? `plugin ${file.name} keeps failing (${crashes} times in a row): ${reason}; next try in ${delay} ms`
          : `plugin ${file.name} stopped: ${reason}; restarting in ${delay} ms`
      ).pipe(Effect.annotateLogs({ plugin: file.name, restarts }))
      yield* Effect.sleep(Duration.millis(delay))
    }
  })

  const start = (file: PluginFile) =>
    Effect.gen(function*() {
      files.set(file.name, file)
      statuses.delete(file.name)
      yield* FiberMap.remove(supervisors, file.name)
      settled.delete(file.name)
      setStatus(file, {})
      const refused = yield* checkInstalled(config.pluginsDir, file.name, config.requireLocked).pipe(Effect.flip, Effect.option)
      if (Option.isSome(refused)) {
        yield* registry.unregister(file.name)
        setStatus(file, { state: "failed", error: refused.value.message })
        return yield* Effect.logError(`not starting plugin ${file.name}: ${refused.value.message}`).pipe(
          Effect.annotateLogs({ plugin: file.name })
        )
      }
      yield* FiberMap.run(supervisors, file.name, supervise(file))
    })

  /** A replaced file: started beside the running process, which it replaces only once it has started. */
  const replace = (file: PluginFile) =>
    Effect.gen(function*() {
      const previous = files.get(file.name)
      // Tried once per version of the file: a broken one is not started again and again.
      files.set(file.name, file)
      const refused = yield* checkInstalled(config.pluginsDir, file.name, config.requireLocked).pipe(Effect.flip, Effect.option)
      const trial = Option.isSome(refused) ? { _tag: "Failed", reason: refused.value.message } as const : yield* tryStart(file)
      // Registered before the old process stops, so that no call finds the plugin missing.
      const registered = trial._tag === "Failed"
        ? trial
        : yield* registry.register(file.name, trial.launched.description, trial.launched.connection).pipe(
          Effect.as(trial),
          Effect.catch((e) => Scope.close(trial.scope, Exit.void).pipe(Effect.as({ _tag: "Failed", reason: e.message } as const)))
        )
      const running = statuses.get(file.name)
      if (registered._tag === "Failed") {
        if (running?.state !== "running" || previous === undefined) {
          // Nothing serves: the new file is started (and supervised) as any new plugin is.
          return yield* start(file)
        }
        const error = `the replaced file could not start (${registered.reason}); the previous version keeps serving`
        statuses.set(file.name, { ...running, error })
        metrics.pluginReplaceFailed(file.name)
        return yield* Effect.logError(`plugin ${file.name} was replaced, but ${error}`).pipe(Effect.annotateLogs({ plugin: file.name }))
      }
      setStatus(file, { error: undefined })
      yield* FiberMap.run(supervisors, file.name, supervise(file, registered))
      yield* Effect.logInfo(`plugin ${file.name} was replaced: the new version serves, the previous one is stopped`).pipe(
        Effect.annotateLogs({ plugin: file.name, pid: registered.launched.pid })
      )
    })

  const stop = (name: string) =>
    Effect.gen(function*() {
      // Unregistered first, so that no new call goes to a plugin being stopped.
      files.delete(name)
      yield* registry.unregister(name)
      yield* FiberMap.remove(supervisors, name)
      statuses.delete(name)
      Deferred.doneUnsafe(settledOnce(name), Effect.void)
      settled.delete(name)
      yield* Effect.logInfo(`plugin ${name} removed from the plugins folder: stopped`).pipe(Effect.annotateLogs({ plugin: name }))
    })

  const rescan = Effect.gen(function*() {
    const scan = yield* Effect.try(() => scanFolder(config.pluginsDir)).pipe(
      Effect.tapError((e) => Effect.logError(`cannot read the plugins folder ${config.pluginsDir}: ${String(e.cause)}`)),
      Effect.option
    )
    if (Option.isNone(scan)) return
    for (const entry of scan.value.skipped) {
      if (!skipped.some((s) => s.path === entry.path && s.reason === entry.reason)) {
        yield* Effect.logWarning(`skipping ${entry.path}: it ${entry.reason}`)
      }
    }
    skipped = scan.value.skipped
    // A plugin reattached by name stands in for the folder's file of that name.
    const found = new Map(scan.value.plugins.filter((p) => !reattached.has(p.name)).map((p) => [p.name, p]))
    for (const name of [...files.keys()]) if (!found.has(name)) yield* stop(name)
    for (const file of found.values()) {
      const known = files.get(file.name)
      if (known === undefined) yield* start(file)
      else if (known.fingerprint !== file.fingerprint) {
        yield* Effect.logInfo(`plugin ${file.name} was replaced: starting the new version beside the running one`).pipe(
          Effect.annotateLogs({ plugin: file.name })
        )
        yield* replace(file)
      }
    }
  }).pipe(Effect.withSpan("PluginHost.rescan"))

  for (const target of config.reattach) {
    const file = reattachedFile(target)
    setStatus(file, {})
    yield* FiberMap.run(supervisors, file.name, supervise(file))
  }
  if (folder) yield* rescan
  if (config.watch && folder) yield* watchFolder(config, rescan)

  const awaitSettled = Effect.suspend(() => {
    const starting = [...statuses.values()].filter((s) => s.state === "starting").map((s) => s.name)
    return Effect.forEach(starting, (name) => Deferred.await(settledOnce(name)), { discard: true })
  })

  return PluginHost.of({
    statuses: Effect.sync(() => [...statuses.values()].sort((a, b) => a.name.localeCompare(b.name))),
    skipped: Effect.sync(() => skipped),
    awaitSettled,
    rescan
  })
})

const memoryKillReason = (kill: MemoryKill) =>
  `was killed for going over its memory limit of ${formatBytes(kill.limitBytes)} (${
    kill.by === "watchdog" ? "by halkyon's watchdog" : `by the kernel's OOM killer, ${kill.by}`
  }: ${kill.evidence}); raise --plugin-memory-limit if it needs more`

/** How long a failed call waits for the process's exit, to say whether its memory limit killed it. */
const ExitWaitMs = 1_000

/**
 * A call that finds the plugin gone says why when its memory limit killed it:
 * the call's failure then carries `memoryKilled`, which the Capability reports
 * as PluginOOMKilled rather than PluginUnavailable.
 */
const explainMemoryKills = (connection: PluginConnection, launched: LaunchedPlugin): PluginConnection => {
  const explained = <A>(_method: string, call: Effect.Effect<A, PluginCallError>): Effect.Effect<A, PluginCallError> =>
    call.pipe(Effect.catchIf(
      (e): e is PluginUnavailable => e instanceof PluginUnavailable,
      (e) =>
        launched.exited.pipe(
          Effect.timeoutOption(Duration.millis(ExitWaitMs)),
          Effect.flatMap((exited) => (exited._tag === "Some" ? launched.memoryKill : Effect.undefined)),
          Effect.flatMap((kill) =>
            Effect.fail(
              kill === undefined
                ? e
                : new PluginUnavailable({ plugin: e.plugin, method: e.method, detail: memoryKillReason(kill), memoryKilled: true })
            )
          )
        )
    ))
  return wrapCalls(connection, explained)
}

/** Completes with a reason when the plugin fails HealthFailures pings in a row. */
const healthWatch = (launched: LaunchedPlugin, config: HostSettings) =>
  Effect.gen(function*() {
    let failures = 0
    for (;;) {
      yield* Effect.sleep(Duration.millis(config.healthIntervalMs))
      const ok = yield* launched.connection.ping.pipe(Effect.as(true), Effect.catch(() => Effect.succeed(false)))
      failures = ok ? 0 : failures + 1
      if (failures >= HealthFailures) return `stopped answering health checks (${failures} in a row)`
    }
  })

/**
 * Rescans when the folder changes (debounced: a copy fires many events), and
 * every few seconds in case an event was missed.
 */
const watchFolder = (config: HostSettings, rescan: Effect.Effect<void>) =>
  Effect.gen(function*() {
    const changed = yield* Effect.acquireRelease(
      Effect.sync(() => {
        let flag = false
        const watcher = (() => {
          try {
            const watcher = watch(config.pluginsDir, () => {
              flag = true
            })
            // The folder removed or made unreadable: the periodic rescan reports it.
            watcher.on("error", () => {
              flag = true
            })
            return watcher
          } catch {
            return undefined
          }
        })()
        return { take: () => ((flag = false), true), peek: () => flag, watcher }
      }),
      ({ watcher }) => Effect.sync(() => watcher?.close())
    )
    let ticks = 0
    yield* Effect.gen(function*() {
      ticks += 1
      if (changed.peek() || ticks % 20 === 0) {
        changed.take()
        yield* rescan
      }
    }).pipe(Effect.repeat(Schedule.spaced(Duration.millis(150))), Effect.forkScoped)
  })
