/**
 * Imported first by main.ts: when this start of halkyon is the Landlock
 * helper (Landlock.ts), it confines itself and becomes the plugin here, before
 * main.ts runs anything. Landlock.ts (and bun:ffi) is loaded only then.
 */
import { LandlockExecKey } from "./LandlockKey.ts"

if (process.env[LandlockExecKey] !== undefined) (await import("./Landlock.ts")).runLandlockExec()
