"""Validation of response bodies against the schemas of the pinned OBIE v4.0 files (openapi-schema-validator,
refs resolved with ``referencing``), one registry per file."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SPECS = Path(__file__).resolve().parents[2] / "specs" / "obie-v4.0"
FILES = {
    "ais": "account-info-openapi.yaml",
    "pis": "payment-initiation-openapi.yaml",
    "cof": "confirmation-funds-openapi.yaml",
    "events": "event-notifications-openapi.yaml",
}


@cache
def _registry(spec: str) -> Registry[Any]:
    document = yaml.safe_load((SPECS / FILES[spec]).read_text(encoding="utf-8"))
    return Registry().with_resource(f"urn:obie-{spec}", Resource.from_contents(document, default_specification=DRAFT4))


def schema_errors(body: Any, schema: str, spec: str) -> list[str]:
    """Every way ``body`` breaks ``#/components/schemas/<schema>`` of the pinned file ``spec``."""
    validator = OAS30Validator({"$ref": f"urn:obie-{spec}#/components/schemas/{schema}"}, registry=_registry(spec))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]
