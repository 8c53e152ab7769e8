/**
 * The `--reattach NAME=ADDRESS` value: how a host finds a plugin that an
 * author started by hand (under a debugger) instead of launching it, as
 * go-plugin's ReattachConfig does. Pure: the SDK formats it, the host parses it.
 *
 * ADDRESS is `unix:/path/to/socket`, `tcp:127.0.0.1:PORT`, or a bare socket path.
 */

/** Set to 1 to start a plugin by hand for debugging: it serves without a host and prints its --reattach value. */
export const DebugKey = "HALKYON_PLUGIN_DEBUG"

export interface ReattachTarget {
  readonly name: string
  readonly network: "unix" | "tcp"
  readonly address: string
}

export const formatReattach = (t: ReattachTarget): string => `${t.name}=${t.network}:${t.address}`

/** The target a --reattach value names, or why it names none. */
export const parseReattach = (
  value: string
): { readonly ok: true; readonly target: ReattachTarget } | { readonly ok: false; readonly problem: string } => {
  const at = value.indexOf("=")
  const name = at < 0 ? "" : value.slice(0, at).trim()
  const rest = at < 0 ? "" : value.slice(at + 1).trim()
  const expected =
    "expected NAME=unix:/path/to/socket or NAME=tcp:127.0.0.1:PORT, as the plugin printed when started with HALKYON_PLUGIN_DEBUG=1"
  if (name === "" || rest === "") return { ok: false, problem: `--reattach "${value}": ${expected}` }
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) {
    return { ok: false, problem: `--reattach "${value}": the plugin name "${name}" may hold only letters, digits, '.', '_' and '-'` }
  }
  if (rest.startsWith("tcp:")) {
    const address = rest.slice(4)
    if (!/^[^:]+:\d{1,5}$/.test(address)) return { ok: false, problem: `--reattach "${value}": "${address}" is not HOST:PORT; ${expected}` }
    return { ok: true, target: { name, network: "tcp", address } }
  }
  const path = rest.startsWith("unix:") ? rest.slice(5) : rest
  if (!path.startsWith("/")) return { ok: false, problem: `--reattach "${value}": the socket path "${path}" is not absolute; ${expected}` }
  return { ok: true, target: { name, network: "unix", address: path } }
}
