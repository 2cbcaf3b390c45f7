/** The AgreementStore contract (the bodies agreements.test.ts runs on PGlite) on the Postgres server at `DATABASE_URL`. */
import { Layer } from "effect"
import { agreementStoreContract } from "../../heiros/test/agreementStoreContract.js"
import { PgAgreementStore } from "../src/index.js"
import { migrated, postgres } from "./harness.js"

agreementStoreContract("postgres", Layer.orDie(Layer.provideMerge(PgAgreementStore.layer, migrated(postgres()))))
