/**
 * The errors of this folder's modules, each telling a user what went wrong and what to do.
 */
import { Schema } from "effect"

export type Endpoint = "health" | "metrics"

/** An endpoint as a user knows it. */
export const describeEndpoint = (endpoint: Endpoint) => endpoint === "health" ? "health probes" : "metrics"

export class HttpAddressInvalid extends Schema.TaggedError<HttpAddressInvalid>()("HttpAddressInvalid", {
  endpoint: Schema.Literals(["health", "metrics"]),
  address: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `invalid address for ${describeEndpoint(this.endpoint)}: ${
      JSON.stringify(this.address)
    }: ${this.detail}; use the form ":8081", "127.0.0.1:8081" or "[::1]:8081", or "0" to disable`
  }
}

export class HttpListenFailed extends Schema.TaggedError<HttpListenFailed>()("HttpListenFailed", {
  endpoint: Schema.Literals(["health", "metrics"]),
  address: Schema.String,
  /** The system error code, e.g. EADDRINUSE. */
  code: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    const why = this.code === "EADDRINUSE"
      ? "the port is already in use (is another operator or program listening there?)"
      : this.code === "EACCES"
      ? "permission denied (ports below 1024 need privileges)"
      : this.code === "EADDRNOTAVAIL"
      ? "the address is not one of this machine's"
      : this.detail
    return `cannot serve ${
      describeEndpoint(this.endpoint)
    } on ${this.address}: ${why} (${this.code}); choose another address, or "0" to disable`
  }
}

/** A Lease request the API server refused or never answered; the loop retries it next period. */
export class LeaseApiError extends Schema.TaggedError<LeaseApiError>()("LeaseApiError", {
  /** namespace/name */
  lease: Schema.String,
  /** "acquire or renew" when a whole round ran out of time. */
  operation: Schema.Literals(["read", "create", "update", "release", "acquire or renew"]),
  /** HTTP status; 0 when the server could not be reached or did not answer in time. */
  code: Schema.Number,
  /** The Status reason (NotFound, Conflict…), or Unreachable, Timeout. */
  reason: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return this.code === 0
      ? `${this.operation} of lease ${this.lease} failed: the API server ${
        this.reason === "Timeout" ? "did not answer in time" : "could not be reached"
      }: ${this.detail}`
      : `${this.operation} of lease ${this.lease} failed: ${this.detail} (${this.reason}, HTTP ${this.code})`
  }
}

/** Durations that cannot give safe leader election, or a missing name. */
export class LeaderElectionInvalidOptions extends Schema.TaggedError<LeaderElectionInvalidOptions>()("LeaderElectionInvalidOptions", {
  detail: Schema.String
}) {
  override get message() {
    return `invalid leader election settings: ${this.detail}`
  }
}

export class LeadershipLost extends Schema.TaggedError<LeadershipLost>()("LeadershipLost", { lease: Schema.String }) {
  override get message() {
    return `lost the leadership of lease ${this.lease}: exiting, so that this replica restarts as a candidate while another reconciles`
  }
}
