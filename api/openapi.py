"""The OpenAPI 3.1 document, generated from the declared operations and their models.

Paths come from the app's URL map (every view declared with ``api.spec.operation``);
schemas come from the pydantic models the views validate with and answer in, and from
``ledger.events`` for the events themselves: one schema per event type, the envelope
(``Event``) with ``type`` fixed and ``payload`` the type's payload model.
"""

from __future__ import annotations

import copy
import re
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from flask import Blueprint, Flask, current_app
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api.models import Problem
from api.spec import Spec, operation, spec_of
from ledger.auth import ACTIONS, EVENT_PERMISSIONS
from ledger.events import GUIDED_EVENTS, PAYLOADS, Event
from ledger.service import PROJECT_PATTERN

bp = Blueprint("openapi", __name__)

REF = "#/components/schemas/{model}"
_RULE_PARAM = re.compile(r"<(?:([a-zA-Z_]+)(?:\([^)]*\))?:)?([a-zA-Z_][a-zA-Z0-9_]*)>")

_REASONS = {
    400: "Malformed JSON body",
    401: "Missing, malformed, unknown or revoked token",
    403: "The token's role or project scope does not allow this",
    404: "No such project or resource",
    409: "Conflict: stale revision, event id reused with other content, already exists",
    413: "Body larger than LEDGER_MAX_BODY_BYTES",
    415: "Body is not application/json",
    422: "Validation failed: `errors` names each field",
    503: "Database unavailable: retry after Retry-After seconds",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _package_version() -> str:
    try:
        return version("annotation-ledger")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def _roles(spec: Spec) -> str:
    if not spec.auth:
        return "No token needed."
    if spec.action is None:
        lines = [
            f"`{role}`: {', '.join(sorted(types)) or 'none'}"
            for role, types in EVENT_PERMISSIONS.items()
        ]
        return "Event types each role may post: " + "; ".join(lines) + "."
    roles = sorted(ACTIONS[spec.action])
    scope = " with the all-projects scope" if spec.action == "tokens.manage" else ""
    return f"Roles: {', '.join(f'`{r}`' for r in roles)}{scope}."


def _strip_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``X | None`` as a query parameter is just X (absent means None)."""
    options = schema.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        rest = dict(schema)
        rest.pop("anyOf")
        rest.pop("default", None)
        inner = next(o for o in options if o != {"type": "null"})
        return {**inner, **rest}
    return schema


def _event_schemas(defs: dict[str, Any], max_batch: int) -> None:
    """One schema per event type, ``AnyEvent``, ``EventBatch`` and ``EventsBody``."""
    base = defs["Event"]
    mapping = {}
    for kind, payload in PAYLOADS.items():
        schema = copy.deepcopy(base)
        schema["title"] = f"{kind} event"
        schema["properties"]["type"] = {"type": "string", "const": kind}
        schema["properties"]["payload"] = _ref(payload.__name__)
        if kind in GUIDED_EVENTS:
            schema["required"] = [*schema["required"], "guideline"]
        name = "Event." + kind
        defs[name] = schema
        mapping[kind] = REF.format(model=name)
    defs["AnyEvent"] = {
        "title": "Event",
        "description": "One event; `type` selects the payload schema.",
        "oneOf": [{"$ref": ref} for ref in mapping.values()],
        "discriminator": {"propertyName": "type", "mapping": mapping},
    }
    defs["EventBatch"] = {
        "title": "EventBatch",
        "type": "object",
        "properties": {
            "events": {
                "type": "array",
                "items": _ref("AnyEvent"),
                "minItems": 1,
                "maxItems": max_batch,
            }
        },
        "required": ["events"],
        "additionalProperties": False,
    }
    defs["EventsBody"] = {
        "title": "EventsBody",
        "description": "One event, or a batch appended atomically.",
        "oneOf": [_ref("AnyEvent"), _ref("EventBatch")],
    }


def _models(specs: list[Spec]) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = [Problem, Event, *PAYLOADS.values()]
    for spec in specs:
        for model in (spec.response, spec.query, spec.body):
            if isinstance(model, type) and issubclass(model, BaseModel) and model not in found:
                found.append(model)
    return found


def _parameters(rule: str, spec: Spec, defs: dict[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for converter, name in _RULE_PARAM.findall(rule):
        if name in spec.path_schemas:
            schema = spec.path_schemas[name]
        elif name == "project":
            schema = {"type": "string", "pattern": PROJECT_PATTERN.pattern}
        elif converter == "int":
            schema = {"type": "integer", "minimum": 0}
        else:
            schema = {"type": "string"}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    if spec.query is not None:
        query = defs[spec.query.__name__]
        required = set(query.get("required", []))
        for name, schema in query["properties"].items():
            schema = _strip_null(dict(schema))
            param: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
            if "description" in schema:
                param["description"] = schema.pop("description")
            schema.pop("title", None)
            param["schema"] = schema
            params.append(param)
    return params


def _responses(spec: Spec, has_path_params: bool) -> dict[str, Any]:
    request_id = {
        "X-Request-Id": {
            "description": "the request id, also in the logs",
            "schema": {"type": "string"},
        }
    }
    out: dict[str, Any] = {}
    if spec.content_type == "application/json":
        body_schema: dict[str, Any] = (
            _ref(spec.response.__name__) if spec.response is not None else {"type": "object"}
        )
    else:
        body_schema = {"type": "string"}
    success = {
        "description": spec.summary,
        "headers": request_id,
        "content": {spec.content_type: {"schema": body_schema}},
    }
    out[str(spec.status)] = success
    for status, description in spec.also.items():
        out[str(status)] = {**success, "description": description}
    statuses = set(spec.statuses())
    if has_path_params:
        statuses.add(422)
    for status in sorted(statuses):
        headers = dict(request_id)
        if status == 503:
            headers["Retry-After"] = {
                "description": "seconds to wait before retrying",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        if status == 401:
            headers["WWW-Authenticate"] = {"schema": {"type": "string"}}
        out[str(status)] = {
            "description": _REASONS.get(status, "Error"),
            "headers": headers,
            "content": {"application/problem+json": {"schema": _ref("Problem")}},
        }
    return out


def build(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every operation registered on ``app``."""
    found: list[tuple[str, Spec, str]] = []
    for url_rule in app.url_map.iter_rules():
        spec = spec_of(app.view_functions[url_rule.endpoint])
        if spec is not None:
            found.append((url_rule.rule, spec, url_rule.endpoint))
    _, top = models_json_schema(
        [(m, "validation") for m in _models([s for _, s, _ in found])], ref_template=REF
    )
    defs: dict[str, Any] = top.get("$defs", {})
    _event_schemas(defs, int(app.config.get("LEDGER_MAX_BATCH", 1000)))

    paths: dict[str, dict[str, Any]] = {}
    for rule, spec, endpoint in sorted(found, key=lambda item: (item[0], item[1].method)):
        path = _RULE_PARAM.sub(lambda m: "{" + m.group(2) + "}", rule)
        op: dict[str, Any] = {
            "operationId": endpoint.replace(".", "_"),
            "summary": spec.summary,
            "description": (spec.description + "\n\n" + _roles(spec)).strip(),
            "tags": [spec.tag],
            "security": [{"bearer": []}] if spec.auth else [],
            "responses": _responses(spec, bool(_RULE_PARAM.search(rule))),
        }
        params = _parameters(rule, spec, defs)
        if params:
            op["parameters"] = params
        if spec.body is not None:
            name = spec.body if isinstance(spec.body, str) else spec.body.__name__
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ref(name)}},
            }
        paths.setdefault(path, {})[spec.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Annotation ledger",
            "version": _package_version(),
            "description": "Append-only, hash-chained, Merkle-hashed audit and lineage "
            "ledger for instance-segmentation annotation. Errors are RFC 9457 problem "
            "details. See docs/api.md.",
        },
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from `ledger tokens create` or POST /v1/tokens.",
                }
            },
        },
    }


@operation(
    bp,
    "/v1/openapi.json",
    summary="This API's OpenAPI 3.1 document",
    tag="operations",
    auth=False,
)
def openapi_document() -> dict[str, Any]:
    cached: dict[str, Any] | None = current_app.config.get("LEDGER_OPENAPI")
    if cached is None:
        cached = build(current_app)
        current_app.config["LEDGER_OPENAPI"] = cached
    return cached
