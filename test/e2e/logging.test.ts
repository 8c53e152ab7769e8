/**
 * The operator's logs (src/cli/Logging.ts) go to stderr through a FileSink,
 * which queues what a full pipe cannot take rather than block the event
 * loop (the stall it removes is measured by bench:reconcile's profile, not
 * timed here). What a queue must not do is lose or reorder lines: 2 MB are
 * logged while nobody reads, then read.
 */
import { expect, test } from "bun:test"
import { join } from "node:path"
import { bun, root } from "../support/paths.ts"

test("logged into a full, unread stderr pipe, every line arrives, in order, once read", async () => {
  const lines = 2000
  // 2 MB of log lines: over thirty times what a pipe holds.
  const proc = Bun.spawn([bun, join(root, "test/fixtures/logging/flood.ts")], {
    env: { ...process.env, LINES: String(lines) },
    stdout: "pipe",
    stderr: "pipe"
  })
  const stdout = proc.stdout.getReader()
  // stderr is not read until the process says it has logged everything.
  const said = await Promise.race([
    stdout.read().then(({ value }) => new TextDecoder().decode(value)),
    Bun.sleep(10_000).then(() => "nothing within 10 s")
  ])
  expect(said).toBe("logged\n")
  const stderr = await new Response(proc.stderr).text()
  expect(await proc.exited).toBe(0)
  const numbers = stderr.trim().split("\n").map((l) => Number(/message="line (\d+) /.exec(l)?.[1]))
  expect(numbers).toEqual(Array.from({ length: lines }, (_, i) => i))
})
