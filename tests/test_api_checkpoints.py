"""Checkpoints, proofs and verifier keys over HTTP, against a real gunicorn (SQLite).

Tokens: admin (all projects), admin, writer and reviewer scoped to alpha, auditor
(all projects), and "other", an admin scoped to beta.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger import merkle
from ledger.checkpoint import open_checkpoint
from ledger.note import parse_verifier_key
from tests import factory as f
from tests.live_api import TOKEN_ROLES, Live, live_service


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    data: Path = tmp_path_factory.mktemp("api-checkpoints")
    with live_service(
        data, env={"LEDGER_CHECKPOINT_EVERY": "0", "LEDGER_CHECKPOINT_INTERVAL": "0"}, timeout=30
    ) as live:
        live.post_events("alpha", [f.mask_created("inst-1")])
        yield live


def _keys(live: Live) -> list[Any]:
    r = live.http.get("/v1/keys")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    return [parse_verifier_key(line) for line in r.text.splitlines() if line]


def test_latest_is_signed_and_matches_the_log(live: Live) -> None:
    r = live.call("GET", "/v1/projects/alpha/checkpoints/latest", "auditor")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    cp, _ = open_checkpoint(r.content, _keys(live))
    assert cp.origin.endswith("/alpha")
    head = live.call("GET", "/v1/projects/alpha").json()
    assert cp.size <= head["size"]
    j = live.call("GET", "/v1/projects/alpha/checkpoints/latest?format=json", "auditor")
    assert j.status_code == 200
    body = j.json()
    assert body["tree_size"] == cp.size and body["note"].encode() == r.content
    assert body["root_hash"] == cp.root_hash.hex()
    by_size = live.call("GET", f"/v1/projects/alpha/checkpoints/{cp.size}", "writer")
    assert by_size.status_code == 200 and by_size.content == r.content


def test_issue_list_and_prove(live: Live) -> None:
    old = live.call("GET", "/v1/projects/alpha/checkpoints/latest?format=json").json()
    r = live.call("POST", "/v1/projects/alpha/events", json=f.mask_created("inst-cp"))
    assert r.status_code == 201, r.text
    issued = live.call("POST", "/v1/projects/alpha/checkpoints", "admin_alpha")
    assert issued.status_code == 201, issued.text
    new = issued.json()
    assert new["tree_size"] == r.json()["size"] > old["tree_size"]
    listed = live.call("GET", "/v1/projects/alpha/checkpoints", "auditor").json()
    sizes = [c["tree_size"] for c in listed["checkpoints"]]
    assert sizes == sorted(sizes) and {old["tree_size"], new["tree_size"]} <= set(sizes)
    page = live.call("GET", "/v1/projects/alpha/checkpoints?limit=1", "auditor").json()
    assert len(page["checkpoints"]) == 1 and page["next_after"] == sizes[0]

    # consistency from old to new, checked against both signed roots
    c = live.call(
        "GET",
        "/v1/projects/alpha/proofs/consistency",
        "auditor",
        params={"from": old["tree_size"], "to": new["tree_size"]},
    )
    assert c.status_code == 200, c.text
    merkle.verify_consistency(
        old["tree_size"],
        new["tree_size"],
        bytes.fromhex(old["root_hash"]),
        bytes.fromhex(new["root_hash"]),
        [bytes.fromhex(h) for h in c.json()["consistency_path"]],
    )
    # inclusion of the last entry in the new tree
    seq = new["tree_size"] - 1
    entry = live.call("GET", f"/v1/projects/alpha/entries/{seq}", "reviewer").json()
    i = live.call(
        "GET",
        "/v1/projects/alpha/proofs/inclusion",
        "reviewer",
        params={"index": seq, "size": new["tree_size"]},
    )
    assert i.status_code == 200, i.text
    merkle.verify_inclusion(
        seq,
        new["tree_size"],
        bytes.fromhex(entry["leaf_hash"]),
        [bytes.fromhex(h) for h in i.json()["inclusion_path"]],
        bytes.fromhex(new["root_hash"]),
    )


def test_keys_are_public_and_match_stored_signatures(live: Live) -> None:
    keys = _keys(live)
    assert keys and all("+" in k.key_string() for k in keys)
    assert live.call("GET", "/v1/keys", "writer").status_code == 200


@pytest.mark.parametrize(
    ("path", "loc"),
    [
        ("/proofs/inclusion?index=5&size=2", "query.index"),
        ("/proofs/inclusion?index=0&size=100000", "query.size"),
        ("/proofs/inclusion?index=-1", "query.index"),
        ("/proofs/inclusion", "query.index"),
        ("/proofs/inclusion?index=x", "query.index"),
        ("/proofs/consistency?from=0", "query.from"),
        ("/proofs/consistency?from=5&to=2", "query.from"),
        ("/proofs/consistency?from=1&to=99999", "query.to"),
        ("/proofs/consistency?from=1&bogus=1", "query.bogus"),
        ("/checkpoints?limit=0", "query.limit"),
        ("/checkpoints/latest?format=xml", "query.format"),
        ("/checkpoints/latest?x=1", "query.x"),
    ],
)
def test_bad_parameters_are_422_naming_them(live: Live, path: str, loc: str) -> None:
    r = live.call("GET", f"/v1/projects/alpha{path}", "auditor")
    assert r.status_code == 422, r.text
    assert r.headers["Content-Type"] == "application/problem+json"
    assert loc in [e["loc"] for e in r.json()["errors"]]


def test_unknown_things_are_404(live: Live) -> None:
    for path in (
        "/v1/projects/nope/checkpoints/latest",
        "/v1/projects/nope/checkpoints",
        "/v1/projects/nope/proofs/inclusion?index=0",
        "/v1/projects/alpha/checkpoints/3",
    ):
        assert live.call("GET", path).status_code == 404, path
    assert live.call("POST", "/v1/projects/nope/checkpoints").status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "allowed", "status"),
    [
        ("GET", "/v1/projects/alpha/checkpoints/latest", None, 200),
        ("GET", "/v1/projects/alpha/checkpoints", None, 200),
        ("GET", "/v1/projects/alpha/proofs/inclusion?index=0", None, 200),
        ("GET", "/v1/projects/alpha/proofs/consistency?from=1", None, 200),
        ("POST", "/v1/projects/alpha/checkpoints", {"admin", "admin_alpha"}, 201),
    ],
)
def test_roles(live: Live, method: str, path: str, allowed: set[str] | None, status: int) -> None:
    for role in TOKEN_ROLES:
        r = live.call(method, path, role)
        ok = role != "other" and (allowed is None or role in allowed)
        assert r.status_code == (status if ok else 403), (role, r.text)
    assert live.call(method, path, None).status_code == 401
