#!/usr/bin/env python3
"""HTTP payment throughput of a real ``smartbank serve``, against its own ``/healthz``, in one run.

    .venv/bin/python bench/payments.py            # quick: under a minute
    .venv/bin/python bench/payments.py --full     # longer windows, more customers and clients

1. A PostgreSQL server: ``DATABASE_URL`` when set, else an embedded one in a temporary folder (the
   helpers of ``bench/ledger.py``); a fresh database on it, dropped at the end.
2. Set-up through the services, in this process, on a clock two days back (so payees are older than
   the 24 hours after which paying them needs no step-up): N customers registered, KYC verified, the
   account opened on KYC, cash paid in at a branch, and each customer's payee the next customer.
3. ``smartbank serve --workers <one per CPU>`` as a subprocess, with generous money-movement rate
   limits (``SMARTBANK_MONEY_MOVE_PER_IP_PER_MIN`` and ``..._PER_PRINCIPAL_PER_MIN``, said in the output).
4. Customers log in over HTTP (bearer tokens). Requests come from several loopback addresses
   (127.0.0.2, ...), as from several client machines: the per-address login limit of 20 a minute
   would otherwise stop the set-up.
5. An asyncio ``httpx.AsyncClient`` load generator on this machine: C concurrent clients, each posting
   payments (each with its own Idempotency-Key) for its own customers for the measured window; then
   ``GET /healthz`` at the same concurrency for as long, as the framework's ceiling on this machine.
6. Checks: every 201 is one completed payment in the database, and ``LedgerService.verify()`` finds
   the ledger sound.

Progress goes to stderr; the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvloop
from pydantic import SecretStr
from stdnum.cn import ric

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ledger import BenchError, open_server, say, scratch_databases
from smartbank.banking.model import CashRequest, PaymentKind
from smartbank.customers.model import Address, ContactKind, IdType, KycDecision, KycSubmission
from smartbank.identity.model import Principal, PrincipalKind, StaffRole
from smartbank.kernel.clock import FrozenClock, SystemClock
from smartbank.kernel.ids import new_id
from smartbank.ledger.service import LedgerService
from smartbank.platform.db import Database, create_engine
from smartbank.platform.logging import configure_logging
from smartbank.platform.migrate import upgrade
from smartbank.platform.settings import Settings
from smartbank.web.app import Runtime

PASSWORD = "violet-harbour-lantern-42"
FUNDING_MINOR = 10_000_000  # 100,000.00 CNY per customer
MAX_PAYMENT_MINOR = 99  # small payments: the basic tier's daily limit (20,000.00) is never reached
RATE_LIMIT = 10_000_000  # money-moving requests a minute, per address and per principal, for this run
LOGINS_PER_ADDRESS = 15  # under identity's 20 logins a minute per address
ADDRESS = Address(country="CN", region="北京市", city="北京市", lines=("东城区 东长安街 1 号",), postal_code="100006")


@dataclass
class Options:
    full: bool
    duration: float
    warmup: float
    concurrency: int
    customers: int
    workers: int
    addresses: int
    seed: int


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--full", action="store_true", help="30 s windows, 64 clients, 256 customers")
    parser.add_argument("--duration", type=float, help="measured seconds per case (default 8, --full 30)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each case (default 2, --full 5)")
    parser.add_argument("--concurrency", type=int, help="concurrent HTTP clients (default 32, --full 64)")
    parser.add_argument("--customers", type=int, help="paying customers (default 64, --full 256)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="uvicorn workers (one per CPU)")
    parser.add_argument(
        "--addresses", type=int, help="loopback source addresses of the clients (default: 8, or enough for the logins)"
    )
    parser.add_argument("--seed", type=int, default=1)
    ns = parser.parse_args(argv)
    concurrency = ns.concurrency or (64 if ns.full else 32)
    customers = ns.customers or (256 if ns.full else 64)
    if customers < concurrency:
        parser.error("--customers must be at least --concurrency (each client pays for customers of its own)")
    addresses = ns.addresses or max(8, -(-customers // LOGINS_PER_ADDRESS))
    if not 1 <= addresses <= 250:
        parser.error("--addresses must be 1..250")
    if customers > LOGINS_PER_ADDRESS * addresses:
        parser.error(f"{customers} logins need at least {-(-customers // LOGINS_PER_ADDRESS)} --addresses")
    return Options(
        full=ns.full,
        duration=ns.duration if ns.duration is not None else (30.0 if ns.full else 8.0),
        warmup=ns.warmup if ns.warmup is not None else (5.0 if ns.full else 2.0),
        concurrency=concurrency,
        customers=customers,
        workers=ns.workers,
        addresses=addresses,
        seed=ns.seed,
    )


# -- set-up through the services ---------------------------------------------------------------------


@dataclass
class Payer:
    id: uuid.UUID
    login: str
    account_id: uuid.UUID
    payee_id: uuid.UUID | None = None
    token: str = ""


def _submission(rng: random.Random, i: int) -> KycSubmission:
    birth = date(1950, 1, 1) + timedelta(days=i)  # one birth date per customer: ID numbers stay unique
    body = f"110101{birth:%Y%m%d}{rng.randrange(1000):03d}"
    return KycSubmission(
        legal_name="张伟",
        date_of_birth=birth,
        id_type=IdType.PRC_RESIDENT_ID,
        id_number=body + ric.calc_check_digit(body + "0"),
        address=ADDRESS,
    )


async def onboard(runtime: Runtime, url: str, n: int, seed: int) -> list[Payer]:
    """N verified, funded customers with logins; each pays the next one (a ring of payees)."""
    rng = random.Random(seed)
    officer = Principal(new_id(), PrincipalKind.STAFF, frozenset({StaffRole.CRM_AGENT}))
    teller = Principal(new_id(), PrincipalKind.STAFF, frozenset({StaffRole.TELLER}))
    payers: list[Payer] = []
    run = secrets.token_hex(3)
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(n):
            email = f"bench-{run}-{i}@example.com"
            started = await runtime.customers.start_registration(ContactKind.EMAIL, email)
            row = conn.execute(
                "SELECT payload->'params'->>'code' FROM platform.outbox WHERE topic = 'notifications.requested'"
                " AND payload->>'recipient' = %s ORDER BY seq DESC LIMIT 1",
                (email,),
            ).fetchone()
            assert row is not None
            profile = await runtime.customers.complete_registration(
                started.verification_id, row[0], password=PASSWORD, accepted_terms=True, terms_version="bench"
            )
            me = Principal(profile.id, PrincipalKind.CUSTOMER)
            await runtime.customers.submit_kyc(me, profile.id, _submission(rng, i))
            await runtime.customers.decide_kyc(officer, profile.id, KycDecision.VERIFY, "bench set-up")
            account = await runtime.banking.open_account_on_kyc(new_id(), profile.id)
            assert account is not None
            cash = CashRequest(PaymentKind.CASH_DEPOSIT, account.id, "0001", FUNDING_MINOR, "CNY", "bench funding")
            await runtime.banking.teller_cash(teller, f"bench-fund-{account.id}", cash)
            payers.append(Payer(profile.id, email, account.id))
            if (i + 1) % 16 == 0:
                say(f"set-up: {i + 1}/{n} customers")
    numbers = {p.account_id: (await runtime.banking.get_account(teller, p.account_id)).account.number for p in payers}
    for i, payer in enumerate(payers):
        payee = payers[(i + 1) % n]
        principal = Principal(payer.id, PrincipalKind.CUSTOMER)
        payer.payee_id = (await runtime.banking.add_payee(principal, "Bench Payee", numbers[payee.account_id])).id
    while await runtime.relay.relay_once():  # deliver set-up events now, not during the measured window
        pass
    return payers


# -- the server --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(env: dict[str, str], workers: int, work_dir: Path) -> ServerProcess:
    port = free_port()
    log_path = work_dir / "serve.log"
    smartbank = Path(sys.executable).parent / "smartbank"
    command = [str(smartbank), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    say(f"server: {' '.join(command[1:])}")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return ServerProcess(proc, f"http://127.0.0.1:{port}", log_path)


async def wait_ready(server: ServerProcess, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=server.base_url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise BenchError(f"the server exited ({server.proc.returncode}):\n{server.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise BenchError(f"the server was not ready in {timeout_s:.0f} s:\n{server.tail()}")


# -- load ----------------------------------------------------------------------------------------------


def clients_for(base_url: str, addresses: int, concurrency: int) -> list[httpx.AsyncClient]:
    """One HTTP client per loopback source address (127.0.0.2, 127.0.0.3, ...)."""
    per_client = max(1, -(-concurrency // addresses))
    return [
        httpx.AsyncClient(
            base_url=base_url,
            timeout=60.0,
            transport=httpx.AsyncHTTPTransport(local_address=f"127.0.0.{2 + i}"),
            limits=httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client),
        )
        for i in range(addresses)
    ]


async def log_in(clients: list[httpx.AsyncClient], payers: list[Payer]) -> None:
    """Bearer tokens over HTTP, at most LOGINS_PER_ADDRESS logins from each address."""
    if len(payers) > LOGINS_PER_ADDRESS * len(clients):
        raise BenchError(f"{len(payers)} logins need at least {-(-len(payers) // LOGINS_PER_ADDRESS)} --addresses")

    async def one(i: int, payer: Payer) -> None:
        client = clients[i // LOGINS_PER_ADDRESS]
        response = await client.post(
            "/v1/auth/login", json={"login": payer.login, "password": PASSWORD, "client": "token"}
        )
        if response.status_code != 200:
            raise BenchError(f"login failed: {response.status_code} {response.text[:200]}")
        payer.token = response.json()["access_token"]

    for start in range(0, len(payers), 16):
        await asyncio.gather(*(one(i, payers[i]) for i in range(start, min(start + 16, len(payers)))))


@dataclass
class Tally:
    measuring: bool = False
    ok: int = 0
    latencies_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    ok_all: int = 0  # warm-up included: for the database check


Request = Callable[[httpx.AsyncClient, int, int], Awaitable[httpx.Response]]


async def drive(
    clients: list[httpx.AsyncClient], concurrency: int, request: Request, ok_status: int, warmup: float, duration: float
) -> tuple[Tally, float]:
    tally = Tally()
    stop = asyncio.Event()

    async def worker(k: int) -> None:
        client = clients[k % len(clients)]
        n = 0
        while not stop.is_set():
            started = time.perf_counter()
            try:
                response = await request(client, k, n)
                status = response.status_code
                code = response.json().get("error", {}).get("code", "") if status != ok_status else ""
            except httpx.HTTPError as exc:
                status, code = 0, type(exc).__name__
            elapsed = time.perf_counter() - started
            n += 1
            if status == ok_status:
                tally.ok_all += 1
            if not tally.measuring:
                continue
            if status == ok_status:
                tally.ok += 1
                tally.latencies_s.append(elapsed)
            else:
                tally.errors[f"{status} {code}".strip()] += 1

    tasks = [asyncio.create_task(worker(k)) for k in range(concurrency)]
    await asyncio.sleep(warmup)
    tally.measuring = True
    started = time.perf_counter()
    await asyncio.sleep(duration)
    tally.measuring = False
    seconds = time.perf_counter() - started
    stop.set()
    await asyncio.gather(*tasks)
    return tally, seconds


def summary(tally: Tally, seconds: float) -> dict[str, Any]:
    lat = sorted(tally.latencies_s)
    p50 = statistics.median(lat) * 1000 if lat else None
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else None
    return {
        "per_s": round(tally.ok / seconds, 1),
        "ok": tally.ok,
        "seconds": round(seconds, 2),
        "latency_ms_p50": round(p50, 2) if p50 is not None else None,
        "latency_ms_p99": round(p99, 2) if p99 is not None else None,
        "errors": dict(tally.errors),
    }


async def bench(opts: Options, url: str, work_dir: Path) -> dict[str, Any]:
    keys = {"SMARTBANK_SECRET_KEY": secrets.token_urlsafe(48), "SMARTBANK_AUDIT_KEY": secrets.token_urlsafe(48)}
    base_env = {
        **os.environ,
        **keys,
        "DATABASE_URL": url,
        "SMARTBANK_ENV": "development",
        "SMARTBANK_DATA_DIR": str(work_dir / "data"),
        "SMARTBANK_LOG_LEVEL": "WARNING",
        "SMARTBANK_LOG_FORMAT": "json",
        "SMARTBANK_MONEY_MOVE_PER_IP_PER_MIN": str(RATE_LIMIT),
        "SMARTBANK_MONEY_MOVE_PER_PRINCIPAL_PER_MIN": str(RATE_LIMIT),
    }
    settings = Settings(
        env="development",
        data_dir=work_dir / "data",
        secret_key=SecretStr(keys["SMARTBANK_SECRET_KEY"]),
        audit_key=SecretStr(keys["SMARTBANK_AUDIT_KEY"]),
    )
    upgrade(url)

    say(f"set-up: {opts.customers} customers through the services (registration, KYC, account, cash, payee)")
    started = time.perf_counter()
    runtime = Runtime.build(settings, url, FrozenClock(SystemClock().now() - timedelta(days=2)))
    try:
        payers = await onboard(runtime, url, opts.customers, opts.seed)
    finally:
        await runtime.close()
    say(f"set-up done in {time.perf_counter() - started:.1f} s")

    say(
        f"rate limits for this run: SMARTBANK_MONEY_MOVE_PER_IP_PER_MIN={RATE_LIMIT} and "
        f"SMARTBANK_MONEY_MOVE_PER_PRINCIPAL_PER_MIN={RATE_LIMIT} (defaults 60 and 30)"
    )
    server = start_server(base_env, opts.workers, work_dir)
    try:
        await wait_ready(server)
        clients = clients_for(server.base_url, opts.addresses, opts.concurrency)
        try:
            await log_in(clients, payers)
            say(f"{len(payers)} customers logged in over HTTP from {opts.addresses} loopback addresses")
            # Client k pays for customers k, k + C, k + 2C, ...: no two clients pay from one account at once.
            mine = [payers[k :: opts.concurrency] for k in range(opts.concurrency)]
            rng = random.Random(opts.seed)
            amounts = [rng.randint(1, MAX_PAYMENT_MINOR) for _ in range(997)]

            async def pay(client: httpx.AsyncClient, k: int, n: int) -> httpx.Response:
                payer = mine[k][n % len(mine[k])]
                return await client.post(
                    "/v1/payments",
                    json={
                        "from_account_id": str(payer.account_id),
                        "to_payee_id": str(payer.payee_id),
                        "amount_minor": amounts[(k * 31 + n) % len(amounts)],
                        "currency": "CNY",
                        "reference": "bench",
                    },
                    headers={"Authorization": f"Bearer {payer.token}", "Idempotency-Key": str(uuid.uuid4())},
                )

            async def health(client: httpx.AsyncClient, k: int, n: int) -> httpx.Response:
                return await client.get("/healthz")

            say(f"healthz: {opts.concurrency} clients, {opts.warmup:.0f} s warm-up + {opts.duration:.0f} s")
            health_tally, health_s = await drive(clients, opts.concurrency, health, 200, opts.warmup, opts.duration)
            say(f"payments: {opts.concurrency} clients, {opts.warmup:.0f} s warm-up + {opts.duration:.0f} s")
            pay_tally, pay_s = await drive(clients, opts.concurrency, pay, 201, opts.warmup, opts.duration)
        finally:
            for client in clients:
                await client.aclose()
    finally:
        server.stop()
        if server.proc.returncode not in (0, None, -signal.SIGINT):
            say(f"server exit code {server.proc.returncode}:\n{server.tail()}")

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status <> 'completed')"
            " FROM banking.payments WHERE kind = 'transfer'"
        ).fetchone()
    assert row is not None
    completed, other = int(row[0]), int(row[1])
    if completed != pay_tally.ok_all:
        raise BenchError(f"{pay_tally.ok_all} payments answered 201 but {completed} are completed in the database")
    db = Database(create_engine(url, settings))
    try:
        problems = await LedgerService(db, SystemClock()).verify()
    finally:
        await db.dispose()
    if problems:
        raise BenchError(f"ledger verify: {problems[:5]}")
    say(f"checks: {completed} completed payments = 201 answers; {other} not completed; ledger verify clean")

    payments = summary(pay_tally, pay_s)
    healthz = summary(health_tally, health_s)
    ratio = round(payments["per_s"] / healthz["per_s"], 4) if healthz["per_s"] else None
    return {
        "bench": "payments_http",
        "mode": "full" if opts.full else "quick",
        "payments": payments,
        "healthz": healthz,
        "payments_to_healthz": ratio,
        "concurrency": opts.concurrency,
        "customers": opts.customers,
        "uvicorn_workers": opts.workers,
        "client_addresses": opts.addresses,
        "cpus": os.cpu_count(),
        "rate_limits": {
            "SMARTBANK_MONEY_MOVE_PER_IP_PER_MIN": RATE_LIMIT,
            "SMARTBANK_MONEY_MOVE_PER_PRINCIPAL_PER_MIN": RATE_LIMIT,
            "note": "raised for this run; the defaults are 60 and 30",
        },
        "payments_completed_in_db": completed,
        "ledger_verify": "ok",
    }


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    configure_logging("WARNING", "console")
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    say(f"load average (1 min) {load_start:.2f} on {os.cpu_count()} CPUs; server, database and clients share them")
    server = open_server(None)
    work_dir = Path(tempfile.mkdtemp(prefix="smartbank-bench-payments-"))
    try:
        with scratch_databases(server, f"smartbank_bench_pay_{secrets.token_hex(4)}") as (url,):
            report = uvloop.run(bench(opts, url, work_dir))
    except BenchError as exc:
        say(f"FAILED: {exc}")
        return 1
    finally:
        server.stop()
        shutil.rmtree(work_dir, ignore_errors=True)
    report["embedded"] = server.embedded
    report["loadavg_1m_start"] = round(load_start, 2)
    report["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    say(
        f"payments {report['payments']['per_s']}/s (p50 {report['payments']['latency_ms_p50']} ms, "
        f"p99 {report['payments']['latency_ms_p99']} ms); healthz {report['healthz']['per_s']}/s; "
        f"ratio {report['payments_to_healthz']}; done in {time.perf_counter() - started:.0f} s"
    )
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
