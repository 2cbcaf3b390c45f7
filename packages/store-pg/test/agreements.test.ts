/** The AgreementStore contract on embedded PGlite (the same bodies run on Postgres in agreements.pg.test.ts). */
import * as SqlClient from "@effect/sql/SqlClient"
import { expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
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
})
