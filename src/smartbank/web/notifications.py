"""HTTP routes of the in-app inbox (``platform.inbox``): list your notices, mark them read.

The inbox sits in ``platform``, below every domain, so its routes live here in ``web``. Each call
reads or marks only the caller's own notices.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Final, Self

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from smartbank.identity.deps import CurrentPrincipal
from smartbank.platform.inbox import DEFAULT_PAGE, MAX_PAGE, Inbox, Notification, Param

router = APIRouter(tags=["notifications"])


def inbox_service(request: Request) -> Inbox:
    inbox: Inbox = request.app.state.inbox
    return inbox


InboxDep = Annotated[Inbox, Depends(inbox_service)]

_AUTH: Final[dict[int | str, dict[str, Any]]] = {
    401: {"description": "`unauthenticated`: no valid bearer token or session cookie"},
    403: {"description": "`csrf_failed`: a cookie session without its X-CSRF-Token header"},
}


class NotificationOut(BaseModel):
    id: uuid.UUID
    kind: str = Field(
        description="What happened: `banking.payment_sent`, `banking.payment_failed`, `banking.money_received`, "
        "`security.sign_in`, `security.locked`, `security.password_changed`, `security.mfa_enabled`, "
        "`security.mfa_disabled`, `security.session_ended`, `security.recovery_codes_regenerated`."
    )
    params: dict[str, Param] = Field(description="The facts of the notice: amounts in minor units, ids, names.")
    created_at: datetime
    read_at: datetime | None

    @classmethod
    def of(cls, item: Notification) -> Self:
        return cls(id=item.id, kind=item.kind, params=item.params, created_at=item.created_at, read_at=item.read_at)


class NotificationPageOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": "0192a4c1-7d3e-7b7e-9f55-2f1c3d4e5f60",
                            "kind": "banking.money_received",
                            "params": {
                                "account_id": "0192a4c1-0000-7000-8000-000000000001",
                                "account_number": "0001000000010042",
                                "transaction_id": "5d6a1c9e-4b51-5c39-9a0a-6f1e2b3c4d5e",
                                "amount_minor": 12345,
                                "currency": "CNY",
                                "counterparty_number": "0001000000020011",
                            },
                            "created_at": "2026-11-27T09:30:00Z",
                            "read_at": None,
                        }
                    ],
                    "next_cursor": None,
                    "unread": 1,
                }
            ]
        }
    )

    items: list[NotificationOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for older notices; null on the last page.")
    unread: int = Field(description="Your unread notices, counted up to 100.")


class MarkReadIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"up_to": "0192a4c1-7d3e-7b7e-9f55-2f1c3d4e5f60"}, {"all": True}]},
    )

    up_to: uuid.UUID | None = Field(None, description="Mark this notice and every older one read.")
    all: bool = Field(False, description="Mark every notice read.")

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.up_to is None) == (not self.all):
            raise ValueError("give either up_to or all: true")
        return self


class MarkReadOut(BaseModel):
    marked: int = Field(description="How many notices this call marked read.")
    unread: int = Field(description="Your unread notices left, counted up to 100.")


@router.get(
    "/v1/me/notifications",
    response_model=NotificationPageOut,
    responses={**_AUTH, 422: {"description": "`validation_error` (a cursor this API did not give out)"}},
)
async def list_notifications(
    principal: CurrentPrincipal,
    inbox: InboxDep,
    cursor: Annotated[str | None, Query(max_length=64, description="`next_cursor` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> NotificationPageOut:
    """Your notices, newest first: payments sent or failed, money received, security events."""
    page = await inbox.page(principal.id, cursor=cursor, limit=limit)
    return NotificationPageOut(
        items=[NotificationOut.of(item) for item in page.items],
        next_cursor=page.next_cursor,
        unread=await inbox.unread_count(principal.id),
    )


@router.post(
    "/v1/me/notifications/read",
    response_model=MarkReadOut,
    responses={
        **_AUTH,
        404: {"description": "`not_found`: `up_to` is not one of your notices"},
        422: {"description": "`validation_error`: neither or both of `up_to` and `all`"},
    },
)
async def mark_notifications_read(principal: CurrentPrincipal, inbox: InboxDep, body: MarkReadIn) -> MarkReadOut:
    """Mark your notices read: every one (`{"all": true}`), or one and all older ones (`{"up_to": id}`)."""
    marked = await inbox.mark_read(principal.id, body.up_to)
    return MarkReadOut(marked=marked, unread=await inbox.unread_count(principal.id))
