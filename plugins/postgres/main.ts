/** The postgres plugin's entry point: `npm run build:plugins` builds this file. */
import { serve } from "@halkyon/sdk"
import { postgres } from "./plugin.ts"

serve(postgres)
