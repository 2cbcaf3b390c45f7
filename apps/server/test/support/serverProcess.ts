/**
 * The real server as a child process (`node apps/server/dist/bundle/main.js`), as `Shutdown.test.ts`
 * starts it: a temporary data directory with a `tidyllm.yaml`, the environment given (nothing
 * inherited but `PATH`), `PORT=0` and the URL read back from the "listening on" line. Stopped by
 * its PID only.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

const main = new URL("../../dist/bundle/main.js", import.meta.url).pathname

/** A started server. */
export interface ServerProcess {
  readonly child: ChildProcess
  readonly pid: number
  readonly url: string
  /** Its data directory (the PGlite database is in `pgdata/` when no DATABASE_URL is given). */
  readonly dataDir: string
  /** Everything it wrote to stdout and stderr so far. */
  readonly output: () => string
  /** Resolves with the exit code (null when killed by a signal) once it has exited. */
  readonly exited: Promise<number | null>
  /** Whether it is still running. */
  readonly running: () => boolean
  /** SIGTERM, then waits (up to `timeoutMs`, then SIGKILL) for the exit; the exit code. */
  readonly stop: (timeoutMs?: number) => Promise<number | null>
  /** SIGKILL at once (a crash); resolves once it has exited. */
  readonly kill: () => Promise<void>
  /** Kills it if it still runs and removes its data directory (for `finally`/`afterAll`). */
  readonly dispose: () => Promise<void>
}

export interface ServerOptions {
  /** The `tidyllm.yaml` written to the data directory. */
  readonly yaml?: string
  /** Environment on top of HOST, PORT, PATH, TIDYLLM_DATA_DIR, TIDYLLM_CACHE_DIR, TIDYLLM_CONFIG, LLM_DEFAULT_PROVIDER=mock. */
  readonly env?: Readonly<Record<string, string>>
  /** Extra arguments to main.js. */
  readonly args?: ReadonlyArray<string>
  /** How long start-up may take (default 45 s: several replicas may start at once on a small machine). */
  readonly startTimeoutMs?: number
}

/** Spawns one server and resolves once it listens. */
export const startServer = (options: ServerOptions = {}): Promise<ServerProcess> => {
  const dataDir = mkdtempSync(join(tmpdir(), "tidyllm-proc-"))
  const configPath = join(dataDir, "tidyllm.yaml")
  writeFileSync(configPath, options.yaml ?? "{}\n")
  const child = spawn(process.execPath, [main, ...(options.args ?? [])], {
    env: {
      PATH: process.env["PATH"] ?? "",
      HOST: "127.0.0.1",
      PORT: "0",
      TIDYLLM_DATA_DIR: dataDir,
      TIDYLLM_CACHE_DIR: join(dataDir, "cache"),
      TIDYLLM_CONFIG: configPath,
      TIDYLLM_LOG_FORMAT: "json",
      LLM_DEFAULT_PROVIDER: "mock",
      ...options.env
    },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let out = ""
  const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)))
  const running = () => child.exitCode === null && child.signalCode === null
  const kill = async () => {
    if (running() && child.pid !== undefined) process.kill(child.pid, "SIGKILL")
    await exited
  }
  const stop = async (timeoutMs = 20_000) => {
    if (running() && child.pid !== undefined) process.kill(child.pid, "SIGTERM")
    const timer = setTimeout(() => { if (running() && child.pid !== undefined) process.kill(child.pid, "SIGKILL") }, timeoutMs)
    const code = await exited
    clearTimeout(timer)
    return code
  }
  const dispose = async () => {
    await kill()
    rmSync(dataDir, { recursive: true, force: true })
  }
  return new Promise<ServerProcess>((resolve, reject) => {
    const timer = setTimeout(() => {
      void dispose()
      reject(new Error(`server did not start in ${options.startTimeoutMs ?? 45_000} ms:\n${out.slice(-3000)}`))
    }, options.startTimeoutMs ?? 45_000)
    let started = false
    const onData = (chunk: Buffer) => {
      out += chunk.toString("utf8")
      if (started) return
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)
      if (m !== null && child.pid !== undefined) {
        started = true
        clearTimeout(timer)
        resolve({ child, pid: child.pid, url: m[1]!, dataDir, output: () => out, exited, running, stop, kill, dispose })
      }
    }
    child.stdout.on("data", onData)
    child.stderr.on("data", onData)
    void exited.then((code) => {
      if (started) return
      clearTimeout(timer)
      rmSync(dataDir, { recursive: true, force: true })
      reject(new Error(`server exited (${code}) before listening:\n${out.slice(-3000)}`))
    })
  })
}

/** Starts several servers at once; if one fails, the others are disposed of. */
export const startServers = async (n: number, options: ServerOptions | ((i: number) => ServerOptions)): Promise<Array<ServerProcess>> => {
  const settled = await Promise.allSettled(Array.from({ length: n }, (_, i) => startServer(typeof options === "function" ? options(i) : options)))
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected")
  if (failed !== undefined) {
    await Promise.all(settled.map((s) => (s.status === "fulfilled" ? s.value.dispose() : Promise.resolve())))
    throw failed.reason
  }
  return settled.map((s) => (s as PromiseFulfilledResult<ServerProcess>).value)
}

/** Polls `check` every `everyMs` until it returns true or `timeoutMs` passes; whether it did. */
export const waitUntil = async (check: () => Promise<boolean>, timeoutMs: number, everyMs = 100): Promise<boolean> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      if (await check()) return true
    } catch {
      // not yet
    }
    if (Date.now() >= deadline) return false
    await new Promise((r) => setTimeout(r, everyMs))
  }
}
