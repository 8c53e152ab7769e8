/**
 * Proto v1 stays compatible both ways across #17 (typed parameters): a
 * Describe answer from a plugin built before it, and an old host reading a
 * new plugin's answer. The old shape is written out here by field number with
 * @bufbuild/protobuf's wire codec, as the generated code of the proto before
 * 1f978a5 had it (PluginDescription fields 1-5, ParameterInfo fields 1-5),
 * so the test does not depend on today's generated code for the old side.
 */
import { describe, expect, test } from "bun:test"
import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire"
import { admissionPolicy, celValueCheck, kindOf, ruleOf, validations } from "../../src/api/AdmissionPolicy.ts"
import { allowedValues } from "../../src/api/ParameterRules.ts"
import { DependentInfo, ParameterInfo, ParameterType, PluginDescription, TypeInfo } from "../../src/gen/halkyon/capability/v1/capability.ts"

/** ParameterInfo before #17. */
interface OldParameterInfo {
  readonly name: string
  readonly description: string
  readonly required: boolean
  readonly secret: boolean
  readonly defaultValue: string
}

/** PluginDescription before #17: TypeInfo and DependentInfo kept as they were then (unchanged by #17). */
interface OldPluginDescription {
  readonly name: string
  readonly category: string
  readonly types: ReadonlyArray<TypeInfo>
  readonly parameters: ReadonlyArray<OldParameterInfo>
  readonly dependents: ReadonlyArray<DependentInfo>
}

const encodeOldParameter = (p: OldParameterInfo, w: BinaryWriter): BinaryWriter => {
  if (p.name !== "") w.uint32(10).string(p.name)
  if (p.description !== "") w.uint32(18).string(p.description)
  if (p.required) w.uint32(24).bool(p.required)
  if (p.secret) w.uint32(32).bool(p.secret)
  if (p.defaultValue !== "") w.uint32(42).string(p.defaultValue)
  return w
}

const encodeOld = (d: OldPluginDescription): Uint8Array => {
  const w = new BinaryWriter()
  if (d.name !== "") w.uint32(10).string(d.name)
  if (d.category !== "") w.uint32(18).string(d.category)
  for (const t of d.types) TypeInfo.encode(t, w.uint32(26).fork()).join()
  for (const p of d.parameters) encodeOldParameter(p, w.uint32(34).fork()).join()
  for (const x of d.dependents) DependentInfo.encode(x, w.uint32(42).fork()).join()
  return w.finish()
}

/** As an old decoder reads: the fields it knows, every other one skipped (proto3's rule for unknown fields). */
const decodeOldParameter = (bytes: Uint8Array): OldParameterInfo => {
  const r = new BinaryReader(bytes)
  const p = { name: "", description: "", required: false, secret: false, defaultValue: "" }
  while (r.pos < r.len) {
    const [field, wireType] = r.tag()
    if (field === 1) p.name = r.string()
    else if (field === 2) p.description = r.string()
    else if (field === 3) p.required = r.bool()
    else if (field === 4) p.secret = r.bool()
    else if (field === 5) p.defaultValue = r.string()
    else r.skip(wireType)
  }
  return p
}

const decodeOld = (bytes: Uint8Array): OldPluginDescription & { readonly skipped: ReadonlyArray<number> } => {
  const r = new BinaryReader(bytes)
  const d = {
    name: "",
    category: "",
    types: [] as Array<TypeInfo>,
    parameters: [] as Array<OldParameterInfo>,
    dependents: [] as Array<DependentInfo>,
    skipped: [] as Array<number>
  }
  while (r.pos < r.len) {
    const [field, wireType] = r.tag()
    if (field === 1) d.name = r.string()
    else if (field === 2) d.category = r.string()
    else if (field === 3) d.types.push(TypeInfo.decode(r.bytes()))
    else if (field === 4) d.parameters.push(decodeOldParameter(r.bytes()))
    else if (field === 5) d.dependents.push(DependentInfo.decode(r.bytes()))
    else {
      d.skipped.push(field)
      r.skip(wireType)
    }
  }
  return d
}

/** A message with the given fields and every other one at its default (what decoding no bytes gives). */
const dependentInfo = (fields: Partial<DependentInfo>): DependentInfo => ({ ...DependentInfo.decode(new Uint8Array()), ...fields })
const parameterInfo = (fields: Partial<ParameterInfo>): ParameterInfo => ({ ...ParameterInfo.decode(new Uint8Array()), ...fields })

const postgresType: TypeInfo = { type: "postgres", versions: ["16", "17"], defaultVersion: "17" }
const configSecret = dependentInfo({ id: "config-secret", apiVersion: "v1", kind: "Secret", watched: true })

const old: OldPluginDescription = {
  name: "postgres",
  category: "database",
  types: [postgresType],
  parameters: [
    { name: "DB_PORT", description: "the port", required: false, secret: false, defaultValue: "5432" },
    { name: "DB_NAME", description: "", required: true, secret: false, defaultValue: "" },
    { name: "DB_PASSWORD", description: "", required: false, secret: true, defaultValue: "" }
  ],
  dependents: [configSecret]
}

describe("an old plugin's Describe, read by this host", () => {
  const decoded = PluginDescription.decode(encodeOld(old))

  test("the old fields arrive; the new ones are their absent values: no type, no rule, unknown names accepted", () => {
    expect(decoded.name).toBe("postgres")
    expect(decoded.types).toEqual([postgresType])
    expect(decoded.dependents).toEqual([configSecret])
    expect(decoded.refuseUnknownParameters).toBe(false)
    expect(decoded.parameters.map((p) => [p.name, p.description, p.required, p.secret, p.defaultValue])).toEqual([
      ["DB_PORT", "the port", false, false, "5432"],
      ["DB_NAME", "", true, false, ""],
      ["DB_PASSWORD", "", false, true, ""]
    ])
    for (const p of decoded.parameters) {
      expect(p.type).toBe(ParameterType.PARAMETER_TYPE_UNSPECIFIED)
      expect(kindOf(p)).toBeUndefined()
      expect(p.allowedValues).toEqual([])
      expect(p.pattern).toBe("")
      expect(p.minimum).toBeUndefined()
      expect(p.maximum).toBeUndefined()
      // Any string: no CEL check of its value, nothing said about what is allowed.
      expect(celValueCheck(ruleOf(p), "p.value")).toBeUndefined()
      expect(allowedValues(ruleOf(p))).toBeUndefined()
    }
  })

  test("its admission policy checks the version and the required parameter only, and accepts any value", () => {
    const checks = validations(decoded, postgresType)
    expect(checks.map((v) => v.message)).toEqual([
      "version of postgres is not supported by plugin postgres; supported versions: 16, 17",
      "parameter DB_NAME is required"
    ])
    // The required check asks for the parameter to be given (a value or a reference), whatever the value.
    expect(checks[1]?.expression).toBe(
      "has(object.spec.parameters) && object.spec.parameters.exists(p, p.name == \"DB_NAME\" && (has(p.value) && p.value != \"\" || has(p.valueFrom)))"
    )
    // No check reads a value beyond "given", and none names parameters other than the required one:
    // DB_PORT=abc, an unknown FOO and a literal DB_PASSWORD all pass.
    const expressions = admissionPolicy(decoded, postgresType, { name: "halkyon-database-postgres", labels: {}, namespace: undefined })
      .spec.validations.map((v) => v.expression).join("\n")
    for (const absent of ["matches(", "int(", "DB_PORT", "DB_PASSWORD", "p.name in"]) expect(expressions).not.toContain(absent)
  })
})

describe("a new plugin's Describe, read by an old host", () => {
  const current: PluginDescription = {
    name: "postgres",
    category: "database",
    types: [postgresType],
    parameters: [
      parameterInfo({
        name: "DB_PORT",
        description: "the port",
        defaultValue: "5432",
        type: ParameterType.PARAMETER_TYPE_INTEGER,
        minimum: 1024,
        maximum: 65535
      }),
      parameterInfo({ name: "TIER", type: ParameterType.PARAMETER_TYPE_ENUM, allowedValues: ["dev", "prod"], required: true }),
      parameterInfo({ name: "DB_NAME", pattern: "^[a-z][a-z0-9_]*$" }),
      parameterInfo({ name: "DB_PASSWORD", secret: true })
    ],
    dependents: [configSecret],
    refuseUnknownParameters: true
  }
  const read = decodeOld(PluginDescription.encode(current).finish())

  test("the old fields survive, the new ones are skipped as unknown", () => {
    expect(read.name).toBe("postgres")
    expect(read.category).toBe("database")
    expect(read.types).toEqual([postgresType])
    expect(read.dependents).toEqual([configSecret])
    expect(read.parameters).toEqual([
      { name: "DB_PORT", description: "the port", required: false, secret: false, defaultValue: "5432" },
      { name: "TIER", description: "", required: true, secret: false, defaultValue: "" },
      { name: "DB_NAME", description: "", required: false, secret: false, defaultValue: "" },
      { name: "DB_PASSWORD", description: "", required: false, secret: true, defaultValue: "" }
    ])
    // refuse_unknown_parameters (6) is what the old reader skipped at the top level.
    expect(read.skipped).toEqual([6])
  })

  test("read back by this host, nothing is lost in between", () => {
    expect(PluginDescription.decode(PluginDescription.encode(current).finish())).toEqual(current)
  })
})

test("the old shape here is the wire the old generated code wrote: same bytes as today's encoder given only old fields", () => {
  const asToday = PluginDescription.encode({
    ...PluginDescription.decode(new Uint8Array()),
    ...old,
    types: [...old.types],
    dependents: [...old.dependents],
    parameters: old.parameters.map((p) => parameterInfo(p))
  }).finish()
  expect(Buffer.from(encodeOld(old)).equals(Buffer.from(asToday))).toBe(true)
})
