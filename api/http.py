"""Request and response helpers: strict JSON bodies, validated query strings."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import Response, request
from pydantic import BaseModel, ValidationError

from api.problems import MalformedRequest, UnsupportedMediaType
from ledger.canonical import parse_json
from ledger.errors import FieldError, InvalidInput

_M = TypeVar("_M", bound=BaseModel)

JSON_TYPES = frozenset({"application/json"})


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    if isinstance(body, BaseModel):
        body = body.model_dump(mode="json", by_alias=True)
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    response = Response(text, status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def validation_errors(prefix: str, exc: ValidationError) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False):
        loc = prefix
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else f".{part}"
        message = str(err["msg"]).removeprefix("Value error, ")
        errors.append(FieldError(loc, message))
    return errors


def parse_query(model: type[_M]) -> _M:
    """The query string validated by ``model``; repeated or unknown parameters are refused."""
    args: dict[str, str] = {}
    repeated = []
    for name, values in request.args.lists():
        if len(values) > 1:
            repeated.append(FieldError(f"query.{name}", "given more than once"))
        args[name] = values[0]
    if repeated:
        raise InvalidInput("invalid query", repeated)
    try:
        return model.model_validate(args)
    except ValidationError as e:
        raise InvalidInput("invalid query", validation_errors("query", e)) from e


def _has_nul(value: Any) -> bool:
    kind = type(value)
    if kind is str:
        return "\x00" in value
    if kind is dict:
        return any("\x00" in k or _has_nul(v) for k, v in value.items())
    if kind is list:
        return any(_has_nul(v) for v in value)
    return False


def json_body() -> Any:
    """The request body parsed strictly (``ledger.canonical.parse_json``).

    415 unless the body is ``application/json``; 413 beyond LEDGER_MAX_BODY_BYTES; 400
    for bytes that are not JSON (syntax, encoding, duplicate keys, NaN, deep nesting).
    Strings holding U+0000 are refused (422): PostgreSQL text cannot store them.
    """
    if request.mimetype not in JSON_TYPES:
        shown = request.mimetype or "none"
        raise UnsupportedMediaType(f"send the body as application/json (got {shown})")
    data = request.get_data(cache=False)
    try:
        value = parse_json(data, loc="body")
    except InvalidInput as e:
        raise MalformedRequest("the body is not valid JSON", e.errors) from None
    if b"\\u0000" in data and _has_nul(value):
        raise InvalidInput.field("body", "strings may not contain U+0000")
    return value


def parse_body(model: type[_M]) -> _M:
    value = json_body()
    try:
        return model.model_validate(value)
    except ValidationError as e:
        raise InvalidInput("invalid request body", validation_errors("body", e)) from e
