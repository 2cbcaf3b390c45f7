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
  readonly run: (args: ReadonlyArray<string>, env?: Readonly<Record<string, string>>) => Effect.Effect<Result>
  readonly remove: () => void
}

/** Runs the CLI on `args` with the given environment and working directory. */
export const run = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>>, cwd: string): Effect.Effect<Result> =>
  Effect.gen(function*() {
    const out: Array<string> = []
    const err: Array<string> = []
    const console = LineConsole.make((stream, text) => (stream === "stdout" ? out : err).push(text))
    const code = yield* Cli.run(args).pipe(
      Effect.withConsole(console),
      Effect.provide(Layer.merge(NodeContext.layer, CliEnvironment.layer({ env, cwd, color: false })))
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
    run: (args, extra = {}) => run(args, { ...env, ...extra }, join(dir, "work")),
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
