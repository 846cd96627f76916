"""Events in, entries out."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from api.http import json_body, json_response
from api.models import MAX_INT, AppendResponse, EntriesPage, EntriesQuery, Entry, encode_cursor
from api.spec import operation
from api.state import current_token, state
from ledger.auth import require_events
from ledger.errors import InvalidInput, NotFound
from ledger.merkle import leaf_hash

bp = Blueprint("events", __name__)


def _events_of(body: Any) -> list[Any]:
    """A batch ``{"events": [...]}`` or one event object, as a list."""
    if isinstance(body, dict) and "events" in body and "type" not in body:
        extra = sorted(set(body) - {"events"})
        if extra:
            raise InvalidInput.field(f"body.{extra[0]}", "unknown field next to events")
        events = body["events"]
        if not isinstance(events, list) or not events:
            raise InvalidInput.field("events", "must be a non-empty list of events")
        return events
    return [body]


@operation(
    bp,
    "/v1/projects/<project>/events",
    "POST",
    summary="Append one event, or a batch of events atomically",
    tag="events",
    response=AppendResponse,
    status=201,
    body="EventsBody",
    action=None,
    errors=(404, 409),
    also={200: "every event was already in the log (an idempotent retry)"},
    description='The body is one event or `{"events": [...]}`, at most LEDGER_MAX_BATCH '
    "events. A batch is appended whole or not at all; an error names each bad event and "
    "field (`events[3].payload.segmentation`). Posting an event again with the same id "
    "and content returns its original sequence number; the same id with other content is "
    "a 409. The token's role must allow every event type in the batch.",
)
def post_events(project: str) -> Any:
    events = _events_of(json_body())
    token = current_token()
    types = [
        (f"events[{i}].type", ev["type"])
        for i, ev in enumerate(events)
        if isinstance(ev, dict) and isinstance(ev.get("type"), str)
    ]
    require_events(token, project, types)
    st = state()
    result = st.ledger.append(project, events, token.principal)
    st.metrics.observe_append(result)
    body = {
        "project": project,
        "size": result.size,
        "root": result.root.hex(),
        "appended": result.appended,
        "results": [
            {"id": r.event_id, "seq": r.seq, "duplicate": r.duplicate} for r in result.results
        ],
    }
    return json_response(body, 201 if result.appended else 200)


@operation(
    bp,
    "/v1/projects/<project>/entries",
    summary="Entries by sequence range and filters, with cursor pagination",
    tag="events",
    response=EntriesPage,
    query=EntriesQuery,
    errors=(404,),
    description="Entries in sequence order with their exact stored bytes. Filters "
    "combine with AND; `since`/`until` select by server time (`recorded_at`). Repeat the "
    "same filters with `cursor` set to `next_cursor` to read the next page.",
)
def list_entries(project: str, query: EntriesQuery) -> EntriesPage:
    st = state()
    head = st.ledger.head(project)
    start = query.start()
    end = min(query.to if query.to is not None else head.size, head.size)
    where = ["project = ?", "seq >= ?", "seq < ?"]
    params: list[Any] = [project, start, end]
    for column, value in (
        ("type", query.type),
        ("actor", query.actor),
        ("instance_id", query.instance),
        ("image_id", query.image),
        ("guideline", query.guideline),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if query.since is not None:
        where.append("recorded_at >= ?")
        params.append(query.since_text())
    if query.until is not None:
        where.append("recorded_at < ?")
        params.append(query.until_text())
    rows = []
    if start < end:
        rows = st.store.query(
            f"SELECT seq, entry FROM entries WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
            (*params, query.limit + 1),
        )
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    entries = [_entry(int(r["seq"]), bytes(r["entry"])) for r in rows]
    next_cursor = encode_cursor(f"s{entries[-1].seq + 1}") if more else None
    return EntriesPage(project=project, size=head.size, entries=entries, next_cursor=next_cursor)


def _entry(seq: int, raw: bytes) -> Entry:
    return Entry(seq=seq, leaf_hash=leaf_hash(raw).hex(), entry=raw.decode("utf-8"))


@operation(
    bp,
    f"/v1/projects/<project>/entries/<int(max={MAX_INT}):seq>",
    summary="One entry by sequence number",
    tag="events",
    response=Entry,
    errors=(404,),
    path_schemas={"seq": {"type": "integer", "minimum": 0, "maximum": MAX_INT}},
)
def get_entry(project: str, seq: int) -> Entry:
    st = state()
    head = st.ledger.head(project)
    if seq >= head.size:
        raise NotFound(f"project {project} has {head.size} entries; there is no entry {seq}")
    rows = st.store.query("SELECT entry FROM entries WHERE project = ? AND seq = ?", (project, seq))
    if not rows:
        raise NotFound(f"entry {seq} of project {project} was not found")
    return _entry(seq, bytes(rows[0]["entry"]))
