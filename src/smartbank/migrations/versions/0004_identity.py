"""identity: principals, credentials, MFA, sessions and tokens, rate limits.

Revision ID: 0004_identity
Revises: 0003_audit
Create Date: 2026-11-27

Reserved in the migration chain so that the domains of the identity and banking work can be built
side by side; the schema is added by the change that builds the domain.
"""

from __future__ import annotations

revision = "0004_identity"
down_revision = "0003_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
