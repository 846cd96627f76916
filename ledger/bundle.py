"""Audit bundles: a project's log exported for verification with no database, no network.

A bundle is a folder::

    README.md            how to verify it, for the auditor
    manifest.json        project, origin, tree size, root hash, SHA-256 of entries.jsonl
    entries.jsonl        the entry bytes exactly as hashed, one per line, in sequence order
    checkpoints/         every signed checkpoint up to the exported size, one signed
                         note per file, named by tree size (20 digits, zero-padded)
    verifier-keys.txt    the verifier keys the ledger published, one per line

:func:`export_bundle` writes one, ending with a checkpoint at the exported size (issued
if needed), after recomputing every hash it exports. :func:`verify_bundle` trusts only
the verifier keys it is given: it recomputes every leaf, chain link and root from
``entries.jsonl``, checks every checkpoint's signature and root, requires the last
checkpoint to cover the whole log, and, given an auditor's older checkpoint (or an
older bundle), proves that the bundle's log extends it or shows where history was
rewritten. The manifest and ``verifier-keys.txt`` are conveniences; nothing is trusted
because they say so.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from ledger.checkpoint import MalformedCheckpoint, parse_checkpoint
from ledger.checkpoints import CheckpointService, StoredCheckpoint, list_checkpoints
from ledger.entry import format_time
from ledger.errors import InvalidInput, NoteError, NotFound, VerificationFailed
from ledger.note import Verifier, open_note
from ledger.store.base import Store
from ledger.verify import (
    CheckpointProblem,
    Failure,
    FailureFound,
    LogChecker,
    Progress,
    check_checkpoint_note,
)

__all__ = [
    "BUNDLE_FORMAT",
    "BundleReport",
    "ExportResult",
    "export_bundle",
    "verify_bundle",
]

BUNDLE_FORMAT = "annotation-ledger-bundle/1"
ENTRIES = "entries.jsonl"
MANIFEST = "manifest.json"
CHECKPOINTS = "checkpoints"
KEYS = "verifier-keys.txt"
README = "README.md"

_PAGE = 5000


def checkpoint_file_name(size: int) -> str:
    return f"{size:020d}.note"


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_bundle` wrote."""

    directory: Path
    project: str
    size: int
    root: bytes
    checkpoints: int
    entries_sha256: str


def export_bundle(
    store: Store,
    project: str,
    directory: Path,
    service: CheckpointService,
    verifiers: Sequence[Verifier],
    progress: Progress | None = None,
) -> ExportResult:
    """Write the audit bundle of ``project`` to ``directory`` (new or empty).

    The bundle ends at the project's latest checkpoint, issued now if the log has grown
    since. Every entry is re-checked on the way out; a log that does not match its
    checkpoint is not exported (VerificationFailed).
    """
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise InvalidInput.field("-o", f"{directory} exists and is not an empty folder")
    head = store.head(project)
    if head is None or head.size == 0:
        raise NotFound(f"project {project} does not exist")
    latest = service.issue(project)
    size = latest.size
    cps: list[StoredCheckpoint] = []
    after = 0
    while page := list_checkpoints(store, project, after=after, limit=1000):
        cps.extend(cp for cp in page if cp.size <= size)
        after = page[-1].size
        if after >= size:
            break

    parent = directory.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=parent))
    try:
        checker = LogChecker(project, [size])
        digest = hashlib.sha256()
        with (work / ENTRIES).open("wb") as out:
            expected = 0
            while expected < size:
                end = min(size, expected + _PAGE)
                raws = [raw for _, raw in store.iter_entries(project, expected, end, _PAGE)]
                if len(raws) != end - expected:
                    raise VerificationFailed(
                        f"project {project}: entries {expected} to {end - 1} are not all stored;"
                        " run `ledger verify`"
                    )
                try:
                    checker.feed(raws, [])
                except FailureFound as stop:
                    raise VerificationFailed(
                        f"project {project}: {stop.failure}; run `ledger verify`"
                    ) from None
                chunk = b"".join(raw + b"\n" for raw in raws)
                digest.update(chunk)
                out.write(chunk)
                expected = end
                if progress is not None:
                    progress(expected, size)
        root = checker.root()
        if root != latest.root:
            raise VerificationFailed(
                f"project {project}: the entries do not hash to the root of the checkpoint at "
                f"size {size}; run `ledger verify`"
            )
        (work / CHECKPOINTS).mkdir()
        for cp in cps:
            (work / CHECKPOINTS / checkpoint_file_name(cp.size)).write_bytes(cp.note)
        (work / KEYS).write_text(
            "# Verifier keys published by the ledger (for reference: verify with keys\n"
            "# you obtained independently).\n" + "".join(v.key_string() + "\n" for v in verifiers),
            encoding="utf-8",
        )
        manifest = {
            "format": BUNDLE_FORMAT,
            "project": project,
            "origin": service.origin(project),
            "tree_size": size,
            "root_hash": root.hex(),
            "entries": ENTRIES,
            "entries_sha256": digest.hexdigest(),
            "checkpoints": len(cps),
            "exported_at": format_time(datetime.now(UTC)),
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        (work / README).write_text(_readme(manifest, verifiers), encoding="utf-8")
        if directory.exists():
            directory.rmdir()
        os.replace(work, directory)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return ExportResult(directory, project, size, root, len(cps), digest.hexdigest())


# --- verification ---------------------------------------------------------------------


@dataclass
class BundleReport:
    """What :func:`verify_bundle` found. ``since`` is the size of the older checkpoint
    that the log was proven to extend."""

    project: str
    origin: str | None = None
    size: int = 0
    root: bytes | None = None
    checkpoints: int = 0
    latest_checkpoint: int | None = None
    since: int | None = None
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def first_failure(self) -> Failure | None:
        return self.failures[0] if self.failures else None


@dataclass(frozen=True)
class _BundledCheckpoint:
    size: int
    root: bytes | None
    origin: str | None
    problem: CheckpointProblem | None


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VerificationFailed(f"{path} is missing: not an audit bundle") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise VerificationFailed(f"{path} is not readable JSON: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise VerificationFailed(f"{path}: format is not {BUNDLE_FORMAT!r}")
    if not isinstance(manifest.get("project"), str) or not manifest["project"]:
        raise VerificationFailed(f"{path}: project must be a non-empty string")
    return manifest


def _bundled_checkpoints(
    directory: Path, verifiers: Sequence[Verifier], project: str
) -> list[_BundledCheckpoint]:
    folder = directory / CHECKPOINTS
    if not folder.is_dir():
        raise VerificationFailed(f"{folder} is missing: not an audit bundle")
    out = []
    for path in sorted(folder.iterdir()):
        stem = path.name.removesuffix(".note")
        if not path.name.endswith(".note") or not stem.isdigit() or not stem.isascii():
            raise VerificationFailed(f"{path}: not a checkpoint file (<tree size>.note)")
        size = int(stem)
        try:
            cp = check_checkpoint_note(path.read_bytes(), verifiers, size=size, project=project)
        except CheckpointProblem as p:
            out.append(_BundledCheckpoint(size, None, None, p))
            continue
        out.append(_BundledCheckpoint(size, cp.root, cp.origin, None))
    return sorted(out, key=lambda c: c.size)


def _entry_pages(path: Path) -> Iterator[list[bytes]]:
    try:
        f: BinaryIO = path.open("rb")
    except FileNotFoundError:
        raise VerificationFailed(f"{path} is missing: not an audit bundle") from None
    except OSError as e:
        raise VerificationFailed(f"cannot read {path}: {e.strerror}") from e
    with f:
        page: list[bytes] = []
        for seq, line in enumerate(f):
            if not line.endswith(b"\n"):
                raise FailureFound(
                    Failure(seq, "malformed", "the last line does not end with a newline")
                )
            page.append(line[:-1])
            if len(page) == _PAGE:
                yield page
                page = []
        if page:
            yield page


def _open_since(since: Path, verifiers: Sequence[Verifier]) -> tuple[int, bytes, str, Path | None]:
    """(size, root, origin, older entries file or None) of the auditor's older state."""
    old_entries: Path | None = None
    note_path = since
    if since.is_dir():
        folder = since / CHECKPOINTS
        notes = sorted(folder.glob("*.note")) if folder.is_dir() else []
        if not notes:
            raise InvalidInput.field("--since", f"{since} is a folder but not an audit bundle")
        note_path = notes[-1]
        old_entries = since / ENTRIES
    try:
        note = note_path.read_bytes()
    except OSError as e:
        raise InvalidInput.field("--since", f"cannot read {note_path}: {e.strerror}") from e
    try:
        opened = open_note(note, verifiers)
        cp = parse_checkpoint(opened.text)
    except (NoteError, MalformedCheckpoint) as e:
        raise NoteError(f"the older checkpoint {note_path} does not verify: {e}") from e
    return cp.size, cp.root_hash, cp.origin, old_entries


def _first_difference(old_entries: Path, new_entries: Path) -> int | None:
    with old_entries.open("rb") as old, new_entries.open("rb") as new:
        for seq, (a, b) in enumerate(zip(old, new, strict=False)):
            if a != b:
                return seq
    return None


def verify_bundle(
    directory: Path,
    verifiers: Sequence[Verifier],
    *,
    since: Path | None = None,
    progress: Progress | None = None,
    deep: bool = False,
) -> BundleReport:
    """Verify an audit bundle against the given verifier keys only.

    ``since``: an older signed checkpoint file, or an older bundle folder (its latest
    checkpoint; its entries then locate the first rewritten entry). Structural
    problems (missing files) raise VerificationFailed; everything else found is in the
    report, first failure first.
    """
    if not verifiers:
        raise InvalidInput.field("--key", "at least one verifier key is needed")
    if not directory.is_dir():
        raise NotFound(f"audit bundle {directory} does not exist")
    manifest = _read_manifest(directory)
    project: str = manifest["project"]
    report = BundleReport(project=project)
    cps = _bundled_checkpoints(directory, verifiers, project)
    old = _open_since(since, verifiers) if since is not None else None
    wanted = [c.size for c in cps if c.problem is None]
    if old is not None:
        wanted.append(old[0])
    checker = LogChecker(project, wanted, deep)
    total = manifest.get("tree_size") if isinstance(manifest.get("tree_size"), int) else 0
    try:
        _check_entries(directory, report, checker, cps, progress, int(total or 0))
        _check_end(report, checker, cps, manifest, old, directory)
    except FailureFound as stop:
        report.failures.append(stop.failure)
    return report


def _check_entries(
    directory: Path,
    report: BundleReport,
    checker: LogChecker,
    cps: list[_BundledCheckpoint],
    progress: Progress | None,
    total: int,
) -> None:
    pos = 0
    origins: set[str] = set()

    def check_up_to(limit: int) -> None:
        nonlocal pos
        roots = dict(checker.roots)
        while pos < len(cps) and cps[pos].size <= limit:
            cp = cps[pos]
            if cp.problem is not None:
                raise FailureFound(
                    Failure(cp.size, cp.problem.kind, cp.problem.message, "checkpoint")
                )
            if cp.size not in roots:
                return
            assert cp.origin is not None
            origins.add(cp.origin)
            if len(origins) > 1:
                raise FailureFound(
                    Failure(
                        cp.size,
                        "checkpoint-malformed",
                        f"checkpoints name different origins: {sorted(origins)}",
                        "checkpoint",
                    )
                )
            if roots[cp.size] != cp.root:
                raise FailureFound(
                    Failure(
                        cp.size,
                        "checkpoint-root",
                        f"the signed root is not the root of the bundle's first {cp.size} "
                        f"entries: entries before {cp.size} were changed after it was signed",
                        "checkpoint",
                    )
                )
            report.origin = cp.origin
            report.checkpoints += 1
            report.latest_checkpoint = cp.size
            pos += 1

    for page in _entry_pages(directory / ENTRIES):
        try:
            checker.feed(page, [])
        except FailureFound as stop:
            check_up_to(stop.failure.seq)
            raise
        check_up_to(checker.size)
        if progress is not None:
            progress(checker.size, max(total, checker.size))
    check_up_to(checker.size)
    if pos < len(cps):
        cp = cps[pos]
        if cp.problem is not None:
            raise FailureFound(Failure(cp.size, cp.problem.kind, cp.problem.message, "checkpoint"))
        raise FailureFound(
            Failure(
                cp.size,
                "checkpoint-beyond-log",
                f"a checkpoint was signed at size {cp.size} but the bundle holds "
                f"{checker.size} entries: entries were removed after it was signed",
                "checkpoint",
            )
        )


def _check_end(
    report: BundleReport,
    checker: LogChecker,
    cps: list[_BundledCheckpoint],
    manifest: dict[str, Any],
    old: tuple[int, bytes, str, Path | None] | None,
    directory: Path,
) -> None:
    n = checker.size
    report.size = n
    report.root = checker.root()
    if n == 0:
        raise FailureFound(Failure(0, "missing", "the bundle holds no entries"))
    if report.latest_checkpoint is None:
        raise FailureFound(Failure(0, "no-checkpoint", "no checkpoint signed by the given keys"))
    if report.latest_checkpoint < n:
        raise FailureFound(
            Failure(
                report.latest_checkpoint,
                "unsigned-tail",
                f"entries {report.latest_checkpoint} to {n - 1} are not covered by a signed "
                "checkpoint",
            )
        )
    expected_origin = report.origin
    if manifest.get("tree_size") != n or manifest.get("root_hash") != report.root.hex():
        raise FailureFound(
            Failure(
                -1,
                "manifest",
                f"manifest.json says tree size {manifest.get('tree_size')} and root "
                f"{manifest.get('root_hash')}, the entries give {n} and {report.root.hex()}",
                "bundle",
            )
        )
    if old is None:
        return
    m, old_root, old_origin, old_entries = old
    if old_origin != expected_origin:
        raise FailureFound(
            Failure(
                m,
                "since-origin",
                f"the older checkpoint is for log {old_origin!r}, the bundle for "
                f"{expected_origin!r}",
                "checkpoint",
            )
        )
    if m > n:
        raise FailureFound(
            Failure(
                m,
                "since-truncated",
                f"the older checkpoint covers {m} entries but the bundle holds only {n}: "
                "history was truncated",
                "checkpoint",
            )
        )
    roots = dict(checker.roots)
    if roots[m] != old_root:
        where = ""
        if old_entries is not None and old_entries.is_file():
            first = _first_difference(old_entries, directory / ENTRIES)
            if first is not None:
                where = f"; the first entry that differs from the older bundle is entry {first}"
        raise FailureFound(
            Failure(
                m,
                "since-rewritten",
                f"the bundle's first {m} entries do not hash to the root of the older "
                f"checkpoint: history before entry {m} was rewritten{where}",
                "checkpoint",
            )
        )
    report.since = m


def _readme(manifest: dict[str, Any], verifiers: Sequence[Verifier]) -> str:
    keys = "".join(f"    {v.key_string()}\n" for v in verifiers)
    return f"""# Audit bundle: project {manifest["project"]}

This folder holds the complete log of project `{manifest["project"]}` up to tree size
{manifest["tree_size"]}, with the checkpoints the ledger signed. You can check all of it
without the ledger's database, without network access and without trusting the
ledger's operator: you only need a verifier key that you obtained independently.

    manifest.json       origin {manifest["origin"]}, tree size {manifest["tree_size"]},
                        root hash {manifest["root_hash"]}
    entries.jsonl       every entry, byte for byte as hashed, one per line
    checkpoints/        the signed checkpoints, one per file, named by tree size
    verifier-keys.txt   the keys the ledger says it published (compare with yours)

## With the ledger's command line

    ledger bundle verify THIS_FOLDER --key '<verifier key>' [--key '<older key>' ...]
    ledger bundle verify THIS_FOLDER --key '<verifier key>' --since SAVED.note

The first recomputes every hash and checks every checkpoint; the second also proves
that this log extends a checkpoint you saved earlier (a file, or an older bundle
folder), or names where history was rewritten. Exit code 0 means verified. The keys
published when this bundle was made:

{keys}
## By hand

1. Entries: line i (from 0) of entries.jsonl is entry i, the RFC 8785 canonical JSON
   of {{"event", "prev", "principal", "project", "recorded_at", "seq", "v"}}; its
   "seq" is i and its "prev" is the hex leaf hash of entry i-1 (null for entry 0).
2. Leaf hash = SHA-256(0x00 || entry bytes); interior node = SHA-256(0x01 || left ||
   right); the root over n entries is the RFC 9162 (RFC 6962) Merkle tree hash.
3. Checkpoints are C2SP tlog-checkpoint notes: origin line, tree size, base64 root
   hash, then a blank line and signature lines "— <key name> <base64(4-byte key id ||
   Ed25519 signature)>" over the text before the blank line (C2SP signed-note; Go's
   golang.org/x/mod/sumdb/note opens them). The key id is the first 4 bytes of
   SHA-256(key name || 0x0A || 0x01 || public key).
4. Each checkpoint's root must equal the root over the first <tree size> entries, and
   the last checkpoint must cover every entry.
"""
