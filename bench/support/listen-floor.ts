/**
 * Bun's floor for a plugin's memory: a process that only listens on a unix
 * socket and says so, nothing loaded. bench/plugins.ts compiles it as the
 * plugins are compiled and reads its RSS beside theirs.
 */
const path = process.argv[2] ?? `/tmp/halkyon-floor-${process.pid}.sock`
Bun.listen({ unix: path, socket: { data() {} } })
void Bun.write(Bun.stdout, "ready\n")
setInterval(() => {}, 1 << 30)
