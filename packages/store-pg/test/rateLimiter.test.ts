/** `PgRateLimiterStore` under `RateLimiter.make` on embedded PGlite (rateLimiter.pg.test.ts runs the same on Postgres). */
import { pglite } from "./harness.js"
import { rateLimiterSuite } from "./suites.js"

rateLimiterSuite("pglite", pglite)
