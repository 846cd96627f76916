"""Helpers of the fault, load and hostile-input tests.

* :func:`admin_token` makes an admin token directly in a database.
* :class:`PrivateCluster` is a throwaway PostgreSQL cluster (initdb in a temporary
  folder, a free port, started with pg_ctl as the postgres user) that a test may stop,
  restart or crash without touching the shared server.
* :class:`Writer` posts batches of events to a running service from a thread, keeps
  every batch it sent and what the service acknowledged, and retries a batch with the
  same event UUIDs after a 503 or a lost answer.
* :func:`check_log` asserts what every fault test ends with: a dense, verifying log
  holding every acknowledged event at its acknowledged sequence number and every
  batch whole or not at all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from api.testing import LiveServer, free_port
from ledger.auth import TokenStore
from ledger.store import open_store
from ledger.verify import verify_log
from tests import factory as f

PG_BIN = Path(os.environ.get("LEDGER_PG_BIN", "/usr/lib/postgresql/15/bin"))


def env_int(name: str, default: int) -> int:
    """An integer from the environment (the full-size runs), else the CI default."""
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def admin_token(url: str) -> str:
    store = open_store(url, upgrade=True)
    try:
        return TokenStore(store).create("admin", created_by="test")[1]
    finally:
        store.close()


def assert_problem(r: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert r.status_code in statuses, (r.status_code, r.text[:500])
    assert r.headers["Content-Type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["status"] == r.status_code and body["type"] and body["detail"], body
    return body


def assert_unavailable(r: httpx.Response) -> None:
    body = assert_problem(r, 503)
    assert r.headers["Retry-After"].isdigit(), r.headers
    assert body["type"].endswith(":storage-unavailable"), body


# --- a private PostgreSQL cluster -----------------------------------------------------


def postgres_binaries_usable() -> str | None:
    """Why a private cluster cannot be made here, or None."""
    if not (PG_BIN / "initdb").exists():
        return f"no PostgreSQL binaries in {PG_BIN}"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser"
    return None


class PrivateCluster:
    """A PostgreSQL cluster of its own, on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ledger-pgcluster-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.log = self.root / "postgres.log"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = list(argv)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=120)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        os.chmod(self.root, 0o755)
        self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--no-sync", "-E", "UTF8",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            "-c max_connections=100 -c shared_buffers=32MB"
        )
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        done = self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status", check=False)
        return done.returncode == 0

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


# --- processes of a running service ---------------------------------------------------


def worker_pids(server: LiveServer) -> list[int]:
    """The gunicorn workers: the children of the master process."""
    assert server.process is not None
    master = server.process.pid
    children = Path(f"/proc/{master}/task/{master}/children")
    try:
        return [int(p) for p in children.read_text().split()]
    except FileNotFoundError:
        return []


def kill_service(server: LiveServer) -> None:
    """SIGKILL the whole process group of the service (master and workers)."""
    process, server.process = server.process, None
    assert process is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


# --- writers --------------------------------------------------------------------------


@dataclass
class Writer:
    """Posts batches of ``mask.created`` events from a thread until stopped.

    ``url`` is read before every request, so a test can move the writer to a restarted
    service. With ``retry`` a batch whose answer was lost or 503 is sent again with the
    same event UUIDs until acknowledged; without, it is dropped and counted as in doubt.
    """

    url: Callable[[], str]
    token: str
    project: str
    name: str
    per_batch: int = 5
    retry: bool = True
    image_id: str = "img-1"
    #: every batch sent (a list of event ids), acknowledged or not
    sent: list[list[str]] = field(default_factory=list)
    #: event id -> acknowledged seq
    acked: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    #: 503 answers without a numeric Retry-After, and any other problem seen
    problems: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    #: batches whose answer was lost after they reached the service (or a 503 without
    #: retry): they may or may not be in the log, but only whole
    in_doubt: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> Writer:
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.thread.start()
        return self

    def join(self, timeout: float = 120.0) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout)
            assert not self.thread.is_alive(), f"writer {self.name} did not stop"

    def _batch(self, n: int) -> list[dict[str, Any]]:
        return [
            f.mask_created(f"{self.name}-{n}-{j}", image_id=self.image_id)
            for j in range(self.per_batch)
        ]

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(headers=headers, timeout=60) as http:
            n = 0
            while not self.stop.is_set():
                batch = self._batch(n)
                n += 1
                self.sent.append([e["id"] for e in batch])
                while True:
                    started = time.perf_counter()
                    try:
                        r = http.post(
                            f"{self.url()}/v1/projects/{self.project}/events",
                            json={"events": batch},
                        )
                    except httpx.TransportError as e:
                        self.statuses[0] = self.statuses.get(0, 0) + 1
                        time.sleep(0.1)
                        if not self.retry:
                            self.in_doubt += not isinstance(e, httpx.ConnectError)
                            break
                        continue
                    self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
                    if r.status_code in (200, 201):
                        self.latencies.append(time.perf_counter() - started)
                        for item in r.json()["results"]:
                            self.acked[item["id"]] = int(item["seq"])
                        break
                    if r.status_code == 503:
                        if not r.headers.get("Retry-After", "").isdigit():
                            self.problems.append(f"503 without Retry-After: {r.headers}")
                        if not self.retry:
                            self.in_doubt += 1
                            break
                        time.sleep(0.05)
                        continue
                    self.problems.append(f"{r.status_code}: {r.text[:300]}")
                    break


# --- the end state of every fault test ------------------------------------------------


def check_log(
    url: str,
    project: str,
    writers: list[Writer],
    *,
    setup_size: int,
    require_all_sent: bool = False,
) -> int:
    """Assert the log is whole; return its size.

    Every acknowledged event is at its acknowledged seq; every batch sent is in the log
    whole (at consecutive seqs) or not at all; no event is there twice; seqs are dense;
    ``verify_log`` passes. With ``require_all_sent`` every batch sent must be there.
    """
    store = open_store(url)
    try:
        rows = store.query(
            "SELECT seq, event_id FROM entries WHERE project = ? ORDER BY seq", (project,)
        )
        seqs = [int(r["seq"]) for r in rows]
        assert seqs == list(range(len(seqs))), "sequence numbers are not dense"
        ids = [str(r["event_id"]) for r in rows]
        assert len(ids) == len(set(ids)), "an event is in the log twice"
        where = {event_id: seq for event_id, seq in zip(ids, seqs, strict=True)}
        for w in writers:
            for event_id, seq in w.acked.items():
                assert where.get(event_id) == seq, f"acknowledged {event_id}@{seq} is missing"
            for batch in w.sent:
                present = [where[e] for e in batch if e in where]
                if require_all_sent:
                    assert len(present) == len(batch), f"batch {batch[0]} was lost"
                assert len(present) in (0, len(batch)), f"partial batch {batch}: {present}"
                if present:
                    assert present == list(range(present[0], present[0] + len(batch)))
        report = verify_log(store, project)
        assert report.ok, report
        assert len(seqs) >= setup_size
        return len(seqs)
    finally:
        store.close()


def setup_project(url: str, token: str, project: str, images: int = 1) -> int:
    """Create ``project`` with alice, a category and ``images`` images; return its size."""
    events = f.setup_events() + [f.image(f"img-{i}") for i in range(2, images + 1)]
    r = httpx.post(
        f"{url}/v1/projects/{project}/events",
        json={"events": events},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    return len(events)
