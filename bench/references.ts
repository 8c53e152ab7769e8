/**
 * npm run bench:references: what parameters by reference cost the operator,
 * printed, never asserted. ParameterReferences (the real one) resolves
 * BENCH_CAPABILITIES Capabilities (default 10,000) against the in-memory API
 * server, in three shapes: no reference (the anchor), all referencing one
 * Secret, each its own Secret. For each: the heap the index and the kept data
 * hold after a GC, and the time per resolve on a first pass (each object read
 * from the server) and a second (kept data), and the time Redactions (which
 * then holds every resolved value) takes to redact one relayed plugin log
 * line. The in-memory server's GET costs far less than a real one: the first
 * pass is a floor. BENCH_MARKDOWN=file
 * also writes the table there (bench:all puts it in docs/performance.md).
 */
import { Effect, Schema } from "effect"
import { ApiVersion, Capability } from "../src/api/Capability.ts"
import type { KubeObject } from "../src/kube/KubeObject.ts"
import { make as makeRedactions } from "../src/plugin-host/Redactions.ts"
import { make } from "../src/reconciler/ParameterReferences.ts"
import { makeFakeKube } from "../test/support/FakeKube.ts"
import { markdownTable, writeMarkdown } from "./support/markdown.ts"

const Count = Number(process.env.BENCH_CAPABILITIES ?? 10_000)
const decode = Schema.decodeUnknownSync(Capability)

const capability = (i: number, parameters: ReadonlyArray<Record<string, unknown>>): KubeObject => ({
  apiVersion: ApiVersion,
  kind: "Capability",
  metadata: { name: `db-${i}`, namespace: "shop" },
  spec: { category: "database", type: "postgres", parameters }
})
const password = (i: number) => `${String(i).padStart(8, "0")}-${"x".repeat(23)}`
const heap = () => {
  Bun.gc(true)
  return process.memoryUsage().heapUsed
}

const rows: Array<ReadonlyArray<string>> = []
const count = (n: number) => n.toLocaleString("en-US")

const shape = (name: string, secretOf: ((i: number) => string) | undefined) =>
  Effect.gen(function*() {
    const kube = makeFakeKube()
    const secrets = new Set(secretOf === undefined ? [] : Array.from({ length: Count }, (_, i) => secretOf(i)))
    for (const s of secrets) {
      yield* kube.client.create({
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: s, namespace: "shop" },
        data: { password: Buffer.from(password(Number(s.split("-").at(-1) ?? 0))).toString("base64") }
      })
    }
    const raws = Array.from({ length: Count }, (_, i) =>
      capability(
        i,
        secretOf === undefined
          ? [{ name: "DB_PASSWORD", value: password(i) }]
          : [{ name: "DB_PASSWORD", valueFrom: { secretKeyRef: { name: secretOf(i), key: "password" } } }]
      ))
    const decoded = raws.map((raw) => decode(raw))
    const before = heap()
    const redactions = makeRedactions()
    const references = yield* make(kube.client, redactions)
    // As the controller does once its watch has listed.
    references.markSynced("Secret")
    const pass = Effect.gen(function*() {
      const t0 = performance.now()
      for (let i = 0; i < Count; i++) {
        const r = yield* references.resolve(`shop/db-${i}`, raws[i] as KubeObject, decoded[i] as Capability)
        if (r._tag !== "Resolved") return yield* Effect.die(new Error(`db-${i}: ${r.message}`))
      }
      return ((performance.now() - t0) * 1000) / Count
    })
    const first = yield* pass
    const second = yield* pass
    const held = heap() - before
    const { referenced, kept } = references.size()
    // A plugin's log line of about 200 characters, holding no value (the usual case); the first call builds the redactor.
    const line = `{"@level":"info","@message":"applied dependent config-secret","capability":"shop/db-42"} ${"y".repeat(100)}`
    redactions.redact(line)
    const lines = 2_000
    const r0 = performance.now()
    for (let i = 0; i < lines; i++) redactions.redact(line)
    const perLine = ((performance.now() - r0) * 1000) / lines
    console.log(
      `${name.padEnd(28)} ${(held / 1024 / 1024).toFixed(1).padStart(6)} MiB held  ` +
        `${first.toFixed(1).padStart(6)} µs first resolve  ${second.toFixed(1).padStart(6)} µs next  ` +
        `${referenced} referenced, ${kept} kept  ${perLine.toFixed(2).padStart(7)} µs to redact a plugin line (${
          count(redactions.size().values)
        } values)`
    )
    rows.push([
      name,
      `${(held / 1024 / 1024).toFixed(1)} MiB`,
      `${first.toFixed(1)} µs`,
      `${second.toFixed(1)} µs`,
      `${count(referenced)} / ${count(kept)}`,
      `${perLine.toFixed(2)} µs (${count(redactions.size().values)} values)`
    ])
    // Kept alive until measured.
    return references.size().referenced
  })

console.log(`${Count} Capabilities, one DB_PASSWORD each (Bun ${Bun.version}, ${process.arch})`)
await Effect.runPromise(Effect.gen(function*() {
  yield* shape("anchor: a literal value", undefined)
  yield* shape("all one Secret", () => "db-credentials-0")
  yield* shape("each its own Secret", (i) => `db-credentials-${i}`)
}))
writeMarkdown([
  `${count(Count)} Capabilities, one DB_PASSWORD each:`,
  markdownTable(["shape", "heap held after GC", "first resolve", "next resolve", "referenced / kept", "redact a plugin line"], rows)
])
