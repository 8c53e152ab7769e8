/**
 * Where the operator's probes and metrics listen unless told: every
 * interface in a pod (the kubelet and Prometheus reach them there), loopback
 * anywhere else, so that `halkyon run` on a laptop or a shared host exposes
 * nothing to the network. `halkyon manifests` sets the pod's addresses
 * explicitly, so they never depend on this guess.
 */

/** Whether this process runs in a Kubernetes pod (the kubelet sets this variable in every container). */
export const inPod = (env: Readonly<Record<string, string | undefined>> = process.env): boolean =>
  (env.KUBERNETES_SERVICE_HOST ?? "") !== ""

export const HealthPort = 8081
export const MetricsPort = 8080

/** ":port" in a pod, "127.0.0.1:port" elsewhere. */
export const defaultListenAddress = (port: number, env: Readonly<Record<string, string | undefined>> = process.env): string =>
  inPod(env) ? `:${port}` : `127.0.0.1:${port}`
