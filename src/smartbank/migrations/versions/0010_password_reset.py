"""customers: verifications for a forgotten password.

Revision ID: 0010_password_reset
Revises: 0009_notifications
Create Date: 2026-11-27

A password reset is a verification with purpose ``password_reset``. It is recorded for every address
asked about, registered or not (so the answer cannot tell them apart); ``customer_id`` is the
customer whose phone or e-mail it is, or NULL when nobody has that address (no code is sent then).
"""

from __future__ import annotations

from smartbank.platform.migrate import execute_script

revision = "0010_password_reset"
down_revision = "0009_notifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE customers.verifications DROP CONSTRAINT verifications_purpose_check;
        ALTER TABLE customers.verifications ADD CONSTRAINT verifications_purpose_check
            CHECK (purpose IN ('registration', 'contact_change', 'password_reset'));
        ALTER TABLE customers.verifications DROP CONSTRAINT verifications_owner;
        ALTER TABLE customers.verifications ADD CONSTRAINT verifications_owner
            CHECK (purpose IN ('registration', 'password_reset') OR customer_id IS NOT NULL);
        """
    )


def downgrade() -> None:
    execute_script(
        """
        DELETE FROM customers.verifications WHERE purpose = 'password_reset';
        ALTER TABLE customers.verifications DROP CONSTRAINT verifications_owner;
        ALTER TABLE customers.verifications ADD CONSTRAINT verifications_owner
            CHECK (purpose = 'registration' OR customer_id IS NOT NULL);
        ALTER TABLE customers.verifications DROP CONSTRAINT verifications_purpose_check;
        ALTER TABLE customers.verifications ADD CONSTRAINT verifications_purpose_check
            CHECK (purpose IN ('registration', 'contact_change'));
        """
    )
