"""Structured JSON logs: one line per request, with its request id, never a token.

A request id comes from the client's ``X-Request-Id`` header when it is a short
printable token, or is generated; it is sent back in ``X-Request-Id`` and in every
problem. The request line logs method, path (never the query string), route, status,
duration, sizes, remote address and principal (``token:<name>``): no headers, so no
credentials.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, request

from api.state import state

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

request_log = logging.getLogger("ledger.request")

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(app: Flask) -> None:
    """Give the ``ledger`` loggers a JSON handler unless logging is configured already
    (gunicorn's ``logconfig_dict`` in ``api.gunicorn_config`` does it)."""
    logger = logging.getLogger("ledger")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    app.before_request(_start)
    app.after_request(_finish)


def _start() -> None:
    g.started = time.perf_counter()
    given = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
    g.principal = None


def _finish(response: Response) -> Response:
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    rid = g.get("request_id") or uuid.uuid4().hex
    response.headers[REQUEST_ID_HEADER] = rid
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    state().metrics.observe_request(request.method, route, response.status_code, seconds)
    request_log.info(
        "request",
        extra={
            "request_id": rid,
            "method": request.method,
            "path": request.path,
            "route": route,
            "status": response.status_code,
            "duration_ms": round(seconds * 1000, 3),
            "bytes_in": request.content_length,
            "bytes_out": response.calculate_content_length(),
            "remote": request.remote_addr,
            "principal": g.get("principal"),
        },
    )
    return response
