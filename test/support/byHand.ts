/**
 * A plugin started by hand, as an author starts one under a debugger
 * (HALKYON_PLUGIN_DEBUG=1), with the --reattach value it prints once it listens.
 */
import { builtPlugin } from "./paths.ts"

export interface ByHand {
  readonly plugin: ReturnType<typeof Bun.spawn>
  /** NAME=unix:/path, as the plugin printed it. */
  readonly value: string
}

export const startByHand = async (name: string): Promise<ByHand> => {
  const plugin = Bun.spawn([builtPlugin(name)], {
    env: { PATH: process.env.PATH ?? "", HALKYON_PLUGIN_DEBUG: "1" },
    stdout: "pipe",
    stderr: "pipe"
  })
  const reader = plugin.stderr.getReader()
  let said = ""
  for (;;) {
    const chunk = await reader.read()
    if (chunk.done) throw new Error(`plugin ${name} exited without printing its --reattach value:\n${said}`)
    said += new TextDecoder().decode(chunk.value)
    const value = /--reattach (\S+)/.exec(said)?.[1]
    if (value !== undefined) {
      reader.releaseLock()
      return { plugin, value }
    }
  }
}
