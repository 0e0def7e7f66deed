"""platform: the hash-chained audit log.

Revision ID: 0003_audit
Revises: 0002_ledger
Create Date: 2026-11-27

Reserved in the migration chain so that the domains of the identity and banking work can be built
side by side; the schema is added by the change that builds the domain.
"""

from __future__ import annotations

revision = "0003_audit"
down_revision = "0002_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
