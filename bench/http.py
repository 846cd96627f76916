"""HTTP ingest: the gunicorn service on PostgreSQL, against the peer's in-process rates.

    python bench/http.py [--quick] [--json FILE] [--workers N] [--threads N]

Starts the real service (``api.testing.LiveServer``: gunicorn with
``api.gunicorn_config``) on a throwaway PostgreSQL database and sends it the
``bench/ingest`` workload (``mask.created`` events with COCO RLE masks, about 1 KB
each), with a writer token:

* batched: 4 client processes, each posting its share in 1000-event batches;
* single: 16 client processes, each posting one event per request.

The clients are separate processes using ``http.client`` with the request bodies
serialized before the clock starts, so that the figure is the service's. Each phase
prints events per second and the p50 and p99 latency of a request. The peer figures
are ``bench/ingest.peer_rates`` on the same events: the ``eventsourcing`` PostgreSQL
recorder, in process, 1000 events per call and one per call. Targets: batched HTTP
ingest at least 2x the peer's batched rate, single-event HTTP ingest at least 1x the
peer's single rate.
"""

# ruff: noqa: E402  (imports follow the sys.path repair below)
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and this file's name
# would hide the standard library's http package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import http.client
import json
import multiprocessing
import multiprocessing.synchronize
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from api.testing import LiveServer
from bench.common import (
    Row,
    arguments,
    finish,
    log,
    pg_checkpoint,
    row,
    throwaway_pg_database,
)
from ledger.auth import TokenStore
from ledger.store import open_store

try:  # the peer and the workload come from bench/ingest.py
    from bench.ingest import make_workload, peer_rates
except ImportError:  # pragma: no cover - run without the ingest benchmark
    make_workload = None  # type: ignore[assignment]
    peer_rates = None  # type: ignore[assignment]

BATCH = 1000
SIZES = {"batched": 40_000, "single": 4_000}
QUICK_SIZES = {"batched": 8_000, "single": 800}
BATCH_CLIENTS = 4
SINGLE_CLIENTS = 16


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _client(
    port: int,
    path: str,
    token: str,
    bodies: list[bytes],
    start: multiprocessing.synchronize.Barrier,
    results: multiprocessing.Queue[tuple[float, float, list[float], int]],
) -> None:
    """Post each body in turn; report (first start, last end, latencies, failures)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    latencies: list[float] = []
    failures = 0
    start.wait()
    began = time.perf_counter()
    for body in bodies:
        t0 = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            ok = response.status in (200, 201)
            if response.will_close:  # sync workers answer one request per connection
                conn.close()
        except (OSError, http.client.HTTPException):
            conn.close()
            ok = False
        latencies.append(time.perf_counter() - t0)
        failures += not ok
    results.put((began, time.perf_counter(), latencies, failures))


def drive(port: int, path: str, token: str, shares: list[list[bytes]]) -> tuple[float, list[float]]:
    """Run one client process per share at once; return (wall seconds, latencies)."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(shares))
    results: multiprocessing.Queue[tuple[float, float, list[float], int]] = ctx.Queue()
    procs = [
        ctx.Process(target=_client, args=(port, path, token, share, barrier, results))
        for share in shares
    ]
    for p in procs:
        p.start()
    collected = [results.get(timeout=3600) for _ in procs]
    for p in procs:
        p.join()
    failures = sum(c[3] for c in collected)
    if failures:
        raise RuntimeError(f"{failures} requests failed; see the server log")
    began = min(c[0] for c in collected)
    ended = max(c[1] for c in collected)
    return ended - began, [lat for c in collected for lat in c[2]]


def _body(events: Sequence[dict[str, Any]]) -> bytes:
    return json.dumps({"events": list(events)}, separators=(",", ":")).encode()


def main(argv: Sequence[str] | None = None) -> None:
    parser = arguments(__doc__.splitlines()[0] if __doc__ else "http")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    parser.add_argument("--no-peer", action="store_true", help="skip the peer's figures")
    args = parser.parse_args(argv)
    if make_workload is None:
        raise SystemExit("bench/ingest.py (make_workload) is needed for the workload")
    sizes = QUICK_SIZES if args.quick else SIZES

    log(f"generating {sizes['batched']} + {sizes['single']} mask events ...")
    big = make_workload(sizes["batched"], project="http-batched")
    small = make_workload(sizes["single"], seed=11, project="http-single")

    rows: list[Row] = []
    with throwaway_pg_database("bench_http") as url, tempfile.TemporaryDirectory() as folder:
        store = open_store(url, upgrade=True)
        tokens = TokenStore(store)
        admin = tokens.create("admin", name="bench-admin", created_by="bench")[1]
        writer = tokens.create("writer", name="bench-writer", created_by="bench")[1]
        store.close()
        workers = args.workers or 2 * multiprocessing.cpu_count() + 1
        env = {"LEDGER_MAX_BATCH": str(BATCH)}
        with LiveServer(
            url, data_dir=Path(folder), workers=workers, threads=args.threads, env=env
        ) as server:
            log(f"gunicorn: {workers} workers x {args.threads} threads at {server.url}")
            for w in (big, small):
                for i in range(0, len(w.setup), BATCH):
                    bodies = [_body(w.setup[i : i + BATCH])]
                    drive(server.port, f"/v1/projects/{w.project}/events", admin, [bodies])
            pg_checkpoint()

            log(f"batched: {BATCH_CLIENTS} clients, {BATCH}-event batches ...")
            batches = [_body(big.events[i : i + BATCH]) for i in range(0, len(big.events), BATCH)]
            shares = [batches[c::BATCH_CLIENTS] for c in range(BATCH_CLIENTS)]
            seconds, latencies = drive(
                server.port, f"/v1/projects/{big.project}/events", writer, shares
            )
            batched = len(big.events) / seconds
            batched_lat = latencies

            log(f"single: {SINGLE_CLIENTS} clients, one event per request ...")
            singles = [json.dumps(e, separators=(",", ":")).encode() for e in small.events]
            shares = [singles[c::SINGLE_CLIENTS] for c in range(SINGLE_CLIENTS)]
            seconds, latencies = drive(
                server.port, f"/v1/projects/{small.project}/events", writer, shares
            )
            single = len(small.events) / seconds
            single_lat = latencies
            if "Traceback" in server.log_text():
                raise RuntimeError("the server logged an error:\n" + server.log_text()[-3000:])

    peer_batched = peer_single = None
    if peer_rates is not None and not args.no_peer:
        log("peer: eventsourcing, in process, same events ...")
        peer = peer_rates(big.event_bytes(), small.event_bytes())
        peer_batched, peer_single = peer.batched, peer.single
    es = "eventsourcing in-process"
    rows += [
        row(f"HTTP ingest PostgreSQL, {BATCH}/request, {BATCH_CLIENTS} clients", batched,
            "events/s", peer=f"{es}, {BATCH}/insert", peer_value=peer_batched,
            target=2.0 if peer_batched else None),
        row("  p50 latency of a batch request", _percentile(batched_lat, 0.50) * 1000, "ms"),
        row("  p99 latency of a batch request", _percentile(batched_lat, 0.99) * 1000, "ms"),
        row(f"HTTP ingest PostgreSQL, 1/request, {SINGLE_CLIENTS} clients", single,
            "events/s", peer=f"{es}, 1/insert", peer_value=peer_single,
            target=1.0 if peer_single else None),
        row("  p50 latency of a single-event request", _percentile(single_lat, 0.50) * 1000, "ms"),
        row("  p99 latency of a single-event request", _percentile(single_lat, 0.99) * 1000, "ms"),
        row("mean event size", big.mean_event_size(), "bytes"),
    ]  # fmt: skip
    finish(
        args,
        rows,
        "http",
        sizes=dict(sizes),
        workers=workers,
        threads=args.threads,
    )


if __name__ == "__main__":
    main()
