/**
 * Plugins cannot read the operator's credentials (issue 13, point 5), with
 * the snoop fixture plugin (a credential thief), which reports in a ConfigMap what it could read
 * of the operator's environment (/proc/<pid>/environ), of the ServiceAccount
 * token and of every kubeconfig it can name.
 *
 * - On a laptop (plugins are the operator's children, same user): the
 *   operator's environment is out of reach (PR_SET_DUMPABLE 0); its
 *   kubeconfig too where the kernel offers Landlock (else it is readable,
 *   and the test checks that); a token in its filesystem is not.
 * - Through `halkyon plugin-runner` as another uid, as in the pod `halkyon
 *   manifests` writes (operator 65532, runner 65533, group 65532): postgres
 *   Capabilities reach Ready through it, the snoop plugin reads nothing of
 *   the operator's, a plugin killed by hand is restarted, and a SIGKILL of the
 *   operator leaves no plugin process within 2 s.
 *
 * Run as root, the test runs the operator and the runner as those uids
 * (setpriv): root plugins could read anything. The operator then also gets,
 * as in its container, a ServiceAccount token at the standard path in a mount
 * namespace of its own (unshare). Run as an ordinary user, both
 * run as that user, and the test checks what the design promises then: the
 * environment stays out of reach, the kubeconfig does not.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { chmodSync, chownSync, copyFileSync, existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import {
  capabilityPath,
  type Cluster,
  dig,
  type Operator,
  readyOf,
  startCluster,
  startOperator,
  untilReady,
  markStatefulSetReady as markReady,
  createNamespace
} from "../support/cluster.ts"
import { builtPlugin, eventually, processesMatching, root, testPlugin } from "../support/paths.ts"
import { landlockAbi } from "../../src/plugin-host/Landlock.ts"

const isRoot = process.getuid?.() === 0
/** Whether this kernel lets the operator keep its kubeconfig files from local plugins. */
const landlock = landlockAbi() > 0
const operatorUid = 65532
const runnerUid = 65533
/** setpriv's words to run a command as `uid` in the operator's group; none when not root. */
const as = (uid: number) => (isRoot ? ["setpriv", `--reuid=${uid}`, `--regid=${operatorUid}`, "--clear-groups", "--"] : [])
const tokenDir = "/run/secrets/kubernetes.io/serviceaccount"
/** A value only the operator's ServiceAccount token file holds. */
const token = `token-${crypto.randomUUID()}`
/**
 * Runs the operator as in its container: in a mount namespace of its own
 * where a ServiceAccount token (the operator's, mode 0600) sits at the
 * standard path, seen by nothing outside it. Root only; else as `as`.
 */
const asOperatorWithToken = () =>
  isRoot
    ? [
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "--",
      "sh",
      "-c",
      `mount -t tmpfs -o mode=755 tmpfs /run && mkdir -p ${tokenDir} && printf %s "$HALKYON_TEST_TOKEN" > ${tokenDir}/token && ` +
      `chown ${operatorUid}:${operatorUid} ${tokenDir}/token && chmod 600 ${tokenDir}/token && exec "$@"`,
      "sh",
      ...as(operatorUid)
    ]
    : []
const own = (path: string, uid: number, mode: number) => {
  if (isRoot) chownSync(path, uid, operatorUid)
  chmodSync(path, mode)
}

let cluster: Cluster
const scratch: Array<string> = []
const folder = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  scratch.push(dir)
  return dir
}

/** A plugins folder anyone may read, holding the postgres bundle and the snoop executable. */
const pluginsFolder = () => {
  const dir = folder("halkyon-isolation-plugins-")
  chmodSync(dir, 0o755)
  for (const [source, name] of [[builtPlugin("postgres.js"), "postgres.js"], [testPlugin("snoop"), "snoop"]] as const) {
    copyFileSync(source, join(dir, name))
    chmodSync(join(dir, name), 0o755)
  }
  return dir
}

/** The operator's kubeconfig as a user keeps it: mode 0600 in a private folder, owned by the operator's uid. */
const privateKubeconfig = () => {
  const dir = folder("halkyon-isolation-kube-")
  const path = join(dir, "kubeconfig")
  copyFileSync(cluster.plane.kubeconfigPath, path)
  own(path, operatorUid, 0o600)
  own(dir, operatorUid, 0o700)
  return path
}

/** A value only the operator's environment holds. */
const secret = `s3cr3t-${crypto.randomUUID()}`
const operatorEnv = () => ({ HALKYON_TEST_SECRET: secret, HALKYON_TEST_TOKEN: token, HOME: folder("halkyon-isolation-home-") })

const createCapability = (ns: string, name: string, type: string, version: string) =>
  cluster.api("POST", capabilityPath(ns), {
    apiVersion: "halkyon.io/v1beta1",
    kind: "Capability",
    metadata: { name },
    spec: { category: type === "snoop" ? "test" : "database", type, version }
  })

const namespace = (name: string) => createNamespace(cluster, name)

/** What the snoop plugin reported, from the ConfigMap it built. */
const loot = async (ns: string, name: string) => {
  let data: Record<string, string> | undefined
  const built = await eventually(
    async () => {
      data = dig<Record<string, string>>((await cluster.api("GET", `/api/v1/namespaces/${ns}/configmaps/${name}`)).body, "data")
      return data !== undefined
    },
    30_000,
    100
  )
  if (!built || data === undefined) {
    const status = (await cluster.api("GET", capabilityPath(ns, name))).body.status
    throw new Error(`the snoop plugin's ConfigMap ${ns}/${name} never appeared; the Capability's status: ${JSON.stringify(status)}`)
  }
  return data
}

const waitReady = async (ns: string, name: string, status: string) => {
  let last: unknown
  const ok = await eventually(
    async () => {
      const c = await cluster.api("GET", capabilityPath(ns, name))
      last = c.body.status
      return readyOf(c)?.status === status
    },
    30_000,
    100
  )
  if (!ok) throw new Error(`${ns}/${name} never reached Ready=${status}; last status: ${JSON.stringify(last)}`)
}

const markStatefulSetReady = (ns: string, name: string) => markReady(cluster, ns, name)

/** Every plugin process of the folder has JavaScriptCore's JIT off in its environment, as the host starts plugins by default. */
const expectJitOff = async (folder: string) => {
  const pids = await processesMatching(`${folder}/`)
  expect(pids).toHaveLength(2)
  for (const pid of pids) expect((await Bun.file(`/proc/${pid}/environ`).text()).split("\0")).toContain("BUN_JSC_useJIT=0")
}

/** The handshake times ("startMs") the operator logged for a plugin. */
const startTimes = (operator: Operator, plugin: string) =>
  operator.logs.filter((l) => l.includes(`plugin ${plugin} running`)).map((l) => Number(/startMs=([0-9.]+)/.exec(l)?.[1]))

beforeAll(async () => {
  cluster = await startCluster()
}, 30 * 60_000)

afterAll(async () => {
  await cluster?.plane.stop()
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true })
})

describe("on a laptop: plugins are the operator's children", () => {
  const ns = "laptop"
  let operator: Operator
  let plugins: string

  beforeAll(async () => {
    await namespace(ns)
    plugins = pluginsFolder()
    operator = await untilReady(
      startOperator(cluster, plugins, ["--namespace", ns], privateKubeconfig(), operatorEnv(), asOperatorWithToken())
    )
  }, 60_000)

  afterAll(async () => {
    await operator?.stop()
  })

  const kubeconfigClause = landlock ? "nor its kubeconfig (Landlock)" : "but can read its kubeconfig (no Landlock here)"
  const title =
    `the snoop plugin cannot read the operator's environment (PR_SET_DUMPABLE 0) ${kubeconfigClause}, and can read its token (same user)`
  test(title, async () => {
    expect((await createCapability(ns, "heist", "snoop", "1")).status).toBe(201)
    const found = await loot(ns, "heist")
    expect(operator.logs.some((l) => l.includes("plugins can read the kubeconfig files"))).toBe(!landlock)
    // Its parent is the operator: refused, while the plugin reads its own parent's cmdline and stat.
    expect(found.environ).toContain(`${operator.proc.pid}: EACCES`)
    expect(JSON.stringify(found)).not.toContain(secret)
    // The kubeconfig belongs to the plugin's own user: only Landlock keeps it out of reach.
    expect(found.kubeconfig).toContain("/kubeconfig: ")
    if (landlock) expect(found.kubeconfig).not.toContain("kubeconfig: read ")
    else expect(found.kubeconfig).toMatch(/kubeconfig: read /)
    // Nor a token in the operator's filesystem: why the cluster runs plugins in another container (root only: a mount namespace).
    if (isRoot) expect(found.token).toBe(`read ${token}`)
    else expect(found.token).not.toStartWith("read ")
  }, 60_000)

  test("its plugins, started through the Landlock helper where there is one, run with the JIT off", async () => {
    await expectJitOff(plugins)
  })
})

describe(`through halkyon plugin-runner, ${isRoot ? "as another uid" : "as the same user (not root: no other uid to take)"}`, () => {
  const ns = "runner"
  let operator: Operator
  let plugins: string
  let runner: ReturnType<typeof Bun.spawn>
  let socket: string
  const runnerLogs: Array<string> = []

  beforeAll(async () => {
    await namespace(ns)
    plugins = pluginsFolder()
    // The folder both containers share: the runner's socket and its plugins' socket folders.
    const shared = folder("hk-run-")
    own(shared, runnerUid, 0o770)
    socket = join(shared, "runner.sock")
    runner = Bun.spawn([...as(runnerUid), join(root, "dist/halkyon"), "plugin-runner", "--socket", socket, "--plugins-dir", plugins], {
      stdout: "pipe",
      stderr: "pipe",
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: shared }
    })
    void (async () => {
      for await (const chunk of runner.stderr as ReadableStream<Uint8Array>) runnerLogs.push(new TextDecoder().decode(chunk))
    })()
    if (!(await eventually(() => existsSync(socket), 15_000))) {
      throw new Error(`the plugin runner did not listen on ${socket}:\n${runnerLogs.join("")}`)
    }
    operator = await untilReady(
      startOperator(
        cluster,
        plugins,
        ["--namespace", ns, "--plugin-runner", socket],
        privateKubeconfig(),
        operatorEnv(),
        asOperatorWithToken()
      )
    )
  }, 60_000)

  afterAll(async () => {
    if (operator?.proc.exitCode === null) await operator.stop()
    runner?.kill("SIGTERM")
    await runner?.exited
  })

  test("plugins run as the runner's children, under its uid", async () => {
    const pids = await processesMatching(`${plugins}/`)
    expect(pids).toHaveLength(2)
    for (const pid of pids) {
      const status = await Bun.file(`/proc/${pid}/status`).text()
      expect(Number(/^PPid:\s+(\d+)/m.exec(status)?.[1])).toBe(runner.pid)
      if (isRoot) expect(Number(/^Uid:\s+(\d+)/m.exec(status)?.[1])).toBe(runnerUid)
    }
  })

  test("its plugins run with the JIT off: the runner passes the operator's BUN_JSC_useJIT on", async () => {
    await expectJitOff(plugins)
  })

  test("a postgres Capability reaches Ready through it", async () => {
    expect((await createCapability(ns, "orders", "postgres", "16")).status).toBe(201)
    await waitReady(ns, "orders", "False")
    await eventually(async () => (await cluster.api("GET", `/apis/apps/v1/namespaces/${ns}/statefulsets/orders`)).status === 200, 20_000)
    await markStatefulSetReady(ns, "orders")
    await waitReady(ns, "orders", "True")
    const times = startTimes(operator, "postgres.js")
    console.error(`handshake through the runner (postgres.js bundle): ${times.join(", ")} ms`)
    expect(times.length).toBeGreaterThan(0)
  }, 60_000)

  test("the snoop plugin reads nothing of the operator's: not its environment, its kubeconfig nor its token", async () => {
    expect((await createCapability(ns, "heist", "snoop", "1")).status).toBe(201)
    const found = await loot(ns, "heist")
    expect(JSON.stringify(found)).not.toContain(secret)
    // It did find the operator (its command line is public) and was refused its environment.
    expect(found.environ).toContain(`${operator.proc.pid}: EACCES`)
    // As another uid, the kubeconfig (0600, the operator's) is refused; as the same user it is not (docs/security.md).
    expect(found.kubeconfig).toContain("/kubeconfig: ")
    if (isRoot) expect(found.kubeconfig).not.toContain("kubeconfig: read ")
    else expect(found.kubeconfig).toMatch(/kubeconfig: read /)
    // The token sits in the operator's mount namespace (as root; its container in a pod): the path does not exist here.
    expect(found.token).toBe("ENOENT")
    expect(JSON.stringify(found)).not.toContain(token)
  }, 60_000)

  test("a plugin killed by hand is restarted through the runner", async () => {
    const [before] = await processesMatching(`${plugins}/postgres.js`)
    expect(before).toBeNumber()
    process.kill(before!, "SIGKILL")
    const restarted = await eventually(
      async () => {
        const now = await processesMatching(`${plugins}/postgres.js`)
        return now.length === 1 && now[0] !== before && startTimes(operator, "postgres.js").length >= 2
      },
      15_000,
      50
    )
    expect(restarted).toBe(true)
    expect((await createCapability(ns, "invoices", "postgres", "16")).status).toBe(201)
    await eventually(async () => (await cluster.api("GET", `/apis/apps/v1/namespaces/${ns}/statefulsets/invoices`)).status === 200, 20_000)
    await markStatefulSetReady(ns, "invoices")
    await waitReady(ns, "invoices", "True")
  }, 60_000)

  test("a SIGKILL of the operator leaves no plugin process within 2 s; the runner keeps serving", async () => {
    expect(await processesMatching(`${plugins}/`)).toHaveLength(2)
    const killed = performance.now()
    await operator.stop("SIGKILL")
    const gone = await eventually(async () => (await processesMatching(`${plugins}/`)).length === 0, 2_000, 20)
    console.error(`plugins gone ${Math.round(performance.now() - killed)} ms after the operator's SIGKILL`)
    expect({ gone, left: await processesMatching(`${plugins}/`) }).toEqual({ gone: true, left: [] })
    expect(runner.exitCode).toBeNull()
  }, 30_000)
})

test("without a runner listening, the operator says which socket it could not use", async () => {
  const plugins = pluginsFolder()
  const missing = join(folder("hk-none-"), "runner.sock")
  const operator = startOperator(cluster, plugins, ["--namespace", "nowhere", "--plugin-runner", missing])
  try {
    expect(await eventually(() => operator.logs.some((l) => l.includes(`cannot use the plugin runner at ${missing}`)), 20_000)).toBe(true)
  } finally {
    await operator.stop()
  }
}, 30_000)
