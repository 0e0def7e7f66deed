"""Deny by default on every server-rendered page, generated from the app's own routes.

Someone not signed in who asks for any page of the customer app or the staff console (other than the
public ones: log in, sign up, forgotten password, language, static files) is sent to the login page
or refused, and is never shown a page. A customer who asks for any staff page is refused or sent to
the staff login. A new page that forgets its sign-in check fails here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from starlette.routing import Route

from smartbank.platform.settings import Settings
from tests.banking.http_helpers import Bank, onboard, open_bank

from .test_pages import sign_in

#: Pages anyone may open (path, method).
PUBLIC: frozenset[tuple[str, str]] = frozenset(
    {
        ("/app", "GET"),
        ("/app/login", "GET"),
        ("/app/login", "POST"),
        ("/app/login/mfa", "POST"),
        ("/app/language", "POST"),
        ("/app/signup", "GET"),
        ("/app/signup", "POST"),
        ("/app/signup/verify", "POST"),
        ("/app/signup/resend", "POST"),
        ("/app/password/forgot", "GET"),
        ("/app/password/forgot", "POST"),
        ("/app/password/reset", "POST"),
        ("/app/password/resend", "POST"),
        ("/app/password/done", "GET"),
        ("/app/logout", "POST"),
        ("/staff", "GET"),
        ("/staff/login", "GET"),
        ("/staff/login", "POST"),
        ("/staff/login/mfa", "POST"),
        ("/staff/language", "POST"),
        ("/staff/logout", "POST"),
    }
)


@pytest.fixture(scope="module")
def bank(fresh_database: Callable[[], str], settings: Settings) -> Iterator[Bank]:
    with open_bank(fresh_database(), settings, client_ip="203.0.113.70") as opened:
        yield opened


def routes(items: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of every plain route, through included routers (FastAPI keeps them nested)."""
    for item in items:
        included = getattr(item, "original_router", None)
        if included is not None:
            yield from routes(included.routes, prefix + (item.include_context.prefix or ""))
        elif isinstance(item, Route):
            yield prefix + item.path, set(item.methods or ())


def pages(bank: Bank, prefix: str) -> list[tuple[str, str, str]]:
    """Every (template, method, path) of the app's pages under ``prefix``, path parameters filled in."""
    found = []
    for template, methods in routes(bank.client.app.routes):  # type: ignore[attr-defined]
        if not (template == prefix or template.startswith(prefix + "/")):
            continue
        path = re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), template)
        found += [(template, method, path) for method in sorted(methods - {"HEAD"})]
    assert len(found) > 10, found  # the walk found the pages
    return found


def call(bank: Bank, method: str, path: str) -> tuple[int, str]:
    response = bank.client.request(method, path, data={} if method == "POST" else None, follow_redirects=False)
    return response.status_code, response.headers.get("location", "")


def test_every_customer_page_sends_someone_not_signed_in_to_log_in(bank: Bank) -> None:
    bank.client.cookies.clear()
    checked = 0
    for template, method, path in pages(bank, "/app"):
        if (template, method) in PUBLIC:
            continue
        status, location = call(bank, method, path)
        assert (status in (302, 303) and location.startswith("/app/login")) or status == 403, (
            f"{method} {template} answered {status} {location!r} to someone not signed in"
        )
        checked += 1
    assert checked > 20


def test_every_staff_page_refuses_someone_not_signed_in_and_a_customer(bank: Bank) -> None:
    bank.client.cookies.clear()
    staff_pages = [(t, m, p) for t, m, p in pages(bank, "/staff") if (t, m) not in PUBLIC]
    assert len(staff_pages) > 8
    for template, method, path in staff_pages:
        status, location = call(bank, method, path)
        assert (status in (302, 303) and location.startswith("/staff/login")) or status == 403, (
            f"{method} {template} answered {status} {location!r} to someone not signed in"
        )
    sign_in(bank, onboard(bank))
    for template, method, path in staff_pages:
        status, location = call(bank, method, path)
        assert (status in (302, 303) and location.startswith("/staff/login")) or status == 403, (
            f"{method} {template} answered {status} {location!r} to a customer"
        )
