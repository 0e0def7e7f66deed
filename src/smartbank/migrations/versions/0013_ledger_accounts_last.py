"""ledger: the transfer function's fast path locks the accounts last, after its inserts.

Revision ID: 0013_ledger_accounts_last
Revises: 0012_openbanking_api
Create Date: 2026-11-27

A fast-path call now inserts its transfers (in id order, history positions in batch order) and its
outbox row before its guarded UPDATE of the accounts, so concurrent calls that share accounts wait
on each other only for that UPDATE and the commit. The general path inserts in id order too and
gives up, within a short lock timeout, a wait on another call's insert of the same id while it holds
account rows (the service retries it). The function takes the fast path's event from the caller
(``p_event``, built with the column arrays) instead of building it from the arrays: the definition
with the old argument list is dropped. Re-applies ``sql/ledger_transfer_function.sql``; see
docs/adr/0002-ledger-concurrency.md.
"""

from __future__ import annotations

from smartbank.platform.migrate import SQL_DIR, execute_script

revision = "0013_ledger_accounts_last"
down_revision = "0012_openbanking_api"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script((SQL_DIR / "ledger_transfer_function.sql").read_text())


def downgrade() -> None:
    # The earlier definition locked the accounts first; the current one is correct for that schema too.
    pass
