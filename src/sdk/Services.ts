/**
 * What a plugin serves once its handshake is out: go-plugin's services
 * (health, controller, stdio, broker) and the capability service, on
 * GrpcServer over the connections of the listener Serve.ts opened.
 *
 * Everything from here on (the HTTP/2 server of wire/, the generated code,
 * effect's Schema) loads after the handshake, through ServicesLoader.ts;
 * nothing here is needed to listen or to announce. This module and what it
 * imports share no class or state with the code loaded before it but the
 * objects passed in, so that a plugin bundle can carry it as a separate
 * module (scripts/build-plugins.ts).
 */
import { HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health.ts"
import { HealthCheck, Shutdown, StartStream, StreamStdio } from "../protocol/Methods.ts"
import { registerCapabilityService } from "./CapabilityService.ts"
import type { ParameterCheck, PluginDefinition } from "./Plugin.ts"
import { GrpcServer } from "./wire/GrpcServer.ts"
import type { Listener } from "./wire/Listener.ts"

/** What serving gives back: a way to stop it. */
export interface Serving {
  /** Ends open streams with OK, closes the sessions and the listener; resolves once every connection has closed. */
  close(): Promise<void>
}

/** Registers every service and serves the listener's connections, those that waited first. */
export const serveServices = async (
  listener: Listener,
  plugin: PluginDefinition,
  stop: (why: string) => void,
  checkParameters: ParameterCheck
): Promise<Serving> => {
  const server = new GrpcServer()
    .unary(HealthCheck, (request) => ({
      status: request.service === "" || request.service === "plugin"
        ? HealthCheckResponse_ServingStatus.SERVING
        : HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN
    }))
    .unary(Shutdown, () => {
      // Answer first, then stop: the host waits for the reply.
      setTimeout(() => stop("Shutdown RPC"), 1)
      return {}
    })
    // Our logs go straight to stderr; the stdio stream is held open for hosts
    // that read it, as go-plugin hosts do.
    .stream(StreamStdio, () => {})
    .stream(StartStream, () => {})
  registerCapabilityService(server, plugin, checkParameters)
  await server.serve(listener)
  return server
}
