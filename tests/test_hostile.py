"""Hostile input through the running service: malformed and huge RLE counts, polygons
with NaN and absurd coordinates, deep JSON, oversized bodies, unicode edge cases in
ids. Each gets a 4xx problem+json naming what is wrong, never a 500, and appends
nothing; no token appears in an answer or in the service's log.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.testing import LiveServer, scratch_postgres
from tests import factory as f
from tests.conftest import _PG_PROBLEM, PG_ADMIN_URL
from tests.fault_tools import admin_token, assert_problem, setup_project

MAX_BODY = 300_000
MAX_BATCH = 50


@dataclass
class Service:
    server: LiveServer
    token: str
    http: httpx.Client
    answers: list[str]
    #: the log's size: only the legal-id tests append
    expected: int = 0

    def size(self) -> int:
        r2 = self.http.get("/v1/projects/alpha")
        assert r2.status_code == 200, r2.text
        return int(r2.json()["size"])

    def post(self, content: bytes, content_type: str = "application/json") -> httpx.Response:
        r = self.http.post(
            "/v1/projects/alpha/events", content=content, headers={"Content-Type": content_type}
        )
        self.answers.append(r.text)
        return r


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    data: Path = tmp_path_factory.mktemp(f"hostile-{request.param}")
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{data / 'ledger.db'}"
        else:
            if _PG_PROBLEM is not None:
                pytest.skip(f"PostgreSQL unreachable: {_PG_PROBLEM}")
            url = stack.enter_context(scratch_postgres(PG_ADMIN_URL, prefix="ledger_hostile"))
        token = admin_token(url)
        env = {"LEDGER_MAX_BODY_BYTES": str(MAX_BODY), "LEDGER_MAX_BATCH": str(MAX_BATCH)}
        server = stack.enter_context(LiveServer(url, data_dir=data, workers=1, env=env))
        headers = {"Authorization": f"Bearer {token}"}
        http = stack.enter_context(httpx.Client(base_url=server.url, headers=headers, timeout=60))
        svc = Service(server, token, http, [], setup_project(server.url, token, "alpha"))
        yield svc
        log = server.log_text()
        assert token not in log
        assert token.split(".")[-1] not in log
        for text in svc.answers:
            assert token not in text


def _mask(segmentation: Any, **over: Any) -> dict[str, Any]:
    ev = f.mask_created(f"hostile-{uuid.uuid4().hex[:8]}", segmentation=segmentation)
    ev["payload"].update(over)
    return ev


def _body(*events: dict[str, Any]) -> bytes:
    return json.dumps({"events": list(events)}, allow_nan=True).encode()


RLE_SIZE = [48, 64]
HOSTILE: dict[str, bytes] = {
    # RLE counts strings: not the COCO alphabet, truncated, overflowing, huge
    "rle counts with bytes outside the alphabet": _body(
        _mask({"size": RLE_SIZE, "counts": "\x7f\x01!!"})
    ),
    "rle counts non-ascii": _body(_mask({"size": RLE_SIZE, "counts": "é€😀"})),
    "rle counts empty": _body(_mask({"size": RLE_SIZE, "counts": ""})),
    "rle counts a truncated varint": _body(_mask({"size": RLE_SIZE, "counts": "0" + "_" * 40})),
    "rle counts overflowing the image": _body(_mask({"size": RLE_SIZE, "counts": "oooooooo"})),
    "rle counts huge string": _body(_mask({"size": RLE_SIZE, "counts": "O1" * 120_000})),
    "rle counts a list of huge ints": _body(_mask({"size": RLE_SIZE, "counts": [10**30, 5]})),
    "rle counts a negative list": _body(_mask({"size": RLE_SIZE, "counts": [-5, 3000, 2]})),
    "rle size mismatching the image": _body(_mask({"size": [10**9, 10**9], "counts": "PPP"})),
    "rle size negative": _body(_mask({"size": [-48, 64], "counts": [3072]})),
    "rle size floats": _body(_mask({"size": [48.5, 64], "counts": [3072]})),
    # polygons
    "polygon with NaN": _body(_mask([[1.0, 2.0, float("nan"), 4.0, 5.0, 6.0]])),
    "polygon with Infinity": _body(_mask([[1.0, 2.0, float("inf"), 4.0, 5.0, 6.0]])),
    "polygon with 1e309": b'{"events":['
    + json.dumps(_mask([[1, 2, 3, 4, 5, 6]])).encode().replace(b"[[1, 2, 3", b"[[1e309, 2, 3")
    + b"]}",
    "polygon with 1e300 coordinates": _body(_mask([[1e300, 2.0, -1e300, 4.0, 5.0, 1e300]])),
    "polygon with strings": _body(_mask([["1", "2", "3", "4", "5", "6"]])),
    "polygon odd length": _body(_mask([[1.0, 2.0, 3.0, 4.0, 5.0]])),
    "polygon empty": _body(_mask([[]])),
    "polygon list empty": _body(_mask([])),
    "polygon of booleans": _body(_mask([[True, False, True, False, True, False]])),
    # JSON itself
    "deep json arrays": b"[" * 100_000 + b"]" * 100_000,
    "deep json objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "deep json in a payload": _body(_mask({"size": RLE_SIZE, "counts": "PPP"}))[:-2].replace(
        b'"counts": "PPP"', b'"counts": ' + b"[" * 5000 + b"]" * 5000
    ),
    "duplicate keys": b'{"events":[], "events":[]}',
    "invalid utf-8": b'{"events":[{"type":"\xff\xfe"}]}',
    "byte order mark": b"\xef\xbb\xbf" + _body(f.mask_created("bom")),
    "lone surrogate escaped": _body(f.mask_created("\\ud800")).replace(b"\\\\ud800", b"\\ud800"),
    "NUL in an id": _body(f.mask_created("a\x00b")),
    "integer with 5000 digits": b'{"events":[{"type":"mask.created","id":' + b"9" * 5000 + b"}]}",
    "not an object": b'"events"',
    "empty body": b"",
    "batch over the limit": _body(*[f.mask_created(f"many-{i}") for i in range(MAX_BATCH + 1)]),
    # unicode edge cases in ids that cannot be ids
    "event id not a uuid": _body(f.mask_created("x", id="𝟘𝟙𝟚-not-a-uuid")),
    "event id with a zero width space": _body(f.mask_created("x", id=str(uuid.uuid4()) + "\u200b")),
    "instance id of 100k characters": _body(f.mask_created("i" * 100_000)),
    "image id unknown in another script": _body(f.mask_created("x", image_id="img-１")),
    "actor with a right-to-left override": _body(f.mask_created("x", actor_id="al\u202eice")),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_body_is_a_clear_4xx_and_appends_nothing(service: Service, name: str) -> None:
    r = service.post(HOSTILE[name])
    body = assert_problem(r, 400, 409, 413, 422)
    assert len(body["detail"]) < 2000, "the detail should name the problem, not echo the input"
    assert service.size() == service.expected


def test_oversized_body_is_413(service: Service) -> None:
    big = _body(*[f.mask_created(f"big-{i}", note="x" * 10_000) for i in range(40)])
    assert len(big) > MAX_BODY
    body = assert_problem(service.post(big), 413)
    assert str(MAX_BODY) in body["detail"]
    assert service.size() == service.expected


def test_wrong_content_type_is_415(service: Service) -> None:
    r = service.post(_body(f.mask_created("ct")), "text/plain")
    assert_problem(r, 415)
    assert service.size() == service.expected


@pytest.mark.parametrize(
    "project", ["é", "ALPHA", "a" * 65, "alpha\u200b", "..", "%00", "alpha%2Fbeta", "😀"]
)
def test_odd_project_names_are_4xx(service: Service, project: str) -> None:
    r = service.http.post(f"/v1/projects/{project}/events", json=f.mask_created("p"))
    service.answers.append(r.text)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "instance_id", ["😀-emoji", "e\u0301-combining", "\u05d0-hebrew", "tab\there", "  spaced  "]
)
def test_unusual_but_legal_ids_round_trip_or_are_refused(
    service: Service, instance_id: str
) -> None:
    before = service.expected
    r = service.post(_body(f.mask_created(instance_id)))
    assert r.status_code in (201, 422), (r.status_code, r.text)
    if r.status_code == 422:
        assert_problem(r, 422)
        assert service.size() == before
        return
    assert service.size() == before + 1
    service.expected = before + 1
    got = service.http.get(f"/v1/projects/alpha/instances/{instance_id}")
    if got.status_code == 200:
        assert got.json()["instance_id"] == instance_id
    else:  # an id a URL path cannot carry; the entry still holds it exactly
        assert_problem(got, 404)
    entry = service.http.get(f"/v1/projects/alpha/entries/{before}")
    assert entry.status_code == 200, entry.text
    assert instance_id in entry.text or json.dumps(instance_id)[1:-1] in entry.text


def test_bad_tokens_are_401_and_never_logged(service: Service) -> None:
    forged = service.token[:-4] + "AAAA"
    for header in (f"Bearer {forged}", "Bearer -", "Basic dXNlcjpwYXNz", "Bearer " + "x" * 5000):
        r = httpx.post(
            service.server.url + "/v1/projects/alpha/events",
            json=f.mask_created("t"),
            headers={"Authorization": header},
        )
        service.answers.append(r.text)
        assert_problem(r, 401)
        assert forged not in r.text
    assert forged not in service.server.log_text()


@pytest.mark.parametrize(
    "path",
    [
        "/v1/projects/alpha/entries/99999999999999999999999",
        "/v1/projects/alpha/entries/-1",
        "/v1/projects/alpha/entries?from=99999999999999999999999",
        "/v1/projects/alpha/entries?limit=-5",
        "/v1/projects/alpha/entries?limit=1e309",
        "/v1/projects/alpha/entries?cursor=%00%ff",
        "/v1/projects/alpha/entries?cursor=" + "A" * 5000,
        "/v1/projects/alpha/entries?type=%00",
        "/v1/projects/alpha/instances/%00",
        "/v1/projects/alpha/instances/" + "%ED%A0%80",
        "/v1/projects/alpha/instances/" + "i" * 5_000,
        "/v1/projects/alpha/instances?image_id=%00",
        "/v1/projects/alpha/proofs/inclusion?index=99999999999999999999&size=1",
        "/v1/projects/alpha/proofs/consistency?old_size=-1&new_size=99999999999999999999",
        "/v1/projects/alpha/checkpoints/99999999999999999999999",
    ],
)
def test_hostile_reads_are_never_5xx(service: Service, path: str) -> None:
    r = service.http.get(path)
    service.answers.append(r.text)
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert_problem(r, r.status_code)


def test_request_line_over_gunicorns_limit_is_4xx(service: Service) -> None:
    """Beyond gunicorn's limit_request_line (8190) gunicorn itself answers, before the
    application: a 4xx, though not problem+json."""
    r = service.http.get("/v1/projects/alpha/instances/" + "i" * 10_000)
    assert 400 <= r.status_code < 500, r.status_code
