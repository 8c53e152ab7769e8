/** `halkyon version`: the version, commit, OS and arch of this build. */
import { Console } from "effect"
import { Command } from "effect/cli"
import { commit, goArch, goOs, version } from "../Version.ts"

export const versionCommand = Command.make("version", {}, () => Console.log(`halkyon ${version} (commit ${commit}) ${goOs}/${goArch}`))
  .pipe(Command.withDescription("Print the version, git commit, OS and architecture"))
