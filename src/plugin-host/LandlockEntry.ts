/**
 * Imported first by main.ts: when this start of halkyon is the Landlock
 * helper (Landlock.ts), it confines itself and becomes the plugin here, before
 * any other module of halkyon is evaluated.
 */
import { LandlockExecKey, runLandlockExec } from "./Landlock.ts"

if (process.env[LandlockExecKey] !== undefined) runLandlockExec()
