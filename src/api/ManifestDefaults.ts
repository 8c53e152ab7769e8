/**
 * Where `halkyon manifests` installs the operator unless told otherwise, in
 * a module of its own: the command's flags show them in --help without
 * loading the manifests themselves (Manifests.ts, the CRDs).
 */
import { version } from "../Version.ts"

export const defaultNamespace = "halkyon-system"
export const defaultImage = `ghcr.io/halkyonio/halkyon:${version}`
