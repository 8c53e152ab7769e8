/** `halkyon version`: the version, commit, OS and arch of this build (main.ts answers a bare `halkyon version` itself). */
import { Console } from "effect"
import { Command } from "effect/cli"
import { versionLine } from "../Version.ts"

export const versionCommand = Command.make("version", {}, () => Console.log(versionLine()))
  .pipe(Command.withDescription("Print the version, git commit, OS and architecture"))
