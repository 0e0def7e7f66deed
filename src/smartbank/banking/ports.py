"""What banking needs from domains that are built elsewhere: customers and risk.

The customers domain satisfies :class:`CustomerDirectory` exactly; the risk domain will satisfy
:class:`RiskGate`. Until it exists, :class:`AllowAllRiskGate` allows everything, and its decision
is still recorded with every payment.
"""

from __future__ import annotations

import uuid
from typing import Final, Protocol

from smartbank.banking.model import PaymentAssessment, PaymentProfile, RiskDecision, RiskOutcome


class CustomerDirectory(Protocol):
    async def payment_profile(self, customer_id: uuid.UUID) -> PaymentProfile:
        """The customer's KYC status, tier and limits; ``DomainError("customer_not_found")`` if unknown."""
        ...


class RiskGate(Protocol):
    async def assess_payment(self, assessment: PaymentAssessment) -> RiskDecision:
        """Decide on a payment before it is written; the decision is stored with it."""
        ...


class AllowAllRiskGate:
    """The default until the risk domain exists: allows every payment, and says so."""

    VERSION: Final = "allow-all/1"

    async def assess_payment(self, assessment: PaymentAssessment) -> RiskDecision:
        return RiskDecision(RiskOutcome.ALLOW, "no_risk_engine", self.VERSION)
