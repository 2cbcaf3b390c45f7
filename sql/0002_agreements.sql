-- 0002_agreements: what the flow-agreement state machine needs beyond 0001's tables.
-- The risk level decides the approvals an agreement needs; each decision records the role it was
-- made in (`approver`, `compliance`, …); one person decides once per agreement, which the unique
-- index also enforces against concurrent requests.
ALTER TABLE flow_agreements ADD COLUMN risk_level text NOT NULL DEFAULT 'low' CHECK (risk_level IN ('low', 'medium', 'high'));
ALTER TABLE flow_agreements ADD COLUMN decided_at timestamptz;

ALTER TABLE agreement_decisions ADD COLUMN role text NOT NULL DEFAULT 'approver';
ALTER TABLE agreement_decisions ADD CONSTRAINT agreement_decisions_decision_check CHECK (decision IN ('approve', 'reject'));
CREATE UNIQUE INDEX agreement_decisions_agreement_decider_idx ON agreement_decisions (agreement_id, decided_by);
-- Decisions made in the same instant keep the order they were recorded in.
ALTER TABLE agreement_decisions ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
