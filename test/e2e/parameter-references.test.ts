/**
 * Parameters by reference end to end: the compiled operator against a real
 * kube-apiserver, with the postgres plugin, which puts DB_PASSWORD into the
 * binding Secret `<name>-config`.
 *
 * The API server refuses a parameter with both value and valueFrom (the
 * CRD's CEL rule); a password from a secretKeyRef reaches the binding Secret;
 * an update of the referenced Secret reaches it within 5 s; a reference to a
 * Secret that does not exist yet is ParameterReferenceNotFound, naming the
 * parameter, Secret and key, and recovers when it is created; a
 * configMapKeyRef value reaches the plugin, and a change of the ConfigMap
 * reaches the plugin's output within 5 s; and no password appears in any
 * Capability status, Event or line the operator (and its plugins) logged
 * during the test, the operator logging at debug level. The `leaky` fixture
 * plugin logs the secret it was given on every channel it has (hclog JSON
 * message and fields, plain stderr, stdout): the operator relays those lines
 * redacted.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { capabilityPath, type Cluster, dig, type Operator, readyOf, startWithPostgres } from "../support/cluster.ts"
import { eventually, testPlugin } from "../support/paths.ts"

let cluster: Cluster
let operator: Operator
let stop: () => Promise<void>

const ns = "refs"
// Distinct, unguessable-looking values: any occurrence in a status, Event or log is a leak.
const Passwords = ["pw-first-7d1c9e", "pw-rotated-4b82fa", "pw-late-0e6d33", "tok-leaky-5a90c2"] as const
const Token = Passwords[3]

beforeAll(async () => {
  // At debug level, every line a plugin writes is relayed: the strictest check that none carries a value.
  ;({ cluster, operator, stop } = await startWithPostgres(ns, { plugins: [testPlugin("leaky.js")], debug: true }))
}, 120_000)

afterAll(async () => {
  await stop?.()
})

/** Every Capability status read during the test, for the last check. */
const statusesSeen: Array<string> = []
const getCapability = async (name: string) => {
  const c = await cluster.api("GET", capabilityPath(ns, name))
  statusesSeen.push(JSON.stringify(dig<unknown>(c.body, "status") ?? {}))
  return c
}

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64")
const secretPath = (name = "") => `/api/v1/namespaces/${ns}/secrets${name === "" ? "" : `/${name}`}`

const createSecret = async (name: string, password: string) => {
  const created = await cluster.api("POST", secretPath(), {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name },
    data: { password: b64(password) }
  })
  expect(created.status).toBe(201)
}

const capability = (name: string, secret: string, extra: Record<string, unknown> = {}) => ({
  apiVersion: "halkyon.io/v1beta1",
  kind: "Capability",
  metadata: { name },
  spec: {
    category: "database",
    type: "postgres",
    version: "16",
    parameters: [
      { name: "DB_USER", value: "app" },
      { name: "DB_PASSWORD", valueFrom: { secretKeyRef: { name: secret, key: "password" } }, ...extra }
    ]
  }
})

const createCapability = async (name: string, secret: string) => {
  const created = await cluster.api("POST", capabilityPath(ns), capability(name, secret))
  expect(created.status).toBe(201)
}

/** DB_PASSWORD in the binding Secret the plugin wrote; undefined until it exists. */
const boundPassword = async (capability: string) => {
  const s = await cluster.api("GET", secretPath(`${capability}-config`))
  if (s.status !== 200) return undefined
  const encoded = dig<string>(s.body, "data", "DB_PASSWORD")
  return encoded === undefined ? undefined : Buffer.from(encoded, "base64").toString("utf8")
}

test("the API server refuses a parameter with both value and valueFrom, naming the rule", async () => {
  const both = capability("both", "db-credentials", { value: "literal" })
  // As `kubectl apply --dry-run=server`, then for real.
  for (const query of ["?dryRun=All", ""]) {
    const refused = await cluster.api("POST", `${capabilityPath(ns)}${query}`, both)
    expect(refused.status).toBe(422)
    expect(JSON.stringify(refused.body)).toContain("a parameter takes value or valueFrom, not both")
  }
  const neither = await cluster.api("POST", capabilityPath(ns), {
    ...both,
    spec: { ...both.spec, parameters: [{ name: "DB_PASSWORD", valueFrom: {} }] }
  })
  expect(neither.status).toBe(422)
  expect(JSON.stringify(neither.body)).toContain("valueFrom takes exactly one of secretKeyRef and configMapKeyRef")
  expect((await cluster.api("GET", capabilityPath(ns, "both"))).status).toBe(404)
})

test("a secretKeyRef password reaches the binding Secret; an update of the Secret reaches it within 5 s", async () => {
  await createSecret("db-credentials", Passwords[0])
  await createCapability("orders", "db-credentials")
  expect(await eventually(async () => (await boundPassword("orders")) === Passwords[0], 20_000)).toBe(true)
  // The Capability itself holds the reference only.
  const stored = await getCapability("orders")
  expect(JSON.stringify(stored.body)).not.toContain(Passwords[0])

  const patched = await cluster.api(
    "PATCH",
    secretPath("db-credentials"),
    { data: { password: b64(Passwords[1]) } },
    "application/merge-patch+json"
  )
  expect(patched.status).toBe(200)
  const t0 = performance.now()
  const reached = await eventually(async () => (await boundPassword("orders")) === Passwords[1], 5_000, 50)
  console.log(`the updated password reached the binding Secret ${Math.round(performance.now() - t0)} ms after the Secret's update`)
  expect(reached).toBe(true)
})

test("a Secret that does not exist yet: ParameterReferenceNotFound naming parameter, Secret and key; recovers once created", async () => {
  await createCapability("late", "late-credentials")
  let ready: ReturnType<typeof readyOf>
  const reported = await eventually(async () => {
    ready = readyOf(await getCapability("late"))
    return ready?.reason === "ParameterReferenceNotFound"
  }, 20_000)
  expect(reported).toBe(true)
  expect(ready).toMatchObject({ status: "False", reason: "ParameterReferenceNotFound" })
  expect(ready?.message).toContain("parameter DB_PASSWORD: Secret refs/late-credentials, key password: the Secret does not exist")
  expect(await boundPassword("late")).toBeUndefined()

  await createSecret("late-credentials", Passwords[2])
  expect(await eventually(async () => (await boundPassword("late")) === Passwords[2], 20_000)).toBe(true)
  expect(
    await eventually(
      async () => readyOf(await getCapability("late"))?.reason !== "ParameterReferenceNotFound",
      20_000
    )
  )
    .toBe(true)
})

const configMapPath = (name = "") => `/api/v1/namespaces/${ns}/configmaps${name === "" ? "" : `/${name}`}`

/** SETTING in the ConfigMap the leaky plugin wrote; undefined until it exists. */
const echoedSetting = async (capability: string) => {
  const c = await cluster.api("GET", configMapPath(`${capability}-echo`))
  return c.status === 200 ? dig<string>(c.body, "data", "SETTING") : undefined
}

test("a configMapKeyRef value reaches the plugin; a change of the ConfigMap reaches its output within 5 s", async () => {
  const settings = await cluster.api("POST", configMapPath(), {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: "leaky-settings" },
    data: { setting: "first-setting" }
  })
  expect(settings.status).toBe(201)
  await createSecret("leaky-token", Token)
  const created = await cluster.api("POST", capabilityPath(ns), {
    apiVersion: "halkyon.io/v1beta1",
    kind: "Capability",
    metadata: { name: "echo" },
    spec: {
      category: "echo",
      type: "leaky",
      version: "1",
      parameters: [
        { name: "TOKEN", valueFrom: { secretKeyRef: { name: "leaky-token", key: "password" } } },
        { name: "SETTING", valueFrom: { configMapKeyRef: { name: "leaky-settings", key: "setting" } } }
      ]
    }
  })
  expect(created.status).toBe(201)
  expect(await eventually(async () => (await echoedSetting("echo")) === "first-setting", 20_000)).toBe(true)

  const patched = await cluster.api(
    "PATCH",
    configMapPath("leaky-settings"),
    { data: { setting: "second-setting" } },
    "application/merge-patch+json"
  )
  expect(patched.status).toBe(200)
  const t0 = performance.now()
  const reached = await eventually(async () => (await echoedSetting("echo")) === "second-setting", 5_000, 50)
  console.log(
    `the updated ConfigMap value reached the plugin's output ${Math.round(performance.now() - t0)} ms after the ConfigMap's update`
  )
  expect(reached).toBe(true)
})

test("the token the leaky plugin logs on every channel reaches the operator's log redacted", async () => {
  // Each channel's line arrived, relayed, with the value replaced.
  const relayed = (text: string) => operator.logs.some((l) => l.includes(text) && l.includes("[redacted]"))
  const channels = ["leaky plugin got token", "leaky plugin plain token=", "leaky plugin debug token=", "leaky plugin stdout token="]
  expect(await eventually(() => channels.every(relayed), 20_000)).toBe(true)
  // The hclog line's fields, nested ones included.
  const fields = operator.logs.find((l) => l.includes("leaky plugin got token")) ?? ""
  expect(fields).toContain("plugin_fields")
  expect(operator.logs.join("\n")).not.toContain(Token)
})

test("no password appears in any Capability's status, any Event, or the operator's log", async () => {
  const capabilities = await cluster.api("GET", capabilityPath(ns))
  const events = await cluster.api("GET", `/api/v1/namespaces/${ns}/events`)
  const statuses = [
    ...statusesSeen,
    JSON.stringify((dig<Array<{ status?: unknown }>>(capabilities.body, "items") ?? []).map((c) => c.status))
  ].join("\n")
  const eventTexts = JSON.stringify(dig<Array<unknown>>(events.body, "items") ?? [])
  const log = operator.logs.join("\n")
  // What was read: the statuses seen include the NotFound one, as do the Events; the log has the reconciles.
  expect(statuses).toContain("ParameterReferenceNotFound")
  expect(eventTexts).toContain("ParameterReferenceNotFound")
  expect(log).toContain("capability refs/late")
  for (const password of Passwords) {
    expect(statuses).not.toContain(password)
    expect(eventTexts).not.toContain(password)
    expect(log).not.toContain(password)
  }
})
