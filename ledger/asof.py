"""The state of a project as of any tree size or time, read from the projections.

A *tree size* S names the first S entries of a project's log (sequence numbers 0 to
S-1), exactly as a checkpoint or a release does. The state as of S is what those
entries made: the images and categories registered before S and, for every instance,
the revision current at S. Revision r of an instance is valid from its own sequence
number until the sequence number of revision r+1, so the revision current at S is the
one with ``seq < S`` whose successor, if any, has ``seq >= S``. Its review status is
the latest decision on that same revision before S (an edit starts a new revision, so
it clears the review).

Rows with ``seq < S`` never change once written (the projection of the log before S is
final), so the readers here page through a state with short keyset queries, each one a
separate read, and still see one consistent state however much is appended meanwhile.
Memory stays bounded by the page size.

"As of time T" is the tree size that includes every entry recorded (server time,
``recorded_at``) at or before T.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.entry import format_time
from ledger.errors import InvalidInput, NotFound
from ledger.events import ReleasePolicy
from ledger.merkle import tree_hash
from ledger.service import check_project_name
from ledger.store.base import Store

#: rows fetched per keyset page
PAGE = 2000

Bbox = tuple[float, float, float, float]


@dataclass(frozen=True)
class ImageRecord:
    """A registered image. ``seq`` (its registration entry) is its COCO id in exports."""

    image_id: str
    seq: int
    width: int
    height: int
    file_name: str
    sha256: str | None = None
    sequence_id: str | None = None
    frame_index: int | None = None


@dataclass(frozen=True)
class CategoryRecord:
    category_id: int
    name: str
    supercategory: str | None
    seq: int


@dataclass(frozen=True)
class InstanceState:
    """One instance as of a tree size: its current revision and review status.

    ``annotation_id`` is the sequence number of the entry that created the instance;
    it never changes and is the instance's COCO annotation id in every export.
    ``segmentation`` is the mask as submitted (parsed JSON), or None when the caller
    did not ask for masks.
    """

    instance_id: str
    annotation_id: int
    image_id: str
    image_seq: int
    category_id: int
    revision: int
    seq: int
    op: str
    iscrowd: bool
    area: int
    bbox: Bbox
    actor: str
    guideline: str
    review: str | None
    review_seq: int | None
    reviewer: str | None
    segmentation: Any = None

    @property
    def deleted(self) -> bool:
        return self.op == "deleted"


@dataclass(frozen=True)
class AsOf:
    """Where a state is taken: tree size, root hash and time of its last entry."""

    project: str
    tree_size: int
    root_hash: bytes
    recorded_at: str


def selected(instance: InstanceState, policy: ReleasePolicy) -> bool:
    """Whether a release policy takes this instance (deleted ones never)."""
    if instance.deleted:
        return False
    if policy.selection == "accepted" and instance.review != "accept":
        return False
    return policy.categories is None or instance.category_id in policy.categories


# --- sizes and times ------------------------------------------------------------------


def log_size(store: Store, project: str) -> int:
    """Number of entries in a project's log; NotFound if it has none."""
    head = store.head(check_project_name(project))
    if head is None or head.size == 0:
        raise NotFound(f"project {project} does not exist")
    return head.size


def check_size(store: Store, project: str, size: int, loc: str = "at") -> int:
    """``size`` if it is a tree size of the log (1 to the current size)."""
    current = log_size(store, project)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= current:
        raise InvalidInput.field(
            loc, f"tree size must be an integer from 1 to {current} (the log size), got {size!r}"
        )
    return size


def parse_time(text: str, loc: str = "time") -> datetime:
    """An ISO 8601 time with a timezone (``2026-11-01T09:00:00Z``)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput.field(
            loc, f"{text!r} is not an ISO 8601 time such as 2026-11-01T09:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise InvalidInput.field(
            loc, f"{text!r} has no timezone; add Z or an offset such as +02:00"
        )
    return moment


def size_at_time(store: Store, project: str, when: datetime | str, loc: str = "time") -> int:
    """The tree size that holds every entry recorded at or before ``when``."""
    log_size(store, project)
    moment = parse_time(when, loc) if isinstance(when, str) else when
    if moment.tzinfo is None:
        raise InvalidInput.field(loc, "time has no timezone")
    text = format_time(moment)
    rows = store.query(
        "SELECT MAX(recorded_at) AS t FROM entries WHERE project = ? AND recorded_at <= ?",
        (project, text),
    )
    latest = rows[0]["t"] if rows else None
    if latest is None:
        raise InvalidInput.field(loc, f"no entry of {project} was recorded at or before {text}")
    # Entries of one batch share their recorded_at: take the last of them.
    rows = store.query(
        "SELECT MAX(seq) AS seq FROM entries WHERE project = ? AND recorded_at = ?",
        (project, latest),
    )
    return int(rows[0]["seq"]) + 1


def resolve_size(
    store: Store, project: str, at: int | None = None, when: datetime | str | None = None
) -> int:
    """Tree size from ``at`` (a size), ``when`` (a time) or, with neither, the log size."""
    if at is not None and when is not None:
        raise InvalidInput.field("at", "give a tree size or a time, not both")
    if at is not None:
        return check_size(store, project, at)
    if when is not None:
        return size_at_time(store, project, when)
    return log_size(store, project)


def as_of(store: Store, project: str, size: int) -> AsOf:
    """Tree size, root hash (from the stored tree hashes) and time of entry size-1."""
    check_size(store, project, size)
    root = tree_hash(size, lambda indexes: store.read_hashes(project, indexes))
    rows = store.query(
        "SELECT recorded_at FROM entries WHERE project = ? AND seq = ?", (project, size - 1)
    )
    if not rows:
        raise NotFound(f"project {project} has no entry {size - 1}")
    return AsOf(project, size, root, str(rows[0]["recorded_at"]))


# --- images and categories ------------------------------------------------------------


def _image(row: dict[str, Any]) -> ImageRecord:
    return ImageRecord(
        image_id=row["image_id"],
        seq=int(row["seq"]),
        width=int(row["width"]),
        height=int(row["height"]),
        file_name=row["file_name"],
        sha256=row["sha256"],
        sequence_id=row["sequence_id"],
        frame_index=None if row["frame_index"] is None else int(row["frame_index"]),
    )


def iter_images(store: Store, project: str, size: int, page: int = PAGE) -> Iterator[ImageRecord]:
    """Images registered before ``size``, in registration order."""
    after = -1
    while True:
        rows = store.query(
            "SELECT image_id, seq, width, height, file_name, sha256, sequence_id, frame_index"
            " FROM images WHERE project = ? AND seq > ? AND seq < ? ORDER BY seq LIMIT ?",
            (project, after, size, page),
        )
        for row in rows:
            yield _image(row)
        if len(rows) < page:
            return
        after = int(rows[-1]["seq"])


def image(store: Store, project: str, image_id: str, size: int) -> ImageRecord:
    rows = store.query(
        "SELECT image_id, seq, width, height, file_name, sha256, sequence_id, frame_index"
        " FROM images WHERE project = ? AND image_id = ? AND seq < ?",
        (project, image_id, size),
    )
    if not rows:
        raise NotFound(f"image {image_id!r} is not registered in {project} at tree size {size}")
    return _image(rows[0])


def categories(store: Store, project: str, size: int) -> list[CategoryRecord]:
    """Categories defined before ``size``, by category id."""
    rows = store.query(
        "SELECT category_id, name, supercategory, seq FROM categories"
        " WHERE project = ? AND seq < ? ORDER BY category_id",
        (project, size),
    )
    return [
        CategoryRecord(int(r["category_id"]), r["name"], r["supercategory"], int(r["seq"]))
        for r in rows
    ]


# --- instances ------------------------------------------------------------------------

# The revision of each instance current at a tree size, with its creation entry (the
# annotation id), the image's registration entry (the COCO image id) and the latest
# review of that revision. Placeholders, in order: size (reviews), project, size
# (revisions), the caller's WHERE parameters, size (successor), the caller's tail
# parameters, project (review join).
_STATE_SQL = """
SELECT s.*, v.decision AS review, v.reviewer AS reviewer
FROM (
    SELECT c.seq AS annotation_id, r.instance_id, r.revision, r.seq, r.op, r.image_id,
           i.seq AS image_seq, r.category_id, r.iscrowd, {segmentation} r.area, r.bbox,
           r.actor, r.guideline,
           (SELECT MAX(w.seq + 0) FROM reviews w
             WHERE w.project = r.project AND w.instance_id = r.instance_id
               AND w.revision = r.revision AND +w.seq < ?) AS review_seq
    FROM revisions c
    JOIN revisions r ON r.project = c.project AND r.instance_id = c.instance_id
    JOIN images i ON i.project = r.project AND i.image_id = r.image_id
    WHERE c.project = ? AND c.revision = 1 AND +r.seq < ? AND {where}
      AND NOT EXISTS (SELECT 1 FROM revisions n
                       WHERE n.project = r.project AND n.instance_id = r.instance_id
                         AND n.revision = r.revision + 1 AND n.seq < ?)
    {tail}
) s
LEFT JOIN reviews v ON v.project = ? AND v.seq = s.review_seq
ORDER BY s.annotation_id
"""


def _state_rows(
    store: Store,
    project: str,
    size: int,
    where: str,
    where_params: Sequence[Any],
    tail: str = "",
    tail_params: Sequence[Any] = (),
    masks: bool = True,
) -> list[dict[str, Any]]:
    sql = _STATE_SQL.format(segmentation="r.segmentation," if masks else "", where=where, tail=tail)
    params = (size, project, size, *where_params, size, *tail_params, project)
    return store.query(sql, params)


def _state_query(
    store: Store,
    project: str,
    size: int,
    where: str,
    where_params: Sequence[Any],
    tail: str = "",
    tail_params: Sequence[Any] = (),
    masks: bool = True,
) -> list[InstanceState]:
    rows = _state_rows(store, project, size, where, where_params, tail, tail_params, masks)
    return [_instance(row) for row in rows]


def _instance(row: dict[str, Any]) -> InstanceState:
    bbox = json.loads(row["bbox"])
    seg = row.get("segmentation")
    return InstanceState(
        instance_id=row["instance_id"],
        annotation_id=int(row["annotation_id"]),
        image_id=row["image_id"],
        image_seq=int(row["image_seq"]),
        category_id=int(row["category_id"]),
        revision=int(row["revision"]),
        seq=int(row["seq"]),
        op=row["op"],
        iscrowd=bool(row["iscrowd"]),
        area=int(row["area"]),
        bbox=(float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3])),
        actor=row["actor"],
        guideline=row["guideline"],
        review=row["review"],
        review_seq=None if row["review_seq"] is None else int(row["review_seq"]),
        reviewer=row["reviewer"],
        segmentation=None if seg is None else json.loads(seg),
    )


def iter_rows(
    store: Store,
    project: str,
    size: int,
    *,
    masks: bool = True,
    include_deleted: bool = False,
    guideline: str | None = None,
    page: int = PAGE,
) -> Iterator[dict[str, Any]]:
    """The rows behind :func:`iter_instances`, as the database gives them (bbox and
    segmentation as JSON text): for readers that stream many instances fast."""
    where = "c.seq > ?"
    extra: list[Any] = []
    if not include_deleted:
        where += " AND r.op <> 'deleted'"
    if guideline is not None:
        where += " AND r.guideline = ?"
        extra.append(guideline)
    after = -1
    while True:
        rows = _state_rows(
            store, project, size, where, (after, *extra), "ORDER BY c.seq LIMIT ?", (page,), masks
        )
        yield from rows
        if len(rows) < page:
            return
        after = int(rows[-1]["annotation_id"])


def iter_instances(
    store: Store,
    project: str,
    size: int,
    *,
    masks: bool = True,
    include_deleted: bool = False,
    guideline: str | None = None,
    page: int = PAGE,
) -> Iterator[InstanceState]:
    """Every instance as of ``size`` in annotation-id (creation) order, streamed.

    Deleted instances are left out unless ``include_deleted``; ``guideline``
    ("id@version") keeps only instances whose current revision was made under it.
    """
    rows = iter_rows(
        store, project, size, masks=masks, include_deleted=include_deleted,
        guideline=guideline, page=page,
    )  # fmt: skip
    return map(_instance, rows)


def image_instances(
    store: Store,
    project: str,
    image_id: str,
    size: int,
    *,
    masks: bool = True,
    include_deleted: bool = False,
) -> list[InstanceState]:
    """The instances of one image as of ``size``, in annotation-id order."""
    image(store, project, image_id, size)
    where = "r.image_id = ?"
    if not include_deleted:
        where += " AND r.op <> 'deleted'"
    return _state_query(store, project, size, where, (image_id,), masks=masks)


def instance(
    store: Store, project: str, instance_id: str, size: int, *, masks: bool = True
) -> InstanceState:
    """One instance as of ``size`` (deleted ones too); NotFound if it did not exist yet."""
    rows = _state_query(store, project, size, "r.instance_id = ?", (instance_id,), masks=masks)
    if not rows:
        raise NotFound(f"instance {instance_id!r} does not exist in {project} at tree size {size}")
    return rows[0]
