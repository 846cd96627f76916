"""Many processes appending at once: dense sequence numbers, a valid chain, nothing
lost or duplicated, on both backends."""

from __future__ import annotations

import json
import multiprocessing
from collections import Counter

import pytest

from ledger.service import Ledger
from ledger.store import Store
from ledger.verify import verify_log
from tests import factory as f
from tests.concurrent_writer import write

WORKERS = 16
BATCHES = 4
PER_BATCH = 5


def _run(url: str, projects: list[str]) -> list[tuple[str, list[tuple[str, int]]]]:
    ctx = multiprocessing.get_context("spawn")
    jobs = [(url, projects[w % len(projects)], w, BATCHES, PER_BATCH) for w in range(WORKERS)]
    with ctx.Pool(WORKERS) as pool:
        results = pool.starmap(write, jobs)
    return [(job[1], acked) for job, acked in zip(jobs, results, strict=True)]


def _check(store: Store, project: str, acked: list[tuple[str, int]], setup: int) -> None:
    entries = list(store.iter_entries(project))
    assert [seq for seq, _ in entries] == list(range(len(entries)))  # dense
    assert len(entries) == setup + len(acked)
    stored = {json.loads(raw)["event"]["id"]: seq for seq, raw in entries}
    counts = Counter(json.loads(raw)["event"]["id"] for _, raw in entries)
    assert max(counts.values()) == 1  # nothing duplicated
    for event_id, seq in acked:  # every acknowledged event is there, where it was promised
        assert stored[event_id] == seq
    report = verify_log(store, project)
    assert report.ok, report.first_failure


@pytest.mark.parametrize("n_projects", [1, 4])
def test_concurrent_appends(db_url: str, store: Store, n_projects: int) -> None:
    projects = [f"p{i}" for i in range(n_projects)]
    ledger = Ledger(store)
    for p in projects:
        ledger.append(p, f.setup_events(), "setup")
    results = _run(db_url, projects)
    for p in projects:
        acked = [a for proj, batch in results if proj == p for a in batch]
        assert len(acked) == WORKERS // n_projects * BATCHES * PER_BATCH
        _check(store, p, acked, setup=6)
