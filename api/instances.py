"""Current state of instances (lineage and as-of state live in their own blueprint)."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint

from api.models import (
    InstanceList,
    InstancesQuery,
    InstanceState,
    InstanceSummary,
    Revision,
    encode_cursor,
)
from api.spec import operation
from api.state import state
from ledger.errors import InvalidInput, NotFound

bp = Blueprint("instances", __name__)

_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$")
_SUMMARY = "instance_id, image_id, category_id, revision, deleted, created_seq, updated_seq, review"


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "instance_id": row["instance_id"],
        "image_id": row["image_id"],
        "category_id": int(row["category_id"]),
        "revision": int(row["revision"]),
        "deleted": bool(row["deleted"]),
        "created_seq": int(row["created_seq"]),
        "updated_seq": int(row["updated_seq"]),
        "review": row["review"],
    }


@operation(
    bp,
    "/v1/projects/<project>/instances",
    summary="Instances in their current state, optionally of one image or category",
    tag="instances",
    response=InstanceList,
    query=InstancesQuery,
    errors=(404,),
)
def list_instances(project: str, query: InstancesQuery) -> InstanceList:
    st = state()
    st.ledger.head(project)
    where = ["project = ?"]
    params: list[Any] = [project]
    after = query.after()
    if after is not None:
        where.append("instance_id > ?")
        params.append(after)
    if query.image is not None:
        where.append("image_id = ?")
        params.append(query.image)
    if query.category is not None:
        where.append("category_id = ?")
        params.append(query.category)
    if not query.include_deleted:
        where.append("deleted = 0")
    rows = st.store.query(
        f"SELECT {_SUMMARY} FROM instances WHERE {' AND '.join(where)}"
        " ORDER BY instance_id LIMIT ?",
        (*params, query.limit + 1),
    )
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return InstanceList(
        instances=[InstanceSummary(**_summary(r)) for r in rows],
        next_cursor=encode_cursor(rows[-1]["instance_id"]) if more else None,
    )


@operation(
    bp,
    "/v1/projects/<project>/instances/<path:instance_id>",
    summary="One instance: its current revision, mask and latest review",
    tag="instances",
    response=InstanceState,
    errors=(404,),
    path_schemas={"instance_id": {"type": "string", "pattern": _IDENTIFIER.pattern}},
)
def get_instance(project: str, instance_id: str) -> InstanceState:
    if not _IDENTIFIER.match(instance_id):
        raise InvalidInput.field("path.instance_id", "not a valid instance id")
    st = state()
    st.ledger.head(project)
    rows = st.store.query(
        f"SELECT {_SUMMARY} FROM instances WHERE project = ? AND instance_id = ?",
        (project, instance_id),
    )
    if not rows:
        raise NotFound(f"instance {instance_id!r} does not exist in project {project}")
    inst = _summary(rows[0])
    revs = st.store.query(
        "SELECT revision, seq, op, image_id, category_id, iscrowd, segmentation, area, bbox,"
        " actor, guideline FROM revisions WHERE project = ? AND instance_id = ? AND revision = ?",
        (project, instance_id, inst["revision"]),
    )
    if not revs:
        raise NotFound(f"revision {inst['revision']} of instance {instance_id!r} is missing")
    r = revs[0]
    current = Revision(
        revision=int(r["revision"]),
        seq=int(r["seq"]),
        op=r["op"],
        image_id=r["image_id"],
        category_id=int(r["category_id"]),
        iscrowd=bool(r["iscrowd"]),
        segmentation=json.loads(r["segmentation"]),
        area=int(r["area"]),
        bbox=json.loads(r["bbox"]),
        actor=r["actor"],
        guideline=r["guideline"],
    )
    return InstanceState(**inst, current=current)
