"""The v4.0 payment-initiation and confirmation-of-funds APIs: a payment consent authorised by the customer
with MFA, executed once through banking's payment path and posted in the ledger; ``x-idempotency-key``;
``x-jws-signature`` on requests and responses; funds checks. Every body is validated against the pinned
OBIE files (``OBWriteDomesticConsentResponse5``, ``OBWriteFundsConfirmationResponse1``,
``OBWriteDomesticResponse5``, ``OBFundsConfirmationConsentResponse1``, ``OBFundsConfirmationResponse1``,
``OBErrorResponse1``) with zero errors."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from smartbank.platform.settings import Settings
from tests.banking.http_helpers import Bank, Customer, ledger_posted, onboard, scalar

from .helpers import (
    AISP,
    CBPII,
    PISP,
    MfaCustomer,
    Partner,
    authorise,
    consent_page,
    customer_with_mfa,
    payment_of,
    payment_request,
    query_of,
    sign_in,
    verifier_and_challenge,
)
from .schemas import schema_errors


@pytest.fixture(scope="module")
def bank(fresh_database: Callable[[], str], settings: Settings) -> Iterator[Bank]:
    from .helpers import open_bank

    with open_bank(fresh_database(), settings, client_ip="203.0.113.92") as opened:
        yield opened


@pytest.fixture(scope="module")
def payee(bank: Bank) -> Customer:
    return onboard(bank, name="李雷")


@pytest.fixture
def who(bank: Bank) -> MfaCustomer:
    """A fresh payer for each test (1000.00 CNY), so balances and limits do not carry over."""
    return customer_with_mfa(bank)


def authorised_payment(
    bank: Bank, who: MfaCustomer, payee: Customer, partner: Partner | None = None, amount: str = "12.34"
) -> tuple[Partner, dict[str, Any], str]:
    """A payment consent created (signed), authorised by ``who`` with MFA; its code exchanged."""
    partner = partner or Partner.register(bank)
    created = partner.signed_post(
        f"{PISP}/domestic-payment-consents",
        payment_request(payee.account_number, amount),
        partner.client_credentials_token("payments"),
    )
    assert created.status_code == 201, created.text
    tokens = authorise(bank, who, partner, created.json()["Data"]["ConsentId"], "openid payments")
    return partner, created.json(), tokens["access_token"]


def payments_of(bank: Bank, customer_id: uuid.UUID) -> int:
    return int(
        scalar(
            bank.url, "SELECT count(*) FROM banking.payments WHERE customer_id = %s AND kind = 'transfer'", customer_id
        )
    )


@pytest.mark.parametrize("algorithm", ["ES256", "PS256"])
def test_full_flow_register_par_mfa_pkce_read_accounts_pay_and_see_it_in_the_ledger(
    bank: Bank, who: MfaCustomer, payee: Customer, algorithm: str
) -> None:
    partner = Partner.register(bank, algorithm=algorithm)
    # Account information first: a consent, PAR, the customer's MFA, the code exchanged with PKCE and
    # private_key_jwt, then the accounts read.
    ais = partner.create_consent(partner.client_credentials_token(), {"Permissions": ["ReadAccountsDetail"]})
    ais_token = authorise(bank, who, partner, ais["Data"]["ConsentId"], "openid accounts")["access_token"]
    accounts = bank.client.get(f"{AISP}/accounts", headers={"Authorization": f"Bearer {ais_token}"})
    assert accounts.status_code == 200
    assert schema_errors(accounts.json(), "OBReadAccount6", "ais") == []
    (account,) = accounts.json()["Data"]["Account"]
    assert account["Account"][0]["Identification"] == who.customer.account_number

    # The payment consent, as the partner creates it and reads it back.
    cc = partner.client_credentials_token("payments")
    created = partner.signed_post(f"{PISP}/domestic-payment-consents", payment_request(payee.account_number), cc)
    assert created.status_code == 201, created.text
    consent = created.json()
    assert schema_errors(consent, "OBWriteDomesticConsentResponse5", "pis") == []
    assert consent["Data"]["Status"] == "AWAU"
    assert consent["Data"]["Initiation"]["InstructedAmount"] == {"Amount": "12.34", "Currency": "CNY"}
    assert created.headers["x-jws-signature"].count(".") == 2
    consent_id = consent["Data"]["ConsentId"]
    fetched = bank.client.get(
        f"{PISP}/domestic-payment-consents/{consent_id}", headers={"Authorization": f"Bearer {cc}"}
    )
    assert fetched.status_code == 200
    assert schema_errors(fetched.json(), "OBWriteDomesticConsentResponse5", "pis") == []

    # The customer sees the amount and the payee on the consent screen, picks the account, confirms with MFA.
    verifier, challenge = verifier_and_challenge()
    pushed = partner.push(consent_id, challenge, scope="openid payments")
    assert pushed.status_code == 201, pushed.text
    sign_in(bank, who, "/app/")
    screen = consent_page(bank, partner, pushed.json()["request_uri"])
    page = bank.client.get(screen)
    assert "12.34" in page.text and payee.account_number in page.text and "李雷" in page.text
    from .helpers import decide

    answer = decide(bank, who, screen)
    assert answer.status_code == 303, answer.text
    exchanged = partner.exchange(query_of(answer.headers["location"])["code"], verifier)
    assert exchanged.status_code == 200, exchanged.text
    token = exchanged.json()["access_token"]

    funds = bank.client.get(
        f"{PISP}/domestic-payment-consents/{consent_id}/funds-confirmation",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert funds.status_code == 200, funds.text
    assert schema_errors(funds.json(), "OBWriteFundsConfirmationResponse1", "pis") == []
    assert funds.json()["Data"]["FundsAvailableResult"]["FundsAvailable"] is True

    payer_before = ledger_posted(bank.url, who.customer.account_id)
    payee_before = ledger_posted(bank.url, payee.account_id)
    paid = partner.signed_post(f"{PISP}/domestic-payments", payment_of(consent), token)
    assert paid.status_code == 201, paid.text
    body = paid.json()
    assert schema_errors(body, "OBWriteDomesticResponse5", "pis") == []
    assert body["Data"]["Status"] == "ACSC"
    assert body["Data"]["ConsentId"] == consent_id
    # Posted in the ledger: 12.34 CNY from the payer to the payee.
    assert ledger_posted(bank.url, who.customer.account_id) == payer_before - 1234
    assert ledger_posted(bank.url, payee.account_id) == payee_before + 1234
    banking_id = scalar(
        bank.url,
        "SELECT banking_payment_id FROM openbanking.domestic_payments WHERE id = %s",
        body["Data"]["DomesticPaymentId"],
    )
    assert scalar(bank.url, "SELECT status FROM banking.payments WHERE id = %s", banking_id) == "completed"

    read = bank.client.get(
        f"{PISP}/domestic-payments/{body['Data']['DomesticPaymentId']}", headers={"Authorization": f"Bearer {cc}"}
    )
    assert read.status_code == 200
    assert schema_errors(read.json(), "OBWriteDomesticResponse5", "pis") == []
    after = bank.client.get(f"{PISP}/domestic-payment-consents/{consent_id}", headers={"Authorization": f"Bearer {cc}"})
    assert after.json()["Data"]["Status"] == "COND"


def test_idempotency_key_replay_with_the_same_body_answers_the_first_payment(
    bank: Bank, who: MfaCustomer, payee: Customer
) -> None:
    partner, consent, token = authorised_payment(bank, who, payee)
    first = partner.signed_post(f"{PISP}/domestic-payments", payment_of(consent), token, key="same-key-1")
    again = partner.signed_post(f"{PISP}/domestic-payments", payment_of(consent), token, key="same-key-1")
    assert first.status_code == again.status_code == 201, again.text
    assert again.json()["Data"] == first.json()["Data"]
    assert payments_of(bank, who.customer.id) == 1


def test_idempotency_key_replay_with_a_different_body_is_refused(bank: Bank, who: MfaCustomer, payee: Customer) -> None:
    partner, consent, token = authorised_payment(bank, who, payee)
    first = partner.signed_post(f"{PISP}/domestic-payments", payment_of(consent), token, key="reused-key")
    assert first.status_code == 201
    balance = ledger_posted(bank.url, who.customer.account_id)
    changed = payment_of(consent)
    changed["Risk"] = {"PaymentContextCode": "TransferToSelf"}
    refused = partner.signed_post(f"{PISP}/domestic-payments", changed, token, key="reused-key")
    assert refused.status_code == 400, refused.text
    assert schema_errors(refused.json(), "OBErrorResponse1", "pis") == []
    assert refused.json()["Errors"][0]["Path"] == "x-idempotency-key"
    assert payments_of(bank, who.customer.id) == 1
    assert ledger_posted(bank.url, who.customer.account_id) == balance


def test_twenty_parallel_duplicates_make_one_payment(bank: Bank, who: MfaCustomer, payee: Customer) -> None:
    partner, consent, token = authorised_payment(bank, who, payee, amount="7.00")
    before = ledger_posted(bank.url, who.customer.account_id)
    content = json.dumps(payment_of(consent)).encode()
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "x-idempotency-key": "parallel-" + secrets.token_hex(4),
        "x-jws-signature": partner.sign(content),
    }
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(
            pool.map(
                lambda _: bank.client.post(f"{PISP}/domestic-payments", content=content, headers=headers), range(20)
            )
        )
    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses if r.status_code != 201]
    assert len({r.json()["Data"]["DomesticPaymentId"] for r in responses}) == 1
    assert payments_of(bank, who.customer.id) == 1
    assert ledger_posted(bank.url, who.customer.account_id) == before - 700


def test_a_consent_pays_once(bank: Bank, who: MfaCustomer, payee: Customer) -> None:
    partner, consent, token = authorised_payment(bank, who, payee)
    assert partner.signed_post(f"{PISP}/domestic-payments", payment_of(consent), token).status_code == 201
    second = partner.signed_post(f"{PISP}/domestic-payments", payment_of(consent), token)  # a new key
    assert second.status_code == 400
    assert schema_errors(second.json(), "OBErrorResponse1", "pis") == []
    assert second.json()["Errors"][0]["ErrorCode"] == "U009"
    assert payments_of(bank, who.customer.id) == 1


def test_payment_must_match_its_consent(bank: Bank, who: MfaCustomer, payee: Customer) -> None:
    partner, consent, token = authorised_payment(bank, who, payee)
    changed = payment_of(consent)
    changed["Data"]["Initiation"]["InstructedAmount"]["Amount"] = "999.00"
    refused = partner.signed_post(f"{PISP}/domestic-payments", changed, token)
    assert refused.status_code == 400
    assert refused.json()["Errors"][0]["ErrorCode"] == "U008"
    assert payments_of(bank, who.customer.id) == 0
    # The consent is still unused: the right body goes through.
    paid = partner.signed_post(f"{PISP}/domestic-payments", payment_of(consent), token)
    assert paid.status_code == 201, paid.text


def test_a_payment_banking_refuses_is_answered_the_same_on_replay_and_moves_nothing(
    bank: Bank, who: MfaCustomer, payee: Customer
) -> None:
    partner, consent, token = authorised_payment(bank, who, payee, amount="5000.00")  # more than the 1000.00 held
    balance = ledger_posted(bank.url, who.customer.account_id)
    refused = partner.signed_post(f"{PISP}/domestic-payments", payment_of(consent), token, key="too-much")
    assert refused.status_code == 400, refused.text
    assert schema_errors(refused.json(), "OBErrorResponse1", "pis") == []
    again = partner.signed_post(f"{PISP}/domestic-payments", payment_of(consent), token, key="too-much")
    assert (again.status_code, again.json()["Errors"]) == (400, refused.json()["Errors"])
    assert ledger_posted(bank.url, who.customer.account_id) == balance


def test_payment_token_of_another_consent_or_client_credentials_is_refused(
    bank: Bank, who: MfaCustomer, payee: Customer
) -> None:
    partner, consent_a, token_a = authorised_payment(bank, who, payee)
    _, consent_b, _ = authorised_payment(bank, who, payee, partner=partner)
    with_other = partner.signed_post(f"{PISP}/domestic-payments", payment_of(consent_b), token_a)
    assert with_other.status_code == 403
    assert with_other.json()["Errors"][0]["ErrorCode"] == "U008"
    cc = partner.signed_post(
        f"{PISP}/domestic-payments", payment_of(consent_a), partner.client_credentials_token("payments")
    )
    assert cc.status_code == 403
    assert schema_errors(cc.json(), "OBErrorResponse1", "pis") == []
    assert payments_of(bank, who.customer.id) == 0


@pytest.mark.parametrize(
    ("overrides", "tamper", "code"),
    [
        ({}, "unsigned", "U019"),  # UK.OBIE.Signature.Missing
        ({}, "other-body", "U015"),  # UK.OBIE.Signature.Invalid
        ({}, "attached", "U018"),  # UK.OBIE.Signature.Malformed
        ({"http://openbanking.org.uk/iss": "someone-else"}, None, "U016"),  # UK.OBIE.Signature.InvalidClaim
        ({"http://openbanking.org.uk/tan": "openbanking.org.uk"}, None, "U016"),
        ({"b64": None, "crit": ["http://openbanking.org.uk/iat"]}, None, "U016"),  # b64 not false
        (  # UK.OBIE.Signature.MissingClaim: tan is not among the critical claims
            {"crit": ["b64", "http://openbanking.org.uk/iat", "http://openbanking.org.uk/iss"]},
            None,
            "U017",
        ),
    ],
)
def test_bad_jws_is_refused(
    bank: Bank, who: MfaCustomer, payee: Customer, overrides: dict[str, Any], tamper: str | None, code: str
) -> None:
    partner, consent, token = authorised_payment(bank, who, payee)
    content = json.dumps(payment_of(consent)).encode()
    signature = partner.sign(b'{"other": true}' if tamper == "other-body" else content, **overrides)
    if tamper == "attached":
        head, _, sig = signature.partition("..")
        signature = f"{head}.e30.{sig}"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "x-idempotency-key": "k1"}
    if tamper != "unsigned":
        headers["x-jws-signature"] = signature
    refused = bank.client.post(f"{PISP}/domestic-payments", content=content, headers=headers)
    assert refused.status_code == 400, refused.text
    assert schema_errors(refused.json(), "OBErrorResponse1", "pis") == []
    assert refused.json()["Errors"][0]["ErrorCode"] == code
    assert payments_of(bank, who.customer.id) == 0


@pytest.mark.parametrize(
    ("change", "code", "path"),
    [
        (lambda b: b["Data"]["Initiation"].pop("CreditorAccount"), "U004", "Data.Initiation.CreditorAccount"),
        (
            lambda b: b["Data"]["Initiation"]["CreditorAccount"].update(SchemeName="UK.OBIE.Paym"),
            "U027",  # UK.OBIE.Unsupported.Scheme
            "Data.Initiation.CreditorAccount.SchemeName",
        ),
        (
            lambda b: b["Data"]["Initiation"]["InstructedAmount"].update(Amount="1.001"),
            "U002",
            "Data.Initiation.InstructedAmount",
        ),
        (
            lambda b: b["Data"]["Initiation"].update(LocalInstrument="UK.OBIE.FPS"),
            "U005",
            "Data.Initiation.LocalInstrument",
        ),
        (lambda b: b.pop("Risk"), "U004", "Risk"),
        (lambda b: b["Risk"].update(PaymentContextCode="Nonsense"), "U002", "Risk.PaymentContextCode"),
    ],
)
def test_bad_payment_consents_get_ob_errors_and_write_nothing(
    bank: Bank, payee: Customer, change: Callable[[dict[str, Any]], Any], code: str, path: str
) -> None:
    partner = Partner.register(bank)
    body = payment_request(payee.account_number)
    change(body)
    refused = partner.signed_post(
        f"{PISP}/domestic-payment-consents", body, partner.client_credentials_token("payments")
    )
    assert refused.status_code == 400, refused.text
    assert schema_errors(refused.json(), "OBErrorResponse1", "pis") == []
    assert (refused.json()["Errors"][0]["ErrorCode"], refused.json()["Errors"][0]["Path"]) == (code, path)
    assert scalar(bank.url, "SELECT count(*) FROM openbanking.consents WHERE client_id = %s", partner.client_id) == 0


def test_payment_consent_creation_is_idempotent_and_needs_a_key(bank: Bank, payee: Customer) -> None:
    partner = Partner.register(bank)
    cc = partner.client_credentials_token("payments")
    body = payment_request(payee.account_number)
    first = partner.signed_post(f"{PISP}/domestic-payment-consents", body, cc, key="consent-key")
    again = partner.signed_post(f"{PISP}/domestic-payment-consents", body, cc, key="consent-key")
    assert first.json()["Data"]["ConsentId"] == again.json()["Data"]["ConsentId"]
    other = partner.signed_post(
        f"{PISP}/domestic-payment-consents", payment_request(payee.account_number), cc, key="consent-key"
    )
    assert other.status_code == 400
    content = json.dumps(body).encode()
    keyless = bank.client.post(
        f"{PISP}/domestic-payment-consents",
        content=content,
        headers={
            "Authorization": f"Bearer {cc}",
            "Content-Type": "application/json",
            "x-jws-signature": partner.sign(content),
        },
    )
    assert keyless.status_code == 400
    assert keyless.json()["Errors"][0]["ErrorCode"] == "U007"
    assert scalar(bank.url, "SELECT count(*) FROM openbanking.consents WHERE client_id = %s", partner.client_id) == 1


def test_confirmation_of_funds_consent_and_check(bank: Bank, who: MfaCustomer) -> None:
    partner = Partner.register(bank)
    cc = partner.client_credentials_token("fundsconfirmations")
    headers = {"Authorization": f"Bearer {cc}"}
    created = bank.client.post(
        f"{CBPII}/funds-confirmation-consents",
        json={"Data": {"DebtorAccount": {"SchemeName": "UK.OBIE.BBAN", "Identification": who.customer.account_number}}},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    assert schema_errors(created.json(), "OBFundsConfirmationConsentResponse1", "cof") == []
    consent_id = created.json()["Data"]["ConsentId"]
    token = authorise(bank, who, partner, consent_id, "openid fundsconfirmations")["access_token"]
    fetched = bank.client.get(f"{CBPII}/funds-confirmation-consents/{consent_id}", headers=headers)
    assert fetched.json()["Data"]["Status"] == "AUTH"
    assert schema_errors(fetched.json(), "OBFundsConfirmationConsentResponse1", "cof") == []

    def check(amount: str) -> Any:
        return bank.client.post(
            f"{CBPII}/funds-confirmations",
            json={
                "Data": {
                    "ConsentId": consent_id,
                    "Reference": "Purchase01",
                    "InstructedAmount": {"Amount": amount, "Currency": "CNY"},
                }
            },
            headers={"Authorization": f"Bearer {token}"},
        )

    enough, too_much = check("1000.00"), check("1000.01")
    for response in (enough, too_much):
        assert response.status_code == 201, response.text
        assert schema_errors(response.json(), "OBFundsConfirmationResponse1", "cof") == []
    assert (enough.json()["Data"]["FundsAvailable"], too_much.json()["Data"]["FundsAvailable"]) == (True, False)

    deleted = bank.client.delete(f"{CBPII}/funds-confirmation-consents/{consent_id}", headers=headers)
    assert deleted.status_code == 204
    assert check("1.00").status_code == 401  # withdrawn: refused at once


def test_funds_consent_for_another_bank_account_is_refused(bank: Bank) -> None:
    partner = Partner.register(bank)
    refused = bank.client.post(
        f"{CBPII}/funds-confirmation-consents",
        json={"Data": {"DebtorAccount": {"SchemeName": "UK.OBIE.BBAN", "Identification": "12345678"}}},
        headers={"Authorization": f"Bearer {partner.client_credentials_token('fundsconfirmations')}"},
    )
    assert refused.status_code == 400
    assert schema_errors(refused.json(), "OBErrorResponse1", "cof") == []


def test_a_pending_payment_is_read_as_banking_has_it_now(bank: Bank, who: MfaCustomer, payee: Customer) -> None:
    partner, consent, token = authorised_payment(bank, who, payee)
    paid = partner.signed_post(f"{PISP}/domestic-payments", payment_of(consent), token).json()
    payment_id = paid["Data"]["DomesticPaymentId"]
    with psycopg.connect(bank.url) as conn:  # as if banking had answered "still at work" back then
        conn.execute("UPDATE openbanking.domestic_payments SET status = 'PDNG' WHERE id = %s", (payment_id,))
    cc = partner.client_credentials_token("payments")
    read = bank.client.get(f"{PISP}/domestic-payments/{payment_id}", headers={"Authorization": f"Bearer {cc}"})
    assert read.status_code == 200
    assert read.json()["Data"]["Status"] == "ACSC"
    assert scalar(bank.url, "SELECT status FROM openbanking.domestic_payments WHERE id = %s", payment_id) == "ACSC"
    assert payments_of(bank, who.customer.id) == 1


def test_the_customer_sees_a_used_payment_consent_in_their_list(bank: Bank, who: MfaCustomer, payee: Customer) -> None:
    partner, consent, token = authorised_payment(bank, who, payee)
    assert partner.signed_post(f"{PISP}/domestic-payments", payment_of(consent), token).status_code == 201
    page = bank.client.get("/app/consents")
    assert page.status_code == 200
    assert consent["Data"]["ConsentId"] in page.text
    assert "One payment, made once" in page.text and "Used" in page.text
