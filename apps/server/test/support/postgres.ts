/**
 * Postgres for the process-level suites: a scratch database on the shared server
 * (`DATABASE_URL`), dropped at the end; a tiny query helper over `@tidyllm/store-pg`'s pool; and a
 * private Postgres instance (initdb in a temporary directory, its own port and socket directory)
 * that a test may stop and start again, as `.ci/run` starts one (as root, through
 * `runuser -u postgres --`, since Postgres refuses to run as root).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { execFile, execFileSync } from "node:child_process"
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { randomBytes } from "node:crypto"
import { Effect, ManagedRuntime, Redacted } from "effect"
import { PgClient } from "@tidyllm/store-pg"
import { freePort } from "./redis.js"

/** The shared server the `*.pg.test.ts` suites use. */
export const adminUrl = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres"

/** A small pool on one database, for the assertions. */
export interface Db {
  readonly query: <T extends object = Record<string, unknown>>(text: string, params?: ReadonlyArray<unknown>) => Promise<ReadonlyArray<T>>
  readonly close: () => Promise<void>
}

/** Opens a pool of `poolSize` connections to `url` (connecting lazily). */
export const openDb = (url: string, poolSize = 2): Db => {
  const runtime = ManagedRuntime.make(PgClient.layer({ url: Redacted.make(url), poolSize, applicationName: "tidyllm-test" }))
  return {
    query: <T extends object>(text: string, params: ReadonlyArray<unknown> = []) =>
      runtime.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<T>(text, params as Array<unknown>))),
    close: () => runtime.dispose()
  }
}

/** One statement on the `postgres` database of the server at `url`, on a connection of its own. */
export const adminQuery = async (url: string, statement: string): Promise<void> => {
  const db = openDb(url, 1)
  try {
    await db.query(statement)
  } finally {
    await db.close()
  }
}

/** A database created for this run. */
export interface ScratchDatabase {
  readonly name: string
  readonly url: string
  readonly drop: () => Promise<void>
}

/** Creates `<prefix>_<random>` on the server at `serverUrl` (default `DATABASE_URL`). */
export const scratchDatabase = async (prefix: string, serverUrl = adminUrl): Promise<ScratchDatabase> => {
  const name = `${prefix}_${randomBytes(6).toString("hex")}`
  await adminQuery(serverUrl, `CREATE DATABASE ${name}`)
  const url = new URL(serverUrl)
  url.pathname = `/${name}`
  return {
    name,
    url: url.toString(),
    drop: () => adminQuery(serverUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  }
}

/** The directory of the newest installed Postgres' binaries (`/usr/lib/postgresql/<v>/bin`), if any. */
export const postgresBin = (): string | undefined => {
  const root = "/usr/lib/postgresql"
  if (!existsSync(root)) return undefined
  const versions = readdirSync(root).filter((v) => existsSync(join(root, v, "bin", "initdb"))).sort((a, b) => Number(a) - Number(b))
  const v = versions[versions.length - 1]
  return v === undefined ? undefined : join(root, v, "bin")
}

/** A Postgres server of the test's own. */
export interface PrivatePostgres {
  readonly port: number
  /** `postgres://postgres@127.0.0.1:<port>/postgres` */
  readonly url: string
  /** `pg_ctl stop -m <mode>` (waits until it is down). */
  readonly stop: (mode?: "smart" | "fast" | "immediate") => Promise<void>
  /** `pg_ctl start` on the same data directory and port (waits until it accepts connections). */
  readonly start: () => Promise<void>
  /** Stops it (immediate) if it runs and removes its directory. */
  readonly destroy: () => Promise<void>
}

const isRoot = typeof process.getuid === "function" && process.getuid() === 0

const run = (bin: string, args: ReadonlyArray<string>, timeoutMs = 60_000): Promise<string> => {
  const [file, argv] = isRoot ? ["runuser", ["-u", "postgres", "--", bin, ...args]] : [bin, [...args]]
  return new Promise((resolve, reject) => {
    execFile(file, argv, { timeout: timeoutMs, encoding: "utf8" }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`${bin} ${args.join(" ")} failed: ${error.message}\n${stdout}\n${stderr}`))
      else resolve(stdout)
    })
  })
}

/** initdb into a temporary directory and start it on a free loopback port. */
export const startPrivatePostgres = async (): Promise<PrivatePostgres> => {
  const bin = postgresBin()
  if (bin === undefined) throw new Error("no Postgres binaries under /usr/lib/postgresql/*/bin")
  const dir = mkdtempSync(join(tmpdir(), "tidyllm-pg-"))
  if (isRoot) {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim())
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim())
    chownSync(dir, uid, gid)
  }
  const data = join(dir, "data")
  const log = join(dir, "postgres.log")
  const port = await freePort()
  const destroy = async () => {
    if (existsSync(join(data, "postmaster.pid"))) {
      await run(join(bin, "pg_ctl"), ["-D", data, "-m", "immediate", "-w", "-t", "20", "stop"]).catch(() => {
        // Last resort: the postmaster's own PID, from its pid file.
        const pid = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0])
        if (Number.isInteger(pid) && pid > 0) {
          try {
            process.kill(pid, "SIGKILL")
          } catch {
            // gone already
          }
        }
      })
    }
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    await run(join(bin, "initdb"), ["-D", data, "--auth=trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "--no-instructions"])
    const start = async () => {
      await run(join(bin, "pg_ctl"), [
        "-D", data, "-l", log, "-w", "-t", "30",
        "-o", `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=60 -c fsync=off`,
        "start"
      ])
    }
    const stop = async (mode: "smart" | "fast" | "immediate" = "fast") => {
      await run(join(bin, "pg_ctl"), ["-D", data, "-m", mode, "-w", "-t", "30", "stop"])
    }
    await start()
    return { port, url: `postgres://postgres@127.0.0.1:${port}/postgres`, stop, start, destroy }
  } catch (e) {
    await destroy()
    throw e
  }
}
