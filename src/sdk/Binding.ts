/**
 * The entries of a binding Secret, as the Service Binding spec
 * (servicebinding.io) names them: `type` (required when projected),
 * `provider`, and, when a plugin gives them, `host`, `port`, `uri`,
 * `username`, `password`, `database`, `certificates`, `private-key`. A
 * plugin builds them with `bindingEntries`, which checks each against the
 * spec's requirements, so an application reading `/bindings/<name>/port`
 * gets a port. It does not decide which Secret is the binding one: the
 * dependent's `binding: true` does.
 */

/** The well-known entries; other keys are the plugin's own. */
export interface BindingEntries {
  /** The abstract classification of the binding, e.g. postgresql, redis. */
  readonly type: string
  /** Who provides it, e.g. halkyon, bitnami. */
  readonly provider?: string
  /** A DNS-resolvable host name or an IP address. */
  readonly host?: string
  /** A port number, 1 to 65535. */
  readonly port?: number | string
  /** A URI (RFC 3986), e.g. postgresql://user:password@host:5432/db. */
  readonly uri?: string
  readonly username?: string
  readonly password?: string
  readonly database?: string
  /** PEM-encoded X.509 certificates: the chain to trust. */
  readonly certificates?: string
  /** A PEM-encoded private key, for mTLS. */
  readonly "private-key"?: string
}

const HostName = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/
const Ipv6 = /^\[?[0-9A-Fa-f:.]+\]?$/
const EntryName = /^[a-z0-9\-.]{1,253}$/

/** What is wrong with a binding Secret's entries, each as a sentence; empty when they meet the spec. */
export const checkBindingEntries = (entries: Readonly<Record<string, string>>): ReadonlyArray<string> => {
  const problems: Array<string> = []
  if ((entries.type ?? "") === "") problems.push("type is missing: a projected binding must say what it is (e.g. postgresql)")
  const host = entries.host
  if (host !== undefined && !HostName.test(host) && !Ipv6.test(host)) {
    problems.push(`host ${JSON.stringify(host)} is neither a DNS name nor an IP address`)
  }
  const port = entries.port
  if (port !== undefined && !(/^\d{1,5}$/.test(port) && Number(port) >= 1 && Number(port) <= 65535)) {
    problems.push(`port ${JSON.stringify(port)} is not a port number (1-65535)`)
  }
  const uri = entries.uri
  if (uri !== undefined && !URL.canParse(uri)) problems.push("uri is not a valid URI")
  for (const pem of ["certificates", "private-key"] as const) {
    const value = entries[pem]
    if (value !== undefined && !value.includes("-----BEGIN ")) problems.push(`${pem} is not PEM-encoded`)
  }
  // In name order: both SDKs list them alike (go/sdk/testdata/binding.json).
  for (const name of Object.keys(entries).sort()) {
    if (!EntryName.test(name)) problems.push(`entry ${JSON.stringify(name)} is not a file name the spec allows ([a-z0-9-.], up to 253)`)
  }
  return problems
}

/** The well-known entries as a Secret's stringData; throws, naming each problem, when they break the spec (a plugin bug). */
export const bindingEntries = (entries: BindingEntries): Record<string, string> => {
  const data: Record<string, string> = {}
  for (const [key, value] of Object.entries(entries)) if (value !== undefined) data[key] = String(value)
  const problems = checkBindingEntries(data)
  if (problems.length > 0) throw new Error(`binding entries break the Service Binding spec: ${problems.join("; ")}`)
  return data
}
