"""ledger: accounts, immutable transfers, open holds and the set-based transfer function.

Revision ID: 0002_ledger
Revises: 0001_platform
Create Date: 2026-11-27

The transfer function is the only writer of balances. It takes a whole batch (up to 1,000
transfers, possibly merged from many concurrent requests) in one round trip, locks every account
it touches in id order (so concurrent batches never deadlock), applies each transfer with guarded
updates, undoes a failed linked chain by applying the inverse deltas in reverse order, then writes
the new transfers, holds and one outbox event in bulk. See docs/adr/0002-ledger-concurrency.md.
"""

from __future__ import annotations

from smartbank.platform.migrate import SQL_DIR, execute_script

TRANSFER_FUNCTION = SQL_DIR / "ledger_transfer_function.sql"

revision = "0002_ledger"
down_revision = "0001_platform"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS ledger;

-- Domains check a value when it is written to a column, not on every later update of the row: the
-- balance updates of the transfer function re-check only the columns they set and the row rules.
CREATE DOMAIN ledger.currency_code AS char(3) CHECK (VALUE ~ '^[A-Z]{3}$');
CREATE DOMAIN ledger.account_kind AS text
    CHECK (VALUE IN ('asset', 'liability', 'equity', 'income', 'expense'));
CREATE DOMAIN ledger.account_status AS text CHECK (VALUE IN ('open', 'frozen', 'closed'));
CREATE DOMAIN ledger.account_code AS integer CHECK (VALUE BETWEEN 1 AND 65535);
CREATE DOMAIN ledger.owner_ref AS text CHECK (length(VALUE) BETWEEN 1 AND 200);
CREATE DOMAIN ledger.balance AS bigint NOT NULL CHECK (VALUE >= 0);

CREATE TABLE ledger.accounts (
    id             uuid PRIMARY KEY,
    currency       ledger.currency_code NOT NULL,
    kind           ledger.account_kind NOT NULL,
    owner_ref      ledger.owner_ref NULL,
    code           ledger.account_code NOT NULL,
    debits_must_not_exceed_credits boolean NOT NULL DEFAULT false,
    credits_must_not_exceed_debits boolean NOT NULL DEFAULT false,
    -- How far the limited side may run past the other: an overdraft or credit limit.
    limit_minor    ledger.balance NOT NULL DEFAULT 0,
    status         ledger.account_status NOT NULL DEFAULT 'open',
    debits_pending  ledger.balance NOT NULL DEFAULT 0,
    debits_posted   ledger.balance NOT NULL DEFAULT 0,
    credits_pending ledger.balance NOT NULL DEFAULT 0,
    credits_posted  ledger.balance NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL,
    -- At most one limit flag, and a limit only with a flag.
    CONSTRAINT accounts_limit_flags CHECK (
        NOT (debits_must_not_exceed_credits AND credits_must_not_exceed_debits)
        AND (limit_minor = 0 OR debits_must_not_exceed_credits OR credits_must_not_exceed_debits)),
    -- Each side's total fits in 63 bits (written so that the check itself cannot overflow).
    CONSTRAINT accounts_sides_fit CHECK (
        debits_pending <= 9223372036854775807 - debits_posted
        AND credits_pending <= 9223372036854775807 - credits_posted),
    -- The balance limits, enforced by the database whatever the code above it does.
    CONSTRAINT accounts_within_limits CHECK (
        (NOT debits_must_not_exceed_credits OR debits_pending + debits_posted - credits_posted <= limit_minor)
        AND (NOT credits_must_not_exceed_debits
             OR credits_pending + credits_posted - debits_posted <= limit_minor))
)
-- Balances change all the time and no index covers them: leave room on each page so that an update
-- stays on its page (a HOT update, with no index write).
WITH (fillfactor = 70);
CREATE INDEX accounts_owner ON ledger.accounts (owner_ref) WHERE owner_ref IS NOT NULL;

CREATE TABLE ledger.transfers (
    seq               bigint GENERATED ALWAYS AS IDENTITY,  -- history order; unique by construction
    id                uuid PRIMARY KEY,
    type              text NOT NULL
        CHECK (type IN ('posted', 'pending', 'post_pending', 'void_pending', 'expire_pending')),
    -- No foreign keys to accounts: the transfer function writes a transfer only after both accounts
    -- were found and locked, and accounts are never deleted (trigger below); `ledger verify` checks it.
    debit_account_id  uuid NOT NULL,
    credit_account_id uuid NOT NULL,
    amount_minor      bigint NOT NULL CHECK (amount_minor > 0),
    currency          char(3) NOT NULL,
    code              integer NOT NULL CHECK (code BETWEEN 1 AND 65535),
    -- Posts, voids and reversals point at an earlier transfer. Not foreign keys either: the function
    -- reads the transfer it points at before writing, and `ledger verify` checks every reference.
    pending_id        uuid NULL,
    timeout_s         integer NULL CHECK (timeout_s > 0),
    expires_at        timestamptz NULL,
    reversal_of       uuid NULL,
    metadata          jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (pg_column_size(metadata) <= 8192),
    request_hash      bytea NOT NULL,
    created_at        timestamptz NOT NULL,
    CONSTRAINT transfers_two_accounts CHECK (debit_account_id <> credit_account_id),
    CONSTRAINT transfers_pending_ref
        CHECK ((type IN ('post_pending', 'void_pending', 'expire_pending')) = (pending_id IS NOT NULL)),
    CONSTRAINT transfers_timeout_only_pending CHECK (type = 'pending' OR timeout_s IS NULL)
);
-- A pending transfer is resolved (posted, voided or expired) at most once.
CREATE UNIQUE INDEX transfers_one_resolution ON ledger.transfers (pending_id) WHERE pending_id IS NOT NULL;
CREATE INDEX transfers_by_debit ON ledger.transfers (debit_account_id, seq);
CREATE INDEX transfers_by_credit ON ledger.transfers (credit_account_id, seq);
CREATE INDEX transfers_reversals ON ledger.transfers (reversal_of) WHERE reversal_of IS NOT NULL;

-- Transfers are history: never updated, never deleted. A mistake is corrected by a reversal.
CREATE FUNCTION ledger.transfers_immutable() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'ledger.transfers is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$fn$;
CREATE TRIGGER transfers_no_update BEFORE UPDATE OR DELETE ON ledger.transfers
    FOR EACH ROW EXECUTE FUNCTION ledger.transfers_immutable();
CREATE TRIGGER transfers_no_truncate BEFORE TRUNCATE ON ledger.transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.transfers_immutable();

-- Accounts are closed, never deleted: history keeps pointing at them.
CREATE FUNCTION ledger.accounts_not_deleted() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'ledger.accounts rows are never deleted (% refused); close the account instead', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$fn$;
CREATE TRIGGER accounts_no_delete BEFORE DELETE ON ledger.accounts
    FOR EACH ROW EXECUTE FUNCTION ledger.accounts_not_deleted();
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON ledger.accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.accounts_not_deleted();

-- Open holds: pending transfers not yet posted, voided or expired (the working set of the expiry job).
CREATE TABLE ledger.open_holds (
    transfer_id uuid PRIMARY KEY REFERENCES ledger.transfers (id),
    expires_at  timestamptz NULL
);
CREATE INDEX open_holds_expiry ON ledger.open_holds (expires_at) WHERE expires_at IS NOT NULL;
"""

# The batch function (and its helper) live in one SQL file, applied again by each later migration
# that changes them.
FUNCTION = TRANSFER_FUNCTION.read_text()


def upgrade() -> None:
    execute_script(SCHEMA)
    execute_script(FUNCTION)


def downgrade() -> None:
    execute_script("DROP SCHEMA IF EXISTS ledger CASCADE")
