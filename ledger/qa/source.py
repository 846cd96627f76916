"""Reading a QA state from a store, and declared counts from a file.

:func:`valid_instances` is the one query that decides which revision of each instance
a report sees. It reads the projections directly (``revisions`` and ``reviews``):

* the valid revision of an instance at tree size N is its latest revision with
  ``seq < N``; an instance whose valid revision is a deletion is gone;
* its review is the latest review of that same revision with ``seq < N``;
* its previous review is the latest review of an earlier revision with ``seq < N``
  (review consistency asks whether the mask was edited after an acceptance).

Rows with ``seq < N`` never change once written, so the queries may run as separate
reads while the log grows and still describe one state. (``ledger.asof`` answers the
same question for exports; this function can be pointed at it without changing its
callers.)
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.errors import InvalidInput, NotFound
from ledger.masks import RLE, to_rle
from ledger.qa.checks import DeclaredCounts
from ledger.qa.records import ImageRecord, InstanceRecord, QAState, ReviewRecord
from ledger.store.base import Store

__all__ = [
    "ValidInstance",
    "load_declared_counts",
    "load_state",
    "parse_declared_counts",
    "resolve_scope",
    "valid_instances",
]

SELECTIONS = ("all", "accepted")


@dataclass(frozen=True)
class ValidInstance:
    """One instance at a tree size, with its segmentation as submitted (JSON text)."""

    instance_id: str
    image_id: str
    category_id: int
    iscrowd: bool
    segmentation: str
    annotator: str
    actor: str
    revision: int
    seq: int
    op: str
    review: ReviewRecord | None
    previous_review: ReviewRecord | None


_VALID_SQL = """
SELECT r.instance_id, r.revision, r.seq, r.op, r.image_id, r.category_id, r.iscrowd,
       r.segmentation, r.actor, c.actor AS annotator
FROM revisions r
JOIN (SELECT instance_id, MAX(revision) AS revision
      FROM revisions WHERE project = ? AND seq < ? GROUP BY instance_id) v
  ON r.instance_id = v.instance_id AND r.revision = v.revision
JOIN revisions c
  ON c.project = r.project AND c.instance_id = r.instance_id AND c.revision = 1
WHERE r.project = ? AND r.op <> 'deleted'
ORDER BY r.instance_id
"""


def valid_instances(store: Store, project: str, tree_size: int) -> Iterator[ValidInstance]:
    """The instances valid at ``tree_size``, in instance id order (see the module doc)."""
    reviews: dict[str, list[ReviewRecord]] = {}
    for row in store.iter_query(
        "SELECT instance_id, revision, seq, reviewer, decision FROM reviews"
        " WHERE project = ? AND seq < ? ORDER BY seq",
        (project, tree_size),
    ):
        reviews.setdefault(row["instance_id"], []).append(
            ReviewRecord(int(row["seq"]), row["reviewer"], row["decision"], int(row["revision"]))
        )
    for row in store.iter_query(_VALID_SQL, (project, tree_size, project)):
        revision = int(row["revision"])
        review: ReviewRecord | None = None
        previous: ReviewRecord | None = None
        for decided in reviews.get(row["instance_id"], ()):  # in entry order
            if decided.revision == revision:
                review = decided
            elif decided.revision < revision:
                previous = decided
        yield ValidInstance(
            instance_id=row["instance_id"],
            image_id=row["image_id"],
            category_id=int(row["category_id"]),
            iscrowd=bool(row["iscrowd"]),
            segmentation=row["segmentation"],
            annotator=row["annotator"],
            actor=row["actor"],
            revision=revision,
            seq=int(row["seq"]),
            op=row["op"],
            review=review,
            previous_review=previous,
        )


def _track_ids(store: Store, project: str, tree_size: int) -> dict[str, str]:
    """track_id of the instances created on frames of a sequence (the revisions
    projection does not keep it; the mask.created entry does)."""
    out: dict[str, str] = {}
    rows = store.iter_query(
        "SELECT e.instance_id, e.entry FROM entries e JOIN images i"
        " ON i.project = e.project AND i.image_id = e.image_id"
        " WHERE e.project = ? AND e.seq < ? AND e.type = 'mask.created'"
        " AND i.sequence_id IS NOT NULL ORDER BY e.seq",
        (project, tree_size),
    )
    for row in rows:
        entry = json.loads(bytes(row["entry"]))
        track = entry["event"]["payload"].get("track_id")
        if track is not None:
            out[row["instance_id"]] = str(track)
    return out


def segmentation_rle(text: str, height: int, width: int) -> RLE:
    """The compressed RLE of a stored segmentation (JSON text, as submitted).

    A compressed string is passed on as stored: ``build_table`` checks every string
    before pycocotools reads it. Polygons and uncompressed RLE are converted by
    ``ledger.masks.to_rle``."""
    seg = json.loads(text)
    if isinstance(seg, dict) and isinstance(seg.get("counts"), str):
        return {"size": [height, width], "counts": seg["counts"]}
    return to_rle(seg, height, width)


def resolve_scope(
    store: Store,
    project: str,
    *,
    tree_size: int | None = None,
    release: str | None = None,
    selection: str | None = None,
    categories: tuple[int, ...] | None = None,
) -> tuple[int, str, tuple[int, ...] | None]:
    """(tree size, selection, categories) of a report: a release's own, or the given
    tree size (default: the whole log) with the given selection (default ``all``)."""
    head = store.head(project)
    if head is None or head.size == 0:
        raise NotFound(f"project {project} does not exist")
    if release is not None:
        if tree_size is not None or selection is not None or categories is not None:
            raise InvalidInput.field(
                "release", "a release fixes the tree size, selection and categories"
            )
        rows = store.query(
            "SELECT tree_size, policy FROM releases WHERE project = ? AND name = ?",
            (project, release),
        )
        if not rows:
            raise NotFound(f"release {release!r} does not exist in project {project}")
        policy = json.loads(rows[0]["policy"])
        cats = policy.get("categories")
        return (
            int(rows[0]["tree_size"]),
            str(policy.get("selection", "accepted")),
            tuple(sorted(int(c) for c in cats)) if cats else None,
        )
    size = head.size if tree_size is None else tree_size
    if not 1 <= size <= head.size:
        raise InvalidInput.field(
            "tree_size", f"{size} is not a tree size of {project} (1 to {head.size})"
        )
    chosen = selection or "all"
    if chosen not in SELECTIONS:
        raise InvalidInput.field("selection", f"expected one of {', '.join(SELECTIONS)}")
    return size, chosen, tuple(sorted(set(categories))) if categories else None


def load_state(
    store: Store,
    project: str,
    *,
    tree_size: int | None = None,
    release: str | None = None,
    selection: str | None = None,
    categories: tuple[int, ...] | None = None,
) -> QAState:
    """The QA state of ``project``: as of a tree size (default: all of the log), or as
    a release selected it (its tree size, and its policy: ``accepted`` keeps instances
    whose valid revision's latest review is an acceptance; ``categories`` keeps those
    categories). Raises NotFound for an unknown project or release."""
    size, chosen, cats = resolve_scope(
        store,
        project,
        tree_size=tree_size,
        release=release,
        selection=selection,
        categories=categories,
    )
    images = {
        row["image_id"]: ImageRecord(
            row["image_id"],
            int(row["width"]),
            int(row["height"]),
            row["file_name"],
            row["sequence_id"],
            None if row["frame_index"] is None else int(row["frame_index"]),
        )
        for row in store.iter_query(
            "SELECT image_id, width, height, file_name, sequence_id, frame_index FROM images"
            " WHERE project = ? AND seq < ? ORDER BY image_id",
            (project, size),
        )
    }
    category_names = {
        int(row["category_id"]): row["name"]
        for row in store.query(
            "SELECT category_id, name FROM categories WHERE project = ? AND seq < ?"
            " ORDER BY category_id",
            (project, size),
        )
    }
    has_frames = any(i.sequence_id is not None for i in images.values())
    tracks = _track_ids(store, project, size) if has_frames else {}
    instances: list[InstanceRecord] = []
    for valid in valid_instances(store, project, size):
        if chosen == "accepted" and (valid.review is None or valid.review.decision != "accept"):
            continue
        if cats is not None and valid.category_id not in cats:
            continue
        image = images[valid.image_id]
        instances.append(
            InstanceRecord(
                instance_id=valid.instance_id,
                image_id=valid.image_id,
                category_id=valid.category_id,
                iscrowd=valid.iscrowd,
                rle=segmentation_rle(valid.segmentation, image.height, image.width),
                annotator=valid.annotator,
                actor=valid.actor,
                revision=valid.revision,
                seq=valid.seq,
                op=valid.op,
                track_id=tracks.get(valid.instance_id),
                review=valid.review,
                previous_review=valid.previous_review,
            )
        )
    declared = logged_counts(store, project, size)
    return QAState(project, size, images, category_names, tuple(instances), chosen, cats, declared)


# --- declared counts --------------------------------------------------------------------


def logged_counts(store: Store, project: str, tree_size: int) -> DeclaredCounts | None:
    """The counts declared by ``counts.declared`` events before ``tree_size``: for each
    image, its latest declaration (which replaces the earlier ones). None when there is
    none. The SHA-256 is over the canonical JSON of the image -> category -> count map,
    so the same declarations give the same report whichever events made them."""
    from ledger.canonical import canonical_bytes

    latest: dict[str, dict[str, int]] = {}
    for row in store.iter_query(
        "SELECT image_id, counts FROM count_declarations WHERE project = ? AND seq < ?"
        " ORDER BY seq",
        (project, tree_size),
    ):
        latest[row["image_id"]] = json.loads(row["counts"])
    if not latest:
        return None
    counts = {
        (image_id, int(category)): int(count)
        for image_id, per in latest.items()
        for category, count in per.items()
    }
    digest = hashlib.sha256(canonical_bytes(latest)).hexdigest()
    return DeclaredCounts(counts, digest, f"counts.declared events before {tree_size}")


def load_declared_counts(path: str | Path) -> DeclaredCounts:
    """Expected counts from a JSON or CSV file (by its extension; see
    :func:`parse_declared_counts` for the formats)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvalidInput.field(str(path), f"cannot read declared counts: {e.strerror}") from e
    kind = "csv" if path.suffix.lower() == ".csv" else "json"
    return parse_declared_counts(data, kind, path.name)


def parse_declared_counts(data: bytes, kind: str, source: str = "counts") -> DeclaredCounts:
    """Expected counts per image and category.

    JSON: ``{"img-1": {"1": 3, "2": 0}, ...}`` (image -> category id -> count), or a
    list of ``{"image_id": ..., "category_id": ..., "count": ...}`` objects, bare or
    under ``"counts"``. CSV: a header with ``image_id,category_id,count`` and one row
    per image and category. A pair declared twice is refused."""
    counts: dict[tuple[str, int], int] = {}

    def add(loc: str, image_id: Any, category_id: Any, count: Any) -> None:
        if not isinstance(image_id, str) or not image_id:
            raise InvalidInput.field(f"{loc}.image_id", f"expected an image id, got {image_id!r}")
        cat = _int(category_id, f"{loc}.category_id", 1)
        number = _int(count, f"{loc}.count", 0)
        if (image_id, cat) in counts:
            raise InvalidInput.field(loc, f"image {image_id}, category {cat} is declared twice")
        counts[(image_id, cat)] = number

    if kind == "csv":
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise InvalidInput.field(source, "expected UTF-8 text") from e
        reader = csv.DictReader(io.StringIO(text))
        missing = {"image_id", "category_id", "count"} - set(reader.fieldnames or [])
        if missing:
            raise InvalidInput.field(
                f"{source}:1", f"missing column(s) {', '.join(sorted(missing))}"
            )
        for row in reader:
            add(f"{source}:{reader.line_num}", row["image_id"], row["category_id"], row["count"])
    elif kind == "json":
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidInput.field(source, f"not valid JSON: {e}") from e
        if isinstance(value, dict) and "counts" in value:
            value = value["counts"]
        if isinstance(value, list):
            for i, item in enumerate(value):
                loc = f"{source}[{i}]"
                if not isinstance(item, dict):
                    raise InvalidInput.field(loc, "expected an object")
                add(loc, item.get("image_id"), item.get("category_id"), item.get("count"))
        elif isinstance(value, dict):
            for image_id, per in value.items():
                if not isinstance(per, dict):
                    raise InvalidInput.field(
                        f"{source}.{image_id}", "expected an object of category id -> count"
                    )
                for category_id, count in per.items():
                    add(f"{source}.{image_id}.{category_id}", image_id, category_id, count)
        else:
            raise InvalidInput.field(source, "expected an object or a list of objects")
    else:
        raise InvalidInput.field(source, f"unknown format {kind!r} (expected json or csv)")
    return DeclaredCounts(counts, hashlib.sha256(data).hexdigest(), source)


def _int(value: Any, loc: str, minimum: int) -> int:
    if isinstance(value, bool):
        raise InvalidInput.field(loc, f"expected an integer, got {value!r}")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise InvalidInput.field(loc, f"expected an integer, got {value!r}") from None
    if not isinstance(value, int) or value < minimum:
        raise InvalidInput.field(loc, f"expected an integer >= {minimum}, got {value!r}")
    return value
