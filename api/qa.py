"""Quality reports and workforce metrics (``ledger.qa``), as JSON and PNG charts.

Reports and charts are for reviewers, auditors and admins; writers get 403.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict, Field

from api.models import MAX_INT
from api.spec import operation
from api.state import current_token, state
from ledger.asof import check_size
from ledger.auth import Forbidden
from ledger.errors import FieldError, InvalidInput

bp = Blueprint("qa", __name__)

QA_ROLES = frozenset({"reviewer", "auditor", "admin"})
_RELEASE = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$"
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$")
_CHECKS = r"^[a-z_]+(,[a-z_]+)*$"
_BOUND = r"^[0-9T:.+Z-]{4,40}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QAQuery(_In):
    at: int | None = Field(None, ge=1, le=MAX_INT, description="tree size (default: log)")
    release: str | None = Field(None, pattern=_RELEASE, description="a release's state")
    checks: str | None = Field(
        None, pattern=_CHECKS, max_length=200, description="comma-separated check names"
    )


class MetricsQuery(_In):
    from_: str | None = Field(
        None, alias="from", pattern=_BOUND, description="ISO 8601 date or time (inclusive)"
    )
    to: str | None = Field(None, pattern=_BOUND, description="ISO 8601 date or time (exclusive)")
    by: str = Field("actor", pattern=r"^(actor|organization)$", description="group by")


def _qa_role() -> None:
    token = current_token()
    if token.role not in QA_ROLES:
        raise Forbidden(f"role {token.role} may not read quality reports")


def _requery(e: InvalidInput, names: dict[str, str]) -> InvalidInput:
    errors = [
        FieldError(f"query.{names.get(err.loc, err.loc.removeprefix('query.'))}", err.message)
        for err in e.errors
    ]
    return InvalidInput(e.message, errors)


def _report(project: str, query: QAQuery) -> Any:
    from ledger.qa import qa_report

    _qa_role()
    st = state()
    st.ledger.head(project)
    if query.at is not None and query.release is not None:
        raise InvalidInput.field("query.release", "give at or release, not both")
    if query.at is not None:
        check_size(st.store, project, query.at, "query.at")
    checks = tuple(query.checks.split(",")) if query.checks else None
    try:
        return qa_report(st.store, project, tree_size=query.at, release=query.release,
                         checks=checks)  # fmt: skip
    except InvalidInput as e:
        raise _requery(e, {"tree_size": "at"}) from None


@operation(
    bp,
    "/v1/projects/<project>/qa",
    summary="Quality report of the state as of a tree size or a release",
    tag="qa",
    query=QAQuery,
    errors=(404,),
    description="Runs the checks (overlaps, agreement, drift, outliers, ...) over the "
    "state at `at` or of `release` (default: the whole log). The report document is "
    "reproducible: `sha256` hashes its canonical bytes. Reviewers, auditors, admins.",
)
def qa(project: str, query: QAQuery) -> Any:
    report = _report(project, query)
    return {"project": project, "sha256": report.sha256, "report": report.document}, 200


@operation(
    bp,
    "/v1/projects/<project>/qa/images/<path:image_id>",
    summary="One image with its flagged masks outlined (PNG)",
    tag="qa",
    query=QAQuery,
    errors=(404,),
    content_type="image/png",
    path_schemas={"image_id": {"type": "string", "pattern": _IMAGE.pattern}},
)
def qa_image(project: str, image_id: str, query: QAQuery) -> Response:
    from ledger.qa.charts import flagged_image_png

    if not _IMAGE.match(image_id):
        raise InvalidInput.field("path.image_id", "not a valid image id")
    report = _report(project, query)
    return Response(flagged_image_png(report, image_id), mimetype="image/png")


def _metrics(project: str, query: MetricsQuery) -> Any:
    from ledger.qa import workforce_metrics

    _qa_role()
    st = state()
    st.ledger.head(project)
    try:
        return workforce_metrics(st.store, project, query.from_, query.to, by=query.by)
    except InvalidInput as e:
        raise _requery(e, {}) from None
    except (OverflowError, ValueError) as e:
        raise InvalidInput.field("query.from", f"out of range: {e}") from None


@operation(
    bp,
    "/v1/projects/<project>/metrics",
    summary="Workforce metrics of a period, per actor or organization",
    tag="qa",
    query=MetricsQuery,
    errors=(404,),
    description="Activity between `from` and `to` (client time), grouped `by` actor or "
    "organization. Reviewers, auditors, admins.",
)
def metrics(project: str, query: MetricsQuery) -> Any:
    report = _metrics(project, query)
    return {"project": project, "sha256": report.sha256, "metrics": report.document}, 200


@operation(
    bp,
    "/v1/projects/<project>/metrics/chart",
    summary="Workforce metrics of a period as a PNG chart",
    tag="qa",
    query=MetricsQuery,
    errors=(404,),
    content_type="image/png",
)
def metrics_chart(project: str, query: MetricsQuery) -> Response:
    from ledger.qa.charts import metrics_chart_png

    return Response(metrics_chart_png(_metrics(project, query)), mimetype="image/png")
