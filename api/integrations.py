"""Webhooks from annotation tools: Label Studio and CVAT.

- ``POST /v1/projects/<project>/integrations/label-studio``: Label Studio's webhook.
  It carries no bearer token; it must send the shared secret LEDGER_LABEL_STUDIO_SECRET
  in the header ``X-Ledger-Webhook-Secret`` (Label Studio's webhook "headers" field)
  or as ``?token=<secret>`` in the URL. A redelivery appends nothing.
- ``POST /v1/projects/<project>/integrations/cvat``: CVAT's webhook, signed with
  LEDGER_CVAT_WEBHOOK_SECRET: ``X-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>``.

Both answer 404 while their secret is not configured, 401 without the secret (or
signature) and 403 with a wrong one.
"""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, request
from pydantic import BaseModel, ConfigDict

from api.http import JSON_TYPES, json_response
from api.problems import MalformedRequest, UnsupportedMediaType
from api.spec import operation
from api.state import state
from ledger.auth import Forbidden, Unauthorized
from ledger.canonical import parse_json
from ledger.errors import InvalidInput, NotFound
from ledger.integrations import cvat, label_studio

bp = Blueprint("integrations", __name__)


class LabelStudioWebhook(BaseModel):
    """A Label Studio webhook payload (only the fields the ledger reads are listed)."""

    model_config = ConfigDict(extra="allow")
    action: str
    project: dict[str, Any] | None = None
    task: dict[str, Any] | list[Any] | None = None
    annotation: dict[str, Any] | list[Any] | None = None
    annotations: list[Any] | None = None


class CvatWebhook(BaseModel):
    """A CVAT webhook payload (only the fields the ledger reads are listed)."""

    model_config = ConfigDict(extra="allow")
    event: str
    job: dict[str, Any] | None = None
    before_update: dict[str, Any] | None = None


SECRET_HEADER = "X-Ledger-Webhook-Secret"


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _body() -> tuple[bytes, Any]:
    if request.mimetype not in JSON_TYPES:
        shown = request.mimetype or "none"
        raise UnsupportedMediaType(f"send the body as application/json (got {shown})")
    data = request.get_data(cache=True)
    try:
        value = parse_json(data, loc="body")
    except InvalidInput as e:
        raise MalformedRequest("the body is not valid JSON", e.errors) from None
    if b"\\u0000" in data and _has_nul(value):
        raise InvalidInput.field("body", "strings may not contain U+0000")
    return data, value


def _append(project: str, events: list[dict[str, Any]], principal: str) -> Any:
    st = state()
    if not events:
        head = st.store.head(project)
        if head is None:
            raise NotFound(f"project {project} does not exist")
        return json_response({"project": project, "size": head.size, "appended": 0}, 200)
    result = st.ledger.append(project, events, principal)
    st.metrics.observe_append(result)
    body = {
        "project": project,
        "size": result.size,
        "appended": result.appended,
        "results": [
            {"id": r.event_id, "seq": r.seq, "duplicate": r.duplicate} for r in result.results
        ],
    }
    return json_response(body, 201 if result.appended else 200)


@operation(
    bp,
    "/v1/projects/<project>/integrations/label-studio",
    "POST",
    summary="Label Studio webhook (annotation created, updated, deleted)",
    tag="integrations",
    auth=False,
    status=201,
    body=LabelStudioWebhook,
    errors=(401, 403, 404, 409),
    also={200: "nothing new: a redelivery, or an action without masks"},
    description="Send the shared secret LEDGER_LABEL_STUDIO_SECRET in the "
    "`X-Ledger-Webhook-Secret` header or as `?token=`. Brush and polygon results become "
    "mask events; users, label config and labels become actors, a guideline version and "
    "categories. See docs/integrations.md.",
)
def label_studio_webhook(project: str) -> Any:
    secret = state().settings.label_studio_secret
    if not secret:
        raise NotFound(
            "the Label Studio integration is not configured (LEDGER_LABEL_STUDIO_SECRET)"
        )
    given = request.headers.get(SECRET_HEADER) or request.args.get("token")
    if not given:
        raise Unauthorized(f"send the shared secret in the {SECRET_HEADER} header")
    if not hmac.compare_digest(given.encode(), secret.encode()):
        raise Forbidden("the webhook secret does not match")
    _, payload = _body()
    events = label_studio.convert(state().store, project, payload)
    return _append(project, events, "webhook:label-studio")


@operation(
    bp,
    "/v1/projects/<project>/integrations/cvat",
    "POST",
    summary="CVAT webhook (job status changes)",
    tag="integrations",
    auth=False,
    status=201,
    body=CvatWebhook,
    errors=(401, 403, 404, 409),
    also={200: "nothing recorded: not a job status change, or a redelivery"},
    description="Signed with LEDGER_CVAT_WEBHOOK_SECRET: `X-Signature-256: sha256=<hex "
    "HMAC-SHA256(secret, body)>`. `update:job` deliveries that change the state or stage "
    "become `job.status_changed` events.",
)
def cvat_webhook(project: str) -> Any:
    secret = state().settings.cvat_webhook_secret
    if not secret:
        raise NotFound("the CVAT integration is not configured (LEDGER_CVAT_WEBHOOK_SECRET)")
    header = request.headers.get("X-Signature-256")
    if not header:
        raise Unauthorized("send the X-Signature-256 header")
    data = request.get_data(cache=True)
    if not cvat.check_signature(secret, data, header):
        raise Forbidden("the X-Signature-256 signature does not match the body")
    _, payload = _body()
    events = cvat.webhook_events(project, payload)
    return _append(project, events, "webhook:cvat")
