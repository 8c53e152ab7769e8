/**
 * The errors of this folder's modules, each telling a user what went wrong and what to do.
 */
import { Schema } from "effect"

export class ClusterAccessError extends Schema.TaggedError<ClusterAccessError>()("ClusterAccessError", {
  detail: Schema.String
}) {
  override get message() {
    return `cannot reach a cluster: ${this.detail}`
  }
}

/** What the API server answered, when it was not a success. */
export class KubeApiError extends Schema.TaggedError<KubeApiError>()("KubeApiError", {
  /** HTTP status; 0 when the server could not be reached. */
  code: Schema.Number,
  /** The Status reason, e.g. NotFound, Conflict, Expired, Forbidden. */
  reason: Schema.String,
  detail: Schema.String,
  request: Schema.String
}) {
  override get message() {
    return this.code === 0
      ? `the API server could not be reached (${this.request}): ${this.detail}`
      : `${this.request} failed: ${this.detail} (${this.reason}, HTTP ${this.code})`
  }
  get notFound() {
    return this.code === 404
  }
  /** Refused to this identity (403) or not served (404): asking again changes nothing until RBAC or the cluster does. */
  get forbiddenOrNotServed() {
    return this.code === 403 || this.code === 404
  }
}
