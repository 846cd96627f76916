"""The tamper matrix: `verify_log` names the first failure of entries and checkpoints,
by sequence number or checkpoint size, and its kind, on both backends."""

from __future__ import annotations

import base64
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ledger import verify
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.checkpoints import CheckpointService, get_checkpoint
from ledger.merkle import stored_hash_count
from ledger.note import Signer, generate_signer
from ledger.service import Ledger
from ledger.store import Store, open_store
from ledger.verify import Failure, verify_log
from tests import factory as f
from tests.test_checkpoints import PREFIX, rewrite_history, superuser_sql

P = "proj"


@pytest.fixture
def signer() -> Signer:
    return generate_signer(PREFIX)


def build(ledger: Ledger, signer: Signer) -> CheckpointService:
    """12 entries with signed checkpoints at sizes 6 and 12."""
    svc = CheckpointService(ledger.store, signer, origin_prefix=PREFIX, every=0, interval=0)
    ledger.append(P, f.setup_events(), "t")
    svc.issue(P)
    ledger.append(P, [f.mask_created(f"i{k}") for k in range(6)], "t")
    svc.issue(P)
    return svc


def entry(store: Store, seq: int) -> bytes:
    return dict(store.iter_entries(P))[seq]


def set_note(url: str, size: int, note: bytes) -> None:
    superuser_sql(
        url, "UPDATE checkpoints SET note = ? WHERE project = ? AND size = ?", (note, P, size)
    )


Tamper = Callable[[Ledger, str, Signer], None]


def change_bytes(ledger: Ledger, url: str, signer: Signer) -> None:
    raw = entry(ledger.store, 7).replace(b'"i1"', b'"i9"')
    superuser_sql(url, "UPDATE entries SET entry = ? WHERE project = ? AND seq = 7", (raw, P))


def delete_entry(ledger: Ledger, url: str, signer: Signer) -> None:
    superuser_sql(url, "DELETE FROM entries WHERE project = ? AND seq = 5", (P,))


def swap_entries(ledger: Ledger, url: str, signer: Signer) -> None:
    a, b = entry(ledger.store, 3), entry(ledger.store, 4)
    superuser_sql(url, "UPDATE entries SET entry = ? WHERE project = ? AND seq = 3", (b, P))
    superuser_sql(url, "UPDATE entries SET entry = ? WHERE project = ? AND seq = 4", (a, P))


def truncate_tail(ledger: Ledger, url: str, signer: Signer) -> None:
    superuser_sql(url, "DELETE FROM entries WHERE project = ? AND seq >= 10", (P,))


def truncate_tail_and_head(ledger: Ledger, url: str, signer: Signer) -> None:
    # the head and tree are cut too: the log is internally whole, the checkpoint is not
    rewrite_history(ledger, url, keep=10, new_events=0)


def rewrite_after_last_checkpoint_start(ledger: Ledger, url: str, signer: Signer) -> None:
    rewrite_history(ledger, url, keep=9, new_events=3)  # same size, other entries 9..11


def rewrite_before_first_checkpoint(ledger: Ledger, url: str, signer: Signer) -> None:
    rewrite_history(ledger, url, keep=4, new_events=8)


def rewrite_and_grow(ledger: Ledger, url: str, signer: Signer) -> None:
    rewrite_history(ledger, url, keep=9, new_events=20)


def forge_signature(ledger: Ledger, url: str, signer: Signer) -> None:
    note = get_checkpoint(ledger.store, P, 12).note
    text, _, line = note.decode().rstrip("\n").rpartition("\n")
    name, _, sig64 = line.partition(" ")[2].partition(" ")
    raw = bytearray(base64.b64decode(sig64))
    raw[10] ^= 0x01  # keep the key id, break the signature
    forged = f"{text}\n— {name} {base64.b64encode(bytes(raw)).decode()}\n"
    set_note(url, 12, forged.encode())


def forge_root_keep_signature(ledger: Ledger, url: str, signer: Signer) -> None:
    cp = get_checkpoint(ledger.store, P, 12)
    fake_root = bytes(32)
    text = cp.note.decode()
    forged = text.replace(base64.b64encode(cp.root).decode(), base64.b64encode(fake_root).decode())
    superuser_sql(
        url,
        "UPDATE checkpoints SET note = ?, root = ? WHERE project = ? AND size = 12",
        (forged.encode(), fake_root, P),
    )


def strip_signature(ledger: Ledger, url: str, signer: Signer) -> None:
    cp = get_checkpoint(ledger.store, P, 6)
    body = cp.note.decode().partition("\n\n")[0] + "\n\n"
    set_note(url, 6, body.encode())


def sign_with_unknown_key(ledger: Ledger, url: str, signer: Signer) -> None:
    cp = get_checkpoint(ledger.store, P, 12)
    mallory = generate_signer(PREFIX)  # same name, other key
    set_note(url, 12, sign_checkpoint(Checkpoint(f"{PREFIX}/{P}", 12, cp.root), mallory))


def add_checkpoint_by_unknown_key(ledger: Ledger, url: str, signer: Signer) -> None:
    cp = get_checkpoint(ledger.store, P, 12)
    mallory = generate_signer("mallory.example")
    note = sign_checkpoint(Checkpoint(f"{PREFIX}/{P}", 9, bytes(32)), mallory)
    superuser_sql(
        url,
        "INSERT INTO checkpoints (project, size, root, key_name, key_id, note, created_at)"
        " VALUES (?, 9, ?, ?, ?, ?, ?)",
        (P, bytes(32), mallory.name, mallory.key_id, note, cp.created_at),
    )


def change_root_column(ledger: Ledger, url: str, signer: Signer) -> None:
    superuser_sql(
        url, "UPDATE checkpoints SET root = ? WHERE project = ? AND size = 6", (bytes(32), P)
    )


def note_for_another_size(ledger: Ledger, url: str, signer: Signer) -> None:
    set_note(url, 12, get_checkpoint(ledger.store, P, 6).note)


def note_for_another_project(ledger: Ledger, url: str, signer: Signer) -> None:
    ledger.append("other", f.setup_events(), "t")
    svc = CheckpointService(ledger.store, signer, origin_prefix=PREFIX)
    set_note(url, 6, svc.issue("other").note)


CASES: list[tuple[str, Tamper, int, str, str]] = [
    ("changed entry bytes", change_bytes, 7, "leaf", "entry"),
    ("deleted entry", delete_entry, 5, "missing", "entry"),
    ("swapped entries", swap_entries, 3, "sequence", "entry"),
    ("truncated tail", truncate_tail, 10, "missing", "entry"),
    ("truncated tail and head", truncate_tail_and_head, 12, "checkpoint-beyond-log", "checkpoint"),
    (
        "history rewritten after a checkpoint",
        rewrite_after_last_checkpoint_start,
        12,
        "checkpoint-root",
        "checkpoint",
    ),
    (
        "history rewritten before both",
        rewrite_before_first_checkpoint,
        6,
        "checkpoint-root",
        "checkpoint",
    ),
    ("history rewritten and grown", rewrite_and_grow, 12, "checkpoint-root", "checkpoint"),
    ("forged signature", forge_signature, 12, "checkpoint-signature", "checkpoint"),
    (
        "forged root, old signature",
        forge_root_keep_signature,
        12,
        "checkpoint-signature",
        "checkpoint",
    ),
    ("stripped signature", strip_signature, 6, "checkpoint-unsigned", "checkpoint"),
    ("signed by an unknown key", sign_with_unknown_key, 12, "checkpoint-unknown-key", "checkpoint"),
    (
        "extra checkpoint by an unknown key",
        add_checkpoint_by_unknown_key,
        9,
        "checkpoint-unknown-key",
        "checkpoint",
    ),
    ("root column changed", change_root_column, 6, "checkpoint-malformed", "checkpoint"),
    ("note of another size", note_for_another_size, 12, "checkpoint-malformed", "checkpoint"),
    ("note of another project", note_for_another_project, 6, "checkpoint-malformed", "checkpoint"),
]


@pytest.mark.parametrize(
    ("case", "tamper", "seq", "kind", "subject"), CASES, ids=[c[0] for c in CASES]
)
def test_verify_names_the_first_failure(
    ledger: Ledger,
    store: Store,
    db_url: str,
    signer: Signer,
    case: str,
    tamper: Tamper,
    seq: int,
    kind: str,
    subject: str,
) -> None:
    build(ledger, signer)
    keys = [signer.verifier()]
    before = verify_log(store, P, verifiers=keys)
    assert before.ok, before.first_failure
    assert before.checkpoints == 2
    tamper(ledger, db_url, signer)
    report = verify_log(store, P, verifiers=keys)
    failure = report.first_failure
    assert failure is not None, case
    assert (failure.seq, failure.kind, failure.subject) == (seq, kind, subject), str(failure)


def test_failure_messages_name_position_and_kind(
    ledger: Ledger, store: Store, db_url: str, signer: Signer
) -> None:
    build(ledger, signer)
    rewrite_after_last_checkpoint_start(ledger, db_url, signer)
    failure = verify_log(store, P, verifiers=[signer.verifier()]).first_failure
    assert failure is not None
    text = str(failure)
    assert text.startswith("checkpoint at size 12: checkpoint-root: the signed root")
    assert "entries before 12 were changed" in text
    assert "(the checkpoint at size 6 verifies)" in text
    assert str(Failure(-1, "head", "x", "head")) == "log head: head: x"


def test_default_keys_are_those_published_in_the_database(
    ledger: Ledger, store: Store, db_url: str, signer: Signer
) -> None:
    build(ledger, signer)
    assert verify_log(store, P).ok  # the service published its key
    sign_with_unknown_key(ledger, db_url, signer)
    failure = verify_log(store, P).first_failure
    assert failure is not None and failure.kind == "checkpoint-unknown-key"
    assert verify_log(store, P, checkpoints=False).ok


def test_key_rotation_keeps_old_checkpoints_verifiable(
    ledger: Ledger, store: Store, signer: Signer
) -> None:
    build(ledger, signer)
    new_key = generate_signer(PREFIX + ".2027")
    rotated = CheckpointService(store, new_key, origin_prefix=PREFIX, every=0, interval=0)
    ledger.append(P, [f.mask_created("after-rotation")], "t")
    assert rotated.issue(P).key_name == PREFIX + ".2027"
    both = verify_log(store, P, verifiers=[signer.verifier(), new_key.verifier()])
    assert both.ok and both.checkpoints == 3
    only_new = verify_log(store, P, verifiers=[new_key.verifier()]).first_failure
    assert only_new is not None
    assert (only_new.seq, only_new.kind) == (6, "checkpoint-unknown-key")
    assert verify_log(store, P).ok  # both keys were published in the database


def test_entry_failure_before_a_checkpoint_comes_first(
    ledger: Ledger, store: Store, db_url: str, signer: Signer
) -> None:
    build(ledger, signer)
    change_bytes(ledger, db_url, signer)  # entry 7
    forge_signature(ledger, db_url, signer)  # checkpoint 12
    strip_signature(ledger, db_url, signer)  # checkpoint 6: before entry 7
    failure = verify_log(store, P, verifiers=[signer.verifier()]).first_failure
    assert failure is not None and (failure.seq, failure.kind) == (6, "checkpoint-unsigned")


def test_stored_tree_hash_beyond_the_log(
    ledger: Ledger, store: Store, db_url: str, signer: Signer
) -> None:
    build(ledger, signer)
    superuser_sql(
        db_url,
        "INSERT INTO tree_hashes (project, idx, hash) VALUES (?, ?, ?)",
        (P, stored_hash_count(12), bytes(32)),
    )
    failure = verify_log(store, P, verifiers=[signer.verifier()]).first_failure
    assert failure is not None and (failure.seq, failure.kind) == (12, "tree")


# --- the same, checked in ranges -----------------------------------------------------


@pytest.fixture
def in_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make verify_log split even a 12-entry log into ranges of 4 (pages of 2), run on
    threads instead of processes: the range logic, without process start-up time."""
    monkeypatch.setattr(verify, "_ENTRY_PAGE", 2)
    monkeypatch.setattr(verify, "_MIN_RANGE", 3)
    monkeypatch.setattr(verify, "_range_pool", lambda workers: ThreadPoolExecutor(workers))


RANGE_CASES = [c for c in CASES if c[0] in {
    "changed entry bytes", "deleted entry", "swapped entries", "truncated tail",
    "truncated tail and head", "history rewritten after a checkpoint",
    "history rewritten before both", "forged signature",
}]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "tamper", "seq", "kind", "subject"), RANGE_CASES, ids=[c[0] for c in RANGE_CASES]
)
@pytest.mark.usefixtures("in_ranges")
def test_ranges_name_the_same_first_failure(
    ledger: Ledger,
    store: Store,
    db_url: str,
    signer: Signer,
    case: str,
    tamper: Tamper,
    seq: int,
    kind: str,
    subject: str,
) -> None:
    build(ledger, signer)
    keys = [signer.verifier()]
    assert verify._ranges(12, 2) == [(0, 4), (4, 8), (8, 12)]
    whole = verify_log(store, P, verifiers=keys, workers=2)
    assert whole.ok and whole.checkpoints == 2 and whole.checked == 12
    assert whole.root == verify_log(store, P, verifiers=keys).root
    tamper(ledger, db_url, signer)
    failure = verify_log(store, P, verifiers=keys, workers=2).first_failure
    assert failure is not None, case
    assert (failure.seq, failure.kind, failure.subject) == (seq, kind, subject), str(failure)


def test_worker_processes(tmp_path: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real spawned worker processes (SQLite only: the range logic runs on both
    backends above; this checks the processes themselves)."""
    db_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    store = open_store(db_url, upgrade=True)
    ledger = Ledger(store)
    monkeypatch.setattr(verify, "_MIN_RANGE", 3)
    monkeypatch.setattr(verify, "_ENTRY_PAGE", 8)  # in this process: the range bounds
    build(ledger, signer)
    ledger.append(P, [f.mask_created(f"more{k}") for k in range(20)], "t")  # 32 entries
    keys = [signer.verifier()]
    assert verify._ranges(32, 2) == [(0, 8), (8, 16), (16, 24), (24, 32)]
    progress: list[int] = []
    report = verify_log(
        store, P, lambda done, total: progress.append(done), verifiers=keys, workers=2
    )
    assert report.ok and report.checked == 32 and report.checkpoints == 2
    assert report.root == verify_log(store, P, verifiers=keys).root
    assert progress[-1] == 32 and progress == sorted(progress)
    change_bytes(ledger, db_url, signer)
    failure = verify_log(store, P, verifiers=keys, workers=2).first_failure
    store.close()
    assert failure is not None and (failure.seq, failure.kind) == (7, "leaf")


def test_a_failure_leaves_no_read_ahead_running(
    ledger: Ledger, store: Store, db_url: str, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify reads the next page while it checks one. When a page fails, that read
    must be over before verify returns: the caller may close the store next, and
    closing a SQLite connection another thread is reading from crashes the process."""
    import threading
    import time

    build(ledger, signer)
    change_bytes(ledger, db_url, signer)  # entry 7 fails; the page after it is read ahead
    monkeypatch.setattr(verify, "_ENTRY_PAGE", 4)
    real_read, real_feed = verify._read_page, verify.LogChecker.feed
    reading = threading.Event()
    finished: list[int] = []

    def slow_read(*args: object) -> verify._Page:
        page = real_read(*args)  # type: ignore[arg-type]
        if page.start == 8:  # the read ahead while page 4..7 is checked
            reading.set()
            time.sleep(0.3)
            finished.append(page.start)
        return page

    def slow_feed(self: verify.LogChecker, *args: object) -> None:
        time.sleep(0.1)  # checking takes long enough for the read ahead to start
        real_feed(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(verify, "_read_page", slow_read)
    monkeypatch.setattr(verify.LogChecker, "feed", slow_feed)
    failure = verify_log(store, P, verifiers=[signer.verifier()]).first_failure
    assert failure is not None and (failure.seq, failure.kind) == (7, "leaf")
    assert reading.is_set(), "the page after the failing one was not read ahead"
    assert finished == [8], "verify returned while a read ahead was still running"
