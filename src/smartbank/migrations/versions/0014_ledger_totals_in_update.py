"""ledger: the fast path totals each account's change inside its UPDATE, in bigint.

Revision ID: 0014_ledger_totals_in_update
Revises: 0013_ledger_accounts_last
Create Date: 2026-11-27

The fast path summed each account's legs with ``sum()`` (numeric, converted back per group) into
seven arrays, then unnested them for its UPDATE: building those arrays cost about as much as the
UPDATE's index lookups. The totals are now a materialized CTE of the UPDATE itself, summed with the
new aggregate ``ledger.sum_exact`` (bigint; an overflow stops it and sends the batch to the general
path, which names the transfer). Re-applies ``sql/ledger_transfer_function.sql``; see
docs/adr/0002-ledger-concurrency.md.
"""

from __future__ import annotations

from smartbank.platform.migrate import SQL_DIR, execute_script

revision = "0014_ledger_totals_in_update"
down_revision = "0013_ledger_accounts_last"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script((SQL_DIR / "ledger_transfer_function.sql").read_text())


def downgrade() -> None:
    # The earlier definition is equivalent; the current one (and its aggregate) serves that schema too.
    pass
