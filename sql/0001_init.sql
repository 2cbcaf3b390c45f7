-- 0001_init: the first schema of TidyLLM Gateway.
-- One schema for Postgres (15+) and embedded PGlite (18): plain DDL, no extensions.
-- The migration runner (packages/store-pg/src/Migrator.ts) wraps this file in one transaction
-- and records it in tidyllm_migrations; later changes go to new numbered files, never here.

-- Compliance audit trail: one row per request attempt, whatever its outcome.
CREATE TABLE llm_audit_log (
  id            uuid           PRIMARY KEY,
  request_id    text           NOT NULL,
  created_at    timestamptz    NOT NULL DEFAULT now(),
  caller        text           NOT NULL,
  user_id       text,
  team          text,
  key_id        text,
  reason        text           NOT NULL,
  provider      text           NOT NULL,
  model         text           NOT NULL,
  status        text           NOT NULL CHECK (status IN (
                  'success', 'error', 'rejected_budget', 'rejected_policy', 'cancelled', 'cache_hit', 'stream_error'
                )),
  input_tokens  integer        NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
  output_tokens integer        NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
  -- US dollars, exact to the nano-dollar (the code's Money.Nanos).
  cost          numeric(20, 9) NOT NULL DEFAULT 0 CHECK (cost >= 0),
  latency_ms    integer        NOT NULL DEFAULT 0,
  error_type    text,
  error_message text,
  -- Full, redacted, or a SHA-256 hex digest, per audit_level.
  prompt        text           NOT NULL,
  audit_level   text           NOT NULL CHECK (audit_level IN ('full', 'redacted', 'hash')),
  attempt       integer        NOT NULL DEFAULT 1 CHECK (attempt >= 1)
);
CREATE INDEX llm_audit_log_created_at_idx        ON llm_audit_log (created_at DESC);
CREATE INDEX llm_audit_log_request_id_idx        ON llm_audit_log (request_id);
CREATE INDEX llm_audit_log_status_created_at_idx ON llm_audit_log (status, created_at DESC);
CREATE INDEX llm_audit_log_team_created_at_idx   ON llm_audit_log (team, created_at DESC);

-- Budgets: one row per scope ('global', 'team:<id>', 'key:<id>'), period and period start.
-- The period is part of the key: a daily and a monthly budget of one scope both start on the 1st.
CREATE TABLE budget_ledger (
  scope        text           NOT NULL,
  period       text           NOT NULL CHECK (period IN ('day', 'month')),
  period_start date           NOT NULL,
  limit_usd    numeric(20, 9) NOT NULL CHECK (limit_usd >= 0),
  spent        numeric(20, 9) NOT NULL DEFAULT 0,
  reserved     numeric(20, 9) NOT NULL DEFAULT 0,
  updated_at   timestamptz    NOT NULL DEFAULT now(),
  PRIMARY KEY (scope, period, period_start),
  CHECK (spent >= 0 AND reserved >= 0)
);

-- Open reservations against budget_ledger rows; settling deletes the row (so settling twice charges once).
CREATE TABLE budget_reservations (
  id          uuid           PRIMARY KEY,
  request_id  text           NOT NULL,
  amount      numeric(20, 9) NOT NULL CHECK (amount >= 0),
  -- [{"scope": "...", "period": "day"|"month", "period_start": "YYYY-MM-DD"}, ...]
  rows        jsonb          NOT NULL,
  -- The replica that reserved; a reaper on any replica releases what a crashed one left.
  instance_id text           NOT NULL,
  created_at  timestamptz    NOT NULL DEFAULT now(),
  expires_at  timestamptz    NOT NULL
);
CREATE INDEX budget_reservations_expires_at_idx ON budget_reservations (expires_at);

-- Audit of workflow and object-store operations (session manager, optimizer).
CREATE TABLE workflow_audit_log (
  id         uuid        PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now(),
  operation  text        NOT NULL,
  key        text        NOT NULL,
  actor      text        NOT NULL,
  reason     text,
  detail     jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX workflow_audit_log_created_at_idx ON workflow_audit_log (created_at DESC);
CREATE INDEX workflow_audit_log_key_idx        ON workflow_audit_log (key, created_at DESC);

-- Flow agreements: approval of behaviour-changing workflow optimisations.
CREATE TABLE flow_agreements (
  id          uuid        PRIMARY KEY,
  workflow_id text        NOT NULL,
  status      text        NOT NULL CHECK (status IN ('proposed', 'approved', 'rejected', 'expired')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  proposal    jsonb       NOT NULL,
  proposed_by text        NOT NULL
);
CREATE INDEX flow_agreements_workflow_id_idx ON flow_agreements (workflow_id, created_at DESC);
CREATE INDEX flow_agreements_status_idx      ON flow_agreements (status, expires_at);

CREATE TABLE agreement_decisions (
  id           uuid        PRIMARY KEY,
  agreement_id uuid        NOT NULL REFERENCES flow_agreements (id) ON DELETE CASCADE,
  decision     text        NOT NULL,
  decided_by   text        NOT NULL,
  comment      text,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agreement_decisions_agreement_id_idx ON agreement_decisions (agreement_id, created_at);

-- API keys: only a hash of the secret is stored.
CREATE TABLE api_keys (
  id         text        PRIMARY KEY,
  hash       text        NOT NULL UNIQUE,
  team       text,
  role       text        NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz,
  revoked_at timestamptz
);
