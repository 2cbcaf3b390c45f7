/** Runs the `tidyllm` command tree in-process, against a temporary data directory, capturing its output. */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { afterAll } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Cli from "../src/Cli.js"
import * as CliEnvironment from "../src/CliEnvironment.js"
import * as LineConsole from "../src/internal/console.js"

/** What one run printed and how it ended. */
export interface Result {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** A temporary installation: its directory (the working directory, holding no config) and its environment. */
export interface Sandbox {
  readonly dir: string
  readonly env: Readonly<Record<string, string>>
  /** Runs `tidyllm <args>` in this sandbox (extra environment variables on top). */
  readonly run: (args: ReadonlyArray<string>, env?: Readonly<Record<string, string>>, options?: RunOptions) => Effect.Effect<Result>
  readonly remove: () => void
}

/** How a run sees its terminal. */
export interface RunOptions {
  /** Report progress on stderr, as on a terminal (default `false`: results only). */
  readonly progress?: boolean | undefined
}

/** Runs the CLI on `args` with the given environment and working directory. */
export const run = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>>, cwd: string, options: RunOptions = {}): Effect.Effect<Result> =>
  Effect.gen(function*() {
    const out: Array<string> = []
    const err: Array<string> = []
    const console = LineConsole.make((stream, text) => (stream === "stdout" ? out : err).push(text))
    const code = yield* Cli.run(args).pipe(
      Effect.withConsole(console),
      Effect.provide(Layer.merge(NodeContext.layer, CliEnvironment.layer({ env, cwd, color: false, progress: options.progress ?? false })))
    )
    return { code, stdout: out.join("\n"), stderr: err.join("\n") }
  })

/**
 * A fresh sandbox: embedded PGlite and the file cache under a temporary directory, the mock
 * provider (no AWS credentials in the environment), no `.env` and no `tidyllm.yaml`.
 */
export const sandbox = (): Sandbox => {
  const dir = mkdtempSync(join(tmpdir(), "tidyllm-cli-"))
  mkdirSync(join(dir, "work"))
  const env = { TIDYLLM_DATA_DIR: join(dir, "data"), TIDYLLM_CACHE_DIR: join(dir, "cache"), USER: "tester" }
  return {
    dir,
    env,
    run: (args, extra = {}, options = {}) => run(args, { ...env, ...extra }, join(dir, "work"), options),
    remove: () => rmSync(dir, { recursive: true, force: true })
  }
}

/** The audit id an `ask` printed on its metadata line. */
export const auditIdOf = (r: Result): string | undefined => /audit ([0-9a-f-]{36})/.exec(r.stderr)?.[1]

/**
 * A `fresh()` that makes a new sandbox for each call; every sandbox it made is removed after the
 * calling file's tests.
 */
export const sandboxes = (): (() => Sandbox) => {
  const made: Array<Sandbox> = []
  afterAll(() => {
    for (const s of made) s.remove()
  })
  return () => {
    const s = sandbox()
    made.push(s)
    return s
  }
}

/** One row of the `diagnose` table. */
export interface DiagnoseRow {
  readonly name: string
  readonly status: "ok" | "failed" | "warning" | "skipped"
  readonly ms: number | undefined
  readonly detail: string
}

const diagnoseRow = /^(.+?) {2,}(✓ ok|✗ failed|! warning|- skipped) +(?:(\d+) ms +)?(\S.*)$/
const statusOf = { "✓ ok": "ok", "✗ failed": "failed", "! warning": "warning", "- skipped": "skipped" } as const

/** The `diagnose` output: its header, rows and summary line; throws on a line that is none of them. */
export const parseDiagnose = (stdout: string): { readonly header: string; readonly rows: ReadonlyArray<DiagnoseRow>; readonly summary: string } => {
  const lines = stdout.split("\n")
  const rows = lines.slice(1, -1).map((line) => {
    const m = diagnoseRow.exec(line)
    if (m === null) throw new Error(`not a diagnose row: ${line}`)
    return { name: m[1] ?? "", status: statusOf[m[2] as keyof typeof statusOf], ms: m[3] === undefined ? undefined : Number(m[3]), detail: m[4] ?? "" }
  })
  return { header: lines[0] ?? "", rows, summary: lines.at(-1) ?? "" }
}

/** The row of check `name`; throws when there is none. */
export const rowOf = (rows: ReadonlyArray<DiagnoseRow>, name: string): DiagnoseRow => {
  const row = rows.find((r) => r.name === name)
  if (row === undefined) throw new Error(`no '${name}' row in ${rows.map((r) => r.name).join(", ")}`)
  return row
}
