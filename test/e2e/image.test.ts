/**
 * The container image (npm run image), unpacked from its OCI archive and run
 * from its root filesystem alone, as the `halkyon manifests` Deployment runs
 * it: the image's entrypoint (tini) as PID 1 and its user, the root read-only,
 * /tmp and /plugins mounted writable; all without privileges, in user
 * namespaces. The amd64 image runs natively; the arm64 image's binary runs
 * under qemu-user (Debian's, fetched into the user's cache) with the image's
 * own files as its only root.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { V1Container, V1Deployment } from "@kubernetes/client-node"
import pkg from "../../package.json" with { type: "json" }
import { gitCommit } from "../../scripts/build.ts"
import { manifests } from "../../src/api/Manifests.ts"
import { dockerfile, ensureImages, type ImageArch, imageArchive, runtimeConfig } from "../../scripts/image.ts"
import { qemuAarch64 } from "../../scripts/release/debian.ts"
import { readDockerfile } from "../../scripts/release/dockerfile.ts"
import { executableKind } from "../support/binaries.ts"
import { capabilityPath, type Cluster, dig, startCluster, createNamespace } from "../support/cluster.ts"
import {
  childrenOf,
  containerCommand,
  containerInit,
  killContainer,
  type ImageConfig,
  layerInventory,
  ownAs,
  removeAsOwner,
  requireSubordinateIds,
  requireUserNamespaces,
  uidInside,
  unpackImage
} from "../support/image.ts"
import { builtPlugin, eventually, testPlugin } from "../support/paths.ts"
import { DefaultManifestKinds, kindsOf } from "../support/manifests.ts"

const images = new Map<ImageArch, { dir: string; rootfs: string; config: ImageConfig; layers: ReadonlyArray<{ file: string }> }>()

beforeAll(async () => {
  requireUserNamespaces()
  await ensureImages()
  for (const arch of ["amd64", "arm64"] as const) images.set(arch, unpackImage(imageArchive(arch)))
}, 300_000)

afterAll(() => {
  for (const image of images.values()) rmSync(image.dir, { recursive: true, force: true })
})

const image = (arch: ImageArch) => {
  const found = images.get(arch)
  if (found === undefined) throw new Error(`the ${arch} image was not unpacked`)
  return found
}

const run = (command: ReadonlyArray<string>) => {
  const result = Bun.spawnSync([...command], { stdout: "pipe", stderr: "pipe" })
  return { code: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() }
}

const glibcFiles = {
  amd64: ["d 755 0:0 /lib64", "f 755 0:0 /lib64/ld-linux-x86-64.so.2", "d 755 0:0 /lib/x86_64-linux-gnu"],
  arm64: ["f 755 0:0 /lib/ld-linux-aarch64.so.1", "d 755 0:0 /lib/aarch64-linux-gnu"]
}

for (const arch of ["amd64", "arm64"] as const) {
  describe(`the linux/${arch} image`, () => {
    test("is configured to run tini, then halkyon, as the non-root user", () => {
      const { config } = image(arch)
      expect({ os: config.os, architecture: config.architecture }).toEqual({ os: "linux", architecture: arch })
      expect(config.config.User).toBe("65532:65532")
      expect(config.config.Entrypoint).toEqual(["/usr/bin/tini", "--", "/usr/local/bin/halkyon"])
      expect(Object.keys(config.config.ExposedPorts ?? {}).sort()).toEqual(["8080/tcp", "8081/tcp"])
    })

    test("its config is what the Dockerfile declares: user, env, working folder, ports, entrypoint, default arguments", () => {
      const { config } = image(arch)
      expect(config.config).toEqual(runtimeConfig(readDockerfile(dockerfile, { TARGETARCH: arch })))
      expect(config.config.Cmd).toEqual(["run", "--plugins-dir", "/plugins"])
      expect(config.config.WorkingDir).toBe("/tmp")
      expect(config.config.Env).toEqual(["HOME=/tmp", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"])
    })

    test("holds the binary, glibc's loader and four libraries, tini, CA certificates, users, and writable /plugins and /tmp: nothing else", () => {
      const triplet = arch === "amd64" ? "x86_64-linux-gnu" : "aarch64-linux-gnu"
      const expected = [
        "d 755 0:0 /etc",
        "f 644 0:0 /etc/group",
        "f 644 0:0 /etc/nsswitch.conf",
        "f 644 0:0 /etc/passwd",
        "d 755 0:0 /etc/ssl",
        "d 755 0:0 /etc/ssl/certs",
        "f 644 0:0 /etc/ssl/certs/ca-certificates.crt",
        "d 755 0:0 /lib",
        ...["libc.so.6", "libdl.so.2", "libm.so.6", "libpthread.so.0"].map((l) => `f 755 0:0 /lib/${triplet}/${l}`),
        ...glibcFiles[arch],
        "d 755 65532:65532 /plugins",
        "d 1777 0:0 /tmp",
        "d 755 0:0 /usr",
        "d 755 0:0 /usr/bin",
        "f 755 0:0 /usr/bin/tini",
        "d 755 0:0 /usr/local",
        "d 755 0:0 /usr/local/bin",
        "f 755 0:0 /usr/local/bin/halkyon"
      ]
      const { rootfs, layers } = image(arch)
      expect(layers).toHaveLength(1)
      expect(layers.flatMap((l) => layerInventory(l.file)).sort()).toEqual(expected.sort())
      expect(readFileSync(join(rootfs, "etc/passwd"), "utf8")).toContain("halkyon:x:65532:65532:")
      expect(readFileSync(join(rootfs, "etc/group"), "utf8")).toContain("halkyon:x:65532:")
      expect(readFileSync(join(rootfs, "etc/ssl/certs/ca-certificates.crt"), "utf8").match(/BEGIN CERTIFICATE/g)?.length).toBeGreaterThan(
        100
      )
      for (const binary of ["usr/local/bin/halkyon", "usr/bin/tini"]) {
        expect(executableKind(join(rootfs, binary))).toEqual({ format: "ELF", arch })
      }
    })
  })
}

test("the Deployment of halkyon manifests fits the image: its user, its writable folders, its ports, its default image name", () => {
  const { config } = image("amd64")
  const deployment = manifests().find((m) => m.kind === "Deployment") as V1Deployment
  const container = deployment.spec?.template.spec?.containers[0]
  expect(`${container?.securityContext?.runAsUser}:${container?.securityContext?.runAsUser}`).toBe(config.config.User ?? "")
  expect(container?.securityContext?.readOnlyRootFilesystem).toBe(true)
  expect(container?.volumeMounts?.map((m) => m.mountPath).sort()).toEqual([
    "/plugins",
    "/run/halkyon",
    "/tmp",
    "/var/run/secrets/kubernetes.io/serviceaccount"
  ])
  expect(container?.args).toContain("/plugins")
  expect(container?.ports?.map((p) => `${p.containerPort}/tcp`).sort()).toEqual(Object.keys(config.config.ExposedPorts ?? {}).sort())
  expect(container?.image).toBe(`ghcr.io/halkyonio/halkyon:${pkg.version}`)
})

describe("the linux/amd64 image, run from its root filesystem alone", () => {
  test("halkyon version prints version, commit and platform", () => {
    const { rootfs, config } = image("amd64")
    const { code, stdout, stderr } = run(containerCommand(rootfs, config, ["version"]))
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" })
    expect(stdout).toBe(`halkyon ${pkg.version} (commit ${gitCommit()}) linux/amd64\n`)
  })

  test("halkyon manifests prints the install YAML", () => {
    const { rootfs, config } = image("amd64")
    const { code, stdout, stderr } = run(containerCommand(rootfs, config, ["manifests", "--image", "example.com/halkyon:test"]))
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" })
    expect(kindsOf(stdout)).toEqual(DefaultManifestKinds)
    expect(stdout).toContain("image: example.com/halkyon:test")
  })

  describe("halkyon run against the local control plane", () => {
    let cluster: Cluster
    const ns = "image-test"
    const tmp = mkdtempSync(join(tmpdir(), "halkyon-container-tmp-"))
    const plugins = mkdtempSync(join(tmpdir(), "halkyon-container-plugins-"))

    beforeAll(async () => {
      cluster = await startCluster()
      await createNamespace(cluster, ns)
    }, 180_000)

    afterAll(async () => {
      await cluster?.plane.stop()
      rmSync(tmp, { recursive: true, force: true })
      rmSync(plugins, { recursive: true, force: true })
    })

    test(
      "becomes ready as PID 1's child, as user 65532, runs the postgres plugin from /plugins, provisions a Capability, and stops cleanly on SIGTERM",
      async () => {
        const { rootfs, config } = image("amd64")
        // The emptyDir volumes of the Deployment (writable by anyone), /plugins holding the plugin.
        chmodSync(tmp, 0o1777)
        chmodSync(plugins, 0o777)
        copyFileSync(cluster.plane.kubeconfigPath, join(tmp, "kubeconfig"))
        chmodSync(join(tmp, "kubeconfig"), 0o644)
        copyFileSync(builtPlugin("postgres"), join(plugins, "postgres"))
        chmodSync(join(plugins, "postgres"), 0o755)
        const args = [
          "run",
          "--kubeconfig",
          "/tmp/kubeconfig",
          "--plugins-dir",
          "/plugins",
          "--health-addr",
          "127.0.0.1:0",
          "--metrics-addr",
          "0",
          "--namespace",
          ns
        ]
        const proc = Bun.spawn(containerCommand(rootfs, config, args, { mounts: { "/tmp": tmp, "/plugins": plugins } }), {
          stdout: "pipe",
          stderr: "pipe"
        })
        let stderr = ""
        void (async () => {
          for await (const chunk of proc.stderr) stderr += new TextDecoder().decode(chunk)
        })()
        try {
          const health = () => /health on ([0-9.]+:\d+)/.exec(stderr)?.[1]
          expect(await eventually(() => health() !== undefined, 30_000)).toBe(true)
          const readyz = async () => (await fetch(`http://${health()}/readyz`).catch(() => undefined))?.status === 200
          expect({ ready: await eventually(readyz, 30_000), stderr: "" }).toEqual({ ready: true, stderr: "" })

          // PID 1 of the container is tini; its child, the operator, runs as the image's user, and runs the plugin.
          const init = containerInit(proc.pid) ?? 0
          expect(readFileSync(`/proc/${init}/comm`, "utf8").trim()).toBe("tini")
          const [operator = 0] = childrenOf(init)
          expect(uidInside(operator)).toBe(65532)
          const plugins = () => childrenOf(operator).map((p) => readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0")[0])
          expect({ plugins: plugins(), stderr }).toEqual({ plugins: ["/plugins/postgres"], stderr })

          const created = await cluster.api("POST", capabilityPath(ns), {
            apiVersion: "halkyon.io/v1beta1",
            kind: "Capability",
            metadata: { name: "db" },
            spec: { category: "database", type: "postgres", version: "16" }
          })
          expect(created.status).toBe(201)
          const provisioned = await eventually(async () => {
            const status = (await cluster.api("GET", capabilityPath(ns, "db"))).body
            return (dig<Array<unknown>>(status, "status", "dependents") ?? []).length === 3
          }, 30_000)
          expect({ provisioned, stderr: provisioned ? "" : stderr }).toEqual({ provisioned: true, stderr: "" })
          expect((await cluster.api("GET", `/apis/apps/v1/namespaces/${ns}/statefulsets`)).body.items).toHaveLength(1)

          // tini passes SIGTERM to the operator, which stops its plugin (whose socket folder in /tmp goes) and exits.
          const sockets = () => readdirSync(tmp).filter((f) => f.startsWith("hk-"))
          expect(sockets()).toHaveLength(1)
          process.kill(init, "SIGTERM")
          expect({ code: await proc.exited, sockets: sockets() }).toEqual({ code: 0, sockets: [] })
        } finally {
          killContainer(proc)
        }
      },
      120_000
    )
  })
})

describe("the linux/amd64 image as the pod of halkyon manifests: the operator, and plugins in the plugin-runner sidecar", () => {
  let cluster: Cluster
  const ns = "image-pod"
  const scratch: Array<string> = []
  // Filled first, then given its owner: the owner may be one the test's own user cannot write as.
  const folder = (mode: number, uid = 0, gid = 0, fill: (dir: string) => void = () => {}) => {
    const dir = mkdtempSync(join(tmpdir(), "halkyon-pod-"))
    scratch.push(dir)
    fill(dir)
    ownAs(dir, uid, gid, mode)
    return dir
  }

  beforeAll(async () => {
    requireSubordinateIds()
    cluster = await startCluster()
    await createNamespace(cluster, ns)
  }, 180_000)

  afterAll(async () => {
    await cluster?.plane.stop()
    for (const dir of scratch) removeAsOwner(dir)
  })

  test("plugins run as 65533 beside the operator, read none of its credentials, reach Ready, and die with the operator", async () => {
    const { rootfs, config } = image("amd64")
    const pod = manifests().find((m) => m.kind === "Deployment") as V1Deployment
    const runnerSpec = pod.spec?.template.spec?.initContainers?.[0]
    const operatorSpec = pod.spec?.template.spec?.containers[0]
    const as = (uid: number | undefined) => ({
      ...config,
      config: { ...config.config, User: `${uid}:${operatorSpec?.securityContext?.runAsGroup}` }
    })
    // The pod's volumes: emptyDirs group-owned by fsGroup 65532, the token in the operator's only.
    const plugins = folder(0o2775, 65532, 65532, (dir) => {
      for (const [from, name] of [[builtPlugin("postgres"), "postgres"], [testPlugin("snoop"), "snoop"]] as const) {
        copyFileSync(from, join(dir, name))
        chmodSync(join(dir, name), 0o755)
      }
    })
    const shared = folder(0o2775, 0, 65532)
    const runnerTmp = folder(0o1777)
    const token = `token-${crypto.randomUUID()}`
    const secret = `s3cr3t-${crypto.randomUUID()}`
    const tokenDir = folder(0o755, 0, 0, (dir) => {
      writeFileSync(join(dir, "token"), token)
      ownAs(join(dir, "token"), 0, 65532, 0o640)
    })
    // Outside a cluster the operator needs a kubeconfig: its own, 0600.
    const operatorTmp = folder(0o1777, 0, 0, (dir) => {
      copyFileSync(cluster.plane.kubeconfigPath, join(dir, "kubeconfig"))
      ownAs(join(dir, "kubeconfig"), 65532, 65532, 0o600)
    })
    const mounts = (spec: V1Container | undefined, volumes: Record<string, string>) =>
      Object.fromEntries((spec?.volumeMounts ?? []).map((m) => [m.mountPath, volumes[m.name] ?? ""]))
    const volumes = { plugins, runner: shared, "runner-tmp": runnerTmp, tmp: operatorTmp, "kube-api-access": tokenDir }
    const runnerCommand = containerCommand(rootfs, as(runnerSpec?.securityContext?.runAsUser), runnerSpec?.args, {
      mounts: mounts(runnerSpec, volumes)
    })
    const runner = Bun.spawn(runnerCommand, { stdout: "pipe", stderr: "pipe" })
    // The pod's args but leader election and impersonation (no plugin ServiceAccounts here: rbac.test.ts covers them), probes on loopback.
    const podArgs = operatorSpec?.args ?? []
    const args = [
      ...podArgs
        .filter((a, i) => a !== "--leader-elect" && a !== "--impersonate" && podArgs[i - 1] !== "--impersonate")
        .map((a) => (a.startsWith(":") ? "127.0.0.1:0" : a)),
      "--kubeconfig",
      "/tmp/kubeconfig",
      "--namespace",
      ns
    ]
    let operator: ReturnType<typeof Bun.spawn> | undefined
    let stderr = ""
    try {
      expect(await eventually(() => existsSync(join(shared, "runner.sock")), 30_000)).toBe(true)
      operator = Bun.spawn(
        containerCommand(rootfs, as(operatorSpec?.securityContext?.runAsUser), args, {
          mounts: mounts(operatorSpec, volumes),
          env: { HALKYON_TEST_SECRET: secret }
        }),
        { stdout: "pipe", stderr: "pipe" }
      )
      void (async () => {
        for await (const chunk of operator.stderr as ReadableStream<Uint8Array>) stderr += new TextDecoder().decode(chunk)
      })()
      expect({ ready: await eventually(() => stderr.includes("operator ready"), 60_000), stderr: "" }).toEqual({ ready: true, stderr: "" })

      // The plugins are the runner's children, as 65533, out of the operator's sight (another PID namespace).
      const runnerInit = containerInit(runner.pid) ?? 0
      const [runnerProcess = 0] = childrenOf(runnerInit)
      const pluginPids = childrenOf(runnerProcess)
      const commands = pluginPids.map((p) => readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0")[0]).sort()
      expect({ commands, stderr: commands.length === 2 ? "" : stderr }).toEqual({
        commands: ["/plugins/postgres", "/plugins/snoop"],
        stderr: ""
      })
      for (const p of pluginPids) expect(uidInside(p)).toBe(65533)

      const create = (name: string, spec: Record<string, unknown>) =>
        cluster.api("POST", capabilityPath(ns), { apiVersion: "halkyon.io/v1beta1", kind: "Capability", metadata: { name }, spec })
      expect((await create("db", { category: "database", type: "postgres", version: "16" })).status).toBe(201)
      const dependents = async () =>
        dig<Array<unknown>>((await cluster.api("GET", capabilityPath(ns, "db"))).body, "status", "dependents") ?? []
      const provisioned = await eventually(async () => (await dependents()).length === 3, 30_000)
      expect({ provisioned, stderr: provisioned ? "" : stderr }).toEqual({ provisioned: true, stderr: "" })

      // The snoop plugin guesses the operator's paths too.
      const guesses = ["/tmp/kubeconfig", "/var/run/secrets/kubernetes.io/serviceaccount/token", "/proc/1/environ"].join(":")
      const heist = { category: "test", type: "snoop", version: "1", parameters: [{ name: "ALSO_READ", value: guesses }] }
      expect((await create("heist", heist)).status).toBe(201)
      let loot: Record<string, string> | undefined
      const configMap = `/api/v1/namespaces/${ns}/configmaps/heist`
      await eventually(async () => (loot = dig((await cluster.api("GET", configMap)).body, "data")) !== undefined, 30_000)
      expect(loot).toBeDefined()
      expect(JSON.stringify(loot)).not.toContain(secret)
      expect(JSON.stringify(loot)).not.toContain(token)
      expect(loot?.token).toBe("ENOENT")
      expect(loot?.kubeconfig).toContain("/tmp/kubeconfig: ENOENT")
      expect(loot?.kubeconfig).toContain("/var/run/secrets/kubernetes.io/serviceaccount/token: ENOENT")

      // The operator killed outright: the runner stops its plugins within 2 s, and keeps running.
      process.kill(containerInit(operator.pid) ?? 0, "SIGKILL")
      const gone = await eventually(() => childrenOf(runnerProcess).length === 0, 2_000, 20)
      expect({ gone, left: childrenOf(runnerProcess) }).toEqual({ gone: true, left: [] })
      expect(runner.exitCode).toBeNull()
    } finally {
      if (operator !== undefined) killContainer(operator)
      killContainer(runner)
    }
  }, 180_000)
})

describe("the linux/arm64 image's binary", () => {
  test("runs halkyon version with only the image's files as its root (qemu-user)", async () => {
    const { rootfs } = image("arm64")
    const { code, stdout, stderr } = run([await qemuAarch64(), "-L", rootfs, join(rootfs, "usr/local/bin/halkyon"), "version"])
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" })
    expect(stdout).toBe(`halkyon ${pkg.version} (commit ${gitCommit()}) linux/arm64\n`)
  })
})
