"""platform: the hash-chained audit log.

Revision ID: 0003_audit
Revises: 0002_ledger
Create Date: 2026-11-27

Rows are written by ``smartbank.platform.audit.record`` in the transaction of the audited action,
each with an HMAC of its own content. A chainer links finished rows into ``platform.audit_chain``
in (txid, seq) order; see docs/adr/0003-audit-chain.md. Both tables refuse UPDATE, DELETE and TRUNCATE.
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
            details      jsonb NOT NULL DEFAULT '{}'::jsonb,
            -- HMAC-SHA256 of the row's canonical content, under a key the database does not hold.
            mac          bytea NOT NULL CHECK (length(mac) = 32)
        );
        -- The chainer reads finished rows past the chain head in this order.
        CREATE INDEX audit_log_chain_order ON platform.audit_log (txid, seq);
        CREATE INDEX audit_log_actor ON platform.audit_log (actor_id, seq) WHERE actor_id IS NOT NULL;
        CREATE INDEX audit_log_subject ON platform.audit_log (subject_type, subject_id, seq)
            WHERE subject_id IS NOT NULL;

        -- The hash chain over finished audit rows: append-only, one entry per audit row.
        CREATE TABLE platform.audit_chain (
            chain_seq  bigint PRIMARY KEY CHECK (chain_seq >= 1),
            audit_seq  bigint NOT NULL UNIQUE,
            audit_txid xid8 NOT NULL,
            mac        bytea NOT NULL CHECK (length(mac) = 32),
            prev_hash  bytea NOT NULL CHECK (length(prev_hash) = 32),
            chain_hash bytea NOT NULL CHECK (length(chain_hash) = 32),
            chained_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE FUNCTION platform.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '%.% is append-only', TG_TABLE_SCHEMA, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
        END $$;
        CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON platform.audit_log
            FOR EACH ROW EXECUTE FUNCTION platform.refuse_change();
        CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON platform.audit_log
            FOR EACH STATEMENT EXECUTE FUNCTION platform.refuse_change();
        CREATE TRIGGER audit_chain_append_only BEFORE UPDATE OR DELETE ON platform.audit_chain
            FOR EACH ROW EXECUTE FUNCTION platform.refuse_change();
        CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON platform.audit_chain
            FOR EACH STATEMENT EXECUTE FUNCTION platform.refuse_change();
        """
    )


def downgrade() -> None:
    execute_script(
        "DROP TABLE IF EXISTS platform.audit_chain; DROP TABLE IF EXISTS platform.audit_log;"
        " DROP FUNCTION IF EXISTS platform.refuse_change();"
    )
