"""ledger: the transfer function's fast path finds existing ids by its insert, not a lookup first.

Revision ID: 0007_ledger_fast_path_ids
Revises: 0006_banking
Create Date: 2026-11-27

The fast path used to look every id of the batch up (and count distinct ids) before writing. Now
the INSERT's unique index does that work once: a unique violation rolls the fast path back and the
general path decides, as a missed balance guard does. Re-applies ``sql/ledger_transfer_function.sql``.
"""

from __future__ import annotations

from smartbank.platform.migrate import SQL_DIR, execute_script

revision = "0007_ledger_fast_path_ids"
down_revision = "0006_banking"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script((SQL_DIR / "ledger_transfer_function.sql").read_text())


def downgrade() -> None:
    # The earlier definition differs only in doing the lookup; the current one is correct for it too.
    pass
