/**
 * Everything a cluster needs to run halkyon, in the order `kubectl apply -f -`
 * must create it: the CRDs, the namespace, the operator's ServiceAccount and
 * its least-privilege RBAC, one ServiceAccount and role per known plugin
 * (PluginRbac.ts), and the operator's Deployment.
 *
 * The objects are plain JSON in the API's own field names (client-node's
 * types, imported as types only, where they name fields alike; Crds.ts's own
 * for the CRDs): `halkyon manifests` prints them without loading a
 * Kubernetes client.
 */
import type {
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1ConfigMap,
  V1Deployment,
  V1Namespace,
  V1PolicyRule,
  V1Role,
  V1RoleBinding,
  V1ServiceAccount
} from "@kubernetes/client-node"
import { defaultImage, defaultNamespace } from "./ManifestDefaults.ts"
import { BindingResource, PolicyResource } from "./AdmissionPolicy.ts"
import {
  type CustomResourceDefinition,
  CapabilityInfoResource,
  CapabilityResource,
  capabilityCrd,
  capabilityInfoCrd,
  serviceBindingCrd,
  workloadResourceMappingCrd
} from "./Crds.ts"
import { BindingAggregationLabel, BindingJobsRole, bindingRules, BindingServiceAccount, bindJobsRules } from "./BindingRbac.ts"
import { type DeclaredDependent, pluginRules, pluginServiceAccountName } from "./PluginRbac.ts"
import { referenceRules, ReferencesServiceAccount } from "./ReferenceRbac.ts"

/** The name of the ServiceAccount, ClusterRole, ClusterRoleBinding and Deployment. */
export const operatorName = "halkyon"

export const healthPort = 8081
export const metricsPort = 8080

export interface ManifestOptions {
  /** Where the operator runs; created unless it is "default". */
  readonly namespace?: string
  readonly image?: string
  /** Plugins the operator installs from their releases at start (HALKYON_PLUGINS), e.g. "acme/redis@v2.1.0". */
  readonly plugins?: string
  /** The plugins the operator will run, as their Describe declares them: each gets its own ServiceAccount and role. */
  readonly pluginRoles?: ReadonlyArray<PluginDeclaration>
  /**
   * The one namespace the operator serves (its --namespace): plugins' roles
   * are then bound there only. Undefined: all namespaces.
   */
  readonly servedNamespace?: string
  /**
   * A lock file's text (halkyon plugins lock): put into a ConfigMap mounted
   * read-only, it is the authority on what the operator installs, and only
   * what an install recorded may run.
   */
  readonly lock?: string
  /**
   * Whether halkyon serves ServiceBindings (servicebinding.io/v1): their CRD,
   * the binding identity and its aggregated role. False where another
   * implementation does; the operator then runs with --service-binding=false.
   * Default: true.
   */
  readonly serviceBinding?: boolean
  /**
   * Whether the binding identity may keep the MutatingAdmissionPolicies that
   * bind Jobs as they are created (`--bind-jobs`): a role of its own, bound
   * cluster-wide. Off by default, as such a policy may mutate any object at
   * its creation; without it a Job binding reports ProjectionFailed saying so.
   * Nothing without serviceBinding. Default: false.
   */
  readonly bindJobs?: boolean
}

/** A plugin by name, with the dependents its Describe declares. */
export interface PluginDeclaration {
  readonly name: string
  readonly dependents: ReadonlyArray<DeclaredDependent>
}

export const pluginsLockConfigMap = "halkyon-plugins-lock"
export const pluginsLockPath = "/etc/halkyon/plugins-lock.json"

export type Manifest =
  | CustomResourceDefinition
  | V1Namespace
  | V1ServiceAccount
  | V1ClusterRole
  | V1ClusterRoleBinding
  | V1Role
  | V1RoleBinding
  | V1Deployment
  | V1ConfigMap

const labels = { "app.kubernetes.io/name": operatorName, "app.kubernetes.io/component": "operator" }

/**
 * What the operator does itself, cluster-wide, and nothing more. Dependents
 * are not here: the operator reads, watches and writes them as each plugin's
 * own ServiceAccount (pluginRules), never as itself.
 */
export const operatorRules: ReadonlyArray<V1PolicyRule> = [
  // Capabilities are the users': the operator reads and watches them and patches their status, nothing else.
  // patch: the operator's finalizer (halkyon.io/dependents), added on the first reconcile and removed once the dependents are gone.
  { apiGroups: [CapabilityResource.group], resources: [CapabilityResource.plural], verbs: ["get", "list", "watch", "patch"] },
  { apiGroups: [CapabilityResource.group], resources: [`${CapabilityResource.plural}/status`], verbs: ["patch"] },
  // CapabilityInfos are the operator's own (one per registered category and type): applied, listed, deleted.
  { apiGroups: [CapabilityInfoResource.group], resources: [CapabilityInfoResource.plural], verbs: ["list", "create", "patch", "delete"] },
  // One ValidatingAdmissionPolicy and its binding per registered category and type, the operator's own like CapabilityInfos.
  {
    apiGroups: ["admissionregistration.k8s.io"],
    resources: [PolicyResource, BindingResource],
    verbs: ["list", "create", "patch", "delete"]
  },
  // Events about Capabilities are created, never patched.
  { apiGroups: [""], resources: ["events"], verbs: ["create"] }
]

/** The uids of the pod's two containers: the operator, and the plugin runner that holds none of its credentials. */
export const operatorUid = 65532
export const runnerUid = 65533
/** The unix socket the plugin runner listens on, in the folder both containers share. */
export const runnerSocket = "/run/halkyon/runner.sock"
const tokenPath = "/var/run/secrets/kubernetes.io/serviceaccount"

const containerSecurity = (uid: number) => ({
  runAsNonRoot: true,
  runAsUser: uid,
  // One group for both: the operator reaches the sockets the runner's plugins make (mode 0770).
  runAsGroup: operatorUid,
  readOnlyRootFilesystem: true,
  allowPrivilegeEscalation: false,
  capabilities: { drop: ["ALL"] },
  seccompProfile: { type: "RuntimeDefault" }
})

/**
 * What the operator does in its own namespace: its leader-election Lease,
 * and the impersonation of exactly the plugins' ServiceAccounts (which live
 * there, so the grant cannot reach a ServiceAccount of that name elsewhere),
 * of the ServiceBinding controller's, and of the identity that reads the
 * Secrets and ConfigMaps parameters reference (ReferenceRbac.ts).
 */
export const operatorNamespacedRules = (plugins: ReadonlyArray<string>, serviceBinding = true): ReadonlyArray<V1PolicyRule> => [
  { apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["get", "create", "update"] },
  ...(plugins.length === 0
    ? []
    : [{
      apiGroups: [""],
      resources: ["serviceaccounts"],
      verbs: ["impersonate"],
      resourceNames: [...new Set(plugins.map(pluginServiceAccountName))].sort()
    }]),
  // The ServiceBinding controller acts as its own ServiceAccount (BindingRbac.ts).
  ...(serviceBinding
    ? [{ apiGroups: [""], resources: ["serviceaccounts"], verbs: ["impersonate"], resourceNames: [BindingServiceAccount] }]
    : []),
  // Parameters given by reference are read as their own ServiceAccount (ReferenceRbac.ts).
  { apiGroups: [""], resources: ["serviceaccounts"], verbs: ["impersonate"], resourceNames: [ReferencesServiceAccount] }
]

const rbacGroup = "rbac.authorization.k8s.io"

/** A plugin's ServiceAccount, its ClusterRole, and its binding: cluster-wide, or in the served namespace only. */
const pluginObjects = (plugin: PluginDeclaration, namespace: string, servedNamespace: string | undefined): ReadonlyArray<Manifest> => {
  const name = pluginServiceAccountName(plugin.name)
  const pluginLabels = { ...labels, "app.kubernetes.io/component": "plugin", "halkyon.io/plugin": name.slice("halkyon-plugin-".length) }
  const roleRef = { apiGroup: rbacGroup, kind: "ClusterRole", name }
  const subjects = [{ kind: "ServiceAccount", name, namespace }]
  return [
    { apiVersion: "v1", kind: "ServiceAccount", metadata: { name, namespace, labels: pluginLabels } },
    {
      apiVersion: `${rbacGroup}/v1`,
      kind: "ClusterRole",
      metadata: { name, labels: pluginLabels },
      rules: [...pluginRules(plugin.dependents)]
    },
    servedNamespace === undefined
      ? { apiVersion: `${rbacGroup}/v1`, kind: "ClusterRoleBinding", metadata: { name, labels: pluginLabels }, roleRef, subjects }
      : {
        apiVersion: `${rbacGroup}/v1`,
        kind: "RoleBinding",
        metadata: { name, namespace: servedNamespace, labels: pluginLabels },
        roleRef,
        subjects
      }
  ]
}

/**
 * The ServiceBinding controller's identity: its ServiceAccount, the aggregated
 * ClusterRole the spec asks for, halkyon's own rules as one labelled role,
 * and the binding (cluster-wide, or the served namespace only).
 */
const bindingObjects = (namespace: string, servedNamespace: string | undefined, bindJobs: boolean): ReadonlyArray<Manifest> => {
  const bindingLabels = { ...labels, "app.kubernetes.io/component": "service-binding" }
  const name = BindingServiceAccount
  const roleRef = { apiGroup: rbacGroup, kind: "ClusterRole", name }
  const subjects = [{ kind: "ServiceAccount", name, namespace }]
  return [
    { apiVersion: "v1", kind: "ServiceAccount", metadata: { name, namespace, labels: bindingLabels } },
    {
      apiVersion: `${rbacGroup}/v1`,
      kind: "ClusterRole",
      metadata: { name, labels: bindingLabels },
      aggregationRule: { clusterRoleSelectors: [{ matchLabels: { [BindingAggregationLabel]: "true" } }] },
      // The control plane fills the rules from the labelled roles.
      rules: []
    },
    {
      apiVersion: `${rbacGroup}/v1`,
      kind: "ClusterRole",
      metadata: { name: `${name}-core`, labels: { ...bindingLabels, [BindingAggregationLabel]: "true" } },
      rules: [...bindingRules]
    },
    // The aggregated role, and halkyon's own rules bound directly too: a control plane without the
    // aggregation controller (a bare kube-apiserver) still grants them.
    ...[name, `${name}-core`].map((role): Manifest => {
      const ref = { ...roleRef, name: role }
      return servedNamespace === undefined
        ? {
          apiVersion: `${rbacGroup}/v1`,
          kind: "ClusterRoleBinding",
          metadata: { name: role, labels: bindingLabels },
          roleRef: ref,
          subjects
        }
        : {
          apiVersion: `${rbacGroup}/v1`,
          kind: "RoleBinding",
          metadata: { name: role, namespace: servedNamespace, labels: bindingLabels },
          roleRef: ref,
          subjects
        }
    }),
    // Opt-in (BindingRbac.ts bindJobsRules), unlabelled so that no aggregation adds it, and cluster-wide even for one
    // served namespace: a RoleBinding grants nothing on cluster-scoped policies.
    ...(bindJobs
      ? [
        {
          apiVersion: `${rbacGroup}/v1`,
          kind: "ClusterRole",
          metadata: { name: BindingJobsRole, labels: bindingLabels },
          rules: [...bindJobsRules]
        },
        {
          apiVersion: `${rbacGroup}/v1`,
          kind: "ClusterRoleBinding",
          metadata: { name: BindingJobsRole, labels: bindingLabels },
          roleRef: { ...roleRef, name: BindingJobsRole },
          subjects
        }
      ] satisfies ReadonlyArray<Manifest>
      : [])
  ]
}

/** The references' identity: its ServiceAccount, its ClusterRole, and its binding (cluster-wide, or the served namespace only). */
const referenceObjects = (namespace: string, servedNamespace: string | undefined): ReadonlyArray<Manifest> => {
  const referenceLabels = { ...labels, "app.kubernetes.io/component": "parameter-references" }
  const name = ReferencesServiceAccount
  const roleRef = { apiGroup: rbacGroup, kind: "ClusterRole", name }
  const subjects = [{ kind: "ServiceAccount", name, namespace }]
  return [
    { apiVersion: "v1", kind: "ServiceAccount", metadata: { name, namespace, labels: referenceLabels } },
    { apiVersion: `${rbacGroup}/v1`, kind: "ClusterRole", metadata: { name, labels: referenceLabels }, rules: [...referenceRules] },
    servedNamespace === undefined
      ? { apiVersion: `${rbacGroup}/v1`, kind: "ClusterRoleBinding", metadata: { name, labels: referenceLabels }, roleRef, subjects }
      : {
        apiVersion: `${rbacGroup}/v1`,
        kind: "RoleBinding",
        metadata: { name, namespace: servedNamespace, labels: referenceLabels },
        roleRef,
        subjects
      }
  ]
}

const deployment = (
  namespace: string,
  image: string,
  plugins: string | undefined,
  servedNamespace: string | undefined,
  serviceBinding = true
): V1Deployment => ({
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name: operatorName, namespace, labels },
  spec: {
    // One replica: leader election keeps a second one (during a rollout, say) from reconciling too.
    replicas: 1,
    selector: { matchLabels: { "app.kubernetes.io/name": operatorName } },
    template: {
      metadata: { labels },
      spec: {
        serviceAccountName: operatorName,
        // The token is mounted into the operator's container only (the kube-api-access volume below), never the runner's.
        automountServiceAccountToken: false,
        // Room for --graceful-shutdown-timeout (30 s) and the plugins' own stop before the kubelet's SIGKILL.
        terminationGracePeriodSeconds: 45,
        securityContext: { runAsNonRoot: true, fsGroup: operatorUid, seccompProfile: { type: "RuntimeDefault" } },
        // A sidecar (an init container that keeps running): it starts before the operator and stops after it,
        // so the operator stops its plugins through it. Plugins run here, as another uid, without the token.
        initContainers: [
          {
            name: "plugin-runner",
            image,
            restartPolicy: "Always",
            args: ["plugin-runner", "--socket", runnerSocket, "--plugins-dir", "/plugins"],
            // Every plugin's memory counts here, not in the operator's container.
            resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "1Gi" } },
            securityContext: containerSecurity(runnerUid),
            volumeMounts: [
              { name: "plugins", mountPath: "/plugins", readOnly: true },
              { name: "runner", mountPath: "/run/halkyon" },
              { name: "runner-tmp", mountPath: "/tmp" }
            ]
          }
        ],
        containers: [
          {
            name: "operator",
            image,
            args: [
              "run",
              "--leader-elect",
              "--plugins-dir",
              "/plugins",
              "--plugin-runner",
              runnerSocket,
              // Dependents are written as each plugin's ServiceAccount; the operator's own role holds none of them.
              "--impersonate",
              "always",
              ...(servedNamespace === undefined ? [] : ["--namespace", servedNamespace]),
              ...(serviceBinding ? [] : ["--service-binding=false"]),
              // Explicit: outside a pod the defaults are loopback only.
              "--health-addr",
              `:${healthPort}`,
              "--metrics-addr",
              `:${metricsPort}`
            ],
            env: [
              { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
              ...(plugins === undefined || plugins === "" ? [] : [{ name: "HALKYON_PLUGINS", value: plugins }])
            ],
            ports: [
              { name: "health", containerPort: healthPort, protocol: "TCP" },
              { name: "metrics", containerPort: metricsPort, protocol: "TCP" }
            ],
            livenessProbe: { httpGet: { path: "/healthz", port: healthPort }, initialDelaySeconds: 5, periodSeconds: 10 },
            readinessProbe: { httpGet: { path: "/readyz", port: healthPort }, initialDelaySeconds: 2, periodSeconds: 5 },
            resources: { requests: { cpu: "100m", memory: "128Mi" } },
            securityContext: containerSecurity(operatorUid),
            volumeMounts: [
              // Written by the operator (plugins installed at start), read by the runner.
              { name: "plugins", mountPath: "/plugins" },
              // The root filesystem is read-only; the runtime's scratch files go here.
              { name: "tmp", mountPath: "/tmp" },
              { name: "runner", mountPath: "/run/halkyon" },
              { name: "kube-api-access", mountPath: tokenPath, readOnly: true }
            ]
          }
        ],
        volumes: [
          { name: "plugins", emptyDir: {} },
          { name: "tmp", emptyDir: {} },
          { name: "runner", emptyDir: {} },
          { name: "runner-tmp", emptyDir: {} },
          // What automountServiceAccountToken would mount, made explicit so that it goes into one container.
          {
            name: "kube-api-access",
            projected: {
              sources: [
                { serviceAccountToken: { path: "token", expirationSeconds: 3607 } },
                { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
                { downwardAPI: { items: [{ path: "namespace", fieldRef: { apiVersion: "v1", fieldPath: "metadata.namespace" } }] } }
              ]
            }
          }
        ]
      }
    }
  }
})

/** The Deployment running with the lock file of the ConfigMap: --lock names it, --require-locked refuses anything else. */
const withPluginsLock = (deployment: V1Deployment): V1Deployment => {
  const template = deployment.spec!.template
  const pod = template.spec!
  return {
    ...deployment,
    spec: {
      ...deployment.spec!,
      template: {
        ...template,
        spec: {
          ...pod,
          containers: pod.containers.map((c) =>
            c.name !== "operator" ? c : {
              ...c,
              args: [...(c.args ?? []), "--lock", pluginsLockPath, "--require-locked"],
              volumeMounts: [...(c.volumeMounts ?? []), { name: "plugins-lock", mountPath: "/etc/halkyon", readOnly: true }]
            }
          ),
          volumes: [...(pod.volumes ?? []), { name: "plugins-lock", configMap: { name: pluginsLockConfigMap } }]
        }
      }
    }
  }
}

/** The objects to apply, in order: CRDs first, so the API serves the kinds before anything uses them. */
export const manifests = (options: ManifestOptions = {}): ReadonlyArray<Manifest> => {
  const namespace = options.namespace ?? defaultNamespace
  const image = options.image ?? defaultImage
  const plugins = [...(options.pluginRoles ?? [])].sort((a, b) => a.name.localeCompare(b.name))
  const namespaceObject: ReadonlyArray<V1Namespace> = namespace === "default"
    ? []
    : [{ apiVersion: "v1", kind: "Namespace", metadata: { name: namespace, labels } }]
  const serviceBinding = options.serviceBinding ?? true
  return [
    capabilityCrd(),
    capabilityInfoCrd(),
    ...(serviceBinding ? [serviceBindingCrd(), workloadResourceMappingCrd()] : []),
    ...namespaceObject,
    { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: operatorName, namespace, labels } },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: { name: operatorName, labels },
      rules: [...operatorRules]
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: operatorName, labels },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: operatorName },
      subjects: [{ kind: "ServiceAccount", name: operatorName, namespace }]
    },
    {
      apiVersion: `${rbacGroup}/v1`,
      kind: "Role",
      metadata: { name: operatorName, namespace, labels },
      rules: [...operatorNamespacedRules(plugins.map((p) => p.name), serviceBinding)]
    },
    {
      apiVersion: `${rbacGroup}/v1`,
      kind: "RoleBinding",
      metadata: { name: operatorName, namespace, labels },
      roleRef: { apiGroup: rbacGroup, kind: "Role", name: operatorName },
      subjects: [{ kind: "ServiceAccount", name: operatorName, namespace }]
    },
    ...plugins.flatMap((p) => pluginObjects(p, namespace, options.servedNamespace)),
    ...(serviceBinding ? bindingObjects(namespace, options.servedNamespace, options.bindJobs ?? false) : []),
    ...referenceObjects(namespace, options.servedNamespace),
    ...(options.lock === undefined
      ? [deployment(namespace, image, options.plugins, options.servedNamespace, serviceBinding)]
      : [
        {
          apiVersion: "v1",
          kind: "ConfigMap",
          metadata: { name: pluginsLockConfigMap, namespace, labels },
          data: { "plugins-lock.json": options.lock }
        } satisfies V1ConfigMap,
        withPluginsLock(deployment(namespace, image, options.plugins, options.servedNamespace, serviceBinding))
      ])
  ]
}
