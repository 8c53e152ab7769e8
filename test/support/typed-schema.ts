/**
 * The parameter schema CapabilityInfo publishes for the typed test plugin
 * (go/sdk/testdata/validity.json's "typed", served as the pgfix fixture):
 * every parameter, every field. Written out by hand, so that the unit test
 * (from Describe) and the e2e test (as the API server stores it) check the
 * same whole list rather than a field or two.
 */
export const TypedParameterSchema = [
  {
    name: "DB_PORT",
    required: false,
    secret: false,
    default: "5432",
    type: "integer",
    minimum: 1024,
    maximum: 65535,
    allowed: "an integer from 1024 to 65535"
  },
  { name: "TIER", required: false, secret: false, default: "dev", type: "enum", values: ["dev", "prod"], allowed: "one of dev, prod" },
  {
    name: "DB_NAME",
    required: false,
    secret: false,
    type: "string",
    pattern: "^[a-z][a-z0-9_]*$",
    allowed: "a string matching ^[a-z][a-z0-9_]*$"
  },
  { name: "DB_PASSWORD", required: false, secret: true, type: "string" },
  { name: "DEBUG", required: false, secret: false, type: "boolean", allowed: "true or false" },
  { name: "REPLICAS", required: false, secret: false, type: "integer", minimum: 1, allowed: "an integer of at least 1" },
  { name: "SHARDS", required: false, secret: false, type: "integer", maximum: 8, allowed: "an integer of at most 8" },
  { name: "COUNT", required: false, secret: false, type: "integer", allowed: "an integer" }
] as const
