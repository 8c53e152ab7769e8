/**
 * The postgres plugin: Capabilities of category `database`, type `postgres`.
 *
 * Dependents: a Secret `<capability>-config` with the connection settings
 * (the binding contract of the original Halkyon, and the Service Binding
 * spec's well-known entries: type, provider, host, port, username, password,
 * database, uri); then, together, a StatefulSet running the official postgres
 * image with a volume claim template (its env read from that Secret), and a
 * Service. Ready when the StatefulSet reports all its replicas ready. Nothing
 * waits for the database (no waitForReady): nothing here needs it up.
 */
import { bindingEntries, type Context, definePlugin, dependent, pending, ready, secretValue } from "@halkyon/sdk"
import type { StatefulSet } from "kubernetes-types/apps/v1"
import type { Secret, Service } from "kubernetes-types/core/v1"

/** Supported major versions; the version picks the image tag. */
export const Versions = ["14", "15", "16", "17", "18"] as const
export const DefaultVersion = "17"

type Labels = Record<string, string>

const labels = (ctx: Context): Labels => ({
  "app.kubernetes.io/name": "postgres",
  "app.kubernetes.io/instance": ctx.name,
  "app.kubernetes.io/managed-by": "halkyon"
})
const selector = (ctx: Context): Labels => ({ "app.kubernetes.io/name": "postgres", "app.kubernetes.io/instance": ctx.name })
const port = (ctx: Context) => Number(ctx.parameters.DB_PORT)
const secretName = (ctx: Context) => `${ctx.name}-config`

/** The connection settings a workload binds to, as plain strings. */
const connectionSettings = (ctx: Context, password: string): Record<string, string> => {
  const settings = {
    DB_HOST: `${ctx.name}.${ctx.namespace}.svc`,
    DB_PORT: String(port(ctx)),
    DB_NAME: ctx.parameters.DB_NAME ?? "sample-db",
    DB_USER: ctx.parameters.DB_USER ?? "admin",
    DB_PASSWORD: password
  }
  const uri = `postgresql://${encodeURIComponent(settings.DB_USER)}:${
    encodeURIComponent(password)
  }@${settings.DB_HOST}:${settings.DB_PORT}/${encodeURIComponent(settings.DB_NAME)}`
  return {
    ...settings,
    DATABASE_URL: uri,
    // The Service Binding spec's well-known entries (servicebinding.io): what a ServiceBinding projects as files.
    ...bindingEntries({
      type: "postgresql",
      provider: "halkyon",
      host: settings.DB_HOST,
      port: settings.DB_PORT,
      username: settings.DB_USER,
      password,
      database: settings.DB_NAME,
      uri
    })
  }
}

/** 24 random URL-safe characters, from WebCrypto. */
const generatePassword = () => Buffer.from(crypto.getRandomValues(new Uint8Array(18))).toString("base64url")

const decodeData = (secret: Secret): Record<string, string> =>
  Object.fromEntries(Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]))

const configSecret = dependent<Secret>({
  id: "config-secret",
  apiVersion: "v1",
  kind: "Secret",
  binding: true,
  // Deleted with the Capability, unless it asks to keep the credentials (say, for the data a volume keeps).
  deletionPolicy: (ctx) => (ctx.parameters.KEEP_SECRET === "true" ? "orphan" : "delete"),
  build: (ctx) => ({
    metadata: { name: secretName(ctx), namespace: ctx.namespace, labels: labels(ctx) },
    type: "Opaque",
    // A password generated before, as observed, rather than a new one the update would set aside.
    stringData: connectionSettings(
      ctx,
      ctx.parameters.DB_PASSWORD ?? secretValue(ctx.observed.get<Secret>("config-secret"), "DB_PASSWORD") ?? generatePassword()
    )
  }),
  // A generated password is kept: only a password set in the Capability replaces it.
  update: (existing, desired, ctx) => {
    const current = decodeData(existing)
    const password = ctx.parameters.DB_PASSWORD ?? current.DB_PASSWORD ?? desired.stringData?.DB_PASSWORD ?? ""
    const wanted = connectionSettings(ctx, password)
    const same = Object.keys(wanted).length === Object.keys(current).length &&
      Object.entries(wanted).every(([k, v]) => current[k] === v)
    return same ? undefined : { ...desired, stringData: wanted }
  }
})

const image = (ctx: Context) => `postgres:${ctx.version}`

const statefulSet = dependent<StatefulSet>({
  id: "statefulset",
  apiVersion: "apps/v1",
  kind: "StatefulSet",
  // Its pod reads the Secret's keys: created before it, so the pod does not start without them.
  dependsOn: ["config-secret"],
  build: (ctx) => {
    const fromSecret = (key: string) => ({ secretKeyRef: { name: secretName(ctx), key } })
    return {
      metadata: { name: ctx.name, namespace: ctx.namespace, labels: labels(ctx) },
      spec: {
        replicas: 1,
        serviceName: ctx.name,
        selector: { matchLabels: selector(ctx) },
        template: {
          metadata: { labels: labels(ctx) },
          spec: {
            containers: [{
              name: "postgres",
              image: image(ctx),
              env: [
                { name: "POSTGRES_USER", valueFrom: fromSecret("DB_USER") },
                { name: "POSTGRES_PASSWORD", valueFrom: fromSecret("DB_PASSWORD") },
                { name: "POSTGRES_DB", valueFrom: fromSecret("DB_NAME") },
                { name: "PGPORT", value: String(port(ctx)) },
                { name: "PGDATA", value: "/var/lib/postgresql/data/pgdata" }
              ],
              ports: [{ name: "postgres", containerPort: port(ctx) }],
              readinessProbe: { exec: { command: ["sh", "-c", "pg_isready -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\""] }, periodSeconds: 5 },
              volumeMounts: [{ name: "data", mountPath: "/var/lib/postgresql/data" }]
            }]
          }
        },
        volumeClaimTemplates: [{
          metadata: { name: "data" },
          spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } }
        }]
      }
    }
  },
  // The image and port follow the Capability; the volume claim template cannot change.
  update: (existing, desired) => {
    const have = existing.spec?.template.spec?.containers.find((c) => c.name === "postgres")
    const want = desired.spec?.template.spec?.containers[0]
    const same = have !== undefined && want !== undefined && have.image === want.image &&
      have.ports?.[0]?.containerPort === want.ports?.[0]?.containerPort &&
      JSON.stringify(have.env) === JSON.stringify(want.env)
    return same ? undefined : desired
  },
  ready: (observed) => {
    const want = observed.spec?.replicas ?? 1
    const have = observed.status?.readyReplicas ?? 0
    const generation = observed.metadata?.generation ?? 0
    const current = (observed.status?.observedGeneration ?? 0) >= generation
    if (!current) return pending("RolloutPending", `waiting for the StatefulSet controller to roll out generation ${generation}`)
    return have >= want
      ? ready("ReplicasReady", `${have}/${want} replicas ready`)
      : pending("ReplicasNotReady", `${have}/${want} replicas ready`)
  }
})

const service = dependent<Service>({
  id: "service",
  apiVersion: "v1",
  kind: "Service",
  // Needs nothing of the others (its endpoints follow the pods' readiness): beside the StatefulSet, after the Secret.
  dependsOn: ["config-secret"],
  build: (ctx) => ({
    metadata: { name: ctx.name, namespace: ctx.namespace, labels: labels(ctx) },
    spec: { selector: selector(ctx), ports: [{ name: "postgres", port: port(ctx), targetPort: port(ctx) }] }
  }),
  update: (existing, desired) => {
    const have = existing.spec?.ports?.[0]
    const want = desired.spec?.ports?.[0]
    return have?.port === want?.port && have?.targetPort === want?.targetPort ? undefined : desired
  }
})

/** A user or database name: what postgres takes unquoted (and a hyphen), at most 63 characters. */
const Identifier = "^[A-Za-z_][A-Za-z0-9_-]{0,62}$"

export const postgres = definePlugin({
  name: "postgres",
  category: "database",
  types: [{ type: "postgres", versions: Versions, defaultVersion: DefaultVersion }],
  // Typed: the API server refuses a Capability that breaks these (the operator's admission policy), and so does CheckValidity.
  parameters: [
    { name: "DB_USER", description: "the database user", default: "admin", pattern: Identifier },
    {
      name: "DB_PASSWORD",
      description: "the user's password, given with valueFrom (a Secret's key); generated when absent",
      secret: true
    },
    { name: "DB_NAME", description: "the database to create", default: "sample-db", pattern: Identifier },
    { name: "DB_PORT", description: "the port postgres listens on", default: "5432", type: "integer", minimum: 1024, maximum: 65535 },
    {
      name: "KEEP_SECRET",
      description: "true: the Secret with the credentials is kept when the Capability is deleted",
      default: "false",
      type: "boolean"
    }
  ],
  dependents: [configSecret, statefulSet, service]
})
