/**
 * The sentences the SDK says to users and plugin authors. The Go SDK says the
 * same ones, byte for byte (go/sdk/messages.go); go/sdk/testdata/validity.json
 * holds cases both SDKs' tests check, so a change here must be made there too.
 * These are said after the handshake; what definePlugin says at start is in
 * DefinitionMessages.ts, so that nothing here loads before the handshake.
 */

const list = (items: ReadonlyArray<string>) => items.join(", ")

export const categoryNotServed = (category: string, plugin: string, serves: string) =>
  `category "${category}" is not served by plugin ${plugin} (it serves "${serves}")`
export const typeNotServed = (type: string, plugin: string, supported: ReadonlyArray<string>) =>
  `type "${type}" is not served by plugin ${plugin}; supported types: ${list(supported)}`
/** Also what the admission policy says (src/api/AdmissionPolicy.ts). */
export const versionNotSupported = (version: string, type: string, plugin: string, supported: ReadonlyArray<string>) =>
  `version "${version}" of ${type} is not supported by plugin ${plugin}; supported versions: ${list(supported)}`
export const parameterRequired = (name: string) => `parameter ${name} is required`
export const unknownDependent = (plugin: string, id: string, has: ReadonlyArray<string>) =>
  `plugin ${plugin} has no dependent "${id}"; it has: ${list(has)}`
export const dependentMissing = (kind: string, name: string) => `${kind} for ${name} does not exist yet`
export const noObservation = (id: string) => `no object nor error was sent for ${id}`
export const unreadableCapability = (reason: string) => `the Capability could not be read: ${reason}`
export const builtOtherKind = (id: string, apiVersion: string, kind: string, builtApiVersion: string, builtKind: string) =>
  `dependent ${id} is declared as ${apiVersion} ${kind} but built a ${builtApiVersion} ${builtKind}`
/** An author's function that failed, e.g. "building dependent service failed: …". */
export const failed = (what: string, reason: string) => `${what} failed: ${reason}`
