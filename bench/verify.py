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
  latest signed checkpoint (the whole log), as a client asks, against the 2 ms limit,
  and beside the ``pymerkle`` library generating proofs for the same requests over the
  same entry bytes (see "The proof peer" below).

The log is written by a bulk loader, NOT by the validating append path (which would
take far longer than the figures measured here): it writes the same rows an append
writes, valid entries (RFC 8785 bytes of real ``mask.created`` events from
``bench/ingest.make_workload``, with fresh ids), the hash chain, every stored tree
hash, the head, and a signed checkpoint every 1,000 entries (the default policy),
with COPY on PostgreSQL and one transaction on SQLite. The figures are about reading
and checking, which is the same whichever way the rows were written. ``--quick`` uses
50,000 entries.

The proof peer: ``pymerkle`` (7.x) ``SqliteTree``, a Merkle tree persisted in a SQLite
file like the ledger's stored tree hashes. It is built once per run with its bulk path
(``append_entries``) from the entry bytes of the first backend's log, read back in
sequence order, so its leaves are the ledger's leaves. pymerkle's default hashing
(SHA-256 with the 0x00 leaf and 0x01 node prefixes, the left subtree the largest power
of two below the size) is the RFC 9162 tree, so its root at the peer's size must equal
the ledger's, and its inclusion paths the ledger's audit paths: both are checked.
pymerkle stores only leaf hashes; it computes interior nodes when a proof asks for them
and keeps perfect subtrees of 128 leaves or more in an in-memory cache (its default
settings are kept). Each backend's run opens the file afresh (an empty cache), computes
the root and answers one untimed round of other random requests, as a running service
would have, then the peer and the ledger take turns on the timed requests (the same
(index, size) and (size1, size2) pairs). A ledger proof also returns the roots and the
leaf hash; a pymerkle proof is the path alone. If the peer's build would take longer
than 60 s (``PEER_BUILD_BUDGET``) it is built at a smaller size, the requests scaled to
it, and the peer's name gives its size. ``pymerkle InmemoryTree`` (nodes as Python
objects, every entry kept in memory; at most 100,000 leaves, ``INMEMORY_LEAVES``) is
shown as context: it is what pymerkle does without storage.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Generator, Iterator
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
from ledger.proofs import consistency_proof, inclusion_proof, tree_head
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
#: seconds the pymerkle peer's build may take; beyond it the peer is built smaller
PEER_BUILD_BUDGET = 60.0
#: largest pymerkle InmemoryTree built (it keeps every entry in memory)
INMEMORY_LEAVES = 100_000
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


def proof_requests(n: int, samples: int, seed: int = 11) -> list[tuple[int, int]]:
    """Random (index, size1) pairs: an inclusion proof of entry ``index`` and a
    consistency proof from ``size1``, both at size n."""
    rng = random.Random(seed)
    return [(rng.randrange(n), rng.randrange(1, n)) for _ in range(samples)]


# --- the proof peer: pymerkle (see the module docstring) -----------------------------------


def entry_stream(url: str) -> Generator[bytes, None, None]:
    """The log's entry bytes in sequence order."""
    return _sqlite_entries(url) if url.startswith("sqlite") else _postgres_entries(url)


def _sqlite_entries(url: str) -> Generator[bytes, None, None]:
    import sqlite3

    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        cur = conn.execute("SELECT entry FROM entries WHERE project = ? ORDER BY seq", (PROJECT,))
        while rows := cur.fetchmany(5000):
            yield from (raw for (raw,) in rows)
    finally:
        conn.close()


def _postgres_entries(url: str) -> Generator[bytes, None, None]:
    import psycopg

    with psycopg.connect(url) as conn, conn.cursor(name="peer", binary=True) as cur:
        cur.itersize = 5000
        cur.execute("SELECT entry FROM entries WHERE project = %s ORDER BY seq", (PROJECT,))
        while rows := cur.fetchmany(5000):
            yield from (bytes(raw) for (raw,) in rows)


def _leaves(size: int) -> str:
    return f"{size // 1000:,}k leaves" if size < 1_000_000 else f"{size / 1e6:g}M leaves"


class PymerklePeer:
    """pymerkle trees over the entry bytes of the benchmark's log, built once per run."""

    CHUNK = 50_000

    def __init__(self, folder: Path) -> None:
        self.path = folder / "pymerkle.db"
        self.size = 0  # leaves of the SqliteTree
        self.memory: Any = None  # the InmemoryTree, of min(size, INMEMORY_LEAVES) leaves
        self.memory_size = 0

    def build(self, url: str, n: int) -> None:
        """Fill the SqliteTree from the log at ``url`` (n entries) with pymerkle's bulk
        append, within PEER_BUILD_BUDGET seconds; then the InmemoryTree."""
        from pymerkle import InmemoryTree, SqliteTree

        if self.size:
            return
        start = time.perf_counter()
        entries = entry_stream(url)
        target = n
        with SqliteTree(str(self.path)) as tree:
            size = 0
            while size < target:
                size = tree.append_entries(
                    itertools.islice(entries, min(self.CHUNK, target - size))
                )
                spent = time.perf_counter() - start
                if target == n and size < n and spent * n / size > PEER_BUILD_BUDGET:
                    within = int(PEER_BUILD_BUDGET * size / spent)
                    target = max(size, within // self.CHUNK * self.CHUNK)
            self.size = size
        entries.close()
        log(
            f"  peer: pymerkle SqliteTree of {self.size:,} leaves built in "
            f"{time.perf_counter() - start:.1f} s"
        )
        start = time.perf_counter()
        self.memory_size = min(self.size, INMEMORY_LEAVES)
        stream = entry_stream(url)
        self.memory = InmemoryTree.init_from_entries(itertools.islice(stream, self.memory_size))
        stream.close()
        log(
            f"  peer: pymerkle InmemoryTree of {self.memory_size:,} leaves built in "
            f"{time.perf_counter() - start:.1f} s"
        )

    def label(self, backend: str, size: int, n: int) -> str:
        name = f"pymerkle {backend}"
        return name if size == n else f"{name}, {_leaves(size)}"

    def trees(self, store: Store, n: int, samples: int) -> dict[str, tuple[Any, int]]:
        """{peer label: (tree, size)}: a freshly opened SqliteTree (an empty cache) and
        the InmemoryTree, each checked against the ledger's root at its size and warmed
        with one round of requests other than the timed ones."""
        from pymerkle import SqliteTree

        trees = {
            self.label("SqliteTree", self.size, n): (SqliteTree(str(self.path)), self.size),
            self.label("InmemoryTree", self.memory_size, n): (self.memory, self.memory_size),
        }
        for tree, size in trees.values():
            assert tree.get_root(size) == tree_head(store, PROJECT, size).root
            for index, m in proof_requests(size, samples, seed=29):
                tree.prove_inclusion(index + 1, size)
                tree.prove_consistency(m, size)
        return trees


def proof_latencies(
    store: Store, n: int, samples: int, peers: dict[str, tuple[Any, int]]
) -> dict[str, dict[str, list[float]]]:
    """Milliseconds per proof, {kind: {who: [...]}} with who "ledger" or a peer label;
    the ledger and each peer take turns on every request."""
    out: dict[str, dict[str, list[float]]] = {
        kind: {who: [] for who in ("ledger", *peers)} for kind in ("inclusion", "consistency")
    }
    inclusion, consistency = out["inclusion"], out["consistency"]
    clock = time.perf_counter
    requests = proof_requests(n, samples)
    for index, m in requests:
        t = clock()
        p = inclusion_proof(store, PROJECT, index, n)
        inclusion["ledger"].append((clock() - t) * 1000)
        assert p.tree_size == n
        for who, (tree, size) in peers.items():
            i = index * size // n + 1  # pymerkle counts leaves from 1
            t = clock()
            tree.prove_inclusion(i, size)
            inclusion[who].append((clock() - t) * 1000)
        t = clock()
        c = consistency_proof(store, PROJECT, m, n)
        consistency["ledger"].append((clock() - t) * 1000)
        assert c.new_size == n
        for who, (tree, size) in peers.items():
            first = max(1, m * size // n)
            t = clock()
            tree.prove_consistency(first, size)
            consistency[who].append((clock() - t) * 1000)
    _spot_check(store, n, peers)
    return out


def _spot_check(store: Store, n: int, peers: dict[str, tuple[Any, int]]) -> None:
    """Verify proofs like the timed ones, and the peers' against the ledger's."""
    from pymerkle import verify_consistency

    for index, m in proof_requests(n, 20, seed=12):
        inclusion_proof(store, PROJECT, index).verify()
        consistency_proof(store, PROJECT, m).verify()
        for tree, size in peers.values():
            i, first = index * size // n, max(1, m * size // n)
            ours = inclusion_proof(store, PROJECT, i, size)
            assert tuple(tree.prove_inclusion(i + 1, size).path[1:]) == ours.hashes
            c = consistency_proof(store, PROJECT, first, size)
            verify_consistency(c.old_root, c.new_root, tree.prove_consistency(first, size))


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def measure(backend: str, url: str, n: int, samples: int, peer: PymerklePeer) -> list[Row]:
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
        peer.build(url, n)
        trees = peer.trees(store, n, samples)
        try:
            latencies = proof_latencies(store, n, samples, trees)
        finally:
            trees[peer.label("SqliteTree", peer.size, n)][0].close()
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
    sqlite_peer, memory_peer = list(trees)
    for kind in ("inclusion", "consistency"):
        values = latencies[kind]["ledger"]
        median = statistics.median(values)
        peer_sqlite = latencies[kind][sqlite_peer]
        rows += [
            row(f"{kind} proof, {name}, median, {at}", median, "ms",
                peer="limit", peer_value=PROOF_LIMIT_MS, target=1.0, lower_is_better=True),
            row(f"{kind} proof, {name}, median vs pymerkle, {at}", median, "ms",
                peer=sqlite_peer, peer_value=statistics.median(peer_sqlite),
                lower_is_better=True),
            row(f"{kind} proof, {name}, p99 vs pymerkle, {at}", p99(values), "ms",
                peer=sqlite_peer, peer_value=p99(peer_sqlite), lower_is_better=True),
            row(f"{kind} proof, {name}, median vs in-memory tree, {at}", median, "ms",
                peer=memory_peer, peer_value=statistics.median(latencies[kind][memory_peer]),
                lower_is_better=True),
        ]  # fmt: skip
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
    with tempfile.TemporaryDirectory(prefix="ledger-bench-peer-") as folder:
        peer = PymerklePeer(Path(folder))
        for backend in args.backend or ["sqlite", "postgresql"]:
            log(f"{backend}: building a {n:,}-entry log")
            if backend == "sqlite":
                with throwaway_sqlite_url() as url:
                    rows += measure(backend, url, n, samples, peer)
            else:
                with throwaway_pg_database("bench_verify") as url:
                    rows += measure(backend, url, n, samples, peer)
    finish(
        args,
        rows,
        f"verification and proofs ({n:,} entries; load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs at the end)",
        entries=n,
    )


if __name__ == "__main__":
    main()
