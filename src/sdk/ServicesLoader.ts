/**
 * Loads Services.ts, after the handshake. From source and in a compiled
 * plugin this is a plain dynamic import.
 *
 * A plugin bundle (scripts/build-plugins.ts) replaces this module: there
 * Services.ts is bundled on its own and carried as a string, imported from a
 * Blob URL when this is called. JavaScript that is in the bundle is parsed
 * when the bundle loads, lazily loaded or not; a string is only scanned.
 * Measured from a Go parent on this project's 2-core machine, spawn to
 * handshake line: 17 ms for a bundle holding everything, 10.5 ms for one
 * carrying the post-handshake code as a string (a bundle that only prints:
 * 5.7 ms); effect's Schema was about 8 ms of the difference, the generated
 * code and the bridge into node:http2 the rest. That code is then parsed
 * after the handshake instead (~8 ms): the host's first answer comes no
 * later than before.
 */
export const loadServices = (): Promise<typeof import("./Services.ts")> => import("./Services.ts")
