"""Appending events: validation, idempotency, the chain link and the tree, atomically.

An append is one database transaction per batch. The CPU work that does not depend on
the log's head (shape checks, canonical event bytes, mask decoding against the
immutable image registrations) is done before the project's lock is taken; inside the
lock only the state rules, the chain link, the leaf and tree hashes and the writes
remain. The whole batch is written, or none of it.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ledger.canonical import canonical_bytes
from ledger.entry import entry_bytes, event_hash, format_time
from ledger.errors import Conflict, FieldError, InvalidInput, NotFound
from ledger.events import MaskCreated, ParsedEvent, parse_event
from ledger.masks import MaskInfo, validate_segmentation
from ledger.merkle import CompactRange, leaf_hash, stored_hash_index
from ledger.projector import Projector
from ledger.store.base import Head, Store

#: bounds of the read shortcuts a Ledger keeps (entries; each is dropped whole when full)
_CACHED_IMAGES = 200_000
_CACHED_EDGES = 10_000

PROJECT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def check_project_name(project: str, loc: str = "project") -> str:
    if not isinstance(project, str) or not PROJECT_PATTERN.match(project):
        raise InvalidInput.field(
            loc,
            "project names are 1-64 characters of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit",
        )
    return project


@dataclass(frozen=True)
class Appended:
    event_id: str
    seq: int
    #: True when the event was already in the log (an idempotent retry)
    duplicate: bool


@dataclass(frozen=True)
class AppendResult:
    project: str
    results: list[Appended]
    size: int
    root: bytes

    @property
    def appended(self) -> int:
        return sum(1 for r in self.results if not r.duplicate)


@dataclass
class _Prepared:
    parsed: ParsedEvent
    event_id: str
    stored_bytes: bytes
    hash: bytes
    mask: MaskInfo | None = None


class Ledger:
    """The core service: append and read one store's project logs."""

    def __init__(
        self,
        store: Store,
        *,
        max_batch: int = 1000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_append: Callable[[AppendResult], None] | None = None,
    ) -> None:
        self.store = store
        self.max_batch = max_batch
        self.clock = clock
        self.on_append = on_append
        # Shortcuts for reads of what cannot change once written: image rows (the
        # table is append-only) and the tree's right edge at a head this process wrote
        # (a head's size and last leaf hash fix every entry before it).
        self._image_rows: dict[tuple[str, str], dict[str, Any]] = {}
        self._edges: dict[str, tuple[int, bytes | None, CompactRange]] = {}

    # --- append -------------------------------------------------------------------
    def append(self, project: str, events: Sequence[Any], principal: str) -> AppendResult:
        """Append a batch of raw events (parsed JSON) atomically.

        Raises InvalidInput (shape or state rule broken, every field named with its
        ``events[i]`` position), Conflict (stale revision, reused event id, duplicate
        name) or NotFound (no such project). Nothing is written on any error.
        """
        check_project_name(project)
        if not isinstance(events, list | tuple) or not events:
            raise InvalidInput.field("events", "must be a non-empty list of events")
        if len(events) > self.max_batch:
            raise InvalidInput.field(
                "events", f"batch of {len(events)} events exceeds the limit of {self.max_batch}"
            )
        with _no_collection_pauses():
            prepared = self._prepare(events)
            images = self._check_masks_unlocked(project, prepared)
            result = self._append_locked(project, prepared, principal, images)
        if self.on_append is not None and result.appended:
            self.on_append(result)
        return result

    def _prepare(self, events: Sequence[Any]) -> list[_Prepared]:
        prepared: list[_Prepared] = []
        errors: list[FieldError] = []
        for i, raw in enumerate(events):
            try:
                parsed = parse_event(raw, loc=f"events[{i}]")
            except InvalidInput as e:
                errors.extend(e.errors)
                continue
            stored_bytes = canonical_bytes(parsed.stored)
            prepared.append(
                _Prepared(parsed, str(parsed.envelope.id), stored_bytes, event_hash(stored_bytes))
            )
        if errors:
            raise InvalidInput("invalid events", errors)
        seen: dict[str, bytes] = {}
        for i, p in enumerate(prepared):
            if p.event_id in seen and seen[p.event_id] != p.hash:
                raise Conflict(
                    f"event id {p.event_id} appears twice in the batch with different content",
                    [FieldError(f"events[{i}].id", "reused with different content")],
                )
            seen[p.event_id] = p.hash
        return prepared

    def _check_masks_unlocked(
        self, project: str, prepared: list[_Prepared]
    ) -> list[dict[str, Any]]:
        """Decode masks before the lock. Image registrations never change, so a mask
        checked against a stored image needs no re-check under the lock; masks on
        images registered in the same batch are checked by the projector. Returns the
        image rows read, which the locked part then need not read again."""
        image_ids = {
            p.parsed.payload.image_id for p in prepared if isinstance(p.parsed.payload, MaskCreated)
        }
        if not image_ids:
            return []
        cache = self._image_rows
        missing = sorted(i for i in image_ids if (project, i) not in cache)
        if missing:
            marks = ",".join("?" * len(missing))
            read = self.store.query(
                f"SELECT * FROM images WHERE project = ? AND image_id IN ({marks})",
                (project, *missing),
            )
            if len(cache) + len(read) > _CACHED_IMAGES:
                cache.clear()
            for image in read:
                cache[(project, image["image_id"])] = image
        rows = [r for i in image_ids if (r := cache.get((project, i))) is not None]
        sizes = {r["image_id"]: (int(r["height"]), int(r["width"])) for r in rows}
        for i, p in enumerate(prepared):
            payload = p.parsed.payload
            if isinstance(payload, MaskCreated) and payload.image_id in sizes:
                h, w = sizes[payload.image_id]
                p.mask = validate_segmentation(
                    payload.segmentation, h, w, f"events[{i}].payload.segmentation"
                )
        return rows

    def _append_locked(
        self,
        project: str,
        prepared: list[_Prepared],
        principal: str,
        images: Sequence[dict[str, Any]] = (),
    ) -> AppendResult:
        event_ids = [p.event_id for p in prepared]
        with self.store.append_txn(project, event_ids) as txn:
            head = txn.head()
            existing = txn.existing_events(event_ids)
            projector = Projector(project, txn, head.size)
            projector.remember("images", images)
            projector.prefetch(p.parsed for p in prepared)
            edge = self._edges.get(project)
            if edge is not None and edge[:2] == (head.size, head.last_leaf):
                tree = edge[2].copy()
            else:
                tree = CompactRange.from_reader(head.size, txn.read_hashes)

            now = format_time(self.clock())
            if head.last_recorded_at is not None and now < head.last_recorded_at:
                now = head.last_recorded_at  # recorded_at never goes backwards in a log
            prev = head.last_leaf
            seq = head.size
            results: list[Appended] = []
            new_ids: dict[str, int] = {}
            for i, p in enumerate(prepared):
                loc = f"events[{i}]."
                if p.event_id in existing:
                    old = existing[p.event_id]
                    if old.event_hash != p.hash:
                        raise Conflict(
                            f"event id {p.event_id} was already used for different content "
                            f"(entry {old.seq})",
                            [FieldError(f"{loc}id", "reused with different content")],
                        )
                    results.append(Appended(p.event_id, old.seq, True))
                    continue
                if p.event_id in new_ids:  # same event twice in one batch
                    results.append(Appended(p.event_id, new_ids[p.event_id], True))
                    continue
                projector.apply(seq, p.parsed, loc, p.mask)
                data = entry_bytes(
                    event=p.stored_bytes,
                    prev=prev,
                    principal=principal,
                    project=project,
                    recorded_at=now,
                    seq=seq,
                )
                leaf = leaf_hash(data)
                for j, h in enumerate(tree.append(leaf)):
                    projector.batch.add("tree_hashes", (project, stored_hash_index(0, seq) + j, h))
                projector.batch.add("entries", _entry_row(project, seq, p, now, data, projector))
                results.append(Appended(p.event_id, seq, False))
                new_ids[p.event_id] = seq
                prev = leaf
                seq += 1
            if seq != head.size:
                txn.write(projector.batch, Head(project, seq, prev, now))
            result = AppendResult(project, results, seq, tree.root())
        # Committed: the next append at this head need not read the right edge.
        if len(self._edges) >= _CACHED_EDGES and project not in self._edges:
            self._edges.clear()
        self._edges[project] = (seq, prev, tree)
        return result

    # --- small reads --------------------------------------------------------------
    def head(self, project: str) -> Head:
        head = self.store.head(check_project_name(project))
        if head is None or head.size == 0:
            raise NotFound(f"project {project} does not exist")
        return head


@contextmanager
def _no_collection_pauses() -> Iterator[None]:
    """Hold off the cyclic garbage collector for one append. A batch keeps some twenty
    objects per event alive until it ends; with them growing the heap, the collector
    runs full collections over the whole process mid-batch (about a quarter of the
    append's CPU time for 1000 events). What the batch leaves behind is freed by
    reference counting as it ends. The collector is enabled again afterwards unless
    it was off already (another thread's append, or the application's choice)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _entry_row(
    project: str, seq: int, p: _Prepared, now: str, data: bytes, projector: Projector
) -> tuple[Any, ...]:
    env, payload = p.parsed.envelope, p.parsed.payload
    instance_id = getattr(payload, "instance_id", None)
    image_id = getattr(payload, "image_id", None)
    if image_id is None and instance_id is not None:
        inst = projector._cache["instances"].get(instance_id)
        image_id = inst["image_id"] if inst else None
    guideline = env.guideline.key() if env.guideline else None
    return (
        project, seq, p.event_id, p.hash, env.type, env.actor, instance_id, image_id,
        guideline, now, data,
    )  # fmt: skip
