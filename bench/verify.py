"""Full verification and proof generation on a 1,000,000-entry log, per backend.

    python bench/verify.py [--quick] [--json FILE] [--entries N] [--backend sqlite|postgresql]

Builds one project log per backend (SQLite in a temporary folder, PostgreSQL in a
throwaway database) and measures:

* full verification (``ledger.verify.verify_log``: every leaf, chain link, stored tree
  hash, and every signed checkpoint's signature and root), in one process and in
  worker processes (``workers``), in entries per second (and per CPU-second of the
  verifying process, a figure less sensitive to a busy machine), against the 100 k
  entries/s target and beside the raw rate of reading the same entry bytes with the
  same driver (one ordered scan) and SHA-256 hashing them;
* the same as seconds for the whole log, against the 10 s limit at 1 M entries;
* inclusion and consistency proof generation (``ledger.proofs``: ONE read of
  O(log n) stored hashes), median and p99 over random requests at the size of the
  latest signed checkpoint (the whole log), as a client asks, against the 2 ms limit.

The log is written by a bulk loader, NOT by the validating append path (which would
take far longer than the figures measured here): it writes the same rows an append
writes, valid entries (RFC 8785 bytes of real ``mask.created`` events from
``bench/ingest.make_workload``, with fresh ids), the hash chain, every stored tree
hash, the head, and a signed checkpoint every 1,000 entries (the default policy),
with COPY on PostgreSQL and one transaction on SQLite. The figures are about reading
and checking, which is the same whichever way the rows were written. ``--quick`` uses
50,000 entries.
"""

from __future__ import annotations

import hashlib
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Row,
    arguments,
    finish,
    log,
    pg_checkpoint,
    row,
    throwaway_pg_database,
    throwaway_sqlite_url,
)
from bench.ingest import make_workload
from ledger.canonical import canonical_bytes
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.entry import entry_bytes, event_hash, format_time
from ledger.events import parse_event
from ledger.merkle import CompactRange, leaf_hash
from ledger.note import Signer, generate_signer
from ledger.proofs import consistency_proof, inclusion_proof
from ledger.store import Store, open_store
from ledger.store.base import TABLES
from ledger.verify import verify_log

PROJECT = "bench"
ORIGIN = f"bench.example/{PROJECT}"
CHECKPOINT_EVERY = 1000
PRINCIPAL = "bench-loader"
VERIFY_TARGET = 100_000.0  # entries/s
FULL_LOG = 1_000_000
FULL_LOG_LIMIT = 10.0  # seconds for a 1 M-entry log
PROOF_LIMIT_MS = 2.0
#: worker processes of the parallel run (what workers=None picks for a 1M-entry log)
WORKERS = max(2, min(os.cpu_count() or 1, 4))
_ID = "00000000-0000-4000-8000-000000000000"


# --- the bulk loader ------------------------------------------------------------------


def _templates(seed: int) -> tuple[list[dict[str, Any]], list[tuple[bytes, dict[str, Any]]]]:
    """Setup events, and mask events as canonical bytes with a placeholder id and
    instance id (both inside JSON strings, so substituting keeps the bytes canonical)."""
    workload = make_workload(800, seed=seed, project=PROJECT)
    setup = [parse_event(e, loc="setup").stored for e in workload.setup]
    masks = []
    for ev in workload.events:
        stored = parse_event({**ev, "id": _ID}, loc="mask").stored
        stored["payload"]["instance_id"] = "bench-inst-@@@@@@@"
        masks.append((canonical_bytes(stored), stored))
    return setup, masks


def generate(n: int, seed: int = 7) -> Iterator[tuple[tuple[Any, ...], list[bytes]]]:
    """(entries row, stored tree hashes) for each of n entries, in sequence order."""
    setup, masks = _templates(seed)
    rng = random.Random(seed + 1)  # not the workload's own sequence of ids
    tree = CompactRange()
    prev: bytes | None = None
    t0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
    for seq in range(n):
        if seq < len(setup):
            stored = setup[seq]
            event = canonical_bytes(stored)
            event_id, instance_id, image_id = stored["id"], None, stored["payload"].get("image_id")
        else:
            template, stored = masks[seq % len(masks)]
            event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            instance_id = f"bench-inst-{seq:07d}"
            event = template.replace(_ID.encode(), event_id.encode()).replace(
                b"bench-inst-@@@@@@@", instance_id.encode()
            )
            image_id = stored["payload"]["image_id"]
        recorded_at = format_time(t0 + timedelta(milliseconds=seq // 10))
        raw = entry_bytes(
            event=event,
            prev=prev,
            principal=PRINCIPAL,
            project=PROJECT,
            recorded_at=recorded_at,
            seq=seq,
        )
        leaf = leaf_hash(raw)
        guideline = "coco-instances@2.3" if stored["type"].startswith("mask.") else None
        entry_row = (
            PROJECT, seq, event_id, event_hash(event), stored["type"], stored["actor"],
            instance_id, image_id, guideline, recorded_at, raw,
        )  # fmt: skip
        yield entry_row, tree.append(leaf)
        prev = leaf


def bulk_load(url: str, n: int, signer: Signer, progress: Callable[[int], None]) -> bytes:
    """Write an n-entry log with checkpoints (see the module docstring); return its root."""
    open_store(url, upgrade=True).close()
    entries: list[tuple[Any, ...]] = []
    hashes: list[tuple[Any, ...]] = []
    checkpoints: list[tuple[Any, ...]] = []
    tree = CompactRange()
    writer = _SqliteWriter(url) if url.startswith("sqlite") else _PostgresWriter(url)
    index = 0
    last_leaf = b""
    last_time = ""
    created = format_time(datetime.now(UTC))
    for entry_row, stored in generate(n):
        entries.append(entry_row)
        for h in stored:
            hashes.append((PROJECT, index, h))
            index += 1
        tree.append(stored[0])
        last_leaf, last_time = stored[0], entry_row[9]
        size = entry_row[1] + 1
        if size % CHECKPOINT_EVERY == 0 or size == n:
            note = sign_checkpoint(Checkpoint(ORIGIN, size, tree.root()), signer)
            checkpoints.append(
                (PROJECT, size, tree.root(), signer.name, signer.key_id, note, created)
            )
        if len(entries) == 20_000:
            writer.write(entries, hashes, checkpoints)
            progress(size)
            entries, hashes, checkpoints = [], [], []
    writer.write(entries, hashes, checkpoints)
    writer.finish(n, last_leaf, last_time, signer)
    progress(n)
    return tree.root()


_CHECKPOINT_COLUMNS = ("project", "size", "root", "key_name", "key_id", "note", "created_at")


class _SqliteWriter:
    def __init__(self, url: str) -> None:
        import sqlite3

        self.conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute("BEGIN")

    def _insert(self, table: str, cols: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" * len(cols))
        self.conn.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", rows)

    def write(self, entries: list[Any], hashes: list[Any], checkpoints: list[Any]) -> None:
        self._insert("entries", TABLES["entries"], entries)
        self._insert("tree_hashes", TABLES["tree_hashes"], hashes)
        self._insert("checkpoints", _CHECKPOINT_COLUMNS, checkpoints)

    def finish(self, n: int, last_leaf: bytes, last_time: str, signer: Signer) -> None:
        self.conn.execute(
            "INSERT INTO heads (project, size, last_leaf, last_recorded_at) VALUES (?, ?, ?, ?)",
            (PROJECT, n, last_leaf, last_time),
        )
        v = signer.verifier()
        self.conn.execute(
            "INSERT INTO verifier_keys (key_name, key_id, verifier_key, published_at)"
            " VALUES (?, ?, ?, ?)",
            (v.name, v.key_id, v.key_string(), format_time(datetime.now(UTC))),
        )
        self.conn.execute("COMMIT")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.execute("ANALYZE")
        self.conn.close()


class _PostgresWriter:
    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url)

    def _copy(self, table: str, cols: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        with (
            self.conn.cursor() as cur,
            cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy,
        ):
            for r in rows:
                copy.write_row(r)

    def write(self, entries: list[Any], hashes: list[Any], checkpoints: list[Any]) -> None:
        self._copy("entries", TABLES["entries"], entries)
        self._copy("tree_hashes", TABLES["tree_hashes"], hashes)
        self._copy("checkpoints", _CHECKPOINT_COLUMNS, checkpoints)
        self.conn.commit()

    def finish(self, n: int, last_leaf: bytes, last_time: str, signer: Signer) -> None:
        self.conn.execute(
            "INSERT INTO heads (project, size, last_leaf, last_recorded_at)"
            " VALUES (%s, %s, %s, %s)",
            (PROJECT, n, last_leaf, last_time),
        )
        v = signer.verifier()
        self.conn.execute(
            "INSERT INTO verifier_keys (key_name, key_id, verifier_key, published_at)"
            " VALUES (%s, %s, %s, %s)",
            (v.name, v.key_id, v.key_string(), format_time(datetime.now(UTC))),
        )
        self.conn.commit()
        self.conn.autocommit = True
        self.conn.execute("VACUUM ANALYZE entries")
        self.conn.execute("VACUUM ANALYZE tree_hashes")
        self.conn.close()


# --- measurements ---------------------------------------------------------------------


def raw_read_and_hash(url: str) -> tuple[int, float]:
    """Entries read and SHA-256 hashed, and seconds taken: one ordered scan, same driver."""
    start = time.perf_counter()
    count = _scan_sqlite(url) if url.startswith("sqlite") else _scan_postgres(url)
    return count, time.perf_counter() - start


def _scan_sqlite(url: str) -> int:
    import sqlite3

    sha = hashlib.sha256
    count = 0
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    cur = conn.execute("SELECT entry FROM entries WHERE project = ? ORDER BY seq", (PROJECT,))
    while rows := cur.fetchmany(5000):
        for (raw,) in rows:
            sha(b"\x00" + raw).digest()
        count += len(rows)
    conn.close()
    return count


def _scan_postgres(url: str) -> int:
    import psycopg

    sha = hashlib.sha256
    count = 0
    with psycopg.connect(url) as conn, conn.cursor(name="raw", binary=True) as cur:
        cur.itersize = 5000
        cur.execute("SELECT entry FROM entries WHERE project = %s ORDER BY seq", (PROJECT,))
        while rows := cur.fetchmany(5000):
            for (raw,) in rows:
                sha(b"\x00" + raw).digest()
            count += len(rows)
    return count


def proof_latencies(store: Store, n: int, samples: int) -> dict[str, list[float]]:
    rng = random.Random(11)
    out: dict[str, list[float]] = {"inclusion": [], "consistency": []}
    for _ in range(samples):
        index = rng.randrange(n)
        t = time.perf_counter()
        p = inclusion_proof(store, PROJECT, index, n)
        out["inclusion"].append((time.perf_counter() - t) * 1000)
        assert p.tree_size == n
        m = rng.randrange(1, n)
        t = time.perf_counter()
        c = consistency_proof(store, PROJECT, m, n)
        out["consistency"].append((time.perf_counter() - t) * 1000)
        assert c.new_size == n
    for _ in range(20):  # spot-check what was timed
        index = rng.randrange(n)
        inclusion_proof(store, PROJECT, index).verify()
        consistency_proof(store, PROJECT, rng.randrange(1, n)).verify()
    return out


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def measure(backend: str, url: str, n: int, samples: int) -> list[Row]:
    signer = generate_signer("bench.example")
    start = time.perf_counter()
    root = bulk_load(url, n, signer, lambda done: log(f"  {backend}: loaded {done:,} entries"))
    log(f"  {backend}: bulk load of {n:,} entries took {time.perf_counter() - start:.1f} s")
    if backend == "postgresql":
        pg_checkpoint()
    store = open_store(url)
    try:
        raw_read_and_hash(url)  # warm the cache: both timed scans then read from memory
        count, raw_seconds = raw_read_and_hash(url)
        assert count == n
        timings: dict[int, tuple[float, float]] = {}
        for workers in (1, WORKERS):
            start, cpu = time.perf_counter(), time.process_time()
            report = verify_log(store, PROJECT, verifiers=[signer.verifier()], workers=workers)
            timings[workers] = (time.perf_counter() - start, time.process_time() - cpu)
            assert report.ok, report.first_failure
            assert report.root == root and report.checkpoints == -(-n // CHECKPOINT_EVERY)
            log(
                f"  {backend}: verified {n:,} entries in {timings[workers][0]:.2f} s "
                f"({workers} process(es); this process used {timings[workers][1]:.2f} s CPU;"
                f" raw scan {raw_seconds:.2f} s; load average {os.getloadavg()[0]:.1f})"
            )
        latencies = proof_latencies(store, n, samples)
    finally:
        store.close()
    name = "SQLite" if backend == "sqlite" else "PostgreSQL"
    raw_rate = n / raw_seconds
    at = f"{n // 1000:,}k entries" if n < 1_000_000 else f"{n / 1e6:g}M entries"
    one, many = n / timings[1][0], n / timings[WORKERS][0]
    procs = f"{WORKERS} processes"
    rows = [
        row(f"verify, {name}, {at}, 1 process", one, "entries/s",
            peer="target", peer_value=VERIFY_TARGET, target=1.0),
        row(f"verify, {name}, {at}, {procs}", many, "entries/s",
            peer="target", peer_value=VERIFY_TARGET, target=1.0),
        row(f"verify vs raw read + SHA-256, {name}, 1 process", one, "entries/s",
            peer="raw scan + SHA-256", peer_value=raw_rate),
        row(f"verify, {name}, whole log, {at}, {procs}", timings[WORKERS][0], "s",
            peer="limit at this size", peer_value=FULL_LOG_LIMIT * n / FULL_LOG,
            target=1.0, lower_is_better=True),
        row(f"verify CPU time, {name}, 1 process", n / timings[1][1], "entries/CPU-s",
            peer="target", peer_value=VERIFY_TARGET, target=1.0),
    ]  # fmt: skip
    for kind in ("inclusion", "consistency"):
        values = latencies[kind]
        rows.append(
            row(f"{kind} proof, {name}, median, {at}", statistics.median(values), "ms",
                peer="limit", peer_value=PROOF_LIMIT_MS, target=1.0, lower_is_better=True)
        )  # fmt: skip
        rows.append(row(f"{kind} proof, {name}, p99, {at}", p99(values), "ms"))
    return rows


def main() -> None:
    parser = arguments(__doc__ or "")
    parser.add_argument("--entries", type=int, default=None, help="log size (default 1M)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--samples", type=int, default=None, help="proofs timed per kind")
    args = parser.parse_args()
    n = args.entries or (50_000 if args.quick else FULL_LOG)
    samples = args.samples or (300 if args.quick else 2000)
    rows: list[Row] = []
    for backend in args.backend or ["sqlite", "postgresql"]:
        log(f"{backend}: building a {n:,}-entry log")
        if backend == "sqlite":
            with throwaway_sqlite_url() as url:
                rows += measure(backend, url, n, samples)
        else:
            with throwaway_pg_database("bench_verify") as url:
                rows += measure(backend, url, n, samples)
    finish(
        args,
        rows,
        f"verification and proofs ({n:,} entries; load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs at the end)",
        entries=n,
    )


if __name__ == "__main__":
    main()
