"""banking: deposit accounts, products, payees, payments and the bank's own ledger accounts.

Revision ID: 0006_banking
Revises: 0005_customers
Create Date: 2026-11-27

The bank's own ledger accounts (settlement, fee income, interest expense and one cash account per
branch) are inserted into ``ledger.accounts`` here with fixed ids, listed in ``docs/banking.md`` and
``smartbank.banking.model``. Ledger accounts are never deleted, so the downgrade leaves them.
"""

from __future__ import annotations

from smartbank.platform.migrate import execute_script

revision = "0006_banking"
down_revision = "0005_customers"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS banking;

-- The bank's own side of the book (CNY). Codes: 1001 settlement, 1101 branch cash, 4001 fee income,
-- 5001 interest expense. Customer deposit accounts are 2001 (current) and 2002 (savings).
INSERT INTO ledger.accounts (id, currency, kind, owner_ref, code, created_at) VALUES
    ('00000000-0000-4000-8000-000000001001', 'CNY', 'asset',   'bank:settlement',       1001, now()),
    ('00000000-0000-4000-8000-000000004001', 'CNY', 'income',  'bank:fees',             4001, now()),
    ('00000000-0000-4000-8000-000000005001', 'CNY', 'expense', 'bank:interest',         5001, now()),
    ('00000000-0000-4000-8001-000000000001', 'CNY', 'asset',   'bank:branch:0001:cash', 1101, now()),
    ('00000000-0000-4000-8001-000000000002', 'CNY', 'asset',   'bank:branch:0002:cash', 1101, now()),
    ('00000000-0000-4000-8001-000000000003', 'CNY', 'asset',   'bank:branch:0003:cash', 1101, now())
ON CONFLICT (id) DO NOTHING;

CREATE TABLE banking.branches (
    code            text PRIMARY KEY CHECK (code ~ '^[0-9]{4}$'),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    currency        char(3) NOT NULL,
    cash_account_id uuid NOT NULL UNIQUE
);
INSERT INTO banking.branches (code, name, currency, cash_account_id) VALUES
    ('0001', 'Head office (online)', 'CNY', '00000000-0000-4000-8001-000000000001'),
    ('0002', 'Shanghai Lujiazui',    'CNY', '00000000-0000-4000-8001-000000000002'),
    ('0003', 'Beijing Financial Street', 'CNY', '00000000-0000-4000-8001-000000000003');

-- Serials of account numbers (branch + serial + ISO 7064 MOD 97-10 check digits).
CREATE SEQUENCE banking.account_serial AS bigint MINVALUE 1 MAXVALUE 9999999999;

CREATE TABLE banking.accounts (
    id                uuid PRIMARY KEY,  -- also the id of the ledger account behind it
    customer_id       uuid NOT NULL,
    number            text NOT NULL UNIQUE CHECK (number ~ '^[0-9]{16}$'),
    iban              text NULL UNIQUE CHECK (length(iban) BETWEEN 15 AND 34),
    product           text NOT NULL CHECK (product IN ('current', 'savings')),
    currency          char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status            text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'frozen', 'closed')),
    branch_code       text NOT NULL REFERENCES banking.branches (code),
    opened_at         timestamptz NOT NULL,
    status_changed_at timestamptz NULL
);
CREATE INDEX accounts_customer ON banking.accounts (customer_id, opened_at);

CREATE TABLE banking.payees (
    id             uuid PRIMARY KEY,
    customer_id    uuid NOT NULL,
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 140),
    account_number text NOT NULL CHECK (account_number ~ '^[0-9]{16}$'),
    account_id     uuid NOT NULL REFERENCES banking.accounts (id),
    created_at     timestamptz NOT NULL,
    deleted_at     timestamptz NULL
);
CREATE UNIQUE INDEX payees_live ON banking.payees (customer_id, account_number) WHERE deleted_at IS NULL;

-- Every movement of money that banking starts: payments, and tellers' cash deposits and withdrawals.
CREATE TABLE banking.payments (
    id                      uuid PRIMARY KEY,
    kind                    text NOT NULL CHECK (kind IN ('transfer', 'cash_deposit', 'cash_withdrawal')),
    customer_id             uuid NOT NULL,   -- owner of account_id
    initiated_by            uuid NOT NULL,   -- the principal (customer or teller)
    initiator_kind          text NOT NULL CHECK (initiator_kind IN ('customer', 'staff')),
    idempotency_key         text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 100),
    request_hash            bytea NOT NULL,
    account_id              uuid NOT NULL REFERENCES banking.accounts (id),
    counterparty_account_id uuid NULL REFERENCES banking.accounts (id),
    payee_id                uuid NULL REFERENCES banking.payees (id),
    branch_code             text NULL REFERENCES banking.branches (code),
    debit_account_id        uuid NOT NULL,   -- ledger accounts of the transfer
    credit_account_id       uuid NOT NULL,
    amount_minor            bigint NOT NULL CHECK (amount_minor > 0),
    currency                char(3) NOT NULL,
    reference               text NOT NULL DEFAULT '' CHECK (length(reference) <= 140),
    transfer_id             uuid NOT NULL UNIQUE,
    status                  text NOT NULL CHECK (status IN ('submitted', 'completed', 'failed')),
    failure_code            text NULL,
    usage_day               date NULL,       -- the day of the daily limit it counts against
    step_up                 boolean NOT NULL,
    risk_decision           text NOT NULL CHECK (risk_decision IN ('allow', 'review', 'deny')),
    risk_reason             text NOT NULL CHECK (length(risk_reason) <= 200),
    risk_version            text NOT NULL CHECK (length(risk_version) <= 100),
    created_at              timestamptz NOT NULL,
    finished_at             timestamptz NULL,
    UNIQUE (initiated_by, idempotency_key),
    CHECK ((status = 'failed') = (failure_code IS NOT NULL)),
    CHECK ((status = 'submitted') = (finished_at IS NULL))
);
CREATE INDEX payments_submitted ON banking.payments (created_at) WHERE status = 'submitted';
CREATE INDEX payments_customer ON banking.payments (customer_id, created_at);

-- What each customer has paid per day (bank time zone), locked per payment so that concurrent
-- payments cannot together pass the daily limit.
CREATE TABLE banking.daily_usage (
    customer_id uuid NOT NULL,
    day         date NOT NULL,
    currency    char(3) NOT NULL,
    used_minor  bigint NOT NULL DEFAULT 0 CHECK (used_minor >= 0),
    PRIMARY KEY (customer_id, day)
);

-- Account history, projected from the ledger's transfers_created events: one row per posted
-- transfer per deposit account it touches, signed from the account's side (+ in, - out).
CREATE TABLE banking.entries (
    seq                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id          uuid NOT NULL REFERENCES banking.accounts (id),
    transfer_id         uuid NOT NULL,
    amount_minor        bigint NOT NULL CHECK (amount_minor <> 0),
    currency            char(3) NOT NULL,
    posted_at           timestamptz NOT NULL,
    counterparty_number text NULL,
    counterparty_name   text NULL,
    description         text NOT NULL DEFAULT '',
    payment_id          uuid NULL,
    kind                text NULL,
    UNIQUE (account_id, transfer_id)
);
CREATE INDEX entries_account_seq ON banking.entries (account_id, seq);
CREATE INDEX entries_account_time ON banking.entries (account_id, posted_at, seq);
"""


def upgrade() -> None:
    execute_script(SCHEMA)


def downgrade() -> None:
    execute_script("DROP SCHEMA IF EXISTS banking CASCADE")
