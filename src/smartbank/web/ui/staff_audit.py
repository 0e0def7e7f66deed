"""Audit rows as the staff console shows them: one translated sentence each, with who did it.

Each known action has a sentence (``N_``, translated when shown); an action without one is shown by
its code, so nothing in the log is hidden. Only details that staff wrote themselves (reasons) or
that name money (amounts) are shown; codes such as a failed login's ``bad_password`` are not.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from smartbank.identity.model import StaffRole
from smartbank.identity.service import StaffMember
from smartbank.platform.audit import AuditRecord, Outcome
from smartbank.web.ui.i18n import N_, Formatter

#: Action → sentence. ``%(from)s``/``%(to)s`` are tiers, ``%(amount)s`` money.
SENTENCES: Final[dict[str, str]] = {
    "identity.principal_created": N_("Login created"),
    "identity.login": N_("Logged in"),
    "identity.logout": N_("Logged out"),
    "identity.lockout": N_("Login locked after wrong passwords"),
    "identity.mfa_verify": N_("Entered an authenticator code"),
    "identity.mfa_enrolment_started": N_("Started setting up an authenticator app"),
    "identity.mfa_enrolled": N_("Turned on the authenticator app"),
    "identity.mfa_disabled": N_("Turned off the authenticator app"),
    "identity.recovery_codes_regenerated": N_("Made new recovery codes"),
    "identity.step_up": N_("Confirmed an action with an authenticator code"),
    "identity.password_changed": N_("Changed the password"),
    "identity.session_ended": N_("Ended a session"),
    "identity.refresh_token_reused": N_("A used sign-in token came back: the session was ended"),
    "customers.registered": N_("Registered"),
    "customers.verification_started": N_("Asked for a verification code"),
    "customers.verification_resent": N_("Asked for the verification code again"),
    "customers.verification_failed": N_("Entered a wrong verification code"),
    "customers.contact_changed": N_("Changed a phone number or e-mail"),
    "customers.address_changed": N_("Changed the address"),
    "customers.kyc_submitted": N_("Sent identity documents for checking"),
    "customers.kyc_verified": N_("Approved the identity check"),
    "customers.kyc_rejected": N_("Rejected the identity check"),
    "customers.tier_changed": N_("Changed the tier from %(from)s to %(to)s"),
    "customers.id_number_revealed": N_("Revealed the full ID number"),
    "banking.account_opened": N_("Opened an account"),
    "banking.account_frozen": N_("Froze an account"),
    "banking.account_unfrozen": N_("Unfroze an account"),
    "banking.payee_added": N_("Added a payee"),
    "banking.payee_deleted": N_("Removed a payee"),
    "banking.transfer_submitted": N_("Sent a payment of %(amount)s"),
    "banking.transfer_completed": N_("A payment of %(amount)s went through"),
    "banking.transfer_failed": N_("A payment of %(amount)s failed"),
    "banking.cash_deposit_submitted": N_("Recorded a cash deposit of %(amount)s"),
    "banking.cash_deposit_completed": N_("A cash deposit of %(amount)s went through"),
    "banking.cash_deposit_failed": N_("A cash deposit of %(amount)s failed"),
    "banking.cash_withdrawal_submitted": N_("Recorded a cash withdrawal of %(amount)s"),
    "banking.cash_withdrawal_completed": N_("A cash withdrawal of %(amount)s went through"),
    "banking.cash_withdrawal_failed": N_("A cash withdrawal of %(amount)s failed"),
}
OTHER: Final = N_("Other action: %(action)s")
#: Actions whose ``reason`` detail is text a staff member wrote.
WITH_REASON: Final = frozenset(
    {
        "customers.kyc_verified",
        "customers.kyc_rejected",
        "customers.tier_changed",
        "customers.id_number_revealed",
        "banking.account_frozen",
        "banking.account_unfrozen",
    }
)
ROLE_NAMES: Final[dict[StaffRole, str]] = {
    StaffRole.ADMIN: N_("administrator"),
    StaffRole.TELLER: N_("teller"),
    StaffRole.RISK_ANALYST: N_("risk analyst"),
    StaffRole.CRM_AGENT: N_("customer service"),
    StaffRole.LENDING_OFFICER: N_("lending officer"),
}
OUTCOMES: Final[dict[Outcome, str]] = {Outcome.FAILURE: N_("failed"), Outcome.DENIED: N_("refused")}


@dataclass(frozen=True, slots=True)
class AuditLine:
    seq: int
    sentence: str
    actor: str
    at: datetime
    ip: str | None
    outcome: str | None
    reason: str | None


def actor_name(
    fmt: Formatter, record: AuditRecord, customer_id: uuid.UUID, staff: Mapping[uuid.UUID, StaffMember]
) -> str:
    """The customer, a staff member by login and roles, another customer, or the system."""
    member = staff.get(record.actor_id) if record.actor_id is not None else None
    if record.actor_kind == "staff" and member is not None:
        roles = ", ".join(fmt.gettext(ROLE_NAMES[r]) for r in sorted(member.roles))
        return fmt.gettext(N_("%(login)s (%(roles)s)"), login=member.login, roles=roles)
    if record.actor_kind == "staff":
        return fmt.gettext(N_("a staff member"))
    if record.actor_kind == "customer" and record.actor_id == customer_id:
        return fmt.gettext(N_("the customer"))
    if record.actor_kind == "customer":
        return fmt.gettext(N_("another customer"))
    return fmt.gettext(N_("the bank's systems"))


def describe(
    fmt: Formatter, records: Sequence[AuditRecord], customer_id: uuid.UUID, staff: Mapping[uuid.UUID, StaffMember]
) -> list[AuditLine]:
    lines = []
    for record in records:
        details = record.details
        params: dict[str, object] = {"action": record.action}
        if "amount_minor" in details and "currency" in details:
            params["amount"] = fmt.money(int(details["amount_minor"]), str(details["currency"]))
        if record.action == "customers.tier_changed":
            params["from"], params["to"] = details.get("from", "?"), details.get("to", "?")
        template = SENTENCES.get(record.action, OTHER)
        if "%(amount)s" in template and "amount" not in params:
            template = OTHER
        reason = details.get("reason") if record.action in WITH_REASON else None
        outcome = OUTCOMES.get(record.outcome)
        lines.append(
            AuditLine(
                seq=record.seq,
                sentence=fmt.gettext(template, **params),
                actor=actor_name(fmt, record, customer_id, staff),
                at=record.occurred_at,
                ip=record.ip,
                outcome=fmt.gettext(outcome) if outcome else None,
                reason=str(reason) if reason else None,
            )
        )
    return lines
