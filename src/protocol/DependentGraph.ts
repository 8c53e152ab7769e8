/**
 * DependentGraph: the order of a plugin's dependents, from what Describe
 * declares (DependentInfo.depends_on). Pure, so the registry (refusing a
 * plugin at load), the reconciler (waves to apply, to prune, to delete) and
 * the SDK (refusing a definition at start) share one reading of it.
 *
 * When no dependent declares depends_on, each depends on the one declared
 * before it: the list order that plugins written before the graph relied on.
 *
 * It does not decide readiness or write anything (the Reconciler does).
 */

/** What the graph needs of a dependent's declaration (DependentInfo has it). */
export interface GraphNode {
  readonly id: string
  readonly dependsOn: ReadonlyArray<string>
}

/** Whether the plugin declares a graph at all (else the list order is the graph). */
export const declaresGraph = (nodes: ReadonlyArray<GraphNode>): boolean => nodes.some((n) => n.dependsOn.length > 0)

/** Each id's dependencies: declared, or the previous one in the list when the plugin declares none. */
export const dependencies = (nodes: ReadonlyArray<GraphNode>): ReadonlyMap<string, ReadonlyArray<string>> => {
  const explicit = declaresGraph(nodes)
  return new Map(
    nodes.map((n, i) => [n.id, explicit ? [...new Set(n.dependsOn)] : i === 0 || nodes[i - 1]!.id === n.id ? [] : [nodes[i - 1]!.id]])
  )
}

/**
 * Why the graph cannot be ordered, as a sentence naming the ids (an unknown
 * id, or a cycle such as "a -> b -> a"), or undefined when it can.
 */
export const graphProblem = (nodes: ReadonlyArray<GraphNode>): string | undefined => {
  const ids = new Set(nodes.map((n) => n.id))
  for (const n of nodes) {
    for (const d of n.dependsOn) {
      if (!ids.has(d)) return `dependent ${n.id} depends on ${d}, which is not declared (declared: ${[...ids].join(", ")})`
    }
  }
  const deps = dependencies(nodes)
  // Depth-first search; a node met again while on the path closes a cycle.
  const state = new Map<string, "open" | "done">()
  const path: Array<string> = []
  const visit = (id: string): ReadonlyArray<string> | undefined => {
    if (state.get(id) === "done") return undefined
    if (state.get(id) === "open") return [...path.slice(path.indexOf(id)), id]
    state.set(id, "open")
    path.push(id)
    for (const d of deps.get(id) ?? []) {
      const cycle = visit(d)
      if (cycle !== undefined) return cycle
    }
    path.pop()
    state.set(id, "done")
    return undefined
  }
  for (const n of nodes) {
    const cycle = visit(n.id)
    // Found walking dependencies: reversed, it reads in apply order.
    if (cycle !== undefined) return `the dependents form a cycle: ${[...cycle].reverse().join(" -> ")}`
  }
  return undefined
}

/**
 * Each id's level: 0 with no dependency, else one more than its deepest
 * dependency's. Levels come from the whole declared graph, so a dependent
 * left out of a reconcile does not let those after it move up.
 * The graph must be free of problems (graphProblem).
 */
export const levels = (nodes: ReadonlyArray<GraphNode>): ReadonlyMap<string, number> => {
  const deps = dependencies(nodes)
  const level = new Map<string, number>()
  const of = (id: string): number => {
    const known = level.get(id)
    if (known !== undefined) return known
    level.set(id, 0)
    const l = Math.max(-1, ...(deps.get(id) ?? []).map(of)) + 1
    level.set(id, l)
    return l
  }
  for (const n of nodes) of(n.id)
  return level
}

/**
 * The ids in waves to apply in order: a wave's members depend only on
 * earlier waves', so they may be applied concurrently. Ids the graph does not
 * know come last, in the order given.
 */
export const waves = (ids: ReadonlyArray<string>, nodes: ReadonlyArray<GraphNode>): ReadonlyArray<ReadonlyArray<string>> => {
  const level = levels(nodes)
  const last = Math.max(-1, ...level.values()) + 1
  const grouped = new Map<number, Array<string>>()
  for (const id of ids) {
    const l = level.get(id) ?? last
    const wave = grouped.get(l)
    if (wave === undefined) grouped.set(l, [id])
    else wave.push(id)
  }
  return [...grouped.entries()].sort(([a], [b]) => a - b).map(([, wave]) => wave)
}
