/**
 * Every RPC halkyon speaks: go-plugin's own services and the capability
 * service. Host and SDK both use this table, so a path cannot differ.
 */
import { CapabilityPluginDefinition } from "../gen/halkyon/capability/v1/capability.ts"
import { HealthDefinition } from "../gen/grpc/health/v1/health.ts"
import { GRPCBrokerDefinition } from "../gen/plugin/grpc_broker.ts"
import { GRPCControllerDefinition } from "../gen/plugin/grpc_controller.ts"
import { GRPCStdioDefinition } from "../gen/plugin/grpc_stdio.ts"
import { method } from "./Rpc.ts"

export const HealthCheck = method(HealthDefinition, "check")
export const Shutdown = method(GRPCControllerDefinition, "shutdown")
export const StreamStdio = method(GRPCStdioDefinition, "streamStdio")
export const StartStream = method(GRPCBrokerDefinition, "startStream")

export const Describe = method(CapabilityPluginDefinition, "describe")
export const CheckValidity = method(CapabilityPluginDefinition, "checkValidity")
export const BuildDependents = method(CapabilityPluginDefinition, "buildDependents")
export const UpdateDependent = method(CapabilityPluginDefinition, "updateDependent")
export const EvaluateConditions = method(CapabilityPluginDefinition, "evaluateConditions")
