/**
 * Loads Services.ts, after the handshake. From source and in a compiled
 * plugin this is a plain dynamic import.
 *
 * A plugin bundle (scripts/build-plugins.ts) replaces this module: there
 * Services.ts is bundled on its own and carried as a string, imported from a
 * Blob URL when this is called. JavaScript that is in the bundle is parsed
 * when the bundle loads, lazily loaded or not; a string is only scanned.
 * Carried as a string, effect's Schema, the generated code and the HTTP/2
 * server are off the way to the handshake line; they are parsed
 * after the handshake instead, so the host's first answer comes no later
 * than before (figures: docs/performance.md).
 */
export const loadServices = (): Promise<typeof import("./Services.ts")> => import("./Services.ts")
