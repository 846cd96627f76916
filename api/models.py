"""The pydantic models the service validates with and answers in.

The same models generate the OpenAPI document (``api.openapi``), so the document
cannot drift from what the service checks. Events themselves are validated by
``ledger.events`` (through ``Ledger.append``), whose models the document also uses.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from ledger.auth import NAME_PATTERN, Role
from ledger.entry import format_time
from ledger.events import EVENT_TYPES
from ledger.service import PROJECT_PATTERN

#: the largest integer JSON carries exactly; bounds every integer parameter
MAX_INT = 2**53 - 1

ProjectName = Annotated[str, StringConstraints(pattern=PROJECT_PATTERN.pattern)]
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$")]
TokenName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Cursor = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,200}$")]
Hex32 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Seq = Annotated[int, Field(ge=0, le=MAX_INT)]
Limit = Annotated[int, Field(ge=1, le=1000)]


def _known_type(value: str) -> str:
    if value not in EVENT_TYPES:
        raise ValueError(f"unknown event type; one of {', '.join(EVENT_TYPES)}")
    return value


EventType = Annotated[
    str, AfterValidator(_known_type), Field(json_schema_extra={"enum": list(EVENT_TYPES)})
]


class _In(BaseModel):
    """Input: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- cursors --------------------------------------------------------------------------


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as e:
        raise ValueError("not a cursor this service issued") from e


def _time_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    try:
        return format_time(value)
    except (OverflowError, ValueError) as e:
        raise ValueError("time is out of range") from e


# --- problems -------------------------------------------------------------------------


class FieldProblem(_Out):
    loc: str = Field(description="where: `events[3].payload.revision`, `query.limit`, ...")
    message: str


class Problem(_Out):
    """An RFC 9457 problem detail."""

    type: str = Field(description="`urn:annotation-ledger:problem:<kind>`")
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldProblem] | None = None


# --- health ---------------------------------------------------------------------------


class Health(_Out):
    status: Literal["ok"]


class Ready(_Out):
    status: Literal["ready"]
    database: str = Field(description="`sqlite` or `postgresql`")


# --- projects -------------------------------------------------------------------------


class ProjectSummary(_Out):
    project: str
    size: int = Field(description="number of entries in the log")
    last_recorded_at: str | None


class ProjectList(_Out):
    projects: list[ProjectSummary]


class ProjectInfo(ProjectSummary):
    root: Hex32 = Field(description="RFC 9162 Merkle root of the log, hex")
    name: str | None
    description: str | None
    created_at: str | None = Field(description="recorded_at of the project.created entry")


class ProjectCreate(_In):
    """Creates a project: the service appends its project.created event."""

    project: ProjectName
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    #: the event's actor; the token's name when left out
    actor: Identifier | None = None


# --- events and entries ---------------------------------------------------------------


class Appended(_Out):
    id: str = Field(description="the event's UUID")
    seq: int = Field(description="its sequence number (the original one for a retry)")
    duplicate: bool = Field(description="true when the event was already in the log")


class AppendResponse(_Out):
    project: str
    size: int = Field(description="log size after the append")
    root: Hex32 = Field(description="Merkle root at that size, hex")
    appended: int = Field(description="events newly appended (the others were retries)")
    results: list[Appended]


class EntriesQuery(_In):
    from_: Seq = Field(default=0, alias="from", description="first sequence number")
    to: Seq | None = Field(default=None, description="stop before this sequence number")
    type: EventType | None = None
    actor: Identifier | None = None
    instance: Identifier | None = None
    image: Identifier | None = None
    guideline: (
        Annotated[
            str,
            StringConstraints(
                pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}@[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"
            ),
        ]
        | None
    ) = Field(default=None, description="guideline version, `id@version`")
    since: AwareDatetime | None = Field(default=None, description="recorded at or after")
    until: AwareDatetime | None = Field(default=None, description="recorded before")
    limit: Limit = 100
    cursor: Cursor | None = Field(default=None, description="`next_cursor` of the page before")

    @field_validator("since", "until")
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        _time_text(value)
        return value

    @field_validator("cursor")
    @classmethod
    def _cursor(cls, value: str | None) -> str | None:
        if value is not None:
            text = decode_cursor(value)
            if not re.fullmatch(r"s[0-9]{1,16}", text) or int(text[1:]) > MAX_INT:
                raise ValueError("not a cursor this service issued")
        return value

    def start(self) -> int:
        after = int(decode_cursor(self.cursor)[1:]) if self.cursor else 0
        return max(self.from_, after)

    def since_text(self) -> str | None:
        return _time_text(self.since)

    def until_text(self) -> str | None:
        return _time_text(self.until)


class Entry(_Out):
    seq: int
    leaf_hash: Hex32 = Field(description="SHA-256(0x00 ‖ entry bytes), hex")
    entry: str = Field(
        description="the stored entry exactly: its UTF-8 encoding is the bytes that are hashed"
    )


class EntriesPage(_Out):
    project: str
    size: int = Field(description="log size when the page was read")
    entries: list[Entry]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at end")


# --- instances ------------------------------------------------------------------------


class InstancesQuery(_In):
    image: Identifier | None = None
    category: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    include_deleted: bool = False
    limit: Limit = 100
    cursor: Cursor | None = None

    @field_validator("cursor")
    @classmethod
    def _cursor(cls, value: str | None) -> str | None:
        if value is not None:
            decode_cursor(value)
        return value

    def after(self) -> str | None:
        return decode_cursor(self.cursor) if self.cursor else None


class InstanceSummary(_Out):
    instance_id: str
    image_id: str
    category_id: int
    revision: int = Field(description="the current revision; edits and reviews must name it")
    deleted: bool
    created_seq: int
    updated_seq: int
    review: str | None = Field(description="latest decision on the current revision")


class Revision(_Out):
    revision: int
    seq: int
    op: Literal["created", "edited", "deleted"]
    image_id: str
    category_id: int
    iscrowd: bool
    segmentation: Any = Field(description="COCO RLE or polygons, as submitted")
    area: int
    bbox: list[float]
    actor: str
    guideline: str


class InstanceState(InstanceSummary):
    current: Revision


class InstanceList(_Out):
    instances: list[InstanceSummary]
    next_cursor: str | None


# --- verification ---------------------------------------------------------------------


class VerifyFailure(_Out):
    seq: int = Field(description="the first bad entry, -1 for the log head")
    kind: str
    message: str


class VerifyReport(_Out):
    project: str
    ok: bool
    size: int
    checked: int
    root: Hex32 | None
    failure: VerifyFailure | None


# --- tokens ---------------------------------------------------------------------------


class TokenCreate(_In):
    role: Role
    project: ProjectName | None = Field(default=None, description="null: every project")
    name: TokenName | None = None


class TokenInfo(_Out):
    id: str
    name: str
    role: Role
    project: str | None
    principal: str = Field(description="what entries record: `token:<name>`")
    created_at: str
    created_by: str
    revoked_at: str | None


class TokenCreated(TokenInfo):
    token: str = Field(description="the secret; shown only in this answer")


class TokenList(_Out):
    tokens: list[TokenInfo]
