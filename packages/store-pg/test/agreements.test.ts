/** The AgreementStore contract on embedded PGlite (the same bodies run on Postgres in agreements.pg.test.ts). */
import * as SqlClient from "@effect/sql/SqlClient"
import { expect, layer } from "@effect/vitest"
import { Ids } from "@tidyllm/core"
import { AgreementStore } from "@tidyllm/heiros"
import { Effect, Either, Layer } from "effect"
import { agreementStoreContract } from "../../heiros/test/agreementStoreContract.js"
import { PgAgreementStore } from "../src/index.js"
import { type FreshDatabase, migrated, pglite } from "./harness.js"

/** The store on a fresh migrated database (the Postgres suite builds the same on its server). */
const store = (fresh: FreshDatabase) => Layer.orDie(Layer.provideMerge(PgAgreementStore.layer, migrated(fresh)))

agreementStoreContract("pglite", store(pglite))

layer(store(pglite), { timeout: "60 seconds" })("PgAgreementStore (pglite)", (it) => {
    it.effect("0002 adds the role, the risk level and one decision per person", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const columns = yield* sql<{ readonly table_name: string; readonly column_name: string }>`
          SELECT table_name, column_name FROM information_schema.columns
          WHERE (table_name = 'agreement_decisions' AND column_name = 'role')
             OR (table_name = 'flow_agreements' AND column_name IN ('risk_level', 'decided_at'))
          ORDER BY table_name, column_name`
        expect(columns.map((c) => `${c.table_name}.${c.column_name}`)).toEqual([
          "agreement_decisions.role", "flow_agreements.decided_at", "flow_agreements.risk_level"
        ])
      }))

    it.effect("0004 adds the agreement's team: nullable, indexed for the team's newest-first list", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const columns = yield* sql<{ readonly is_nullable: string; readonly data_type: string }>`
          SELECT is_nullable, data_type FROM information_schema.columns WHERE table_name = 'flow_agreements' AND column_name = 'team'`
        expect(columns).toEqual([{ is_nullable: "YES", data_type: "text" }])
        const indexes = yield* sql<{ readonly indexdef: string }>`SELECT indexdef FROM pg_indexes WHERE tablename = 'flow_agreements'`
        expect(indexes.some((i) => /\(team\b/.test(i.indexdef))).toBe(true)
      }))

    it.effect("rows written before 0004 (no team) read as teamless and are hidden from every team scope", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const store = yield* AgreementStore.AgreementStore
        const id = Ids.AgreementId.make(Ids.randomUuid())
        yield* sql`INSERT INTO flow_agreements (id, workflow_id, status, expires_at, proposal, proposed_by)
          VALUES (${id}, 'wf-legacy', 'proposed', now() + interval '1 day', '{}'::jsonb, 'user:old')`
        const got = yield* store.get(id)
        expect(got).toMatchObject({ id, workflow_id: "wf-legacy", proposed_by: "user:old" })
        expect("team" in got).toBe(false)
        expect(Either.isLeft(yield* Effect.either(store.get(id, { team: "alpha" })))).toBe(true)
        expect(yield* store.list({ workflow_id: "wf-legacy", team: "alpha" })).toEqual([])
        expect((yield* store.list({ workflow_id: "wf-legacy" })).map((a) => a.id)).toEqual([id])
      }))
})
