"""Helpers every benchmark shares: timing, peak memory, result rows, the table, --json.

A benchmark builds a list of result rows, one per figure::

    {"name": "append, PostgreSQL, 1000-event batches", "value": 41234.5,
     "unit": "events/s", "peer": "eventsourcing", "peer_value": 13012.0,
     "ratio": 3.17, "target": 3.0}

``peer`` names what the figure is compared with (another library, the raw database
limit), ``peer_value`` is that comparison's figure in the same unit, and ``ratio`` says
how many times better this figure is: ``value / peer_value`` for rates, and
``peer_value / value`` for rows where lower is better (times, sizes). ``target`` is the
ratio the figure has to reach. The last three are ``None`` for a row without a peer.

A script calls :func:`arguments` for the standard ``--quick`` and ``--json FILE`` flags
and :func:`finish` with its rows to print the table and write the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeAlias, TypeVar
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

Row: TypeAlias = dict[str, Any]
ROW_KEYS = ("name", "value", "unit", "peer", "peer_value", "ratio", "target")

#: the PostgreSQL server benchmarks create their throwaway databases on
PG_ADMIN_URL = os.environ.get(
    "LEDGER_BENCH_PG_URL",
    os.environ.get("LEDGER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
)

_T = TypeVar("_T")


# --- result rows --------------------------------------------------------------------


def row(
    name: str,
    value: float,
    unit: str,
    *,
    peer: str | None = None,
    peer_value: float | None = None,
    target: float | None = None,
    lower_is_better: bool = False,
) -> Row:
    """One result row; ``ratio`` is computed so that above 1 always means better."""
    ratio: float | None = None
    if peer_value is not None and peer_value > 0 and value > 0:
        ratio = peer_value / value if lower_is_better else value / peer_value
    return {
        "name": name,
        "value": float(value),
        "unit": unit,
        "peer": peer,
        "peer_value": None if peer_value is None else float(peer_value),
        "ratio": ratio,
        "target": target,
    }


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def meets_target(r: Row) -> bool | None:
    """True or False for a row with a numeric target, None for a row without one (or
    with a target given as text)."""
    target, ratio = r.get("target"), r.get("ratio")
    if not isinstance(target, int | float):
        return None
    return isinstance(ratio, int | float) and ratio >= target


# --- timing and memory ----------------------------------------------------------------


def elapsed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    """The shortest of ``repeats`` timed calls, in seconds."""
    return min(elapsed(fn) for _ in range(max(1, repeats)))


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else math.inf


def peak_rss_mib() -> float:
    """The peak resident set size of this process so far, in MiB (Linux: ru_maxrss in KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def traced_peak(fn: Callable[[], _T]) -> tuple[_T, int]:
    """Call ``fn`` under tracemalloc; return its result and the peak bytes allocated by
    Python during the call (slows the call down: time it separately)."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return result, max(0, peak)


# --- throwaway databases ----------------------------------------------------------------


def pg_url(dbname: str, admin_url: str = PG_ADMIN_URL) -> str:
    """The admin URL with another database name."""
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


@contextlib.contextmanager
def throwaway_pg_database(prefix: str = "bench", admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """Create an empty PostgreSQL database; yield its URL; drop it afterwards."""
    import psycopg

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg_url(name, admin_url)
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_checkpoint(admin_url: str = PG_ADMIN_URL) -> None:
    """Flush dirty buffers now, so a timed phase does not pay for the previous one's
    writes (needs a superuser or pg_checkpoint; skipped quietly otherwise)."""
    import psycopg

    with (
        contextlib.suppress(psycopg.Error),
        psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn,
    ):
        conn.execute("CHECKPOINT")


@contextlib.contextmanager
def throwaway_sqlite_url(name: str = "ledger.db") -> Iterator[str]:
    """A ``sqlite:///`` URL in a fresh temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as folder:
        yield f"sqlite:///{Path(folder) / name}"


# --- output -----------------------------------------------------------------------------


def _number(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, int | float):
        return str(value)
    if math.isinf(value):
        return "inf"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}" if magnitude >= 0.01 or value == 0 else f"{value:.2e}"


def _ratio(value: object) -> str:
    if value is None:
        return ""
    return f"{value:.2f}x" if _is_number(value) else str(value)


def _target(value: object) -> str:
    if value is None:
        return ""
    if _is_number(value):
        return f">={value:g}x"
    text = str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def format_table(rows: Sequence[Row], title: str | None = None) -> str:
    """An aligned, plain-text table of result rows (with a first "bench" column when
    the rows carry a ``bench`` key, as in the combined table of bench/run)."""
    grouped = any("bench" in r for r in rows)
    header: tuple[str, ...] = (
        "figure",
        "value",
        "unit",
        "peer",
        "peer value",
        "ratio",
        "target",
        "",
    )
    right = {1, 4, 5, 6}
    if grouped:
        header = ("bench", *header)
        right = {i + 1 for i in right}
    cells: list[tuple[str, ...]] = []
    for r in rows:
        ok = meets_target(r)
        cell = (
            str(r["name"]),
            _number(r["value"]),
            str(r["unit"]),
            r.get("peer") or "",
            _number(r.get("peer_value")),
            _ratio(r.get("ratio")),
            _target(r.get("target")),
            "" if ok is None else ("ok" if ok else "MISSED"),
        )
        cells.append((str(r.get("bench", "")), *cell) if grouped else cell)
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(header)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    out = [title] if title else []
    out.append(line(header))
    out.append(line(["-" * w for w in widths]))
    out.extend(line(c) for c in cells)
    return "\n".join(out)


def print_table(rows: Sequence[Row], title: str | None = None) -> None:
    print(format_table(rows, title), flush=True)


def write_json(path: str | Path, rows: Sequence[Row], **meta: Any) -> None:
    """Write ``{"rows": [...], **meta}`` to ``path``."""
    for r in rows:
        missing = [k for k in ROW_KEYS if k not in r]
        if missing:
            raise ValueError(f"result row {r.get('name')!r} lacks {', '.join(missing)}")
    document = {"rows": [{k: r[k] for k in ROW_KEYS} for r in rows], **meta}
    Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def read_json(path: str | Path) -> list[Row]:
    """The rows of a --json file: ``{"rows": [...]}`` as written here, or a bare list;
    keys a row lacks are filled with None."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    rows = document["rows"] if isinstance(document, dict) else document
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a list of result rows")
    return [{k: r.get(k) for k in ROW_KEYS} | r for r in rows if isinstance(r, dict)]


def arguments(description: str) -> argparse.ArgumentParser:
    """A parser with the flags every benchmark takes; add your own, then parse."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--json", metavar="FILE", help="also write the result rows here")
    return parser


def finish(args: argparse.Namespace, rows: Sequence[Row], title: str, **meta: Any) -> None:
    """Print the table and, with --json, write the rows."""
    print_table(rows, title)
    if getattr(args, "json", None):
        write_json(args.json, rows, benchmark=title, quick=bool(args.quick), **meta)


def log(message: str) -> None:
    """Progress on stderr, so that stdout stays the table."""
    print(message, file=sys.stderr, flush=True)
