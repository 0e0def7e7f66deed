"""openbanking: payment and funds-confirmation consents, domestic payments, idempotency keys,
partners' event-notification URLs and webhook deliveries.

Revision ID: 0012_openbanking_api
Revises: 0011_openbanking
Create Date: 2026-11-27

Consents gain two kinds (``domestic_payment``, ``funds_confirmation``), the ``COND`` status (a
payment consent that was used: each is used once), the request the partner sent (``details``), the
moment the customer authorised it, and for a payment the payee or own account it pays to. A domestic
payment row points at the banking payment that executed it; banking keeps the money.
"""

from __future__ import annotations

from smartbank.platform.migrate import execute_script

revision = "0012_openbanking_api"
down_revision = "0011_openbanking"
branch_labels = None
depends_on = None

SCHEMA = """
ALTER TABLE openbanking.consents DROP CONSTRAINT consents_kind_check;
ALTER TABLE openbanking.consents DROP CONSTRAINT consents_status_check;
ALTER TABLE openbanking.consents DROP CONSTRAINT consents_permissions_check;
ALTER TABLE openbanking.consents DROP CONSTRAINT consents_check;
ALTER TABLE openbanking.consents
    ADD COLUMN details        jsonb NULL,
    ADD COLUMN authorised_at  timestamptz NULL,
    ADD COLUMN payee_id       uuid NULL,
    ADD COLUMN to_account_id  uuid NULL;
UPDATE openbanking.consents SET authorised_at = status_updated_at WHERE status = 'AUTH';
ALTER TABLE openbanking.consents
    ADD CONSTRAINT consents_kind_check
        CHECK (kind IN ('account_access', 'domestic_payment', 'funds_confirmation')),
    ADD CONSTRAINT consents_status_check CHECK (status IN ('AWAU', 'AUTH', 'RJCT', 'EXPD', 'CANC', 'COND')),
    ADD CONSTRAINT consents_permissions_check
        CHECK (kind <> 'account_access' OR cardinality(permissions) >= 1),
    ADD CONSTRAINT consents_details_check CHECK (kind = 'account_access' OR details IS NOT NULL),
    ADD CONSTRAINT consents_consumed_check CHECK (status <> 'COND' OR kind = 'domestic_payment'),
    ADD CONSTRAINT consents_check CHECK (
        status NOT IN ('AUTH', 'COND')
        OR (customer_id IS NOT NULL AND cardinality(account_ids) >= 1 AND authorised_at IS NOT NULL)),
    ADD CONSTRAINT consents_payer_check CHECK (
        kind = 'account_access' OR cardinality(account_ids) <= 1),
    ADD CONSTRAINT consents_creditor_check CHECK (
        kind <> 'domestic_payment' OR status NOT IN ('AUTH', 'COND')
        OR ((payee_id IS NULL) <> (to_account_id IS NULL)));

-- Partners may name a URL for event notifications (webhooks).
ALTER TABLE openbanking.clients ADD COLUMN event_notification_uri text NULL
    CHECK (event_notification_uri IS NULL OR length(event_notification_uri) BETWEEN 8 AND 500);

-- x-idempotency-key of the POSTs that create something: per client and operation, with a hash of the body.
CREATE TABLE openbanking.idempotency_keys (
    client_id     text NOT NULL REFERENCES openbanking.clients (client_id),
    operation     text NOT NULL CHECK (operation IN ('domestic-payment-consents', 'domestic-payments',
                                                     'funds-confirmation-consents')),
    key           text NOT NULL CHECK (length(key) BETWEEN 1 AND 40),
    request_hash  bytea NOT NULL,
    resource_id   text NOT NULL,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (client_id, operation, key)
);

-- A domestic payment: one per consent. ``banking_payment_id`` is set once banking has answered;
-- a payment banking refused keeps the refusal (its OBErrorResponse1), answered again on a replay.
CREATE TABLE openbanking.domestic_payments (
    id                  text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 40),
    client_id           text NOT NULL REFERENCES openbanking.clients (client_id),
    consent_id          text NOT NULL UNIQUE REFERENCES openbanking.consents (id),
    customer_id         uuid NOT NULL,
    banking_payment_id  uuid NULL UNIQUE,
    status              text NOT NULL CHECK (status IN ('RCVD', 'PDNG', 'ACSC', 'refused')),
    refusal             jsonb NULL,
    created_at          timestamptz NOT NULL,
    status_updated_at   timestamptz NOT NULL,
    CHECK ((status = 'refused') = (refusal IS NOT NULL)),
    CHECK (status <> 'ACSC' OR banking_payment_id IS NOT NULL)
);
CREATE INDEX domestic_payments_open ON openbanking.domestic_payments (created_at) WHERE status IN ('RCVD', 'PDNG');

-- Signed event notifications waiting for, or done with, delivery to a partner.
CREATE TABLE openbanking.event_deliveries (
    id               uuid PRIMARY KEY,
    event_id         uuid NOT NULL,
    client_id        text NOT NULL REFERENCES openbanking.clients (client_id),
    url              text NOT NULL,
    body             text NOT NULL,
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL,
    delivered_at     timestamptz NULL,
    given_up_at      timestamptz NULL,
    last_error       text NULL,
    created_at       timestamptz NOT NULL,
    UNIQUE (event_id, client_id)
);
CREATE INDEX event_deliveries_due ON openbanking.event_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND given_up_at IS NULL;
"""

DOWN = """
DROP TABLE openbanking.event_deliveries;
DROP TABLE openbanking.domestic_payments;
DROP TABLE openbanking.idempotency_keys;
ALTER TABLE openbanking.clients DROP COLUMN event_notification_uri;
DELETE FROM openbanking.tokens WHERE consent_id IN (SELECT id FROM openbanking.consents WHERE kind <> 'account_access');
DELETE FROM openbanking.authorization_codes
    WHERE consent_id IN (SELECT id FROM openbanking.consents WHERE kind <> 'account_access');
DELETE FROM openbanking.authorization_requests
    WHERE consent_id IN (SELECT id FROM openbanking.consents WHERE kind <> 'account_access');
DELETE FROM openbanking.consents WHERE kind <> 'account_access';
ALTER TABLE openbanking.consents
    DROP CONSTRAINT consents_kind_check, DROP CONSTRAINT consents_status_check,
    DROP CONSTRAINT consents_permissions_check, DROP CONSTRAINT consents_details_check,
    DROP CONSTRAINT consents_consumed_check, DROP CONSTRAINT consents_check,
    DROP CONSTRAINT consents_payer_check, DROP CONSTRAINT consents_creditor_check,
    DROP COLUMN details, DROP COLUMN authorised_at, DROP COLUMN payee_id, DROP COLUMN to_account_id,
    ADD CONSTRAINT consents_kind_check CHECK (kind IN ('account_access')),
    ADD CONSTRAINT consents_status_check CHECK (status IN ('AWAU', 'AUTH', 'RJCT', 'EXPD', 'CANC')),
    ADD CONSTRAINT consents_permissions_check CHECK (cardinality(permissions) >= 1),
    ADD CONSTRAINT consents_check
        CHECK (status <> 'AUTH' OR (customer_id IS NOT NULL AND cardinality(account_ids) >= 1));
"""


def upgrade() -> None:
    execute_script(SCHEMA)


def downgrade() -> None:
    execute_script(DOWN)
