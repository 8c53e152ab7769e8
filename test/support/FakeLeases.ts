/**
 * client-node's Lease API (the three calls LeaderElection makes) over the
 * in-memory API server: answers as JSON over the wire would be (times as
 * strings), refusals as client-node's ApiException with the server's Status,
 * an unreachable server as a plain error.
 */
import { ApiException, type V1Lease } from "@kubernetes/client-node"
import { Cause, Effect, Exit } from "effect"
import type { KubeApiError } from "../../src/kube/Errors.ts"
import type { KubeObject } from "../../src/kube/KubeObject.ts"
import type { LeaseApi } from "../../src/operator/LeaderElection.ts"
import type { FakeKube } from "./FakeKube.ts"

/** What a request body becomes on the wire: V1MicroTime and Date as their JSON text. */
const wire = (body: unknown): KubeObject => JSON.parse(JSON.stringify(body)) as KubeObject

const answer = async (effect: Effect.Effect<KubeObject, KubeApiError>): Promise<V1Lease> => {
  const exit = await Effect.runPromiseExit(effect)
  if (Exit.isSuccess(exit)) return exit.value as V1Lease
  const error = Cause.squash(exit.cause) as KubeApiError
  if (error.code === 0) throw new Error(error.detail)
  const status = { kind: "Status", reason: error.reason, message: error.detail, code: error.code }
  throw new ApiException(error.code, error.message, JSON.stringify(status), {})
}

const LeaseType = { apiVersion: "coordination.k8s.io/v1", kind: "Lease" }

export const fakeLeaseApi = (kube: FakeKube): LeaseApi =>
  ({
    readNamespacedLease: ({ name, namespace }) => answer(kube.client.get({ ...LeaseType, namespace, name })),
    createNamespacedLease: ({ body }) => answer(kube.client.create(wire({ ...LeaseType, ...body }))),
    replaceNamespacedLease: ({ body }) => answer(kube.replace(wire({ ...LeaseType, ...body })))
  }) as LeaseApi
