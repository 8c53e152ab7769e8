/**
 * What definePlugin says of a plugin declaration with mistakes, when the
 * plugin starts (before its handshake: so apart from Messages.ts, which only
 * the services loaded after it use). The Go SDK says the same, byte for byte
 * (go/sdk/messages.go).
 */

/** The problems of a plugin declaration, found when the plugin starts. */
export const invalidDefinition = (problems: ReadonlyArray<string>) => `invalid plugin definition: ${problems.join("; ")}`
export const nameEmpty = "name is empty"
export const categoryEmpty = "category is empty"
export const noTypes = "no types are declared"
export const noVersions = (type: string) => `type ${type} declares no versions`
export const badDefault = (type: string, version: string, versions: ReadonlyArray<string>) =>
  `type ${type}: default version ${version} is not one of ${versions.join(", ")}`
export const dependentIdTwice = (id: string) => `dependent id ${id} is used twice`
export const parameterTwice = (name: string) => `parameter ${name} is declared twice`
export const enumWithoutValues = (name: string) => `parameter ${name} is an enum without values`
export const boundsReversed = (name: string, minimum: number, maximum: number) =>
  `parameter ${name}: minimum ${minimum} is above maximum ${maximum}`
export const badPattern = (name: string, pattern: string) => `parameter ${name}: pattern ${pattern} is not a regular expression`
/**
 * A pattern JavaScript takes and RE2 (the API server's CEL) refuses or reads
 * otherwise. TypeScript only: the Go SDK compiles patterns with RE2 itself,
 * so it says badPattern for those RE2 refuses.
 */
export const patternNotRe2 = (name: string, pattern: string, what: string) =>
  `parameter ${name}: pattern ${pattern} uses ${what}, which RE2 does not take as JavaScript does; ` +
  "the API server checks patterns with RE2 (CEL's matches): write it without lookaround, backreferences or that escape"
export const defaultNotAllowed = (name: string, value: string, allowed: string) => `parameter ${name}: default "${value}" is not ${allowed}`
