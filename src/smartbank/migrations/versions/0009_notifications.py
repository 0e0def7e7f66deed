"""platform: the in-app notification inbox.

Revision ID: 0009_notifications
Revises: 0008_payments_counterparty
Create Date: 2026-11-27

One row per notice a principal reads in the app. ``(recipient_id, dedupe_key)`` is unique, so the
same event delivered twice notifies once. ``seq`` orders a recipient's inbox and pages it; ``id`` is
what clients see.
"""

from __future__ import annotations

from smartbank.platform.migrate import execute_script

revision = "0009_notifications"
down_revision = "0008_payments_counterparty"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE TABLE platform.notifications (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           uuid NOT NULL UNIQUE,
    recipient_id uuid NOT NULL,
    kind         text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+$' AND length(kind) <= 64),
    params       jsonb NOT NULL DEFAULT '{}'
                 CHECK (jsonb_typeof(params) = 'object' AND octet_length(params::text) <= 2048),
    dedupe_key   text NOT NULL CHECK (length(dedupe_key) BETWEEN 1 AND 200),
    created_at   timestamptz NOT NULL,
    read_at      timestamptz NULL,
    UNIQUE (recipient_id, dedupe_key)
);
CREATE INDEX notifications_recipient_seq ON platform.notifications (recipient_id, seq);
CREATE INDEX notifications_unread ON platform.notifications (recipient_id, seq) WHERE read_at IS NULL;
"""


def upgrade() -> None:
    execute_script(SCHEMA)


def downgrade() -> None:
    execute_script("DROP TABLE IF EXISTS platform.notifications")
