/** Iterative graph algorithms over adjacency lists (no recursion: 10,000-step graphs must not overflow the stack). */

/** Adjacency by position: `preds[i]`, `succs[i]`. */
export interface Adjacency {
  readonly preds: ReadonlyArray<ReadonlyArray<number>>
  readonly succs: ReadonlyArray<ReadonlyArray<number>>
}

/** Kahn's topological sort: the order of the nodes it could place, and those it could not (on or after a cycle). */
export const topoOrder = (g: Adjacency): { readonly order: ReadonlyArray<number>; readonly remaining: ReadonlyArray<number> } => {
  const n = g.preds.length
  const indegree = new Int32Array(n)
  for (let i = 0; i < n; i++) indegree[i] = g.preds[i]?.length ?? 0
  const order: Array<number> = []
  for (let i = 0; i < n; i++) if (indegree[i] === 0) order.push(i)
  for (let h = 0; h < order.length; h++) {
    const v = order[h] ?? 0
    for (const s of g.succs[v] ?? []) {
      const d = (indegree[s] ?? 0) - 1
      indegree[s] = d
      if (d === 0) order.push(s)
    }
  }
  const remaining: Array<number> = []
  if (order.length < n) for (let i = 0; i < n; i++) if ((indegree[i] ?? 0) > 0) remaining.push(i)
  return { order, remaining }
}

/** The cycles among `nodes`: strongly connected components of more than one node, or with a self-loop (iterative Tarjan). */
export const cycles = (g: Adjacency, nodes: ReadonlyArray<number>): ReadonlyArray<ReadonlyArray<number>> => {
  const inSet = new Set(nodes)
  const index = new Map<number, number>()
  const low = new Map<number, number>()
  const onStack = new Set<number>()
  const stack: Array<number> = []
  const result: Array<Array<number>> = []
  let counter = 0
  for (const root of nodes) {
    if (index.has(root)) continue
    const work: Array<{ v: number; i: number }> = [{ v: root, i: 0 }]
    index.set(root, counter)
    low.set(root, counter++)
    stack.push(root)
    onStack.add(root)
    while (work.length > 0) {
      const frame = work[work.length - 1]
      if (frame === undefined) break
      const succ = g.succs[frame.v] ?? []
      if (frame.i < succ.length) {
        const w = succ[frame.i++] ?? 0
        if (!inSet.has(w)) continue
        if (!index.has(w)) {
          index.set(w, counter)
          low.set(w, counter++)
          stack.push(w)
          onStack.add(w)
          work.push({ v: w, i: 0 })
        } else if (onStack.has(w)) {
          low.set(frame.v, Math.min(low.get(frame.v) ?? 0, index.get(w) ?? 0))
        }
        continue
      }
      work.pop()
      const parent = work[work.length - 1]
      if (parent !== undefined) low.set(parent.v, Math.min(low.get(parent.v) ?? 0, low.get(frame.v) ?? 0))
      if (low.get(frame.v) === index.get(frame.v)) {
        const component: Array<number> = []
        for (;;) {
          const w = stack.pop()
          if (w === undefined) break
          onStack.delete(w)
          component.push(w)
          if (w === frame.v) break
        }
        const selfLoop = component.length === 1 && (g.succs[frame.v] ?? []).includes(frame.v)
        if (component.length > 1 || selfLoop) result.push(component.reverse())
      }
    }
  }
  return result
}

/** Nodes reachable from `sources` along `next` (sources included); `blocked` nodes are reached but not passed through. */
export const reach = (
  next: ReadonlyArray<ReadonlyArray<number>>,
  sources: Iterable<number>,
  blocked: (v: number) => boolean = () => false
): Uint8Array => {
  const seen = new Uint8Array(next.length)
  const queue: Array<number> = []
  for (const s of sources) {
    if (seen[s] === 1) continue
    seen[s] = 1
    queue.push(s)
  }
  const starts = queue.length
  for (let h = 0; h < queue.length; h++) {
    const v = queue[h] ?? 0
    if (h >= starts && blocked(v)) continue
    for (const w of next[v] ?? []) {
      if (seen[w] === 1) continue
      seen[w] = 1
      queue.push(w)
    }
  }
  return seen
}

/**
 * The redundant edges `p → v` of a DAG: those implied by a longer path (transitive reduction).
 * Reachability as bitsets, in topological order: O(E · n / 32) time, n² / 8 bytes of memory.
 */
export const redundantEdges = (g: Adjacency, order: ReadonlyArray<number>): ReadonlyArray<readonly [number, number]> => {
  const n = g.preds.length
  const words = (n + 31) >>> 5
  // ancestors[v]: every node with a path to v (bitset row v).
  const ancestors = new Uint32Array(words * n)
  const redundant: Array<readonly [number, number]> = []
  for (const v of order) {
    const row = v * words
    const preds = g.preds[v] ?? []
    for (const p of preds) {
      const prow = p * words
      for (let w = 0; w < words; w++) ancestors[row + w] = (ancestors[row + w] ?? 0) | (ancestors[prow + w] ?? 0)
    }
    if (preds.length > 1) {
      for (const p of preds) {
        // p → v is redundant when p is an ancestor of another predecessor q of v.
        for (const q of preds) {
          if (q === p) continue
          if ((((ancestors[q * words + (p >>> 5)] ?? 0) >>> (p & 31)) & 1) === 1) {
            redundant.push([p, v])
            break
          }
        }
      }
    }
    for (const p of preds) ancestors[row + (p >>> 5)] = (ancestors[row + (p >>> 5)] ?? 0) | (1 << (p & 31))
  }
  return redundant
}
