"""The published OpenAPI document changes only on purpose."""

from __future__ import annotations

import json
from pathlib import Path

from smartbank.platform.settings import Settings
from smartbank.web.app import create_app
from smartbank.web.openapi import FROZEN_PATH, differences, render

ROOT = Path(__file__).resolve().parents[2]


def test_the_api_matches_its_frozen_copy() -> None:
    frozen = json.loads((ROOT / FROZEN_PATH).read_text(encoding="utf-8"))
    current = json.loads(render(create_app(Settings(env="test")).openapi()))
    diff = differences(frozen, current)
    assert not diff, (
        "the OpenAPI document differs from its frozen copy; if the change is intended, run\n"
        f"    smartbank openapi -o {FROZEN_PATH}\nand commit the file with the change:\n  " + "\n  ".join(diff)
    )


def test_differences_name_what_was_removed_added_and_changed() -> None:
    frozen = {"paths": {"/a": {"get": {"summary": "A"}}, "/b": {"get": {}}}}
    current = {"paths": {"/a": {"get": {"summary": "A2"}}, "/c": {"post": {"x": 1}}}}
    assert differences(frozen, current) == [
        "removed /paths/~1b/get (was {})",
        "added   /paths/~1c/post/x = 1",
        "changed /paths/~1a/get/summary: 'A' -> 'A2'",
    ]


def test_every_request_body_has_an_example() -> None:
    document = create_app(Settings(env="test")).openapi()
    schemas = document["components"]["schemas"]
    missing = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if content is None:
                continue
            schema = content["schema"]
            if "$ref" in schema:
                schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
            if not (schema.get("examples") or content.get("examples") or content.get("example")):
                missing.append(f"{method.upper()} {path}")
    assert missing == []
