"""The published API contract: how the OpenAPI document is written down and compared.

`docs/api/openapi.json` is the frozen copy. A test fails when the running app's document differs,
so a change to a published path or field is always made on purpose: regenerate the copy with
``smartbank openapi -o docs/api/openapi.json`` and review the diff with the change.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

FROZEN_PATH = "docs/api/openapi.json"


def render(document: dict[str, Any]) -> str:
    """Stable text: sorted keys, two-space indent, a final newline (diff-friendly)."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _walk(node: Any, pointer: str) -> Iterator[tuple[str, Any]]:
    """Every leaf (empty containers included) with its JSON Pointer (RFC 6901)."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _walk(value, f"{pointer}/{str(key).replace('~', '~0').replace('/', '~1')}")
    elif isinstance(node, list) and node:
        for index, value in enumerate(node):
            yield from _walk(value, f"{pointer}/{index}")
    else:
        yield pointer, node


def differences(frozen: dict[str, Any], current: dict[str, Any], limit: int = 40) -> list[str]:
    """Human-readable differences between two documents, one line each (at most ``limit``)."""
    old, new = dict(_walk(frozen, "")), dict(_walk(current, ""))
    lines = [f"removed {key} (was {old[key]!r})" for key in sorted(old.keys() - new.keys())]
    lines += [f"added   {key} = {new[key]!r}" for key in sorted(new.keys() - old.keys())]
    lines += [
        f"changed {key}: {old[key]!r} -> {new[key]!r}"
        for key in sorted(old.keys() & new.keys())
        if old[key] != new[key]
    ]
    return lines[:limit]
