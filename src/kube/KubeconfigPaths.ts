/**
 * Where this process may read cluster credentials from, whichever file
 * ClusterAccess loads: what local plugins must not read. Its own module, free
 * of the Kubernetes client, so that the CLI can name the paths at start.
 */
import { homedir } from "node:os"
import { delimiter, join } from "node:path"

/** The file `--kubeconfig` names, those in KUBECONFIG, and ~/.kube (with its caches). */
export const kubeconfigPaths = (kubeconfig: string | undefined): Array<string> => [
  ...(kubeconfig === undefined ? [] : [kubeconfig]),
  ...(process.env.KUBECONFIG ?? "").split(delimiter).filter((p) => p !== ""),
  join(homedir(), ".kube")
]
