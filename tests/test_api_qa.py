"""Quality reports, workforce metrics and review queues over HTTP (real gunicorn, SQLite).

The reviewer token is named ``rita``, the reviewer actor of the factory's project, so
its own queue is rita's assignments.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import factory as f
from tests.live_api import Live, live_service

# the reviewer's token is named after the reviewer: a reviewer sees their own queue
TOKEN_ROLES = {
    "admin": ("admin", None),
    "admin_alpha": ("admin", "alpha"),
    "writer": ("writer", "alpha"),
    "rita": ("reviewer", "alpha"),
    "auditor": ("auditor", None),
    "other": ("admin", "beta"),
}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    data: Path = tmp_path_factory.mktemp("api-qa")
    assign = f.event(
        "review.assigned", {"instance_id": "inst-2", "revision": 1, "assignee": "rita"}
    )
    with live_service(data, roles=TOKEN_ROLES, timeout=120) as live:
        live.post_events("alpha", [f.mask_created("inst-1"), f.mask_created("inst-2"), assign])
        yield live


def test_qa_report(live: Live) -> None:
    r = live.call("GET", "/v1/projects/alpha/qa", "auditor")
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["sha256"]) == 64 and isinstance(body["report"], dict)
    again = live.call("GET", "/v1/projects/alpha/qa?at=9", "rita").json()
    assert again["sha256"] == body["sha256"]  # same state, same report
    png = live.call("GET", "/v1/projects/alpha/qa/images/img-1")
    assert png.status_code == 200 and png.content.startswith(PNG)
    assert live.call("GET", "/v1/projects/alpha/qa/images/nope").status_code == 404
    assert live.call("GET", "/v1/projects/alpha/qa?release=nope").status_code == 404


def test_metrics(live: Live) -> None:
    r = live.call("GET", "/v1/projects/alpha/metrics",
                  params={"from": "2020-01-01", "to": "2100-01-01"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert "groups" in r.json()["metrics"]
    chart = live.call("GET", "/v1/projects/alpha/metrics/chart?by=organization", "auditor")
    assert chart.status_code == 200 and chart.content.startswith(PNG)


def test_queue(live: Live) -> None:
    everything = live.call("GET", "/v1/projects/alpha/queue", "auditor").json()
    assert {i["instance_id"] for i in everything["items"]} == {"inst-1", "inst-2"}
    own = live.call("GET", "/v1/projects/alpha/queue", "rita").json()
    assert own["reviewer"] == "rita"
    assert [i["instance_id"] for i in own["items"]] == ["inst-2"]
    assert live.call("GET", "/v1/projects/alpha/queue?reviewer=bob", "rita").status_code == 403
    other = live.call("GET", "/v1/projects/alpha/queue?reviewer=bob").json()
    assert other["items"] == []
    m = live.call("GET", "/v1/projects/alpha/queue/metrics?overdue_after=0", "rita").json()
    assert m["pending"] == 2 and m["overdue"] == 2


@pytest.mark.parametrize(
    ("path", "loc"),
    [
        ("/qa?at=0", "query.at"),
        ("/qa?at=999", "query.at"),
        ("/qa?at=2&release=v1", "query.release"),
        ("/qa?checks=nope", "query.checks"),
        ("/qa?release=bad%20name", "query.release"),
        ("/metrics?by=team", "query.by"),
        ("/metrics?from=2021-13-01", "query.from"),
        ("/metrics?from=2022-01-01&to=2021-01-01", "query.to"),
        ("/queue?limit=0", "query.limit"),
        ("/queue?reviewer=%20x", "query.reviewer"),
        ("/queue/metrics?overdue_after=-1", "query.overdue_after"),
    ],
)
def test_bad_parameters_are_422(live: Live, path: str, loc: str) -> None:
    r = live.call("GET", f"/v1/projects/alpha{path}")
    assert r.status_code == 422, r.text
    assert loc in [e["loc"] for e in r.json()["errors"]], r.json()


QA = {"rita", "auditor", "admin", "admin_alpha"}


@pytest.mark.parametrize("path", ["/qa", "/metrics", "/queue", "/queue/metrics", "/metrics/chart"])
def test_roles(live: Live, path: str) -> None:
    for role in TOKEN_ROLES:
        r = live.call("GET", f"/v1/projects/alpha{path}", role)
        assert r.status_code == (200 if role in QA else 403), (role, r.text)
    assert live.call("GET", f"/v1/projects/alpha{path}", None).status_code == 401
    assert live.call("GET", f"/v1/projects/nope{path}").status_code == 404
