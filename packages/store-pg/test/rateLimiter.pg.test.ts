/**
 * `PgRateLimiterStore` on the Postgres server at `DATABASE_URL`, with a pool of 10 connections:
 * there the concurrent takes really race, so the exact count proves the statement atomic.
 */
import { postgres } from "./harness.js"
import { rateLimiterSuite } from "./suites.js"

rateLimiterSuite("postgres", postgres(10))
