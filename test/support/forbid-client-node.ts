/**
 * A preload (`bun --preload`) under which loading any module of
 * @kubernetes/client-node throws: a command that runs to the end under it
 * loaded none (test/e2e/no-client-node.test.ts).
 */
import { plugin } from "bun"

plugin({
  name: "forbid-client-node",
  setup(build) {
    build.onLoad({ filter: /[\\/]@kubernetes[\\/]client-node[\\/]/ }, (args) => {
      throw new Error(`client-node loaded: ${args.path}`)
    })
  }
})
