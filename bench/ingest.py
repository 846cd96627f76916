"""Append throughput of the ledger against the eventsourcing recorder and a raw COPY.

    python bench/ingest.py [--quick] [--json FILE] [--profile postgresql|sqlite]

The workload is what an annotation tool sends: ``mask.created`` events whose masks
are random polygons on 1024x768 images, rasterised and sent as compressed COCO RLE,
about 1 KB of canonical JSON per event, spread over many images, annotators and
categories of one project (set up before the clock starts).

Measured in-process, in rounds that each create a PostgreSQL database and a SQLite
file (in a temporary folder) and drop them afterwards; each table and project in them
is new:

* ``Ledger.append`` on SQLite and on PostgreSQL, in 1000-event batches and with one
  event per commit: everything an append does (shape checks, canonical bytes, mask
  decoding, state rules, chain, tree hashes, projections, commit);
* the peer: the ``eventsourcing`` library's ``PostgresApplicationRecorder``, fed the
  same canonical event bytes as ``StoredEvent`` states (one new aggregate per mask),
  1000 per ``insert_events`` call and one per call;
* the physical limit: a binary ``COPY`` of the same bytes into an unindexed one-column
  table, 1000 rows per transaction.

Targets: batched append on PostgreSQL at least 3x the peer's batched rate, one event
per commit at least the peer's rate, batched append at least half the raw COPY.
Beside the rates, CPU time per event for the ledger and the peer, split between this
process and the database's server processes (read from /proc): where the time goes.

Other benchmarks import :func:`make_workload` and :func:`peer_rates` to compare with
the peer on the same events.
"""

from __future__ import annotations

import cProfile
import gc
import io
import os
import pstats
import random
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    PG_ADMIN_URL,
    Row,
    arguments,
    finish,
    log,
    peak_rss_mib,
    per_second,
    pg_checkpoint,
    row,
    throwaway_pg_database,
    throwaway_sqlite_url,
)
from ledger.canonical import canonical_bytes
from ledger.events import parse_event
from ledger.masks import validate_segmentation
from ledger.service import Ledger
from ledger.store import open_store

IMAGE_HEIGHT, IMAGE_WIDTH = 768, 1024
BATCH = 1000
PRINCIPAL = "bench-ingest"

#: default sizes, and the --quick ones
SIZES = {"batched": 20_000, "single": 2_000}
QUICK_SIZES = {"batched": 2_000, "single": 200}


# --- the workload ---------------------------------------------------------------------


@dataclass
class Workload:
    """A project's setup events and the mask events that are timed."""

    project: str
    setup: list[dict[str, Any]]
    events: list[dict[str, Any]]
    _bytes: list[bytes] = field(default_factory=list, repr=False)

    def event_bytes(self) -> list[bytes]:
        """The RFC 8785 bytes of each timed event: what the peer stores."""
        if not self._bytes:
            self._bytes = [canonical_bytes(e) for e in self.events]
        return self._bytes

    def mean_event_size(self) -> float:
        sizes = [len(b) for b in self.event_bytes()]
        return sum(sizes) / max(1, len(sizes))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def polygon_rle(rng: random.Random) -> dict[str, Any]:
    """Compressed RLE of a random star-shaped polygon of 8 to 32 vertices."""
    n = rng.randrange(8, 33)
    radius = rng.uniform(40, 170)
    cx = rng.uniform(radius, IMAGE_WIDTH - radius)
    cy = rng.uniform(radius, IMAGE_HEIGHT - radius)
    angles = sorted(rng.uniform(0, 2 * np.pi) for _ in range(n))
    coords: list[float] = []
    for a in angles:
        r = radius * rng.uniform(0.6, 1.0)
        x = min(max(cx + r * np.cos(a), 0.0), IMAGE_WIDTH)
        y = min(max(cy + r * np.sin(a), 0.0), IMAGE_HEIGHT)
        coords += [round(float(x), 2), round(float(y), 2)]
    rle = coco_mask.merge(coco_mask.frPyObjects([coords], IMAGE_HEIGHT, IMAGE_WIDTH))
    return {"size": [IMAGE_HEIGHT, IMAGE_WIDTH], "counts": rle["counts"].decode("ascii")}


def make_workload(
    count: int, *, seed: int = 20261101, project: str = "bench", masks_per_image: int = 8
) -> Workload:
    """``count`` mask.created events (about 1 KB each) and the events that set up the
    project they go to: annotators, reviewers, a guideline, categories, images."""
    rng = random.Random(seed)
    t0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
    tool = {"name": "cvat", "version": "2.14.1"}
    guide = {"id": "coco-instances", "version": "2.3"}

    def event(kind: str, actor: str, payload: dict[str, Any], at: int) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "id": _uuid(rng),
            "type": kind,
            "actor": actor,
            "client_time": (t0 + timedelta(milliseconds=at)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "tool": tool,
            "payload": payload,
        }
        if kind.startswith("mask."):
            ev["guideline"] = guide
        return ev

    annotators = [f"annotator-{i:03d}" for i in range(24)]
    images = [f"frame-{i:07d}" for i in range(max(1, count // masks_per_image))]
    categories = ["car", "person", "bicycle", "truck", "bus", "traffic-light", "dog", "sign"]
    setup = [event("project.created", "admin", {"name": f"benchmark {project}"}, 0)]
    for a in annotators:
        setup.append(event("actor.registered", "admin", {"actor_id": a, "kind": "annotator"}, 0))
    setup.append(event("actor.registered", "admin", {"actor_id": "qa-lead", "kind": "reviewer"}, 0))
    publish = {"guideline_id": guide["id"], "version": guide["version"], "sha256": "ab" * 32}
    setup.append(event("guideline.published", "admin", publish, 0))
    for i, name in enumerate(categories):
        setup.append(event("category.defined", "admin", {"category_id": i + 1, "name": name}, 0))
    for im in images:
        image = {
            "image_id": im,
            "width": IMAGE_WIDTH,
            "height": IMAGE_HEIGHT,
            "file_name": f"drive-0042/{im}.jpg",
            "sha256": f"{rng.getrandbits(256):064x}",
        }
        setup.append(event("image.registered", "admin", image, 0))
    events = []
    for i in range(count):
        payload: dict[str, Any] = {
            "instance_id": f"{project}-inst-{i:07d}",
            "image_id": rng.choice(images),
            "category_id": rng.randrange(1, len(categories) + 1),
            "segmentation": polygon_rle(rng),
        }
        if rng.random() < 0.3:
            payload["score"] = round(rng.random(), 4)
        events.append(event("mask.created", rng.choice(annotators), payload, 1000 + 7 * i))
    return Workload(project, setup, events)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# --- the ledger ------------------------------------------------------------------------


def _setup_ledger(url: str, workload: Workload) -> Ledger:
    store = open_store(url, upgrade=True)
    ledger = Ledger(store, max_batch=BATCH)
    for chunk in _chunks(workload.setup, BATCH):
        ledger.append(workload.project, list(chunk), PRINCIPAL)
    return ledger


def _append_all(ledger: Ledger, workload: Workload, batch: int) -> None:
    project = workload.project
    for chunk in _chunks(workload.events, batch):
        ledger.append(project, list(chunk), PRINCIPAL)


@dataclass(frozen=True)
class Measured:
    """One timed run: events per second, and CPU microseconds per event spent in this
    process and in the PostgreSQL server processes of the run's database (None when
    they cannot be read: SQLite, or a server on another host)."""

    rate: float
    client_us: float
    server_us: float | None

    @property
    def cpu_us(self) -> float:
        return self.client_us + (self.server_us or 0.0)


class _Clock:
    """Wall clock, this process's CPU time and the server's CPU time for one database."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.server = _server_cpu(url) if url else {}
        self.client = time.process_time()
        self.wall = time.perf_counter()

    def stop(self, count: int) -> Measured:
        wall = time.perf_counter() - self.wall
        client = time.process_time() - self.client
        server: float | None = None
        if self.url:
            after = _server_cpu(self.url)
            if after:
                server = sum(t - self.server.get(pid, 0.0) for pid, t in after.items())
        per = 1e6 / max(1, count)
        return Measured(
            per_second(count, wall), client * per, None if server is None else server * per
        )


def _server_cpu(url: str) -> dict[int, float]:
    """CPU seconds so far of each server process connected to the database at ``url``,
    from /proc (Linux, server on this host); empty where that cannot be read."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        pids = [
            int(r[0])
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
    out: dict[int, float] = {}
    for pid in pids:
        try:  # nanoseconds on a CPU, first field of schedstat
            out[pid] = int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
            continue
        except (OSError, IndexError, ValueError):
            pass
        try:  # utime + stime, in clock ticks
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            continue
    return out


def measure_ledger(url: str, workload: Workload, batch: int) -> Measured:
    """``Ledger.append`` of the workload's events in batches of ``batch`` on a fresh
    database at ``url`` (the project is set up first, untimed)."""
    ledger = _setup_ledger(url, workload)
    postgres = url.startswith("postgresql")
    try:
        if postgres:
            pg_checkpoint()
        clock = _Clock(url if postgres else None)
        _append_all(ledger, workload, batch)
        measured = clock.stop(len(workload.events))
        expected = len(workload.setup) + len(workload.events)
        size = ledger.head(workload.project).size
        if size != expected:
            raise RuntimeError(f"the log has {size} entries, expected {expected}")
    finally:
        ledger.store.close()
    return measured


def ledger_rate(url: str, workload: Workload, batch: int) -> float:
    """Events per second of ``measure_ledger``."""
    return measure_ledger(url, workload, batch).rate


def ledger_pg(workload: Workload, batch: int, admin_url: str = PG_ADMIN_URL) -> Measured:
    with throwaway_pg_database("bench_ledger", admin_url) as url:
        return measure_ledger(url, workload, batch)


def ledger_sqlite(workload: Workload, batch: int) -> Measured:
    with throwaway_sqlite_url() as url:
        return measure_ledger(url, workload, batch)


# --- the peer: eventsourcing's PostgreSQL recorder ----------------------------------------


def _peer_datastore(url: str) -> Any:
    from eventsourcing.postgres import PostgresDatastore
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(url)
    return PostgresDatastore(
        dbname=str(info.get("dbname", "postgres")),
        host=str(info.get("host", "127.0.0.1")),
        port=str(info.get("port", "5432")),
        user=str(info.get("user", "postgres")),
        password=str(info.get("password", "")),
    )


def peer_rate(
    event_bytes: Sequence[bytes],
    batch: int,
    *,
    topic: str = "mask.created",
    admin_url: str = PG_ADMIN_URL,
) -> float:
    """Events per second that eventsourcing's ``PostgresApplicationRecorder.insert_events``
    stores, ``batch`` events per call, each event a new aggregate (version 1) whose
    state is the given bytes; on a fresh database, dropped afterwards."""
    return measure_peer(event_bytes, batch, topic=topic, admin_url=admin_url).rate


def measure_peer(
    event_bytes: Sequence[bytes],
    batch: int,
    *,
    topic: str = "mask.created",
    admin_url: str = PG_ADMIN_URL,
    url: str | None = None,
    table: str = "stored_events",
) -> Measured:
    """``peer_rate`` with its CPU cost per event; in the database at ``url`` (into a new
    table of that name) instead of a throwaway database when given."""
    if url is None:
        with throwaway_pg_database("bench_peer", admin_url) as fresh:
            return measure_peer(event_bytes, batch, topic=topic, url=fresh, table=table)
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.postgres import PostgresApplicationRecorder

    rng = random.Random(len(event_bytes))
    stored = [
        StoredEvent(
            originator_id=uuid.UUID(int=rng.getrandbits(128), version=4),
            originator_version=1,
            topic=topic,
            state=bytes(b),
        )
        for b in event_bytes
    ]
    datastore = _peer_datastore(url)
    try:
        recorder = PostgresApplicationRecorder(datastore, events_table_name=table)
        recorder.create_table()
        pg_checkpoint(admin_url)
        clock = _Clock(url)
        for chunk in _chunks(stored, batch):
            recorder.insert_events(chunk)
        measured = clock.stop(len(stored))
    finally:
        datastore.close()
    return measured


@dataclass(frozen=True)
class PeerRates:
    batched: float  #: events/s, 1000 events per insert_events call
    single: float  #: events/s, one event per call (one commit each)


def peer_rates(
    batched: Sequence[bytes], single: Sequence[bytes], *, admin_url: str = PG_ADMIN_URL
) -> PeerRates:
    """The peer's batched rate over ``batched`` and its one-per-commit rate over
    ``single`` (each on its own throwaway database)."""
    return PeerRates(
        batched=peer_rate(batched, BATCH, admin_url=admin_url),
        single=peer_rate(single, 1, admin_url=admin_url),
    )


# --- the physical limit: raw COPY -----------------------------------------------------------


def copy_rate(
    event_bytes: Sequence[bytes],
    batch: int,
    admin_url: str = PG_ADMIN_URL,
    *,
    url: str | None = None,
    table: str = "raw_events",
) -> float:
    """Events per second of a binary COPY of the bytes into an unindexed one-column
    table, ``batch`` rows per transaction; in the database at ``url`` (a new table of
    that name) instead of a throwaway database when given."""
    import psycopg

    if url is None:
        with throwaway_pg_database("bench_copy", admin_url) as fresh:
            return copy_rate(event_bytes, batch, admin_url, url=fresh, table=table)
    with psycopg.connect(url) as conn:
        conn.execute(f"CREATE TABLE {table} (event bytea NOT NULL)")
        conn.commit()
        pg_checkpoint(admin_url)
        start = time.perf_counter()
        for chunk in _chunks(event_bytes, batch):
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY {table} (event) FROM STDIN (FORMAT BINARY)") as copy,
            ):
                copy.set_types(["bytea"])
                for b in chunk:
                    copy.write_row((b,))
            conn.commit()
        seconds = time.perf_counter() - start
    return per_second(len(event_bytes), seconds)


# --- CPU work per event, outside any database ---------------------------------------------


def cpu_rates(workload: Workload) -> dict[str, float]:
    """Events per second of the per-event steps an append does before its lock, a
    batch at a time with the garbage collector held off, as an append runs them
    (parsing every event of a large workload into one list would time the collector's
    passes over that list instead)."""
    events = workload.events
    t_parse = t_canon = 0.0
    for chunk in _chunks(events, BATCH):
        gc.disable()
        try:
            start = time.perf_counter()
            parsed = [parse_event(e) for e in chunk]
            t_parse += time.perf_counter() - start
            start = time.perf_counter()
            for p in parsed:
                canonical_bytes(p.stored)
            t_canon += time.perf_counter() - start
        finally:
            gc.enable()
        del parsed
    start = time.perf_counter()
    for e in events:
        validate_segmentation(e["payload"]["segmentation"], IMAGE_HEIGHT, IMAGE_WIDTH)
    t_mask = time.perf_counter() - start
    n = len(events)
    return {
        "parse": per_second(n, t_parse),
        "canonical": per_second(n, t_canon),
        "mask": per_second(n, t_mask),
    }


# --- profile -----------------------------------------------------------------------------------


def profile(backend: str, workload: Workload, batch: int = BATCH, top: int = 30) -> str:
    """cProfile of appending the workload in batches on a fresh database: the top
    functions by cumulative and by own time."""
    prof = cProfile.Profile()
    with (
        throwaway_pg_database("bench_profile")
        if backend == "postgresql"
        else throwaway_sqlite_url()
    ) as url:
        ledger = _setup_ledger(url, workload)
        try:
            prof.runcall(_append_all, ledger, workload, batch)
        finally:
            ledger.store.close()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).strip_dirs()
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


# --- main ------------------------------------------------------------------------------------


@dataclass
class _Best:
    """The best of each figure over the rounds: highest rate, lowest CPU per event."""

    runs: dict[str, list[Measured]] = field(default_factory=dict)

    def add(self, name: str, measured: Measured | float) -> None:
        if not isinstance(measured, Measured):
            measured = Measured(measured, 0.0, None)
        self.runs.setdefault(name, []).append(measured)
        cpu = f", CPU {measured.cpu_us:,.0f} us/event" if measured.client_us else ""
        log(f"  {name}: {measured.rate:,.0f} events/s{cpu}")

    def rate(self, name: str) -> float:
        return max(m.rate for m in self.runs[name])

    def cpu(self, name: str) -> Measured:
        return min(self.runs[name], key=lambda m: m.cpu_us)


def main(argv: Sequence[str] | None = None) -> None:
    parser = arguments(__doc__.splitlines()[0] if __doc__ else "ingest")
    parser.add_argument("--count", type=int, help="events appended in batches")
    parser.add_argument("--single", type=int, help="events appended one per commit")
    parser.add_argument("--batch", type=int, default=BATCH, help="events per batch")
    parser.add_argument(
        "--rounds",
        type=int,
        help="measure each figure this often, keep the best (default 2, 1 with --quick)",
    )
    parser.add_argument(
        "--profile",
        choices=("postgresql", "sqlite"),
        help="only profile batched appends on this backend and print the top",
    )
    args = parser.parse_args(argv)
    sizes = dict(QUICK_SIZES if args.quick else SIZES)
    if args.count is not None:
        sizes["batched"] = args.count
    if args.single is not None:
        sizes["single"] = args.single
    batch = args.batch
    rounds = args.rounds or (1 if args.quick else 2)

    log(f"generating {sizes['batched']} + {sizes['single']} mask events ...")
    big = make_workload(sizes["batched"], project="bench-batched")
    small = make_workload(sizes["single"], seed=7, project="bench-single")
    if args.profile:
        print(profile(args.profile, big, batch))
        return
    big_bytes, small_bytes = big.event_bytes(), small.event_bytes()

    log("CPU work per event ...")
    cpu = cpu_rates(small if len(small.events) >= 200 else big)
    # The ledger and its peer take turns, so that a slow moment of a shared machine
    # hits both; each figure is the best of the rounds.
    best = _Best()
    for r in range(rounds):
        log(f"round {r + 1} of {rounds}:")
        # One fresh database per round holds the raw table, the peer's two tables and
        # the ledger's two projects (creating and dropping a database costs seconds).
        with throwaway_pg_database("bench_ingest") as url:
            best.add("copy", copy_rate(big_bytes, batch, url=url))
            best.add("peer batched", measure_peer(big_bytes, batch, url=url, table="es_batched"))
            best.add("pg batched", measure_ledger(url, big, batch))
            best.add("peer single", measure_peer(small_bytes, 1, url=url, table="es_single"))
            best.add("pg single", measure_ledger(url, small, 1))
        with throwaway_sqlite_url() as lite:
            best.add("sqlite batched", measure_ledger(lite, big, batch))
            best.add("sqlite single", measure_ledger(lite, small, 1))

    es = "eventsourcing"
    rows: list[Row] = [
        row(f"append PostgreSQL, {batch}/batch", best.rate("pg batched"), "events/s",
            peer=f"{es}, {batch}/insert", peer_value=best.rate("peer batched"), target=3.0),
        row("append PostgreSQL, 1/commit", best.rate("pg single"), "events/s",
            peer=f"{es}, 1/insert", peer_value=best.rate("peer single"), target=1.0),
        row(f"append PostgreSQL, {batch}/batch", best.rate("pg batched"), "events/s",
            peer=f"raw COPY, {batch} rows/txn", peer_value=best.rate("copy"), target=0.5),
        row(f"append SQLite, {batch}/batch", best.rate("sqlite batched"), "events/s",
            peer=f"{es} PG, {batch}/insert", peer_value=best.rate("peer batched")),
        row("append SQLite, 1/commit", best.rate("sqlite single"), "events/s",
            peer=f"{es} PG, 1/insert", peer_value=best.rate("peer single")),
    ]  # fmt: skip
    # CPU per event: this process, and the server processes of the run's database.
    for label, ours, theirs in (
        (f"PostgreSQL, {batch}/batch", "pg batched", "peer batched"),
        ("PostgreSQL, 1/commit", "pg single", "peer single"),
    ):
        mine, peer = best.cpu(ours), best.cpu(theirs)
        rows.append(row(f"CPU per event, append {label}", mine.cpu_us, "us",
                        peer=es, peer_value=peer.cpu_us, lower_is_better=True))  # fmt: skip
        if mine.server_us is not None and peer.server_us is not None:
            rows.append(row("  of which in this process", mine.client_us, "us",
                            peer=es, peer_value=peer.client_us, lower_is_better=True))  # fmt: skip
            rows.append(row("  of which in PostgreSQL", mine.server_us, "us",
                            peer=es, peer_value=peer.server_us, lower_is_better=True))  # fmt: skip
    for label, name in (
        (f"SQLite, {batch}/batch", "sqlite batched"),
        ("SQLite, 1/commit", "sqlite single"),
    ):
        rows.append(row(f"CPU per event, append {label}", best.cpu(name).cpu_us, "us"))
    rows += [
        row("CPU: shape checks (parse_event)", cpu["parse"], "events/s"),
        row("CPU: canonical event bytes", cpu["canonical"], "events/s"),
        row("CPU: mask decoding (validate_segmentation)", cpu["mask"], "events/s"),
        row("mean event size", big.mean_event_size(), "bytes"),
        row("peak RSS", peak_rss_mib(), "MiB"),
    ]
    finish(
        args,
        rows,
        "ingest",
        sizes={"batched": sizes["batched"], "single": sizes["single"], "batch": batch},
        rounds=rounds,
    )


if __name__ == "__main__":
    main()
