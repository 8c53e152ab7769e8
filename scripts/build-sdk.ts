/**
 * Builds the SDK package, packages/sdk (`@halkyon/sdk`), from src/sdk, the
 * one source: TypeScript emits src/sdk and the few modules it imports
 * (src/gen, src/protocol, src/api, src/kube) into packages/sdk/dist as
 * JavaScript with `.js` import paths and `.d.ts` declarations, keeping src/'s
 * layout, so the post-handshake code (dist/sdk/Services.js, loaded by
 * dist/sdk/ServicesLoader.js) stays a module of its own that a plugin build
 * can carry as a string (scripts/build-plugins.ts). Then it checks that every
 * package the emitted code imports is a dependency of the SDK, pinned as the
 * root package.json pins it. With --pack, `npm pack` writes the tarball into
 * dist/sdk/ and its path is printed last.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs"
import { join, resolve } from "node:path"

const root = resolve(import.meta.dir, "..")
export const sdkDir = join(root, "packages/sdk")

interface Manifest {
  readonly name: string
  readonly version: string
  readonly dependencies?: Readonly<Record<string, string>>
  readonly devDependencies?: Readonly<Record<string, string>>
}

const readManifest = (path: string) => JSON.parse(readFileSync(path, "utf8")) as Manifest

const run = (command: ReadonlyArray<string>, cwd: string) => {
  const result = Bun.spawnSync([...command], { cwd, stdout: "pipe", stderr: "pipe" })
  if (result.exitCode !== 0) {
    throw new Error(
      `${command.join(" ")} failed with exit code ${result.exitCode}:\n${result.stdout.toString()}${result.stderr.toString()}`
    )
  }
  return result.stdout.toString()
}

const filesUnder = (dir: string): Array<string> =>
  readdirSync(dir).flatMap((name) => (statSync(join(dir, name)).isDirectory() ? filesUnder(join(dir, name)) : [join(dir, name)]))

/** The packages the emitted JavaScript imports (not node: nor bun: builtins), by package name. */
const importedPackages = (dist: string): Set<string> => {
  const found = new Set<string>()
  const transpiler = new Bun.Transpiler({ loader: "js" })
  for (const file of filesUnder(dist).filter((f) => f.endsWith(".js"))) {
    for (const { path } of transpiler.scanImports(readFileSync(file, "utf8"))) {
      if (path.startsWith(".") || path.startsWith("node:") || path.startsWith("bun:")) continue
      const parts = path.split("/")
      found.add(path.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0] ?? path)
    }
  }
  return found
}

/** Emits packages/sdk/dist and checks its dependencies; returns the manifest. */
export const buildSdk = (): Manifest => {
  const dist = join(sdkDir, "dist")
  rmSync(dist, { recursive: true, force: true })
  run([join(root, "node_modules/.bin/tsc"), "-p", join(sdkDir, "tsconfig.build.json")], root)
  const manifest = readManifest(join(sdkDir, "package.json"))
  const rootManifest = readManifest(join(root, "package.json"))
  const pins = { ...rootManifest.devDependencies, ...rootManifest.dependencies }
  const declared = manifest.dependencies ?? {}
  const imported = importedPackages(dist)
  const problems = [
    ...[...imported].filter((name) => declared[name] === undefined).map((name) =>
      `the SDK imports ${name}, which packages/sdk/package.json does not depend on`
    ),
    ...Object.keys(declared).filter((name) => !imported.has(name)).map((name) =>
      `packages/sdk/package.json depends on ${name}, which the SDK does not import`
    ),
    ...Object.entries(declared).filter(([name, version]) => pins[name] !== version)
      .map(([name, version]) => `packages/sdk/package.json pins ${name}@${version}, the root package.json ${pins[name] ?? "nothing"}`)
  ]
  if (problems.length > 0) throw new Error(problems.join("\n"))
  if (manifest.version !== rootManifest.version) {
    throw new Error(`packages/sdk is version ${manifest.version}, halkyon ${rootManifest.version}: keep them equal`)
  }
  return manifest
}

/** `npm pack`s packages/sdk into `outDir`; returns the tarball's path. */
export const packSdk = (outDir: string = join(root, "dist/sdk")): string => {
  rmSync(outDir, { recursive: true, force: true })
  mkdirSync(outDir, { recursive: true })
  const out = run(["npm", "pack", "--silent", "--pack-destination", outDir], sdkDir)
  const file = out.trim().split("\n").pop() ?? ""
  return join(outDir, file)
}

if (import.meta.main) {
  const started = performance.now()
  const manifest = buildSdk()
  console.log(`built ${manifest.name}@${manifest.version} in packages/sdk/dist in ${Math.round(performance.now() - started)} ms`)
  if (process.argv.includes("--pack")) {
    const tarball = packSdk()
    console.log(`packed ${(statSync(tarball).size / 1024).toFixed(1)} KiB`)
    console.log(tarball)
  }
}
