/**
 * MemoryLimit on this machine, with a real process that allocates until
 * killed: whichever enforcement the host allows (a cgroup v2 or v1 group
 * where this user can make one, else the watchdog) kills it over the limit
 * and says so; a process that stays under it is left alone. The parser of
 * `--plugin-memory-limit` quantities.
 */
import { expect, test } from "bun:test"
import { Effect } from "effect"
import { formatBytes, makeMemoryLimiter, parseMemoryQuantity } from "../../src/plugin-host/MemoryLimit.ts"

const Limit = 96 * 1024 * 1024

/** A Bun process touching `mib` MiB, 4 MiB at a time, then waiting to be killed or exiting 0. */
const allocate = (mib: number) =>
  Bun.spawn([
    process.execPath,
    "-e",
    `const held = []; for (let i = 0; i < ${
      mib / 4
    }; i++) { held.push(new Uint8Array(4 << 20).fill(1)); Bun.sleepSync(5) } console.log(held.length)`
  ], { stdout: "ignore", stderr: "ignore" })

const run = (mib: number) =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const limiter = makeMemoryLimiter(Limit)
    const attach = yield* limiter.prepare("test")
    const child = allocate(mib)
    const limited = yield* attach(child.pid)
    const code = yield* Effect.promise(() => child.exited)
    const killed = yield* limited.killed
    yield* limiter.cleanup
    return { enforcement: limiter.enforcement, code, signal: child.signalCode, killed }
  })))

test("a process allocating past the limit is killed by whatever enforces it here, and reported", async () => {
  const { enforcement, signal, killed } = await run(512)
  expect(signal).toBe("SIGKILL")
  expect(killed?.by).toBe(enforcement)
  expect(killed?.limitBytes).toBe(Limit)
  expect(killed?.evidence).toMatch(enforcement === "watchdog" ? /resident set \d+Ki sampled over the limit/ : /oom_kill [1-9]/)
  console.log(`[memory-limit] enforced by ${enforcement}: ${killed?.evidence}`)
}, 30_000)

test("a process under the limit is not killed", async () => {
  const { code, killed } = await run(16)
  expect(code).toBe(0)
  expect(killed).toBeUndefined()
}, 30_000)

test("memory quantities as Kubernetes writes them", () => {
  expect(parseMemoryQuantity("256Mi")).toBe(256 * 1024 ** 2)
  expect(parseMemoryQuantity("1Gi")).toBe(1024 ** 3)
  expect(parseMemoryQuantity("500M")).toBe(500_000_000)
  expect(() => parseMemoryQuantity("1Mi")).toThrow(/below 16Mi/)
  expect(() => parseMemoryQuantity("lots")).toThrow(/not a memory quantity/)
  expect(formatBytes(256 * 1024 ** 2)).toBe("256Mi")
})
