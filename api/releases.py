"""Releases (create, list, export, verify, diff), instance lineage and as-of state.

Creating a release exports the state, hashes it and appends ``release.created``; then
``ledger.materialize.on_release_created`` writes the configured exports and notifies
subscribers (it never fails the request: the release is already recorded).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from flask import Blueprint, Response, stream_with_context
from pydantic import BaseModel, ConfigDict, Field

from api.http import parse_body
from api.models import MAX_INT, Identifier, decode_cursor, encode_cursor
from api.spec import operation
from api.state import current_token, state
from ledger.asof import (
    as_of,
    check_size,
    iter_instances,
    log_size,
    size_at_time,
)
from ledger.diff import Change, diff, parse_side, summarize
from ledger.errors import FieldError, InvalidInput
from ledger.lineage import lineage, to_prov
from ledger.releases import (
    Release,
    create_release,
    export_release,
    get_release,
    list_releases,
    parse_policy,
    verify_release,
)

bp = Blueprint("releases", __name__)
log = logging.getLogger("ledger.api.releases")

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$"
_NAME = re.compile(NAME_PATTERN)
_SIDE_PATTERN = r"^(@[0-9]{1,16}|[A-Za-z0-9][A-Za-z0-9._+-]{0,99})$"
_SIDE = re.compile(_SIDE_PATTERN)
_INSTANCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$")
SHA256_HEADER = "X-Content-SHA256"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Policy(_Out):
    selection: Literal["accepted", "all"]
    categories: list[int] | None = None


class ReleaseOut(_Out):
    project: str
    name: str
    seq: int = Field(description="sequence number of the release.created entry")
    tree_size: int
    policy: Policy
    sha256: str = Field(description="hex SHA-256 of the COCO export")


class ReleaseList(_Out):
    project: str
    releases: list[ReleaseOut]


class ReleaseCreate(_In):
    name: str = Field(pattern=NAME_PATTERN)
    selection: Literal["accepted", "all"] = "accepted"
    categories: list[Annotated[int, Field(ge=1, le=MAX_INT)]] | None = Field(
        None, min_length=1, max_length=1000
    )
    at: int | None = Field(None, ge=1, le=MAX_INT, description="tree size (default: log)")
    actor: Identifier | None = Field(None, description="default: the token's name")


class ReleaseCheckOut(_Out):
    ok: bool
    project: str
    name: str
    seq: int
    tree_size: int
    expected_sha256: str
    rebuilt_sha256: str
    root_hash: str
    size: int
    problems: list[str]


class DiffQuery(_In):
    limit: int = Field(1000, ge=1, le=10000, description="most changes listed")


class ChangeOut(_Out):
    kind: str
    instance_id: str
    image_id: str
    changes: list[str]
    before_revision: int | None
    after_revision: int | None
    actor: str | None
    seq: int | None
    recorded_at: str | None


class DiffSummaryOut(_Out):
    added: int
    removed: int
    changed: int


class DiffOut(_Out):
    project: str
    old: str
    new: str
    summary: DiffSummaryOut
    changes: list[ChangeOut]
    truncated: bool = Field(description="more changes exist than `limit` listed")


class LineageQuery(_In):
    format: Literal["json", "prov"] = Field("json", description="`prov`: W3C PROV-JSON")


class StateQuery(_In):
    at: int | None = Field(None, ge=1, le=MAX_INT, description="tree size")
    time: str | None = Field(
        None, max_length=64, description="RFC 3339 time with a zone: the log as of then"
    )
    include_deleted: bool = False
    limit: int = Field(100, ge=1, le=1000)
    cursor: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,200}$")


class StateInstance(_Out):
    instance_id: str
    annotation_id: int
    image_id: str
    category_id: int
    revision: int
    seq: int
    op: str
    iscrowd: bool
    area: int
    bbox: list[float]
    actor: str
    guideline: str
    review: str | None
    reviewer: str | None


class StateOut(_Out):
    project: str
    tree_size: int
    root_hash: str
    recorded_at: str = Field(description="server time of the last entry in the tree")
    instances: list[StateInstance]
    next_cursor: str | None


def _out(r: Release) -> ReleaseOut:
    cats = list(r.policy.categories) if r.policy.categories is not None else None
    return ReleaseOut(
        project=r.project,
        name=r.name,
        seq=r.seq,
        tree_size=r.tree_size,
        policy=Policy(selection=r.policy.selection, categories=cats),
        sha256=r.sha256,
    )


def _name(name: str, loc: str = "path.name") -> str:
    if not _NAME.match(name):
        raise InvalidInput.field(loc, "not a release name (1-100 of A-Za-z0-9._+-)")
    return name


def _located(e: InvalidInput, loc: str) -> InvalidInput:
    return InvalidInput(e.message, [FieldError(loc, err.message) for err in e.errors])


_NAME_SCHEMA = {"name": {"type": "string", "pattern": NAME_PATTERN}}


@operation(
    bp,
    "/v1/projects/<project>/releases",
    summary="Releases of a project, oldest first",
    tag="releases",
    response=ReleaseList,
    errors=(404,),
)
def list_all(project: str) -> ReleaseList:
    st = state()
    st.ledger.head(project)
    return ReleaseList(
        project=project, releases=[_out(r) for r in list_releases(st.store, project)]
    )


@operation(
    bp,
    "/v1/projects/<project>/releases",
    "POST",
    summary="Create a release: export the state, hash it, record release.created",
    tag="releases",
    response=ReleaseOut,
    status=201,
    body=ReleaseCreate,
    action="release.create",
    errors=(404, 409),
    description="`selection` (`accepted`: only accepted instances, or `all`), optional "
    "`categories`, `at` (tree size, default the whole log) and `actor` (default: the "
    "token's name). 409 if the name is taken. The configured exports and notifications "
    "follow; their failures are logged and do not undo the release.",
)
def create(project: str) -> Any:
    body = parse_body(ReleaseCreate)
    st = state()
    st.ledger.head(project)
    token = current_token()
    try:
        policy = parse_policy(body.selection, body.categories)
    except InvalidInput as e:
        raise _located(e, "body.categories") from None
    if body.at is not None:
        check_size(st.store, project, body.at, "body.at")
    release = create_release(
        st.ledger,
        project,
        body.name,
        actor=body.actor or token.name,
        principal=token.principal,
        policy=policy,
        at=body.at,
    )
    try:
        from ledger.materialize import on_release_created

        hook = on_release_created(
            st.ledger, project, release.name, st.settings, principal=token.principal
        )
        for problem in hook.errors:
            log.error("release %s/%s: %s", project, release.name, problem)
    except Exception:  # the release is recorded; its follow-ups must not fail the request
        log.exception("release %s/%s: exports or notifications failed", project, release.name)
    return _out(release), 201


@operation(
    bp,
    "/v1/projects/<project>/releases/<name>",
    summary="One release",
    tag="releases",
    response=ReleaseOut,
    errors=(404,),
    path_schemas=_NAME_SCHEMA,
)
def get_one(project: str, name: str) -> ReleaseOut:
    _name(name)
    st = state()
    st.ledger.head(project)
    return _out(get_release(st.store, project, name))


@operation(
    bp,
    "/v1/projects/<project>/releases/<name>/export",
    summary="The release's COCO export, streamed",
    tag="releases",
    errors=(404,),
    path_schemas=_NAME_SCHEMA,
    description=f"COCO JSON, streamed. `{SHA256_HEADER}` carries the SHA-256 the release "
    "recorded: hash the body and compare (`POST .../verify` rebuilds it from the log).",
)
def export(project: str, name: str) -> Response:
    _name(name)
    st = state()
    st.ledger.head(project)
    release = get_release(st.store, project, name)
    chunks = export_release(st.store, project, name)
    first = next(chunks, b"")  # errors before the first byte are still problems

    def body() -> Iterator[bytes]:
        yield first
        yield from chunks

    response = Response(stream_with_context(body()), status=200, mimetype="application/json")
    response.headers[SHA256_HEADER] = release.sha256
    response.headers["Content-Disposition"] = f'attachment; filename="{project}-{name}.json"'
    return response


@operation(
    bp,
    "/v1/projects/<project>/releases/<name>/verify",
    "POST",
    summary="Rebuild a release from the log alone and compare its hash",
    tag="releases",
    response=ReleaseCheckOut,
    action="verify",
    errors=(404,),
    path_schemas=_NAME_SCHEMA,
    description="Replays the log up to the release's tree size, rebuilds the export and "
    "compares its SHA-256 with the recorded one. `ok` is false, with `problems`, when "
    "they differ. No body.",
)
def verify(project: str, name: str) -> ReleaseCheckOut:
    _name(name)
    st = state()
    st.ledger.head(project)
    check = verify_release(st.store, project, name)
    fields = dataclasses.asdict(check)
    fields["problems"] = list(check.problems)
    return ReleaseCheckOut(ok=check.ok, **fields)


def _change(c: Change) -> ChangeOut:
    return ChangeOut(
        kind=c.kind,
        instance_id=c.instance_id,
        image_id=c.image_id,
        changes=list(c.changes),
        before_revision=c.before.revision if c.before is not None else None,
        after_revision=c.after.revision if c.after is not None else None,
        actor=c.actor,
        seq=c.seq,
        recorded_at=c.recorded_at,
    )


@operation(
    bp,
    "/v1/projects/<project>/releases/<old>/diff/<new>",
    summary="Instances added, removed and changed between two releases",
    tag="releases",
    response=DiffOut,
    query=DiffQuery,
    errors=(404,),
    path_schemas={
        "old": {"type": "string", "pattern": _SIDE_PATTERN},
        "new": {"type": "string", "pattern": _SIDE_PATTERN},
    },
    description="Each side is a release name, or `@N` for the whole state at tree size N.",
)
def diff_releases(project: str, old: str, new: str, query: DiffQuery) -> DiffOut:
    for loc, side in (("path.old", old), ("path.new", new)):
        if not _SIDE.match(side):
            raise InvalidInput.field(loc, "a release name, or @ and a tree size")
    st = state()
    st.ledger.head(project)
    a = parse_side(st.store, project, old, loc="path.old")
    b = parse_side(st.store, project, new, loc="path.new")
    changes = list(diff(st.store, project, a, b))
    s = summarize(changes)
    return DiffOut(
        project=project,
        old=a.label,
        new=b.label,
        summary=DiffSummaryOut(added=s.added, removed=s.removed, changed=s.changed),
        changes=[_change(c) for c in changes[: query.limit]],
        truncated=len(changes) > query.limit,
    )


@operation(
    bp,
    "/v1/projects/<project>/instances/<path:instance_id>/lineage",
    summary="An instance's lineage: every entry about it, and its links",
    tag="instances",
    query=LineageQuery,
    errors=(404,),
    path_schemas={"instance_id": {"type": "string", "pattern": _INSTANCE.pattern}},
    description="Each step carries its sequence number and leaf hash, with the tree size "
    "and root they were read at, to prove them with an inclusion proof. "
    "`?format=prov` answers a W3C PROV-JSON document instead.",
)
def instance_lineage(project: str, instance_id: str, query: LineageQuery) -> Any:
    if not _INSTANCE.match(instance_id):
        raise InvalidInput.field("path.instance_id", "not a valid instance id")
    st = state()
    st.ledger.head(project)
    lin = lineage(st.store, project, instance_id)
    if query.format == "prov":
        return to_prov(lin), 200
    return dataclasses.asdict(lin), 200


@operation(
    bp,
    "/v1/projects/<project>/state",
    summary="The project's instances as of a tree size or a time",
    tag="instances",
    response=StateOut,
    query=StateQuery,
    errors=(404,),
    description="`at` (tree size) or `time` (the log as of that server time), not both; "
    "neither: the whole log. Instances in creation order without masks, paged with "
    "`limit` and `cursor`.",
)
def state_as_of(project: str, query: StateQuery) -> StateOut:
    st = state()
    st.ledger.head(project)
    if query.at is not None and query.time is not None:
        raise InvalidInput.field("query.time", "give at or time, not both")
    if query.at is not None:
        size = check_size(st.store, project, query.at, "query.at")
    elif query.time is not None:
        try:
            size = size_at_time(st.store, project, query.time, "query.time")
        except (OverflowError, ValueError):
            raise InvalidInput.field("query.time", "time is out of range") from None
    else:
        size = log_size(st.store, project)
    after = -1
    if query.cursor is not None:
        try:
            after = int(decode_cursor(query.cursor))
        except ValueError:
            raise InvalidInput.field("query.cursor", "not a cursor this service issued") from None
    head = as_of(st.store, project, size)
    found = iter_instances(
        st.store, project, size, masks=False, include_deleted=query.include_deleted
    )
    chosen = itertools.islice((i for i in found if i.annotation_id > after), query.limit + 1)
    rows = list(chosen)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return StateOut(
        project=project,
        tree_size=head.tree_size,
        root_hash=head.root_hash.hex(),
        recorded_at=head.recorded_at,
        instances=[
            StateInstance(
                **{
                    k: v
                    for k, v in dataclasses.asdict(i).items()
                    if k in StateInstance.model_fields
                }
            )
            for i in rows
        ],
        next_cursor=encode_cursor(str(rows[-1].annotation_id)) if more else None,
    )
