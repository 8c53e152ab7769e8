/**
 * The projection of a ServiceBinding into Jobs, as a MutatingAdmissionPolicy
 * (admissionregistration.k8s.io/v1) and its binding: a Job's pod template
 * cannot change once the Job exists, so the API server itself projects the
 * binding into each matching Job as it is created. The policy's CEL gives
 * what Projection.ts's `project` gives (volume, mounts, SERVICE_BINDING_ROOT
 * only where unset, env entries, type/provider overrides, annotations), as a
 * JSON Patch computed from the Job: an ApplyConfiguration would be shorter,
 * but may not set the atomic structs and lists a projection holds
 * (secretKeyRef, a projected volume's sources). The e2e test compares its
 * result with the projector's on a real API server. No webhook server is
 * involved.
 *
 * What `refuseTemplate` refuses (a root set by valueFrom, someone else's
 * variable of a name spec.env projects) is left out by a match condition: such
 * a Job is created as it is, and the controller reports it.
 *
 * Pure: no I/O. BindingController.ts applies what this returns.
 */
import { createHash } from "node:crypto"
import { BindingJobsRole, BindingServiceAccount, bindJobsRules } from "../api/BindingRbac.ts"
import type { LabelSelector } from "../api/ServiceBinding.ts"
import {
  annotationKeys,
  type Binding,
  bindingEnv,
  bindingVolume,
  type BoundSecret,
  DefaultRoot,
  mergeByName,
  overrides,
  RootVariable,
  secretHash,
  volumeName
} from "./Projection.ts"

export const MutatingApiVersion = "admissionregistration.k8s.io/v1"
export const MutatingPolicyKind = "MutatingAdmissionPolicy"
export const MutatingBindingKind = "MutatingAdmissionPolicyBinding"

/** The workload kind bound at creation. */
export const JobApiVersion = "batch/v1"
export const JobKind = "Job"

/** The labels of every policy and binding the ServiceBinding controller keeps; listing by them finds them all. */
export const JobPolicyLabels: Readonly<Record<string, string>> = {
  "app.kubernetes.io/managed-by": "halkyon",
  "app.kubernetes.io/component": "service-binding"
}
export const jobPolicySelector = Object.entries(JobPolicyLabels).map(([k, v]) => `${k}=${v}`).join(",")
/** On the policy: the ServiceBinding it stands for, `namespace/name`. */
export const BindingAnnotation = "servicebinding.io/binding"

/**
 * The name of a binding's policy (and of its policy binding):
 * `halkyon-binding.<namespace>.<name>` (a namespace has no dots, so no two
 * bindings share one), shortened with a hash past 253 characters.
 */
export const jobPolicyName = (namespace: string, name: string): string => {
  const plain = `halkyon-binding.${namespace}.${name}`
  if (plain.length <= 253) return plain
  const hash = createHash("sha256").update(`${namespace}/${name}`).digest("hex").slice(0, 10)
  return `${plain.slice(0, 242).replace(/[-.]+$/, "")}-${hash}`
}

/** What the policy needs beyond the projection's input: where, and which Jobs. */
export interface JobTarget {
  readonly namespace: string
  /** The Job's name; exclusive with selector. */
  readonly name?: string | undefined
  readonly selector?: LabelSelector | undefined
}

/** A CEL string literal: JSON's escapes are all CEL escapes. */
const str = (s: string): string => JSON.stringify(s)
const list = (items: ReadonlyArray<string>) => `[${items.map(str).join(", ")}]`

/** A CEL expression kept as it is inside `plain`. */
class Raw {
  constructor(readonly expression: string) {}
}

/**
 * A JSON value as a CEL literal: objects as maps of `dyn` values (a map
 * literal's values must otherwise share one type), which a JSON Patch takes
 * as they are. Shorter than typed objects (`Object.spec.template...{}`), so
 * that many env entries fit the API server's limit on an expression's size.
 */
const plain = (value: unknown): string => {
  if (value instanceof Raw) return value.expression
  if (typeof value === "string") return str(value)
  if (typeof value === "boolean" || typeof value === "number") return String(value)
  if (Array.isArray(value)) return `[${value.map(plain).join(", ")}]`
  return `{${Object.entries(value as Record<string, unknown>).map(([k, v]) => `${str(k)}: dyn(${plain(v)})`).join(", ")}}`
}

/** `body` with `name` bound to `value`: CEL here has no cel.bind, and `[x].map(v, ...)[0]` is one. */
const bind = (name: string, value: string, body: string) => `[${value}].map(${name}, ${body})[0]`

const Template = "object.spec.template.spec"

/**
 * The CEL pieces about one container `c`: whether it is selected, its root
 * entries, and the root it is mounted under.
 */
const containerCel = (binding: Binding) => {
  const envOf = "c.?env.orValue([])"
  const roots = `${envOf}.filter(e, e.name == ${str(RootVariable)})`
  return {
    selected: binding.containers === undefined ? "true" : `c.name in ${list(binding.containers)}`,
    rootSet: `${roots}.size() > 0`,
    /** A literal root (Projection.ts rootOf: the first entry's value), else the default. */
    rootPath: `(${roots}.size() > 0 && has(${roots}[0].value) ? ${roots}[0].value : ${str(DefaultRoot)})`,
    unreadableRoot: `${envOf}.exists(e, e.name == ${str(RootVariable)} && !has(e.value) && has(e.valueFrom))`,
    collision: (names: ReadonlyArray<string>) => `${envOf}.exists(e, e.name in ${list(names)})`
  }
}

/** `add` of `value` (CEL) at `path` (CEL string). */
const add = (path: string, value: string) => `JSONPatch{op: "add", path: ${path}, value: ${value}}`
/**
 * The JSON Patch expression: what merging Projection.ts's `intent` into the
 * Job's template as it is created gives (its `project`). A new Job holds
 * nothing of the binding, and none of the variables spec.env projects (the
 * match conditions leave such a Job out), so env entries are appended; the
 * volume replaces one of its name, the mount one at its path, as there.
 */
export const jsonPatch = (binding: Binding, secret: BoundSecret): string => {
  const keys = annotationKeys(binding.name)
  const overridden = overrides(binding)
  const c = containerCel(binding)
  const volume = volumeName(binding.name)
  const rootMarker = "\u0000root"
  const mappings = bindingEnv(binding, secret)
  // intent's env, merged into a container without the root (the one that gets it) and with it (a literal root is the
  // same value again, left as it is), bound once as `envRoot` and `envSet`.
  const withRoot = mergeByName([], [{ name: RootVariable, value: rootMarker }, ...mappings]).map((e) =>
    e.value === rootMarker ? { name: e.name, value: DefaultRoot } : e
  )
  const withoutRoot = mergeByName([], mappings)
  const Spec = "object.spec.template.spec"
  const containerOps = (listName: string) => {
    const at = `"/spec/template/spec/${listName}/" + string(i)`
    // The container's env entries: appended, or the list itself where it has none.
    const envOps = `(has(c.env) ? env.map(e, ${add(`${at} + "/env/-"`, "e")}) : ` +
      `(env.size() > 0 ? [${add(`${at} + "/env"`, "env")}] : []))`
    // The root without its trailing slashes, as Projection.ts's `replace(/\/+$/, "")`.
    const mountPath = `${c.rootPath}.find("(?s)^.*[^/]") + ${str(`/${binding.directory}`)}`
    const mount = plain({ name: volume, mountPath: new Raw("p"), readOnly: true })
    // A mount at the same path is replaced (removed, then ours appended), as the projector's merge by path does.
    const mountOps = `(has(c.volumeMounts) ? ` +
      `(c.volumeMounts.map(m, m.mountPath).indexOf(p) >= 0 ? ` +
      `[JSONPatch{op: "remove", path: ${at} + "/volumeMounts/" + string(c.volumeMounts.map(m, m.mountPath).indexOf(p))}] : []) + ` +
      `[${add(`${at} + "/volumeMounts/-"`, mount)}] : [${add(`${at} + "/volumeMounts"`, `[${mount}]`)}])`
    const perContainer = bind(
      "c",
      `${Spec}.${listName}[i]`,
      bind("p", mountPath, bind("env", `(${c.rootSet} ? envSet : envRoot)`, `${envOps} + ${mountOps}`))
    )
    return `(has(${Spec}.${listName}) ? lists.range(${Spec}.${listName}.size())` +
      `.filter(i, [${Spec}.${listName}[i]].all(c, ${c.selected}))` +
      `.map(i, ${perContainer}).flatten() : [])`
  }
  const selectedOf = (listName: string) => `${Spec}.?${listName}.orValue([]).filter(c, ${c.selected})`
  const rootAdded = `(${selectedOf("containers")} + ${selectedOf("initContainers")}).filter(c, !(${c.rootSet})).map(c, c.name)`
  const annotations: Array<[string, string]> = [[keys.secretHash, str(secretHash(secret.data))]]
  for (const o of overridden) annotations.push([o.annotation, str(o.value)])
  const annotationAt = (key: string) => str(`/spec/template/metadata/annotations/${key.replaceAll("~", "~0").replaceAll("/", "~1")}`)
  const annotationOps = [
    `(has(object.spec.template.metadata) ? [] : [${add(str("/spec/template/metadata"), "Object.spec.template.metadata{}")}])`,
    `(has(object.spec.template.metadata) && has(object.spec.template.metadata.annotations) ? [] : ` +
    `[${add(str("/spec/template/metadata/annotations"), "{}")}])`,
    `[${annotations.map(([k, v]) => add(annotationAt(k), v)).join(", ")}]`,
    bind("added", rootAdded, `(added.size() > 0 ? [${add(annotationAt(keys.root), "added.join(\",\")")}] : [])`)
  ]
  // The volume replaces one of its name, in place, as the projector's merge by name does.
  const at = `${Spec}.volumes.map(v, v.name).indexOf(${str(volume)})`
  const volumeOps = `(has(${Spec}.volumes) ? (${at} >= 0 ? ` +
    `[JSONPatch{op: "replace", path: "/spec/template/spec/volumes/" + string(${at}), value: vol}] : ` +
    `[${add(str("/spec/template/spec/volumes/-"), "vol")}]) : [${add(str("/spec/template/spec/volumes"), "[vol]")}])`
  const body = [...annotationOps, containerOps("containers"), containerOps("initContainers"), volumeOps].join(" + ")
  return bind(
    "envRoot",
    plain(withRoot),
    bind("envSet", plain(withoutRoot), bind("vol", plain(bindingVolume(binding, secret)), body))
  )
}

/** The match conditions: the named Job only; no Job whose projection `refuseTemplate` would refuse. */
export const matchConditions = (binding: Binding, target: JobTarget): ReadonlyArray<{ name: string; expression: string }> => {
  const c = containerCel(binding)
  const all = `(${Template}.containers + ${Template}.?initContainers.orValue([]))`
  const names = [...new Set((binding.env ?? []).map((e) => e.name))]
  return [
    ...(target.name === undefined ? [] : [{ name: "workload-name", expression: `object.metadata.name == ${str(target.name)}` }]),
    // refuseTemplate's UnreadableRoot: the mount cannot be placed under a root whose value cannot be read.
    { name: "root-readable", expression: `!${all}.exists(c, (${c.selected}) && ${c.unreadableRoot})` },
    // refuseTemplate's EnvCollision: a new Job's variable is never the binding's own.
    ...(names.length === 0 ? [] : [{ name: "no-env-collision", expression: `!${all}.exists(c, (${c.selected}) && ${c.collision(names)})` }])
  ]
}

/** The MutatingAdmissionPolicy that projects `binding` into each matching Job at its creation. */
export const jobPolicy = (binding: Binding, secret: BoundSecret, target: JobTarget) => {
  const name = jobPolicyName(target.namespace, binding.name)
  return {
    apiVersion: MutatingApiVersion,
    kind: MutatingPolicyKind,
    metadata: { name, labels: { ...JobPolicyLabels }, annotations: { [BindingAnnotation]: `${target.namespace}/${binding.name}` } },
    spec: {
      // A Job the policy cannot project is not created unbound: the API server refuses it, saying why.
      failurePolicy: "Fail",
      reinvocationPolicy: "Never",
      matchConstraints: {
        resourceRules: [{ apiGroups: ["batch"], apiVersions: ["v1"], operations: ["CREATE"], resources: ["jobs"] }],
        namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": target.namespace } },
        ...(target.selector === undefined ? {} : { objectSelector: structuredClone(target.selector) as Record<string, unknown> })
      },
      matchConditions: matchConditions(binding, target).map((m) => ({ ...m })),
      mutations: [{ patchType: "JSONPatch", jsonPatch: { expression: jsonPatch(binding, secret) } }]
    }
  }
}

/** Its binding, of the same name. */
export const jobPolicyBinding = (namespace: string, bindingName: string) => {
  const name = jobPolicyName(namespace, bindingName)
  return {
    apiVersion: MutatingApiVersion,
    kind: MutatingBindingKind,
    metadata: { name, labels: { ...JobPolicyLabels }, annotations: { [BindingAnnotation]: `${namespace}/${bindingName}` } },
    spec: { policyName: name }
  }
}

/**
 * Why no policy can be kept, and what a cluster operator does about it (once,
 * for every binding): the log's warning and a Job binding's ProjectionFailed
 * say it. `code` is the API server's answer to applying one: 403, the opt-in
 * rule is not granted; 404, the kind is not served.
 */
export const noPolicyAdvice = (code: number): string => {
  if (code === 404) {
    return "the API server serves no admissionregistration.k8s.io/v1 MutatingAdmissionPolicy, which binding Jobs takes: " +
      "on a cluster that serves it (and with `halkyon manifests --bind-jobs` applied) Jobs are bound"
  }
  const rule = bindJobsRules.map((r) =>
    `apiGroups [${(r.apiGroups ?? []).join(", ")}], resources [${(r.resources ?? []).join(", ")}], verbs [${r.verbs.join(", ")}]`
  ).join("; ")
  return "binding Jobs is opt-in, as it lets the ServiceBinding controller's identity mutate any object as it is created, " +
    "and its identity has not been granted it: once per operator (not per binding), add --bind-jobs to the " +
    `\`halkyon manifests\` command the operator was installed with and apply its output again (it adds the ClusterRole and ` +
    `ClusterRoleBinding ${BindingJobsRole}), or bind the ServiceAccount ` +
    `${BindingServiceAccount} cluster-wide to a ClusterRole with the rule ${rule}; Jobs created from then on are bound (within a minute)`
}

/** Whether a Job's template carries this binding's projection (its volume): made after the policy, or by hand. */
export const projectedInto = (job: unknown, bindingName: string): boolean => {
  const volumes = (job as { spec?: { template?: { spec?: { volumes?: ReadonlyArray<{ name?: string }> } } } }).spec?.template?.spec?.volumes
  return (volumes ?? []).some((v) => v.name === volumeName(bindingName))
}
