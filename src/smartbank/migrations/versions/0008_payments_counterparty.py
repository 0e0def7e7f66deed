"""banking: an index on a payment's counterparty account, for a customer's incoming payments.

Revision ID: 0008_payments_counterparty
Revises: 0007_ledger_fast_path_ids
Create Date: 2026-11-27

The staff customer view lists a customer's newest payments in and out. Outgoing ones are found by
``payments_customer``; incoming ones (another customer's transfer to one of their accounts) by this
index, one bounded index scan per account.
"""

from __future__ import annotations

from smartbank.platform.migrate import execute_script

revision = "0008_payments_counterparty"
down_revision = "0007_ledger_fast_path_ids"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        "CREATE INDEX payments_counterparty ON banking.payments (counterparty_account_id, created_at)"
        " WHERE counterparty_account_id IS NOT NULL"
    )


def downgrade() -> None:
    execute_script("DROP INDEX IF EXISTS banking.payments_counterparty")
