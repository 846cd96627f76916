"""Dataset releases: a ``release.created`` event that pins a COCO export by its hash.

* :func:`create_release` computes the export of the state at a tree size (from the
  projections), hashes it and appends ``release.created`` with the name, the tree
  size, the selection policy and the SHA-256 (see ``ledger.coco`` for the byte format
  and the hash convention). Names are unique per project.
* :func:`export_release` streams the same bytes again, at any later time.
* :func:`verify_release` rebuilds the export from the log alone: it reads the release
  event and every entry before its tree size as stored bytes, checks their sequence
  numbers and chain links, recomputes the Merkle root from their leaf hashes, replays
  the events into the state they describe and writes the export from that state. The
  rebuilt hash must equal the one the release event recorded.

The replay trusts what the append path already checked (every stored event was
validated against the state before it was written) and keeps only what an export
needs: images, categories and each instance's current revision and review. Anything
that does not fit (an edit of an unknown instance, a malformed payload) makes the
verification fail, naming the entry. Its memory grows with the number of instances
(one small record each, plus the current mask), not with the log.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ledger.asof import CategoryRecord, ImageRecord, log_size, resolve_size
from ledger.coco import (
    ExportHeader,
    annotation_bytes,
    annotation_of,
    coco_category,
    coco_image,
    export_state,
    mask_stats_many,
    policy_json,
    write_coco,
    write_to,
)
from ledger.entry import MalformedEntry, parse_entry
from ledger.errors import Conflict, InvalidInput, LedgerError, NotFound, VerificationFailed
from ledger.events import ReleasePolicy, parse_event
from ledger.merkle import CompactRange, leaf_hash, stored_hash_index, tree_hash
from ledger.service import Ledger, check_project_name
from ledger.store.base import Store

Progress = Callable[[int, int], None]
_MEASURE_BATCH = 4000

__all__ = [
    "Release",
    "ReleaseCheck",
    "ReplayedState",
    "annotation_of",
    "create_release",
    "export_release",
    "get_release",
    "list_releases",
    "parse_policy",
    "rebuild_export",
    "replay_log",
    "verify_release",
]


@dataclass(frozen=True)
class Release:
    project: str
    name: str
    #: sequence number of the release.created entry
    seq: int
    tree_size: int
    policy: ReleasePolicy
    sha256: str


def parse_policy(selection: str = "accepted", categories: list[int] | None = None) -> ReleasePolicy:
    """A release policy from CLI or API input, refusing what the event would refuse."""
    raw: dict[str, Any] = {"selection": selection}
    if categories:
        raw["categories"] = list(categories)
    event = parse_event(
        {
            "id": str(uuid.uuid4()),
            "type": "release.created",
            "actor": "check",
            "client_time": "2000-01-01T00:00:00Z",
            "payload": {"name": "check", "tree_size": 1, "policy": raw, "sha256": "0" * 64},
        }
    ).payload
    policy: ReleasePolicy = event.policy  # type: ignore[attr-defined]
    return policy


def _release(project: str, row: dict[str, Any]) -> Release:
    return Release(
        project=project,
        name=row["name"],
        seq=int(row["seq"]),
        tree_size=int(row["tree_size"]),
        policy=ReleasePolicy.model_validate(json.loads(row["policy"])),
        sha256=row["sha256"],
    )


def list_releases(store: Store, project: str) -> list[Release]:
    """Every release of a project, oldest first."""
    log_size(store, project)
    rows = store.query(
        "SELECT name, seq, tree_size, policy, sha256 FROM releases WHERE project = ? ORDER BY seq",
        (project,),
    )
    return [_release(project, r) for r in rows]


def get_release(store: Store, project: str, name: str) -> Release:
    log_size(store, project)
    rows = store.query(
        "SELECT name, seq, tree_size, policy, sha256 FROM releases WHERE project = ? AND name = ?",
        (project, name),
    )
    if not rows:
        raise NotFound(f"release {name!r} does not exist in {project}")
    return _release(project, rows[0])


def create_release(
    ledger: Ledger,
    project: str,
    name: str,
    *,
    actor: str,
    principal: str,
    policy: ReleasePolicy | None = None,
    at: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Release:
    """Export the state at tree size ``at`` (default: the whole log), hash it and append
    the ``release.created`` event. Conflict if the name is taken."""
    store = ledger.store
    check_project_name(project)
    chosen = policy if policy is not None else ReleasePolicy()
    # Check the event's shape before the (possibly long) export.
    event = _release_event(name, 1, chosen, "0" * 64, actor)
    parse_event(event)
    size = resolve_size(store, project, at)
    try:
        existing = get_release(store, project, name)
    except NotFound:
        pass
    else:
        raise Conflict(
            f"release {name!r} already exists in {project} (entry {existing.seq}, "
            f"tree size {existing.tree_size})"
        )
    written = write_to(export_state(store, project, size, chosen, name, progress))
    event = _release_event(name, size, chosen, written.sha256, actor)
    result = ledger.append(project, [event], principal)
    return Release(project, name, result.results[0].seq, size, chosen, written.sha256)


def _release_event(
    name: str, size: int, policy: ReleasePolicy, sha256: str, actor: str
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": "release.created",
        "actor": actor,
        "client_time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "payload": {
            "name": name,
            "tree_size": size,
            "policy": policy_json(policy),
            "sha256": sha256,
        },
    }


def export_release(
    store: Store, project: str, name: str, progress: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    """The release's export bytes, from the projections. The caller checks the hash
    (``write_to`` returns it) against ``get_release(...).sha256``."""
    release = get_release(store, project, name)
    return export_state(store, project, release.tree_size, release.policy, name, progress)


# --- rebuilding from the log alone -----------------------------------------------------


class _Instance:
    """What the replay keeps of one instance: its current revision and review."""

    __slots__ = (
        "annotation_id", "category_id", "deleted", "image_id", "iscrowd", "review",
        "revision", "segmentation",
    )  # fmt: skip

    def __init__(
        self, annotation_id: int, image_id: str, category_id: int, iscrowd: bool, seg: Any
    ) -> None:
        self.annotation_id = annotation_id
        self.image_id = image_id
        self.category_id = category_id
        self.iscrowd = iscrowd
        self.segmentation = seg
        self.revision = 1
        self.deleted = False
        self.review: str | None = None


@dataclass
class ReplayedState:
    """A project's state rebuilt from entry bytes, with the root of those entries."""

    project: str
    tree_size: int = 0
    root_hash: bytes = b""
    last_recorded_at: str = ""
    images: dict[str, ImageRecord] = field(default_factory=dict)
    categories: dict[int, CategoryRecord] = field(default_factory=dict)
    #: in creation order, which is annotation-id order
    instances: dict[str, _Instance] = field(default_factory=dict)


def _fail(seq: int, message: str) -> VerificationFailed:
    return VerificationFailed(f"entry {seq}: {message}")


def _apply(state: ReplayedState, seq: int, event: dict[str, Any]) -> None:
    kind = event["type"]
    p = event["payload"]
    if kind == "image.registered":
        state.images[p["image_id"]] = ImageRecord(
            image_id=p["image_id"],
            seq=seq,
            width=int(p["width"]),
            height=int(p["height"]),
            file_name=p["file_name"],
            sha256=p.get("sha256"),
            sequence_id=p.get("sequence_id"),
            frame_index=p.get("frame_index"),
        )
    elif kind == "category.defined":
        cid = int(p["category_id"])
        state.categories[cid] = CategoryRecord(cid, p["name"], p.get("supercategory"), seq)
    elif kind == "mask.created":
        if p["instance_id"] in state.instances:
            raise _fail(seq, f"instance {p['instance_id']!r} is created a second time")
        state.instances[p["instance_id"]] = _Instance(
            seq, p["image_id"], int(p["category_id"]), bool(p.get("iscrowd", False)),
            p["segmentation"],
        )  # fmt: skip
    elif kind in ("mask.edited", "mask.deleted", "review.decided"):
        inst = state.instances.get(p["instance_id"])
        if inst is None or inst.deleted or inst.revision != p["revision"]:
            raise _fail(
                seq, f"{kind} names revision {p['revision']} of instance {p['instance_id']!r}, "
                "which is not its current revision"
            )  # fmt: skip
        if kind == "review.decided":
            inst.review = p["decision"]
            return
        inst.revision += 1
        inst.review = None
        if kind == "mask.deleted":
            inst.deleted = True
            return
        if "segmentation" in p:
            inst.segmentation = p["segmentation"]
        if "category_id" in p:
            inst.category_id = int(p["category_id"])
        if "iscrowd" in p:
            inst.iscrowd = bool(p["iscrowd"])


_ENTRY_KEYS = frozenset({"event", "prev", "principal", "project", "recorded_at", "seq", "v"})


def _entry(seq: int, raw: bytes) -> dict[str, Any]:
    """The fields of a stored entry (what ``parse_entry`` checks, without building an
    Entry: the replay reads hundreds of thousands)."""
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise _fail(seq, f"entry is not valid JSON: {e}") from e
    if not isinstance(obj, dict) or obj.keys() != _ENTRY_KEYS or obj["v"] != 1:
        raise _fail(seq, "is not an entry of format version 1")
    if not isinstance(obj["event"], dict):
        raise _fail(seq, "entry event is not an object")
    return obj


def replay_log(
    store: Store, project: str, size: int, progress: Progress | None = None
) -> ReplayedState:
    """Replay entries 0 .. size-1 from their stored bytes; check seq and chain links and
    compute the Merkle root of those entries on the way."""
    state = ReplayedState(project)
    tree = CompactRange()
    prev_text: str | None = None
    for seq, raw in store.iter_entries(project, 0, size):
        if seq != tree.size:
            raise _fail(tree.size, f"is missing (the next stored entry is {seq})")
        entry = _entry(seq, raw)
        if entry["seq"] != seq or entry["project"] != project:
            raise _fail(seq, f"says it is entry {entry['seq']!r} of {entry['project']!r}")
        if entry["prev"] != prev_text:
            raise _fail(seq, "does not link to the leaf hash of the entry before it")
        leaf = leaf_hash(raw)
        prev_text = leaf.hex()
        tree.append(leaf)
        state.last_recorded_at = str(entry["recorded_at"])
        try:
            _apply(state, seq, entry["event"])
        except LedgerError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise _fail(seq, f"event cannot be replayed ({type(e).__name__}: {e})") from e
        if progress is not None and seq % 5000 == 0:
            progress(seq + 1, size)
    if tree.size != size:
        raise _fail(tree.size, f"is missing (the log ends at {tree.size}, expected {size})")
    if progress is not None:
        progress(size, size)
    state.tree_size = size
    state.root_hash = tree.root()
    return state


def export_of_state(
    state: ReplayedState, policy: ReleasePolicy, release: str | None = None
) -> Iterator[bytes]:
    """The COCO export of a replayed state: the same bytes as ``export_state`` gives
    from the projections for the same tree size."""
    header = ExportHeader(
        state.project, state.tree_size, state.root_hash, state.last_recorded_at, policy, release
    )
    wanted = None if policy.categories is None else set(policy.categories)

    def chosen() -> Iterator[tuple[str, _Instance, ImageRecord]]:
        for instance_id, inst in state.instances.items():
            if inst.deleted or (policy.selection == "accepted" and inst.review != "accept"):
                continue
            if wanted is not None and inst.category_id not in wanted:
                continue
            img = state.images.get(inst.image_id)
            if img is None:
                raise VerificationFailed(
                    f"instance {instance_id!r} is on image {inst.image_id!r}, never registered"
                )
            yield instance_id, inst, img

    def annotations() -> Iterator[bytes]:
        # masks are measured a few thousand at a time (see ledger.coco.mask_stats_many)
        batch: list[tuple[str, _Instance, ImageRecord]] = []
        for item in chosen():
            batch.append(item)
            if len(batch) >= _MEASURE_BATCH:
                yield from measured(batch)
                batch = []
        yield from measured(batch)

    def measured(batch: list[tuple[str, _Instance, ImageRecord]]) -> Iterator[bytes]:
        items = [
            (inst.segmentation, img.height, img.width, f"instance {iid!r} segmentation")
            for iid, inst, img in batch
        ]
        try:
            stats = mask_stats_many(items)
        except InvalidInput as e:
            raise VerificationFailed(f"{e}") from e
        for (instance_id, inst, img), (area, bbox) in zip(batch, stats, strict=True):
            yield annotation_bytes(
                annotation_id=inst.annotation_id,
                image_seq=img.seq,
                category_id=inst.category_id,
                segmentation=json.dumps(
                    inst.segmentation, sort_keys=True, separators=(",", ":"), ensure_ascii=False
                ),
                area=area,
                bbox=bbox,
                iscrowd=inst.iscrowd,
                instance_id=instance_id,
                revision=inst.revision,
            )

    cats = (
        coco_category(c)
        for _, c in sorted(state.categories.items())
        if wanted is None or c.category_id in wanted
    )
    imgs = (coco_image(i) for i in sorted(state.images.values(), key=lambda i: i.seq))
    return write_coco(header, annotations(), cats, imgs)


def rebuild_export(
    store: Store,
    project: str,
    size: int,
    policy: ReleasePolicy,
    release: str | None = None,
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """The export at ``size`` rebuilt from the log alone (not from the projections)."""
    return export_of_state(replay_log(store, project, size, progress), policy, release)


@dataclass(frozen=True)
class ReleaseCheck:
    """Outcome of :func:`verify_release`. ``problems`` is empty when it verified."""

    project: str
    name: str
    seq: int
    tree_size: int
    expected_sha256: str
    rebuilt_sha256: str
    root_hash: str
    size: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _release_entry(store: Store, project: str, name: str) -> tuple[int, bytes, dict[str, Any]]:
    """The release.created entry named ``name``, found in the log by its bytes."""
    rows = store.query(
        "SELECT seq FROM entries WHERE project = ? AND type = 'release.created' ORDER BY seq",
        (project,),
    )
    for row in rows:
        seq = int(row["seq"])
        for _, raw in store.iter_entries(project, seq, seq + 1):
            try:
                entry = parse_entry(raw)
            except MalformedEntry as e:
                raise _fail(seq, str(e)) from e
            payload = entry.event.get("payload")
            if isinstance(payload, dict) and payload.get("name") == name:
                return seq, raw, payload
    raise NotFound(f"release {name!r} does not exist in {project}")


def verify_release(
    store: Store, project: str, name: str, progress: Progress | None = None
) -> ReleaseCheck:
    """Rebuild a release's export from the log alone and compare its hash with the one
    the release event recorded; also check the release entry against the stored tree
    and the release projection. Raises VerificationFailed only when the log cannot be
    replayed at all; a hash that differs is reported in ``problems``."""
    log_size(store, project)
    seq, raw, payload = _release_entry(store, project, name)
    try:
        size = int(payload["tree_size"])
        expected = str(payload["sha256"])
        policy = ReleasePolicy.model_validate(payload.get("policy", {}))
    except (KeyError, TypeError, ValueError) as e:
        raise _fail(seq, f"release event is malformed ({e})") from e
    if not 1 <= size <= seq:
        raise _fail(seq, f"release tree size {size} is not before the release entry")
    problems: list[str] = []

    def reader(indexes: Any) -> list[bytes]:
        return store.read_hashes(project, indexes)

    if reader([stored_hash_index(0, seq)])[0] != leaf_hash(raw):
        problems.append(f"entry {seq} (the release event) does not match its stored leaf hash")
    state = replay_log(store, project, size, progress)
    if tree_hash(size, reader) != state.root_hash:
        problems.append(
            f"the root of entries 0..{size - 1} differs from the stored tree hashes: "
            "the log was changed after it was written"
        )
    written = write_to(export_of_state(state, policy, name))
    if written.sha256 != expected:
        problems.append(
            f"rebuilt export has SHA-256 {written.sha256}, the release event recorded {expected}"
        )
    try:
        stored = get_release(store, project, name)
    except NotFound:
        problems.append(f"release {name!r} is missing from the release projection")
    else:
        if (stored.seq, stored.tree_size, stored.sha256, stored.policy) != (
            seq, size, expected, policy,
        ):  # fmt: skip
            problems.append(f"the release projection of {name!r} differs from its entry {seq}")
    return ReleaseCheck(
        project=project,
        name=name,
        seq=seq,
        tree_size=size,
        expected_sha256=expected,
        rebuilt_sha256=written.sha256,
        root_hash=state.root_hash.hex(),
        size=written.size,
        problems=tuple(problems),
    )
