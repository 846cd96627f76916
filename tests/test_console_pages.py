"""Console pages through Flask's test client: sign-in rules and odd input (never a 500)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from api import create_app
from ledger.auth import TokenStore
from ledger.releases import create_release
from ledger.service import Ledger
from ledger.store import open_store
from tests import factory as f

P = "pages"


@pytest.fixture
def signed_in(tmp_path: Path) -> tuple[FlaskClient, dict[str, str]]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    store = open_store(url, upgrade=True)
    ledger = Ledger(store)
    ledger.append(
        P,
        [
            *f.setup_events(),
            f.mask_created("inst-1"),
            f.mask_created("inst-2", segmentation=f.box_rle(x0=8, x1=22)),
            f.mask_deleted("inst-1", 1),
        ],
        "test",
    )
    create_release(ledger, P, "v1", actor="rita", principal="test")
    tokens = TokenStore(store)
    secrets = {r: tokens.create(r, created_by="t")[1] for r in ("auditor", "reviewer")}
    secrets["scoped"] = tokens.create("auditor", project="other", created_by="t")[1]
    store.close()
    client = create_app({"database_url": url, "data_dir": tmp_path}).test_client()
    return client, secrets


def _login(client: FlaskClient, secret: str) -> int:
    page = client.get("/console/").get_data(as_text=True)
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    return client.post("/console/login", data={"csrf": csrf, "token": secret}).status_code


def test_roles_and_scope(signed_in: tuple[FlaskClient, dict[str, str]]) -> None:
    client, secrets = signed_in
    assert _login(client, secrets["reviewer"]) == 403
    assert _login(client, "ldg_nonsense") == 403
    assert client.get(f"/console/p/{P}").status_code == 302
    assert _login(client, secrets["scoped"]) == 302
    assert client.get(f"/console/p/{P}").status_code == 403
    assert P not in client.get("/console/projects").get_data(as_text=True)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/console/p/{P}", 200),
        ("/console/p/nope", 404),
        ("/console/p/bad%20name", 422),
        (f"/console/p/{P}/instances/inst-1", 200),
        (f"/console/p/{P}/instances/inst-1/mask/6.png", 200),
        (f"/console/p/{P}/instances/inst-1/mask/8.png", 200),
        (f"/console/p/{P}/instances/inst-1/mask/7.png", 404),
        (f"/console/p/{P}/instances/missing", 404),
        (f"/console/p/{P}/instances/%00x", 404),
        (f"/console/p/{P}/releases", 200),
        (f"/console/p/{P}/proofs/inclusion/6/9", 200),
        (f"/console/p/{P}/proofs/inclusion/9/9", 422),
        (f"/console/p/{P}/proofs/inclusion/0/99999", 422),
        (f"/console/p/{P}/diff?old=v1&new=@9", 200),
        (f"/console/p/{P}/diff?old=v1&new=@x", 422),
        (f"/console/p/{P}/diff?old=v1&new=nope", 404),
        (f"/console/p/{P}/diff", 422),
        (f"/console/p/{P}/search?actor=alice&since=2000-01-01T00:00:00Z", 200),
        (f"/console/p/{P}/search?until=yesterday", 422),
        (f"/console/p/{P}/search", 200),
        (f"/console/p/{P}/qa", 200),
        (f"/console/p/{P}/qa/img-1.png", 200),
        (f"/console/p/{P}/qa/nope.png", 404),
    ],
)
def test_pages(signed_in: tuple[FlaskClient, dict[str, str]], path: str, status: int) -> None:
    client, secrets = signed_in
    assert _login(client, secrets["auditor"]) == 302
    r = client.get(path)
    assert r.status_code == status, r.get_data(as_text=True)[:500]
    if path.endswith(".png") and status == 200:
        assert r.data.startswith(b"\x89PNG")


def test_posts_need_the_form_token(signed_in: tuple[FlaskClient, dict[str, str]]) -> None:
    client, secrets = signed_in
    assert _login(client, secrets["auditor"]) == 302
    assert client.post(f"/console/p/{P}/verify", data={"csrf": "x"}).status_code == 403
    assert client.post(f"/console/p/{P}/releases/v1/verify").status_code == 403
    page = client.get(f"/console/p/{P}/releases").get_data(as_text=True)
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    r = client.post(f"/console/p/{P}/releases/nope/verify", data={"csrf": csrf})
    assert r.status_code == 404
    r = client.post(f"/console/p/{P}/releases/v1/verify", data={"csrf": csrf})
    assert r.status_code == 200 and "Verified" in r.get_data(as_text=True)
