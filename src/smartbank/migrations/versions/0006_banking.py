"""banking: deposit accounts, products, payees, payments and the bank's own ledger accounts.

Revision ID: 0006_banking
Revises: 0005_customers
Create Date: 2026-11-27

Reserved in the migration chain so that the domains of the identity and banking work can be built
side by side; the schema is added by the change that builds the domain.
"""

from __future__ import annotations

revision = "0006_banking"
down_revision = "0005_customers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
