/**
 * `halkyon plugins render PLUGIN -f CAPABILITY.yaml`: a plugin author's dry
 * run. Starts the plugin (or reattaches to one started by hand) and prints the
 * dependents of one Capability exactly as the operator would apply them, and
 * with --observed the status those objects would give. No cluster. The work
 * is in Render.ts, loaded only when this command runs.
 */
import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { defaultHostSettings } from "../config/HostConfig.ts"
import { hostFlags } from "./HostFlags.ts"
import { withLogging } from "./Logging.ts"

const renderFlags = {
  plugin: Argument.String("plugin").pipe(
    Argument.withDescription("the plugin to start: an executable or a .js bundle (e.g. dist/plugins/postgres); omit it with --reattach"),
    Argument.optional
  ),
  file: Flag.File("filename", { mustExist: true }).pipe(
    Flag.withAlias("f"),
    Flag.withDescription("the Capability to render, YAML or JSON")
  ),
  observed: Flag.File("observed", { mustExist: true }).pipe(
    Flag.withDescription(
      "objects as observed in a cluster (YAML or JSON, several documents or a List), repeatable: adds the status they give"
    ),
    Flag.atLeast(0)
  ),
  namespace: Flag.String("namespace").pipe(
    Flag.withAlias("n"),
    Flag.withDescription("the Capability's namespace when its file names none (default: default)"),
    Flag.optional
  ),
  output: Flag.Literals("output", ["yaml", "json"]).pipe(
    Flag.withAlias("o"),
    Flag.withDescription("output format"),
    Flag.withDefault("yaml")
  ),
  handshakeTimeout: hostFlags.handshakeTimeout,
  callTimeout: hostFlags.callTimeout,
  reattach: hostFlags.reattach
}

const render = Command.make("render", renderFlags, (flags) =>
  withLogging(Effect.gen(function*() {
    const [target, ...more] = flags.reattach
    if (more.length > 0) return yield* Effect.fail(new Error("render takes one plugin: give --reattach once"))
    const plugin = target !== undefined
      ? { reattach: target }
      : Option.isSome(flags.plugin)
      ? { path: flags.plugin.value }
      : undefined
    if (plugin === undefined) {
      return yield* Effect.fail(
        new Error(
          "name the plugin to render with (e.g. halkyon plugins render dist/plugins/postgres -f capability.yaml), or --reattach one"
        )
      )
    }
    const { format, render } = yield* Effect.promise(() => import("./Render.ts"))
    const rendered = yield* render({
      plugin,
      capabilityFile: flags.file,
      observedFiles: flags.observed,
      namespace: Option.getOrUndefined(flags.namespace),
      output: flags.output,
      launch: { ...defaultHostSettings, handshakeTimeoutMs: flags.handshakeTimeout, callTimeoutMs: flags.callTimeout }
    })
    yield* Console.log((yield* format(rendered, flags.output)).trimEnd())
  }))).pipe(
    Command.withDescription(
      "Start a plugin and print what the operator would apply for one Capability: its dependents with namespace, labels, owner reference " +
        "(the uid a placeholder) and field manager, after the plugin's validity check and the operator's rules. With --observed, the " +
        "conditions and Ready status those objects would give. Needs no cluster. Exits 1 with the plugin's messages when the Capability is invalid"
    ),
    Command.withExamples([
      {
        command: "halkyon plugins render dist/plugins/postgres -f samples/postgres.yaml",
        description: "The Secret, StatefulSet and Service of a postgres Capability"
      },
      {
        command: "halkyon plugins render dist/plugins/postgres -f samples/postgres.yaml --observed live.yaml -o json",
        description: "And the status that the objects in live.yaml give, as JSON"
      },
      {
        command: "halkyon plugins render --reattach postgres=unix:/tmp/plugin1a2b3c -f samples/postgres.yaml",
        description: "With a plugin started by hand under a debugger"
      }
    ])
  )

export const renderCommand = render
