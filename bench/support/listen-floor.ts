/**
 * Bun's floor for a plugin's memory: a process that only listens on a unix
 * socket and says so, nothing loaded. With `http2` after the socket's path it
 * also makes a node:http2 server, as the SDK does once its handshake is out:
 * the step between the floor and a plugin that this runtime cannot avoid.
 * bench/plugins.ts compiles it as the plugins are compiled and reads its
 * memory beside theirs.
 */
const path = process.argv[2] ?? `/tmp/halkyon-floor-${process.pid}.sock`
const ready = async () => {
  if (process.argv[3] === "http2") (await import("node:http2")).createServer()
  Bun.listen({ unix: path, socket: { data() {} } })
  await Bun.write(Bun.stdout, "ready\n")
}
void ready()
setInterval(() => {}, 1 << 30)
