"""An always-on invariant check: unlike ``assert`` it does not vanish under ``python -O``."""

from __future__ import annotations

from typing import Any

from smartbank.kernel.errors import DomainError, ErrorCode


class InvariantViolation(DomainError):
    """A broken internal rule: a bug, never the caller's fault. Maps to HTTP 500."""


def invariant(condition: object, message: str, /, **details: Any) -> None:
    if not condition:
        raise InvariantViolation(ErrorCode.INVARIANT_VIOLATED, message, **details)
