"""HTTP routes of the ledger (internal and staff use): parse, call a use case, map the result."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from smartbank.kernel.errors import DomainError
from smartbank.ledger.errors import TRANSFER_MESSAGES, LedgerErrorCode
from smartbank.ledger.model import AccountKind, AccountSpec, ResultStatus, TransferRequest, TransferType
from smartbank.ledger.schemas import (
    AccountIn,
    AccountOut,
    AccountStatusIn,
    BalancesOut,
    BatchIn,
    BatchOut,
    PostPendingIn,
    TransferIn,
    TransferOut,
    TransferPageOut,
    TransferResultOut,
    VoidPendingIn,
)
from smartbank.ledger.service import LedgerService

# Internal API: the app mounts this router behind `smartbank.web.deps.internal_or_staff` (the
# internal bearer token, or a staff login with the ledger:operate permission).
router = APIRouter(prefix="/v1/ledger", tags=["ledger"])


def ledger_service(request: Request) -> LedgerService:
    service: LedgerService = request.app.state.ledger
    return service


Ledger = Annotated[LedgerService, Depends(ledger_service)]

_REPLAYED_ACCOUNT: dict[int | str, dict[str, Any]] = {
    200: {"model": AccountOut, "description": "The account already existed with these fields (a replay)"}
}
_REPLAYED_TRANSFER: dict[int | str, dict[str, Any]] = {
    200: {"model": TransferOut, "description": "The transfer already existed with these fields (a replay)"}
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown account or transfer"},
    409: {"description": "Refused by a ledger rule (limit, frozen account, id reused with other fields)"},
    422: {"description": "Invalid request"},
}


def _request_of(body: TransferIn) -> TransferRequest:
    return TransferRequest(
        id=body.id,
        type=TransferType.PENDING if body.pending else TransferType.POSTED,
        debit_account_id=body.debit_account_id,
        credit_account_id=body.credit_account_id,
        amount_minor=body.amount_minor,
        currency=body.currency,
        code=body.code,
        timeout_s=body.timeout_s,
        reversal_of=body.reversal_of,
        metadata=body.metadata,
    )


async def _submit(ledger: LedgerService, request: TransferRequest, response: Response) -> TransferOut:
    result = await ledger.submit(request)
    if result.status is ResultStatus.FAILED:
        assert result.code is not None
        raise DomainError(result.code, TRANSFER_MESSAGES[result.code], id=str(request.id))
    response.status_code = 201 if result.status is ResultStatus.CREATED else 200
    return TransferOut.of(await ledger.get_transfer(request.id))


@router.post("/accounts", response_model=AccountOut, status_code=201, responses=_REPLAYED_ACCOUNT | _ERRORS)
async def create_account(body: AccountIn, ledger: Ledger, response: Response) -> AccountOut:
    spec = AccountSpec(
        id=body.id,
        currency=body.currency,
        kind=AccountKind(body.kind),
        code=body.code,
        owner_ref=body.owner_ref,
        debits_must_not_exceed_credits=body.debits_must_not_exceed_credits,
        credits_must_not_exceed_debits=body.credits_must_not_exceed_debits,
        limit_minor=body.limit_minor,
    )
    account, created = await ledger.open_account(spec)
    response.status_code = 201 if created else 200
    return AccountOut.of(account)


@router.get("/accounts/{account_id}", response_model=AccountOut, responses=_ERRORS)
async def get_account(account_id: uuid.UUID, ledger: Ledger) -> AccountOut:
    return AccountOut.of(await ledger.get_account(account_id))


@router.get("/accounts/{account_id}/balances", response_model=BalancesOut, responses=_ERRORS)
async def get_balances(account_id: uuid.UUID, ledger: Ledger) -> BalancesOut:
    return AccountOut.of(await ledger.get_account(account_id)).balances


@router.post("/accounts/{account_id}/status", response_model=AccountOut, responses=_ERRORS)
async def set_account_status(account_id: uuid.UUID, body: AccountStatusIn, ledger: Ledger) -> AccountOut:
    return AccountOut.of(await ledger.set_account_status(account_id, body.status))


@router.get("/accounts/{account_id}/transfers", response_model=TransferPageOut, responses=_ERRORS)
async def list_account_transfers(
    account_id: uuid.UUID,
    ledger: Ledger,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> TransferPageOut:
    page = await ledger.account_transfers(account_id, cursor=cursor, limit=limit)
    return TransferPageOut(items=[TransferOut.of(t) for t in page.items], next_cursor=page.next_cursor)


@router.post("/transfers", response_model=TransferOut, status_code=201, responses=_REPLAYED_TRANSFER | _ERRORS)
async def create_transfer(body: TransferIn, ledger: Ledger, response: Response) -> TransferOut:
    """Move money, or reserve it (``pending``). Retrying with the same id and fields returns the original."""
    return await _submit(ledger, _request_of(body), response)


@router.post("/transfer-batches", response_model=BatchOut, responses=_ERRORS)
async def create_transfer_batch(body: BatchIn, ledger: Ledger) -> BatchOut:
    """Up to 1,000 transfers in one call; with ``atomic`` (the default) they succeed or fail as one."""
    results = await ledger.submit_batch([_request_of(t) for t in body.transfers], atomic=body.atomic)
    out = [TransferResultOut.of(i, r) for i, r in enumerate(results)]
    failed = sum(r.status is ResultStatus.FAILED for r in results)
    if body.atomic and failed:
        first = next(r for r in out if r.code not in (None, LedgerErrorCode.LINKED_EVENT_FAILED))
        raise DomainError(
            first.code or LedgerErrorCode.LINKED_EVENT_FAILED,
            f"transfer {first.index} was refused, so none of the batch was applied",
            index=first.index,
            results=[r.model_dump(mode="json") for r in out],
        )
    return BatchOut(results=out, created=sum(r.status is ResultStatus.CREATED for r in results), failed=failed)


@router.get("/transfers/{transfer_id}", response_model=TransferOut, responses=_ERRORS)
async def get_transfer(transfer_id: uuid.UUID, ledger: Ledger) -> TransferOut:
    return TransferOut.of(await ledger.get_transfer(transfer_id))


@router.post(
    "/transfers/{pending_id}/post", response_model=TransferOut, status_code=201, responses=_REPLAYED_TRANSFER | _ERRORS
)
async def post_pending(pending_id: uuid.UUID, body: PostPendingIn, ledger: Ledger, response: Response) -> TransferOut:
    request = TransferRequest(
        id=body.id,
        type=TransferType.POST_PENDING,
        pending_id=pending_id,
        amount_minor=body.amount_minor,
        metadata=body.metadata,
    )
    return await _submit(ledger, request, response)


@router.post(
    "/transfers/{pending_id}/void", response_model=TransferOut, status_code=201, responses=_REPLAYED_TRANSFER | _ERRORS
)
async def void_pending(pending_id: uuid.UUID, body: VoidPendingIn, ledger: Ledger, response: Response) -> TransferOut:
    request = TransferRequest(id=body.id, type=TransferType.VOID_PENDING, pending_id=pending_id, metadata=body.metadata)
    return await _submit(ledger, request, response)
