"""Fixtures for banking: a database per test module, one frozen clock for banking and the ledger."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest

from smartbank.banking.consumers import subscribe
from smartbank.banking.model import PaymentAssessment, PaymentProfile, RiskDecision, RiskOutcome
from smartbank.banking.service import BankingConfig, BankingService
from smartbank.kernel.clock import FrozenClock
from smartbank.kernel.errors import DomainError
from smartbank.ledger.service import LedgerService
from smartbank.platform.db import Database, create_engine
from smartbank.platform.outbox import OutboxRelay
from smartbank.platform.settings import Settings

START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


class FakeDirectory:
    """The customers domain as banking sees it (CustomerDirectory)."""

    def __init__(self) -> None:
        self.profiles: dict[uuid.UUID, PaymentProfile] = {}

    async def payment_profile(self, customer_id: uuid.UUID) -> PaymentProfile:
        try:
            return self.profiles[customer_id]
        except KeyError:
            raise DomainError("customer_not_found", "no such customer") from None


class RecordingRisk:
    """A risk gate that remembers what it was asked and answers ``decision``."""

    def __init__(self) -> None:
        self.decision = RiskDecision(RiskOutcome.ALLOW, "test_allow", "test/1")
        self.seen: list[PaymentAssessment] = []

    async def assess_payment(self, assessment: PaymentAssessment) -> RiskDecision:
        self.seen.append(assessment)
        return self.decision


@pytest.fixture(scope="module")
def banking_url(fresh_database: Callable[[], str]) -> str:
    return fresh_database()


@pytest.fixture
async def bdb(banking_url: str) -> AsyncIterator[Database]:
    database = Database(create_engine(banking_url, Settings(env="test", db_pool_size=12, db_pool_overflow=12)))
    yield database
    await database.dispose()


@pytest.fixture
def bclock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
async def bledger(bdb: Database, bclock: FrozenClock) -> AsyncIterator[LedgerService]:
    service = LedgerService(bdb, bclock)
    yield service
    await service.drain()


@pytest.fixture
def directory() -> FakeDirectory:
    return FakeDirectory()


@pytest.fixture
def risk() -> RecordingRisk:
    return RecordingRisk()


@pytest.fixture
def config() -> BankingConfig:
    return BankingConfig(step_up_threshold_minor=500_000)


@pytest.fixture
def relay(bdb: Database) -> OutboxRelay:
    return OutboxRelay(bdb)


@pytest.fixture
def banking(
    bdb: Database,
    bledger: LedgerService,
    bclock: FrozenClock,
    directory: FakeDirectory,
    risk: RecordingRisk,
    config: BankingConfig,
    relay: OutboxRelay,
) -> BankingService:
    service = BankingService(bdb, bledger, bclock, directory, risk=risk, config=config)
    subscribe(relay, service)
    return service
