-- 0004_keys_limits: managed API keys with per-key limits, agreements by team, and shared
-- rate-limit counters.
--
-- api_keys (0001) gains what `ApiKeys.ApiKey` holds: a label, who created the key, and the key's
-- own limits. A NULL limit means "no limit of this kind". Dollars are numeric(20, 9) like every
-- other amount of money in this schema; the rates are whole units per minute. Rows written before
-- this file get created_by 'unknown'. The role CHECK validates existing rows: a row with another
-- role fails this migration rather than authenticating as something the code does not know.

ALTER TABLE api_keys ADD COLUMN name text;
ALTER TABLE api_keys ADD COLUMN created_by text NOT NULL DEFAULT 'unknown';
ALTER TABLE api_keys ADD COLUMN budget_daily_usd numeric(20, 9) CHECK (budget_daily_usd >= 0);
ALTER TABLE api_keys ADD COLUMN budget_monthly_usd numeric(20, 9) CHECK (budget_monthly_usd >= 0);
ALTER TABLE api_keys ADD COLUMN requests_per_minute integer CHECK (requests_per_minute > 0);
ALTER TABLE api_keys ADD COLUMN tokens_per_minute integer CHECK (tokens_per_minute > 0);
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_check CHECK (role IN ('user', 'approver', 'compliance', 'admin'));
-- `tidyllm keys list --team …` and the admin API list a team's keys newest first.
CREATE INDEX api_keys_team_created_at_idx ON api_keys (team, created_at DESC);

-- The team an agreement was proposed for (NULL: no team, or proposed before this file), so a
-- team's approvers see their team's agreements.
ALTER TABLE flow_agreements ADD COLUMN team text;
CREATE INDEX flow_agreements_team_created_at_idx ON flow_agreements (team, created_at DESC);

-- Fixed-window rate-limit counters shared by every replica (packages/store-pg/src/PgRateLimiterStore.ts):
-- one row per key, `count` units taken in the window that ends at `expires_at`. A row whose
-- expires_at has passed means nothing (the next take restarts it), so the purge may delete it at
-- any time; the index serves that purge.
CREATE TABLE rate_limit_counters (
  key        text        PRIMARY KEY,
  count      bigint      NOT NULL,
  expires_at timestamptz NOT NULL
);
CREATE INDEX rate_limit_counters_expires_at_idx ON rate_limit_counters (expires_at);

-- llm_audit_log needs no new index for per-key queries: 0003 created
-- llm_audit_log_key_created_at_id_idx on (key_id, created_at DESC, id DESC), which serves
-- (key_id, created_at DESC) as well.
