"""platform: outbox, consumed events, and the job queue's schema.

Revision ID: 0001_platform
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from smartbank.platform.migrate import execute_script

revision = "0001_platform"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE SCHEMA IF NOT EXISTS platform;

        -- Events written in the same transaction as the change they describe; delivered after commit.
        CREATE TABLE platform.outbox (
            seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event_id     uuid NOT NULL UNIQUE,
            topic        text NOT NULL CHECK (length(topic) BETWEEN 1 AND 200),
            payload      jsonb NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            published_at timestamptz NULL
        );
        CREATE INDEX outbox_unpublished ON platform.outbox (seq) WHERE published_at IS NULL;
        -- Events are written once and read soon: skip compressing them on the write path.
        ALTER TABLE platform.outbox ALTER COLUMN payload SET STORAGE EXTERNAL;

        -- Idempotent consumers remember which events they have applied.
        CREATE TABLE platform.consumed_events (
            consumer   text NOT NULL,
            event_id   uuid NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (consumer, event_id)
        );

        CREATE SCHEMA IF NOT EXISTS procrastinate;
        """
    )
    from procrastinate.schema import SchemaManager

    execute_script("SET LOCAL search_path TO procrastinate")
    execute_script(SchemaManager.get_schema())
    execute_script("SET LOCAL search_path TO public")


def downgrade() -> None:
    execute_script("DROP SCHEMA IF EXISTS procrastinate CASCADE; DROP SCHEMA IF EXISTS platform CASCADE;")
