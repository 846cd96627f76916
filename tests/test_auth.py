"""Tokens and roles (ledger.auth) on both backends, and the `ledger tokens` commands."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledger.auth import (
    ACTIONS,
    EVENT_PERMISSIONS,
    Forbidden,
    Token,
    TokenStore,
    Unauthorized,
    require,
    require_events,
)
from ledger.cli import cli
from ledger.errors import Conflict, InvalidInput, NotFound, StorageError
from ledger.events import EVENT_TYPES
from ledger.store import Store


@pytest.fixture
def tokens(store: Store) -> TokenStore:
    return TokenStore(store)


def test_token_is_stored_only_as_its_hash(tokens: TokenStore, store: Store) -> None:
    token, secret = tokens.create("writer", project="alpha", name="cvat-1", created_by="test")
    assert secret.startswith(f"ldg_{token.id}_") and len(secret) == 64
    rows = store.query("SELECT * FROM tokens")
    assert len(rows) == 1
    stored = {k: bytes(v) if isinstance(v, memoryview) else v for k, v in rows[0].items()}
    assert bytes(stored["hash"]) == hashlib.sha256(secret.encode()).digest()
    secret_part = secret.split("_", 2)[2]
    assert not any(isinstance(v, str) and secret_part in v for v in stored.values())
    assert tokens.authenticate(secret) == token
    assert token.principal == "token:cvat-1"


def test_authenticate_refuses_wrong_malformed_and_revoked(tokens: TokenStore) -> None:
    token, secret = tokens.create("auditor", created_by="test")
    forged = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    with pytest.raises(Unauthorized, match="not valid") as wrong:
        tokens.authenticate(forged)
    assert forged not in str(wrong.value)
    unknown = "ldg_" + "0" * 16 + secret[-44:]
    with pytest.raises(Unauthorized, match="not valid"):
        tokens.authenticate(unknown)
    with pytest.raises(Unauthorized, match="malformed"):
        tokens.authenticate("Basic abc")
    revoked = tokens.revoke(token.id)
    assert revoked.revoked_at is not None and not revoked.active
    with pytest.raises(Unauthorized, match="revoked"):
        tokens.authenticate(secret)
    assert tokens.revoke(token.id) == revoked  # idempotent


def test_cached_tokens_and_revocation(store: Store) -> None:
    service = TokenStore(store, cache_seconds=60)  # one service process
    elsewhere = TokenStore(store)  # the CLI, or another process
    token, secret = elsewhere.create("writer", created_by="test")
    assert service.authenticate(secret) == token
    elsewhere.revoke(token.id)
    assert service.authenticate(secret) == token  # trusted until its cache time is up
    with pytest.raises(Unauthorized, match="revoked"):
        elsewhere.authenticate(secret)
    service.revoke(token.id)  # a revocation through the process itself is immediate
    with pytest.raises(Unauthorized, match="revoked"):
        service.authenticate(secret)
    brief = TokenStore(store, cache_seconds=0.05)
    other, other_secret = elsewhere.create("auditor", created_by="test")
    assert brief.authenticate(other_secret) == other
    elsewhere.revoke(other.id)
    time.sleep(0.1)
    with pytest.raises(Unauthorized, match="revoked"):
        brief.authenticate(other_secret)
    with pytest.raises(Unauthorized, match="not valid"):
        service.authenticate(other_secret[:-1] + ("A" if other_secret[-1] != "A" else "B"))


def test_create_checks_its_input(tokens: TokenStore) -> None:
    with pytest.raises(InvalidInput, match="unknown role 'root'"):
        tokens.create("root", created_by="test")
    with pytest.raises(InvalidInput, match="project names"):
        tokens.create("writer", project="Bad Name", created_by="test")
    with pytest.raises(InvalidInput, match="token names"):
        tokens.create("writer", name="has space", created_by="test")
    tokens.create("writer", name="tool", created_by="test")
    with pytest.raises(Conflict, match="already exists"):
        tokens.create("reviewer", name="tool", created_by="test")
    with pytest.raises(NotFound, match="no token with id"):
        tokens.revoke("0123456789abcdef")
    with pytest.raises(InvalidInput, match="16 lower-case"):
        tokens.revoke("nope")


def test_list_and_count(tokens: TokenStore) -> None:
    a, _ = tokens.create("admin", created_by="test")
    b, _ = tokens.create("writer", project="alpha", created_by="test")
    tokens.revoke(a.id)
    assert {t.id for t in tokens.list()} == {a.id, b.id}
    assert [t.id for t in tokens.list(include_revoked=False)] == [b.id]
    assert tokens.count_active() == 1


def test_database_refuses_deleting_or_rewriting_tokens(tokens: TokenStore, store: Store) -> None:
    token, _ = tokens.create("writer", created_by="test")
    with pytest.raises(StorageError, match="never deleted"):
        store.execute("DELETE FROM tokens WHERE id = ?", (token.id,))
    with pytest.raises(StorageError, match="only be revoked"):
        store.execute("UPDATE tokens SET role = 'admin' WHERE id = ?", (token.id,))
    tokens.revoke(token.id)
    with pytest.raises(StorageError, match="only be revoked"):
        store.execute("UPDATE tokens SET revoked_at = NULL WHERE id = ?", (token.id,))
    assert tokens.get(token.id).role == "writer"


def _token(role: str, project: str | None = None) -> Token:
    return Token("0" * 16, f"{role}-t", role, project, "t", "test")  # type: ignore[arg-type]


ROLE_EVENTS = {
    "writer": {"image.registered", "mask.created", "mask.edited", "mask.deleted",
               "counts.declared", "job.status_changed"},
    "reviewer": {"review.decided", "review.assigned", "mask.deleted", "counts.declared"},
    "auditor": set(),
    "admin": set(EVENT_TYPES),
}  # fmt: skip


@pytest.mark.parametrize("role", ["writer", "reviewer", "auditor", "admin"])
def test_event_permissions_are_the_documented_matrix(role: str) -> None:
    token = _token(role, "alpha")
    allowed = {t for t in EVENT_TYPES if token.may_post(t)}
    assert allowed == ROLE_EVENTS[role] == EVENT_PERMISSIONS[role]
    for kind in EVENT_TYPES:
        if kind in allowed:
            require_events(token, "alpha", [("events[0].type", kind)])
        else:
            with pytest.raises(
                Forbidden, match=f"events.1..type: a {role} token may not post {kind}"
            ) as refused:
                require_events(
                    token, "alpha", [("events[0].type", "nonsense"), ("events[1].type", kind)]
                )
            assert [e.loc for e in refused.value.errors] == ["events[1].type"]


def test_scope_and_actions() -> None:
    scoped_admin = _token("admin", "alpha")
    with pytest.raises(Forbidden, match="scoped to project alpha"):
        require(scoped_admin, "read", "beta")
    require(scoped_admin, "verify", "alpha")
    with pytest.raises(Forbidden, match="all projects"):
        require(scoped_admin, "tokens.manage")
    require(_token("admin"), "tokens.manage")
    with pytest.raises(Forbidden, match="auditor token may not project create"):
        require(_token("auditor"), "project.create")
    assert ACTIONS["read"] == {"writer", "reviewer", "auditor", "admin"}
    assert ACTIONS["verify"] == {"auditor", "admin"}


def test_tokens_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LEDGER_DATABASE_URL", raising=False)
    runner = CliRunner()
    made = runner.invoke(
        cli, ["tokens", "create", "--role", "writer", "-p", "alpha", "--name", "cvat"]
    )
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("ldg_")
    assert "principal token:cvat" in made.stderr
    listed = runner.invoke(cli, ["tokens", "list"])
    assert listed.exit_code == 0
    assert "cvat" in listed.stdout and "writer" in listed.stdout and "active" in listed.stdout
    assert secret not in listed.output and secret.split("_", 2)[2] not in listed.output
    token_id = secret.split("_")[1]
    revoked = runner.invoke(cli, ["tokens", "revoke", token_id])
    assert revoked.exit_code == 0 and "revoked at" in revoked.stdout
    listed = runner.invoke(cli, ["tokens", "list", "--active"])
    assert "cvat" not in listed.output
    bad = runner.invoke(cli, ["tokens", "create", "--role", "root"])
    assert bad.exit_code != 0
