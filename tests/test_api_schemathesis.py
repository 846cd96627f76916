"""Schemathesis drives the running service from its own OpenAPI document.

Every operation gets generated requests (with an admin token, half of them against a
project that exists); no answer may be a server error, and every answer must match the
document: status code, content type, headers and body schema. Unauthenticated calls
must be refused. The default run is small; ``LEDGER_FUZZ_EXAMPLES=300 pytest -m slow`` runs
a long one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from api import create_app
from api.openapi import build
from api.testing import LiveServer, scratch_postgres
from ledger.auth import TokenStore
from ledger.store import open_store
from tests import factory as f
from tests.conftest import _PG_PROBLEM, PG_ADMIN_URL

MAX_BATCH = 20
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.ignored_auth,
]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The service on PostgreSQL, which is stricter about values than SQLite (SQLite
    when PostgreSQL cannot be reached)."""
    data: Path = tmp_path_factory.mktemp("fuzz")
    with contextlib.ExitStack() as stack:
        if _PG_PROBLEM is None:
            url = stack.enter_context(scratch_postgres(PG_ADMIN_URL, prefix="ledger_fuzz"))
        else:
            url = f"sqlite:///{data / 'ledger.db'}"
        yield from _serve(url, data)


def _serve(url: str, data: Path) -> Iterator[tuple[str, str]]:
    store = open_store(url, upgrade=True)
    _, secret = TokenStore(store).create("admin", name="fuzzer", created_by="test")
    store.close()
    with LiveServer(url, data_dir=data, env={"LEDGER_MAX_BATCH": str(MAX_BATCH)}) as server:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {secret}"}
        ) as http:
            r = http.post(
                "/v1/projects/alpha/events", json={"events": [*f.setup_events(), f.mask_created()]}
            )
            assert r.status_code == 201, r.text
        yield server.url, secret
        log = server.log_text()
    assert "Traceback" not in log, log[-3000:]


def _document() -> dict[str, Any]:
    """The OpenAPI document, built the way the service builds it (no server needed)."""
    with tempfile.TemporaryDirectory() as folder:
        app = create_app({"data_dir": Path(folder), "database_url": "", "max_batch": MAX_BATCH})
        document = build(app)
        app.extensions["ledger"].store.close()
    return document


# Without the coverage phase, which enumerates every boundary of every field: thousands
# of requests for the events body alone, and a long collection even when deselected.
schema = schemathesis.openapi.from_dict(
    _document(), config=schemathesis.Config.from_dict({"phases": {"coverage": {"enabled": False}}})
)


def _run(case: Any, service: tuple[str, str]) -> None:
    url, secret = service
    params = case.path_parameters or {}
    # Most generated project names do not exist: send half of the cases to one that does.
    if "project" in params and zlib.crc32(repr(case.query).encode()) % 2 == 0:
        params["project"] = "alpha"
    case.call_and_validate(
        base_url=url, headers={"Authorization": f"Bearer {secret}"}, checks=CHECKS
    )


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_matches_its_openapi_document(case: Any, service: tuple[str, str]) -> None:
    _run(case, service)


LONG_EXAMPLES = int(os.environ.get("LEDGER_FUZZ_EXAMPLES") or 0)


@pytest.mark.slow
@pytest.mark.skipif(not LONG_EXAMPLES, reason="set LEDGER_FUZZ_EXAMPLES=300 for the long run")
@schema.parametrize()
@settings(
    max_examples=max(1, LONG_EXAMPLES), deadline=None, suppress_health_check=list(HealthCheck)
)
def test_api_matches_its_openapi_document_long(case: Any, service: tuple[str, str]) -> None:
    _run(case, service)
