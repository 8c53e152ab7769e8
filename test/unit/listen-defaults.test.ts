import { expect, test } from "bun:test"
import { defaultListenAddress, inPod } from "../../src/config/ListenDefaults.ts"
import { parseAddress } from "../../src/operator/HttpEndpoints.ts"

test("outside a pod, probes and metrics listen on loopback only", () => {
  expect(inPod({})).toBe(false)
  expect(defaultListenAddress(8081, {})).toBe("127.0.0.1:8081")
  expect(parseAddress("metrics", defaultListenAddress(8080, { KUBERNETES_SERVICE_HOST: "" }))).toEqual({ host: "127.0.0.1", port: 8080 })
})

test("in a pod (KUBERNETES_SERVICE_HOST set), every interface, for the kubelet and Prometheus", () => {
  const pod = { KUBERNETES_SERVICE_HOST: "10.96.0.1" }
  expect(inPod(pod)).toBe(true)
  expect(defaultListenAddress(8081, pod)).toBe(":8081")
  expect(parseAddress("health", defaultListenAddress(8081, pod))).toEqual({ host: "", port: 8081 })
})
