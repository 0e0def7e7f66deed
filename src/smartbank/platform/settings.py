"""Settings from the environment: ``SMARTBANK_*`` variables and ``DATABASE_URL``."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("smartbank", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMARTBANK_", extra="ignore")

    env: Literal["development", "production", "test"] = "development"
    #: ``postgresql://...`` of the server to use; unset means an embedded PostgreSQL in ``data_dir``.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "SMARTBANK_DATABASE_URL")
    )
    data_dir: Path = Field(default_factory=_default_data_dir)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_pool_overflow: int = Field(default=10, ge=0, le=200)
    db_statement_timeout_ms: int = Field(default=30_000, ge=100)
    #: Group commit: concurrent transfer requests are merged into one database call of at most this many.
    ledger_batch_max: int = Field(default=1000, ge=1, le=1000)
    #: How many merged ledger calls may be in flight at once per process.
    ledger_inflight_max: int = Field(default=1, ge=1, le=32)
    #: How many client batches (``submit_batch``) may run at once per process, besides the merged calls.
    ledger_batch_concurrency: int = Field(default=2, ge=1, le=32)
    #: Bearer token of internal callers of internal APIs (the ledger's); unset: staff logins only.
    internal_token: SecretStr | None = Field(default=None, min_length=16)
    #: Largest JSON body the HTTP API accepts, in bytes.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    outbox_poll_interval_s: float = Field(default=1.0, gt=0)
    #: Signs access tokens and CSRF tokens, keys recovery-code hashes and MFA-secret encryption.
    #: Required in production; development keeps a generated one in ``data_dir/keys``.
    secret_key: SecretStr | None = Field(default=None, min_length=32)
    #: Keys the audit log's MACs and hash chain. Keep it out of the database (and apart from
    #: ``secret_key``). Required in production; development keeps a generated one in ``data_dir/keys``.
    audit_key: SecretStr | None = Field(default=None, min_length=32)
    #: Staff without a session that passed MFA are refused on staff routes (403 ``mfa_required``).
    staff_mfa_required: bool = False
    #: Key of the keyed hashes of personal data (national ID numbers, one-time codes). Required in
    #: production; development and test fall back to a fixed, public key.
    pii_key: SecretStr | None = Field(default=None, min_length=32)
    #: Money-moving requests (payments, cash) a minute, per client address and per principal.
    money_move_per_ip_per_min: int = Field(default=60, ge=1)
    money_move_per_principal_per_min: int = Field(default=30, ge=1)
    # -- banking ---------------------------------------------------------------------------------
    #: IBAN form of account numbers: ISO country and national bank code; unset (the CNY default): none.
    banking_iban_country: str | None = None
    banking_iban_bank_code: str | None = None
    #: Payments above this many minor units need a fresh MFA (step-up).
    banking_step_up_threshold_minor: int = Field(default=200_000, ge=0)
    #: How recent an MFA challenge must be to count for a step-up.
    banking_step_up_max_age_s: int = Field(default=300, ge=1, le=3600)
    #: The time zone whose calendar day the daily payment limit and statement dates follow.
    banking_timezone: str = "Asia/Shanghai"
    #: The branch that holds accounts opened online.
    banking_default_branch: str = "0001"

    # -- open banking ----------------------------------------------------------------------------
    #: The bank's public base URL: the OAuth issuer (``iss``) and the audience of client assertions.
    #: Unset: ``http://{host}:{port}``.
    public_url: str | None = None

    @property
    def issuer(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def pgdata_dir(self) -> Path:
        return self.data_dir / "pgdata"


@cache
def get_settings() -> Settings:
    return Settings()
