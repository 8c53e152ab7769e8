/**
 * The build's version and commit. `npm run build` embeds them with
 * `--define`; from source they come from package.json and read "dev".
 */
import pkg from "../package.json" with { type: "json" }

declare const __HALKYON_VERSION__: string | undefined
declare const __HALKYON_COMMIT__: string | undefined

export const version: string = typeof __HALKYON_VERSION__ === "string" ? __HALKYON_VERSION__ : pkg.version
export const commit: string = typeof __HALKYON_COMMIT__ === "string" ? __HALKYON_COMMIT__ : "dev"

/** The platform as Go names it, which is how release assets are named. */
export const goOs = process.platform === "win32" ? "windows" : process.platform
export const goArch = process.arch === "x64" ? "amd64" : process.arch

/** What `halkyon version` prints. */
export const versionLine = () => `halkyon ${version} (commit ${commit}) ${goOs}/${goArch}`
