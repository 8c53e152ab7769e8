/**
 * Manifests as YAML for kubectl apply: one document per object, `---`
 * between them, in apply order. Its own module so that `halkyon manifests`
 * loads the Kubernetes client's YAML dumper only when it prints.
 */
import { dumpYaml } from "@kubernetes/client-node"
import type { Manifest } from "../api/Manifests.ts"

export const renderManifests = (objects: ReadonlyArray<Manifest>): string =>
  objects.map((object) => dumpYaml(object).trimEnd()).join("\n---\n")
