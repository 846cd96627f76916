"""Projects: list, create, describe, verify."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from flask import Blueprint

from api.http import parse_body
from api.models import (
    ProjectCreate,
    ProjectInfo,
    ProjectList,
    ProjectSummary,
    VerifyFailure,
    VerifyReport,
)
from api.spec import operation
from api.state import current_token, state
from ledger.auth import require
from ledger.errors import Conflict
from ledger.merkle import tree_hash
from ledger.verify import verify_log

bp = Blueprint("projects", __name__)


@operation(
    bp,
    "/v1/projects",
    summary="List the projects the token may see, with their log sizes",
    tag="projects",
    response=ProjectList,
)
def list_projects() -> ProjectList:
    token = current_token()
    heads = [h for h in state().store.projects() if h.size and token.in_scope(h.project)]
    summaries = [
        ProjectSummary(project=h.project, size=h.size, last_recorded_at=h.last_recorded_at)
        for h in heads
    ]
    return ProjectList(projects=summaries)


@operation(
    bp,
    "/v1/projects",
    "POST",
    summary="Create a project (appends its project.created event)",
    tag="projects",
    response=ProjectInfo,
    status=201,
    body=ProjectCreate,
    action="project.create",
    errors=(409,),
)
def create_project() -> tuple[ProjectInfo, int]:
    body = parse_body(ProjectCreate)
    token = current_token()
    require(token, "project.create", body.project)
    st = state()
    head = st.store.head(body.project)
    if head is not None and head.size:
        raise Conflict(f"project {body.project} already exists")
    payload: dict[str, str] = {"name": body.name}
    if body.description is not None:
        payload["description"] = body.description
    event = {
        "id": str(uuid.uuid4()),
        "type": "project.created",
        "actor": body.actor or token.name,
        "client_time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "payload": payload,
    }
    st.ledger.append(body.project, [event], token.principal)
    return project_info(body.project), 201


def project_info(project: str) -> ProjectInfo:
    st = state()
    head = st.ledger.head(project)  # NotFound when it does not exist
    root = tree_hash(head.size, lambda indexes: st.store.read_hashes(project, indexes))
    first = next(iter(st.store.iter_entries(project, 0, 1)), None)
    name = description = created_at = None
    if first is not None:
        entry = json.loads(first[1])
        payload = entry["event"].get("payload", {})
        name, description = payload.get("name"), payload.get("description")
        created_at = entry.get("recorded_at")
    return ProjectInfo(
        project=project,
        size=head.size,
        last_recorded_at=head.last_recorded_at,
        root=root.hex(),
        name=name,
        description=description,
        created_at=created_at,
    )


@operation(
    bp,
    "/v1/projects/<project>",
    summary="A project: log size, Merkle root, name",
    tag="projects",
    response=ProjectInfo,
    errors=(404,),
)
def get_project(project: str) -> ProjectInfo:
    return project_info(project)


@operation(
    bp,
    "/v1/projects/<project>/verify",
    summary="Recompute every leaf, chain link and tree hash of a project's log",
    tag="projects",
    response=VerifyReport,
    action="verify",
    errors=(404,),
    description="Reads the whole log: for large logs prefer `ledger verify` on a replica. "
    "A log that does not verify is answered with 200 and `ok: false`, naming the first "
    "bad entry.",
)
def verify_project(project: str) -> VerifyReport:
    st = state()
    st.ledger.head(project)
    report = verify_log(st.store, project)
    failure = report.first_failure
    return VerifyReport(
        project=project,
        ok=report.ok,
        size=report.size,
        checked=report.checked,
        root=report.root.hex() if report.root is not None else None,
        failure=VerifyFailure(seq=failure.seq, kind=failure.kind, message=failure.message)
        if failure is not None
        else None,
    )
