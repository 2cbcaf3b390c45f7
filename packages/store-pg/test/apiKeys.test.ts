/** The ApiKeys contract on the memory store and on embedded PGlite (apiKeys.pg.test.ts runs it on Postgres). */
import { ApiKeys } from "@tidyllm/corporate-llm"
import { Layer } from "effect"
import { PgApiKeys } from "../src/index.js"
import { migrated, pglite } from "./harness.js"
import { apiKeysContract, pgApiKeysSuite } from "./suites.js"

apiKeysContract("memory", ApiKeys.layerMemory)
apiKeysContract("pglite", Layer.orDie(Layer.provideMerge(PgApiKeys.layer, migrated(pglite))))
pgApiKeysSuite("pglite", pglite)
