"""Liveness, readiness and Prometheus metrics (no token needed)."""

from __future__ import annotations

from flask import Blueprint, Response

from api.models import Health, Ready
from api.spec import operation
from api.state import state
from ledger.errors import StorageUnavailable

bp = Blueprint("health", __name__)


@operation(
    bp,
    "/healthz",
    summary="Liveness: the process answers",
    tag="operations",
    response=Health,
    auth=False,
)
def healthz() -> Health:
    return Health(status="ok")


@operation(
    bp,
    "/readyz",
    summary="Readiness: the database answers and its schema is up to date",
    tag="operations",
    response=Ready,
    auth=False,
)
def readyz() -> Ready:
    store = state().store
    store.ping()
    pending = store.pending_migrations()
    if pending:
        raise StorageUnavailable(
            f"the database schema is not up to date (pending: {', '.join(pending)}); "
            "run `ledger db upgrade` as the schema owner"
        )
    return Ready(status="ready", database=store.dialect)


@operation(
    bp,
    "/metrics",
    summary="Prometheus metrics",
    tag="operations",
    auth=False,
    content_type="text/plain",
    description="Request counts and latencies by route, appended events and batches by "
    "project, log sizes, and whether the database answered the scrape.",
)
def metrics() -> Response:
    data, content_type = state().metrics.render()
    return Response(data, status=200, content_type=content_type)
