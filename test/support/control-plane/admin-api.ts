/**
 * A request to the local control plane's API server as its admin (the
 * client certificate the plane made): what the fake kubelet and the tests'
 * `cluster.api` send. A fresh connection each time, so that a restarted API
 * server is reached again at once.
 */

/** Where the API server is and the admin's credentials (a ControlPlane has them). */
export interface ApiAccess {
  /** https://127.0.0.1:<port> */
  readonly server: string
  readonly caCertPem: string
  readonly adminCertPem: string
  readonly adminKeyPem: string
}

export interface ApiResponse {
  readonly status: number
  /** The answer's JSON; an answer that is not JSON comes as `{ message: <its text> }`. */
  readonly body: Record<string, unknown>
}

export const adminRequest = async (
  access: ApiAccess,
  method: string,
  path: string,
  body?: unknown,
  contentType = "application/json"
): Promise<ApiResponse> => {
  const response = await fetch(`${access.server}${path}`, {
    method,
    headers: { "content-type": contentType, accept: "application/json" },
    body: body === undefined ? null : JSON.stringify(body),
    tls: { ca: access.caCertPem, cert: access.adminCertPem, key: access.adminKeyPem },
    keepalive: false
  })
  const text = await response.text()
  let parsed: Record<string, unknown>
  try {
    parsed = text === "" ? {} : (JSON.parse(text) as Record<string, unknown>)
  } catch {
    parsed = { message: text }
  }
  return { status: response.status, body: parsed }
}
