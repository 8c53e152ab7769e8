/**
 * The SDK's check of a binding Secret's well-known entries against the
 * Service Binding spec's requirements, by table.
 */
import { describe, expect, test } from "bun:test"
import { bindingEntries, checkBindingEntries } from "../../src/sdk/Binding.ts"

describe("checkBindingEntries", () => {
  const cases: ReadonlyArray<[string, Record<string, string>, ReadonlyArray<string>]> = [
    ["postgres's entries", {
      type: "postgresql",
      provider: "halkyon",
      host: "db.shop.svc",
      port: "5432",
      uri: "postgresql://a:b@db.shop.svc:5432/x",
      username: "a",
      password: "b",
      database: "x"
    }, []],
    ["an IP address as host", { type: "redis", host: "10.0.0.7" }, []],
    ["no type", { host: "db" }, ["type is missing: a projected binding must say what it is (e.g. postgresql)"]],
    ["a host with a space", { type: "t", host: "db host" }, ["host \"db host\" is neither a DNS name nor an IP address"]],
    ["port 0", { type: "t", port: "0" }, ["port \"0\" is not a port number (1-65535)"]],
    ["port 70000", { type: "t", port: "70000" }, ["port \"70000\" is not a port number (1-65535)"]],
    ["a port name", { type: "t", port: "http" }, ["port \"http\" is not a port number (1-65535)"]],
    ["a redis uri", { type: "redis", uri: "redis://:pw@cache:6379/0" }, []],
    ["a uri that is not one", { type: "t", uri: "no uri here" }, ["uri is not a valid URI"]],
    ["certificates that are not PEM", { type: "t", certificates: "abc" }, ["certificates is not PEM-encoded"]],
    ["an entry name the spec does not allow", { type: "t", DB_HOST: "db" }, [
      "entry \"DB_HOST\" is not a file name the spec allows ([a-z0-9-.], up to 253)"
    ]]
  ]
  for (const [name, entries, problems] of cases) test(name, () => expect(checkBindingEntries(entries)).toEqual(problems))
})

describe("bindingEntries", () => {
  test("gives stringData, numbers as strings, absent entries left out", () => {
    expect(bindingEntries({ type: "redis", host: "cache", port: 6379, password: undefined })).toEqual({
      type: "redis",
      host: "cache",
      port: "6379"
    })
  })

  test("throws on entries that break the spec, naming each problem", () => {
    expect(() => bindingEntries({ type: "", port: 0 })).toThrow(/type is missing.*port "0"/)
  })
})
