/**
 * The Dockerfile read as the image's recipe: `npm run image` assembles the
 * image from what it declares (the folders it copies and their owner, Env,
 * User, WorkingDir, ExposedPorts, Entrypoint, Cmd), so the file people read
 * and build with Docker and the archive we assemble cannot drift apart. Only
 * the instructions a FROM scratch image of copied folders needs are known;
 * any other stops the build with the instruction's name.
 */
import { readFileSync } from "node:fs"

export interface DockerCopy {
  /** A folder relative to the build context; its contents land under `to`. */
  readonly from: string
  readonly to: string
  /** uid and gid of every copied entry (COPY --chown), 0:0 without it. */
  readonly uid: number
  readonly gid: number
}

export interface DockerRecipe {
  readonly copies: ReadonlyArray<DockerCopy>
  readonly env: ReadonlyArray<string>
  readonly user: string
  readonly workdir: string
  readonly exposedPorts: ReadonlyArray<string>
  readonly entrypoint: ReadonlyArray<string>
  readonly cmd: ReadonlyArray<string>
}

const known = ["FROM", "ARG", "COPY", "ENV", "USER", "WORKDIR", "EXPOSE", "ENTRYPOINT", "CMD"]

/** An exec-form (JSON array) argument list. */
const execForm = (instruction: string, text: string) => {
  const parsed: unknown = text.startsWith("[") ? JSON.parse(text) : undefined
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === "string")) {
    throw new Error(`Dockerfile: ${instruction} must be in exec form (a JSON array of strings), got ${text}`)
  }
  return parsed as Array<string>
}

/** Reads `dockerfile` with build arguments `args` (TARGETARCH) substituted. */
export const readDockerfile = (dockerfile: string, args: Record<string, string>): DockerRecipe => {
  const lines = readFileSync(dockerfile, "utf8")
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
  const declared = new Set<string>()
  const substitute = (text: string) =>
    text.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, braced: string | undefined, bare: string | undefined) => {
      const name = braced ?? bare ?? ""
      const value = args[name]
      if (!declared.has(name) || value === undefined) throw new Error(`Dockerfile: $${name} is not a declared ARG with a value`)
      return value
    })
  const copies: Array<DockerCopy> = []
  const env: Array<string> = []
  const exposedPorts: Array<string> = []
  let user = ""
  let workdir = ""
  let entrypoint: ReadonlyArray<string> = []
  let cmd: ReadonlyArray<string> = []
  for (const line of lines) {
    const [instruction = "", ...rest] = line.split(/\s+/)
    const upper = instruction.toUpperCase()
    const operand = line.slice(instruction.length).trim()
    if (!known.includes(upper)) throw new Error(`Dockerfile: scripts/image.ts does not assemble ${upper}; it knows ${known.join(", ")}`)
    if (upper === "FROM" && operand !== "scratch") throw new Error(`Dockerfile: the image is assembled FROM scratch only, not ${operand}`)
    if (upper === "ARG") declared.add(operand.split("=")[0] ?? "")
    if (upper === "COPY") {
      const chown = rest[0]?.startsWith("--chown=") === true ? rest.shift()?.slice("--chown=".length) : undefined
      const [from, to] = rest.map(substitute)
      if (rest.length !== 2 || from === undefined || to === undefined || !from.endsWith("/")) {
        throw new Error(`Dockerfile: COPY takes one folder (ending in /) and a destination, got ${operand}`)
      }
      const [uid = "0", gid = uid] = (chown ?? "0:0").split(":")
      if (!/^\d+$/.test(uid) || !/^\d+$/.test(gid)) throw new Error(`Dockerfile: COPY --chown takes numeric uid:gid, got ${chown}`)
      copies.push({ from, to, uid: Number(uid), gid: Number(gid) })
    }
    if (upper === "ENV") {
      for (const pair of rest.map(substitute)) {
        if (!/^\w+=[^"']*$/.test(pair)) throw new Error(`Dockerfile: ENV takes unquoted KEY=value pairs, got ${pair}`)
        env.push(pair)
      }
    }
    if (upper === "USER") user = substitute(operand)
    if (upper === "WORKDIR") workdir = substitute(operand)
    if (upper === "EXPOSE") exposedPorts.push(...rest.map((p) => (p.includes("/") ? p : `${p}/tcp`)))
    if (upper === "ENTRYPOINT") entrypoint = execForm(upper, operand)
    if (upper === "CMD") cmd = execForm(upper, operand)
  }
  return { copies, env, user, workdir, exposedPorts, entrypoint, cmd }
}
