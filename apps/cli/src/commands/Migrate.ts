/**
 * `tidyllm migrate`: applies the migrations of `sql/` on the configured database (Postgres at
 * `DATABASE_URL`, else embedded PGlite under `data_dir`), printing each as it is applied with how
 * long it took (`[2/4] applied 0002_agreements.sql (35 ms)`), then a summary. With stderr a
 * terminal, the migration running now is shown there too (a long one is not silence).
 */
import { Command } from "@effect/cli"
import { Clock, Console, Duration, Effect, Ref } from "effect"
import * as Layers from "@tidyllm/server/Layers"
import { Migrator } from "@tidyllm/store-pg"
import * as Progress from "../internal/progress.js"
import { loadConfig } from "../Root.js"

const plural = (n: number) => `${n} migration${n === 1 ? "" : "s"}`

/** `tidyllm migrate`. */
export const command = Command.make("migrate", {}, () =>
  Effect.gen(function*() {
    const loaded = yield* loadConfig
    yield* Console.log(`database: ${Layers.describeStore(loaded.config)}`)
    const { applied, all, ms } = yield* Effect.gen(function*() {
      // What is pending now, for the n/N count; another replica may apply some meanwhile (then they are skipped).
      const files = yield* Migrator.load()
      const before = new Set((yield* Migrator.applied).map((m) => m.name))
      const total = files.filter((f) => !before.has(f.name)).length
      const progress = yield* Progress.make(total)
      const count = yield* Ref.make(0)
      const start = yield* Clock.currentTimeMillis
      const applied = yield* Migrator.run(undefined, {
        onApplying: (name) => progress.note(`applying ${name} …`),
        onApplied: (name, duration) =>
          Effect.flatMap(Ref.updateAndGet(count, (n) => n + 1), (n) =>
            Console.log(`[${n}/${Math.max(total, n)}] applied ${name} (${Math.round(Duration.toMillis(duration))} ms)`))
      })
      const ms = Math.round((yield* Clock.currentTimeMillis) - start)
      const all = yield* Migrator.applied
      return { applied, all, ms }
    }).pipe(Effect.provide(Layers.sqlClient(loaded.config)))
    yield* Console.log(
      applied.length === 0
        ? `up to date (${plural(all.length)} applied: ${all.map((m) => m.name).join(", ") || "none"})`
        : `${plural(applied.length)} applied in ${ms} ms`
    )
  })
).pipe(Command.withDescription("apply pending database migrations, printing each as it is applied"))
