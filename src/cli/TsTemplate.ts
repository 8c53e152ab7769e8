/**
 * The TypeScript plugin project `halkyon plugins new --lang ts` writes, as
 * strings so that the compiled binary carries it: a package on @halkyon/sdk
 * with one dependent (a Deployment), its test, a sample Capability, a README
 * with the author's loop, and a release workflow. Each file is a function of
 * the scaffold's settings (Scaffold).
 */

export interface Scaffold {
  /** The plugin's name: its executable's, its release's. */
  readonly name: string
  readonly category: string
  readonly type: string
  /** The halkyon release the project is made with, for the workflow. */
  readonly halkyonVersion: string
  /** What package.json depends on for @halkyon/sdk: a version, or a file: path (HALKYON_SDK_SPEC). */
  readonly sdkSpec: string
}

// The project's own relative imports are interpolated (from "${"./plugin.ts"}"): written plainly, the
// layering test's import scanner would take them for imports of this module.
const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`

const packageJson = (s: Scaffold) =>
  json({
    name: `${s.name}-plugin`,
    version: "0.1.0",
    private: true,
    description: `A halkyon plugin that provisions ${s.category}/${s.type} Capabilities`,
    type: "module",
    halkyon: { name: s.name, main: "src/main.ts" },
    scripts: {
      test: "bun test",
      typecheck: "tsc --noEmit -p .",
      build: "halkyon plugins build",
      render: `halkyon plugins render dist/${s.name} -f samples/capability.yaml`
    },
    dependencies: { "@halkyon/sdk": s.sdkSpec },
    devDependencies: { "@types/bun": "1.4.5", bun: "1.4.5", "kubernetes-types": "1.30.0", typescript: "7.0.2" }
  })

const tsconfig = json({
  compilerOptions: {
    target: "ES2022",
    module: "Preserve",
    moduleResolution: "bundler",
    lib: ["ES2023", "ESNext.Disposable", "DOM"],
    types: ["bun"],
    strict: true,
    noUncheckedIndexedAccess: true,
    allowImportingTsExtensions: true,
    verbatimModuleSyntax: true,
    noEmit: true
  },
  include: ["src", "test"]
})

const plugin = (s: Scaffold) => `/**
 * The ${s.name} plugin: a ${s.category}/${s.type} Capability becomes one Deployment,
 * ready once a replica is. Add dependents (a Service, a Secret the workload
 * binds to…) to the list at the end, in the order they are applied.
 */
import { definePlugin, dependent, pending, ready } from "@halkyon/sdk"
import type { Deployment } from "kubernetes-types/apps/v1"

const labels = (name: string) => ({ "app.kubernetes.io/name": "${s.type}", "app.kubernetes.io/instance": name })

const deployment = dependent<Deployment>({
  id: "deployment",
  apiVersion: "apps/v1",
  kind: "Deployment",
  build: (ctx) => ({
    metadata: { name: ctx.name, namespace: ctx.namespace, labels: labels(ctx.name) },
    spec: {
      replicas: 1,
      selector: { matchLabels: labels(ctx.name) },
      template: {
        metadata: { labels: labels(ctx.name) },
        spec: {
          containers: [{ name: "${s.type}", image: \`${s.type}:\${ctx.version}\`, ports: [{ containerPort: Number(ctx.parameters.PORT) }] }]
        }
      }
    }
  }),
  // Only what this plugin decides is compared: other fields belong to Kubernetes.
  update: (existing, desired) =>
    existing.spec?.template.spec?.containers[0]?.image === desired.spec?.template.spec?.containers[0]?.image ? undefined : desired,
  ready: (observed) => {
    const have = observed.status?.readyReplicas ?? 0
    return have >= 1 ? ready("ReplicasReady", \`\${have} replica(s) ready\`) : pending("ReplicasNotReady", "no replica ready yet")
  }
})

export const plugin = definePlugin({
  name: "${s.name}",
  category: "${s.category}",
  types: [{ type: "${s.type}", versions: ["latest"] }],
  parameters: [{ name: "PORT", description: "the port ${s.type} listens on", default: "8080" }],
  validate: (ctx) => (/^\\d+$/.test(ctx.parameters.PORT ?? "") ? [] : [\`PORT must be a number, got "\${ctx.parameters.PORT}"\`]),
  dependents: [deployment]
})
`

const main = `/** The plugin's executable: serves the plugin to the halkyon operator that starts it. */
import { serve } from "@halkyon/sdk"
import { plugin } from "${"./plugin.ts"}"

serve(plugin)
`

const test = (s: Scaffold) => `/** Fast tests: the plugin's functions in this process, no gRPC, no cluster. */
import { expect, test } from "bun:test"
import { testPlugin } from "@halkyon/sdk/testing"
import type { Deployment } from "kubernetes-types/apps/v1"
import { plugin } from "${"../src/plugin.ts"}"

const t = testPlugin(plugin)

test("builds one Deployment, apiVersion and kind filled in", () => {
  const capability = t.capability({ name: "demo", namespace: "apps" })
  expect(t.validate(capability)).toEqual([])
  expect(t.build(capability).map((d) => [d.id, d.object.apiVersion, d.object.kind])).toEqual([["deployment", "apps/v1", "Deployment"]])
  expect(t.buildOne<Deployment>(capability, "deployment").spec?.template.spec?.containers[0]?.image).toBe("${s.type}:latest")
})

test("refuses a port that is not a number", () => {
  expect(t.validate(t.capability({ parameters: { PORT: "eighty" } }))).toEqual(['PORT must be a number, got "eighty"'])
})

test("ready once a replica is", () => {
  const capability = t.capability()
  const observed = (readyReplicas: number) => ({ object: { ...t.buildOne<Deployment>(capability, "deployment"), status: { readyReplicas } } })
  expect(t.conditions(capability, { deployment: observed(0) }).deployment?.state).toBe("pending")
  expect(t.conditions(capability, { deployment: observed(1) }).deployment?.state).toBe("ready")
})
`

export const sampleCapability = (
  s: Scaffold
) => `# A Capability this plugin serves: halkyon plugins render dist/${s.name} -f samples/capability.yaml
apiVersion: halkyon.io/v1beta1
kind: Capability
metadata:
  name: ${s.type}-demo
spec:
  category: ${s.category}
  type: ${s.type}
  parameters:
    - name: PORT
      value: "8080"
`

const readme = (s: Scaffold) => `# ${s.name}: a halkyon plugin

Provisions \`${s.category}/${s.type}\` Capabilities: src/plugin.ts says what each one becomes.

## The loop

1. \`npm install\` once (brings @halkyon/sdk, Bun and TypeScript); commit the package-lock.json it writes.
2. Edit \`src/plugin.ts\`; \`npm test\` runs \`test/\` in process, in milliseconds.
3. \`halkyon plugins build\` writes \`dist/${s.name}\` (this machine) and \`dist/${s.name}.js\` (any).
4. \`halkyon plugins render dist/${s.name} -f samples/capability.yaml\` prints what the operator would apply.
5. Add \`--observed live.yaml\` (objects from \`kubectl get -o yaml\`) to see the Ready condition they give.
6. Debug: \`HALKYON_PLUGIN_DEBUG=1 bun --inspect src/main.ts\` prints a \`--reattach\` value for \`halkyon run\` or \`render\`.
7. On a cluster: \`halkyon run --plugins-dir dist\`, then \`kubectl apply -f samples/capability.yaml\`.
8. Release: push a tag \`v0.1.0\`; .github/workflows/release.yml runs \`halkyon plugins build --release\` and publishes \`dist/release/\`.
9. Users install it: \`halkyon plugins install OWNER/REPO@v0.1.0\`.
10. See https://github.com/halkyon-io/halkyon/tree/main/docs/plugins for the SDK, testing and the protocol.
`

const gitignore = `node_modules/
dist/
*.tgz
`

/** The release workflow: on a tag, test, build every platform with halkyon, publish dist/release as the release's assets. */
export const releaseWorkflow = (
  s: Scaffold,
  build: ReadonlyArray<string>
) => `# On a tag v*: tests, then the release assets halkyon plugins install downloads,
# published as the GitHub release of that tag.
name: release
on:
  push:
    tags: ["v*"]
permissions:
  contents: write
env:
  HALKYON_VERSION: "${s.halkyonVersion}"
  # Where halkyon's own releases are downloaded from.
  HALKYON_RELEASES: https://github.com/halkyon-io/halkyon/releases/download
jobs:
  release:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
${build.map((line) => `      ${line}`).join("\n")}
      - name: Install halkyon
        run: |
          curl -fsSL -o halkyon.tar.gz "\${HALKYON_RELEASES}/v\${HALKYON_VERSION}/halkyon_\${HALKYON_VERSION}_linux_amd64.tar.gz"
          tar -xzf halkyon.tar.gz halkyon && sudo install halkyon /usr/local/bin/halkyon
      - name: Build every platform and the release folder
        run: halkyon plugins build --release
      - name: Publish
        env:
          GH_TOKEN: \${{ github.token }}
        run: gh release create "\${GITHUB_REF_NAME}" dist/release/* --title "${s.name} \${GITHUB_REF_NAME}" --generate-notes
`

export const tsProject = (s: Scaffold): Record<string, string> => ({
  "package.json": packageJson(s),
  "tsconfig.json": tsconfig,
  "src/plugin.ts": plugin(s),
  "src/main.ts": main,
  "test/plugin.test.ts": test(s),
  "samples/capability.yaml": sampleCapability(s),
  "README.md": readme(s),
  ".gitignore": gitignore,
  ".github/workflows/release.yml": releaseWorkflow(s, [
    "- uses: actions/setup-node@v4",
    "  with:",
    "    node-version: 22",
    "- run: npm ci",
    "- run: npm run typecheck",
    "- run: npm test"
  ])
})
