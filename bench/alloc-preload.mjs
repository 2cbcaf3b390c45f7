// Loaded into the gateway's process with `--import` by bench/alloc.mjs: the first SIGUSR2 starts
// V8's sampling heap profiler (objects that GC took are kept in the profile unless
// ALLOC_SURVIVORS=1, which leaves out those a scavenge took: what is left outlived at least one),
// the second stops it and writes the profile's tree to $ALLOC_OUT.
import { renameSync, writeFileSync } from "node:fs"
import { Session } from "node:inspector"

const session = new Session()
session.connect()
let sampling = false
process.on("SIGUSR2", () => {
  if (!sampling) {
    sampling = true
    session.post("HeapProfiler.startSampling", {
      samplingInterval: 512,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: process.env.ALLOC_SURVIVORS !== "1"
    })
    return
  }
  sampling = false
  session.post("HeapProfiler.stopSampling", (error, result) => {
    // Written whole, then renamed: the bench reads it as soon as it is there.
    const out = process.env.ALLOC_OUT
    writeFileSync(`${out}.part`, JSON.stringify(error ? { error: String(error) } : { head: result.profile.head }))
    renameSync(`${out}.part`, out)
  })
})
