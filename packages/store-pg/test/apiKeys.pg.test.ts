/** The ApiKeys contract (the bodies apiKeys.test.ts runs on memory and PGlite) on the Postgres server at `DATABASE_URL`. */
import { Layer } from "effect"
import { PgApiKeys } from "../src/index.js"
import { migrated, postgres } from "./harness.js"
import { apiKeysContract, pgApiKeysSuite } from "./suites.js"

apiKeysContract("postgres", Layer.orDie(Layer.provideMerge(PgApiKeys.layer, migrated(postgres(2)))))
pgApiKeysSuite("postgres", postgres(2))
