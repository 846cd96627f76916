"""Rules that need the project's state, and the projection rows each event writes.

``Projector.apply`` is the one place that decides whether an event may follow the
current state, and what it changes. The append service runs it inside the project's
lock against the stored projections; ``ledger projections check`` runs the same code
over the log alone, from an empty state, and compares what comes out with what is
stored.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any, Protocol

from ledger.errors import Conflict, FieldError, InvalidInput, NotFound
from ledger.events import (
    PAYLOADS,
    ActorRegistered,
    CategoryDefined,
    CountsDeclared,
    GuidelinePublished,
    ImageRegistered,
    JobStatusChanged,
    MaskCreated,
    MaskDeleted,
    MaskEdited,
    ParsedEvent,
    ProjectCreated,
    ReleaseCreated,
    ReleaseMaterialized,
    ReviewAssigned,
    ReviewDecided,
)
from ledger.masks import MaskInfo, validate_segmentation
from ledger.store.base import TABLES, WriteBatch, dumps_column


class RowLoader(Protocol):
    def rows(self, table: str, key: str, values: Iterable[Any]) -> list[dict[str, Any]]: ...


class EmptyLoader:
    """For a rebuild from the log: nothing is stored yet."""

    def rows(self, table: str, key: str, values: Iterable[Any]) -> list[dict[str, Any]]:
        return []


# (table, key column) of each kind of thing an event can refer to
_REFS = {
    "actors": "actor_id",
    "guidelines": "guideline_id",
    "categories": "category_id",
    "images": "image_id",
    "instances": "instance_id",
    "releases": "name",
}


# (payload field, table) of every field that names a row of another table
_REF_FIELDS = (
    ("instance_id", "instances"),
    ("image_id", "images"),
    ("category_id", "categories"),
    ("guideline_id", "guidelines"),
    ("actor_id", "actors"),
    ("assignee", "actors"),
)
#: the same, for each payload model: only the fields it has
_PAYLOAD_REFS = {
    model: tuple((attr, table) for attr, table in _REF_FIELDS if attr in model.model_fields)
    for model in PAYLOADS.values()
}


@dataclass
class _Cache:
    """Rows by key; ``None`` marks a key known to be absent."""

    rows: dict[Any, dict[str, Any] | None]


class Projector:
    """State of one project as seen by one append (or one rebuild), plus the writes."""

    def __init__(self, project: str, loader: RowLoader, size: int) -> None:
        self.project = project
        self.loader = loader
        self.size = size  # entries so far, including those applied in this batch
        self.batch = WriteBatch()
        self._cache: dict[str, dict[Any, dict[str, Any] | None]] = {t: {} for t in _REFS}
        # current revision row per instance: a dict as read, or the tuple as written
        # here (made a dict only if a later event of the batch reads it)
        self._revisions: dict[str, dict[str, Any] | tuple[Any, ...]] = {}

    # --- state lookups ------------------------------------------------------------
    def prefetch(self, events: Iterable[ParsedEvent]) -> None:
        """Load, in one query per table, every row the events may refer to."""
        wanted: dict[str, set[Any]] = {t: set() for t in _REFS}
        actors, guidelines, instances = wanted["actors"], wanted["guidelines"], wanted["instances"]
        for ev in events:
            env, p = ev.envelope, ev.payload
            actors.add(env.actor)
            if env.guideline is not None:
                guidelines.add(env.guideline.id)
            # The payload's field values: a pydantic model keeps them in __dict__, and a
            # lookup there costs far less than getattr on a field the model lacks.
            fields = vars(p)
            for attr, table in _PAYLOAD_REFS.get(type(p), _REF_FIELDS):
                value = fields.get(attr)
                if value is not None:
                    wanted[table].add(value)
            instances.update(fields.get("parents", ()))
            if isinstance(p, ReleaseCreated):
                wanted["releases"].add(p.name)
        instance_ids = wanted["instances"]
        self._load_many(wanted)
        # images of the instances named, for mask checks of edits
        self._load(
            "images",
            {r["image_id"] for k in instance_ids if (r := self._cache["instances"].get(k))},
        )
        live = [k for k in instance_ids if self._cache["instances"].get(k) is not None]
        if live:
            for row in self.loader.rows("revisions", "instance_id", live):
                inst = self._cache["instances"][row["instance_id"]]
                if inst is not None and row["revision"] == inst["revision"]:
                    self._revisions[row["instance_id"]] = row

    def remember(self, table: str, rows: Iterable[dict[str, Any]]) -> None:
        """Take rows read before the append's lock, of a table whose rows never change
        once written (images), so that the locked part need not read them again."""
        self._fill(table, (), rows)

    def _load(self, table: str, keys: set[Any]) -> None:
        cache = self._cache[table]
        missing = [k for k in keys if k not in cache]
        if not missing:
            return
        self._fill(table, missing, self.loader.rows(table, _REFS[table], missing))

    def _load_many(self, wanted: dict[str, set[Any]]) -> None:
        """``_load`` of several tables, in one loader call (one round trip) when the
        loader offers ``rows_many``."""
        missing: dict[str, list[Any]] = {}
        for table, keys in wanted.items():
            cache = self._cache[table]
            if absent := [k for k in keys if k not in cache]:
                missing[table] = absent
        if not missing:
            return
        rows_many = getattr(self.loader, "rows_many", None)
        if rows_many is None:
            for table, absent in missing.items():
                self._fill(table, absent, self.loader.rows(table, _REFS[table], absent))
            return
        results = rows_many([(table, _REFS[table], absent) for table, absent in missing.items()])
        for (table, absent), rows in zip(missing.items(), results, strict=True):
            self._fill(table, absent, rows)

    def _fill(self, table: str, missing: Iterable[Any], rows: Iterable[dict[str, Any]]) -> None:
        cache = self._cache[table]
        if table == "guidelines":
            for row in rows:
                cache[(row["guideline_id"], row["version"])] = row
        else:
            key = _REFS[table]
            for row in rows:
                cache[row[key]] = row
        for k in missing:
            cache.setdefault(k, None)  # for guidelines, the id alone marks "loaded"

    def _get(self, table: str, key: Any) -> dict[str, Any] | None:
        cache = self._cache[table]
        if key not in cache:
            self._load(table, {key[0] if table == "guidelines" else key})
            cache.setdefault(key, None)
        return cache.get(key)

    def _put(self, table: str, key: Any, row: tuple[Any, ...]) -> dict[str, Any]:
        as_dict = dict(zip(TABLES[table], row, strict=True))
        self._cache[table][key] = as_dict
        self.batch.add(table, row)
        return as_dict

    # --- the rules ----------------------------------------------------------------
    def apply(self, seq: int, ev: ParsedEvent, loc: str, mask: MaskInfo | None = None) -> None:
        """Check one event against the state and record its projection rows.

        ``mask`` is the result of ``validate_segmentation`` when the caller already
        computed it outside the lock; otherwise it is computed here.
        """
        p = ev.payload
        if isinstance(p, ProjectCreated):
            if seq != 0:
                raise Conflict(f"project {self.project} already exists")
        elif seq == 0:
            raise NotFound(
                f"project {self.project} does not exist: its first event must be project.created"
            )
        handler = _HANDLERS[type(p)]
        handler(self, seq, ev, loc, mask)
        self.size = seq + 1

    def _actor_may(self, ev: ParsedEvent, loc: str, role: str) -> dict[str, Any]:
        actor = self._get("actors", ev.envelope.actor)
        if actor is None:
            raise InvalidInput.field(
                f"{loc}actor", f"actor {ev.envelope.actor!r} is not registered in {self.project}"
            )
        roles = _parsed_list(actor["roles"])
        if role not in roles:
            raise InvalidInput.field(
                f"{loc}actor",
                f"actor {ev.envelope.actor!r} ({actor['kind']}) may not {role} "
                f"(roles: {', '.join(roles) or 'none'})",
            )
        return actor

    def _guideline(self, ev: ParsedEvent, loc: str) -> str:
        ref = ev.envelope.guideline
        assert ref is not None  # the envelope model requires it for these types
        cache = self._cache["guidelines"]
        if ref.id not in cache:
            self._load("guidelines", {ref.id})
        if cache.get((ref.id, ref.version)) is None:
            raise InvalidInput.field(
                f"{loc}guideline",
                f"guideline {ref.key()} has not been published in {self.project}",
            )
        return ref.key()

    # The field at fault is named as ``loc`` + ``field``, put together only on error.
    def _category(self, category_id: int, loc: str, field: str) -> None:
        if self._get("categories", category_id) is None:
            raise InvalidInput.field(loc + field, f"category {category_id} is not defined")

    def _image(self, image_id: str, loc: str, field: str) -> dict[str, Any]:
        image = self._get("images", image_id)
        if image is None:
            raise InvalidInput.field(loc + field, f"image {image_id!r} is not registered")
        return image

    def _live_instance(self, instance_id: str, revision: int, loc: str) -> dict[str, Any]:
        inst = self._get("instances", instance_id)
        if inst is None:
            raise InvalidInput.field(
                f"{loc}payload.instance_id", f"instance {instance_id!r} does not exist"
            )
        if inst["deleted"]:
            raise Conflict(
                f"instance {instance_id!r} was deleted at revision {inst['revision']}",
                [FieldError(f"{loc}payload.instance_id", "instance is deleted")],
            )
        if revision != inst["revision"]:
            raise Conflict(
                f"stale revision: instance {instance_id!r} is at revision {inst['revision']}, "
                f"the event names revision {revision}",
                [FieldError(f"{loc}payload.revision", f"current revision is {inst['revision']}")],
            )
        return inst

    def _mask(self, seg: Any, image: dict[str, Any], loc: str, mask: MaskInfo | None) -> MaskInfo:
        if mask is not None:
            return mask
        return validate_segmentation(
            seg, image["height"], image["width"], f"{loc}payload.segmentation"
        )

    def _revision_row(
        self,
        seq: int,
        ev: ParsedEvent,
        instance_id: str,
        revision: int,
        op: str,
        image_id: str,
        category_id: int,
        iscrowd: bool,
        segmentation: str,
        area: int,
        bbox: str,
        guideline: str,
    ) -> None:
        row = (
            self.project, instance_id, revision, seq, op, image_id, category_id,
            int(iscrowd), segmentation, area, bbox, ev.envelope.actor, guideline,
        )  # fmt: skip
        self.batch.add("revisions", row)
        self._revisions[instance_id] = row

    def _current_revision(self, instance_id: str) -> dict[str, Any]:
        row = self._revisions[instance_id]
        if isinstance(row, tuple):
            row = self._revisions[instance_id] = dict(zip(TABLES["revisions"], row, strict=True))
        return row

    def _instance_row(
        self,
        instance_id: str,
        image_id: str,
        category_id: int,
        revision: int,
        deleted: bool,
        created_seq: int,
        seq: int,
        review: str | None,
    ) -> None:
        self._put(
            "instances",
            instance_id,
            (
                self.project, instance_id, image_id, category_id, revision, int(deleted),
                created_seq, seq, review,
            ),
        )  # fmt: skip


def _json_list(text: str) -> list[str]:
    return list(_parsed_list(text))


@functools.lru_cache(maxsize=1024)
def _parsed_list(text: str) -> tuple[str, ...]:
    # Roles are parsed once per distinct text, not once per event.
    return tuple(str(v) for v in json.loads(text))


def _segmentation_text(seg: Any) -> str:
    """``dumps_column(seg)``; a compressed RLE (the usual case) is written directly."""
    if type(seg) is dict and len(seg) == 2:
        counts, size = seg.get("counts"), seg.get("size")
        if type(counts) is str and type(size) is list and len(size) == 2:
            height, width = size
            if type(height) is int and type(width) is int:
                return f'{{"counts":{encode_basestring(counts)},"size":[{height},{width}]}}'
    return dumps_column(seg)


def _bbox_text(mask: MaskInfo) -> str:
    # round(v, 2) returns an integral float unchanged, and costs a float-to-text
    # round trip: only the others go through it.
    return dumps_column([v if v.is_integer() else round(v, 2) for v in map(float, mask.bbox)])


# --- one handler per event type ---------------------------------------------------


def _project_created(
    pj: Projector, seq: int, ev: ParsedEvent, loc: str, m: MaskInfo | None
) -> None:
    pass  # the head row is the project's projection


def _actor_registered(
    pj: Projector, seq: int, ev: ParsedEvent, loc: str, m: MaskInfo | None
) -> None:
    p = ev.payload
    assert isinstance(p, ActorRegistered)
    pj._put(
        "actors",
        p.actor_id,
        (
            pj.project, p.actor_id, p.kind, dumps_column(list(p.effective_roles())),
            dumps_column(list(p.skills)), p.organization, p.display_name, seq,
        ),
    )  # fmt: skip


def _guideline_published(
    pj: Projector, seq: int, ev: ParsedEvent, loc: str, m: MaskInfo | None
) -> None:
    p = ev.payload
    assert isinstance(p, GuidelinePublished)
    pj._load("guidelines", {p.guideline_id})
    existing = pj._cache["guidelines"].get((p.guideline_id, p.version))
    if existing is not None:
        raise Conflict(
            f"guideline {p.guideline_id}@{p.version} is already published "
            f"(entry {existing['seq']})",
            [FieldError(f"{loc}payload.version", "already published")],
        )
    pj._put(
        "guidelines",
        (p.guideline_id, p.version),
        (pj.project, p.guideline_id, p.version, p.sha256, p.title, seq),
    )


def _category_defined(
    pj: Projector, seq: int, ev: ParsedEvent, loc: str, m: MaskInfo | None
) -> None:
    p = ev.payload
    assert isinstance(p, CategoryDefined)
    existing = pj._get("categories", p.category_id)
    if existing is not None:
        raise Conflict(
            f"category {p.category_id} is already defined as {existing['name']!r}",
            [FieldError(f"{loc}payload.category_id", "already defined")],
        )
    pj._put("categories", p.category_id, (pj.project, p.category_id, p.name, p.supercategory, seq))


def _image_registered(
    pj: Projector, seq: int, ev: ParsedEvent, loc: str, m: MaskInfo | None
) -> None:
    p = ev.payload
    assert isinstance(p, ImageRegistered)
    if pj._get("images", p.image_id) is not None:
        raise Conflict(
            f"image {p.image_id!r} is already registered",
            [FieldError(f"{loc}payload.image_id", "already registered")],
        )
    pj._put(
        "images",
        p.image_id,
        (
            pj.project, p.image_id, p.width, p.height, p.file_name, p.sha256, p.sequence_id,
            p.frame_index, seq,
        ),
    )  # fmt: skip


def _mask_created(pj: Projector, seq: int, ev: ParsedEvent, loc: str, m: MaskInfo | None) -> None:
    p = ev.payload
    assert isinstance(p, MaskCreated)
    pj._actor_may(ev, loc, "annotate")
    guideline = pj._guideline(ev, loc)
    image = pj._image(p.image_id, loc, "payload.image_id")
    pj._category(p.category_id, loc, "payload.category_id")
    if pj._get("instances", p.instance_id) is not None:
        raise Conflict(
            f"instance {p.instance_id!r} already exists",
            [FieldError(f"{loc}payload.instance_id", "already exists")],
        )
    for i, parent in enumerate(p.parents):
        if pj._get("instances", parent) is None:
            raise InvalidInput.field(
                f"{loc}payload.parents[{i}]", f"instance {parent!r} does not exist"
            )
    mask = pj._mask(p.segmentation, image, loc, m)
    pj._revision_row(
        seq, ev, p.instance_id, 1, "created", p.image_id, p.category_id, p.iscrowd,
        _segmentation_text(p.segmentation), mask.area, _bbox_text(mask), guideline,
    )  # fmt: skip
    pj._instance_row(p.instance_id, p.image_id, p.category_id, 1, False, seq, seq, None)
    for parent in p.parents:
        assert p.relation is not None
        pj.batch.add("links", (pj.project, parent, p.instance_id, p.relation, seq))


def _mask_edited(pj: Projector, seq: int, ev: ParsedEvent, loc: str, m: MaskInfo | None) -> None:
    p = ev.payload
    assert isinstance(p, MaskEdited)
    pj._actor_may(ev, loc, "annotate")
    guideline = pj._guideline(ev, loc)
    inst = pj._live_instance(p.instance_id, p.revision, loc)
    current = pj._current_revision(p.instance_id)
    category_id = current["category_id"] if p.category_id is None else p.category_id
    if p.category_id is not None:
        pj._category(p.category_id, loc, "payload.category_id")
    iscrowd = bool(current["iscrowd"]) if p.iscrowd is None else p.iscrowd
    if p.segmentation is None:
        segmentation, area, bbox = current["segmentation"], current["area"], current["bbox"]
    else:
        image = pj._image(inst["image_id"], loc, "payload.instance_id")
        mask = pj._mask(p.segmentation, image, loc, m)
        segmentation, area, bbox = _segmentation_text(p.segmentation), mask.area, _bbox_text(mask)
    revision = inst["revision"] + 1
    pj._revision_row(
        seq, ev, p.instance_id, revision, "edited", inst["image_id"], category_id, iscrowd,
        segmentation, area, bbox, guideline,
    )  # fmt: skip
    pj._instance_row(
        p.instance_id, inst["image_id"], category_id, revision, False, inst["created_seq"], seq,
        None,
    )  # fmt: skip


def _mask_deleted(pj: Projector, seq: int, ev: ParsedEvent, loc: str, m: MaskInfo | None) -> None:
    p = ev.payload
    assert isinstance(p, MaskDeleted)
    actor = pj._get("actors", ev.envelope.actor)
    if actor is None or "review" not in _json_list(actor["roles"]):
        pj._actor_may(ev, loc, "annotate")  # reviewers may delete too
    guideline = pj._guideline(ev, loc)
    inst = pj._live_instance(p.instance_id, p.revision, loc)
    current = pj._current_revision(p.instance_id)
    revision = inst["revision"] + 1
    pj._revision_row(
        seq, ev, p.instance_id, revision, "deleted", inst["image_id"], current["category_id"],
        bool(current["iscrowd"]), current["segmentation"], current["area"], current["bbox"],
        guideline,
    )  # fmt: skip
    pj._instance_row(
        p.instance_id, inst["image_id"], current["category_id"], revision, True,
        inst["created_seq"], seq, None,
    )  # fmt: skip


def _review_decided(pj: Projector, seq: int, ev: ParsedEvent, loc: str, m: MaskInfo | None) -> None:
    p = ev.payload
    assert isinstance(p, ReviewDecided)
    pj._actor_may(ev, loc, "review")
    pj._guideline(ev, loc)
    inst = pj._live_instance(p.instance_id, p.revision, loc)
    pj.batch.add(
        "reviews",
        (pj.project, seq, p.instance_id, p.revision, ev.envelope.actor, p.decision, p.reason),
    )
    pj._instance_row(
        p.instance_id, inst["image_id"], inst["category_id"], inst["revision"], False,
        inst["created_seq"], seq, p.decision,
    )  # fmt: skip


def _release_created(
    pj: Projector, seq: int, ev: ParsedEvent, loc: str, m: MaskInfo | None
) -> None:
    p = ev.payload
    assert isinstance(p, ReleaseCreated)
    existing = pj._get("releases", p.name)
    if existing is not None:
        raise Conflict(
            f"release {p.name!r} already exists (entry {existing['seq']})",
            [FieldError(f"{loc}payload.name", "already exists")],
        )
    if p.tree_size > seq:
        raise InvalidInput.field(
            f"{loc}payload.tree_size",
            f"tree size {p.tree_size} is beyond the log ({seq} entries before this one)",
        )
    policy = p.policy.model_dump(mode="json", exclude_none=True)
    pj._put(
        "releases",
        p.name,
        (pj.project, p.name, seq, p.tree_size, dumps_column(policy), p.sha256),
    )


def _review_assigned(
    pj: Projector, seq: int, ev: ParsedEvent, loc: str, m: MaskInfo | None
) -> None:
    p = ev.payload
    assert isinstance(p, ReviewAssigned)
    assignee = pj._get("actors", p.assignee)
    if assignee is None:
        raise InvalidInput.field(
            f"{loc}payload.assignee", f"actor {p.assignee!r} is not registered in {pj.project}"
        )
    if "review" not in _json_list(assignee["roles"]):
        raise InvalidInput.field(
            f"{loc}payload.assignee", f"actor {p.assignee!r} ({assignee['kind']}) may not review"
        )
    pj._live_instance(p.instance_id, p.revision, loc)
    if pj._current_revision(p.instance_id)["actor"] == p.assignee:
        raise InvalidInput.field(
            f"{loc}payload.assignee",
            f"actor {p.assignee!r} drew revision {p.revision} of {p.instance_id!r} "
            "and may not be asked to review it",
        )
    pj.batch.add(
        "assignments",
        (pj.project, seq, p.instance_id, p.revision, p.assignee, p.rule, ev.envelope.actor),
    )


def _counts_declared(
    pj: Projector, seq: int, ev: ParsedEvent, loc: str, m: MaskInfo | None
) -> None:
    p = ev.payload
    assert isinstance(p, CountsDeclared)
    pj._image(p.image_id, loc, "payload.image_id")
    for i, c in enumerate(p.counts):
        pj._category(c.category_id, loc, f"payload.counts[{i}].category_id")
    counts = {str(c.category_id): c.count for c in p.counts}
    pj.batch.add("count_declarations", (pj.project, seq, p.image_id, dumps_column(counts)))


def _release_materialized(
    pj: Projector, seq: int, ev: ParsedEvent, loc: str, m: MaskInfo | None
) -> None:
    p = ev.payload
    assert isinstance(p, ReleaseMaterialized)
    if pj._get("releases", p.name) is None:
        raise InvalidInput.field(f"{loc}payload.name", f"release {p.name!r} does not exist")
    pj.batch.add(
        "materializations", (pj.project, seq, p.name, p.manifest_sha256, p.files, p.target)
    )


def _job_status_changed(
    pj: Projector, seq: int, ev: ParsedEvent, loc: str, m: MaskInfo | None
) -> None:
    assert isinstance(ev.payload, JobStatusChanged)  # recorded in the log only


_HANDLERS = {
    ProjectCreated: _project_created,
    ActorRegistered: _actor_registered,
    GuidelinePublished: _guideline_published,
    CategoryDefined: _category_defined,
    ImageRegistered: _image_registered,
    MaskCreated: _mask_created,
    MaskEdited: _mask_edited,
    MaskDeleted: _mask_deleted,
    ReviewDecided: _review_decided,
    ReleaseCreated: _release_created,
    ReviewAssigned: _review_assigned,
    CountsDeclared: _counts_declared,
    ReleaseMaterialized: _release_materialized,
    JobStatusChanged: _job_status_changed,
}
