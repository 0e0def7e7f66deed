"""identity: principals, credentials, MFA, sessions and tokens, rate limits.

Revision ID: 0004_identity
Revises: 0003_audit
Create Date: 2026-11-27
"""

from __future__ import annotations

from smartbank.platform.migrate import execute_script

revision = "0004_identity"
down_revision = "0003_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE SCHEMA IF NOT EXISTS identity;

        -- Everyone who can log in. A customer's customer id is the id of their principal.
        CREATE TABLE identity.principals (
            id                  uuid PRIMARY KEY,
            kind                text NOT NULL CHECK (kind IN ('customer', 'staff', 'merchant')),
            login               text NOT NULL UNIQUE CHECK (length(login) BETWEEN 3 AND 254),
            roles               text[] NOT NULL DEFAULT '{}'
                CHECK (cardinality(roles) <= 5 AND (kind = 'staff' OR cardinality(roles) = 0)),
            status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
            password_hash       text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
            password_changed_at timestamptz NOT NULL,
            failed_logins       integer NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
            locked_until        timestamptz NULL,
            created_at          timestamptz NOT NULL
        );

        -- One TOTP authenticator per principal; the secret is encrypted (AES-GCM, key from settings).
        CREATE TABLE identity.totp (
            principal_id uuid PRIMARY KEY REFERENCES identity.principals (id),
            secret_enc   bytea NOT NULL,
            confirmed_at timestamptz NULL,
            -- The newest time step accepted: a code of this step or an older one is a replay.
            last_step    bigint NOT NULL DEFAULT 0,
            created_at   timestamptz NOT NULL
        );

        -- Recovery codes: shown once, stored as keyed hashes, each usable once.
        CREATE TABLE identity.recovery_codes (
            principal_id uuid NOT NULL REFERENCES identity.principals (id),
            code_hash    bytea NOT NULL CHECK (length(code_hash) = 32),
            created_at   timestamptz NOT NULL,
            used_at      timestamptz NULL,
            PRIMARY KEY (principal_id, code_hash)
        );

        -- Browser sessions (cookie) and token families (API clients). While ``mfa_pending``,
        -- token_hash is the hash of the MFA challenge; once active, of the browser's cookie token.
        CREATE TABLE identity.sessions (
            id              uuid PRIMARY KEY,
            principal_id    uuid NOT NULL REFERENCES identity.principals (id),
            kind            text NOT NULL CHECK (kind IN ('browser', 'token')),
            status          text NOT NULL CHECK (status IN ('mfa_pending', 'active', 'ended')),
            token_hash      bytea NULL UNIQUE CHECK (length(token_hash) = 32),
            mfa_attempts    integer NOT NULL DEFAULT 0 CHECK (mfa_attempts >= 0),
            created_at      timestamptz NOT NULL,
            last_used_at    timestamptz NOT NULL,
            expires_at      timestamptz NOT NULL,
            mfa_verified_at timestamptz NULL,
            ended_at        timestamptz NULL,
            end_reason      text NULL CHECK (length(end_reason) <= 50),
            ip              inet NULL,
            device          text NULL CHECK (length(device) <= 300),
            CHECK ((status = 'ended') = (ended_at IS NOT NULL))
        );
        CREATE INDEX sessions_principal ON identity.sessions (principal_id, created_at DESC);

        -- Rotating refresh tokens of a token family (session); each is used at most once.
        CREATE TABLE identity.refresh_tokens (
            token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
            session_id uuid NOT NULL REFERENCES identity.sessions (id),
            issued_at  timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            used_at    timestamptz NULL
        );
        CREATE INDEX refresh_tokens_session ON identity.refresh_tokens (session_id);

        -- Fixed-window rate-limit counters, shared by every server process.
        CREATE TABLE identity.rate_counters (
            scope        text NOT NULL CHECK (length(scope) <= 100),
            key          text NOT NULL CHECK (length(key) <= 200),
            window_start timestamptz NOT NULL,
            hits         integer NOT NULL CHECK (hits >= 1),
            PRIMARY KEY (scope, key, window_start)
        );
        CREATE INDEX rate_counters_window ON identity.rate_counters (window_start);
        """
    )


def downgrade() -> None:
    execute_script("DROP SCHEMA IF EXISTS identity CASCADE")
