"""Reading QA states from real databases (SQLite and PostgreSQL), and declared counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import InvalidInput, NotFound
from ledger.qa import load_state, qa_report, valid_instances
from ledger.qa.source import load_declared_counts, parse_declared_counts
from ledger.service import Ledger
from ledger.store import open_store
from tests import factory as f
from tests.conftest import sqlite_url

H, W = 60, 80


def frame(image_id: str, index: int) -> dict[str, Any]:
    return f.event(
        "image.registered",
        {"image_id": image_id, "width": W, "height": H, "file_name": f"{image_id}.png",
         "sequence_id": "s1", "frame_index": index},
    )  # fmt: skip


def rect(x0: int, y0: int, x1: int, y1: int) -> dict[str, Any]:
    return f.box_rle(H, W, x0, y0, x1, y1)


def build(ledger: Ledger) -> dict[str, int]:
    """A small project; returns the sequence number of the entries the tests name."""
    seqs: dict[str, int] = {}

    def add(name: str, event: dict[str, Any]) -> None:
        seqs[name] = ledger.append("demo", [event], "test").results[0].seq

    ledger.append(
        "demo",
        [f.project_created(), f.actor("alice"), f.actor("bob"), f.actor("rita", "reviewer"),
         f.guideline(), f.category(1, "car"), f.category(2, "person"),
         f.image("img-1", W, H), frame("f0", 0), frame("f1", 1)],
        "test",
    )  # fmt: skip
    add("a", f.mask_created("a", "img-1", segmentation=rect(10, 10, 20, 20)))
    add("b", f.mask_created("b", "img-1", segmentation=rect(15, 10, 35, 20)))
    add("accept a", f.review("a", 1))
    add("poly", f.mask_created("poly", "img-1", 2, "bob", [[50, 30, 70, 30, 70, 50, 50, 50]]))
    add("t0", f.mask_created("t0", "f0", segmentation=rect(10, 10, 30, 30), track_id="t1"))
    add("t1", f.mask_created("t1", "f1", segmentation=rect(40, 10, 60, 30), track_id="t1"))
    add("reject b", f.review("b", 1, "reject"))
    add("edit b", f.mask_edited("b", 1, segmentation=rect(22, 10, 35, 20)))
    add("accept poly", f.review("poly", 1, actor_id="rita"))
    add("edit poly", f.mask_edited("poly", 1, "bob", category_id=1))
    add("delete t1", f.mask_deleted("t1", 1))
    release = f.event(
        "release.created",
        {"name": "r1", "tree_size": seqs["edit b"], "policy": {"selection": "accepted"},
         "sha256": "0" * 64},
    )  # fmt: skip
    add("release", release)
    return seqs


def test_valid_instances_follow_revisions_deletions_and_reviews(ledger: Ledger) -> None:
    seqs = build(ledger)
    store = ledger.store
    before_edit = {v.instance_id: v for v in valid_instances(store, "demo", seqs["edit b"])}
    assert sorted(before_edit) == ["a", "b", "poly", "t0", "t1"]
    assert before_edit["b"].revision == 1 and before_edit["b"].review is not None
    assert before_edit["b"].review.decision == "reject"
    assert before_edit["a"].review is not None and before_edit["a"].review.seq == seqs["accept a"]
    now = {v.instance_id: v for v in valid_instances(store, "demo", seqs["release"] + 1)}
    assert sorted(now) == ["a", "b", "poly", "t0"]  # t1 was deleted
    b = now["b"]
    assert (b.revision, b.op, b.seq, b.review) == (2, "edited", seqs["edit b"], None)
    assert b.previous_review is not None and b.previous_review.decision == "reject"
    poly = now["poly"]
    assert poly.annotator == "bob" and poly.category_id == 1 and poly.revision == 2
    assert poly.previous_review is not None and poly.previous_review.decision == "accept"
    # the first entries only: nothing drawn yet
    assert list(valid_instances(store, "demo", seqs["a"])) == []


def test_state_as_of_a_size_and_as_a_release(ledger: Ledger) -> None:
    seqs = build(ledger)
    state = load_state(ledger.store, "demo")
    assert state.tree_size == seqs["release"] + 1 and state.selection == "all"
    assert sorted(state.images) == ["f0", "f1", "img-1"]
    assert state.categories == {1: "car", 2: "person"}
    by_id = {r.instance_id: r for r in state.instances}
    assert by_id["t0"].track_id == "t1" and by_id["a"].track_id is None
    assert by_id["poly"].rle["size"] == [H, W]  # polygons arrive as compressed RLE
    release = load_state(ledger.store, "demo", release="r1")
    assert release.tree_size == seqs["edit b"] and release.selection == "accepted"
    assert [r.instance_id for r in release.instances] == ["a"]  # poly was accepted later
    same = load_state(ledger.store, "demo", tree_size=seqs["edit b"], selection="accepted")
    assert same.instances == release.instances
    cars = load_state(ledger.store, "demo", categories=(2,), tree_size=seqs["edit b"])
    assert [r.instance_id for r in cars.instances] == ["poly"]


def test_report_of_a_state_read_from_the_store(ledger: Ledger) -> None:
    seqs = build(ledger)
    report = qa_report(ledger.store, "demo")
    codes = {(flag.code, flag.instance_ids) for flag in report.flags}
    assert ("review.edited_after_accept", ("poly",)) in codes
    assert not [code for code, _ in codes if code.startswith("drift.")]  # t1 was deleted
    # at the release's size a and b still overlapped, and a had been accepted after both
    at_release = qa_report(ledger.store, "demo", tree_size=seqs["edit b"])
    codes = {(flag.code, flag.instance_ids) for flag in at_release.flags}
    assert ("overlap", ("a", "b")) in codes
    assert ("review.accepted_with_flag", ("a",)) in codes
    assert ("drift.low_iou", ("t0", "t1")) in codes
    assert at_release.document["scope"]["tree_size"] == seqs["edit b"]


def test_unknown_project_release_and_sizes_are_refused(ledger: Ledger) -> None:
    seqs = build(ledger)
    with pytest.raises(NotFound, match="project nope does not exist"):
        load_state(ledger.store, "nope")
    with pytest.raises(NotFound, match="release 'r9' does not exist in project demo"):
        load_state(ledger.store, "demo", release="r9")
    size = seqs["release"] + 1
    with pytest.raises(
        InvalidInput, match=rf"tree_size: {size + 1} is not a tree size of demo \(1 to {size}\)"
    ):
        load_state(ledger.store, "demo", tree_size=size + 1)
    with pytest.raises(InvalidInput, match="a release fixes the tree size"):
        load_state(ledger.store, "demo", release="r1", tree_size=3)


def test_counts_declared_in_the_log_are_checked_as_of_the_tree_size(ledger: Ledger) -> None:
    import hashlib

    build(ledger)
    assert qa_report(ledger.store, "demo").document["declared_counts"] is None

    def declare(counts: dict[int, int]) -> int:
        event = f.event(
            "counts.declared",
            {
                "image_id": "f0",
                "counts": [{"category_id": c, "count": n} for c, n in counts.items()],
            },
        )
        return ledger.append("demo", [event], "test").size

    def count_flags(report: Any) -> list[tuple[str, str]]:
        return [(x.code, x.image_id) for x in report.flags if x.check == "counts"]

    first = declare({1: 1, 2: 1})  # f0 holds one car (t0) and no person
    report = qa_report(ledger.store, "demo")
    assert count_flags(report) == [("counts.mismatch", "f0")]
    expected = hashlib.sha256(b'{"f0":{"1":1,"2":1}}').hexdigest()
    assert report.document["declared_counts"] == {"sha256": expected, "entries": 2}
    declare({1: 1})  # the image's latest declaration replaces the earlier one
    assert count_flags(qa_report(ledger.store, "demo")) == []
    assert count_flags(qa_report(ledger.store, "demo", tree_size=first)) == [
        ("counts.mismatch", "f0")
    ]
    # counts given by the caller (a file) win over the log's
    given = parse_declared_counts(b'{"f0": {"1": 2}}', "json")
    assert count_flags(qa_report(ledger.store, "demo", declared=given)) == [
        ("counts.mismatch", "f0")
    ]


@pytest.mark.postgres
def test_same_report_on_sqlite_and_postgresql(tmp_path: Path, pg_url_factory: Any) -> None:
    digests = []
    for url in (sqlite_url(tmp_path), pg_url_factory()):
        store = open_store(url, upgrade=True)
        try:
            seqs = build(Ledger(store))
            digests.append(
                (
                    qa_report(store, "demo").sha256,
                    qa_report(store, "demo", release="r1").sha256,
                    qa_report(store, "demo", tree_size=seqs["edit b"]).canonical,
                )
            )
        finally:
            store.close()
    assert digests[0] == digests[1]


# --- declared counts files -------------------------------------------------------------------


def test_declared_counts_from_json_and_csv(tmp_path: Path) -> None:
    nested = tmp_path / "counts.json"
    nested.write_text(json.dumps({"img-1": {"1": 2, "2": 0}}))
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps({"counts": [{"image_id": "img-1", "category_id": 1, "count": 2},
                                             {"image_id": "img-1", "category_id": 2, "count": 0}]}))  # fmt: skip
    table = tmp_path / "counts.csv"
    table.write_text("image_id,category_id,count\nimg-1,1,2\nimg-1,2,0\n")
    loaded = [load_declared_counts(p) for p in (nested, listed, table)]
    assert all(d.counts == {("img-1", 1): 2, ("img-1", 2): 0} for d in loaded)
    assert loaded[0].sha256 != loaded[2].sha256  # the declaration is identified by its bytes
    assert loaded[2].source == "counts.csv"


@pytest.mark.parametrize(
    ("data", "kind", "match"),
    [
        (b"image_id,count\nimg,1\n", "csv", r"c:1: missing column\(s\) category_id"),
        (
            b"image_id,category_id,count\nimg,1,-1\n",
            "csv",
            r"c:2\.count: expected an integer >= 0, got -1",
        ),
        (
            b"image_id,category_id,count\nimg,x,1\n",
            "csv",
            r"c:2\.category_id: expected an integer, got 'x'",
        ),
        (
            b"image_id,category_id,count\nimg,1,1\nimg,1,2\n",
            "csv",
            r"c:3: image img, category 1 is declared twice",
        ),
        (b'{"img": [1]}', "json", r"c\.img: expected an object of category id -> count"),
        (
            b'[{"image_id": "img", "category_id": 1, "count": true}]',
            "json",
            r"c\[0\]\.count: expected an integer",
        ),
        (b"{", "json", "c: not valid JSON"),
        (b"3", "json", "c: expected an object or a list of objects"),
        (b"", "xml", "c: unknown format 'xml'"),
    ],
)
def test_declared_counts_errors_name_the_place(data: bytes, kind: str, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        parse_declared_counts(data, kind, "c")


def test_missing_counts_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read declared counts"):
        load_declared_counts(tmp_path / "absent.json")
