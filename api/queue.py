"""A reviewer's queue: revisions awaiting review (``ledger.routing``), and its aging.

A reviewer token sees its own queue (its token name is the reviewer id); auditors and
admins see any reviewer's queue or the whole queue; writers get 403.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from pydantic import BaseModel, ConfigDict, Field

from api.spec import operation
from api.state import current_token, state
from ledger.auth import Forbidden
from ledger.routing import queue_metrics, review_queue

bp = Blueprint("queue", __name__)

_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QueueQuery(_In):
    reviewer: str | None = Field(
        None,
        pattern=_ID,
        description="only this reviewer's assignments (reviewer tokens: their own, the default)",
    )
    limit: int = Field(1000, ge=1, le=10000, description="most items listed")


class QueueMetricsQuery(_In):
    overdue_after: float = Field(
        86400.0, ge=0, le=10**9, description="seconds after which a pending revision is overdue"
    )


def _reviewer(asked: str | None) -> str | None:
    token = current_token()
    if token.role == "writer":
        raise Forbidden("writers may not read review queues")
    if token.role == "reviewer":
        if asked is not None and asked != token.name:
            raise Forbidden(f"a reviewer token reads its own queue ({token.name}) only")
        return token.name
    return asked


@operation(
    bp,
    "/v1/projects/<project>/queue",
    summary="Revisions awaiting review, oldest first",
    tag="queue",
    query=QueueQuery,
    errors=(404,),
    description="With `reviewer`, only the revisions assigned to that reviewer. A reviewer "
    "token gets its own queue (its name is the reviewer id) and 403 for anyone else's.",
)
def queue(project: str, query: QueueQuery) -> Any:
    reviewer = _reviewer(query.reviewer)
    st = state()
    st.ledger.head(project)
    items = review_queue(st.store, project, reviewer=reviewer)
    return {
        "project": project,
        "reviewer": reviewer,
        "count": len(items),
        "items": [i.to_json() for i in items[: query.limit]],
    }, 200


@operation(
    bp,
    "/v1/projects/<project>/queue/metrics",
    summary="Aging and overdue counts of the review queue",
    tag="queue",
    query=QueueMetricsQuery,
    errors=(404,),
    description="Reviewers, auditors and admins.",
)
def metrics(project: str, query: QueueMetricsQuery) -> Any:
    _reviewer(None)
    st = state()
    st.ledger.head(project)
    return queue_metrics(st.store, project, query.overdue_after).to_json(), 200
