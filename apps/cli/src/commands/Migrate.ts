/**
 * `tidyllm migrate`: applies the migrations of `sql/` on the configured database (Postgres at
 * `DATABASE_URL`, else embedded PGlite under `data_dir`) and prints what it applied.
 */
import { Command } from "@effect/cli"
import { Console, Effect } from "effect"
import * as Layers from "@tidyllm/server/Layers"
import { Migrator } from "@tidyllm/store-pg"
import { loadConfig } from "../Root.js"

/** `tidyllm migrate`. */
export const command = Command.make("migrate", {}, () =>
  Effect.gen(function*() {
    const loaded = yield* loadConfig
    yield* Console.log(`database: ${Layers.describeStore(loaded.config)}`)
    const { applied, all } = yield* Effect.gen(function*() {
      const applied = yield* Migrator.run()
      const all = yield* Migrator.applied
      return { applied, all }
    }).pipe(Effect.provide(Layers.sqlClient(loaded.config)))
    for (const name of applied) yield* Console.log(`applied ${name}`)
    yield* Console.log(
      applied.length === 0
        ? `up to date (${all.length} migration${all.length === 1 ? "" : "s"} applied: ${all.map((m) => m.name).join(", ") || "none"})`
        : `${applied.length} migration${applied.length === 1 ? "" : "s"} applied`
    )
  })
).pipe(Command.withDescription("apply pending database migrations"))
