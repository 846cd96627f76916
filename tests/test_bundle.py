"""Audit bundles: export from both backends, offline verification, tampered bundles,
proof that a later bundle extends an older checkpoint, and the command line."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger.bundle import export_bundle, verify_bundle
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.checkpoints import CheckpointService, latest_checkpoint
from ledger.cli import main
from ledger.commands import common
from ledger.entry import entry_bytes
from ledger.errors import InvalidInput, NoteError, NotFound, VerificationFailed
from ledger.merkle import leaf_hash
from ledger.note import Signer, Verifier, generate_signer
from ledger.service import Ledger
from ledger.store import Store, open_store
from tests import factory as f
from tests.test_checkpoints import PREFIX, rewrite_history, superuser_sql

P = "proj"


@pytest.fixture
def signer() -> Signer:
    return generate_signer(PREFIX)


def make_service(store: Store, signer: Signer) -> CheckpointService:
    return CheckpointService(store, signer, origin_prefix=PREFIX, every=0, interval=0)


def export(ledger: Ledger, signer: Signer, out: Path) -> Path:
    export_bundle(ledger.store, P, out, make_service(ledger.store, signer), [signer.verifier()])
    return out


def build(ledger: Ledger, signer: Signer, masks: int = 6) -> None:
    """6 + masks entries; a checkpoint at 6; the export adds one at the end."""
    ledger.append(P, f.setup_events(), "t")
    make_service(ledger.store, signer).issue(P)
    ledger.append(P, [f.mask_created(f"i{k}") for k in range(masks)], "t")


def lines(bundle: Path) -> list[bytes]:
    return (bundle / "entries.jsonl").read_bytes().split(b"\n")[:-1]


def write_lines(bundle: Path, new: list[bytes]) -> None:
    (bundle / "entries.jsonl").write_bytes(b"".join(x + b"\n" for x in new))


def test_export_then_verify(ledger: Ledger, store: Store, tmp_path: Path, signer: Signer) -> None:
    build(ledger, signer)
    bundle = export(ledger, signer, tmp_path / "bundle")
    assert sorted(p.name for p in bundle.iterdir()) == [
        "README.md", "checkpoints", "entries.jsonl", "manifest.json", "verifier-keys.txt",
    ]  # fmt: skip
    assert lines(bundle) == [raw for _, raw in store.iter_entries(P)]
    assert sorted(p.name for p in (bundle / "checkpoints").iterdir()) == [
        "00000000000000000006.note",
        "00000000000000000012.note",
    ]
    manifest = json.loads((bundle / "manifest.json").read_text())
    cp = latest_checkpoint(store, P)
    assert cp is not None
    assert manifest["tree_size"] == 12 and manifest["root_hash"] == cp.root.hex()
    assert manifest["origin"] == f"{PREFIX}/{P}"
    assert signer.verifier().key_string() in (bundle / "verifier-keys.txt").read_text()
    assert "ledger bundle verify" in (bundle / "README.md").read_text()

    report = verify_bundle(bundle, [signer.verifier()])
    assert report.ok, report.first_failure
    assert (report.size, report.root, report.checkpoints) == (12, cp.root, 2)
    assert report.origin == f"{PREFIX}/{P}" and report.latest_checkpoint == 12
    assert verify_bundle(bundle, [signer.verifier()], deep=True).ok


def test_export_refuses_bad_targets_and_broken_logs(
    ledger: Ledger, store: Store, tmp_path: Path, signer: Signer, db_url: str
) -> None:
    with pytest.raises(NotFound, match="project proj does not exist"):
        export(ledger, signer, tmp_path / "none")
    build(ledger, signer)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InvalidInput, match="exists and is not an empty folder"):
        export(ledger, signer, tmp_path / "full")
    (tmp_path / "empty").mkdir()
    assert (export(ledger, signer, tmp_path / "empty") / "manifest.json").exists()
    raw = dict(store.iter_entries(P))[8].replace(b'"i2"', b'"i7"')
    superuser_sql(db_url, "UPDATE entries SET entry = ? WHERE project = ? AND seq = 8", (raw, P))
    with pytest.raises(VerificationFailed, match="entry 9: chain"):
        export(ledger, signer, tmp_path / "broken")
    assert not (tmp_path / "broken").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --- tampered bundles -----------------------------------------------------------------

BundleTamper = Callable[[Path, Signer], None]


def change_line(bundle: Path, signer: Signer) -> None:
    new = lines(bundle)
    new[7] = new[7].replace(b'"i1"', b'"i9"')
    write_lines(bundle, new)


def change_last_line(bundle: Path, signer: Signer) -> None:
    new = lines(bundle)
    new[11] = new[11].replace(b'"i5"', b'"i9"')
    write_lines(bundle, new)


def delete_line(bundle: Path, signer: Signer) -> None:
    write_lines(bundle, [x for i, x in enumerate(lines(bundle)) if i != 5])


def swap_lines(bundle: Path, signer: Signer) -> None:
    new = lines(bundle)
    new[3], new[4] = new[4], new[3]
    write_lines(bundle, new)


def truncate_tail(bundle: Path, signer: Signer) -> None:
    write_lines(bundle, lines(bundle)[:10])


def cut_last_newline(bundle: Path, signer: Signer) -> None:
    path = bundle / "entries.jsonl"
    path.write_bytes(path.read_bytes()[:-1])


def append_unsigned_entry(bundle: Path, signer: Signer) -> None:
    old = lines(bundle)
    extra = entry_bytes(
        event=b'{"forged":true}',
        prev=leaf_hash(old[-1]),
        principal="mallory",
        project=P,
        recorded_at="2099-01-01T00:00:00.000000Z",
        seq=len(old),
    )
    write_lines(bundle, [*old, extra])


def forge_signature(bundle: Path, signer: Signer) -> None:
    path = bundle / "checkpoints" / "00000000000000000012.note"
    text, _, line = path.read_text().rstrip("\n").rpartition("\n")
    name, _, sig64 = line.partition(" ")[2].partition(" ")
    raw = bytearray(base64.b64decode(sig64))
    raw[-1] ^= 0x80
    path.write_text(f"{text}\n— {name} {base64.b64encode(bytes(raw)).decode()}\n")


def strip_signature(bundle: Path, signer: Signer) -> None:
    path = bundle / "checkpoints" / "00000000000000000006.note"
    path.write_text(path.read_text().partition("\n\n")[0] + "\n\n")


def resign_with_unknown_key(bundle: Path, signer: Signer) -> None:
    path = bundle / "checkpoints" / "00000000000000000012.note"
    root = base64.b64decode(path.read_text().split("\n")[2])
    mallory = generate_signer(PREFIX)
    path.write_bytes(sign_checkpoint(Checkpoint(f"{PREFIX}/{P}", 12, root), mallory))


def rename_checkpoint(bundle: Path, signer: Signer) -> None:
    folder = bundle / "checkpoints"
    (folder / "00000000000000000006.note").rename(folder / "00000000000000000007.note")


def drop_checkpoints(bundle: Path, signer: Signer) -> None:
    for path in (bundle / "checkpoints").iterdir():
        path.unlink()


def drop_last_checkpoint(bundle: Path, signer: Signer) -> None:
    (bundle / "checkpoints" / "00000000000000000012.note").unlink()


def edit_manifest(bundle: Path, signer: Signer) -> None:
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["tree_size"] = 11
    path.write_text(json.dumps(manifest))


BUNDLE_CASES: list[tuple[str, BundleTamper, int, str]] = [
    # without stored leaf hashes, a changed entry shows at the next entry's chain link
    ("changed entry", change_line, 8, "chain"),
    ("changed last entry", change_last_line, 12, "checkpoint-root"),
    ("deleted entry", delete_line, 5, "sequence"),
    ("swapped entries", swap_lines, 3, "sequence"),
    ("truncated tail", truncate_tail, 12, "checkpoint-beyond-log"),
    ("truncated last line", cut_last_newline, 11, "malformed"),
    ("unsigned entry appended", append_unsigned_entry, 12, "unsigned-tail"),
    ("forged signature", forge_signature, 12, "checkpoint-signature"),
    ("stripped signature", strip_signature, 6, "checkpoint-unsigned"),
    ("signed by an unknown key", resign_with_unknown_key, 12, "checkpoint-unknown-key"),
    ("checkpoint renamed to another size", rename_checkpoint, 7, "checkpoint-malformed"),
    ("no checkpoints", drop_checkpoints, 0, "no-checkpoint"),
    ("last checkpoint removed", drop_last_checkpoint, 6, "unsigned-tail"),
    ("manifest edited", edit_manifest, -1, "manifest"),
]


@pytest.fixture(scope="module")
def clean_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Signer]:
    """One exported bundle (from SQLite) that each tamper case copies."""
    folder = tmp_path_factory.mktemp("clean")
    store = open_store(f"sqlite:///{folder / 'ledger.db'}", upgrade=True)
    signer = generate_signer(PREFIX)
    try:
        ledger = Ledger(store)
        build(ledger, signer)
        export(ledger, signer, folder / "bundle")
    finally:
        store.close()
    return folder / "bundle", signer


@pytest.mark.parametrize(
    ("case", "tamper", "seq", "kind"), BUNDLE_CASES, ids=[c[0] for c in BUNDLE_CASES]
)
def test_tampered_bundle_is_detected(
    clean_bundle: tuple[Path, Signer],
    tmp_path: Path,
    case: str,
    tamper: BundleTamper,
    seq: int,
    kind: str,
) -> None:
    source, signer = clean_bundle
    bundle = Path(shutil.copytree(source, tmp_path / "b"))
    assert verify_bundle(bundle, [signer.verifier()]).ok
    tamper(bundle, signer)
    failure = verify_bundle(bundle, [signer.verifier()]).first_failure
    assert failure is not None, case
    assert (failure.seq, failure.kind) == (seq, kind), str(failure)


def test_changed_entry_message_names_both_entries(
    clean_bundle: tuple[Path, Signer], tmp_path: Path
) -> None:
    source, signer = clean_bundle
    bundle = Path(shutil.copytree(source, tmp_path / "b"))
    change_line(bundle, signer)
    failure = verify_bundle(bundle, [signer.verifier()]).first_failure
    assert failure is not None
    assert "the leaf hash of entry 7 is" in str(failure)


def test_verify_bundle_usage_errors(clean_bundle: tuple[Path, Signer], tmp_path: Path) -> None:
    source, signer = clean_bundle
    with pytest.raises(InvalidInput, match="--key: at least one verifier key is needed"):
        verify_bundle(source, [])
    with pytest.raises(NotFound, match="does not exist"):
        verify_bundle(tmp_path / "nowhere", [signer.verifier()])
    bundle = Path(shutil.copytree(source, tmp_path / "b"))
    (bundle / "checkpoints" / "junk.txt").write_text("x")
    with pytest.raises(VerificationFailed, match=r"junk\.txt: not a checkpoint file"):
        verify_bundle(bundle, [signer.verifier()])
    (bundle / "manifest.json").write_text("{")
    with pytest.raises(VerificationFailed, match=r"manifest\.json is not readable JSON"):
        verify_bundle(bundle, [signer.verifier()])
    (bundle / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(VerificationFailed, match="format is not 'annotation-ledger-bundle/1'"):
        verify_bundle(bundle, [signer.verifier()])
    (bundle / "manifest.json").unlink()
    with pytest.raises(VerificationFailed, match=r"manifest\.json is missing: not an audit bundle"):
        verify_bundle(bundle, [signer.verifier()])


# --- extending an older checkpoint ----------------------------------------------------


def test_since_an_older_checkpoint(
    ledger: Ledger, store: Store, tmp_path: Path, signer: Signer
) -> None:
    build(ledger, signer)
    old = export(ledger, signer, tmp_path / "old")
    saved = tmp_path / "saved.note"
    shutil.copy(old / "checkpoints" / "00000000000000000012.note", saved)
    ledger.append(P, [f.mask_created(f"later{k}") for k in range(9)], "t")
    new = export(ledger, signer, tmp_path / "new")
    for since in (saved, old):
        report = verify_bundle(new, [signer.verifier()], since=since)
        assert report.ok, report.first_failure
        assert (report.since, report.size) == (12, 21)
    # the older bundle, given the newer checkpoint, is shorter than it
    shutil.copy(new / "checkpoints" / "00000000000000000021.note", tmp_path / "newer.note")
    failure = verify_bundle(old, [signer.verifier()], since=tmp_path / "newer.note").first_failure
    assert failure is not None and (failure.seq, failure.kind) == (21, "since-truncated")


def test_since_shows_where_history_was_rewritten(
    ledger: Ledger, store: Store, tmp_path: Path, signer: Signer, db_url: str
) -> None:
    build(ledger, signer)
    old = export(ledger, signer, tmp_path / "old")
    # a malicious operator rewrites entries 9.. and the checkpoints that covered them
    rewrite_history(ledger, db_url, keep=9, new_events=8)
    superuser_sql(db_url, "DELETE FROM checkpoints WHERE project = ? AND size > 9", (P,))
    new = export(ledger, signer, tmp_path / "new")
    assert verify_bundle(new, [signer.verifier()]).ok  # consistent in itself
    failure = verify_bundle(new, [signer.verifier()], since=old).first_failure
    assert failure is not None and (failure.seq, failure.kind) == (12, "since-rewritten")
    assert "the first entry that differs from the older bundle is entry 9" in failure.message
    only_note = verify_bundle(
        new, [signer.verifier()], since=old / "checkpoints" / "00000000000000000012.note"
    ).first_failure
    assert only_note is not None and only_note.kind == "since-rewritten"
    assert "history before entry 12 was rewritten" in only_note.message


def test_since_must_verify_and_match_the_log(
    ledger: Ledger, store: Store, tmp_path: Path, signer: Signer
) -> None:
    build(ledger, signer)
    bundle = export(ledger, signer, tmp_path / "b")
    mallory = generate_signer(PREFIX)
    forged = tmp_path / "forged.note"
    forged.write_bytes(sign_checkpoint(Checkpoint(f"{PREFIX}/{P}", 3, bytes(32)), mallory))
    with pytest.raises(NoteError, match=r"the older checkpoint .*forged\.note does not verify"):
        verify_bundle(bundle, [signer.verifier()], since=forged)
    other = tmp_path / "other.note"
    other.write_bytes(sign_checkpoint(Checkpoint(f"{PREFIX}/other", 3, bytes(32)), signer))
    failure = verify_bundle(bundle, [signer.verifier()], since=other).first_failure
    assert failure is not None and failure.kind == "since-origin"
    with pytest.raises(InvalidInput, match="--since: cannot read"):
        verify_bundle(bundle, [signer.verifier()], since=tmp_path / "missing.note")
    (tmp_path / "not-a-bundle").mkdir()
    with pytest.raises(InvalidInput, match=r"--since: .* is a folder but not an audit bundle"):
        verify_bundle(bundle, [signer.verifier()], since=tmp_path / "not-a-bundle")


def test_bundle_verifies_with_rotated_keys(
    ledger: Ledger, store: Store, tmp_path: Path, signer: Signer
) -> None:
    build(ledger, signer)
    new_key = generate_signer(PREFIX + ".2027")
    ledger.append(P, [f.mask_created("after-rotation")], "t")
    bundle = tmp_path / "b"
    keys: list[Verifier] = [signer.verifier(), new_key.verifier()]
    export_bundle(store, P, bundle, make_service(store, new_key), keys)
    assert verify_bundle(bundle, keys).ok
    failure = verify_bundle(bundle, [new_key.verifier()]).first_failure
    assert failure is not None and (failure.seq, failure.kind) == (6, "checkpoint-unknown-key")


# --- the command line -----------------------------------------------------------------


OPENED: list[Store] = []


def ledger_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the `ledger` command in-process; return exit code, stdout and stderr."""
    code = 0
    try:
        main(args)
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        while OPENED:  # a process would exit here; close what the command opened
            OPENED.pop().close()
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cli_env(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("LEDGER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LEDGER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEDGER_DATABASE_URL", db_url)
    monkeypatch.setenv("LEDGER_ORIGIN_PREFIX", PREFIX)

    def open_and_remember(url: str, **kw: Any) -> Store:
        store = open_store(url, **kw)
        OPENED.append(store)
        return store

    monkeypatch.setattr(common, "open_store", open_and_remember)
    events = tmp_path / "events.jsonl"
    all_events = f.setup_events() + [f.mask_created(f"i{k}") for k in range(6)]
    events.write_text("".join(json.dumps(e) + "\n" for e in all_events))
    return events


def test_cli_keys_checkpoint_note_verify(
    cli_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = ledger_cli(
        ["keys", "generate", "--name", "k.example", "--out", str(tmp_path / "k.key")], capsys
    )
    assert code == 0, err
    assert stat.S_IMODE((tmp_path / "k.key").stat().st_mode) == 0o600
    other_vkey = out.strip().splitlines()[-1]
    assert other_vkey.startswith("k.example+")

    assert ledger_cli(["append", "-p", P, str(cli_env)], capsys)[0] == 0
    code, note, err = ledger_cli(["checkpoint", "--project", P], capsys)
    assert code == 0, err
    assert note.startswith(f"{PREFIX}/{P}\n12\n") and "\n\n— " in note
    (tmp_path / "cp.note").write_text(note)
    code, vkey, _ = ledger_cli(["keys", "show"], capsys)
    vkey = vkey.strip()

    code, out, err = ledger_cli(
        ["note", "verify", "--key", vkey, str(tmp_path / "cp.note")], capsys
    )
    assert (code, out) == (0, note.partition("\n\n")[0] + "\n")
    assert "verified: signed by" in err
    code, _, err = ledger_cli(
        ["note", "verify", "--key", other_vkey, str(tmp_path / "cp.note")], capsys
    )
    assert code == 1 and "no signature from a known key" in err
    code, _, err = ledger_cli(
        ["note", "verify", "--key", "nonsense", str(tmp_path / "cp.note")], capsys
    )
    assert code == 2 and "--key (1): malformed verifier key" in err
    (tmp_path / "bad.note").write_text(note.replace("\n12\n", "\n13\n"))
    code, _, err = ledger_cli(["note", "verify", "--key", vkey, str(tmp_path / "bad.note")], capsys)
    assert code == 1 and "invalid signature" in err

    code, out, _ = ledger_cli(["checkpoint", "-p", P, "--list"], capsys)
    assert code == 0 and out.startswith("12\t")
    assert ledger_cli(["checkpoint", "-p", P, "--size", "12"], capsys)[1] == note
    assert ledger_cli(["checkpoint", "-p", P, "--size", "3"], capsys)[0] == 4
    code, out, _ = ledger_cli(["keys", "list"], capsys)
    assert out.splitlines() == [f"{vkey}\tconfig"]

    code, out, _ = ledger_cli(["proof", "inclusion", "-p", P, "--index", "3"], capsys)
    assert code == 0 and json.loads(out)["tree_size"] == 12
    code, out, _ = ledger_cli(["proof", "consistency", "-p", P, "--from", "6"], capsys)
    assert code == 0 and len(json.loads(out)["consistency_path"]) > 0
    code, _, err = ledger_cli(["proof", "inclusion", "-p", P, "--index", "12"], capsys)
    assert code == 2 and "entry 12 is out of range" in err

    assert ledger_cli(["verify", "-p", P], capsys)[0] == 0


def test_cli_bundle_export_and_verify(
    cli_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    assert ledger_cli(["append", "-p", P, str(cli_env)], capsys)[0] == 0
    code, old_note, _ = ledger_cli(["checkpoint", "-p", P], capsys)
    (tmp_path / "old.note").write_text(old_note)
    vkey = ledger_cli(["keys", "show"], capsys)[1].strip()
    code, out, err = ledger_cli(["bundle", "export", "-p", P, "-o", str(tmp_path / "b")], capsys)
    assert code == 0, err
    assert "exported 12 entries and 1 checkpoints" in out
    code, out, err = ledger_cli(
        [
            "bundle",
            "verify",
            str(tmp_path / "b"),
            "--key",
            vkey,
            "--since",
            str(tmp_path / "old.note"),
        ],
        capsys,
    )
    assert code == 0, err
    assert f"{P}: OK, 12 entries, 1 checkpoints" in out
    assert "the log extends your checkpoint at size 12" in out
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(vkey + "\n")
    assert (
        ledger_cli(
            ["bundle", "verify", str(tmp_path / "b"), "--keys-file", str(keys_file)], capsys
        )[0]
        == 0
    )
    code, _, err = ledger_cli(["bundle", "verify", str(tmp_path / "b")], capsys)
    assert code == 2 and "--key: give at least one verifier key" in err

    change_line(tmp_path / "b", generate_signer("x"))
    code, _, err = ledger_cli(["bundle", "verify", str(tmp_path / "b"), "--key", vkey], capsys)
    assert code == 1 and "FAILED at entry 8: chain" in err

    # `ledger verify` checks stored checkpoints against the configured key
    forged = old_note.replace(old_note.split("\n")[2], base64.b64encode(bytes(32)).decode())
    superuser_sql(db_url, "UPDATE checkpoints SET note = ? WHERE project = ?", (forged.encode(), P))
    code, _, err = ledger_cli(["verify", "-p", P], capsys)
    assert code == 1 and "checkpoint at size 12: checkpoint-signature" in err
