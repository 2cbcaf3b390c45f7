/** Synthetic workflow definitions (deterministic), for benchmarks, load tests and property tests. */
import type * as Workflow from "./Workflow.js"

const kinds = ["transform", "ai_analysis", "classify", "process", "summarize", "validate"] as const

/** A tiny deterministic PRNG (mulberry32), so generated DAGs are the same on every run. */
const prng = (seed: number) => {
  let a = seed >>> 0
  return (): number => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const layered = (n: number, random: () => number, prefix: string): Array<Workflow.StepEncoded> => {
  const width = Math.max(1, Math.round(Math.sqrt(n)))
  const steps: Array<Workflow.StepEncoded> = []
  for (let i = 0; i < n; i++) {
    const layer = Math.floor(i / width)
    const type = i === 0 ? "intake" : i === n - 1 ? "output" : kinds[Math.floor(random() * kinds.length)] ?? "transform"
    const config: Record<string, unknown> = {}
    if (type === "ai_analysis" || type === "classify" || type === "summarize") config["model"] = random() < 0.5 ? "claude-3-haiku" : "claude-3-sonnet"
    if (type === "output") Object.assign(config, { destination: "s3", retention_days: 30 })
    const deps = new Set<string>()
    if (layer > 0) {
      const from = (layer - 1) * width
      const size = Math.min(width, n - from)
      const count = 1 + Math.floor(random() * 2)
      for (let k = 0; k < count; k++) deps.add(`${prefix}s${from + Math.floor(random() * size)}`)
    }
    steps.push({ id: `${prefix}s${i}`, type, config, depends_on: [...deps] })
  }
  return steps
}

/**
 * A `hierarchical_dag` definition of `n` executable steps in layers of about √n steps, each
 * step depending on one or two steps of the layer before; with `levels` > 1, a `workflow` step
 * holds the next level (the executable steps are split evenly between the levels).
 */
export const generate = (n: number, levels = 1, seed = 1): Workflow.DefinitionEncoded => {
  const random = prng(seed)
  const build = (count: number, level: number): Workflow.DefinitionEncoded => {
    const own = level >= levels ? count : Math.max(2, Math.floor(count / (levels - level + 1)))
    const steps = layered(own, random, `l${level}-`)
    if (level < levels) {
      const last = steps[steps.length - 1]
      steps.push({
        id: `l${level}-sub`,
        type: "workflow",
        depends_on: last?.id === undefined ? [] : [last.id],
        workflow: build(count - own, level + 1)
      })
    }
    return { name: `generated level ${level}`, type: "hierarchical_dag", steps }
  }
  return build(n, 1)
}
