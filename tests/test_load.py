"""Load: 32 concurrent writers through the running service, on one project and spread
over 8 projects, for a bounded time (LEDGER_LOAD_SECONDS, default 3 per
scenario and backend; 60 for the full
run, see docs/reliability.md). Afterwards every project's seqs are dense, its chain
and tree verify, and every acknowledged event is there once at its acknowledged seq.
Throughput and latency are printed, not asserted.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from api.testing import LiveServer, scratch_postgres
from tests.conftest import _PG_PROBLEM, PG_ADMIN_URL
from tests.fault_tools import Writer, admin_token, check_log, env_float, setup_project

SECONDS = env_float("LEDGER_LOAD_SECONDS", 3)
WRITERS = 32
PER_BATCH = 5


@dataclass
class Service:
    url: str
    server: LiveServer
    token: str


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """One server per backend, for both scenarios (they use different projects)."""
    data: Path = tmp_path_factory.mktemp(f"load-{request.param}")
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{data / 'ledger.db'}"
        else:
            if _PG_PROBLEM is not None:
                pytest.skip(f"PostgreSQL unreachable: {_PG_PROBLEM}")
            url = stack.enter_context(scratch_postgres(PG_ADMIN_URL, prefix="ledger_load"))
        token = admin_token(url)
        server = stack.enter_context(LiveServer(url, data_dir=data, workers=4, threads=4))
        yield Service(url, server, token)
        assert "Traceback" not in server.log_text()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


@pytest.mark.parametrize("projects", [1, 8])
def test_32_writers(service: Service, projects: int) -> None:
    url, server, token = service.url, service.server, service.token
    names = [f"load{projects}-{p}" for p in range(projects)]
    sizes = {name: setup_project(server.url, token, name) for name in names}
    writers = [
        Writer(lambda: server.url, token, names[i % projects], f"w{i}", PER_BATCH)
        for i in range(WRITERS)
    ]
    started = time.perf_counter()
    for w in writers:
        w.start()
    time.sleep(SECONDS)
    for w in writers:
        w.stop.set()
    for w in writers:
        w.join(timeout=300)
    elapsed = time.perf_counter() - started
    statuses: dict[int, int] = {}
    for w in writers:
        assert not w.problems, w.problems
        for k, v in w.statuses.items():
            statuses[k] = statuses.get(k, 0) + v
    assert set(statuses) <= {200, 201, 503}, statuses
    appended = 0
    for name in names:
        mine = [w for w in writers if w.project == name]
        size = check_log(url, name, mine, setup_size=sizes[name], require_all_sent=True)
        assert size - sizes[name] == sum(len(b) for w in mine for b in w.sent)
        appended += size - sizes[name]
    assert appended > 0
    latencies = [x for w in writers for x in w.latencies]
    backend = url.split(":", 1)[0]
    print(
        f"\nload {backend}, {WRITERS} writers on {projects} project(s), {PER_BATCH} events/batch,"
        f" {elapsed:.1f} s: {appended / elapsed:,.0f} events/s, "
        f"{len(latencies) / elapsed:,.1f} batches/s; latency ms p50 {_pct(latencies, 0.5):.0f}"
        f" p95 {_pct(latencies, 0.95):.0f} p99 {_pct(latencies, 0.99):.0f}"
        f" max {max(latencies) * 1000:.0f} mean {statistics.fmean(latencies) * 1000:.0f};"
        f" statuses {statuses}"
    )
