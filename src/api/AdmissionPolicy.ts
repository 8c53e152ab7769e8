/**
 * The admission policy of one served (category, type): a
 * ValidatingAdmissionPolicy and its binding (admissionregistration.k8s.io/v1)
 * whose CEL the API server runs on every create of a Capability of that
 * category and type (compared case-insensitively), and on every update that
 * changes its spec. Derived from the plugin's Describe, with the sentences of
 * ParameterRules.ts, so that `kubectl apply` refuses what the plugin's own
 * CheckValidity would. No webhook server is involved.
 *
 * It checks the version (listing the served ones), required parameters, each
 * given parameter's type and bounds, secret parameters given as a literal
 * `value`, and unknown names when the plugin refuses them. A parameter with
 * no type comes from a plugin built before typed parameters: any value is
 * allowed, a secret one given literally included, as before. An update that
 * leaves the spec alone (the operator adding its finalizer) is never checked,
 * so a Capability made before its plugin came stays deletable.
 *
 * Pure: no I/O. AdmissionPolicySync.ts applies what this returns.
 */
import { type ParameterInfo, type PluginDescription, ParameterType, type TypeInfo } from "../gen/halkyon/capability/v1/capability.ts"
import { Group as CapabilityGroup } from "./Capability.ts"
import { CapabilityResource } from "./Crds.ts"
import {
  allowedValues,
  IntegerPattern,
  invalidValue,
  type ParameterKind,
  type ParameterRule,
  secretGivenLiterally,
  unknownParameter
} from "./ParameterRules.ts"

export const AdmissionApiVersion = "admissionregistration.k8s.io/v1"
export const PolicyKind = "ValidatingAdmissionPolicy"
export const BindingKind = "ValidatingAdmissionPolicyBinding"
/** Their resource names, as RBAC rules name them. */
export const PolicyResource = "validatingadmissionpolicies"
export const BindingResource = "validatingadmissionpolicybindings"

const Kinds: Readonly<Record<ParameterType, ParameterKind | undefined>> = {
  [ParameterType.PARAMETER_TYPE_UNSPECIFIED]: undefined,
  [ParameterType.PARAMETER_TYPE_STRING]: "string",
  [ParameterType.PARAMETER_TYPE_INTEGER]: "integer",
  [ParameterType.PARAMETER_TYPE_BOOLEAN]: "boolean",
  [ParameterType.PARAMETER_TYPE_ENUM]: "enum",
  [ParameterType.UNRECOGNIZED]: undefined
}

/** The kind of a ParameterInfo's type, as the SDKs declare it; undefined for an old plugin's (any string). */
export const kindOf = (p: ParameterInfo): ParameterKind | undefined => Kinds[p.type]

/** A ParameterInfo (from Describe) as a rule. */
export const ruleOf = (p: ParameterInfo): ParameterRule => ({
  type: kindOf(p),
  values: p.allowedValues,
  pattern: p.pattern,
  minimum: p.minimum,
  maximum: p.maximum
})

/** A CEL string literal: JSON's escapes are all CEL escapes. */
export const celString = (s: string): string => JSON.stringify(s)
const celList = (items: ReadonlyArray<string>) => `[${items.map(celString).join(", ")}]`

/** The CEL test of a non-empty value `v`, by rule; undefined when any string is allowed. */
export const celValueCheck = (rule: ParameterRule, v: string): string | undefined => {
  switch (rule.type) {
    case "integer": {
      const bounds = [
        ...(rule.minimum === undefined ? [] : [`int(${v}) >= ${rule.minimum}`]),
        ...(rule.maximum === undefined ? [] : [`int(${v}) <= ${rule.maximum}`])
      ]
      return [`${v}.matches(${celString(IntegerPattern)})`, ...bounds].join(" && ")
    }
    case "boolean":
      return `${v} in ["true", "false"]`
    case "enum":
      return `${v} in ${celList(rule.values ?? [])}`
    default:
      return (rule.pattern ?? "") === "" ? undefined : `${v}.matches(${celString(rule.pattern ?? "")})`
  }
}

/** One validation of the policy: a CEL expression, and what is said when it is false. */
export interface Validation {
  readonly expression: string
  readonly message: string
  readonly messageExpression?: string
  readonly reason: "Invalid"
}

const Params = "object.spec.parameters"
/** Every given parameter named `name` passes `check` (on `p`). */
const eachNamed = (name: string, check: string) => `!has(${Params}) || ${Params}.all(p, p.name != ${celString(name)} || ${check})`
const given = "has(p.value) && p.value != \"\""

/** The validations of one type of a plugin, in the order they are checked. */
export const validations = (d: PluginDescription, t: TypeInfo): ReadonlyArray<Validation> => {
  const out: Array<Validation> = []
  const served = t.versions.join(", ")
  out.push({
    expression: `!has(object.spec.version) || object.spec.version == "" || object.spec.version in ${celList(t.versions)}`,
    message: `version of ${t.type} is not supported by plugin ${d.name}; supported versions: ${served}`,
    // The SDKs' sentence (src/sdk/Messages.ts versionNotSupported).
    messageExpression: `${celString("version \"")} + object.spec.version + ${
      celString(`" of ${t.type} is not supported by plugin ${d.name}; supported versions: ${served}`)
    }`,
    reason: "Invalid"
  })
  for (const p of d.parameters) {
    if (p.required && p.defaultValue === "") {
      out.push({
        expression: `has(${Params}) && ${Params}.exists(p, p.name == ${celString(p.name)} && (${given} || has(p.valueFrom)))`,
        // The SDKs' sentence (src/sdk/Messages.ts parameterRequired).
        message: `parameter ${p.name} is required`,
        reason: "Invalid"
      })
    }
  }
  for (const p of d.parameters) {
    const rule = ruleOf(p)
    const check = celValueCheck(rule, "p.value")
    const allowed = allowedValues(rule)
    if (check === undefined || allowed === undefined) continue
    out.push({
      expression: eachNamed(p.name, `!(${given}) || (${check})`),
      message: invalidValue(p.name, d.name, allowed),
      reason: "Invalid"
    })
  }
  for (const p of d.parameters) {
    // An old plugin's parameter (no type) took a literal secret before #17: it still may.
    if (!p.secret || kindOf(p) === undefined) continue
    out.push({ expression: eachNamed(p.name, `!(${given})`), message: secretGivenLiterally(p.name, d.name), reason: "Invalid" })
  }
  if (d.refuseUnknownParameters) {
    const names = d.parameters.map((p) => p.name)
    const [before = "", after = ""] = unknownParameter("\u0000", d.name, names).split("\u0000")
    out.push({
      expression: `!has(${Params}) || ${Params}.all(p, p.name in ${celList(names)})`,
      message: unknownParameter("a given parameter", d.name, names),
      messageExpression: `${celString(before)} + ${Params}.filter(p, !(p.name in ${celList(names)}))[0].name + ${celString(after)}`,
      reason: "Invalid"
    })
  }
  return out
}

/** The labels and name of the policy and binding of one (category, type). */
export interface PolicyIdentity {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  /** The one namespace the binding applies in; undefined, all. */
  readonly namespace: string | undefined
}

/** The policy name of a (category, type): like its CapabilityInfo's, prefixed so it reads as halkyon's. */
export const policyName = (category: string, type: string) => `halkyon-${category}-${type}`.toLowerCase()

const lowerEquals = (field: string, value: string) => `object.spec.${field}.lowerAscii() == ${celString(value.toLowerCase())}`

/** The ValidatingAdmissionPolicy of one type of a plugin. */
export const admissionPolicy = (d: PluginDescription, t: TypeInfo, id: PolicyIdentity) => ({
  apiVersion: AdmissionApiVersion,
  kind: PolicyKind,
  metadata: { name: id.name, labels: { ...id.labels }, annotations: { "halkyon.io/plugin": d.name } },
  spec: {
    failurePolicy: "Fail",
    matchConstraints: {
      resourceRules: [{
        apiGroups: [CapabilityGroup],
        apiVersions: ["*"],
        operations: ["CREATE", "UPDATE"],
        resources: [CapabilityResource.plural]
      }]
    },
    matchConditions: [
      { name: "category-and-type", expression: `${lowerEquals("category", d.category)} && ${lowerEquals("type", t.type)}` },
      // An update that leaves the spec alone (a finalizer, a label) is not the user's new intent.
      { name: "spec-changed", expression: "request.operation == \"CREATE\" || oldObject.spec != object.spec" }
    ],
    validations: validations(d, t).map((v) => ({ ...v }))
  }
})

/** Its binding: Deny, in the served namespace only when the operator serves one. */
export const admissionPolicyBinding = (id: PolicyIdentity) => ({
  apiVersion: AdmissionApiVersion,
  kind: BindingKind,
  metadata: { name: id.name, labels: { ...id.labels } },
  spec: {
    policyName: id.name,
    validationActions: ["Deny"],
    ...(id.namespace === undefined
      ? {}
      : { matchResources: { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": id.namespace } } } })
  }
})
