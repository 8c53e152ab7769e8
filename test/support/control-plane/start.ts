// Starts a throwaway local Kubernetes control plane (etcd, kube-apiserver and kube-controller-manager,
// with a fake kubelet's Node instead of real ones) on loopback ports, with fresh certificates, for tests
// and demos. Every process dies with the process that started it, even when that one is SIGKILLed.
//
//   bun test/support/control-plane/start.ts   # prints `export KUBECONFIG=…`, runs until Ctrl-C

import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ensureControlPlaneBinaries, ensureControllerManager } from "./build.ts"
import { type FakeKubelet, markRolledOut, rollOutWithFakeKubelet, startFakeKubelet, type WorkloadResource } from "./fake-kubelet.ts"

export interface ControlPlane {
  /** Kubeconfig with context `halkyon-local` (admin, system:masters). */
  kubeconfigPath: string
  /** https://127.0.0.1:<port> */
  server: string
  /** Private temp folder holding certificates, etcd data, logs and the kubeconfig. */
  dir: string
  /** http://127.0.0.1:<port> — etcd client URL, for debugging. */
  etcdUrl: string
  caCertPem: string
  adminCertPem: string
  adminKeyPem: string
  /** Whether kube-controller-manager runs (StartOptions.controllerManager). */
  controllerManager: boolean
  /** Current process ids (undefined once stopped, or never started), so callers can check nothing is left running. */
  pids(): { apiserver: number | undefined; etcd: number | undefined; controllerManager: number | undefined }
  /** Terminates kube-controller-manager, kube-apiserver, then etcd, and removes `dir`. Safe to call more than once. */
  stop(): Promise<void>
  /** Stops and restarts only kube-apiserver on the same port, and waits until it is ready again. */
  restartApiServer(): Promise<void>
  /** With `audit`: kube-apiserver's audit log (JSON lines, one audit.k8s.io/v1 Event each). */
  auditLogPath: string | undefined
  /**
   * Brings a StatefulSet or Deployment to "every replica ready", as a kubelet would once its containers
   * answered: the fake kubelet runs its pods and the workload's own controller writes its status.
   * Without kube-controller-manager it writes that status itself.
   */
  rollOut(resource: WorkloadResource, namespace: string, name: string): Promise<void>
}

export interface StartOptions {
  /** How long kube-apiserver may take to answer /readyz with 200. */
  readyTimeoutMs?: number
  /** More kube-apiserver flags (fault tests: `--watch-cache=false` sends watches straight to etcd). */
  apiServerArgs?: string[]
  /**
   * Audit every write (create, update, patch, delete) at Metadata level, at
   * the end of each request, into `auditLogPath`: who wrote what, when, and
   * with which User-Agent. Reads are not audited.
   */
  audit?: boolean
  /**
   * Runs kube-controller-manager (garbage collector, workload, namespace and service-account
   * controllers, …) as a cluster does. Default true; false gives a bare API server where nothing acts
   * on what is written.
   */
  controllerManager?: boolean
}

/** Writes only, Metadata level (no bodies), once each answered. */
const AuditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted", "Panic"]
rules:
  - level: Metadata
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
  - level: None
`

const DEFAULT_READY_TIMEOUT_MS = 120_000
const ETCD_READY_TIMEOUT_MS = 30_000
const CONTROLLER_MANAGER_READY_TIMEOUT_MS = 60_000
const STOP_GRACE_MS = 5_000
const POLL_MS = 200
const LOG_TAIL_LINES = 30

// ---------------------------------------------------------------------------------------------
// Processes

interface Child {
  name: string
  proc: Bun.Subprocess
  logPath: string
}

// setpriv (util-linux) sets the parent-death signal and execs the command: the kernel SIGKILLs it when
// the process that spawned it dies by any means, SIGKILL included, when no exit handler of ours runs.
const SETPRIV = Bun.which("setpriv")
const dieWithParent = (cmd: string[]): string[] => SETPRIV === null ? cmd : [SETPRIV, "--pdeathsig", "KILL", ...cmd]

/**
 * Spawns a command in its own process group (setsid) with output appended to a log file.
 * Its own group keeps the terminal's Ctrl-C from reaching it before we stop things in order
 * (kube-apiserver before etcd), and lets us kill anything it forks together with it.
 */
function spawnLogged(name: string, cmd: string[], logPath: string): Child {
  const fd = openSync(logPath, "a")
  try {
    const proc = Bun.spawn(dieWithParent(cmd), { stdin: "ignore", stdout: fd, stderr: fd, detached: true })
    return { name, proc, logPath }
  } finally {
    closeSync(fd) // the child has its own copy
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal)
  } catch {
    // ESRCH: the group is already gone.
  }
}

/** SIGTERM the child's group, SIGKILL it if it is still there after a grace period. */
async function terminate(child: Child): Promise<void> {
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) return
  signalGroup(child.proc.pid, "SIGTERM")
  const exited = await Promise.race([child.proc.exited.then(() => true), Bun.sleep(STOP_GRACE_MS).then(() => false)])
  if (!exited) {
    signalGroup(child.proc.pid, "SIGKILL")
    await child.proc.exited
  }
}

function logTail(logPath: string): string {
  try {
    return readFileSync(logPath, "utf8").trimEnd().split("\n").slice(-LOG_TAIL_LINES).join("\n")
  } catch {
    return "(no log)"
  }
}

/** Polls `probe` until it returns true; fails early with the child's log if the child exits. */
async function waitUntil(child: Child, what: string, timeoutMs: number, probe: () => Promise<boolean>): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (performance.now() < deadline) {
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) {
      const how = child.proc.signalCode ?? `code ${child.proc.exitCode}`
      throw new Error(`${child.name} exited (${how}) before ${what}. Last lines of ${child.logPath}:\n${logTail(child.logPath)}`)
    }
    if (await probe().catch(() => false)) return
    await Bun.sleep(POLL_MS)
  }
  throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}. Last lines of ${child.logPath}:\n${logTail(child.logPath)}`)
}

// ---------------------------------------------------------------------------------------------
// Ports and certificates

function listenOnLoopback(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      if (address === null || typeof address === "string") reject(new Error("unexpected server address"))
      else resolve(address.port)
    })
  })
}

/**
 * Asks the kernel for `count` free loopback ports. All are held open until every one is chosen,
 * so the same port is never handed out twice.
 */
async function freePorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer())
  try {
    return await Promise.all(servers.map(listenOnLoopback))
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))))
  }
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const proc = Bun.spawn(["openssl", ...args], { cwd, stdin: "ignore", stdout: "pipe", stderr: "pipe" })
  const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited])
  if (code !== 0) throw new Error(`openssl ${args.join(" ")} failed (exit ${code}):\n${stderr}`)
}

// Our own config file, so the result does not depend on the distribution's openssl.cnf defaults.
// Go's TLS stack is strict: the CA must say CA:TRUE, and leaves need the matching extended key usage.
const OPENSSL_CNF = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[serving]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
`

// ECDSA P-256 keys: generated in milliseconds (RSA takes noticeably longer) and accepted by
// kube-apiserver for TLS, client certificates and service-account token signing (ES256).
const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

async function signedCert(dir: string, name: string, subject: string, extensions: string): Promise<void> {
  await openssl(
    ["req", "-new", "-config", "openssl.cnf", ...EC_KEY, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject],
    dir
  )
  await openssl(
    [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "30",
      "-sha256",
      "-extfile",
      "openssl.cnf",
      "-extensions",
      extensions,
      "-out",
      `${name}.crt`
    ],
    dir
  )
}

/**
 * Creates the CA, the serving cert, the admin and kube-controller-manager client certs and the
 * service-account key pair in `dir`.
 */
async function generatePki(dir: string): Promise<void> {
  writeFileSync(join(dir, "openssl.cnf"), OPENSSL_CNF)
  await openssl([
    "req",
    "-x509",
    "-config",
    "openssl.cnf",
    ...EC_KEY,
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    "30",
    "-sha256",
    "-subj",
    "/CN=halkyon-local-ca",
    "-extensions",
    "ca"
  ], dir)
  await signedCert(dir, "serving", "/CN=kube-apiserver", "serving")
  await signedCert(dir, "admin", "/O=system:masters/CN=admin", "client")
  // The user the API server's bootstrap RBAC grants what kube-controller-manager needs, as kubeadm's.
  await signedCert(dir, "controller-manager", "/CN=system:kube-controller-manager", "client")
  await openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "sa.key"], dir)
  await openssl(["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"], dir)
}

function kubeconfig(server: string, ca: string, cert: string, key: string, user = "admin"): string {
  const b64 = (pem: string) => Buffer.from(pem).toString("base64")
  return `apiVersion: v1
kind: Config
clusters:
- name: halkyon-local
  cluster:
    server: ${server}
    certificate-authority-data: ${b64(ca)}
users:
- name: ${user}
  user:
    client-certificate-data: ${b64(cert)}
    client-key-data: ${b64(key)}
contexts:
- name: halkyon-local
  context:
    cluster: halkyon-local
    user: ${user}
current-context: halkyon-local
`
}

// ---------------------------------------------------------------------------------------------
// etcd and kube-apiserver

interface Layout {
  dir: string
  etcdClientPort: number
  etcdPeerPort: number
  apiserverPort: number
  controllerManagerPort: number
}

async function etcdSupports(etcd: string, flag: string): Promise<boolean> {
  const proc = Bun.spawn([etcd, "--help"], { stdin: "ignore", stdout: "pipe", stderr: "pipe" })
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  return (out + err).includes(flag)
}

async function startEtcd(etcd: string, layout: Layout): Promise<Child> {
  const client = `http://127.0.0.1:${layout.etcdClientPort}`
  const peer = `http://127.0.0.1:${layout.etcdPeerPort}`
  const args = [
    etcd,
    "--name=halkyon",
    `--data-dir=${join(layout.dir, "etcd-data")}`,
    `--listen-client-urls=${client}`,
    `--advertise-client-urls=${client}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=halkyon=${peer}`,
    "--log-level=warn"
  ]
  // Throwaway data: skipping fsync makes every write (and so every test) much faster.
  if (await etcdSupports(etcd, "--unsafe-no-fsync")) args.push("--unsafe-no-fsync")
  const child = spawnLogged("etcd", args, join(layout.dir, "etcd.log"))
  await waitUntil(child, `etcd at ${client}/health`, ETCD_READY_TIMEOUT_MS, async () => {
    const res = await fetch(`${client}/health`, { signal: AbortSignal.timeout(2000) })
    return res.ok && ((await res.json()) as { health?: string }).health === "true"
  })
  return child
}

function apiserverArgs(apiserver: string, layout: Layout, controllerManager: boolean, extra: string[]): string[] {
  const pki = (file: string) => join(layout.dir, file)
  return [
    apiserver,
    "--bind-address=127.0.0.1",
    "--advertise-address=127.0.0.1",
    `--secure-port=${layout.apiserverPort}`,
    `--cert-dir=${pki("apiserver-certs")}`, // never fall back to /var/run/kubernetes
    `--tls-cert-file=${pki("serving.crt")}`,
    `--tls-private-key-file=${pki("serving.key")}`,
    `--client-ca-file=${pki("ca.crt")}`,
    "--authorization-mode=RBAC",
    `--etcd-servers=http://127.0.0.1:${layout.etcdClientPort}`,
    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
    `--service-account-key-file=${pki("sa.pub")}`,
    `--service-account-signing-key-file=${pki("sa.key")}`,
    "--service-cluster-ip-range=10.0.0.0/16",
    // Without kube-controller-manager nothing creates a namespace's `default` ServiceAccount, which
    // this admission plugin requires of every pod.
    ...(controllerManager ? [] : ["--disable-admission-plugins=ServiceAccount"]),
    "--allow-privileged=true",
    // The "kubernetes" Service endpoint would be 127.0.0.1, which Endpoints validation rejects;
    // without reconciling it the log stays free of errors repeated every ten seconds.
    "--endpoint-reconciler-type=none",
    ...extra
  ]
}

/** kube-controller-manager as kubeadm runs it, bound to loopback, without leader election. */
function controllerManagerArgs(controllerManager: string, layout: Layout): string[] {
  const pki = (file: string) => join(layout.dir, file)
  return [
    controllerManager,
    `--kubeconfig=${pki("controller-manager.kubeconfig")}`,
    `--authentication-kubeconfig=${pki("controller-manager.kubeconfig")}`,
    `--authorization-kubeconfig=${pki("controller-manager.kubeconfig")}`,
    "--bind-address=127.0.0.1",
    `--secure-port=${layout.controllerManagerPort}`,
    `--cert-dir=${pki("controller-manager-certs")}`, // never fall back to /var/run/kubernetes
    `--tls-cert-file=${pki("serving.crt")}`,
    `--tls-private-key-file=${pki("serving.key")}`,
    `--client-ca-file=${pki("ca.crt")}`,
    `--requestheader-client-ca-file=${pki("ca.crt")}`,
    // The default set plus the two kubeadm adds; each controller acts as its own ServiceAccount.
    "--controllers=*,bootstrapsigner,tokencleaner",
    "--use-service-account-credentials=true",
    // Signs the legacy service-account token Secrets with the API server's key, so it accepts them.
    `--service-account-private-key-file=${pki("sa.key")}`,
    `--root-ca-file=${pki("ca.crt")}`,
    `--cluster-signing-cert-file=${pki("ca.crt")}`,
    `--cluster-signing-key-file=${pki("ca.key")}`,
    "--service-cluster-ip-range=10.0.0.0/16",
    "--leader-elect=false"
  ]
}

// ---------------------------------------------------------------------------------------------
// Cleanup on exit: tests that crash or a Ctrl-C must not leave etcd and kube-apiserver running.

const running = new Set<{ stop(): Promise<void>; killNow(): void }>()
let handlersInstalled = false

function installExitHandlers(): void {
  if (handlersInstalled) return
  handlersInstalled = true
  // "exit" handlers must be synchronous: SIGKILL everything and remove the folders.
  process.on("exit", () => {
    for (const entry of running) entry.killNow()
  })
  let stopping = false
  const onSignal = (code: number): void => {
    if (stopping) {
      // A second Ctrl-C while stopping gracefully: stop waiting.
      process.exit(code)
    }
    stopping = true
    void Promise.allSettled([...running].map((entry) => entry.stop())).finally(() => process.exit(code))
  }
  process.on("SIGINT", () => onSignal(130))
  process.on("SIGTERM", () => onSignal(143))
}

// ---------------------------------------------------------------------------------------------

/** Starts etcd and kube-apiserver and waits until the API server reports ready. */
export async function startControlPlane(options: StartOptions = {}): Promise<ControlPlane> {
  const readyTimeoutMs = options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS
  const withControllerManager = options.controllerManager ?? true
  const binaries = await ensureControlPlaneBinaries()
  // One build after the other: the second reuses most packages from Go's build cache.
  const controllerManagerBinary = withControllerManager ? await ensureControllerManager() : undefined
  const dir = mkdtempSync(join(tmpdir(), "halkyon-control-plane-")) // mkdtemp creates it 0700
  mkdirSync(join(dir, "apiserver-certs"), { mode: 0o700 })
  mkdirSync(join(dir, "controller-manager-certs"), { mode: 0o700 })

  let etcd: Child | undefined
  let apiserver: Child | undefined
  let controllerManager: Child | undefined
  let kubelet: FakeKubelet | undefined
  let stopped: Promise<void> | undefined

  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      kubelet?.stop()
      // Controllers first, then kube-apiserver: each would otherwise log storms of connection errors while exiting.
      if (controllerManager !== undefined) await terminate(controllerManager)
      if (apiserver !== undefined) await terminate(apiserver)
      if (etcd !== undefined) await terminate(etcd)
      apiserver =
        etcd =
        controllerManager =
        kubelet =
          undefined
      rmSync(dir, { recursive: true, force: true })
      running.delete(entry)
    })()
    return stopped
  }
  const entry = {
    stop,
    killNow(): void {
      kubelet?.stop()
      for (const child of [controllerManager, apiserver, etcd]) if (child !== undefined) signalGroup(child.proc.pid, "SIGKILL")
      rmSync(dir, { recursive: true, force: true })
    }
  }
  installExitHandlers()
  running.add(entry)

  try {
    const [etcdClientPort = 0, etcdPeerPort = 0, apiserverPort = 0, controllerManagerPort = 0] = await freePorts(4)
    const layout: Layout = { dir, etcdClientPort, etcdPeerPort, apiserverPort, controllerManagerPort }
    const server = `https://127.0.0.1:${apiserverPort}`
    await generatePki(dir)
    const caCertPem = readFileSync(join(dir, "ca.crt"), "utf8")
    const adminCertPem = readFileSync(join(dir, "admin.crt"), "utf8")
    const adminKeyPem = readFileSync(join(dir, "admin.key"), "utf8")
    const kubeconfigPath = join(dir, "kubeconfig")
    writeFileSync(kubeconfigPath, kubeconfig(server, caCertPem, adminCertPem, adminKeyPem), { mode: 0o600 })
    writeFileSync(
      join(dir, "controller-manager.kubeconfig"),
      kubeconfig(
        server,
        caCertPem,
        readFileSync(join(dir, "controller-manager.crt"), "utf8"),
        readFileSync(join(dir, "controller-manager.key"), "utf8"),
        "system:kube-controller-manager"
      ),
      { mode: 0o600 }
    )

    etcd = await startEtcd(binaries.etcd, layout)
    const auditLogPath = options.audit === true ? join(dir, "audit.log") : undefined
    const auditArgs = auditLogPath === undefined ? [] : (() => {
      writeFileSync(join(dir, "audit-policy.yaml"), AuditPolicy)
      return [`--audit-policy-file=${join(dir, "audit-policy.yaml")}`, `--audit-log-path=${auditLogPath}`, "--audit-log-format=json"]
    })()

    const tls = { ca: caCertPem, cert: adminCertPem, key: adminKeyPem }
    const startApiServer = async (): Promise<void> => {
      const child = spawnLogged(
        "kube-apiserver",
        apiserverArgs(binaries.apiserver, layout, withControllerManager, [...auditArgs, ...(options.apiServerArgs ?? [])]),
        join(dir, "kube-apiserver.log")
      )
      apiserver = child
      await waitUntil(child, `${server}/readyz`, readyTimeoutMs, async () => {
        // keepalive off: a pooled connection to a previous API server process would only fail.
        const res = await fetch(`${server}/readyz`, { tls, keepalive: false, signal: AbortSignal.timeout(5000) })
        await res.arrayBuffer()
        return res.status === 200
      })
    }
    await startApiServer()

    const access = { server, caCertPem, adminCertPem, adminKeyPem }
    if (controllerManagerBinary !== undefined) {
      const child = spawnLogged(
        "kube-controller-manager",
        controllerManagerArgs(controllerManagerBinary, layout),
        join(dir, "kube-controller-manager.log")
      )
      controllerManager = child
      kubelet = await startFakeKubelet(access)
      // Its service-account controller giving `default` its ServiceAccount: the controllers run, and pods may be created.
      await waitUntil(
        child,
        "kube-controller-manager's controllers (ServiceAccount default/default)",
        CONTROLLER_MANAGER_READY_TIMEOUT_MS,
        async () => {
          const res = await fetch(`${server}/api/v1/namespaces/default/serviceaccounts/default`, {
            tls,
            keepalive: false,
            signal: AbortSignal.timeout(5000)
          })
          await res.arrayBuffer()
          return res.status === 200
        }
      )
    }

    return {
      kubeconfigPath,
      server,
      dir,
      etcdUrl: `http://127.0.0.1:${etcdClientPort}`,
      caCertPem,
      adminCertPem,
      adminKeyPem,
      auditLogPath,
      controllerManager: withControllerManager,
      pids: () => ({ apiserver: apiserver?.proc.pid, etcd: etcd?.proc.pid, controllerManager: controllerManager?.proc.pid }),
      stop,
      rollOut: (resource, namespace, name) =>
        kubelet !== undefined
          ? rollOutWithFakeKubelet(access, kubelet, resource, namespace, name)
          : markRolledOut(access, resource, namespace, name),
      async restartApiServer(): Promise<void> {
        if (stopped !== undefined || apiserver === undefined) throw new Error("control plane is stopped")
        await terminate(apiserver)
        // Same port: Go listens with SO_REUSEADDR, so the old socket's TIME_WAIT does not block it.
        await startApiServer()
      }
    }
  } catch (error) {
    // The error already quotes the relevant log lines, so the folder can go with the processes.
    await stop()
    throw error
  }
}

if (import.meta.main) {
  const plane = await startControlPlane()
  console.log(`export KUBECONFIG=${plane.kubeconfigPath}`)
  // For the test that SIGKILLs this process and checks that nothing of it is left running.
  if (process.argv.includes("--print-pids")) console.log(JSON.stringify(plane.pids()))
  process.stderr.write(`halkyon: control plane at ${plane.server} (logs in ${plane.dir}); Ctrl-C stops it\n`)
  // The exit handlers stop everything on Ctrl-C; until then keep the event loop alive.
  setInterval(() => {}, 1 << 30)
}
