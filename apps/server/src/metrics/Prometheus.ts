/**
 * The Prometheus text exposition format, version 0.0.4, from Effect's metric registry.
 *
 * Every metric in the registry becomes a family: `# HELP` (the metric's description), `# TYPE`,
 * then one line per series. Counters end in `_total` (appended when the name lacks it);
 * histograms give cumulative `_bucket{le="…"}` lines ending with `le="+Inf"`, then `_sum` and
 * `_count`; summaries their quantiles, `_sum` and `_count`; a frequency is a counter with one
 * series per word (label `key`). Metric and label names are sanitised to the allowed characters,
 * label values and help text escaped. Two metrics that sanitise to one name with different types
 * cannot share a family: the later one is dropped (its name is reported by {@link fromSnapshot}).
 */
import { Option } from "effect"
import type { MetricPair } from "effect"
import { MetricKeyType, MetricState } from "effect"

/** The content type of the format. */
export const contentType = "text/plain; version=0.0.4; charset=utf-8"

/** A metric type as `# TYPE` names it. */
export type Type = "counter" | "gauge" | "histogram" | "summary" | "untyped"

/** One line: a sample name (the family name plus `_bucket`, `_sum`…), its labels and value. */
export interface Sample {
  readonly name: string
  readonly labels: ReadonlyArray<readonly [string, string]>
  readonly value: number | bigint
}

/** One metric family: `# HELP`, `# TYPE` and its samples. */
export interface Family {
  readonly name: string
  readonly help: string
  readonly type: Type
  readonly samples: Array<Sample>
}

/** A metric name with every character outside `[a-zA-Z0-9_:]` replaced by `_`, never starting with a digit. */
export const sanitizeName = (name: string): string => {
  const clean = name.replace(/[^a-zA-Z0-9_:]/g, "_")
  return clean === "" ? "_" : /^[0-9]/.test(clean) ? `_${clean}` : clean
}

/** A label name with every character outside `[a-zA-Z0-9_]` replaced by `_`; never starting with a digit or `__` (reserved). */
export const sanitizeLabelName = (name: string): string => {
  const clean = name.replace(/[^a-zA-Z0-9_]/g, "_").replace(/^__+/, "_")
  return clean === "" ? "_" : /^[0-9]/.test(clean) ? `_${clean}` : clean
}

/** A label value escaped for the format: backslash, double quote and line feed. */
export const escapeLabelValue = (value: string): string => value.replace(/\\/g, "\\\\").replace(/"/g, "\\\"").replace(/\n/g, "\\n")

/** Help text escaped for the format: backslash and line feed. */
export const escapeHelp = (help: string): string => help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

/** A sample value (or `le` bound) as the format writes it: `+Inf`, `-Inf`, `NaN` or a Go-parsable float. */
export const formatValue = (value: number | bigint): string => {
  if (typeof value === "bigint") return value.toString()
  if (Number.isNaN(value)) return "NaN"
  if (value === Number.POSITIVE_INFINITY) return "+Inf"
  if (value === Number.NEGATIVE_INFINITY) return "-Inf"
  return String(value)
}

/**
 * The labels of a key, names sanitised, the first of duplicate names kept, and `reserved` names
 * (`le` of a histogram, `quantile` of a summary) renamed `exported_…` as Prometheus itself does.
 */
const labelsOf = (pair: MetricPair.MetricPair.Untyped, reserved: string | undefined): Array<readonly [string, string]> => {
  const out: Array<readonly [string, string]> = []
  const seen = new Set<string>()
  for (const tag of pair.metricKey.tags) {
    let name = sanitizeLabelName(tag.key)
    if (name === reserved) name = `exported_${name}`
    if (seen.has(name)) continue
    seen.add(name)
    out.push([name, tag.value])
  }
  return out
}

/** The family a metric pair belongs to, and its samples. */
const toFamily = (pair: MetricPair.MetricPair.Untyped): { name: string; type: Type; samples: Array<Sample> } | undefined => {
  const key = pair.metricKey
  const state: unknown = pair.metricState
  const base = sanitizeName(key.name)
  if (MetricKeyType.isCounterKey(key.keyType) && MetricState.isCounterState(state)) {
    const name = base.endsWith("_total") ? base : `${base}_total`
    return { name, type: "counter", samples: [{ name, labels: labelsOf(pair, undefined), value: state.count }] }
  }
  if (MetricKeyType.isGaugeKey(key.keyType) && MetricState.isGaugeState(state)) {
    return { name: base, type: "gauge", samples: [{ name: base, labels: labelsOf(pair, undefined), value: state.value }] }
  }
  if (MetricKeyType.isHistogramKey(key.keyType) && MetricState.isHistogramState(state)) {
    const labels = labelsOf(pair, "le")
    const samples: Array<Sample> = []
    // Effect's buckets are cumulative already; the maximum guards the format's invariant anyway.
    let cumulative = 0
    let sawInf = false
    for (const [bound, count] of state.buckets) {
      cumulative = Math.max(cumulative, count)
      if (bound === Number.POSITIVE_INFINITY) sawInf = true
      samples.push({ name: `${base}_bucket`, labels: [...labels, ["le", formatValue(bound)]], value: bound === Number.POSITIVE_INFINITY ? state.count : cumulative })
    }
    if (!sawInf) samples.push({ name: `${base}_bucket`, labels: [...labels, ["le", "+Inf"]], value: state.count })
    samples.push({ name: `${base}_sum`, labels, value: state.sum }, { name: `${base}_count`, labels, value: state.count })
    return { name: base, type: "histogram", samples }
  }
  if (MetricKeyType.isSummaryKey(key.keyType) && MetricState.isSummaryState(state)) {
    const labels = labelsOf(pair, "quantile")
    const samples: Array<Sample> = []
    for (const [q, value] of state.quantiles) {
      if (Option.isSome(value)) samples.push({ name: base, labels: [...labels, ["quantile", formatValue(q)]], value: value.value })
    }
    samples.push({ name: `${base}_sum`, labels, value: state.sum }, { name: `${base}_count`, labels, value: state.count })
    return { name: base, type: "summary", samples }
  }
  if (MetricKeyType.isFrequencyKey(key.keyType) && MetricState.isFrequencyState(state)) {
    const name = base.endsWith("_total") ? base : `${base}_total`
    const labels = labelsOf(pair, "key")
    const samples: Array<Sample> = []
    for (const [word, count] of state.occurrences) samples.push({ name, labels: [...labels, ["key", word]], value: count })
    return { name, type: "counter", samples }
  }
  return undefined
}

/**
 * The families of a registry snapshot (`Metric.unsafeSnapshot()`), and the names of metrics
 * dropped: one whose name clashes with a metric of another type, or whose series repeats one
 * already taken (the same name and labels under another description).
 */
export const fromSnapshot = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): { families: Array<Family>; dropped: Array<string> } => {
  const byName = new Map<string, { family: Family; series: Set<string> }>()
  const dropped: Array<string> = []
  for (const pair of pairs) {
    const f = toFamily(pair)
    if (f === undefined) continue
    const help = Option.getOrElse(pair.metricKey.description, () => "")
    const series = renderLabels(labelsOf(pair, undefined))
    const existing = byName.get(f.name)
    if (existing === undefined) {
      byName.set(f.name, { family: { name: f.name, help, type: f.type, samples: f.samples }, series: new Set([series]) })
    } else if (existing.family.type === f.type && !existing.series.has(series)) {
      existing.family.samples.push(...f.samples)
      existing.series.add(series)
      if (existing.family.help === "" && help !== "") existing.family = { ...existing.family, help }
    } else {
      dropped.push(pair.metricKey.name)
    }
  }
  return { families: [...byName.values()].map((e) => e.family), dropped }
}

const renderLabels = (labels: ReadonlyArray<readonly [string, string]>): string =>
  labels.length === 0 ? "" : `{${labels.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(",")}}`

/**
 * The exposition text of `families`, sorted by name; within a family, series are sorted by their
 * labels (a histogram's lines stay together, buckets in order), so that scrapes diff cleanly.
 */
export const render = (families: ReadonlyArray<Family>): string => {
  const lines: Array<string> = []
  for (const f of [...families].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (f.samples.length === 0) continue
    if (f.help !== "") lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`)
    lines.push(`# TYPE ${f.name} ${f.type}`)
    // Group lines by series (labels without `le`/`quantile`), keeping each series' own order.
    const series = new Map<string, Array<string>>()
    for (const s of f.samples) {
      const id = renderLabels(s.labels.filter(([k]) => !(k === "le" && f.type === "histogram") && !(k === "quantile" && f.type === "summary")))
      const list = series.get(id) ?? []
      list.push(`${s.name}${renderLabels(s.labels)} ${formatValue(s.value)}`)
      series.set(id, list)
    }
    for (const id of [...series.keys()].sort()) lines.push(...(series.get(id) ?? []))
  }
  return lines.length === 0 ? "" : `${lines.join("\n")}\n`
}
