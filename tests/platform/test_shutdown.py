"""``smartbank serve`` on the embedded PostgreSQL stops that server when it is told to stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from smartbank.platform.embedded_pg import USERS_FILE, forget_dead_users

SMARTBANK = Path(sys.executable).with_name("smartbank")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _postmaster(pgdata: Path) -> int | None:
    """The pid of the server running in ``pgdata``, if one is."""
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def _stopped(pgdata: Path, within_s: float = 30) -> bool:
    deadline = time.monotonic() + within_s
    while _postmaster(pgdata) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@contextmanager
def _serving(data_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``smartbank serve`` on the embedded server in ``data_dir``, ready; killed if still alive after."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env |= {"SMARTBANK_DATA_DIR": str(data_dir), "SMARTBANK_PORT": str(port), "SMARTBANK_ENV": "development"}
    log_path = data_dir / f"serve-{port}.log"
    with log_path.open("wb") as log:
        # restore_signals: not inheriting an ignored SIGINT, as a background job of a shell would.
        process = subprocess.Popen(
            [str(SMARTBANK), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, restore_signals=True
        )
        try:
            deadline = time.monotonic() + 120
            while not _ready(port):
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "not ready within 120 s"
                time.sleep(0.2)
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    left = _postmaster(tmp_path / "pgdata")
    if left is not None:  # a failed test leaves no server behind
        os.kill(left, signal.SIGQUIT)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_its_embedded_server_on_a_signal(data_dir: Path, sig: signal.Signals) -> None:
    with _serving(data_dir) as process:
        assert _postmaster(data_dir / "pgdata") is not None
        process.send_signal(sig)
        assert process.wait(timeout=60) in (0, 128 + sig)

    assert _stopped(data_dir / "pgdata")


def test_a_killed_user_does_not_keep_the_server_running_after_the_next_stop(data_dir: Path) -> None:
    with _serving(data_dir) as first:
        first.kill()  # no exit handlers: it stays on the server's list of users
        first.wait()
    assert _postmaster(data_dir / "pgdata") is not None

    with _serving(data_dir) as second:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)

    assert _stopped(data_dir / "pgdata")


def test_forget_dead_users_keeps_the_living(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    (tmp_path / USERS_FILE).write_text(json.dumps([os.getpid(), gone.pid]))

    assert forget_dead_users(tmp_path) == [os.getpid()]
    assert json.loads((tmp_path / USERS_FILE).read_text()) == [os.getpid()]
    assert forget_dead_users(tmp_path / "missing") == []
