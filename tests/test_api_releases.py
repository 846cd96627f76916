"""Releases, lineage and as-of state over HTTP, against a real gunicorn (SQLite)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import factory as f
from tests.live_api import TOKEN_ROLES, Live, live_service


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    data: Path = tmp_path_factory.mktemp("api-releases")
    with live_service(data) as live:
        live.post_events(
            "alpha", [f.mask_created("inst-1"), f.mask_created("inst-2"), f.review("inst-1", 1)]
        )
        r = live.call("POST", "/v1/projects/alpha/releases", "admin_alpha", json={"name": "v1"})
        assert r.status_code == 201, r.text
        yield live


def test_create_list_get_export_verify(live: Live) -> None:
    listed = live.call("GET", "/v1/projects/alpha/releases", "writer").json()
    assert [r["name"] for r in listed["releases"]] == ["v1"]
    one = live.call("GET", "/v1/projects/alpha/releases/v1", "auditor").json()
    assert one["policy"]["selection"] == "accepted" and one["tree_size"] == 9
    r = live.call("GET", "/v1/projects/alpha/releases/v1/export", "auditor")
    assert r.status_code == 200
    assert r.headers["X-Content-SHA256"] == one["sha256"]
    assert hashlib.sha256(r.content).hexdigest() == one["sha256"]
    coco = r.json()
    assert len(coco["annotations"]) == 1  # only the accepted instance
    check = live.call("POST", "/v1/projects/alpha/releases/v1/verify", "auditor")
    assert check.status_code == 200, check.text
    assert check.json()["ok"] is True and check.json()["problems"] == []
    again = live.call("POST", "/v1/projects/alpha/releases", json={"name": "v1"})
    assert again.status_code == 409


def test_diff_between_releases(live: Live) -> None:
    r = live.call("POST", "/v1/projects/alpha/releases",
                  json={"name": "v2-all", "selection": "all"})  # fmt: skip
    assert r.status_code == 201, r.text
    d = live.call("GET", "/v1/projects/alpha/releases/v1/diff/v2-all", "reviewer")
    assert d.status_code == 200, d.text
    body = d.json()
    assert body["summary"]["added"] == 1
    assert [c["instance_id"] for c in body["changes"]] == ["inst-2"]
    at = live.call("GET", "/v1/projects/alpha/releases/@6/diff/v1").json()
    assert at["summary"]["added"] == 1


def test_lineage_and_prov(live: Live) -> None:
    r = live.call("GET", "/v1/projects/alpha/instances/inst-1/lineage", "writer")
    assert r.status_code == 200, r.text
    steps = r.json()["steps"]
    assert [s["type"] for s in steps] == ["mask.created", "review.decided"]
    prov = live.call("GET", "/v1/projects/alpha/instances/inst-1/lineage?format=prov").json()
    assert "entity" in prov and "activity" in prov
    assert live.call("GET", "/v1/projects/alpha/instances/none/lineage").status_code == 404


def test_state_as_of(live: Live) -> None:
    now = live.call("GET", "/v1/projects/alpha/state", "auditor").json()
    assert {i["instance_id"] for i in now["instances"]} == {"inst-1", "inst-2"}
    early = live.call("GET", "/v1/projects/alpha/state?at=7", "auditor").json()
    assert [i["instance_id"] for i in early["instances"]] == ["inst-1"]
    assert early["tree_size"] == 7
    page = live.call("GET", "/v1/projects/alpha/state?limit=1").json()
    assert len(page["instances"]) == 1 and page["next_cursor"]
    rest = live.call("GET", f"/v1/projects/alpha/state?limit=1&cursor={page['next_cursor']}")
    assert rest.json()["instances"][0]["instance_id"] == "inst-2"
    t = live.call("GET", "/v1/projects/alpha/state", params={"time": early["recorded_at"]})
    assert t.status_code == 200 and t.json()["tree_size"] >= 6


@pytest.mark.parametrize(
    ("method", "path", "loc", "body"),
    [
        ("GET", "/state?at=0", "query.at", None),
        ("GET", "/state?at=99999", "query.at", None),
        ("GET", "/state?time=yesterday", "query.time", None),
        ("GET", "/state?time=1990-01-01T00:00:00Z", "query.time", None),
        ("GET", "/state?cursor=!!", "query.cursor", None),
        ("GET", "/state?at=1&time=2020-01-01T00:00:00Z", "query.time", None),
        ("GET", "/releases/v1/diff/v1?limit=0", "query.limit", None),
        ("GET", "/releases/@0/diff/v1", "path.old", None),
        ("GET", "/releases/v1/diff/@999", "path.new", None),
        ("GET", "/instances/inst-1/lineage?format=xml", "query.format", None),
        ("POST", "/releases", "body.name", {"name": "bad name"}),
        ("POST", "/releases", "body.selection", {"name": "x", "selection": "some"}),
        ("POST", "/releases", "body.at", {"name": "x", "at": 99999}),
        ("POST", "/releases", "body.categories[0]", {"name": "x", "categories": [0]}),
    ],
)
def test_bad_input_is_422_naming_it(
    live: Live, method: str, path: str, loc: str, body: Any
) -> None:
    r = live.call(method, f"/v1/projects/alpha{path}", json=body)
    assert r.status_code == 422, r.text
    assert any(e["loc"].startswith(loc) for e in r.json()["errors"]), r.json()


def test_unknown_is_404(live: Live) -> None:
    for path in ("/releases/nope", "/releases/nope/export", "/releases/v1/diff/nope"):
        assert live.call("GET", f"/v1/projects/alpha{path}").status_code == 404, path
    assert live.call("POST", "/v1/projects/alpha/releases/nope/verify").status_code == 404
    assert live.call("GET", "/v1/projects/nope/releases").status_code == 404
    assert live.call("GET", "/v1/projects/nope/state").status_code == 404


READ = {"writer", "reviewer", "auditor", "admin", "admin_alpha"}


@pytest.mark.parametrize(
    ("method", "path", "allowed", "status"),
    [
        ("GET", "/v1/projects/alpha/releases", READ, 200),
        ("GET", "/v1/projects/alpha/releases/v1", READ, 200),
        ("GET", "/v1/projects/alpha/releases/v1/export", READ, 200),
        ("GET", "/v1/projects/alpha/releases/v1/diff/v1", READ, 200),
        ("POST", "/v1/projects/alpha/releases/v1/verify", {"auditor", "admin", "admin_alpha"}, 200),
        ("GET", "/v1/projects/alpha/instances/inst-1/lineage", READ, 200),
        ("GET", "/v1/projects/alpha/state", READ, 200),
        ("POST", "/v1/projects/alpha/releases", {"admin", "admin_alpha"}, 201),
    ],
)
def test_roles(live: Live, method: str, path: str, allowed: set[str], status: int) -> None:
    for role in TOKEN_ROLES:
        body = {"name": f"r-{role}"} if method == "POST" and path.endswith("releases") else None
        r = live.call(method, path, role, json=body)
        assert r.status_code == (status if role in allowed else 403), (role, r.text)
    assert live.call(method, path, None).status_code == 401
