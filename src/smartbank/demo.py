"""``smartbank demo``: a believable bank to try, built through the real services.

The demo sits at the command layer: it calls every domain's service layer (never their tables) and
so obeys every rule a real customer or member of staff would. It works in two steps:

1. :func:`make_plan` (pure, deterministic from the seed): the people, their documents, contacts,
   addresses, accounts, payees and every money movement of the months of history, with balances
   simulated so that no payment overdraws and no customer passes their tier's limits.
2. :func:`seed` carries the plan out on a :class:`DemoClock` that starts months ago and only moves
   forward, ending at "now": registration with the verification code the customer "receives",
   KYC approved by a demo staff member, the current account opened on approval, savings accounts,
   opening deposits by a teller at a branch, payees, then salaries, rent, shopping, utilities,
   payments between friends and transfers to savings, day by day.

A run first looks for the plan's last customer (an applicant whose KYC is still pending, registered
last, at "now"): found, the demo is already there and nothing is written. A run that stopped halfway
is reported, never repeated on top of itself.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, Final
from zoneinfo import ZoneInfo

import phonenumbers
import uvloop
from faker import Faker
from pypinyin import lazy_pinyin
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncConnection
from stdnum.cn import ric

from smartbank.banking.model import CashRequest, PaymentKind, PaymentRequest, Product
from smartbank.customers.model import Address, ContactKind, IdType, KycDecision, KycSubmission
from smartbank.customers.service import CustomerService, pii_key_from
from smartbank.identity import credentials
from smartbank.identity.credentials import Passwords
from smartbank.identity.model import ClientInfo, Principal, PrincipalKind, StaffRole
from smartbank.kernel.clock import FrozenClock
from smartbank.kernel.errors import DomainError
from smartbank.kernel.invariants import invariant
from smartbank.platform.logging import configure_logging
from smartbank.platform.notify import Message, Notifier, OutboxNotifier
from smartbank.platform.process import tune_gc
from smartbank.platform.settings import Settings
from smartbank.sandbox import DEMO_KEY_FILE, ensure_sample_partner
from smartbank.web.app import Runtime

SHANGHAI: Final = ZoneInfo("Asia/Shanghai")
CURRENCY: Final = "CNY"
DEFAULT_CUSTOMERS: Final = 300
DEFAULT_MONTHS: Final = 6
DEFAULT_SEED: Final = 2026
#: Every demo customer's password, and every demo staff member's. Known on purpose: the demo is for
#: trying the bank on one's own machine, and refuses to run in production.
CUSTOMER_PASSWORD: Final = "demo-customer-2026"  # noqa: S105 - a published demo password
STAFF_PASSWORD: Final = "demo-staff-2026"  # noqa: S105 - a published demo password
TERMS_VERSION: Final = "2026-11"
#: Customers registered last, whose KYC waits for a decision (so the staff console has a queue).
APPLICANTS: Final = 3
#: Concurrent use cases while seeding (each holds at most a connection or two).
CONCURRENCY: Final = 16
#: How often the outbox relay looks for events while the history is written (it is also woken on commit).
RELAY_POLL_S: Final = 0.5
DEMO_CLIENT: Final = ClientInfo(ip=None, device="smartbank demo", request_id=None)

STAFF_LOGINS: Final[dict[StaffRole, str]] = {
    StaffRole.ADMIN: "admin@bank.example.com",
    StaffRole.TELLER: "teller@bank.example.com",
    StaffRole.RISK_ANALYST: "risk@bank.example.com",
    StaffRole.CRM_AGENT: "crm@bank.example.com",
    StaffRole.LENDING_OFFICER: "lending@bank.example.com",
}

URLS: Final = (("/app/", "customers"), ("/staff/", "staff"), ("/docs", "API docs"))


# -- places ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Place:
    region_code: str  # the first six digits of a resident ID issued there (GB/T 2260)
    province: str
    city: str
    district: str
    postal_code: str
    branch: str  # the bank's branch nearest to it


PLACES: Final = (
    Place("110105", "北京市", "北京市", "朝阳区", "100020", "0003"),
    Place("110101", "北京市", "北京市", "东城区", "100010", "0003"),
    Place("310104", "上海市", "上海市", "徐汇区", "200030", "0002"),
    Place("310101", "上海市", "上海市", "黄浦区", "200001", "0002"),
    Place("440106", "广东省", "广州市", "天河区", "510620", "0001"),
    Place("440305", "广东省", "深圳市", "南山区", "518052", "0001"),
    Place("330106", "浙江省", "杭州市", "西湖区", "310012", "0001"),
    Place("510107", "四川省", "成都市", "武侯区", "610041", "0001"),
    Place("320102", "江苏省", "南京市", "玄武区", "210018", "0001"),
    Place("420106", "湖北省", "武汉市", "武昌区", "430061", "0001"),
    Place("610113", "陕西省", "西安市", "雁塔区", "710061", "0001"),
    Place("370202", "山东省", "青岛市", "市南区", "266001", "0001"),
)
STREETS: Final = ("人民路", "中山路", "解放路", "建设路", "和平路", "长江路", "新华路", "青年路", "文化路", "光明路")


# -- businesses ----------------------------------------------------------------------------------


class Role(StrEnum):
    EMPLOYER = "employer"
    AGENCY = "agency"  # letting agency: rent goes here
    ELECTRICITY = "electricity"
    MOBILE = "mobile"
    MERCHANT = "merchant"


@dataclass(frozen=True, slots=True)
class Business:
    """A business that banks here: its account belongs to its owner (a sole proprietor's customer
    record); payers know it by ``payee_name``."""

    key: str
    payee_name: str
    role: Role


BUSINESSES: Final = (
    Business("employer-tech", "Lujiazui Tech 陆家嘴科技", Role.EMPLOYER),
    Business("employer-foods", "Huaxia Foods 华夏食品", Role.EMPLOYER),
    Business("employer-hospital", "Renai Hospital 仁爱医院", Role.EMPLOYER),
    Business("employer-logistics", "Dongfang Logistics 东方物流", Role.EMPLOYER),
    Business("agency-lianjia", "Anju Homes 安居房屋", Role.AGENCY),
    Business("agency-citylet", "CityLet Rentals", Role.AGENCY),
    Business("utility-power", "State Grid electricity 国家电网", Role.ELECTRICITY),
    Business("utility-mobile", "China Mobile 中国移动", Role.MOBILE),
    Business("shop-fresh", "Hema Fresh 盒马鲜生", Role.MERCHANT),
    Business("shop-coffee", "Luckin Coffee 瑞幸咖啡", Role.MERCHANT),
    Business("shop-mart", "FamilyMart 全家", Role.MERCHANT),
    Business("shop-books", "Xinhua Books 新华书店", Role.MERCHANT),
)


# -- people ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Person:
    key: str
    legal_name: str
    chinese: bool
    contact_kind: ContactKind
    contact: str  # E.164 phone or e-mail, as registered
    birth: date
    id_type: IdType
    id_number: str
    address: Address
    branch: str
    business: Business | None = None
    salary_minor: int = 0
    employer: str | None = None
    savings: bool = False
    opening_minor: int = 0
    savings_opening_minor: int = 0
    rent_day: int | None = None
    rent_minor: int = 0
    agency: str | None = None

    @property
    def login(self) -> str:
        return self.contact


# -- the plan ----------------------------------------------------------------------------------------


class Step(StrEnum):
    PAYMENT = "payment"
    DEPOSIT = "deposit"


@dataclass(frozen=True, slots=True)
class Movement:
    """One money movement: a customer's payment, or a teller's cash deposit."""

    step: Step
    key: str  # idempotency key
    payer: str  # person key (payment) or the account owner's key (deposit)
    amount_minor: int
    reference: str
    to: str | None = None  # payee: the person key whose current account receives
    to_savings: bool = False  # the payer's own savings account
    into_savings: bool = False  # a deposit into the savings account
    branch: str = "0001"
    at: datetime | None = None  # when, in the history (None: at the step's time on day 0)


@dataclass(frozen=True, slots=True)
class Slot:
    """One day's movements, by time. None depends on a credit of the same day (the plan counts a
    day's credits only from the next day), so any of them may run at once."""

    at: datetime
    movements: tuple[Movement, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    seed: int
    start: datetime  # the bank's day 0 (registrations), months ago
    people: tuple[Person, ...]  # businesses' owners first, then customers
    applicants: tuple[Person, ...]
    payees: dict[str, tuple[tuple[str, str], ...]]  # payer key -> ((payee person key, payee name), ...)
    opening: tuple[Movement, ...]  # deposits on day 0
    slots: tuple[Slot, ...]

    @property
    def movements(self) -> int:
        return len(self.opening) + sum(len(s.movements) for s in self.slots)

    @property
    def sentinel(self) -> Person:
        """Registered last: when it exists, the whole plan was carried out."""
        return self.applicants[-1]

    @property
    def first(self) -> Person:
        return self.people[0]


def _yuan(value: int) -> int:
    return value * 100


class _People:
    """Deterministic names, phones, e-mails, documents and addresses from one seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - repeatable demo data, not secrets
        self.zh = Faker("zh_CN")
        self.en = Faker("en_US")
        self.zh.seed_instance(seed)
        self.en.seed_instance(seed + 1)
        self.phones: set[str] = set()
        self.ids: set[str] = set()
        self.emails: set[str] = set()

    def phone(self) -> str:
        while True:
            number = phonenumbers.parse(self.zh.phone_number(), "CN")
            if not phonenumbers.is_valid_number(number):
                continue
            if phonenumbers.number_type(number) is not phonenumbers.PhoneNumberType.MOBILE:
                continue
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            if e164 not in self.phones:
                self.phones.add(e164)
                return e164

    def email(self, name: str, chinese: bool) -> str:
        if chinese:  # given name, then surname: 王小红 -> xiaohong.wang
            local = "".join(lazy_pinyin(name[1:])) + "." + "".join(lazy_pinyin(name[:1]))
        else:
            local = ".".join(part for part in name.lower().split() if part.isalpha())
        for n in range(1, 1000):
            candidate = f"{local}{n if n > 1 else ''}@example.com"
            if candidate not in self.emails:
                self.emails.add(candidate)
                return candidate
        raise RuntimeError("no free demo e-mail address")  # 999 namesakes: cannot happen at these sizes

    def resident_id(self, place: Place, birth: date, male: bool) -> str:
        """A PRC resident ID (GB 11643): region, birth date, a sequence whose parity is the sex
        (odd for men), and the ISO 7064 MOD 11-2 check character."""
        while True:
            sequence = self.rng.randrange(0, 500) * 2 + (1 if male else 0)
            body = f"{place.region_code}{birth:%Y%m%d}{sequence:03d}"
            number = body + ric.calc_check_digit(body + "0")
            if number not in self.ids:
                self.ids.add(number)
                invariant(ric.is_valid(number), "a generated resident ID is valid", number=number)
                return number

    def address(self, place: Place) -> Address:
        street = self.rng.choice(STREETS)
        line = (
            f"{place.district} {street} {self.rng.randint(1, 899)} 号 "
            f"{self.rng.randint(1, 30)} 栋 {self.rng.randint(1, 32)}{self.rng.randint(1, 4):02d} 室"
        )
        return Address(
            country="CN", region=place.province, city=place.city, lines=(line,), postal_code=place.postal_code
        )

    def person(self, key: str, today: date, *, chinese: bool, contact_kind: ContactKind) -> Person:
        rng = self.rng
        male = rng.random() < 0.5
        if chinese:
            name = self.zh.name_male() if male else self.zh.name_female()
        else:
            name = self.en.name_male() if male else self.en.name_female()
            name = " ".join(part for part in name.split() if part.isalpha() and "." not in part)
        age_days = rng.randint(21 * 365, 68 * 365)
        birth = today - timedelta(days=age_days)
        # A resident ID names a region that existed at the birth date; foreign residents live in
        # Beijing or Shanghai.
        places = [p for p in PLACES if _region_existed(p, birth)] if chinese else list(PLACES[:4])
        place = rng.choice(places)
        if chinese:
            id_type, id_number = IdType.PRC_RESIDENT_ID, self.resident_id(place, birth, male)
        else:
            id_type = IdType.PASSPORT
            id_number = ""
            while not id_number or id_number in self.ids:
                id_number = f"{rng.choice('EGKP')}{rng.randrange(10**7, 10**8)}"
            self.ids.add(id_number)
        contact = self.phone() if contact_kind is ContactKind.PHONE else self.email(name, chinese)
        return Person(
            key=key,
            legal_name=name,
            chinese=chinese,
            contact_kind=contact_kind,
            contact=contact,
            birth=birth,
            id_type=id_type,
            id_number=id_number,
            address=self.address(place),
            branch=place.branch,
        )


def _region_existed(place: Place, birth: date) -> bool:
    body = f"{place.region_code}{birth:%Y%m%d}001"
    return bool(ric.is_valid(body + ric.calc_check_digit(body + "0")))


def _day_start(moment: datetime) -> datetime:
    local = moment.astimezone(SHANGHAI)
    return datetime(local.year, local.month, local.day, tzinfo=SHANGHAI)


def make_plan(customers: int, months: int, seed: int, now: datetime) -> Plan:
    """Everything the demo will do, from the seed alone (and today's date, which ends the history)."""
    invariant(customers >= 1 and months >= 1, "a demo has customers and months", customers=customers)
    gen = _People(seed)
    rng = gen.rng
    today = now.astimezone(SHANGHAI).date()
    start = _day_start(now) - timedelta(days=round(months * 30.44))

    owners = [gen.person(f"b{i}", today, chinese=True, contact_kind=ContactKind.PHONE) for i in range(len(BUSINESSES))]
    owners = [_with(p, business=b, opening_minor=_yuan(1_000)) for p, b in zip(owners, BUSINESSES, strict=True)]
    by_role: dict[Role, list[Person]] = defaultdict(list)
    for owner in owners:
        assert owner.business is not None
        by_role[owner.business.role].append(owner)

    # Made before the customers, so that they (and so the demo's sentinel) depend on the seed alone.
    applicants = tuple(
        gen.person(f"a{i}", today, chinese=i != 1, contact_kind=ContactKind.PHONE) for i in range(APPLICANTS)
    )
    people: list[Person] = []
    for i in range(customers):
        chinese = rng.random() < 0.7
        kind = ContactKind.PHONE if rng.random() < 0.75 else ContactKind.EMAIL
        p = gen.person(f"c{i}", today, chinese=chinese, contact_kind=kind)
        salary = _yuan(rng.randrange(60, 360) * 100)
        renter = rng.random() < 0.6
        savings = rng.random() < 0.35
        people.append(
            _with(
                p,
                salary_minor=salary,
                employer=rng.choice(by_role[Role.EMPLOYER]).key,
                savings=savings,
                opening_minor=_yuan(rng.randrange(30, 200) * 100),
                savings_opening_minor=_yuan(rng.randrange(10, 500) * 100) if savings else 0,
                rent_day=rng.randint(1, 5) if renter else None,
                rent_minor=min(_yuan(4_800), salary * rng.randint(20, 35) // 100 // 10_000 * 10_000) if renter else 0,
                agency=rng.choice(by_role[Role.AGENCY]).key if renter else None,
            )
        )
    keys = {p.key: p for p in [*owners, *people]}
    payees: dict[str, list[tuple[str, str]]] = defaultdict(list)
    friends: dict[str, list[str]] = {}
    shops: dict[str, list[str]] = {}
    for p in people:
        if p.agency:
            payees[p.key].append((p.agency, keys[p.agency].business.payee_name))  # type: ignore[union-attr]
        for role in (Role.ELECTRICITY, Role.MOBILE):
            owner = by_role[role][0]
            payees[p.key].append((owner.key, owner.business.payee_name))  # type: ignore[union-attr]
        shops[p.key] = [o.key for o in rng.sample(by_role[Role.MERCHANT], 2)]
        for key in shops[p.key]:
            payees[p.key].append((key, keys[key].business.payee_name))  # type: ignore[union-attr]
        others = [q for q in rng.sample(people, min(3, len(people))) if q.key != p.key][:2]
        friends[p.key] = [q.key for q in others]
        for q in others:
            payees[p.key].append((q.key, q.legal_name))
    for owner in by_role[Role.EMPLOYER]:
        for p in people:
            if p.employer == owner.key:
                payees[owner.key].append((p.key, p.legal_name))

    opening: list[Movement] = []
    for p in [*owners, *people]:
        opening.append(
            Movement(
                Step.DEPOSIT,
                f"demo-{seed}-open-{p.key}",
                p.key,
                p.opening_minor,
                "Opening deposit 开户存款",
                branch=p.branch,
            )
        )
        if p.savings_opening_minor:
            opening.append(
                Movement(
                    Step.DEPOSIT,
                    f"demo-{seed}-open-savings-{p.key}",
                    p.key,
                    p.savings_opening_minor,
                    "Opening deposit 开户存款",
                    into_savings=True,
                    branch=p.branch,
                )
            )
    slots = _history(seed, rng, start, now, owners, people, friends, shops, by_role, opening)
    return Plan(
        seed=seed,
        start=start,
        people=(*owners, *people),
        applicants=applicants,
        payees={k: tuple(v) for k, v in payees.items()},
        opening=tuple(opening),
        slots=tuple(slots),
    )


def _with(person: Person, **changes: object) -> Person:
    return replace(person, **changes)  # type: ignore[arg-type]


#: Basic tier limits (customers.tiers): 5,000 CNY a payment, 20,000 a day; the plan stays below them.
PER_PAYMENT_CAP_MINOR: Final = _yuan(5_000)
DAILY_CAP_MINOR: Final = _yuan(19_000)
#: Premium tier (the businesses): 500,000 a payment, 2,000,000 a day.
BUSINESS_PER_PAYMENT_CAP_MINOR: Final = _yuan(500_000)
BUSINESS_DAILY_CAP_MINOR: Final = _yuan(1_900_000)
#: What a purchase at each shop is for, and its usual price range in yuan.
SHOP_NOTES: Final[dict[str, tuple[tuple[str, ...], int, int]]] = {
    "shop-fresh": (("Groceries 买菜", "Fruit 水果"), 40, 600),
    "shop-coffee": (("Coffee 咖啡",), 12, 80),
    "shop-mart": (("Snacks 零食", "Household 日用品"), 15, 200),
    "shop-books": (("Books 图书",), 30, 300),
}
FRIEND_NOTES: Final = (
    "Dinner AA 聚餐AA",
    "Birthday gift 生日礼物",
    "Movie tickets 电影票",
    "Taxi share 打车",
    "Thanks! 谢谢",
)


def _history(
    seed: int,
    rng: random.Random,
    start: datetime,
    now: datetime,
    owners: list[Person],
    people: list[Person],
    friends: dict[str, list[str]],
    shops: dict[str, list[str]],
    by_role: dict[Role, list[Person]],
    opening: list[Movement],
) -> list[Slot]:
    """Day by day from day 1 to today, slot by slot; balances are simulated so that nothing fails."""
    balance: dict[str, int] = defaultdict(int)
    savings: dict[str, int] = defaultdict(int)
    for m in opening:
        (savings if m.into_savings else balance)[m.payer] += m.amount_minor
    owner_of = {o.key: o for o in owners}
    employees: dict[str, list[Person]] = defaultdict(list)
    for p in people:
        if p.employer:
            employees[p.employer].append(p)
    power, mobile = by_role[Role.ELECTRICITY][0].key, by_role[Role.MOBILE][0].key
    shop_days: dict[str, set[int]] = {p.key: set() for p in people}
    payday = {o.key: 10 + 5 * i for i, o in enumerate(by_role[Role.EMPLOYER])}  # the 10th, 15th, 20th, 25th
    slots: list[Slot] = []
    counter = itertools.count(1)
    wanted: dict[tuple[int, int], list[Movement]] = defaultdict(list)  # (hour, minute) -> what may happen then
    day = start + timedelta(days=1)
    while day < now:
        local = day.date()
        spent: dict[str, int] = defaultdict(int)
        wanted.clear()

        def move(hm: tuple[int, int], step: Step, payer: str, amount: int, reference: str, **kw: Any) -> None:
            wanted[hm].append(Movement(step, f"demo-{seed}-{next(counter)}", payer, amount, reference, **kw))

        month = f"{local:%Y-%m}"
        if local.day == 1:
            for p in people:
                shop_days[p.key] = {rng.randint(1, 28)} if rng.random() < 0.6 else set()
        for key, staff in employees.items():  # an employer banks its takings the day before payday
            if local.day == payday[key] - 1:
                total = sum(p.salary_minor for p in staff)
                move((9, 0), Step.DEPOSIT, key, total, f"Takings 营业收入 {month}", branch=owner_of[key].branch)
        for p in people:
            if p.employer and local.day == payday[p.employer]:
                move((9, 30), Step.PAYMENT, p.employer, p.salary_minor, f"Salary 工资 {month}", to=p.key)
            if p.rent_day == local.day and p.agency:
                move((10, 30), Step.PAYMENT, p.key, p.rent_minor, f"Rent 房租 {month}", to=p.agency)
            if local.day == 11 and p.savings:
                amount = min(PER_PAYMENT_CAP_MINOR, p.salary_minor * rng.randint(10, 20) // 100 // 100 * 100)
                move((11, 0), Step.PAYMENT, p.key, amount, f"To savings 转入储蓄 {month}", to_savings=True)
            if local.day in shop_days[p.key]:
                shop = rng.choice(shops[p.key])
                notes, low, high = SHOP_NOTES[owner_of[shop].business.key]  # type: ignore[union-attr]
                amount = _yuan(rng.randint(low, high)) + rng.randrange(0, 100)
                move((12, 30), Step.PAYMENT, p.key, amount, rng.choice(notes), to=shop)
            if local.day == 15 and local.month % 2 == p.birth.month % 2:  # billed every other month
                amount = _yuan(rng.randint(60, 420)) + rng.randrange(0, 100)
                move((15, 0), Step.PAYMENT, p.key, amount, f"Electricity 电费 {month}", to=power)
            if local.day == 20 and local.month % 3 == p.birth.month % 3:  # a top-up every third month
                move(
                    (15, 30),
                    Step.PAYMENT,
                    p.key,
                    _yuan(rng.choice((58, 88, 128, 158, 199))),
                    f"Mobile 话费 {month}",
                    to=mobile,
                )
            if friends[p.key] and rng.random() < 1 / 60:
                amount = _yuan(rng.randint(20, 1_500))
                move((20, 0), Step.PAYMENT, p.key, amount, rng.choice(FRIEND_NOTES), to=rng.choice(friends[p.key]))
        credits: dict[str, int] = defaultdict(int)
        kept: list[Movement] = []
        for hm in sorted(wanted):
            at = day.replace(hour=hm[0], minute=hm[1]).astimezone(UTC)
            if at >= now - timedelta(hours=1):  # an hour's room for the clock's ticks before "now"
                break
            for planned in wanted[hm]:
                m = replace(planned, at=at)
                if m.step is Step.DEPOSIT:
                    credits[m.payer] += m.amount_minor
                    kept.append(m)
                    continue
                per_payment, daily = (
                    (BUSINESS_PER_PAYMENT_CAP_MINOR, BUSINESS_DAILY_CAP_MINOR)
                    if m.payer in owner_of
                    else (PER_PAYMENT_CAP_MINOR, DAILY_CAP_MINOR)
                )
                if m.amount_minor > per_payment or spent[m.payer] + m.amount_minor > daily:
                    continue  # over the tier's limits: not planned
                if balance[m.payer] < m.amount_minor:
                    continue  # cannot afford it today: the customer does without
                balance[m.payer] -= m.amount_minor
                spent[m.payer] += m.amount_minor
                if m.to_savings:
                    savings[m.payer] += m.amount_minor
                else:
                    assert m.to is not None
                    credits[m.to] += m.amount_minor
                kept.append(m)
        for key, amount in credits.items():
            balance[key] += amount
        if kept:
            slots.append(Slot(day.astimezone(UTC), tuple(kept)))
        day += timedelta(days=1)
    return slots


# -- carrying it out -----------------------------------------------------------------------------------


class DemoClock(FrozenClock):
    """A frozen clock that only moves forward."""

    def advance_to(self, moment: datetime) -> None:
        if moment > self.now():
            self.set(moment)

    def tick(self, seconds: float = 1.0) -> None:
        self.advance(timedelta(seconds=seconds))


class SharedHashPasswords(Passwords):
    """argon2id, hashing each distinct password once: every demo customer has the same published
    password, so they share its one (slow on purpose) hash. Verification is unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self._hashes: dict[str, str] = {}

    def hash(self, password: str) -> str:
        if password not in self._hashes:
            self._hashes[password] = super().hash(password)
        return self._hashes[password]


class CodeInbox:
    """A notifier that writes each message to the outbox as usual and keeps verification codes,
    so the demo can type the code its customer "received"."""

    def __init__(self, inner: Notifier) -> None:
        self._inner = inner
        self.codes: dict[str, str] = {}

    async def send(self, conn: AsyncConnection, message: Message) -> uuid.UUID:
        message_id = await self._inner.send(conn, message)
        if "code" in message.secret_params:
            self.codes[message.recipient] = message.secret_params["code"]
        return message_id


class DemoIncomplete(Exception):
    """Part of this demo exists but not all of it (a run that stopped): not repeated on top."""


@dataclass
class StaffLogin:
    role: StaffRole
    login: str
    totp_secret: str | None = None


@dataclass
class Outcome:
    created: bool
    seconds: float
    customers: int = 0
    accounts: int = 0
    payments: int = 0
    staff: list[StaffLogin] = field(default_factory=list)


class Seeder:
    """Carries a :class:`Plan` out through the services of a :class:`Runtime` on a :class:`DemoClock`."""

    def __init__(self, runtime: Runtime, clock: DemoClock, plan: Plan, progress: Progress | None) -> None:
        self.rt = runtime
        self.clock = clock
        self.plan = plan
        self.progress = progress
        runtime.identity.passwords = SharedHashPasswords()
        self.inbox = CodeInbox(OutboxNotifier(runtime.settings.env))
        self.customers = CustomerService(
            runtime.db, clock, logins=runtime.identity, notifier=self.inbox, pii_key=pii_key_from(runtime.settings)
        )
        self.ids: dict[str, uuid.UUID] = {}
        self.current: dict[str, uuid.UUID] = {}
        self.savings: dict[str, uuid.UUID] = {}
        self.numbers: dict[str, str] = {}
        self.payee_ids: dict[tuple[str, str], uuid.UUID] = {}
        self.staff: dict[StaffRole, Principal] = {}
        self._semaphore = asyncio.Semaphore(CONCURRENCY)

    # -- helpers --

    def _task(self, description: str, total: int) -> TaskID | None:
        return self.progress.add_task(description, total=total) if self.progress else None

    def _advance(self, task: TaskID | None, n: int = 1) -> None:
        if self.progress is not None and task is not None:
            self.progress.advance(task, n)

    async def _each(
        self, items: Sequence[object], fn: Callable[[object], Awaitable[None]], task: TaskID | None
    ) -> None:
        async def one(item: object) -> None:
            async with self._semaphore:
                await fn(item)
            self._advance(task)

        await asyncio.gather(*(one(item) for item in items))

    async def _drain(self) -> None:
        while await self.rt.relay.relay_once() > 0:
            pass

    def _customer(self, key: str) -> Principal:
        """The customer, signed in with a fresh second factor (payments above the step-up threshold)."""
        return Principal(self.ids[key], PrincipalKind.CUSTOMER, mfa_verified_at=self.clock.now())

    # -- probes --

    async def _exists(self, person: Person) -> bool:
        reader = Principal(uuid.UUID(int=0), PrincipalKind.STAFF, frozenset({StaffRole.CRM_AGENT}))
        page = await self.customers.search(reader, phone=person.contact, limit=1)
        return bool(page.items)

    async def already_seeded(self) -> bool:
        if await self._exists(self.plan.sentinel):
            return True
        if await self._exists(self.plan.first):
            raise DemoIncomplete(
                "a demo with this seed was started here but did not finish; seed a fresh database "
                "(or choose another --seed)"
            )
        return False

    # -- steps --

    async def create_staff(self) -> list[StaffLogin]:
        logins = []
        task = self._task("Staff", len(STAFF_LOGINS))
        for role, login in STAFF_LOGINS.items():
            try:
                staff_id = await self.rt.identity.create_staff(
                    login=login, roles=frozenset({role}), password=STAFF_PASSWORD, client=DEMO_CLIENT
                )
            except DomainError as exc:
                if exc.code == "login_taken":
                    raise DemoIncomplete(
                        f"the staff login {login} exists already (a demo with another seed?)"
                    ) from None
                raise
            principal = Principal(staff_id, PrincipalKind.STAFF, frozenset({role}))
            self.staff[role] = principal
            entry = StaffLogin(role, login)
            if self.rt.identity.staff_mfa_required:
                enrolment = await self.rt.identity.start_mfa_enrolment(principal, DEMO_CLIENT)
                code = credentials.totp_code(enrolment.secret, credentials.totp_step(self.clock.now()))
                await self.rt.identity.confirm_mfa_enrolment(principal, code, DEMO_CLIENT)
                entry.totp_secret = enrolment.secret
            logins.append(entry)
            self._advance(task)
        return logins

    async def register(self, people: Sequence[Person], *, approve: bool, label: str) -> None:
        task = self._task(label, len(people))
        approver = self.staff[StaffRole.CRM_AGENT]

        async def one(item: object) -> None:
            person = item  # typed below
            assert isinstance(person, Person)
            sent = await self.customers.start_registration(person.contact_kind, person.contact)
            profile = await self.customers.complete_registration(
                sent.verification_id,
                self.inbox.codes.pop(person.contact),
                password=CUSTOMER_PASSWORD,
                accepted_terms=True,
                terms_version=TERMS_VERSION,
            )
            self.ids[person.key] = profile.id
            principal = Principal(profile.id, PrincipalKind.CUSTOMER)
            submission = KycSubmission(
                person.legal_name, person.birth, person.id_type, person.id_number, person.address
            )
            await self.customers.submit_kyc(principal, profile.id, submission)
            if approve:
                await self.customers.decide_kyc(approver, profile.id, KycDecision.VERIFY, "Demo: documents checked")

        await self._each(people, one, task)

    async def open_accounts(self) -> None:
        await self._drain()  # the current accounts open on KYC approval
        people = self.plan.people
        task = self._task("Accounts", len(people))
        tiers = self.staff[StaffRole.CRM_AGENT]

        async def one(item: object) -> None:
            assert isinstance(item, Person)
            principal = Principal(self.ids[item.key], PrincipalKind.CUSTOMER)
            accounts = await self.rt.banking.list_accounts(principal, principal.id)
            invariant(len(accounts) == 1, "the current account opened on KYC approval", key=item.key)
            self.current[item.key] = accounts[0].id
            self.numbers[item.key] = accounts[0].number
            if item.savings:
                account = await self.rt.banking.open_account(
                    principal, Product.SAVINGS, CURRENCY, branch_code=item.branch
                )
                self.savings[item.key] = account.id
            if item.business is not None:
                await self.customers.set_tier(tiers, principal.id, "premium", "Demo: business account")

        await self._each(people, one, task)

    async def add_payees(self) -> None:
        pairs = [(payer, to, name) for payer, listed in self.plan.payees.items() for to, name in listed]
        task = self._task("Payees", len(pairs))

        async def one(item: object) -> None:
            assert isinstance(item, tuple)
            payer: str
            to: str
            name: str
            payer, to, name = item
            payee = await self.rt.banking.add_payee(self._customer(payer), name, self.numbers[to])
            self.payee_ids[(payer, to)] = payee.id

        await self._each(pairs, one, task)

    async def move(self, m: Movement) -> None:
        if m.step is Step.DEPOSIT:
            account = self.savings[m.payer] if m.into_savings else self.current[m.payer]
            await self.rt.banking.teller_cash(
                self.staff[StaffRole.TELLER],
                m.key,
                CashRequest(PaymentKind.CASH_DEPOSIT, account, m.branch, m.amount_minor, CURRENCY, m.reference),
            )
            return
        request = PaymentRequest(
            from_account_id=self.current[m.payer],
            amount_minor=m.amount_minor,
            currency=CURRENCY,
            to_payee_id=None if m.to_savings else self.payee_ids[(m.payer, m.to or "")],
            to_account_id=self.savings[m.payer] if m.to_savings else None,
            reference=m.reference,
        )
        await self.rt.banking.submit_payment(self._customer(m.payer), m.key, request)

    async def movements(self, label: str, movements: Sequence[Movement], task: TaskID | None = None) -> None:
        """Run ``movements`` (independent of each other, in time order) a chunk at a time; the clock
        moves to each chunk's time, or on by a few seconds."""
        task = task if task is not None else self._task(label, len(movements))
        for i in range(0, len(movements), CONCURRENCY):
            chunk = movements[i : i + CONCURRENCY]
            self.clock.tick(3)
            self.clock.advance_to(max((m.at for m in chunk if m.at is not None), default=self.clock.now()))
            await asyncio.gather(*(self.move(m) for m in chunk))
            self._advance(task, len(chunk))

    async def history(self) -> None:
        """Day by day. The outbox relay runs beside the payments (history entries take their time from
        the ledger's event, not from when they are projected) and is drained at the end."""
        slots = self.plan.slots
        task = self._task("Payments", sum(len(s.movements) for s in slots))
        stop = asyncio.Event()
        relay = asyncio.create_task(self.rt.relay.run(stop, RELAY_POLL_S))
        try:
            for slot in slots:
                await self.movements("", slot.movements, task)
        finally:
            stop.set()
            self.rt.relay.kick()
            await relay
        await self._drain()


async def seed(
    settings: Settings,
    database_url: str,
    *,
    customers: int = DEFAULT_CUSTOMERS,
    months: int = DEFAULT_MONTHS,
    seed_value: int = DEFAULT_SEED,
    progress: Progress | None = None,
    now: Callable[[], datetime] | None = None,
) -> Outcome:
    """Seed the demo bank (once). Returns what was done; ``created`` is False when it was there."""
    if settings.env == "production":
        raise DemoIncomplete("the demo bank has published passwords: it never runs in production")
    wall = now or (lambda: datetime.now(UTC))
    began = time.perf_counter()
    tune_gc()  # thousands of short-lived objects a second: collect less often, as servers do
    plan = make_plan(customers, months, seed_value, wall())
    clock = DemoClock(plan.start.astimezone(UTC) + timedelta(hours=8))  # 08:00 in Shanghai, day 0
    runtime = Runtime.build(settings, database_url, clock)
    try:
        seeder = Seeder(runtime, clock, plan, progress)
        if await seeder.already_seeded():
            return Outcome(created=False, seconds=time.perf_counter() - began)
        staff = await seeder.create_staff()
        clock.advance_to(plan.start + timedelta(hours=9))
        await seeder.register(plan.people, approve=True, label="Customers")
        clock.advance_to(plan.start + timedelta(hours=11))
        await seeder.open_accounts()
        clock.advance_to(plan.start + timedelta(hours=14))
        await seeder.movements("Opening deposits", plan.opening)
        clock.advance_to(plan.start + timedelta(hours=16))
        await seeder.add_payees()
        await seeder.history()
        clock.advance_to(wall())
        await seeder.register(plan.applicants, approve=False, label="Applicants (KYC pending)")
        await seeder._drain()
    finally:
        await runtime.close()
    return Outcome(
        created=True,
        seconds=time.perf_counter() - began,
        customers=len(plan.people) + len(plan.applicants),
        accounts=len(seeder.current) + len(seeder.savings),
        payments=plan.movements,
        staff=staff,
    )


# -- the command's output ----------------------------------------------------------------------------


def new_progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<26}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def sample_logins(plan: Plan) -> list[Person]:
    """Customers to try, Chinese and English names: for each, one with a savings account and one who
    signs in with the other kind of contact (or, failing that, another customer)."""
    chosen: list[Person] = []
    customers = [p for p in plan.people if p.business is None]
    for chinese in (True, False):
        group = [p for p in customers if p.chinese is chinese]
        first = next((p for p in group if p.savings), group[0] if group else None)
        if first is None:
            continue
        second = next((p for p in group if p.contact_kind is not first.contact_kind), None)
        second = second or next((p for p in group if p is not first), None)
        chosen.extend(p for p in (first, second) if p is not None)
    return chosen


def logins_table(plan: Plan, staff: Iterable[StaffLogin]) -> Table:
    table = Table(title="smartbank demo: logins to try", title_justify="left")
    table.add_column("who")
    table.add_column("login", no_wrap=True)
    table.add_column("password", no_wrap=True)
    table.add_column("at", no_wrap=True)
    for p in sample_logins(plan):
        what = "customer" + (", savings" if p.savings else "")
        table.add_row(f"{p.legal_name} ({what})", p.login, CUSTOMER_PASSWORD, "/app/")
    secrets = {s.role: s.totp_secret for s in staff}
    for role, login in STAFF_LOGINS.items():
        secret = secrets.get(role)
        table.add_row(f"staff: {role.value}", login + (f"\nTOTP {secret}" if secret else ""), STAFF_PASSWORD, "/staff/")
    applicant = plan.applicants[0]
    table.add_row(f"{applicant.legal_name} (KYC pending)", applicant.login, CUSTOMER_PASSWORD, "/app/")
    return table


def plan_for(customers: int, months: int, seed_value: int) -> Plan:
    return make_plan(customers, months, seed_value, datetime.now(UTC))


def run(
    settings: Settings,
    database_url: str,
    console: Console,
    *,
    customers: int = DEFAULT_CUSTOMERS,
    months: int = DEFAULT_MONTHS,
    seed_value: int = DEFAULT_SEED,
    base_url: str = "http://127.0.0.1:8000",
) -> Outcome:
    """The ``smartbank demo`` command (and ``up``): seed once, then print the logins and URLs."""
    configure_logging("WARNING", settings.log_format)  # a line per message sent would bury the progress
    try:
        with new_progress(console) as progress, asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            outcome = runner.run(
                seed(
                    settings, database_url, customers=customers, months=months, seed_value=seed_value, progress=progress
                )
            )
    finally:
        configure_logging(settings.log_level, settings.log_format)
    plan = plan_for(customers, months, seed_value)
    if outcome.created:
        console.print(
            f"[green]demo bank seeded in {outcome.seconds:.1f} s: {outcome.customers} customers, "
            f"{outcome.accounts} accounts, {outcome.payments} payments and deposits over {months} months[/green]"
        )
    else:
        console.print(
            f"[green]demo bank already seeded (seed {seed_value}); nothing added ({outcome.seconds:.1f} s)[/green]"
        )
        if settings.staff_mfa_required:
            console.print("Demo staff TOTP secrets were printed when the demo was first seeded.")
    console.print(logins_table(plan, outcome.staff))
    for path, what in URLS:
        console.print(f"{what:<10} {base_url}{path}")
    partner, registered = ensure_sample_partner(settings, database_url, settings.data_dir / DEMO_KEY_FILE)
    if registered:
        console.print(partner.guide())
    else:
        console.print(
            f"open banking sandbox app {partner.client_id}: "
            f".venv/bin/python examples/openbanking_flow.py --config {partner.path}"
        )
    return outcome
