"""Crash safety: ``kill -9`` the real server under load, restart it, and check nothing acknowledged was lost.

A transfer the server acknowledged (201 or 200) must exist exactly once after the crash; a transfer
that was in flight may or may not have been written, and resubmitting it with the same id must then
either create it (201) or return the original (200), never post it twice.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from ..conftest import INTERNAL, INTERNAL_TOKEN

pytestmark = pytest.mark.slow

SMARTBANK = Path(sys.executable).parent / "smartbank"
CUSTOMERS = 8
CLIENTS = 16
ACKS_BEFORE_KILL = 400


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBANK_")}
    env.update(
        DATABASE_URL=database_url,
        SMARTBANK_ENV="test",
        SMARTBANK_LOG_LEVEL="WARNING",
        SMARTBANK_LOG_FORMAT="json",
        SMARTBANK_WORKERS="1",
        SMARTBANK_INTERNAL_TOKEN=INTERNAL_TOKEN,
    )
    return env


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextmanager
def running_server(database_url: str, log: Path) -> Iterator[Server]:
    """``smartbank serve`` in a subprocess, ready (``/readyz`` 200); SIGKILLed on the way out if still alive."""
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(SMARTBANK), "serve", "--port", str(port), "--workers", "1"],
            env=server_env(database_url),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"server exited with {process.returncode}:\n{server.tail()}"
            try:
                if httpx.get(f"{server.base_url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"server not ready after 30 s:\n{server.tail()}"
            time.sleep(0.05)
        yield server
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@dataclass
class Load:
    """What the clients sent and what the server answered, shared by the client threads."""

    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)  # every id sent, with its body
    acked: set[str] = field(default_factory=set)
    in_flight: set[str] = field(default_factory=set)  # sent, then the connection broke
    unexpected: list[tuple[str, int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    enough: threading.Event = field(default_factory=threading.Event)


def client_loop(base_url: str, accounts: list[str], load: Load, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=base_url, timeout=10, headers=INTERNAL) as http:
        while True:
            debit, credit = rng.sample(accounts, 2)
            transfer_id = str(uuid.uuid4())
            body: dict[str, Any] = {
                "id": transfer_id,
                "debit_account_id": debit,
                "credit_account_id": credit,
                "amount_minor": rng.randint(1, 10_000),
                "currency": "CNY",
                "code": 1,
                "metadata": {"client": seed},
            }
            with load.lock:
                load.bodies[transfer_id] = body
            try:
                response = http.post("/v1/ledger/transfers", json=body)
            except httpx.ConnectError:
                return  # the server is gone; this one never reached it (resubmitted later all the same)
            except httpx.TransportError:
                with load.lock:
                    load.in_flight.add(transfer_id)
                return
            with load.lock:
                if response.status_code in (200, 201):
                    load.acked.add(transfer_id)
                    if len(load.acked) >= ACKS_BEFORE_KILL:
                        load.enough.set()
                else:
                    load.unexpected.append((transfer_id, response.status_code, response.text))


def create_accounts(base_url: str) -> list[str]:
    accounts = []
    with httpx.Client(base_url=base_url, timeout=10, headers=INTERNAL) as http:
        for kind in ["asset"] + ["liability"] * CUSTOMERS:
            account_id = str(uuid.uuid4())
            response = http.post(
                "/v1/ledger/accounts", json={"id": account_id, "currency": "CNY", "kind": kind, "code": 100}
            )
            assert response.status_code == 201, response.text
            accounts.append(account_id)
    return accounts


def wait_for_dead_server_sessions(conn: psycopg.Connection[Any]) -> None:
    """The killed server's sessions may still be finishing a statement (and commit it): wait them out."""
    deadline = time.monotonic() + 15
    while True:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'smartbank' AND pid <> pg_backend_pid()"
        ).fetchone()
        conn.commit()
        if row == (0,):
            return
        assert time.monotonic() < deadline, f"{row} sessions of the killed server still open"
        time.sleep(0.05)


def test_acknowledged_transfers_survive_kill_9(fresh_database: Callable[[], str], tmp_path: Path) -> None:
    database_url = fresh_database()
    log = tmp_path / "server.log"
    load = Load()

    with running_server(database_url, log) as server:
        accounts = create_accounts(server.base_url)
        threads = [
            threading.Thread(target=client_loop, args=(server.base_url, accounts, load, seed), daemon=True)
            for seed in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        assert load.enough.wait(timeout=30), f"only {len(load.acked)} acks in 30 s:\n{server.tail()}"
        os.kill(server.process.pid, signal.SIGKILL)
        assert server.process.wait(timeout=10) == -signal.SIGKILL
        for thread in threads:
            thread.join(timeout=15)
            assert not thread.is_alive()

    assert load.unexpected == []
    assert len(load.acked) >= ACKS_BEFORE_KILL
    assert load.in_flight, "no request was in flight when the server was killed"
    assert not (load.acked & load.in_flight)
    unacked = set(load.bodies) - load.acked

    with psycopg.connect(database_url) as conn:
        wait_for_dead_server_sessions(conn)
        written = [str(r[0]) for r in conn.execute("SELECT id FROM ledger.transfers").fetchall()]
    # Nothing but what was sent; every ack was durable; at most the unacknowledged ones are missing.
    assert set(written) <= set(load.bodies)
    assert load.acked <= set(written)
    missing_before_retry = set(load.bodies) - set(written)

    with (
        running_server(database_url, log) as server,
        httpx.Client(base_url=server.base_url, timeout=10, headers=INTERNAL) as http,
    ):
        for transfer_id in sorted(load.acked):
            response = http.get(f"/v1/ledger/transfers/{transfer_id}")
            assert response.status_code == 200, response.text
            got, sent = response.json(), load.bodies[transfer_id]
            assert (got["debit_account_id"], got["credit_account_id"], got["amount_minor"]) == (
                sent["debit_account_id"],
                sent["credit_account_id"],
                sent["amount_minor"],
            )

        retry_status: dict[str, int] = {}
        for transfer_id in sorted(unacked):
            response = http.post("/v1/ledger/transfers", json=load.bodies[transfer_id])
            assert response.status_code in (200, 201), response.text
            retry_status[transfer_id] = response.status_code
        # 201 exactly for those not written before the crash; 200 (the original) for those that were.
        assert {i for i, s in retry_status.items() if s == 201} == missing_before_retry

        # Replaying acknowledged ones after the restart returns the original.
        for transfer_id in sorted(load.acked)[:50]:
            assert http.post("/v1/ledger/transfers", json=load.bodies[transfer_id]).status_code == 200

        api_balances = {}
        for account in accounts:
            response = http.get(f"/v1/ledger/accounts/{account}/balances")
            assert response.status_code == 200
            api_balances[account] = response.json()

    everything = sorted(load.bodies)
    with psycopg.connect(database_url) as conn:
        acked_rows = conn.execute(
            "SELECT count(*), count(DISTINCT id) FROM ledger.transfers WHERE id = ANY(%s::uuid[])",
            (sorted(load.acked),),
        ).fetchone()
        assert acked_rows == (len(load.acked), len(load.acked))
        total = conn.execute(
            "SELECT count(*), count(DISTINCT id), coalesce(sum(amount_minor), 0) FROM ledger.transfers"
        ).fetchone()
        assert total == (len(everything), len(everything), sum(b["amount_minor"] for b in load.bodies.values()))
        by_id: dict[str, int] = dict(conn.execute("SELECT id::text, amount_minor FROM ledger.transfers").fetchall())
        assert by_id == {i: b["amount_minor"] for i, b in load.bodies.items()}

        # Balances equal the sums of the transfers the clients sent: each applied exactly once.
        debits: Counter[str] = Counter()
        credits: Counter[str] = Counter()
        for body in load.bodies.values():
            debits[body["debit_account_id"]] += body["amount_minor"]
            credits[body["credit_account_id"]] += body["amount_minor"]
        rows = conn.execute(
            "SELECT id::text, debits_posted, credits_posted, debits_pending, credits_pending"
            " FROM ledger.accounts WHERE id = ANY(%s::uuid[])",
            (accounts,),
        ).fetchall()
        assert {r[0]: r[1:] for r in rows} == {a: (debits[a], credits[a], 0, 0) for a in accounts}
        for account in accounts:
            assert (api_balances[account]["debits_posted"], api_balances[account]["credits_posted"]) == (
                debits[account],
                credits[account],
            )

        # The outbox was written in the same transactions: every transfer announced exactly once.
        announced = [
            r[0]
            for r in conn.execute(
                "SELECT t FROM platform.outbox o, jsonb_array_elements_text(o.payload->'id') t"
                " WHERE o.topic = 'ledger.transfers_created'"
            ).fetchall()
        ]
        assert sorted(announced) == everything

    verify = subprocess.run(
        [str(SMARTBANK), "ledger", "verify"],
        env=server_env(database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "all invariants hold" in verify.stderr
