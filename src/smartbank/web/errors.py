"""One error shape for every failure: ``{"error": {"code", "message", "details"}}``; never a trace."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from smartbank.kernel.errors import DomainError, ErrorCode
from smartbank.platform.logging import get_logger

log = get_logger(__name__)

_HTTP_CODES = {
    400: ErrorCode.MALFORMED_JSON,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    429: ErrorCode.RATE_LIMITED,
}


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": {"code": code, "message": message, "details": details or {}}}
    )


def _clean(errors: list[Any]) -> list[dict[str, Any]]:
    """Validation errors without the rejected input (it may be huge or hold a secret)."""
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "type": e.get("type", ""), "msg": str(e.get("msg", ""))}
        for e in errors[:20]
    ]


def _allowed_methods(request: Request) -> list[str]:
    """The methods the OpenAPI document lists for the request's path (HEAD wherever GET is)."""
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods |= {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        status = exc.http_status
        if status >= 500:
            log.error("domain_error", code=exc.code, message=exc.message)
            return error_response(status, exc.code, "internal error")
        response = error_response(status, exc.code, exc.message, exc.details)
        retry_after_s = exc.details.get("retry_after_s")
        if status in (423, 429, 503) and isinstance(retry_after_s, int) and retry_after_s >= 0:
            response.headers["Retry-After"] = str(retry_after_s)  # what the body says, for clients and proxies
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, ErrorCode.MALFORMED_JSON, "the request body is not valid JSON")
        return error_response(422, ErrorCode.VALIDATION_ERROR, "the request is not valid", {"errors": _clean(errors)})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, ErrorCode.VALIDATION_ERROR)
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        response = error_response(exc.status_code, code, message, getattr(exc, "details", None))
        if exc.headers:
            response.headers.update(exc.headers)
        if exc.status_code == 405 and (allowed := _allowed_methods(request)):
            # Starlette names only the first route on the path; list every method the path takes.
            response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", path=request.url.path)
        return error_response(500, ErrorCode.INTERNAL_ERROR, "internal error")


#: The error envelope every non-2xx answer carries, as a JSON Schema for the OpenAPI document.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string", "description": "Stable, machine-readable error code."},
                "message": {"type": "string", "description": "What went wrong, for people."},
                "details": {"type": "object", "description": "Structured context (field, limits, ids)."},
            },
        }
    },
    "example": {
        "error": {"code": "validation_error", "message": "the request is not valid", "details": {"errors": []}}
    },
}
_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def document_errors(app: FastAPI) -> None:
    """Describe the error envelope in the OpenAPI document: every error response of every operation
    uses it, and ``default`` covers the statuses an operation does not list (400 malformed JSON, 413
    too large, 429 rate limited, ...)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        for name in ("HTTPValidationError", "ValidationError"):
            schema["components"]["schemas"].pop(name, None)
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.setdefault("responses", {})
                for status, response in responses.items():
                    if status == "default" or int(status) >= 400:
                        response["content"] = _ERROR_CONTENT
                responses["default"] = {"description": "Error", "content": _ERROR_CONTENT}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
