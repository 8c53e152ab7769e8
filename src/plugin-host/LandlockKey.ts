/**
 * The variable that turns a start of halkyon into the confining helper
 * (Landlock.ts), in a module of its own: LandlockEntry.ts reads it at every
 * start, and loads Landlock.ts (with bun:ffi) only when it is set.
 */
export const LandlockExecKey = "HALKYON_LANDLOCK_EXEC"
