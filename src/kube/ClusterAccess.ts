/**
 * Finds the cluster as kubectl does: `--kubeconfig`, then `KUBECONFIG`
 * (a list of files), then `~/.kube/config`, then the in-cluster service
 * account; `--context` picks a context. Authentication (client certificates,
 * tokens, exec plugins) is client-node's.
 */
import { existsSync } from "node:fs"
import { homedir } from "node:os"
import { join } from "node:path"
import { KubeConfig } from "@kubernetes/client-node"
import { Effect } from "effect"
import { ClusterAccessError } from "./Errors.ts"

export interface ClusterAccessOptions {
  readonly kubeconfig: string | undefined
  readonly context: string | undefined
  /** The home folder whose .kube/config is read; the user's by default (tests point it elsewhere). */
  readonly home?: string | undefined
  /** Prefixed to the service account's paths (/var/run/secrets/...); none by default (tests use a temp folder). */
  readonly serviceAccountRoot?: string | undefined
}

const inCluster = (root: string) =>
  existsSync(`${root}/var/run/secrets/kubernetes.io/serviceaccount/token`) && process.env.KUBERNETES_SERVICE_HOST !== undefined

export const loadKubeConfig = Effect.fn("ClusterAccess.load")(function*(options: ClusterAccessOptions) {
  const kc = new KubeConfig()
  const home = options.home ?? homedir()
  const root = options.serviceAccountRoot ?? ""
  yield* Effect.try({
    try: () => {
      if (options.kubeconfig !== undefined) {
        if (!existsSync(options.kubeconfig)) throw new Error(`the kubeconfig ${options.kubeconfig} does not exist`)
        kc.loadFromFile(options.kubeconfig)
      } else if (process.env.KUBECONFIG !== undefined && process.env.KUBECONFIG !== "") {
        // As kubectl: the first file's current-context holds (client-node's default lets the last one win).
        kc.loadFromDefault(undefined, true)
      } else if (existsSync(join(home, ".kube", "config"))) {
        kc.loadFromFile(join(home, ".kube", "config"))
      } else if (inCluster(root)) {
        kc.loadFromCluster(root)
      } else {
        throw new Error("no kubeconfig found: pass --kubeconfig, set KUBECONFIG, create ~/.kube/config, or run in a cluster")
      }
      if (options.context !== undefined) {
        if (kc.getContextObject(options.context) === null) {
          throw new Error(
            `context "${options.context}" is not in the kubeconfig; it has: ${kc.getContexts().map((c) => c.name).join(", ")}`
          )
        }
        kc.setCurrentContext(options.context)
      }
      if (kc.getCurrentCluster() === null) throw new Error("the kubeconfig's current context names no cluster")
    },
    catch: (e) => new ClusterAccessError({ detail: e instanceof Error ? e.message : String(e) })
  })
  return kc
})
