"""customers: profiles, verification codes, KYC, tiers and name search keys.

Revision ID: 0005_customers
Revises: 0004_identity
Create Date: 2026-11-27

A customer's id is the id of their login principal (the identity domain's). National ID numbers are
kept with a keyed hash (HMAC-SHA256) that exact-match search uses; one-time codes are kept only as
keyed hashes. See docs/customers.md and docs/adr/0004-customer-pii-and-verification.md.
"""

from __future__ import annotations

from smartbank.platform.migrate import execute_script

revision = "0005_customers"
down_revision = "0004_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        r"""
        CREATE SCHEMA IF NOT EXISTS customers;

        -- Payment limits per tier, in minor units of the tier's currency.
        CREATE TABLE customers.tiers (
            code                    text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{1,31}$'),
            rank                    smallint NOT NULL UNIQUE,
            per_payment_limit_minor bigint NOT NULL CHECK (per_payment_limit_minor > 0),
            daily_limit_minor       bigint NOT NULL,
            currency                char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
            CONSTRAINT tiers_daily_covers_one CHECK (daily_limit_minor >= per_payment_limit_minor)
        );
        INSERT INTO customers.tiers (code, rank, per_payment_limit_minor, daily_limit_minor, currency) VALUES
            ('basic',    1,    500000,   2000000, 'CNY'),   -- 5,000 and 20,000 CNY
            ('standard', 2,   5000000,  20000000, 'CNY'),   -- 50,000 and 200,000 CNY
            ('premium',  3,  50000000, 200000000, 'CNY');   -- 500,000 and 2,000,000 CNY

        CREATE TABLE customers.customers (
            id                uuid PRIMARY KEY,
            phone             text NULL UNIQUE CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
            email             text NULL UNIQUE CHECK (length(email) BETWEEN 3 AND 254 AND email = lower(email)),
            terms_version     text NOT NULL CHECK (length(terms_version) BETWEEN 1 AND 32),
            terms_accepted_at timestamptz NOT NULL,
            legal_name        text NULL CHECK (length(legal_name) BETWEEN 1 AND 100),
            name_script       text NULL CHECK (name_script IN ('chinese', 'latin')),
            date_of_birth     date NULL CHECK (date_of_birth >= DATE '1900-01-01'),
            id_type           text NULL CHECK (id_type IN ('prc_resident_id', 'passport', 'hk_macau_permit',
                                                           'taiwan_permit', 'foreign_permanent_resident_id', 'other')),
            id_number         text NULL CHECK (id_number ~ '^[A-Z0-9]{4,30}$'),
            id_number_hash    bytea NULL CHECK (length(id_number_hash) = 32),
            address           jsonb NULL CHECK (jsonb_typeof(address) = 'object' AND pg_column_size(address) <= 2048),
            kyc_status        text NOT NULL DEFAULT 'not_submitted'
                CHECK (kyc_status IN ('not_submitted', 'pending', 'verified', 'rejected')),
            kyc_submitted_at  timestamptz NULL,
            kyc_decided_at    timestamptz NULL,
            kyc_decided_by    uuid NULL,
            kyc_reason        text NULL CHECK (length(kyc_reason) BETWEEN 1 AND 500),
            tier              text NOT NULL DEFAULT 'basic' REFERENCES customers.tiers (code),
            created_at        timestamptz NOT NULL,
            updated_at        timestamptz NOT NULL,
            CONSTRAINT customers_contact CHECK (phone IS NOT NULL OR email IS NOT NULL),
            -- A submitted profile is complete.
            CONSTRAINT customers_kyc_profile CHECK (
                kyc_status = 'not_submitted'
                OR (legal_name IS NOT NULL AND name_script IS NOT NULL AND date_of_birth IS NOT NULL
                    AND id_type IS NOT NULL AND id_number IS NOT NULL AND id_number_hash IS NOT NULL
                    AND address IS NOT NULL AND kyc_submitted_at IS NOT NULL)),
            -- Decided profiles, and only they, carry who decided, when and why.
            CONSTRAINT customers_kyc_decision CHECK (
                (kyc_status IN ('verified', 'rejected'))
                = (kyc_decided_at IS NOT NULL AND kyc_decided_by IS NOT NULL AND kyc_reason IS NOT NULL))
        );
        -- One living profile per identity document (a rejected one does not hold the number).
        CREATE UNIQUE INDEX customers_id_number ON customers.customers (id_number_hash)
            WHERE id_number_hash IS NOT NULL AND kyc_status <> 'rejected';
        CREATE INDEX customers_kyc_queue ON customers.customers (kyc_submitted_at, id) WHERE kyc_status = 'pending';

        -- Keys a staff name search matches by prefix: the folded name, and pinyin of a Chinese name.
        CREATE TABLE customers.name_keys (
            customer_id uuid NOT NULL REFERENCES customers.customers (id),
            key         text NOT NULL CHECK (length(key) BETWEEN 1 AND 400),
            PRIMARY KEY (customer_id, key)
        );
        CREATE INDEX name_keys_prefix ON customers.name_keys (key text_pattern_ops, customer_id);

        -- One-time codes sent to a phone or e-mail address, kept only as keyed hashes.
        CREATE TABLE customers.verifications (
            id           uuid PRIMARY KEY,
            purpose      text NOT NULL CHECK (purpose IN ('registration', 'contact_change')),
            kind         text NOT NULL CHECK (kind IN ('phone', 'email')),
            address      text NOT NULL CHECK (length(address) BETWEEN 3 AND 254),
            -- Who asked (contact change), or the customer the registration created.
            customer_id  uuid NULL REFERENCES customers.customers (id),
            code_hash    bytea NOT NULL CHECK (length(code_hash) = 32),
            attempts     smallint NOT NULL DEFAULT 0 CHECK (attempts BETWEEN 0 AND 5),
            sends        smallint NOT NULL DEFAULT 1 CHECK (sends BETWEEN 1 AND 5),
            created_at   timestamptz NOT NULL,
            last_sent_at timestamptz NOT NULL,
            expires_at   timestamptz NOT NULL,
            consumed_at  timestamptz NULL,
            CONSTRAINT verifications_owner CHECK (purpose = 'registration' OR customer_id IS NOT NULL),
            CONSTRAINT verifications_consumed_by CHECK (consumed_at IS NULL OR customer_id IS NOT NULL)
        );
        CREATE INDEX verifications_by_address ON customers.verifications (address, created_at);
        CREATE INDEX verifications_expiry ON customers.verifications (expires_at);
        """
    )


def downgrade() -> None:
    execute_script("DROP SCHEMA IF EXISTS customers CASCADE")
