"""HTTP routes of banking: customers' accounts, history, statements, payees and payments; staff
operations under ``/v1/staff``. Thin: parse, call a ``BankingService`` use case, map the result.

Every ownership and permission rule is the service's: a customer asking for another customer's
object gets 404 ``not_found`` from it. The route dependencies only say who may call at all.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from smartbank.banking.model import MAX_PAGE, MAX_TEXT_QUERY, CashRequest, HistoryFilter, PaymentKind, PaymentRequest
from smartbank.banking.schemas import (
    MAX_AMOUNT,
    CashIn,
    DepositAccountListOut,
    DepositAccountOut,
    FreezeIn,
    PayeeIn,
    PayeeListOut,
    PayeeOut,
    PaymentIn,
    PaymentOut,
    TransactionDetailOut,
    TransactionOut,
    TransactionPageOut,
)
from smartbank.banking.service import BankingService
from smartbank.banking.statements import statement_file
from smartbank.identity.deps import client_info, money_movement_limit, require_customer, require_permission
from smartbank.identity.model import ClientInfo, Permission, Principal

router = APIRouter(tags=["banking"])
staff_router = APIRouter(prefix="/v1/staff", tags=["banking staff"])


def banking_service(request: Request) -> BankingService:
    service: BankingService = request.app.state.banking
    return service


Banking = Annotated[BankingService, Depends(banking_service)]
Client = Annotated[ClientInfo, Depends(client_info)]
Customer = Annotated[Principal, Depends(require_customer)]
#: The shared money-movement budget. Declared after the caller's principal in each signature, so it is
#: counted once the caller is known to be allowed (an anonymous request is 401, never 429).
MoneyMovement = Annotated[None, Depends(money_movement_limit)]
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=100,
        pattern=r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$",
        description="Client-chosen, 1-100 printable ASCII characters. The same key with the same request "
        "returns the first answer; with another request, 409 `idempotency_key_reused`.",
    ),
]

_AUTH: Final[dict[int | str, dict[str, Any]]] = {
    401: {"description": "`unauthenticated`: no valid bearer token or session cookie"},
    403: {"description": "`forbidden` (wrong kind of caller or missing permission), `csrf_failed`"},
}
_NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {
    404: {"description": "`not_found`: no such object of yours (another customer's is not found either)"}
}
_INVALID: Final[dict[int | str, dict[str, Any]]] = {422: {"description": "`validation_error` and the codes named"}}
_PAYMENT_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    **_AUTH,
    403: {
        "description": "`step_up_required` (details.reason `amount_above_threshold` or `new_payee`: pass "
        "POST /v1/auth/step-up, then retry with the same key), `kyc_not_verified`, `risk_declined`, `forbidden`"
    },
    **_NOT_FOUND,
    409: {
        "description": "`insufficient_funds`, `daily_limit_exceeded`, `account_frozen` (details.side), "
        "`account_closed`, `idempotency_key_reused`"
    },
    422: {
        "description": "`validation_error` (a missing or malformed Idempotency-Key too), `invalid_payment`, "
        "`accounts_must_be_different`, `per_payment_limit_exceeded`, `currency_mismatch`, amount codes"
    },
    429: {"description": "`rate_limited`: the money-movement budget per address or per customer; see Retry-After"},
}


# -- accounts ------------------------------------------------------------------------------------


@router.get("/v1/accounts", response_model=DepositAccountListOut, responses=_AUTH)
async def list_accounts(principal: Customer, banking: Banking) -> DepositAccountListOut:
    """Your accounts with posted and available balances."""
    balances = await banking.list_account_balances(principal, principal.id)
    return DepositAccountListOut(items=[DepositAccountOut.of(b) for b in balances])


@router.get("/v1/accounts/{account_id}", response_model=DepositAccountOut, responses={**_AUTH, **_NOT_FOUND})
async def get_account(account_id: uuid.UUID, principal: Customer, banking: Banking) -> DepositAccountOut:
    return DepositAccountOut.of(await banking.get_account(principal, account_id))


@router.get(
    "/v1/accounts/{account_id}/transactions",
    response_model=TransactionPageOut,
    responses={
        **_AUTH,
        **_NOT_FOUND,
        422: {"description": "`validation_error`, `invalid_cursor`, `invalid_date_range` (until not after since)"},
    },
)
async def list_transactions(
    account_id: uuid.UUID,
    principal: Customer,
    banking: Banking,
    since: Annotated[datetime | None, Query(description="From this moment (inclusive), with a time zone.")] = None,
    until: Annotated[datetime | None, Query(description="Before this moment (exclusive), with a time zone.")] = None,
    min_amount_minor: Annotated[int | None, Query(ge=0, le=MAX_AMOUNT, description="Absolute amount.")] = None,
    max_amount_minor: Annotated[int | None, Query(ge=0, le=MAX_AMOUNT, description="Absolute amount.")] = None,
    counterparty: Annotated[
        str | None,
        Query(min_length=1, max_length=MAX_TEXT_QUERY, description="An account number, or part of a name."),
    ] = None,
    text: Annotated[
        str | None, Query(min_length=1, max_length=MAX_TEXT_QUERY, description="Part of the reference.")
    ] = None,
    direction: Annotated[
        Literal["in", "out"] | None, Query(description="`in`: money in (credits) only; `out`: money out only.")
    ] = None,
    cursor: Annotated[str | None, Query(max_length=64, description="`next_cursor` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
) -> TransactionPageOut:
    """Your account's history, newest first. It follows the ledger by one relay pass (about a second)."""
    where = HistoryFilter(since, until, min_amount_minor, max_amount_minor, counterparty, text, direction)
    page = await banking.history(principal, account_id, where, cursor=cursor, limit=limit)
    return TransactionPageOut(items=[TransactionOut.of(e) for e in page.items], next_cursor=page.next_cursor)


@router.get(
    "/v1/accounts/{account_id}/transactions/{transaction_id}",
    response_model=TransactionDetailOut,
    responses={**_AUTH, **_NOT_FOUND},
)
async def get_transaction(
    account_id: uuid.UUID, transaction_id: uuid.UUID, principal: Customer, banking: Banking
) -> TransactionDetailOut:
    return TransactionDetailOut.of_detail(await banking.get_transaction(principal, account_id, transaction_id))


@router.get(
    "/v1/accounts/{account_id}/statement",
    response_class=Response,
    responses={
        200: {
            "description": "The statement as a file: CSV (UTF-8) or PDF (A4).",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/pdf": {"schema": {"type": "string", "format": "binary"}},
            },
            "headers": {
                "Content-Disposition": {
                    "description": 'attachment; filename="statement-<account number>-<from>-<to>.<format>"',
                    "schema": {"type": "string"},
                }
            },
        },
        **_AUTH,
        **_NOT_FOUND,
        422: {"description": "`validation_error`, `invalid_date_range` (at most 366 days), `statement_too_large`"},
    },
)
async def get_statement(
    account_id: uuid.UUID,
    principal: Customer,
    banking: Banking,
    first_day: Annotated[date, Query(alias="from", description="First day, in the bank's time zone.")],
    last_day: Annotated[date, Query(alias="to", description="Last day (inclusive).")],
    format: Annotated[Literal["csv", "pdf"], Query()] = "csv",
) -> Response:
    """Opening balance, every line with its running balance, closing balance, for whole days."""
    statement = await banking.statement(principal, account_id, first_day, last_day)
    body, media_type, disposition = statement_file(statement, format)
    return Response(
        body, media_type=media_type, headers={"Content-Disposition": disposition, "Cache-Control": "no-store"}
    )


# -- payees --------------------------------------------------------------------------------------


@router.get("/v1/payees", response_model=PayeeListOut, responses=_AUTH)
async def list_payees(principal: Customer, banking: Banking) -> PayeeListOut:
    return PayeeListOut(items=[PayeeOut.of(p) for p in await banking.list_payees(principal, principal.id)])


@router.post(
    "/v1/payees",
    response_model=PayeeOut,
    status_code=201,
    responses={
        **_AUTH,
        409: {"description": "`payee_already_exists`, `too_many_payees` (200)"},
        422: {"description": "`validation_error`, `invalid_account_number`, `unknown_account_number`"},
    },
)
async def add_payee(body: PayeeIn, principal: Customer, banking: Banking, client: Client) -> PayeeOut:
    """Add an account of this bank as a payee. Paying a payee younger than 24 hours needs a step-up."""
    return PayeeOut.of(await banking.add_payee(principal, body.name, body.account_number, client=client))


@router.delete("/v1/payees/{payee_id}", status_code=204, responses={**_AUTH, **_NOT_FOUND})
async def delete_payee(payee_id: uuid.UUID, principal: Customer, banking: Banking, client: Client) -> Response:
    await banking.delete_payee(principal, payee_id, client=client)
    return Response(status_code=204)


# -- payments ------------------------------------------------------------------------------------


@router.post(
    "/v1/payments",
    response_model=PaymentOut,
    status_code=201,
    responses=_PAYMENT_ERRORS,
)
async def submit_payment(
    body: PaymentIn,
    idempotency_key: IdempotencyKey,
    principal: Customer,
    _budget: MoneyMovement,
    banking: Banking,
    client: Client,
) -> PaymentOut:
    """Pay a payee or another of your accounts. Answers once the ledger has posted it (or refused it).

    Retrying with the same Idempotency-Key and body returns the first answer, whether it was this
    201 or an error.
    """
    request = PaymentRequest(
        from_account_id=body.from_account_id,
        amount_minor=body.amount_minor,
        currency=body.currency,
        to_payee_id=body.to_payee_id,
        to_account_id=body.to_account_id,
        reference=body.reference,
    )
    return PaymentOut.of(await banking.submit_payment(principal, idempotency_key, request, client=client))


@router.get("/v1/payments/{payment_id}", response_model=PaymentOut, responses={**_AUTH, **_NOT_FOUND})
async def get_payment(payment_id: uuid.UUID, principal: Customer, banking: Banking) -> PaymentOut:
    return PaymentOut.of(await banking.get_payment(principal, payment_id))


# -- staff ---------------------------------------------------------------------------------------

AccountsReader = Annotated[Principal, Depends(require_permission(Permission.ACCOUNTS_READ))]
AccountsFreezer = Annotated[Principal, Depends(require_permission(Permission.ACCOUNTS_FREEZE))]
Teller = Annotated[Principal, Depends(require_permission(Permission.TELLER_CASH))]

_FREEZE_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    **_AUTH,
    404: {"description": "`not_found`: no such account"},
    409: {"description": "`account_closed`"},
    **_INVALID,
}
_CASH_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    **_AUTH,
    404: {"description": "`not_found` (account), `branch_not_found`"},
    409: {"description": "`insufficient_funds`, `account_frozen`, `account_closed`, `idempotency_key_reused`"},
    422: {"description": "`validation_error`, `currency_mismatch`, amount codes"},
}


@staff_router.get(
    "/customers/{customer_id}/accounts", response_model=DepositAccountListOut, responses={**_AUTH, **_INVALID}
)
async def staff_list_accounts(
    customer_id: uuid.UUID, principal: AccountsReader, banking: Banking
) -> DepositAccountListOut:
    """A customer's accounts with balances (`accounts:read`)."""
    balances = await banking.list_account_balances(principal, customer_id)
    return DepositAccountListOut(items=[DepositAccountOut.of(b) for b in balances])


@staff_router.post("/accounts/{account_id}/freeze", response_model=DepositAccountOut, responses=_FREEZE_ERRORS)
async def freeze_account(
    account_id: uuid.UUID, body: FreezeIn, principal: AccountsFreezer, banking: Banking, client: Client
) -> DepositAccountOut:
    """Freeze an account (`accounts:freeze`): payments and cash operations on it are refused."""
    await banking.set_frozen(principal, account_id, True, body.reason, client=client)
    return DepositAccountOut.of(await banking.get_account(principal, account_id))


@staff_router.post("/accounts/{account_id}/unfreeze", response_model=DepositAccountOut, responses=_FREEZE_ERRORS)
async def unfreeze_account(
    account_id: uuid.UUID, body: FreezeIn, principal: AccountsFreezer, banking: Banking, client: Client
) -> DepositAccountOut:
    """Unfreeze an account (`accounts:freeze`)."""
    await banking.set_frozen(principal, account_id, False, body.reason, client=client)
    return DepositAccountOut.of(await banking.get_account(principal, account_id))


async def _cash(
    kind: PaymentKind, body: CashIn, key: str, principal: Principal, banking: BankingService, client: ClientInfo
) -> PaymentOut:
    request = CashRequest(kind, body.account_id, body.branch_code, body.amount_minor, body.currency, body.reference)
    return PaymentOut.of(await banking.teller_cash(principal, key, request, client=client))


@staff_router.post(
    "/teller/deposits",
    response_model=PaymentOut,
    status_code=201,
    responses=_CASH_ERRORS,
)
async def teller_deposit(
    body: CashIn,
    idempotency_key: IdempotencyKey,
    principal: Teller,
    _budget: MoneyMovement,
    banking: Banking,
    client: Client,
) -> PaymentOut:
    """Cash paid in at a branch counter (`teller:cash`): the branch's cash account to the customer's."""
    return await _cash(PaymentKind.CASH_DEPOSIT, body, idempotency_key, principal, banking, client)


@staff_router.post(
    "/teller/withdrawals",
    response_model=PaymentOut,
    status_code=201,
    responses=_CASH_ERRORS,
)
async def teller_withdrawal(
    body: CashIn,
    idempotency_key: IdempotencyKey,
    principal: Teller,
    _budget: MoneyMovement,
    banking: Banking,
    client: Client,
) -> PaymentOut:
    """Cash paid out at a branch counter (`teller:cash`); refused past the balance."""
    return await _cash(PaymentKind.CASH_WITHDRAWAL, body, idempotency_key, principal, banking, client)


router.include_router(staff_router)
