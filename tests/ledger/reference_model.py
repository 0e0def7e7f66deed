"""A plain-Python ledger: the reference the stateful test holds PostgreSQL against.

It knows nothing of SQL; it follows the documented rules (docs/ledger.md) one transfer at a time.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field

from smartbank.ledger.model import TransferRequest, TransferType

MAX = 2**63 - 1


@dataclass
class ModelAccount:
    currency: str
    dmnec: bool
    limit: int
    status: str = "open"
    dp: int = 0
    dpo: int = 0
    cp: int = 0
    cpo: int = 0


@dataclass
class ModelPending:
    debit: uuid.UUID
    credit: uuid.UUID
    amount: int
    resolution: str | None = None  # post_pending / void_pending


@dataclass
class ModelLedger:
    accounts: dict[uuid.UUID, ModelAccount] = field(default_factory=dict)
    created: dict[uuid.UUID, TransferRequest] = field(default_factory=dict)
    pendings: dict[uuid.UUID, ModelPending] = field(default_factory=dict)

    def apply(self, r: TransferRequest) -> str:
        """Apply one transfer; return 'created', 'exists' or the error code. Failed ones change nothing."""
        if r.id in self.created:
            return (
                "exists"
                if self.created[r.id].fingerprint() == r.fingerprint()
                else ("id_already_exists_with_different_fields")
            )
        snapshot = copy.deepcopy((self.accounts, self.pendings))
        code = self._apply_new(r)
        if code == "created":
            self.created[r.id] = r
        else:
            self.accounts, self.pendings = snapshot
        return code

    def _apply_new(self, r: TransferRequest) -> str:
        if r.type in (TransferType.POSTED, TransferType.PENDING):
            assert r.debit_account_id and r.credit_account_id and r.amount_minor and r.currency
            pending = r.type is TransferType.PENDING
            amount = r.amount_minor
            d = self.accounts.get(r.debit_account_id)
            if d is None:
                return "debit_account_not_found"
            if d.currency != r.currency:
                return "currency_mismatch"
            if d.status != "open":
                return f"debit_account_{d.status}"
            if amount > MAX - d.dpo - d.dp:
                return "overflows_debits"
            if d.dmnec and d.dpo + d.dp + amount - d.cpo > d.limit:
                return "exceeds_credits"
            if pending:
                d.dp += amount
            else:
                d.dpo += amount
            c = self.accounts.get(r.credit_account_id)
            if c is None:
                return "credit_account_not_found"
            if c.currency != r.currency:
                return "currency_mismatch"
            if c.status != "open":
                return f"credit_account_{c.status}"
            if amount > MAX - c.cpo - c.cp:
                return "overflows_credits"
            if pending:
                c.cp += amount
                self.pendings[r.id] = ModelPending(r.debit_account_id, r.credit_account_id, amount)
            else:
                c.cpo += amount
            return "created"

        assert r.pending_id is not None
        p = self.pendings.get(r.pending_id)
        if p is None:
            return "pending_transfer_not_pending" if r.pending_id in self.created else "pending_transfer_not_found"
        if p.resolution == "post_pending":
            return "pending_transfer_already_posted"
        if p.resolution == "void_pending":
            return "pending_transfer_already_voided"
        post = r.type is TransferType.POST_PENDING
        amount = (r.amount_minor if r.amount_minor is not None else p.amount) if post else p.amount
        if amount > p.amount:
            return "exceeds_pending_transfer_amount"
        d, c = self.accounts[p.debit], self.accounts[p.credit]
        if post and d.status != "open":
            return f"debit_account_{d.status}"
        if post and c.status != "open":
            return f"credit_account_{c.status}"
        d.dp -= p.amount
        c.cp -= p.amount
        if post:
            d.dpo += amount
            c.cpo += amount
        p.resolution = r.type.value
        return "created"

    def apply_batch(self, batch: list[TransferRequest], atomic: bool) -> list[str]:
        if not atomic:
            return [self.apply(r) for r in batch]
        snapshot = copy.deepcopy((self.accounts, self.pendings, self.created))
        codes: list[str] = []
        for r in batch:
            code = self.apply(r)
            codes.append(code)
            if code not in ("created", "exists"):
                self.accounts, self.pendings, self.created = snapshot
                return (
                    ["linked_event_failed"] * (len(codes) - 1)
                    + [code]
                    + ["linked_event_failed"] * (len(batch) - len(codes))
                )
        return codes
