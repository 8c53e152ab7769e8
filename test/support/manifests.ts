/** The kinds `halkyon manifests` prints by default, in order: what the CLI and the image both print. */
export const DefaultManifestKinds: Array<string | undefined> = [
  "CustomResourceDefinition",
  "CustomResourceDefinition",
  "CustomResourceDefinition",
  "CustomResourceDefinition",
  "Namespace",
  "ServiceAccount",
  "ClusterRole",
  "ClusterRoleBinding",
  "Role",
  "RoleBinding",
  "ServiceAccount",
  "ClusterRole",
  "ClusterRole",
  "ClusterRoleBinding",
  "ClusterRoleBinding",
  "ServiceAccount",
  "ClusterRole",
  "ClusterRoleBinding",
  "Deployment"
]

/** The kinds of a multi-document YAML, in order. */
export const kindsOf = (yaml: string) => [...yaml.matchAll(/^kind: (\w+)$/gm)].map((m) => m[1])
