"""platform: the hash-chained audit log.

Revision ID: 0003_audit
Revises: 0002_ledger
Create Date: 2026-11-27

Rows are written by ``smartbank.platform.audit.record`` in the transaction of the audited action.
"""

from __future__ import annotations

from smartbank.platform.migrate import execute_script

revision = "0003_audit"
down_revision = "0002_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE platform.audit_log (
            seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id           uuid NOT NULL UNIQUE,
            occurred_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
            -- The writing transaction: rows of finished transactions can be chained in a stable order.
            txid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
            action       text NOT NULL CHECK (action ~ '^[a-z_]+(\\.[a-z_]+)+$' AND length(action) <= 100),
            outcome      text NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
            actor_kind   text NOT NULL
                CHECK (actor_kind IN ('customer', 'staff', 'merchant', 'system', 'anonymous')),
            actor_id     uuid NULL,
            subject_type text NULL CHECK (length(subject_type) <= 100),
            subject_id   text NULL CHECK (length(subject_id) <= 200),
            ip           inet NULL,
            device       text NULL CHECK (length(device) <= 300),
            request_id   text NULL CHECK (length(request_id) <= 200),
            details      jsonb NOT NULL DEFAULT '{}'::jsonb
        );
        CREATE INDEX audit_log_actor ON platform.audit_log (actor_id, seq) WHERE actor_id IS NOT NULL;
        CREATE INDEX audit_log_subject ON platform.audit_log (subject_type, subject_id, seq)
            WHERE subject_id IS NOT NULL;
        """
    )


def downgrade() -> None:
    execute_script("DROP TABLE IF EXISTS platform.audit_log")
