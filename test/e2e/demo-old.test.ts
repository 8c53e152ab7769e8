/** The README's main command, as a script runs it: npm run demo -- --no-wait. */
import { expect, test } from "bun:test"
import { join } from "node:path"
import { bun, processesMatching, root } from "../support/paths.ts"

test("npm run demo takes the sample Capability to Ready and tears everything down", async () => {
  const demo = Bun.spawn([bun, join(root, "scripts/demo.ts"), "--no-wait"], { cwd: root, stdout: "pipe", stderr: "pipe" })
  const [stdout, stderr, code] = await Promise.all([new Response(demo.stdout).text(), new Response(demo.stderr).text(), demo.exited])
  expect({ code, stderr: code === 0 ? "" : stderr }).toEqual({ code: 0, stderr: "" })
  expect(stdout).toContain("Secret       postgres-db-config   owned by Capability/postgres-db")
  expect(stdout).toContain("bindingSecret: postgres-db-config")
  expect(stdout).toMatch(/capability\/postgres-db is Ready, [\d.]+ s after the demo started\./)
  const pid = demo.pid
  expect((await processesMatching("halkyon-demo-plugins-")).filter((p) => p !== pid)).toEqual([])
}, 30 * 60_000)
