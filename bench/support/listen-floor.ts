/**
 * Bun's floor for a plugin's memory: a process that only listens on a unix
 * socket and says so, nothing loaded. With `http2` after the socket's path it
 * also makes a node:http2 server: what a plugin would pay to serve on
 * node:http2, as the SDK did until it got an HTTP/2 server of its own
 * (src/sdk/wire/Http2Session.ts), kept as the comparison. bench/plugins.ts
 * compiles it as the plugins are compiled and reads its memory beside theirs.
 */
const path = process.argv[2] ?? `/tmp/halkyon-floor-${process.pid}.sock`
const ready = async () => {
  if (process.argv[3] === "http2") (await import("node:http2")).createServer()
  Bun.listen({ unix: path, socket: { data() {} } })
  await Bun.write(Bun.stdout, "ready\n")
}
void ready()
setInterval(() => {}, 1 << 30)
