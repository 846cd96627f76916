"""A real gunicorn with a token per role and two seeded projects, for API tests."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from api.testing import LiveServer
from ledger.auth import TokenStore
from ledger.store import open_store
from tests import factory as f

#: token name -> (role, project scope)
TOKEN_ROLES = {
    "admin": ("admin", None),
    "admin_alpha": ("admin", "alpha"),
    "writer": ("writer", "alpha"),
    "reviewer": ("reviewer", "alpha"),
    "auditor": ("auditor", None),
    "other": ("admin", "beta"),
}


class Live:
    def __init__(self, http: httpx.Client, secrets: dict[str, str]) -> None:
        self.http = http
        self.secrets = secrets

    def call(self, method: str, path: str, role: str | None = "admin", **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.secrets[role]}"} if role else {}
        return self.http.request(method, path, headers=headers, **kw)

    def post_events(self, project: str, events: list[dict[str, Any]]) -> httpx.Response:
        r = self.call("POST", f"/v1/projects/{project}/events", json={"events": events})
        assert r.status_code == 201, r.text
        return r


@contextmanager
def live_service(
    data: Path,
    *,
    roles: Mapping[str, tuple[str, str | None]] = TOKEN_ROLES,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> Iterator[Live]:
    """gunicorn on a SQLite file in ``data``, projects alpha and beta set up, one token
    per entry of ``roles`` (name -> role, project); fails the test if the server logged a traceback."""
    url = f"sqlite:///{data / 'ledger.db'}"
    store = open_store(url, upgrade=True)
    tokens = TokenStore(store)
    secrets = {
        name: tokens.create(role, project=project, name=name.replace("_", "-"), created_by="t")[1]
        for name, (role, project) in roles.items()
    }
    store.close()
    with LiveServer(url, data_dir=data, env=env) as server:
        with httpx.Client(base_url=server.url, timeout=timeout) as http:
            live = Live(http, secrets)
            for project in ("alpha", "beta"):
                live.post_events(project, f.setup_events())
            yield live
        assert "Traceback" not in server.log_text(), server.log_text()[-3000:]
