/**
 * Manifests as YAML for kubectl apply: one document per object, `---`
 * between them, in apply order. The objects are plain JSON (Manifests.ts),
 * so js-yaml dumps them as they are; its own module so that `halkyon
 * manifests` loads it only when it prints.
 */
import { dump } from "js-yaml"
import type { Manifest } from "../api/Manifests.ts"

export const renderManifests = (objects: ReadonlyArray<Manifest>): string => objects.map((object) => dump(object).trimEnd()).join("\n---\n")
