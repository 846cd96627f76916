"""Issuing, storing and reading signed checkpoints; the automatic policy; signing keys."""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.checkpoint import open_checkpoint
from ledger.checkpoints import (
    CheckpointService,
    CheckpointTimer,
    StoredCheckpoint,
    ensure_signing_key,
    get_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    origin_for,
    publish_verifier_key,
    published_verifier_keys,
    stored_verifier_keys,
)
from ledger.config import Settings
from ledger.errors import (
    ConfigError,
    Conflict,
    InvalidInput,
    NotFound,
    StorageError,
    VerificationFailed,
)
from ledger.keys import write_signer_key
from ledger.merkle import leaf_hash, root_from_leaves, stored_hash_count
from ledger.note import Signer, generate_signer
from ledger.service import Ledger
from ledger.store import Store
from tests import factory as f

P = "proj"
PREFIX = "ledger.example.org"


def superuser_sql(url: str, sql: str, params: tuple[object, ...] = ()) -> None:
    """Run SQL behind the ledger's back: as the owner, with every trigger off."""
    if url.startswith("sqlite"):
        lite = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            for (name,) in lite.execute("SELECT name FROM sqlite_master WHERE type='trigger'"):
                lite.execute(f"DROP TRIGGER {name}")
            lite.execute(sql, params)
            lite.commit()
        finally:
            lite.close()
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")
            conn.execute(sql.replace("?", "%s"), params)


def rewrite_history(ledger: Ledger, url: str, keep: int, new_events: int) -> None:
    """What a malicious operator could do: cut the log to ``keep`` entries (entries,
    tree hashes and head) and append ``new_events`` different events."""
    store = ledger.store
    entries = dict(store.iter_entries(P))
    last_leaf = leaf_hash(entries[keep - 1])
    recorded_at = store.query(
        "SELECT recorded_at FROM entries WHERE project = ? AND seq = ?", (P, keep - 1)
    )[0]["recorded_at"]
    superuser_sql(url, "DELETE FROM entries WHERE project = ? AND seq >= ?", (P, keep))
    superuser_sql(
        url, "DELETE FROM tree_hashes WHERE project = ? AND idx >= ?", (P, stored_hash_count(keep))
    )
    superuser_sql(
        url,
        "UPDATE heads SET size = ?, last_leaf = ?, last_recorded_at = ? WHERE project = ?",
        (keep, last_leaf, recorded_at, P),
    )
    if new_events:
        ledger.append(P, [f.mask_created(f"forged-{k}") for k in range(new_events)], "mallory")


def build(ledger: Ledger, masks: int = 6) -> None:
    ledger.append(P, f.setup_events(), "t")
    ledger.append(P, [f.mask_created(f"i{k}") for k in range(masks)], "t")


def service(store: Store, signer: Signer | None = None, **kw: object) -> CheckpointService:
    args: dict[str, object] = {"origin_prefix": PREFIX, "every": 0, "interval": 0.0}
    args.update(kw)
    return CheckpointService(store, signer or generate_signer(PREFIX), **args)  # type: ignore[arg-type]


def log_root(store: Store, size: int) -> bytes:
    return root_from_leaves(leaf_hash(raw) for _, raw in store.iter_entries(P, 0, size))


# --- issuing and reading --------------------------------------------------------------


def test_issue_signs_the_tree_at_the_log_size(ledger: Ledger, store: Store) -> None:
    build(ledger)
    svc = service(store)
    cp = svc.issue(P)
    assert (cp.project, cp.size) == (P, 12)
    assert cp.root == log_root(store, 12)
    assert (cp.key_name, cp.key_id) == (svc.signer.name, svc.signer.key_id)
    parsed, opened = open_checkpoint(cp.note, [svc.signer.verifier()], origin=f"{PREFIX}/{P}")
    assert (parsed.size, parsed.root_hash) == (12, cp.root)
    assert opened.sigs[0].name == PREFIX
    assert cp.text.startswith(f"{PREFIX}/{P}\n12\n")
    assert cp.to_json()["root_hash"] == cp.root.hex()
    assert latest_checkpoint(store, P) == cp
    assert get_checkpoint(store, P, 12) == cp


def test_issue_at_the_same_size_returns_the_stored_checkpoint(ledger: Ledger, store: Store) -> None:
    build(ledger)
    first = service(store).issue(P)
    again = service(store).issue(P)  # another key: the stored one comes back unchanged
    assert again == first
    assert len(list_checkpoints(store, P)) == 1


def test_issue_at_explicit_sizes(ledger: Ledger, store: Store) -> None:
    build(ledger)
    svc = service(store)
    for size in (3, 7, 12):
        assert svc.issue(P, size=size).root == log_root(store, size)
    assert [c.size for c in list_checkpoints(store, P)] == [3, 7, 12]
    assert [c.size for c in list_checkpoints(store, P, after=3, limit=1)] == [7]
    assert svc.issue(P, size=7).size == 7  # stored below the latest: returned
    with pytest.raises(Conflict, match="checkpoints are issued at increasing sizes"):
        svc.issue(P, size=5)


def test_issue_rejects_bad_requests(ledger: Ledger, store: Store) -> None:
    svc = service(store)
    with pytest.raises(NotFound, match="project proj does not exist"):
        svc.issue(P)
    build(ledger)
    with pytest.raises(InvalidInput, match=r"size: tree size 13 is not in the log \(1 to 12\)"):
        svc.issue(P, size=13)
    with pytest.raises(InvalidInput, match="tree size 0 is not in the log"):
        svc.issue(P, size=0)
    with pytest.raises(VerificationFailed, match="the root given for size 12 is not"):
        svc.issue(P, root=bytes(32))
    with pytest.raises(NotFound, match="no checkpoint at tree size 4"):
        get_checkpoint(store, P, 4)
    with pytest.raises(InvalidInput, match="limit: must be at least 1"):
        list_checkpoints(store, P, limit=0)
    assert latest_checkpoint(store, "other") is None


def test_the_signing_key_is_published_once(ledger: Ledger, store: Store) -> None:
    build(ledger)
    svc = service(store)
    assert stored_verifier_keys(store) == []
    svc.issue(P, size=5)
    svc.issue(P, size=9)
    assert stored_verifier_keys(store) == [svc.signer.verifier()]
    assert publish_verifier_key(store, svc.signer.verifier()) is False
    other = generate_signer("other.example")
    assert publish_verifier_key(store, other.verifier()) is True
    assert stored_verifier_keys(store) == [svc.signer.verifier(), other.verifier()]


def test_checkpoints_and_keys_are_append_only(ledger: Ledger, store: Store) -> None:
    build(ledger)
    service(store).issue(P)
    for sql in (
        "UPDATE checkpoints SET size = 99",
        "DELETE FROM checkpoints",
        "UPDATE verifier_keys SET key_name = 'x'",
        "DELETE FROM verifier_keys",
    ):
        with pytest.raises(StorageError, match="append-only"):
            store.execute(sql)
    if store.dialect == "postgresql":
        for table in ("checkpoints", "verifier_keys"):
            with pytest.raises(StorageError, match="append-only"):
                store.execute(f"TRUNCATE {table}")
    assert latest_checkpoint(store, P) is not None
    assert len(stored_verifier_keys(store)) == 1


def test_refuses_to_sign_a_rewritten_history(ledger: Ledger, store: Store, db_url: str) -> None:
    build(ledger)
    svc = service(store)
    svc.issue(P)
    rewrite_history(ledger, db_url, keep=9, new_events=5)  # now 14 entries, 9.. differ
    with pytest.raises(VerificationFailed, match="does not extend the checkpoint at size 12"):
        svc.issue(P)
    rewrite_history(ledger, db_url, keep=9, new_events=0)  # now shorter than the checkpoint
    with pytest.raises(VerificationFailed, match="refusing to sign a shorter log"):
        svc.issue(P)
    assert [c.size for c in list_checkpoints(store, P)] == [12]


def test_concurrent_issues_store_one_checkpoint(ledger: Ledger, store: Store) -> None:
    build(ledger)
    signer = generate_signer(PREFIX)
    results: list[StoredCheckpoint] = []

    def issue() -> None:
        results.append(service(store, signer).issue(P))

    threads = [threading.Thread(target=issue) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert len({r.note for r in results}) == 1
    assert len(list_checkpoints(store, P)) == 1


# --- the policy -----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_every_n_entries_after_appends(store: Store) -> None:
    svc = service(store, every=5)
    ledger = Ledger(store, on_append=svc.on_append)
    ledger.append(P, f.setup_events(), "t")  # 6 entries
    ledger.append(P, [f.mask_created("a")], "t")  # 7
    ledger.append(P, [f.mask_created(f"b{k}") for k in range(4)], "t")  # 11
    ledger.append(P, [f.mask_created("c")], "t")  # 12
    assert [c.size for c in list_checkpoints(store, P)] == [6, 11]
    for cp in list_checkpoints(store, P):
        assert cp.root == log_root(store, cp.size)


def test_every_t_seconds(ledger: Ledger, store: Store) -> None:
    clock = Clock()
    svc = service(store, interval=60.0, clock=clock)
    assert svc.maybe_issue(P) is None  # no such project
    ledger.clock = clock
    build(ledger)
    assert svc.maybe_issue(P) is None  # the first entry is not 60 s old yet
    clock.now += timedelta(seconds=61)
    first = svc.maybe_issue(P)
    assert first is not None and first.size == 12
    assert svc.maybe_issue(P) is None  # nothing new
    ledger.append(P, [f.mask_created("late")], "t")
    clock.now += timedelta(seconds=30)
    assert svc.maybe_issue(P, size=13) is None  # new entries, but too soon
    clock.now += timedelta(seconds=31)
    second = svc.maybe_issue(P, size=13)
    assert second is not None and second.size == 13


def test_policy_off_issues_nothing(ledger: Ledger, store: Store) -> None:
    build(ledger)
    assert service(store).maybe_issue(P) is None
    assert service(store).maybe_issue_all() == []
    assert list_checkpoints(store, P) == []


def test_maybe_issue_all_and_the_timer(ledger: Ledger, store: Store) -> None:
    build(ledger)
    ledger.append("second", f.setup_events(), "t")
    svc = service(store, every=1)
    issued = svc.maybe_issue_all()
    assert sorted((c.project, c.size) for c in issued) == [(P, 12), ("second", 6)]
    ledger.append(P, [f.mask_created("late")], "t")
    timer = CheckpointTimer(svc, period=0.05).start()
    try:
        for _ in range(100):
            if latest_checkpoint(store, P) and latest_checkpoint(store, P).size == 13:  # type: ignore[union-attr]
                break
            threading.Event().wait(0.05)
    finally:
        timer.stop()
    cp = latest_checkpoint(store, P)
    assert cp is not None and cp.size == 13


def test_on_append_never_fails_the_append(
    ledger: Ledger, store: Store, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    build(ledger)
    svc = service(store, every=1)
    svc.issue(P)
    rewrite_history(ledger, db_url, keep=9, new_events=0)
    appending = Ledger(store, on_append=svc.on_append)
    events = [f.mask_created(f"after{k}") for k in range(4)]
    result = appending.append(P, events, "t")  # 13 entries that do not extend the checkpoint
    assert result.size == 13 and result.appended == 4
    assert "checkpoint for project proj failed" in caplog.text


# --- keys -----------------------------------------------------------------------------


def test_ensure_signing_key_generates_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", origin_prefix=PREFIX)
    signer = ensure_signing_key(settings)
    path = tmp_path / "data" / "signing.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert signer.name == PREFIX
    assert ensure_signing_key(settings) == signer
    assert sorted(p.name for p in path.parent.iterdir()) == ["signing.key"]


def test_ensure_signing_key_in_parallel_gives_one_key(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, origin_prefix=PREFIX)
    found: list[Signer] = []
    threads = [threading.Thread(target=lambda: found.append(ensure_signing_key(settings)))
               for _ in range(6)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == 6 and len({s.key_string() for s in found}) == 1


def test_ensure_signing_key_errors(tmp_path: Path) -> None:
    named = Settings(data_dir=tmp_path, signing_key_file=tmp_path / "missing.key")
    with pytest.raises(ConfigError, match=r"LEDGER_SIGNING_KEY_FILE names .*missing\.key"):
        ensure_signing_key(named)
    bad_prefix = Settings(data_dir=tmp_path, origin_prefix="has space")
    with pytest.raises(ConfigError, match="LEDGER_ORIGIN_PREFIX cannot name a signing key"):
        ensure_signing_key(bad_prefix)


def test_published_verifier_keys(tmp_path: Path) -> None:
    current = generate_signer("current.example")
    old = generate_signer("old.example")
    write_signer_key(tmp_path / "current.key", current)
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(
        f"# rotated keys\n{old.verifier().key_string()}\n\n{current.verifier().key_string()}\n"
    )
    settings = Settings(
        data_dir=tmp_path, signing_key_file=tmp_path / "current.key", verifier_keys_file=keys_file
    )
    assert published_verifier_keys(settings) == [current.verifier(), old.verifier()]
    assert published_verifier_keys(Settings(data_dir=tmp_path / "none")) == []
    keys_file.write_text("not a key\n")
    with pytest.raises(ConfigError, match="line 1: malformed verifier key"):
        published_verifier_keys(settings)


def test_from_settings_uses_the_configured_policy(store: Store, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, origin_prefix="o.example", checkpoint_every=7, checkpoint_interval=3
    )
    svc = CheckpointService.from_settings(store, settings)
    assert (svc.every, svc.interval, svc.origin("p")) == (7, 3.0, "o.example/p")
    assert origin_for("a.example/logs", "p") == "a.example/logs/p"
    assert os.path.exists(tmp_path / "signing.key")
    with pytest.raises(ConfigError, match="must not be negative"):
        CheckpointService(store, svc.signer, origin_prefix="x", every=-1)


# --- interoperability: an independent reading of the C2SP specs -------------------------


def spec_open_checkpoint(note: bytes, name: str, public_key: bytes) -> tuple[str, int, bytes]:
    """Open a signed checkpoint following c2sp.org/signed-note and tlog-checkpoint only."""
    text, _, signatures = note.decode().rpartition("\n\n")
    text += "\n"
    key_hash = hashlib.sha256(name.encode() + b"\n" + b"\x01" + public_key).digest()[:4]
    for line in signatures.splitlines():
        dash, signer, blob = line.split(" ")
        raw = base64.b64decode(blob)
        if dash == "\u2014" and signer == name and raw[:4] == key_hash:
            Ed25519PublicKey.from_public_bytes(public_key).verify(raw[4:], text.encode())
            origin, size, root = text.splitlines()[:3]
            return origin, int(size), base64.b64decode(root)
    raise AssertionError("no signature by the key")


def test_checkpoints_issued_here_open_with_an_independent_reading(
    ledger: Ledger, store: Store
) -> None:
    build(ledger)
    svc = service(store)
    cp = svc.issue(P)
    origin, size, root = spec_open_checkpoint(
        cp.note, svc.signer.name, svc.signer.verifier().public_key
    )
    assert (origin, size, root) == (f"{PREFIX}/{P}", 12, log_root(store, 12))
