/**
 * The platforms we release for, named as Go names them (release assets use
 * those names, so the downloader and go-plugin hosts agree) beside the Bun
 * compile target that builds each, and this machine among them.
 */

export interface ReleaseTarget {
  readonly os: "linux" | "darwin" | "windows"
  readonly arch: "amd64" | "arm64"
  /** `bun build --compile --target=…` */
  readonly bunTarget: string
}

export const releaseTargets: ReadonlyArray<ReleaseTarget> = [
  { os: "linux", arch: "amd64", bunTarget: "bun-linux-x64" },
  { os: "linux", arch: "arm64", bunTarget: "bun-linux-arm64" },
  { os: "darwin", arch: "amd64", bunTarget: "bun-darwin-x64" },
  { os: "darwin", arch: "arm64", bunTarget: "bun-darwin-arm64" },
  { os: "windows", arch: "amd64", bunTarget: "bun-windows-x64" }
]

/** The executable's file name on that OS. */
export const executableName = (name: string, os: string) => (os === "windows" ? `${name}.exe` : name)

/** This machine, as Go names it. */
export const hostTarget: ReleaseTarget | undefined = releaseTargets.find(
  (t) =>
    t.os === (process.platform === "win32" ? "windows" : process.platform) && t.arch === (process.arch === "x64" ? "amd64" : process.arch)
)
