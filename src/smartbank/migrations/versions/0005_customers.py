"""customers: profiles, verification, KYC and tiers.

Revision ID: 0005_customers
Revises: 0004_identity
Create Date: 2026-11-27

Reserved in the migration chain so that the domains of the identity and banking work can be built
side by side; the schema is added by the change that builds the domain.
"""

from __future__ import annotations

revision = "0005_customers"
down_revision = "0004_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
