"""Identifiers: UUIDv7 (time-ordered, so new rows land at the right edge of B-tree indexes)."""

from __future__ import annotations

import uuid

from uuid_utils.compat import uuid7


def new_id() -> uuid.UUID:
    """A fresh UUIDv7 as a standard-library :class:`uuid.UUID`."""
    return uuid7()


def parse_id(text: str) -> uuid.UUID:
    return uuid.UUID(text)
