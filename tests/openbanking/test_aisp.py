"""The v4.0 account-information API: accounts, balances and transactions read through a customer's
consent. Every body is validated against the pinned OBIE file (``OBReadAccount6``, ``OBReadBalance1``,
``OBReadTransaction6``, ``OBErrorResponse1``) with zero errors; the consent's accounts, permissions and
range decide what a partner sees."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import KeySet

from smartbank.banking.model import PaymentRequest, Product
from smartbank.identity.model import Principal, PrincipalKind
from smartbank.openbanking.jose import _MESSAGE_REGISTRY
from smartbank.platform.settings import Settings
from tests.banking.http_helpers import Bank, Customer, onboard

from .helpers import AISP, MfaCustomer, Partner, authorise, customer_with_mfa, open_bank
from .schemas import schema_errors

ALL = [
    "ReadAccountsDetail",
    "ReadBalances",
    "ReadTransactionsDetail",
    "ReadTransactionsCredits",
    "ReadTransactionsDebits",
]


@pytest.fixture(scope="module")
def bank(fresh_database: Callable[[], str], settings: Settings) -> Iterator[Bank]:
    with open_bank(fresh_database(), settings, client_ip="203.0.113.91") as opened:
        yield opened


@pytest.fixture(scope="module")
def who(bank: Bank) -> MfaCustomer:
    """A customer with money in (a cash deposit) and out (a payment to another customer) of one account,
    and a second account of their own."""
    customer = customer_with_mfa(bank)
    other = onboard(bank)
    rt = bank.runtime
    me = Principal(customer.customer.id, PrincipalKind.CUSTOMER)
    bank.run(lambda: rt.banking.open_account(me, Product.SAVINGS, "CNY"))
    payee = bank.run(lambda: rt.banking.add_payee(me, "李雷", other.account_number))
    bank.clock.advance(timedelta(days=2))  # past the new-payee step-up period
    request = PaymentRequest(customer.customer.account_id, 2_500, "CNY", to_payee_id=payee.id, reference="rent")
    bank.run(lambda: rt.banking.submit_payment(me, "aisp-setup-1", request))
    _wait_for_history(bank, customer.customer, 2)
    return customer


def _wait_for_history(bank: Bank, customer: Customer, count: int) -> None:
    rt = bank.runtime
    deadline = time.monotonic() + 10
    while len(bank.run(lambda: rt.banking.history(customer.principal, customer.account_id)).items) < count:
        assert time.monotonic() < deadline, "history was not projected"
        rt.relay.kick()
        time.sleep(0.02)


def _grant(bank: Bank, who: MfaCustomer, permissions: list[str], **data: Any) -> tuple[Partner, str, str]:
    partner = Partner.register(bank)
    consent = partner.create_consent(partner.client_credentials_token(), {"Permissions": permissions, **data})
    consent_id = consent["Data"]["ConsentId"]
    tokens = authorise(bank, who, partner, consent_id, "openid accounts")
    return partner, consent_id, tokens["access_token"]


def get(bank: Bank, path: str, token: str, **params: str) -> Any:
    return bank.client.get(path, params=params, headers={"Authorization": f"Bearer {token}"})


def _bank_signature_ok(bank: Bank, response: Any) -> bool:
    keys = KeySet.import_key_set(bank.client.get("/oauth2/jwks").json())
    try:
        jws.deserialize_compact(
            response.headers["x-jws-signature"], keys, registry=_MESSAGE_REGISTRY, payload=response.content
        )
    except Exception:
        return False
    return True


def test_accounts_balances_and_transactions_answer_v4_bodies(bank: Bank, who: MfaCustomer) -> None:
    _, _, token = _grant(bank, who, ALL)
    account_id = str(who.customer.account_id)

    listed = get(bank, f"{AISP}/accounts", token)
    assert listed.status_code == 200, listed.text
    assert schema_errors(listed.json(), "OBReadAccount6", "ais") == []
    (account,) = listed.json()["Data"]["Account"]  # only the account the customer chose
    assert account["AccountId"] == account_id
    assert account["Account"][0] == {"SchemeName": "UK.OBIE.BBAN", "Identification": who.customer.account_number}
    assert _bank_signature_ok(bank, listed)

    one = get(bank, f"{AISP}/accounts/{account_id}", token)
    assert one.status_code == 200
    assert schema_errors(one.json(), "OBReadAccount6", "ais") == []
    assert one.json()["Data"]["Account"] == [account]

    balances = get(bank, f"{AISP}/accounts/{account_id}/balances", token)
    assert balances.status_code == 200
    assert schema_errors(balances.json(), "OBReadBalance1", "ais") == []
    by_type = {b["Type"]: b for b in balances.json()["Data"]["Balance"]}
    assert by_type["ITBD"]["Amount"] == {"Amount": "975.00", "Currency": "CNY"}  # 1000.00 in, 25.00 out
    assert by_type["ITAV"]["CreditDebitIndicator"] == "Credit"

    listed_tx = get(bank, f"{AISP}/accounts/{account_id}/transactions", token)
    assert listed_tx.status_code == 200, listed_tx.text
    body = listed_tx.json()
    assert schema_errors(body, "OBReadTransaction6", "ais") == []
    items = body["Data"]["Transaction"]
    assert [(t["CreditDebitIndicator"], t["Amount"]["Amount"]) for t in items] == [
        ("Debit", "25.00"),
        ("Credit", "1000.00"),
    ]
    debit = items[0]
    assert debit["TransactionInformation"] == "rent"
    assert debit["CreditorAccount"]["SchemeName"] == "UK.OBIE.BBAN"
    assert body["Links"]["Self"].endswith(f"/accounts/{account_id}/transactions")
    assert "Next" not in body["Links"]
    assert _bank_signature_ok(bank, listed_tx)


def test_basic_permissions_hide_account_numbers_and_transaction_details(bank: Bank, who: MfaCustomer) -> None:
    _, _, token = _grant(bank, who, ["ReadAccountsBasic", "ReadTransactionsBasic", "ReadTransactionsCredits"])
    (account,) = get(bank, f"{AISP}/accounts", token).json()["Data"]["Account"]
    assert "Account" not in account
    body = get(bank, f"{AISP}/accounts/{who.customer.account_id}/transactions", token).json()
    assert schema_errors(body, "OBReadTransaction6", "ais") == []
    (credit,) = body["Data"]["Transaction"]  # credits only: the payment out is not shown
    assert credit["CreditDebitIndicator"] == "Credit"
    assert not {"TransactionInformation", "DebtorAccount", "CreditorAccount"} & set(credit)


def test_debits_permission_shows_only_money_out(bank: Bank, who: MfaCustomer) -> None:
    _, _, token = _grant(bank, who, ["ReadTransactionsDetail", "ReadTransactionsDebits"])
    body = get(bank, f"{AISP}/accounts/{who.customer.account_id}/transactions", token).json()
    assert [t["CreditDebitIndicator"] for t in body["Data"]["Transaction"]] == ["Debit"]


@pytest.mark.parametrize(
    ("permissions", "path"),
    [
        (["ReadBalances"], "/accounts"),
        (["ReadBalances"], "/accounts/{id}"),
        (["ReadAccountsBasic"], "/accounts/{id}/balances"),
        (["ReadAccountsBasic", "ReadBalances"], "/accounts/{id}/transactions"),
        (["ReadAccountsBasic", "ReadTransactionsBasic"], "/accounts/{id}/transactions"),
    ],
)
def test_permission_missing_is_403(bank: Bank, who: MfaCustomer, permissions: list[str], path: str) -> None:
    _, _, token = _grant(bank, who, permissions)
    response = get(bank, AISP + path.replace("{id}", str(who.customer.account_id)), token)
    assert response.status_code == 403, response.text
    assert schema_errors(response.json(), "OBErrorResponse1", "ais") == []
    assert response.json()["Errors"][0]["ErrorCode"] == "U008"


def test_token_for_consent_a_cannot_read_an_account_outside_a(bank: Bank, who: MfaCustomer) -> None:
    _, _, token = _grant(bank, who, ALL)
    rt = bank.runtime
    own = bank.run(lambda: rt.banking.list_accounts(who.customer.principal, who.customer.id))
    (not_chosen,) = [a.id for a in own if a.id != who.customer.account_id]  # the customer's own savings account
    stranger = onboard(bank, fund_minor=5_000)
    for account_id in (not_chosen, stranger.account_id, uuid.uuid4(), "not-an-id"):
        for suffix in ("", "/balances", "/transactions"):
            response = get(bank, f"{AISP}/accounts/{account_id}{suffix}", token)
            assert response.status_code == 404, (account_id, suffix, response.text)
            assert schema_errors(response.json(), "OBErrorResponse1", "ais") == []
            assert stranger.account_number not in response.text
    listed = get(bank, f"{AISP}/accounts", token).json()["Data"]["Account"]
    assert [a["AccountId"] for a in listed] == [str(who.customer.account_id)]


def test_client_credentials_token_cannot_read_accounts(bank: Bank, who: MfaCustomer) -> None:
    partner = Partner.register(bank)
    response = get(bank, f"{AISP}/accounts", partner.client_credentials_token())
    assert response.status_code == 403
    assert schema_errors(response.json(), "OBErrorResponse1", "ais") == []


def test_revoked_consent_is_refused_at_once(bank: Bank, who: MfaCustomer) -> None:
    _, consent_id, token = _grant(bank, who, ALL)
    assert get(bank, f"{AISP}/accounts", token).status_code == 200
    rt = bank.runtime
    from smartbank.identity.model import ClientInfo

    bank.run(lambda: rt.openbanking.revoke_by_customer(who.customer.principal, consent_id, ClientInfo()))
    refused = get(bank, f"{AISP}/accounts", token)
    assert refused.status_code == 401
    assert schema_errors(refused.json(), "OBErrorResponse1", "ais") == []


def test_consent_deleted_by_the_partner_is_refused_at_once(bank: Bank, who: MfaCustomer) -> None:
    partner, consent_id, token = _grant(bank, who, ALL)
    deleted = bank.client.delete(
        f"{AISP}/account-access-consents/{consent_id}",
        headers={"Authorization": f"Bearer {partner.client_credentials_token()}"},
    )
    assert deleted.status_code == 204
    assert get(bank, f"{AISP}/accounts/{who.customer.account_id}/balances", token).status_code == 401


def test_expired_consent_is_refused_at_once(bank: Bank, who: MfaCustomer) -> None:
    expiry = (bank.clock.now() + timedelta(minutes=2)).isoformat()
    _, _, token = _grant(bank, who, ALL, ExpirationDateTime=expiry)
    assert get(bank, f"{AISP}/accounts", token).status_code == 200
    bank.clock.advance(timedelta(minutes=2, seconds=1))  # the access token itself lives 5 minutes
    refused = get(bank, f"{AISP}/accounts", token)
    assert refused.status_code == 401
    assert schema_errors(refused.json(), "OBErrorResponse1", "ais") == []


def test_transactions_are_paged_with_next_links(bank: Bank, who: MfaCustomer) -> None:
    _, _, token = _grant(bank, who, ALL)
    path = f"{AISP}/accounts/{who.customer.account_id}/transactions"
    accounts = bank.runtime.openbanking.accounts
    accounts.page_size = 1
    try:
        first = get(bank, path, token).json()
        assert schema_errors(first, "OBReadTransaction6", "ais") == []
        assert [t["Amount"]["Amount"] for t in first["Data"]["Transaction"]] == ["25.00"]
        next_url = first["Links"]["Next"]
        assert first["Links"]["First"].endswith(path)
        second = bank.client.get(next_url, headers={"Authorization": f"Bearer {token}"}).json()
        assert schema_errors(second, "OBReadTransaction6", "ais") == []
        assert [t["Amount"]["Amount"] for t in second["Data"]["Transaction"]] == ["1000.00"]
        assert "Next" not in second["Links"]
        bad = get(bank, path, token, page="not-a-cursor")
        assert bad.status_code == 400
        assert schema_errors(bad.json(), "OBErrorResponse1", "ais") == []
    finally:
        accounts.page_size = 50


def test_transactions_stay_within_the_consents_range(bank: Bank, who: MfaCustomer) -> None:
    after_everything = (bank.clock.now() + timedelta(seconds=1)).isoformat()
    _, _, token = _grant(bank, who, ALL, TransactionFromDateTime=after_everything)
    path = f"{AISP}/accounts/{who.customer.account_id}/transactions"
    assert get(bank, path, token).json()["Data"]["Transaction"] == []
    # Asking for an earlier start does not widen the consent's range.
    early = get(bank, path, token, fromBookingDateTime="2000-01-01T00:00:00Z")
    assert early.status_code == 200
    assert early.json()["Data"]["Transaction"] == []
    broken = get(bank, path, token, toBookingDateTime="yesterday")
    assert broken.status_code == 400
    assert broken.json()["Errors"][0]["ErrorCode"] == "U003"
