/**
 * Process metrics under the names Prometheus client libraries use (`process_*`, `nodejs_*`), so
 * that stock dashboards and alerts work: CPU, resident memory, heap, start time, event-loop delay.
 * Read when the server is scraped; they are families of their own, not Effect metrics.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from "node:perf_hooks"
import { Effect } from "effect"
import type { Scope } from "effect"
import type { Family } from "./Prometheus.js"

const startTimeSeconds = Math.round(Date.now() / 1000 - process.uptime())

const gauge = (name: string, help: string, value: number): Family => ({ name, help, type: "gauge", samples: [{ name, labels: [], value }] })
const counter = (name: string, help: string, value: number): Family => ({ name, help, type: "counter", samples: [{ name, labels: [], value }] })

/**
 * The event-loop delay monitor (sampling every 20 ms) for the life of the scope, and a reader
 * of every process family. The delay figures cover the time since the previous scrape.
 */
export const make: Effect.Effect<Effect.Effect<ReadonlyArray<Family>>, never, Scope.Scope> = Effect.map(
  Effect.acquireRelease(
    Effect.sync(() => {
      const h = monitorEventLoopDelay({ resolution: 20 })
      h.enable()
      return h
    }),
    (h) => Effect.sync(() => h.disable())
  ),
  (loop: IntervalHistogram) =>
    Effect.sync(() => {
      const cpu = process.cpuUsage()
      const mem = process.memoryUsage()
      // An empty histogram reports NaN (mean) and huge numbers (min): nothing was measured.
      const measured = loop.count > 0
      const lag = (ns: number) => (measured ? ns / 1e9 : 0)
      const families: Array<Family> = [
        counter("process_cpu_user_seconds_total", "User CPU time spent, in seconds.", cpu.user / 1e6),
        counter("process_cpu_system_seconds_total", "System CPU time spent, in seconds.", cpu.system / 1e6),
        counter("process_cpu_seconds_total", "User and system CPU time spent, in seconds.", (cpu.user + cpu.system) / 1e6),
        gauge("process_resident_memory_bytes", "Resident memory size, in bytes.", mem.rss),
        gauge("process_start_time_seconds", "Start time of the process since the Unix epoch, in seconds.", startTimeSeconds),
        gauge("nodejs_heap_size_total_bytes", "V8 heap size, in bytes.", mem.heapTotal),
        gauge("nodejs_heap_size_used_bytes", "V8 heap used, in bytes.", mem.heapUsed),
        gauge("nodejs_external_memory_bytes", "Memory of C++ objects bound to JavaScript objects, in bytes.", mem.external),
        gauge("nodejs_eventloop_lag_mean_seconds", "Mean event-loop delay since the last scrape, in seconds.", lag(loop.mean)),
        gauge("nodejs_eventloop_lag_p50_seconds", "Median event-loop delay since the last scrape, in seconds.", lag(loop.percentile(50))),
        gauge("nodejs_eventloop_lag_p99_seconds", "99th percentile of the event-loop delay since the last scrape, in seconds.", lag(loop.percentile(99))),
        gauge("nodejs_eventloop_lag_max_seconds", "Largest event-loop delay since the last scrape, in seconds.", lag(loop.max))
      ]
      loop.reset()
      return families
    })
)
