"""Ids, clock, errors and the invariant helper."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from smartbank.kernel.clock import FrozenClock
from smartbank.kernel.errors import DomainError, ErrorCode, http_status_for, register_statuses
from smartbank.kernel.ids import new_id
from smartbank.kernel.invariants import InvariantViolation, invariant


def test_ids_are_uuid7_and_time_ordered() -> None:
    ids = [new_id() for _ in range(200)]
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == 200


def test_frozen_clock_moves_only_when_told() -> None:
    clock = FrozenClock(datetime(2026, 3, 1, tzinfo=UTC))
    assert clock.now() == clock.now()
    clock.advance(timedelta(seconds=5))
    assert clock.now() == datetime(2026, 3, 1, 0, 0, 5, tzinfo=UTC)
    with pytest.raises(ValueError):
        FrozenClock(datetime(2026, 3, 1))


def test_error_shape_and_status() -> None:
    error = DomainError(ErrorCode.CURRENCY_MISMATCH, "nope", left="CNY")
    assert error.to_dict() == {"error": {"code": "currency_mismatch", "message": "nope", "details": {"left": "CNY"}}}
    assert error.http_status == 422
    assert http_status_for("not_found") == 404
    with pytest.raises(ValueError):
        register_statuses({"not_found": 400})


def test_invariant_raises_a_500_error() -> None:
    invariant(True, "fine")
    with pytest.raises(InvariantViolation) as err:
        invariant(1 == 2, "broken", a=1)
    assert err.value.http_status == 500
    assert err.value.details == {"a": 1}


def test_invariant_survives_python_optimise_mode() -> None:
    code = (
        "from smartbank.kernel.invariants import invariant, InvariantViolation\n"
        "try:\n    invariant(False, 'x')\nexcept InvariantViolation:\n    print('raised')\n"
    )
    out = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "raised"
