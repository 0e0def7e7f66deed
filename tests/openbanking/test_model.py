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
