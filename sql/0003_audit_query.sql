-- 0003_audit_query: indexes for `GET /v1/audit` / `tidyllm audit query` and the retention purge.
--
-- The query pages by keyset on (created_at DESC, id DESC): a filter on one column plus an
-- optional time range plus the cursor `(created_at, id) < (…)` is then one index range scan that
-- stops after the page, on the first page and the ten-thousandth alike. Each index below ends in
-- (created_at DESC, id DESC), so it serves its filter *and* the order and the cursor; they replace
-- 0001's (created_at), (team, created_at) and (status, created_at), which had no id to break ties.
-- `provider` (a handful of values) and `reason` (substring search) get no index: they filter rows
-- of whichever index range the other conditions choose. Substring search stays ILIKE: pg_trgm
-- would need CREATE EXTENSION on Postgres and an extension bundle loaded into PGlite, and this
-- schema keeps to plain DDL; a reason filter should come with a time range.
--
-- Plans checked with EXPLAIN ANALYZE on Postgres 15, 1,000,000 rows over 365 days (40 teams,
-- 2,000 keys, 12 models, 85 % success / 4 % error / rarer statuses), pages of 100 (+1 look-ahead):
--   team + 7 days, first page        Index Scan on team_created_at_id (team = … AND created_at range), 101 rows, ~1 ms warm
--   team + range + cursor 5,000 deep Index Scan on team_created_at_id, ROW(created_at, id) < ROW(…) in the Index Cond, 1.1 ms
--   no filter, cursor 6 months back  Index Scan on created_at_id, ROW(…) < ROW(…) as Index Cond, 1.0 ms
--   status = error (4 %)             Index Scan on status_created_at_id, 1.2 ms; status = success (85 %): same, 0.4 ms
--   status IN (3 rare) + 30 days     Index Scan on created_at_id + Filter (2,024 rows removed), 28 ms cold
--   key_id + 30 days                 Bitmap Index Scan on key_created_at_id + top-N sort of 42 rows, 0.7 ms
--   model + 30 days                  Index Scan on model_created_at_id, 1.0 ms
--   model + status + cursor          Index Scan on status_created_at_id (status AND ROW(…) < ROW(…)) + Filter model, 10 ms
--   reason ILIKE + 7 days            Index Scan on created_at_id + Filter, 2 ms
--   reason ILIKE alone, no match     Parallel Seq Scan of the table, 1.25 s (grows with the table: give a time range)
--   purge batch (5,000 rows)         Index Scan Backward on created_at_id (created_at < cut-off, request_id <> ALL(kept)),
--                                    then Index Scan on the primary key (id = ANY(batch)): 80 ms warm, 7 indexes maintained
--
-- Building these on a large existing table blocks audit writes while the migration's transaction
-- runs (about 20 s per million rows). Operators of such tables can first run the CREATE INDEX
-- statements below by hand with CONCURRENTLY (same names): IF NOT EXISTS then skips them here and
-- only the quick DROPs remain. Re-running the statements of this file changes nothing.

CREATE INDEX IF NOT EXISTS llm_audit_log_created_at_id_idx        ON llm_audit_log (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS llm_audit_log_team_created_at_id_idx   ON llm_audit_log (team, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS llm_audit_log_key_created_at_id_idx    ON llm_audit_log (key_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS llm_audit_log_model_created_at_id_idx  ON llm_audit_log (model, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS llm_audit_log_status_created_at_id_idx ON llm_audit_log (status, created_at DESC, id DESC);

DROP INDEX IF EXISTS llm_audit_log_created_at_idx;
DROP INDEX IF EXISTS llm_audit_log_team_created_at_idx;
DROP INDEX IF EXISTS llm_audit_log_status_created_at_idx;
