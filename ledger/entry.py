"""The entry: a client's event plus what the server adds, as RFC 8785 bytes.

An entry is the JCS canonical form of::

    {"event": <stored event>, "prev": <hex leaf hash of entry seq-1, or null>,
     "principal": <who submitted it>, "project": <project>,
     "recorded_at": "YYYY-MM-DDTHH:MM:SS.ffffffZ", "seq": <n>, "v": 1}

The keys above are already in JCS order (UTF-16 code unit order, here plain ASCII), so
the entry is assembled by splicing the canonical event bytes, computed before the
append lock is taken, between canonical fragments; ``tests/test_entry.py`` checks that
the splice equals ``canonical_bytes`` of the whole object. The bytes are stored as they
are and never re-serialized: every hash is over them.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ledger.canonical import canonical_bytes

ENTRY_VERSION = 1
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_time(moment: datetime) -> str:
    """Server time as fixed-width UTC text, so that text order is time order."""
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


def event_hash(event_bytes: bytes) -> bytes:
    """What an idempotent retry is compared by: SHA-256 of the canonical stored event."""
    return hashlib.sha256(event_bytes).digest()


def entry_bytes(
    *,
    event: bytes,
    prev: bytes | None,
    principal: str,
    project: str,
    recorded_at: str,
    seq: int,
) -> bytes:
    prev_part = b"null" if prev is None else b'"' + prev.hex().encode() + b'"'
    return b"".join(
        (
            b'{"event":',
            event,
            b',"prev":',
            prev_part,
            b',"principal":',
            _canonical_string(principal) if type(principal) is str else canonical_bytes(principal),
            b',"project":',
            _canonical_string(project) if type(project) is str else canonical_bytes(project),
            b',"recorded_at":"',
            recorded_at.encode("ascii"),
            b'","seq":',
            str(seq).encode("ascii"),
            _VERSION_PART,
        )
    )


_VERSION_PART = b',"v":' + str(ENTRY_VERSION).encode("ascii") + b"}"


@functools.lru_cache(maxsize=1024)
def _canonical_string(text: str) -> bytes:
    # A batch repeats the same principal and project in every entry.
    return canonical_bytes(text)


@dataclass(frozen=True)
class Entry:
    seq: int
    project: str
    principal: str
    recorded_at: str
    prev: bytes | None
    event: dict[str, Any]
    raw: bytes


class MalformedEntry(ValueError):
    pass


def parse_entry(raw: bytes) -> Entry:
    """Decode stored entry bytes; raise MalformedEntry naming what is wrong."""
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise MalformedEntry(f"entry is not valid JSON: {e}") from e
    if not isinstance(obj, dict):
        raise MalformedEntry("entry is not a JSON object")
    expected = {"event", "prev", "principal", "project", "recorded_at", "seq", "v"}
    if set(obj) != expected:
        raise MalformedEntry(f"entry has fields {sorted(obj)}, expected {sorted(expected)}")
    if obj["v"] != ENTRY_VERSION:
        raise MalformedEntry(f"entry format version {obj['v']!r} is not {ENTRY_VERSION}")
    prev = obj["prev"]
    try:
        prev_bytes = None if prev is None else bytes.fromhex(prev)
    except (TypeError, ValueError) as e:
        raise MalformedEntry(f"prev is not a hex hash: {prev!r}") from e
    if not isinstance(obj["seq"], int) or not isinstance(obj["event"], dict):
        raise MalformedEntry("seq must be an integer and event an object")
    return Entry(
        seq=obj["seq"],
        project=str(obj["project"]),
        principal=str(obj["principal"]),
        recorded_at=str(obj["recorded_at"]),
        prev=prev_bytes,
        event=obj["event"],
        raw=raw,
    )
