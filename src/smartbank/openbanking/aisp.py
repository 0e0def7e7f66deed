"""Account information (OBIE v4.0 AISP): accounts, balances and transactions, read through banking's
service (``list_accounts``, ``get_account``, ``history``) as the customer who granted the consent, and
shown only as far as the consent's accounts, permissions and transaction range allow."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode

from smartbank.banking.model import AccountBalance, DepositAccount, Entry, HistoryFilter, Product
from smartbank.identity.model import Principal, PrincipalKind
from smartbank.kernel.errors import DomainError
from smartbank.openbanking.errors import OBError, OBErrorCode
from smartbank.openbanking.model import SCHEME_BBAN, SCHEME_IBAN, AccountView, ConsentKind, booking_window
from smartbank.openbanking.pisp import format_amount, iso

if TYPE_CHECKING:
    from smartbank.openbanking.service import AccessContext, Consent, OpenBankingService

AISP: Final = "/open-banking/v4.0/aisp"
#: Transactions on one page of ``/accounts/{AccountId}/transactions``.
PAGE_SIZE: Final = 50
MAX_CURSOR_CHARS: Final = 100
_ACCOUNT_TYPE: Final = {Product.CURRENT: "CACC", Product.SAVINGS: "SVGS"}
_DESCRIPTION: Final = {Product.CURRENT: "Current account", Product.SAVINGS: "Savings account"}


def _forbidden(what: str) -> OBError:
    return OBError(403, OBErrorCode.CONSENT_MISMATCH, f"the consent does not allow reading {what}")


def _indicator(amount_minor: int) -> str:
    return "Credit" if amount_minor >= 0 else "Debit"


class AccountInformation:
    def __init__(self, core: OpenBankingService) -> None:
        self._core = core
        self._banking = core._banking
        self._clock = core._clock
        self.page_size = PAGE_SIZE

    async def _consent(self, ctx: AccessContext) -> tuple[Consent, Principal, AccountView]:
        """The account-access consent the token is bound to, its customer and what it lets the partner see."""
        from smartbank.openbanking.service import _consent

        if ctx.grant_type != "authorization_code" or ctx.consent_kind is not ConsentKind.ACCOUNT_ACCESS:
            raise OBError(
                403,
                OBErrorCode.CONSENT_MISMATCH,
                "use the access token a customer granted for an account-access consent",
            )
        if "accounts" not in ctx.scope.split() or ctx.consent_id is None or ctx.customer_id is None:
            raise OBError(403, OBErrorCode.CONSENT_MISMATCH, "the token lacks the accounts scope")
        async with self._core._db.connect() as conn:
            row = await self._core._client_consent(conn, ctx, ctx.consent_id, lock=False)
        consent = _consent(row, self._clock.now())
        return consent, Principal(ctx.customer_id, PrincipalKind.CUSTOMER), AccountView.of(consent.permissions)

    async def _account(self, consent: Consent, principal: Principal, account_id: str) -> AccountBalance:
        """One account of the consent; any other id (another customer's, or one not chosen) is not found."""
        try:
            wanted = uuid.UUID(account_id)
        except ValueError:
            wanted = None
        if wanted is None or wanted not in consent.account_ids:
            raise OBError(404, OBErrorCode.NOT_FOUND, "no such account in this consent", "AccountId")
        try:
            return await self._banking.get_account(principal, wanted)
        except DomainError as exc:
            raise OBError(404, OBErrorCode.NOT_FOUND, "no such account in this consent", "AccountId") from exc

    def account_body(self, account: DepositAccount, view: AccountView) -> dict[str, Any]:
        """An ``OBAccount6``: identification only with ReadAccountsDetail."""
        data: dict[str, Any] = {
            "AccountId": str(account.id),
            "Status": "Enabled" if account.status == "open" else "Disabled",
            "Currency": account.currency,
            "AccountCategory": "Personal",
            "AccountTypeCode": _ACCOUNT_TYPE.get(account.product, "CACC"),
            "Description": _DESCRIPTION.get(account.product, "Account"),
            "OpeningDate": iso(account.opened_at),
        }
        if view.account_identification:
            identifications = [{"SchemeName": SCHEME_BBAN, "Identification": account.number}]
            if account.iban:
                identifications.append({"SchemeName": SCHEME_IBAN, "Identification": account.iban})
            data["Account"] = identifications
        return data

    async def accounts(self, ctx: AccessContext, self_url: str) -> dict[str, Any]:
        """``OBReadAccount6`` of every account in the consent that is still the customer's."""
        consent, principal, view = await self._consent(ctx)
        if not view.accounts:
            raise _forbidden("accounts")
        chosen = set(consent.account_ids)
        accounts = [a for a in await self._banking.list_accounts(principal, principal.id) if a.id in chosen]
        return {
            "Data": {"Account": [self.account_body(a, view) for a in accounts]},
            "Links": {"Self": self_url},
            "Meta": {"TotalPages": 1},
        }

    async def account(self, ctx: AccessContext, account_id: str, self_url: str) -> dict[str, Any]:
        consent, principal, view = await self._consent(ctx)
        if not view.accounts:
            raise _forbidden("accounts")
        found = await self._account(consent, principal, account_id)
        return {
            "Data": {"Account": [self.account_body(found.account, view)]},
            "Links": {"Self": self_url},
            "Meta": {"TotalPages": 1},
        }

    async def balances(self, ctx: AccessContext, account_id: str, self_url: str) -> dict[str, Any]:
        """``OBReadBalance1``: the booked (ITBD) and available (ITAV) balances, as of now."""
        consent, principal, view = await self._consent(ctx)
        if not view.balances:
            raise _forbidden("balances")
        found = await self._account(consent, principal, account_id)
        now = iso(self._clock.now())
        currency = found.account.currency
        balances = [
            {
                "AccountId": str(found.account.id),
                "CreditDebitIndicator": _indicator(amount),
                "Type": kind,
                "DateTime": now,
                "Amount": {"Amount": format_amount(amount, currency), "Currency": currency},
            }
            for kind, amount in (("ITBD", found.posted_minor), ("ITAV", found.available_minor))
        ]
        return {"Data": {"Balance": balances}, "Links": {"Self": self_url}, "Meta": {"TotalPages": 1}}

    async def transactions(
        self,
        ctx: AccessContext,
        account_id: str,
        *,
        base_url: str,
        from_: datetime | None,
        to: datetime | None,
        cursor: str | None,
    ) -> dict[str, Any]:
        """``OBReadTransaction6``: one page, newest first, within the consent's range and direction.

        ``Links.Next`` carries the cursor of the next (older) page; ``First`` the newest page."""
        consent, principal, view = await self._consent(ctx)
        if not view.transactions:
            raise _forbidden("transactions (Basic or Detail with Credits or Debits)")
        found = await self._account(consent, principal, account_id)
        if cursor is not None and len(cursor) > MAX_CURSOR_CHARS:
            raise OBError(400, OBErrorCode.FIELD_INVALID, "page is not a valid cursor", "page")
        start, end = booking_window(consent.transaction_from, consent.transaction_to, from_, to)
        if start is not None and end is not None and end < start:
            page_items: list[Entry] = []
            next_cursor = None
        else:
            where = HistoryFilter(
                since=start,
                until=end + timedelta(microseconds=1) if end is not None else None,
                direction=view.direction,  # type: ignore[arg-type]  # "in", "out" or None
            )
            try:
                page = await self._banking.history(
                    principal, found.account.id, where, cursor=cursor, limit=self.page_size
                )
            except DomainError as exc:
                raise OBError(400, OBErrorCode.FIELD_INVALID, exc.message, "page") from exc
            page_items, next_cursor = page.items, page.next_cursor
        query = {k: v for k, v in (("fromBookingDateTime", iso(from_)), ("toBookingDateTime", iso(to))) if v}
        links = {
            "Self": base_url + ("?" + urlencode({**query, "page": cursor}) if cursor else _query(query)),
            "First": base_url + _query(query),
        }
        if next_cursor is not None:
            links["Next"] = base_url + "?" + urlencode({**query, "page": next_cursor})
        return {
            "Data": {"Transaction": [self.transaction_body(e, view) for e in page_items]},
            "Links": links,
            "Meta": {},
        }

    @staticmethod
    def transaction_body(entry: Entry, view: AccountView) -> dict[str, Any]:
        """An ``OBTransaction6``: with ReadTransactionsDetail also the reference and the other side's account."""
        data: dict[str, Any] = {
            "AccountId": str(entry.account_id),
            "TransactionId": str(entry.transfer_id),
            "CreditDebitIndicator": _indicator(entry.amount_minor),
            "Status": "BOOK",
            "TransactionMutability": "Immutable",
            "BookingDateTime": iso(entry.posted_at),
            "ValueDateTime": iso(entry.posted_at),
            "Amount": {"Amount": format_amount(entry.amount_minor, entry.currency), "Currency": entry.currency},
        }
        if view.transaction_detail:
            if entry.description.strip():
                data["TransactionInformation"] = entry.description.strip()[:500]
            if entry.counterparty_number:
                other: dict[str, Any] = {"SchemeName": SCHEME_BBAN, "Identification": entry.counterparty_number}
                if entry.counterparty_name:
                    other["Name"] = entry.counterparty_name[:350]
                data["CreditorAccount" if entry.amount_minor < 0 else "DebtorAccount"] = other
        return data


def _query(query: dict[str, str]) -> str:
    return "?" + urlencode(query) if query else ""
