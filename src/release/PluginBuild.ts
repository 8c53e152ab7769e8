/**
 * Builds a plugin into the two forms the plugins folder takes, with Bun's
 * bundler in-process (so the compiled halkyon binary builds plugins with
 * nothing else installed), and Go plugins with `go build`:
 * - an executable (Bun `compile`, for this machine or a `bun-<os>-<arch>`
 *   target; another target's runtime is fetched once from the npm registry
 *   into Bun's cache, ~/.bun/install/cache, so a cross build needs that
 *   registry or a warm cache);
 * - a single-file bundle `<name>.js`, run by the host's own runtime. What the
 *   SDK loads after the handshake (its Services module) is bundled on its own
 *   and carried in the bundle as a string (src/sdk/ServicesLoader.ts says
 *   why): the bundle then parses only what it runs before its handshake.
 *   The SDK is found wherever it lives: src/sdk/ in this repository, or the
 *   installed @halkyon/sdk package.
 */
import type { BunPlugin } from "bun"
import { existsSync, mkdirSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import type { ReleaseTarget } from "./Targets.ts"

/** Bundles an entry point into one ES module for Bun, minified. */
const bundleText = async (entry: string, plugins: Array<BunPlugin> = []) => {
  const result = await Bun.build({ entrypoints: [entry], target: "bun", format: "esm", minify: true, plugins })
  const output = result.outputs[0]
  if (!result.success || output === undefined || result.outputs.length !== 1) {
    throw new Error(`bundling ${entry} failed:\n${result.logs.map(String).join("\n")}`)
  }
  return output.text()
}

/** Where the bundle of the SDK's Services module goes in a plugin bundle; replaced once the bundle is built. */
const ServicesPlaceholder = "halkyon:services-bundle"

/** The SDK's ServicesLoader, as source in this repository or as the package's compiled module. */
const servicesLoader = /[\\/]sdk[\\/]ServicesLoader\.(ts|js)$/

/**
 * Replaces the SDK's ServicesLoader with one that imports the Services
 * module from a string through a Blob URL, once; remembers where it was.
 */
const carryServices = (found: Array<string>): BunPlugin => ({
  name: "halkyon-carry-services",
  setup(build) {
    build.onLoad({ filter: servicesLoader }, (args) => {
      found.push(args.path)
      return {
        loader: "js",
        contents: [
          `const services = ${JSON.stringify(ServicesPlaceholder)}`,
          "let loaded",
          "export const loadServices = () => (loaded ??= (async () => {",
          "  const url = URL.createObjectURL(new Blob([services], { type: \"text/javascript\" }))",
          "  try { return await import(url) } finally { URL.revokeObjectURL(url) }",
          "})())"
        ].join("\n")
      }
    })
  }
})

/**
 * Puts the bundle of Services in the placeholder's place, as a double-quoted
 * string: the minifier would have written it as a template literal, which a
 * plugin scans several times slower at start (docs/performance.md).
 */
const withServices = (bundle: string, services: string) => {
  const placeholder = JSON.stringify(ServicesPlaceholder)
  const at = bundle.indexOf(placeholder)
  if (at < 0 || bundle.indexOf(placeholder, at + 1) >= 0) throw new Error(`expected ${placeholder} exactly once in the plugin bundle`)
  return bundle.slice(0, at) + JSON.stringify(services) + bundle.slice(at + placeholder.length)
}

/** Writes the single-file bundle of `entry` to `outfile`. */
export const bundlePlugin = async (entry: string, outfile: string) => {
  const loaders: Array<string> = []
  const main = await bundleText(entry, [carryServices(loaders)])
  const loader = loaders[0]
  let text = main
  if (loader !== undefined) {
    const services = ["Services.ts", "Services.js"].map((f) => join(dirname(loader), f)).find((f) => existsSync(f))
    if (services === undefined) throw new Error(`the SDK at ${dirname(loader)} has a ServicesLoader but no Services module beside it`)
    text = withServices(main, await bundleText(services))
  }
  mkdirSync(dirname(outfile), { recursive: true })
  writeFileSync(outfile, text)
  return outfile
}

/**
 * Compiles `entry` into an executable, for this machine or `target`.
 * --splitting puts what is loaded after the handshake in modules of their
 * own inside the executable, with their own bytecode, loaded when imported.
 */
export const compilePlugin = async (entry: string, outfile: string, target?: ReleaseTarget) => {
  mkdirSync(dirname(outfile), { recursive: true })
  const result = await Bun.build({
    entrypoints: [entry],
    throw: false,
    compile: {
      ...(target === undefined ? {} : { target: target.bunTarget as Bun.Build.CompileTarget }),
      outfile,
      // Wherever it is started, a plugin must not pick up a .env or bunfig.toml.
      autoloadDotenv: false,
      autoloadBunfig: false
    },
    bytecode: true,
    format: "esm",
    minify: true,
    splitting: true
  })
  if (!result.success) {
    const why = result.logs.map(String).join("\n") || "Bun gave no reason"
    throw new Error(`compiling ${entry}${target === undefined ? "" : ` for ${target.os}/${target.arch}`} failed: ${why}`)
  }
  return outfile
}

/** The go command: $GO, then go on PATH, then the folders Go's installers use (a login shell may lack them on PATH). */
export const goBinary = (): string => {
  if (process.env.GO) return process.env.GO
  const onPath = Bun.which("go")
  if (onPath !== null) return onPath
  for (const candidate of ["/usr/local/go/bin/go", "/usr/lib/go/bin/go"]) if (existsSync(candidate)) return candidate
  throw new Error("building a Go plugin needs Go: install it (1.24 or later) and put go on PATH, or set GO to its path")
}

/** Builds the Go main package in `dir` into `outfile` for a platform (default this machine), CGO off. */
export const buildGo = (dir: string, outfile: string, platform?: { readonly os: string; readonly arch: string }) => {
  mkdirSync(dirname(outfile), { recursive: true })
  const result = Bun.spawnSync([goBinary(), "build", "-trimpath", "-ldflags=-s -w", "-o", outfile, "."], {
    cwd: dir,
    env: {
      ...process.env,
      CGO_ENABLED: "0",
      ...(platform === undefined ? {} : { GOOS: platform.os, GOARCH: platform.arch }),
      GOFLAGS: process.env.GOFLAGS ?? "-mod=mod",
      // A workspace file elsewhere must not change what is built.
      GOWORK: "off"
    },
    stdout: "pipe",
    stderr: "pipe"
  })
  if (result.exitCode !== 0) {
    const where = platform === undefined ? "" : ` for ${platform.os}/${platform.arch}`
    throw new Error(
      `go build in ${dir}${where} failed (exit code ${result.exitCode}):\n${result.stdout.toString()}${result.stderr.toString()}`
    )
  }
  return outfile
}
