"""Event models: what an annotation tool posts.

An event is an envelope (client UUID, type, actor, client time, tool, optional model
source, guideline version for mask and review events) around a typed payload. The
models check the shape of one event in isolation; rules that need the project's state
(the actor exists, the revision is current, the mask fits the image) live in
``ledger.validation``.

The stored form of an event is ``Event.model_dump(mode="json", exclude_none=True)``:
the same input always gives the same stored form, and the idempotency check compares
the canonical bytes of that form.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from ledger.errors import FieldError, InvalidInput

# Identifiers: printable, no whitespace or control characters, bounded length. Kept
# strict because ids appear in URLs, file names of exports and log lines.
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$"
Identifier = Annotated[str, StringConstraints(pattern=_ID_PATTERN)]
ShortText = Annotated[str, StringConstraints(max_length=2000)]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]

EventType = Literal[
    "project.created",
    "actor.registered",
    "guideline.published",
    "category.defined",
    "image.registered",
    "mask.created",
    "mask.edited",
    "mask.deleted",
    "review.decided",
    "release.created",
    "review.assigned",
    "counts.declared",
    "release.materialized",
    "job.status_changed",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
#: event types that change a mask or judge one: they name a guideline version
MASK_EVENTS = frozenset({"mask.created", "mask.edited", "mask.deleted"})
GUIDED_EVENTS = MASK_EVENTS | {"review.decided"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class ToolRef(_Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    version: Annotated[str, StringConstraints(min_length=1, max_length=100)]


class ModelRef(_Strict):
    """The model that proposed a pre-label, when a mask did not start with a person."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    version: Annotated[str, StringConstraints(min_length=1, max_length=100)]


class GuidelineRef(_Strict):
    id: Identifier
    version: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")]

    def key(self) -> str:
        return f"{self.id}@{self.version}"


# --- payloads ---------------------------------------------------------------------


class ProjectCreated(_Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    description: ShortText | None = None


class ActorRegistered(_Strict):
    actor_id: Identifier
    kind: Literal["annotator", "reviewer", "tool", "model"]
    #: what the actor may do; by default annotators, tools and models annotate and
    #: reviewers review. A person who does both lists both.
    roles: tuple[Literal["annotate", "review"], ...] | None = None
    display_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    organization: Identifier | None = None
    skills: tuple[Identifier, ...] = ()

    def effective_roles(self) -> tuple[str, ...]:
        if self.roles:
            return tuple(sorted(set(self.roles)))
        return ("review",) if self.kind == "reviewer" else ("annotate",)


class GuidelinePublished(_Strict):
    guideline_id: Identifier
    version: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")]
    sha256: Sha256Hex
    title: Annotated[str, StringConstraints(max_length=500)] | None = None
    uri: Annotated[str, StringConstraints(max_length=2000)] | None = None


class CategoryDefined(_Strict):
    category_id: Annotated[int, Field(ge=1, le=2**31 - 1, strict=True)]
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    supercategory: Annotated[str, StringConstraints(max_length=200)] | None = None


class ImageRegistered(_Strict):
    image_id: Identifier
    width: Annotated[int, Field(ge=1, le=100_000, strict=True)]
    height: Annotated[int, Field(ge=1, le=100_000, strict=True)]
    file_name: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    sha256: Sha256Hex | None = None
    #: frames of a video or sequence
    sequence_id: Identifier | None = None
    frame_index: Annotated[int, Field(ge=0, strict=True)] | None = None


# A COCO segmentation: compressed RLE {"size": [h, w], "counts": "..."} or a list of
# polygon rings. Its content is checked against the image in ledger.masks.
Segmentation = dict[str, Any] | list[Any]


class MaskCreated(_Strict):
    instance_id: Identifier
    image_id: Identifier
    category_id: Annotated[int, Field(ge=1, le=2**31 - 1, strict=True)]
    segmentation: Segmentation
    iscrowd: bool = False
    track_id: Identifier | None = None
    score: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] | None = None
    #: lineage: the instances this one was split from or merged out of
    parents: tuple[Identifier, ...] = ()
    relation: Literal["split", "merge", "copy"] | None = None

    @model_validator(mode="after")
    def _relation_needs_parents(self) -> MaskCreated:
        if not self.parents and self.relation is None:
            return self  # the usual case, which passes every check below
        if self.parents and self.relation is None:
            raise ValueError("relation is required when parents are given")
        if self.relation is not None and not self.parents:
            raise ValueError("relation needs at least one parent")
        if len(set(self.parents)) != len(self.parents):
            raise ValueError("parents must be distinct")
        if self.instance_id in self.parents:
            raise ValueError("an instance cannot be its own parent")
        return self


class MaskEdited(_Strict):
    instance_id: Identifier
    #: the revision this edit applies to; it must be the current one
    revision: Annotated[int, Field(ge=1, strict=True)]
    segmentation: Segmentation | None = None
    category_id: Annotated[int, Field(ge=1, le=2**31 - 1, strict=True)] | None = None
    iscrowd: bool | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> MaskEdited:
        if self.segmentation is None and self.category_id is None and self.iscrowd is None:
            raise ValueError("an edit must change segmentation, category_id or iscrowd")
        return self


class MaskDeleted(_Strict):
    instance_id: Identifier
    revision: Annotated[int, Field(ge=1, strict=True)]
    reason: ShortText | None = None


class ReviewDecided(_Strict):
    instance_id: Identifier
    revision: Annotated[int, Field(ge=1, strict=True)]
    decision: Literal["accept", "reject", "needs_changes"]
    reason: ShortText | None = None


class ReleasePolicy(_Strict):
    selection: Literal["accepted", "all"] = "accepted"
    categories: tuple[Annotated[int, Field(ge=1, strict=True)], ...] | None = None


class ReleaseCreated(_Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")]
    tree_size: Annotated[int, Field(ge=1, strict=True)]
    policy: ReleasePolicy = ReleasePolicy()
    sha256: Sha256Hex


class ReviewAssigned(_Strict):
    """A reviewer was asked to judge an instance's revision (routing or by hand)."""

    instance_id: Identifier
    revision: Annotated[int, Field(ge=1, strict=True)]
    assignee: Identifier
    #: the routing rule that chose the assignee, if any
    rule: Identifier | None = None
    reason: ShortText | None = None


class ExpectedCount(_Strict):
    category_id: Annotated[int, Field(ge=1, le=2**31 - 1, strict=True)]
    count: Annotated[int, Field(ge=0, le=1_000_000, strict=True)]


class CountsDeclared(_Strict):
    """How many instances of each category an image is expected to hold."""

    image_id: Identifier
    counts: Annotated[tuple[ExpectedCount, ...], Field(min_length=1, max_length=10_000)]

    @model_validator(mode="after")
    def _distinct_categories(self) -> CountsDeclared:
        ids = [c.category_id for c in self.counts]
        if len(set(ids)) != len(ids):
            raise ValueError("each category may be declared once per image")
        return self


class ReleaseMaterialized(_Strict):
    """A release's exports were written; the manifest lists every file with its SHA-256."""

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")]
    manifest_sha256: Sha256Hex
    files: Annotated[int, Field(ge=0, strict=True)]
    target: Annotated[str, StringConstraints(max_length=2000)] | None = None


class JobStatusChanged(_Strict):
    """An external annotation job (for example a CVAT job) changed status."""

    source: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
    job_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    status: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    stage: Annotated[str, StringConstraints(max_length=100)] | None = None
    task_id: Annotated[str, StringConstraints(max_length=200)] | None = None
    url: Annotated[str, StringConstraints(max_length=2000)] | None = None


PAYLOADS: dict[str, type[BaseModel]] = {
    "project.created": ProjectCreated,
    "actor.registered": ActorRegistered,
    "guideline.published": GuidelinePublished,
    "category.defined": CategoryDefined,
    "image.registered": ImageRegistered,
    "mask.created": MaskCreated,
    "mask.edited": MaskEdited,
    "mask.deleted": MaskDeleted,
    "review.decided": ReviewDecided,
    "release.created": ReleaseCreated,
    "review.assigned": ReviewAssigned,
    "counts.declared": CountsDeclared,
    "release.materialized": ReleaseMaterialized,
    "job.status_changed": JobStatusChanged,
}


class Event(_Strict):
    """The envelope every event shares."""

    id: UUID
    type: EventType
    actor: Identifier
    client_time: AwareDatetime
    guideline: GuidelineRef | None = None
    tool: ToolRef | None = None
    model: ModelRef | None = None
    payload: dict[str, Any]

    @field_validator("id")
    @classmethod
    def _no_nil_uuid(cls, value: UUID) -> UUID:
        if value.int == 0:
            raise ValueError("the nil UUID is not a valid event id")
        return value

    @model_validator(mode="after")
    def _guideline_where_needed(self) -> Event:
        if self.type in GUIDED_EVENTS and self.guideline is None:
            raise ValueError(f"{self.type} events must name the guideline version they follow")
        return self

    def typed_payload(self) -> BaseModel:
        payload: BaseModel = _validate_payload[self.type](self.payload)
        return payload


# parse_event calls the pydantic-core validators and serializers that model_validate and
# model_dump wrap, without the wrappers' per-call work.
_validate_event = Event.__pydantic_validator__.validate_python
_dump_event = Event.__pydantic_serializer__.to_python
_validate_payload = {k: v.__pydantic_validator__.validate_python for k, v in PAYLOADS.items()}
#: the envelope's payload is the raw dict; the stored form has the typed payload's dump
_RAW_PAYLOAD: set[str] = {"payload"}


class ParsedEvent:
    """An event that passed the shape checks, with its typed payload and stored form."""

    __slots__ = ("envelope", "payload", "stored")

    def __init__(self, envelope: Event, payload: BaseModel, stored: dict[str, Any]) -> None:
        self.envelope = envelope
        self.payload = payload
        self.stored = stored


def _loc(prefix: str, parts: tuple[int | str, ...]) -> str:
    out = prefix
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def _field_errors(prefix: str, exc: ValidationError) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False):
        message = re.sub(r"^Value error, ", "", str(err["msg"]))
        errors.append(FieldError(_loc(prefix, tuple(err["loc"])), message))
    return errors


def parse_event(raw: Any, loc: str = "") -> ParsedEvent:
    """Check the shape of one event; raise InvalidInput naming every bad field."""
    if not isinstance(raw, dict):
        raise InvalidInput("invalid event", [FieldError(loc or "event", "must be a JSON object")])
    try:
        envelope: Event = _validate_event(raw)
    except ValidationError as e:
        raise InvalidInput("invalid event", _field_errors(loc, e)) from e
    try:
        payload = envelope.typed_payload()
    except ValidationError as e:
        raise InvalidInput("invalid event", _field_errors(_loc(loc, ("payload",)), e)) from e
    # payload is the envelope's last field, so it stays last in the stored form
    stored: dict[str, Any] = _dump_event(
        envelope, mode="json", exclude_none=True, exclude=_RAW_PAYLOAD
    )
    stored["payload"] = payload.__pydantic_serializer__.to_python(
        payload, mode="json", exclude_none=True
    )
    return ParsedEvent(envelope, payload, stored)


def event_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of an event: the envelope, and for each type the schema
    its payload must match (``schema/json/event.schema.json`` is this document).

    The schema checks shapes only; the ledger's rules that need the project's state
    (actor roles, published guidelines, mask sizes, current revisions) are not in it."""
    from pydantic.json_schema import models_json_schema

    models: list[type[BaseModel]] = [Event, *dict.fromkeys(PAYLOADS.values())]
    _, document = models_json_schema([(m, "validation") for m in models])
    defs: dict[str, Any] = document["$defs"]
    schema = dict(defs.pop(Event.__name__))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["allOf"] = [
        {
            "if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
            "then": {"properties": {"payload": {"$ref": f"#/$defs/{model.__name__}"}}},
        }
        for kind, model in PAYLOADS.items()
    ]
    schema["$defs"] = defs
    return schema
