"""The web app served by uvicorn on a free port (a thread with its own event loop), and Debian's Chromium.

The app runs on a frozen clock, so a test can age a payee past 24 hours or move to the next TOTP
step. Set-up goes through the services on the server's own event loop (their pools live there).
Screenshots go to ``artifacts/screenshots/`` (gitignored) at 360 px and 1280 px.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn

from smartbank.kernel.clock import FrozenClock
from smartbank.platform.settings import Settings
from smartbank.web.app import Runtime, create_app
from tests.banking.http_helpers import START

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
STEP_UP_MINOR = 100_000  # 1,000 CNY
WIDTHS = {"phone": (360, 740), "desktop": (1280, 900)}


@dataclass
class LiveBank:
    """What ``tests.banking.http_helpers.onboard`` needs (runtime, run, url), plus the server's address."""

    base_url: str
    url: str
    clock: FrozenClock
    app: Any
    loop: asyncio.AbstractEventLoop

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        async def call() -> T:
            return await fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=60)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def live_bank(fresh_database: Callable[[], str]) -> Iterator[LiveBank]:
    url = fresh_database()
    clock = FrozenClock(START)
    # A basic-tier customer may pay at most 5,000 CNY at once, which is also the default step-up
    # threshold (amounts strictly above it): lower the threshold so that a payment can cross it.
    settings = Settings(env="test", db_pool_size=5, db_pool_overflow=5, banking_step_up_threshold_minor=STEP_UP_MINOR)
    app = create_app(settings, database_url=url, clock=clock)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", loop="asyncio", lifespan="on")
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the app did not start"
        time.sleep(0.02)
    try:
        yield LiveBank(f"http://127.0.0.1:{port}", url, clock, app, loop)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        loop.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield instance
        instance.close()


def shoot(page: Any, name: str) -> None:
    """Full-page screenshots of what ``page`` shows at phone and desktop widths."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size
    for label, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(original)


def reload_until_visible(page: Any, locator: Any, timeout_s: float = 15.0, look_ms: int = 250) -> None:
    """Reload ``page`` until ``locator`` shows: for what an outbox consumer writes after the request
    (the account opened on KYC, history and notices projected from the ledger). With JavaScript off
    a page never changes by itself; each look waits through Playwright's ``expect``, never a sleep."""
    from playwright.sync_api import expect

    deadline = time.monotonic() + timeout_s
    while True:
        page.reload()
        try:
            expect(locator).to_be_visible(timeout=look_ms)
            return
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
