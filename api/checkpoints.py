"""Signed checkpoints, Merkle proofs and the published verifier keys.

Checkpoints are issued by ``ledger.checkpoints.CheckpointService``: on demand (POST,
admin), and by policy after appends (``checkpoint_every`` entries) and from a daemon
timer in each worker (``checkpoint_interval`` seconds). The policy runs after the
append has committed and never makes an append fail.

``GET .../checkpoints/latest`` issues the project's first checkpoint when it has none
yet, so an auditor always gets a signed tree head to start from.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from flask import Blueprint, Flask, Response, request
from pydantic import BaseModel, ConfigDict, Field

from api.http import json_response
from api.models import MAX_INT
from api.spec import operation
from api.state import state
from ledger.checkpoints import (
    CheckpointService,
    CheckpointTimer,
    StoredCheckpoint,
    get_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    published_verifier_keys,
    stored_verifier_keys,
)
from ledger.errors import ConfigError, FieldError, InvalidInput, LedgerError, NotFound
from ledger.proofs import consistency_proof, inclusion_proof
from ledger.service import AppendResult

bp = Blueprint("checkpoints", __name__)
log = logging.getLogger("ledger.api.checkpoints")

Size = Field(ge=1, le=MAX_INT)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckpointJSON(BaseModel):
    """A signed checkpoint; ``note`` is the C2SP signed note, byte for byte."""

    model_config = ConfigDict(frozen=True)
    project: str
    tree_size: int
    root_hash: str = Field(description="hex SHA-256 Merkle root")
    key_name: str
    key_id: str = Field(description="hex key id (4 bytes)")
    created_at: str
    note: str


class CheckpointList(BaseModel):
    model_config = ConfigDict(frozen=True)
    project: str
    checkpoints: list[CheckpointJSON]
    next_after: int | None = Field(
        description="pass as `after` to read the next page; null when there is no more"
    )


class CheckpointsQuery(_In):
    after: int = Field(0, ge=0, le=MAX_INT, description="only tree sizes above this")
    limit: int = Field(100, ge=1, le=1000, description="page size")


class InclusionQuery(_In):
    index: int = Field(ge=0, le=MAX_INT, description="sequence number of the entry")
    size: int | None = Field(None, ge=1, le=MAX_INT, description="tree size (default: log size)")


class ConsistencyQuery(_In):
    from_: int = Field(alias="from", ge=1, le=MAX_INT, description="the older tree size")
    to: int | None = Field(None, ge=1, le=MAX_INT, description="newer tree size (default: log)")


class InclusionProofJSON(BaseModel):
    model_config = ConfigDict(frozen=True)
    project: str
    leaf_index: int
    tree_size: int
    leaf_hash: str
    root_hash: str
    inclusion_path: list[str] = Field(description="RFC 9162 inclusion path, hex hashes")


class ConsistencyProofJSON(BaseModel):
    model_config = ConfigDict(frozen=True)
    project: str
    first: int
    second: int
    first_root_hash: str
    second_root_hash: str
    consistency_path: list[str] = Field(description="RFC 9162 consistency path, hex hashes")


# --- the service in this worker --------------------------------------------------------

_lock = threading.Lock()


def _service(app: Flask | None = None) -> CheckpointService:
    """This app's checkpoint service (made on first use: it loads or creates the key)."""
    from flask import current_app

    target = app if app is not None else current_app
    with _lock:
        found = target.extensions.get("ledger.checkpoints")
        if found is None:
            st = target.extensions["ledger"]
            found = CheckpointService.from_settings(st.store, st.settings)
            target.extensions["ledger.checkpoints"] = found
    assert isinstance(found, CheckpointService)
    return found


def init_app(app: Flask) -> None:
    """Apply the checkpoint policy after appends and from a timer in each worker."""
    st = app.extensions["ledger"]
    previous = st.ledger.on_append
    try:
        service = _service(app)
    except LedgerError as e:
        log.error("checkpoints are not issued automatically: %s", e)
        return

    def after_append(result: AppendResult) -> None:
        if previous is not None:
            previous(result)
        try:
            service.on_append(result)
        except Exception:  # never let checkpointing break an append
            log.exception("checkpoint policy failed for project %s", result.project)

    st.ledger.on_append = after_append
    if not (service.every or service.interval):
        return
    started: dict[str, Any] = {}

    @app.before_request
    def _start_timer() -> None:
        # started in the serving process, on its first request (not at import time)
        if started.get("pid") == os.getpid():
            return
        with _lock:
            if started.get("pid") != os.getpid():
                started["pid"] = os.getpid()
                started["timer"] = _SafeTimer(service).start()


class _SafeTimer(CheckpointTimer):
    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.service.maybe_issue_all()
            except Exception:  # the database may be restarting: try next time
                log.exception("checkpoint timer failed")


# --- views --------------------------------------------------------------------------


def _want_json() -> bool:
    """``?format=json`` asks for JSON, else text (the only query parameter allowed)."""
    extra = sorted(set(request.args) - {"format"})
    if extra:
        raise InvalidInput.field(f"query.{extra[0]}", "unknown parameter")
    values = request.args.getlist("format")
    if len(values) > 1:
        raise InvalidInput.field("query.format", "given more than once")
    fmt = values[0] if values else "text"
    if fmt not in ("json", "text"):
        raise InvalidInput.field("query.format", "must be json or text")
    return fmt == "json"


def _answer(cp: StoredCheckpoint) -> Response:
    if _want_json():
        return json_response(cp.to_json())
    return Response(cp.note, status=200, mimetype="text/plain")


_FORMAT = (
    "The signed note as `text/plain`; `?format=json` answers JSON (project, "
    "tree_size, root_hash, key_name, key_id, created_at, note)."
)


@operation(
    bp,
    "/v1/projects/<project>/checkpoints/latest",
    summary="The latest signed checkpoint (a C2SP signed note)",
    tag="checkpoints",
    content_type="text/plain",
    errors=(404, 422),
    description=_FORMAT + " Issues the project's first checkpoint if it has none yet.",
)
def latest(project: str) -> Response:
    st = state()
    st.ledger.head(project)
    _want_json()
    cp = latest_checkpoint(st.store, project)
    if cp is None:
        cp = _service().issue(project)
    return _answer(cp)


@operation(
    bp,
    f"/v1/projects/<project>/checkpoints/<int(max={MAX_INT}):size>",
    summary="The signed checkpoint at a tree size",
    tag="checkpoints",
    content_type="text/plain",
    errors=(404, 422),
    description=_FORMAT + " 404 if no checkpoint was issued at that size.",
    path_schemas={"size": {"type": "integer", "minimum": 0, "maximum": MAX_INT}},
)
def at_size(project: str, size: int) -> Response:
    st = state()
    st.ledger.head(project)
    _want_json()
    return _answer(get_checkpoint(st.store, project, size))


@operation(
    bp,
    "/v1/projects/<project>/checkpoints",
    summary="Checkpoints issued for a project, smallest tree size first",
    tag="checkpoints",
    response=CheckpointList,
    query=CheckpointsQuery,
    errors=(404,),
)
def list_all(project: str, query: CheckpointsQuery) -> CheckpointList:
    st = state()
    st.ledger.head(project)
    found = list_checkpoints(st.store, project, after=query.after, limit=query.limit + 1)
    more = len(found) > query.limit
    found = found[: query.limit]
    return CheckpointList(
        project=project,
        checkpoints=[CheckpointJSON(**cp.to_json()) for cp in found],
        next_after=found[-1].size if more else None,
    )


@operation(
    bp,
    "/v1/projects/<project>/checkpoints",
    "POST",
    summary="Issue a signed checkpoint of the whole log now",
    tag="checkpoints",
    response=CheckpointJSON,
    status=201,
    action="checkpoint.create",
    errors=(404, 409),
    description="Signs the current log (after proving it extends the latest checkpoint). "
    "If the latest checkpoint already covers the whole log it is returned as is.",
)
def issue(project: str) -> Any:
    st = state()
    st.ledger.head(project)
    cp = _service().issue(project)
    return CheckpointJSON(**cp.to_json()), 201


def _proof_errors(e: InvalidInput, names: dict[str, str]) -> InvalidInput:
    errors = [FieldError(f"query.{names.get(err.loc, err.loc)}", err.message) for err in e.errors]
    return InvalidInput(e.message, errors)


@operation(
    bp,
    "/v1/projects/<project>/proofs/inclusion",
    summary="RFC 9162 inclusion proof of an entry in a tree size",
    tag="checkpoints",
    response=InclusionProofJSON,
    query=InclusionQuery,
    errors=(404,),
    description="Hashes are hex. `index` must be below `size`, and `size` at most the "
    "log size (422 otherwise).",
)
def prove_inclusion(project: str, query: InclusionQuery) -> InclusionProofJSON:
    st = state()
    st.ledger.head(project)
    try:
        proof = inclusion_proof(st.store, project, query.index, query.size)
    except InvalidInput as e:
        raise _proof_errors(e, {"tree_size": "size"}) from None
    return InclusionProofJSON(**proof.to_json())


@operation(
    bp,
    "/v1/projects/<project>/proofs/consistency",
    summary="RFC 9162 consistency proof between two tree sizes",
    tag="checkpoints",
    response=ConsistencyProofJSON,
    query=ConsistencyQuery,
    errors=(404,),
    description="Proves that the tree of `to` entries (default: the log) extends the tree "
    "of `from` entries. Hashes are hex.",
)
def prove_consistency(project: str, query: ConsistencyQuery) -> ConsistencyProofJSON:
    st = state()
    st.ledger.head(project)
    try:
        proof = consistency_proof(st.store, project, query.from_, query.to)
    except InvalidInput as e:
        raise _proof_errors(e, {"first": "from", "second": "to", "tree_size": "to"}) from None
    return ConsistencyProofJSON(**proof.to_json())


@operation(
    bp,
    "/v1/keys",
    summary="Published verifier keys, one per line",
    tag="checkpoints",
    content_type="text/plain",
    auth=False,
    description="The keys checkpoints are signed with (`<name>+<id>+<base64>`), current "
    "and rotated, one per line. Public: no token is needed. Compare them with the keys "
    "you hold out of band; never trust a checkpoint only because these keys verify it.",
)
def keys() -> Response:
    st = state()
    lines: dict[str, None] = {}
    try:
        found = published_verifier_keys(st.settings)
    except (ConfigError, NotFound, OSError) as e:
        log.error("cannot read the verifier keys: %s", e)
        found = []
    for verifier in [*found, *stored_verifier_keys(st.store)]:
        lines.setdefault(verifier.key_string(), None)
    text = "".join(f"{k}\n" for k in lines)
    return Response(text, status=200, mimetype="text/plain")
