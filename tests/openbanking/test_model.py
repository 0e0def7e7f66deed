"""The pure open-banking rules: redirect URIs, permissions, consent windows and expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from smartbank.openbanking.model import (
    ConsentStatus,
    consent_window_problems,
    permission_problems,
    redirect_uri_problem,
    status_now,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "uri",
    [
        "https://partner.example/cb",
        "https://partner.example:8443/cb?tenant=1",
        "http://localhost/cb",
        "http://localhost:3000/cb",
        "http://127.0.0.1:8080/cb",
        "http://[::1]/cb",
    ],
)
def test_https_and_loopback_redirect_uris_are_accepted(uri: str) -> None:
    assert redirect_uri_problem(uri) is None


@pytest.mark.parametrize(
    "uri",
    [
        "http://partner.example/cb",
        "http://localhost.partner.example/cb",
        "http://10.0.0.1/cb",
        "https://partner.example/cb#x",
        "https:///cb",
        "https://user:pw@partner.example/cb",
        "javascript:alert(1)",
        "com.partner.app:/cb",
        "https://partner.example/c b",
        "https://partner.example/" + "a" * 600,
    ],
)
def test_other_redirect_uris_are_refused(uri: str) -> None:
    assert redirect_uri_problem(uri) is not None


def test_permissions_follow_the_v4_rules() -> None:
    assert permission_problems(["ReadAccountsBasic", "ReadBalances"]) == []
    assert permission_problems(["ReadTransactionsDetail", "ReadTransactionsDebits"]) == []
    assert permission_problems([]) == ["at least one permission is required"]
    assert permission_problems(["ReadBalances", "ReadBalances"]) == ["a permission is listed twice"]
    assert permission_problems(["ReadPAN"]) == ["not offered by this bank: ReadPAN"]
    assert permission_problems(["ReadTransactionsCredits"]) == [
        "ReadTransactionsCredits/Debits need ReadTransactionsBasic or ReadTransactionsDetail"
    ]


def test_consent_windows() -> None:
    assert consent_window_problems(NOW, NOW + timedelta(days=1), None, None) == []
    assert consent_window_problems(NOW, NOW, None, None) == [
        ("Data.ExpirationDateTime", "the expiry must be in the future")
    ]
    assert consent_window_problems(NOW, None, NOW, NOW - timedelta(seconds=1)) == [
        ("Data.TransactionFromDateTime", "the range starts after it ends")
    ]


def test_awaiting_and_authorised_consents_expire_others_keep_their_status() -> None:
    past = NOW - timedelta(seconds=1)
    assert status_now(ConsentStatus.AUTHORISED, past, NOW) is ConsentStatus.EXPIRED
    assert status_now(ConsentStatus.AWAITING_AUTHORISATION, past, NOW) is ConsentStatus.EXPIRED
    assert status_now(ConsentStatus.AUTHORISED, NOW + timedelta(seconds=1), NOW) is ConsentStatus.AUTHORISED
    assert status_now(ConsentStatus.AUTHORISED, None, NOW) is ConsentStatus.AUTHORISED
    assert status_now(ConsentStatus.CANCELLED, past, NOW) is ConsentStatus.CANCELLED
    assert status_now(ConsentStatus.REJECTED, past, NOW) is ConsentStatus.REJECTED


def test_account_view_follows_the_permissions() -> None:
    from smartbank.openbanking.model import AccountView

    basic = AccountView.of(["ReadAccountsBasic", "ReadTransactionsBasic", "ReadTransactionsCredits"])
    assert (basic.accounts, basic.account_identification, basic.balances) == (True, False, False)
    assert (basic.credits, basic.debits, basic.transaction_detail, basic.direction) == (True, False, False, "in")
    both = AccountView.of(["ReadTransactionsDetail", "ReadTransactionsCredits", "ReadTransactionsDebits"])
    assert (both.direction, both.transaction_detail, both.accounts) == (None, True, False)
    assert AccountView.of(["ReadTransactionsDebits", "ReadTransactionsBasic"]).direction == "out"
    assert not AccountView.of(["ReadTransactionsBasic"]).transactions  # no direction: nothing shown
    assert not AccountView.of(["ReadTransactionsCredits"]).transactions  # no Basic or Detail


def test_booking_window_never_widens_the_consent() -> None:
    from smartbank.openbanking.model import booking_window

    jan, feb, mar, apr = (datetime(2026, m, 1, tzinfo=UTC) for m in (1, 2, 3, 4))
    assert booking_window(feb, mar, jan, apr) == (feb, mar)
    assert booking_window(jan, apr, feb, mar) == (feb, mar)
    assert booking_window(None, None, feb, None) == (feb, None)
    assert booking_window(None, None, None, None) == (None, None)


def test_retries_double_and_are_capped() -> None:
    from smartbank.openbanking.model import retry_delay

    assert [retry_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert retry_delay(10) == timedelta(hours=1)
    assert retry_delay(1000) == timedelta(hours=1)


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("abc-123", True),
        ("x" * 40, True),
        ("", False),
        (None, False),
        ("x" * 41, False),
        (" padded", False),
        ("密钥", False),
        ("tab\there", False),
    ],
)
def test_idempotency_keys_are_short_printable_ascii(key: str | None, ok: bool) -> None:
    from smartbank.openbanking.model import check_idempotency_key

    assert (check_idempotency_key(key) is None) is ok


def test_notification_uris_need_https_except_in_the_sandbox() -> None:
    from smartbank.openbanking.model import notification_uri_problem

    assert notification_uri_problem("https://partner.example/events", sandbox=False) is None
    assert notification_uri_problem("http://partner.example/events", sandbox=False) is not None
    assert notification_uri_problem("http://127.0.0.1:9000/events", sandbox=True) is None
    assert notification_uri_problem("https://partner.example/events#x", sandbox=True) is not None
    assert notification_uri_problem("https://u:p@partner.example/", sandbox=True) is not None
    assert notification_uri_problem("ftp://partner.example/", sandbox=True) is not None
