"""The HTTP service against a real gunicorn on a free port, on SQLite and PostgreSQL.

One server per backend for the module; projects ``alpha`` and ``beta`` are set up over
HTTP. Tokens: an admin for all projects, an admin, writer and reviewer scoped to
alpha, an auditor for all projects, and an admin scoped to beta ("other").
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.testing import LiveServer, scratch_postgres
from ledger.auth import TokenStore
from ledger.merkle import leaf_hash, root_from_leaves
from ledger.store import open_store
from tests import factory as f
from tests.conftest import _PG_PROBLEM, PG_ADMIN_URL

MAX_BODY = 200_000
MAX_BATCH = 50
TOKEN_ROLES = {
    "admin": ("admin", None),
    "admin_alpha": ("admin", "alpha"),
    "writer": ("writer", "alpha"),
    "reviewer": ("reviewer", "alpha"),
    "auditor": ("auditor", None),
    "other": ("admin", "beta"),
}


@dataclass
class Live:
    server: LiveServer
    secrets: dict[str, str]
    http: httpx.Client
    counter: Iterator[int] = field(default_factory=lambda: iter(range(10**9)))

    def call(
        self, method: str, path: str, role: str | None = "admin", body: Any = None, **kw: Any
    ) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if role is not None and role != "none":
            headers["Authorization"] = f"Bearer {self.secrets[role]}"
        if body is not None:
            kw["json"] = body
        return self.http.request(method, path, headers=headers, **kw)

    def post_events(
        self, project: str, events: list[dict[str, Any]], role: str = "admin"
    ) -> httpx.Response:
        return self.call("POST", f"/v1/projects/{project}/events", role, {"events": events})


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    data: Path = tmp_path_factory.mktemp(f"api-{request.param}")
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{data / 'ledger.db'}"
        else:
            if _PG_PROBLEM is not None:
                pytest.skip(f"PostgreSQL unreachable: {_PG_PROBLEM}")
            url = stack.enter_context(scratch_postgres(PG_ADMIN_URL))
        store = open_store(url, upgrade=True)
        tokens = TokenStore(store)
        secrets = {}
        for name, (role, project) in TOKEN_ROLES.items():
            secrets[name] = tokens.create(
                role, project=project, name=name.replace("_", "-"), created_by="test"
            )[1]
        store.close()
        server = stack.enter_context(
            LiveServer(
                url,
                data_dir=data,
                env={"LEDGER_MAX_BODY_BYTES": str(MAX_BODY), "LEDGER_MAX_BATCH": str(MAX_BATCH)},
            )
        )
        http = stack.enter_context(httpx.Client(base_url=server.url, timeout=30))
        live = Live(server, secrets, http)
        for project in ("alpha", "beta"):
            r = live.post_events(project, f.setup_events())
            assert r.status_code == 201, r.text
        r = live.post_events("alpha", [f.mask_created("inst-1")])
        assert r.status_code == 201, r.text
        yield live


# --- the role matrix ------------------------------------------------------------------

READERS = {"writer", "reviewer", "auditor", "admin", "admin_alpha"}
ADMINS = {"admin", "admin_alpha"}
EVERY_TOKEN = set(TOKEN_ROLES)


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    #: the roles that succeed, and the status they get; every other token gets 403
    allowed: frozenset[str]
    status: int = 200
    body: Callable[[Live, int], Any] | None = None


def _revocable(live: Live, n: int) -> str:
    r = live.call("POST", "/v1/tokens", "admin", {"role": "auditor", "name": f"throwaway-{n}"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


CASES: dict[str, Case] = {
    "list projects": Case("GET", "/v1/projects", frozenset(EVERY_TOKEN)),
    "create project": Case("POST", "/v1/projects", frozenset({"admin"}), 201,
                           lambda live, n: {"project": f"gamma-{n}", "name": "Gamma"}),
    "get project": Case("GET", "/v1/projects/alpha", frozenset(READERS)),
    "post mask event": Case("POST", "/v1/projects/alpha/events", frozenset({"writer"} | ADMINS), 201,
                            lambda live, n: f.mask_created(f"m-{n}")),
    "post review event": Case("POST", "/v1/projects/alpha/events", frozenset({"reviewer"} | ADMINS), 201,
                              lambda live, n: f.review("inst-1", 1)),
    "post actor event": Case("POST", "/v1/projects/alpha/events", frozenset(ADMINS), 201,
                             lambda live, n: {"events": [f.actor(f"annotator-{n}")]}),
    "list entries": Case("GET", "/v1/projects/alpha/entries", frozenset(READERS)),
    "get entry": Case("GET", "/v1/projects/alpha/entries/0", frozenset(READERS)),
    "list instances": Case("GET", "/v1/projects/alpha/instances", frozenset(READERS)),
    "get instance": Case("GET", "/v1/projects/alpha/instances/inst-1", frozenset(READERS)),
    "verify project": Case("GET", "/v1/projects/alpha/verify", frozenset({"auditor"} | ADMINS)),
    "whoami": Case("GET", "/v1/whoami", frozenset(EVERY_TOKEN)),
    "list tokens": Case("GET", "/v1/tokens", frozenset({"admin"})),
    "create token": Case("POST", "/v1/tokens", frozenset({"admin"}), 201,
                         lambda live, n: {"role": "auditor", "name": f"made-{n}"}),
    "revoke token": Case("DELETE", "/v1/tokens/{id}", frozenset({"admin"})),
}  # fmt: skip


@pytest.mark.parametrize("role", ["none", *TOKEN_ROLES])
@pytest.mark.parametrize("name", list(CASES))
def test_role_matrix(live: Live, name: str, role: str) -> None:
    case = CASES[name]
    n = next(live.counter)
    path = case.path.replace("{id}", _revocable(live, n)) if "{id}" in case.path else case.path
    body = case.body(live, n) if case.body else None
    r = live.call(case.method, path, role, body)
    if role == "none":
        expected = 401
    elif role in case.allowed:
        expected = case.status
    else:
        expected = 403
    assert r.status_code == expected, f"{name} as {role}: {r.status_code} {r.text}"
    if expected >= 400:
        assert r.headers["Content-Type"] == "application/problem+json"
        problem = r.json()
        assert problem["status"] == expected and problem["detail"]
        if role == "none":
            assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_other_projects_are_invisible_to_a_scoped_token(live: Live) -> None:
    listed = live.call("GET", "/v1/projects", "other").json()["projects"]
    assert [p["project"] for p in listed] == ["beta"]
    everything = {
        p["project"] for p in live.call("GET", "/v1/projects", "auditor").json()["projects"]
    }
    assert {"alpha", "beta"} <= everything
    r = live.call("GET", "/v1/projects/alpha/entries", "other")
    assert r.status_code == 403 and "scoped to project beta" in r.json()["detail"]
    # the scope is checked before existence: nothing is revealed about unknown projects
    assert live.call("GET", "/v1/projects/nowhere", "writer").status_code == 403
    assert live.call("GET", "/v1/projects/nowhere", "auditor").status_code == 404


def test_role_is_checked_for_every_event_of_a_batch(live: Live) -> None:
    size = live.call("GET", "/v1/projects/alpha").json()["size"]
    batch = [f.mask_created(f"w-{uuid.uuid4().hex[:8]}"), f.review("inst-1", 1)]
    r = live.post_events("alpha", batch, role="writer")
    assert r.status_code == 403
    assert r.json()["errors"] == [
        {"loc": "events[1].type", "message": "a writer token may not post review.decided events"}
    ]
    assert live.call("GET", "/v1/projects/alpha").json()["size"] == size


# --- appends ----------------------------------------------------------------------------


def test_batch_with_one_bad_event_appends_nothing(live: Live) -> None:
    before = live.call("GET", "/v1/projects/alpha").json()
    good = [f.mask_created(f"batch-{i}") for i in range(3)]
    bad = f.mask_created("batch-bad", segmentation={"size": [48, 64], "counts": "!!not rle!!"})
    r = live.post_events("alpha", [good[0], bad, good[1], good[2]], role="writer")
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["type"].endswith(":validation-failed")
    assert problem["errors"] and all(
        e["loc"].startswith("events[1].payload.segmentation") for e in problem["errors"]
    )
    assert "events[1].payload.segmentation" in problem["detail"]
    after = live.call("GET", "/v1/projects/alpha").json()
    assert (after["size"], after["root"]) == (before["size"], before["root"])
    assert live.call("GET", "/v1/projects/alpha/instances/batch-0").status_code == 404
    # the same batch, fixed, goes in whole
    r = live.post_events("alpha", good, role="writer")
    assert r.status_code == 201 and r.json()["appended"] == 3


def test_idempotent_retry_returns_the_original_sequence_number(live: Live) -> None:
    event = f.mask_created(f"retry-{uuid.uuid4().hex[:8]}")
    first = live.call("POST", "/v1/projects/alpha/events", "writer", event)
    assert first.status_code == 201
    seq = first.json()["results"][0]["seq"]
    again = live.call("POST", "/v1/projects/alpha/events", "writer", event)
    assert again.status_code == 200
    assert again.json()["results"] == [{"id": event["id"], "seq": seq, "duplicate": True}]
    assert again.json()["appended"] == 0 and again.json()["size"] == first.json()["size"]
    changed = {**event, "actor": "rita"}
    r = live.call("POST", "/v1/projects/alpha/events", "admin", changed)
    assert r.status_code == 409
    assert r.json()["errors"] == [
        {"loc": "events[0].id", "message": "reused with different content"}
    ]


def test_stale_revision_is_a_conflict(live: Live) -> None:
    iid = f"stale-{uuid.uuid4().hex[:8]}"
    assert live.post_events("alpha", [f.mask_created(iid)], "writer").status_code == 201
    assert live.post_events("alpha", [f.mask_edited(iid, 1)], "writer").status_code == 201
    r = live.post_events("alpha", [f.mask_edited(iid, 1)], "writer")
    assert r.status_code == 409
    assert r.json()["errors"] == [
        {"loc": "events[0].payload.revision", "message": "current revision is 2"}
    ]
    state = live.call("GET", f"/v1/projects/alpha/instances/{iid}", "writer").json()
    assert state["revision"] == 2 and state["current"]["op"] == "edited"


def test_entries_record_the_tokens_principal(live: Live) -> None:
    event = f.mask_created(f"who-{uuid.uuid4().hex[:8]}")
    seq = live.call("POST", "/v1/projects/alpha/events", "writer", event).json()["results"][0][
        "seq"
    ]
    item = live.call("GET", f"/v1/projects/alpha/entries/{seq}", "auditor").json()
    entry = json.loads(item["entry"])
    assert entry["principal"] == "token:writer"
    assert entry["event"]["id"] == event["id"] and entry["seq"] == seq
    assert live.secrets["writer"] not in item["entry"]


def test_create_project_over_http(live: Live) -> None:
    r = live.call(
        "POST", "/v1/projects", "admin", {"project": "delta", "name": "Delta", "description": "d"}
    )
    assert r.status_code == 201, r.text
    info = r.json()
    assert (info["project"], info["size"], info["name"], info["description"]) == (
        "delta",
        1,
        "Delta",
        "d",
    )
    first = json.loads(live.call("GET", "/v1/projects/delta/entries/0").json()["entry"])
    assert first["event"]["type"] == "project.created" and first["event"]["actor"] == "admin"
    again = live.call("POST", "/v1/projects", "admin", {"project": "delta", "name": "Delta"})
    assert again.status_code == 409


# --- reads ------------------------------------------------------------------------------


def test_entries_are_the_exact_stored_bytes_and_paginate(live: Live) -> None:
    info = live.call("GET", "/v1/projects/alpha", "auditor").json()
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 7, "to": info["size"]}
    while True:
        page = live.call("GET", "/v1/projects/alpha/entries", "auditor", params=params).json()
        seen.extend(page["entries"])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert [e["seq"] for e in seen] == list(range(info["size"]))
    leaves = [leaf_hash(e["entry"].encode("utf-8")) for e in seen]
    assert [leaf.hex() for leaf in leaves] == [e["leaf_hash"] for e in seen]
    assert root_from_leaves(leaves).hex() == info["root"]


def test_entry_filters(live: Live) -> None:
    iid = f"filter-{uuid.uuid4().hex[:8]}"
    live.post_events("alpha", [f.mask_created(iid), f.mask_edited(iid, 1)], "writer")

    def seqs(**params: Any) -> list[int]:
        r = live.call("GET", "/v1/projects/alpha/entries", "auditor", params=params)
        assert r.status_code == 200, r.text
        return [e["seq"] for e in r.json()["entries"]]

    mine = seqs(instance=iid)
    assert len(mine) == 2
    edits = seqs(type="mask.edited", instance=iid)
    assert edits == mine[1:]
    assert set(seqs(actor="rita")) & set(mine) == set()
    assert set(mine) <= set(seqs(actor="alice", limit=1000))
    assert set(mine) <= set(seqs(guideline="seg-guide@1.0", limit=1000))
    assert seqs(image="img-1", type="image.registered") == [5]
    assert seqs(guideline="seg-guide@9.9") == []
    assert seqs(**{"from": mine[1]}, instance=iid) == mine[1:]
    assert seqs(to=mine[1], instance=iid) == mine[:1]
    recorded = json.loads(
        live.call("GET", f"/v1/projects/alpha/entries/{mine[1]}").json()["entry"]
    )["recorded_at"]
    # one batch, one recorded_at
    assert seqs(since=recorded, instance=iid) == mine
    assert seqs(until=recorded, instance=iid) == []
    assert seqs(until="2000-01-01T00:00:00Z") == []
    assert seqs(since="2000-01-01T00:00:00+02:00", instance=iid) == mine


def test_instance_state_and_listing(live: Live) -> None:
    r = live.call("GET", "/v1/projects/alpha/instances/inst-1", "reviewer")
    state = r.json()
    assert state["instance_id"] == "inst-1" and state["image_id"] == "img-1"
    assert state["current"]["segmentation"] == f.box_rle()
    assert state["current"]["area"] == 150 and state["current"]["bbox"] == [5.0, 5.0, 15.0, 10.0]
    listed: list[str] = []
    params: dict[str, Any] = {"limit": 3, "image": "img-1"}
    while True:
        page = live.call("GET", "/v1/projects/alpha/instances", "reviewer", params=params).json()
        listed += [i["instance_id"] for i in page["instances"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert "inst-1" in listed and listed == sorted(listed) and len(listed) == len(set(listed))
    missing = live.call("GET", "/v1/projects/alpha/instances/no-such", "reviewer")
    assert missing.status_code == 404


def test_verify_reports_the_root(live: Live) -> None:
    info = live.call("GET", "/v1/projects/alpha", "auditor").json()
    report = live.call("GET", "/v1/projects/alpha/verify", "auditor").json()
    assert report["ok"] is True and report["failure"] is None
    assert report["checked"] >= info["size"]


# --- errors -----------------------------------------------------------------------------


def _problem(r: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["type"] == f"urn:annotation-ledger:problem:{kind}"
    assert body["status"] == status and body["title"] and body["detail"]
    assert body["request_id"] == r.headers["X-Request-Id"]
    return body


def test_problem_details_for_each_error(live: Live) -> None:
    raw = {"headers": {"Content-Type": "application/json"}}
    p = _problem(
        live.call("POST", "/v1/projects/alpha/events", content=b'{"events": [', **raw),
        400,
        "malformed-request",
    )
    assert p["errors"][0]["loc"] == "body"
    p = _problem(
        live.call("POST", "/v1/projects/alpha/events", content=b'{"a": 1, "a": 2}', **raw),
        400,
        "malformed-request",
    )
    assert "duplicate key 'a'" in p["detail"]
    _problem(
        live.call("POST", "/v1/projects/alpha/events", content=b"\xff\xfe", **raw),
        400,
        "malformed-request",
    )
    _problem(live.call("GET", "/v1/projects/alpha", None), 401, "unauthorized")
    p = _problem(
        live.call("GET", "/v1/projects/alpha", None, headers={"Authorization": "Bearer ldg_nope"}),
        401,
        "unauthorized",
    )
    assert "ldg_nope" not in p["detail"]
    _problem(
        live.call("GET", "/v1/projects/alpha", None, headers={"Authorization": "Basic dXNlcg=="}),
        401,
        "unauthorized",
    )
    _problem(live.call("GET", "/v1/projects/alpha/verify", "writer"), 403, "forbidden")
    _problem(live.call("GET", "/v1/projects/nowhere"), 404, "not-found")
    _problem(live.call("GET", "/v1/no/such/route"), 404, "not-found")
    _problem(live.call("GET", "/v1/projects/alpha/entries/999999"), 404, "not-found")
    r = live.call("PUT", "/v1/projects/alpha")
    _problem(r, 405, "method-not-allowed")
    assert "GET" in r.headers["Allow"]
    _problem(
        live.call("POST", "/v1/projects/alpha/events", content=b"x" * (MAX_BODY + 1), **raw),
        413,
        "payload-too-large",
    )
    _problem(
        live.call(
            "POST",
            "/v1/projects/alpha/events",
            content=b"{}",
            headers={"Content-Type": "text/plain"},
        ),
        415,
        "unsupported-media-type",
    )
    p = _problem(
        live.call("GET", "/v1/projects/alpha/entries", params={"limit": 0, "bogus": 1}),
        422,
        "validation-failed",
    )
    assert {e["loc"] for e in p["errors"]} == {"query.limit", "query.bogus"}
    p = _problem(
        live.call(
            "GET", "/v1/projects/alpha/entries", params={"since": "0001-01-01T00:00:00+05:00"}
        ),
        422,
        "validation-failed",
    )
    assert p["errors"][0]["loc"] == "query.since"
    p = _problem(
        live.call("GET", "/v1/projects/alpha/entries", params={"cursor": "AAAA"}),
        422,
        "validation-failed",
    )
    assert p["errors"][0]["loc"] == "query.cursor"
    p = _problem(live.call("GET", "/v1/projects/Not-Valid/entries"), 422, "validation-failed")
    assert p["errors"][0]["loc"] == "path.project"
    nul = f.image(f"nul-{uuid.uuid4().hex[:6]}")
    nul["payload"]["file_name"] = "a\x00b"
    _problem(live.post_events("alpha", [nul]), 422, "validation-failed")
    p = _problem(
        live.post_events("alpha", [f.mask_created(f"n-{i}") for i in range(MAX_BATCH + 1)]),
        422,
        "validation-failed",
    )
    assert f"exceeds the limit of {MAX_BATCH}" in p["detail"]
    p = _problem(
        live.call("POST", "/v1/projects/alpha/events", "admin", {"events": []}),
        422,
        "validation-failed",
    )
    p = _problem(
        live.call("POST", "/v1/projects/alpha/events", "admin", {"events": [{}], "extra": 1}),
        422,
        "validation-failed",
    )
    p = _problem(
        live.call("POST", "/v1/tokens", "admin", {"role": "root"}), 422, "validation-failed"
    )
    assert p["errors"][0]["loc"] == "body.role"
    _problem(
        live.call("POST", "/v1/projects/nowhere/events", "admin", f.mask_created()),
        404,
        "not-found",
    )


def test_values_a_column_cannot_hold_are_refused_not_a_server_error(live: Live) -> None:
    image = f.image(f"frame-{uuid.uuid4().hex[:6]}")
    image["payload"]["frame_index"] = 2**40  # the model allows it; PostgreSQL's integer not
    r = live.post_events("alpha", [image])
    assert r.status_code in (201, 422), r.text
    if r.status_code == 422:
        assert "out of range" in r.json()["detail"]


# --- operations ---------------------------------------------------------------------------


def test_health_readiness_and_metrics(live: Live) -> None:
    assert live.call("GET", "/healthz", None).json() == {"status": "ok"}
    ready = live.call("GET", "/readyz", None).json()
    assert ready["status"] == "ready" and ready["database"] in ("sqlite", "postgresql")
    for _ in range(3):  # scrapes land on any worker: each must see every worker's counts
        text = live.call("GET", "/metrics", None).text
        assert 'ledger_log_size{project="alpha"}' in text
        assert 'ledger_events_appended_total{project="alpha"}' in text
        assert "ledger_events_duplicate_total" in text
        assert (
            'ledger_http_requests_total{method="POST",route="/v1/projects/<project>/events",status="201"}'
            in text
        )
        assert "ledger_http_request_duration_seconds_bucket" in text
        assert "ledger_database_up 1.0" in text
    sizes = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("ledger_log_size{")
    }
    alpha = live.call("GET", "/v1/projects/alpha", "auditor").json()["size"]
    assert sizes['ledger_log_size{project="alpha"}'] == alpha


def test_openapi_document_covers_every_route(live: Live) -> None:
    doc = live.call("GET", "/v1/openapi.json", None).json()
    assert doc["openapi"] == "3.1.0"
    ops = {(path, method) for path, item in doc["paths"].items() for method in item}
    expected = {
        ("/v1/projects", "get"), ("/v1/projects", "post"), ("/v1/projects/{project}", "get"),
        ("/v1/projects/{project}/events", "post"), ("/v1/projects/{project}/entries", "get"),
        ("/v1/projects/{project}/entries/{seq}", "get"), ("/v1/projects/{project}/instances", "get"),
        ("/v1/projects/{project}/instances/{instance_id}", "get"),
        ("/v1/projects/{project}/verify", "get"), ("/v1/whoami", "get"), ("/v1/tokens", "get"),
        ("/v1/tokens", "post"), ("/v1/tokens/{token_id}", "delete"), ("/healthz", "get"),
        ("/readyz", "get"), ("/metrics", "get"), ("/v1/openapi.json", "get"),
    }  # fmt: skip
    assert expected <= ops
    events = doc["paths"]["/v1/projects/{project}/events"]["post"]
    assert {"201", "200", "400", "401", "403", "404", "409", "413", "415", "422", "503"} <= set(
        events["responses"]
    )
    assert events["responses"]["422"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"
    }
    schemas = doc["components"]["schemas"]
    assert schemas["Event.mask.created"]["properties"]["payload"] == {
        "$ref": "#/components/schemas/MaskCreated"
    }
    assert "guideline" in schemas["Event.mask.created"]["required"]
    assert schemas["EventBatch"]["properties"]["events"]["maxItems"] == MAX_BATCH


def test_request_ids_and_logs_never_hold_tokens(live: Live) -> None:
    r = live.call("GET", "/v1/whoami", "writer", headers={"X-Request-Id": "trace-42"})
    assert r.headers["X-Request-Id"] == "trace-42"
    assert r.json()["principal"] == "token:writer" and r.json()["project"] == "alpha"
    odd = live.call("GET", "/healthz", None, headers={"X-Request-Id": "bad id\twith spaces"})
    assert (
        odd.headers["X-Request-Id"] != "bad id\twith spaces"
        and len(odd.headers["X-Request-Id"]) == 32
    )
    made = live.call("POST", "/v1/tokens", "admin", {"role": "writer", "project": "alpha"}).json()
    assert made["token"].startswith("ldg_") and made["principal"] == f"token:{made['name']}"
    listed = live.call("GET", "/v1/tokens", "admin").text
    assert made["token"] not in listed and made["name"] in listed

    log = live.server.log_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    requests = [entry for entry in lines if entry.get("logger") == "ledger.request"]
    assert requests and all(entry["request_id"] for entry in requests)
    traced = [entry for entry in requests if entry["request_id"] == "trace-42"]
    assert (
        traced and traced[0]["principal"] == "token:writer" and traced[0]["route"] == "/v1/whoami"
    )
    for secret in [*live.secrets.values(), made["token"]]:
        assert secret not in log and secret.split("_", 2)[2] not in log
    assert "Traceback" not in log
