"""openbanking: partner apps (OAuth clients), account-access consents, authorization requests, codes
and tokens.

Revision ID: 0011_openbanking
Revises: 0010_password_reset
Create Date: 2026-11-27

Codes and tokens are stored as SHA-256 hashes of the random values handed out, never the values
(docs/adr/0007-open-banking-authorization.md). Client secrets are stored as argon2id hashes.
"""

from __future__ import annotations

from smartbank.platform.migrate import execute_script

revision = "0011_openbanking"
down_revision = "0010_password_reset"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS openbanking;

CREATE TABLE openbanking.clients (
    client_id         text PRIMARY KEY CHECK (length(client_id) BETWEEN 8 AND 64),
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    environment       text NOT NULL CHECK (environment IN ('sandbox', 'production')),
    auth_method       text NOT NULL CHECK (auth_method IN ('private_key_jwt', 'client_secret_basic',
                                                            'client_secret_post')),
    redirect_uris     text[] NOT NULL CHECK (cardinality(redirect_uris) BETWEEN 0 AND 10),
    grant_types       text[] NOT NULL,
    scope             text NOT NULL,
    jwks              jsonb NULL,
    secret_hash       text NULL,
    software_id       text NULL,
    registered_by     uuid NULL,
    status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at        timestamptz NOT NULL,
    CHECK ((auth_method = 'private_key_jwt') = (jwks IS NOT NULL)),
    CHECK ((auth_method = 'private_key_jwt') = (secret_hash IS NULL)),
    CHECK (environment = 'sandbox' OR auth_method = 'private_key_jwt')
);

CREATE TABLE openbanking.consents (
    id                  text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),
    client_id           text NOT NULL REFERENCES openbanking.clients (client_id),
    kind                text NOT NULL CHECK (kind IN ('account_access')),
    status              text NOT NULL CHECK (status IN ('AWAU', 'AUTH', 'RJCT', 'EXPD', 'CANC')),
    permissions         text[] NOT NULL CHECK (cardinality(permissions) >= 1),
    expires_at          timestamptz NULL,
    transaction_from    timestamptz NULL,
    transaction_to      timestamptz NULL,
    customer_id         uuid NULL,
    account_ids         uuid[] NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL,
    status_updated_at   timestamptz NOT NULL,
    CHECK (status <> 'AUTH' OR (customer_id IS NOT NULL AND cardinality(account_ids) >= 1))
);
CREATE INDEX consents_customer ON openbanking.consents (customer_id, created_at) WHERE customer_id IS NOT NULL;
CREATE INDEX consents_client ON openbanking.consents (client_id, created_at);

-- One row per authorization request: pushed (PAR, RFC 9126) or sent on the front channel.
CREATE TABLE openbanking.authorization_requests (
    id                uuid PRIMARY KEY,
    request_uri_hash  bytea NULL UNIQUE,
    client_id         text NOT NULL REFERENCES openbanking.clients (client_id),
    consent_id        text NOT NULL REFERENCES openbanking.consents (id),
    redirect_uri      text NOT NULL,
    scope             text NOT NULL,
    state             text NULL,
    code_challenge    text NOT NULL,
    pushed            boolean NOT NULL,
    created_at        timestamptz NOT NULL,
    expires_at        timestamptz NOT NULL,
    customer_id       uuid NULL,
    decided_at        timestamptz NULL
);

CREATE TABLE openbanking.authorization_codes (
    code_hash       bytea PRIMARY KEY,
    grant_id        uuid NOT NULL,
    request_id      uuid NOT NULL REFERENCES openbanking.authorization_requests (id),
    client_id       text NOT NULL REFERENCES openbanking.clients (client_id),
    consent_id      text NOT NULL REFERENCES openbanking.consents (id),
    customer_id     uuid NOT NULL,
    redirect_uri    text NOT NULL,
    code_challenge  text NOT NULL,
    scope           text NOT NULL,
    issued_at       timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz NULL,
    CHECK (expires_at <= issued_at + interval '60 seconds')
);

-- Access and refresh tokens. A grant (one authorization code, or one client-credentials request)
-- is a family: refresh rotation stays in it, and revoking the grant revokes every token in it.
CREATE TABLE openbanking.tokens (
    token_hash   bytea PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('access', 'refresh')),
    grant_id     uuid NOT NULL,
    grant_type   text NOT NULL CHECK (grant_type IN ('authorization_code', 'client_credentials')),
    client_id    text NOT NULL REFERENCES openbanking.clients (client_id),
    consent_id   text NULL REFERENCES openbanking.consents (id),
    customer_id  uuid NULL,
    scope        text NOT NULL,
    issued_at    timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz NULL,
    revoked_at   timestamptz NULL,
    CHECK (kind = 'access' OR grant_type = 'authorization_code'),
    CHECK (grant_type = 'client_credentials' OR consent_id IS NOT NULL)
);
CREATE INDEX tokens_grant ON openbanking.tokens (grant_id);
CREATE INDEX tokens_consent ON openbanking.tokens (consent_id) WHERE consent_id IS NOT NULL;

-- Client assertions (private_key_jwt) seen, so that one cannot be replayed before it expires.
CREATE TABLE openbanking.assertion_jtis (
    client_id   text NOT NULL,
    jti         text NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);
"""


def upgrade() -> None:
    execute_script(SCHEMA)


def downgrade() -> None:
    execute_script("DROP SCHEMA IF EXISTS openbanking CASCADE")
