"""Plain records the QA checks read, and the flags they raise.

The checks are pure functions over these records: ``ledger.qa.source`` reads them from
a store as of a tree size, and a benchmark or a test may build them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ledger.masks import RLE

if TYPE_CHECKING:
    from ledger.qa.checks import DeclaredCounts

__all__ = ["Flag", "ImageRecord", "InstanceRecord", "QAState", "ReviewRecord"]


@dataclass(frozen=True, slots=True)
class ImageRecord:
    image_id: str
    width: int
    height: int
    file_name: str = ""
    #: frames of a video or sequence: the sequence and the frame's position in it
    sequence_id: str | None = None
    frame_index: int | None = None


@dataclass(frozen=True, slots=True)
class ReviewRecord:
    """One review decision: entry ``seq``, who decided, and what."""

    seq: int
    reviewer: str
    decision: str
    revision: int


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """An instance as it stood at the tree size of the report: its valid revision."""

    instance_id: str
    image_id: str
    category_id: int
    iscrowd: bool
    #: compressed COCO RLE of the mask (``counts`` a string)
    rle: RLE
    #: who created the instance (actor of revision 1): the annotator it belongs to
    annotator: str
    #: actor of the valid revision (differs from ``annotator`` after someone else edited)
    actor: str
    revision: int
    #: entry that wrote the valid revision
    seq: int
    #: op of the valid revision: created or edited
    op: str = "created"
    track_id: str | None = None
    #: latest review of the valid revision before the tree size, if any
    review: ReviewRecord | None = None
    #: latest review of an earlier revision, if any (whatever its decision)
    previous_review: ReviewRecord | None = None


@dataclass(frozen=True)
class QAState:
    """Everything a QA report reads: a project's images, categories and valid
    instances at one tree size, with the selection that chose the instances."""

    project: str
    tree_size: int
    images: dict[str, ImageRecord]
    categories: dict[int, str]
    instances: tuple[InstanceRecord, ...]
    #: how the instances were chosen: ``all`` valid instances, or only ``accepted`` ones
    selection: str = "all"
    #: only these categories, when given (a release policy may restrict them)
    category_filter: tuple[int, ...] | None = None
    #: the counts declared in the log (``counts.declared``) before the tree size
    declared: DeclaredCounts | None = None

    def scope(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "tree_size": self.tree_size,
            "selection": self.selection,
            "categories": list(self.category_filter) if self.category_filter else None,
        }


@dataclass(frozen=True)
class Flag:
    """One finding of one check. ``reason`` says in words what is wrong and by how
    much; ``value`` and ``threshold`` are the numbers it compares, when there are."""

    check: str
    code: str
    image_id: str
    instance_ids: tuple[str, ...]
    reason: str
    value: float | None = None
    threshold: float | None = None
    #: annotators involved, when the check is about people (agreement, counts)
    actors: tuple[str, ...] = field(default=())

    def sort_key(self) -> tuple[str, str, str, tuple[str, ...], str]:
        return (self.check, self.image_id, self.code, self.instance_ids, self.reason)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "check": self.check,
            "code": self.code,
            "image_id": self.image_id,
            "instance_ids": list(self.instance_ids),
            "reason": self.reason,
        }
        if self.value is not None:
            out["value"] = round(float(self.value), 6)
        if self.threshold is not None:
            out["threshold"] = round(float(self.threshold), 6)
        if self.actors:
            out["actors"] = list(self.actors)
        return out
