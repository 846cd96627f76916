"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error answer has ``type``, ``title``, ``status`` and ``detail``, the request's
``instance`` path and ``request_id``, and, where fields are at fault, ``errors``: a
list of ``{"loc": ..., "message": ...}`` naming each one (``events[3].payload.revision``).
Library errors map by their ``http_status``; werkzeug's HTTP errors (404 for unknown
URLs, 405, 413) by their code. Anything else is logged with its traceback and answered
with a bare 500 that reveals nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from ledger.auth import Forbidden, Unauthorized
from ledger.errors import (
    ConfigError,
    Conflict,
    FieldError,
    InvalidInput,
    LedgerError,
    NotFound,
    StorageError,
    StorageUnavailable,
    VerificationFailed,
)

PROBLEM_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:annotation-ledger:problem:"
#: seconds a client should wait before retrying after a 503
RETRY_AFTER = 1

log = logging.getLogger("ledger.api")


class MalformedRequest(InvalidInput):
    """The body is not JSON the service can read (syntax, encoding, duplicate keys)."""

    http_status = 400
    title = "Malformed request"


class UnsupportedMediaType(LedgerError):
    http_status = 415
    title = "Unsupported media type"


# (slug, title) by status for werkzeug's errors and the fallback
_BY_STATUS: dict[int, tuple[str, str]] = {
    400: ("malformed-request", "Malformed request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-failed", "Validation failed"),
    500: ("internal-error", "Internal server error"),
    503: ("storage-unavailable", "Storage unavailable"),
}

# the most specific class wins: order matters
_BY_CLASS: tuple[tuple[type[LedgerError], str], ...] = (
    (MalformedRequest, "malformed-request"),
    (UnsupportedMediaType, "unsupported-media-type"),
    (Unauthorized, "unauthorized"),
    (Forbidden, "forbidden"),
    (NotFound, "not-found"),
    (Conflict, "conflict"),
    (VerificationFailed, "verification-failed"),
    (InvalidInput, "validation-failed"),
    (StorageUnavailable, "storage-unavailable"),
    (StorageError, "storage-error"),
    (ConfigError, "configuration-error"),
)

#: every problem type the service answers with, for docs/api.md and the OpenAPI text
PROBLEM_TYPES = tuple(
    sorted({slug for _, slug in _BY_CLASS} | {slug for slug, _ in _BY_STATUS.values()})
)


def problem(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A problem+json response."""
    default_slug, default_title = _BY_STATUS.get(status, ("request-failed", "Request failed"))
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + (slug or default_slug),
        "title": title or default_title,
        "status": status,
        "detail": detail,
        "instance": request.path,
        "request_id": getattr(g, "request_id", None),
    }
    if errors:
        body["errors"] = [{"loc": e.loc, "message": e.message} for e in errors]
    response = Response(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        status=status,
        mimetype=PROBLEM_TYPE,
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def from_ledger_error(error: LedgerError) -> Response:
    slug = next((s for cls, s in _BY_CLASS if isinstance(error, cls)), None)
    headers: dict[str, str] = {}
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="ledger"'
    if isinstance(error, StorageUnavailable):
        headers["Retry-After"] = str(RETRY_AFTER)
    status = error.http_status
    if status >= 500:
        log.error("%s: %s", type(error).__name__, error.message)
    errors: list[FieldError] | None = getattr(error, "errors", None)
    return problem(
        status, error.message, slug=slug, title=error.title, errors=errors, headers=headers
    )


def from_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    headers = {k: v for k, v in error.get_headers() if k.lower() not in ("content-type",)}
    headers.pop("Content-Length", None)
    detail = error.description or _BY_STATUS.get(status, ("", "Request failed"))[1]
    if status == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        detail = f"the request body is larger than the limit of {limit} bytes"
    return problem(status, detail, headers=headers)


def from_unexpected(error: Exception) -> Response:
    log.exception("unexpected error answering %s %s", request.method, request.path)
    return problem(500, "the service failed; the request id identifies it in the logs")


def register(app: Flask) -> None:
    app.register_error_handler(LedgerError, from_ledger_error)
    app.register_error_handler(HTTPException, from_http_exception)
    app.register_error_handler(Exception, from_unexpected)
