"""Transparency-log checkpoints, as specified by C2SP tlog-checkpoint.

Spec: https://c2sp.org/tlog-checkpoint. A checkpoint is the text of a signed note
(see :mod:`ledger.note`)::

    <origin>
    <tree size, decimal, no leading zeros>
    <base64 of the 32-byte RFC 6962 root hash>
    [extension lines, each non-empty]

The format is the one Go's sumdb and the witness network exchange.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ledger.errors import NoteError
from ledger.note import Note, Signer, Verifier, _b64decode, _b64encode, open_note, sign_note

__all__ = [
    "Checkpoint",
    "MalformedCheckpoint",
    "OriginMismatch",
    "open_checkpoint",
    "parse_checkpoint",
    "sign_checkpoint",
]

#: tree sizes are unsigned 64-bit integers, as in Go's tlog implementations
MAX_SIZE = 2**64 - 1

_DECIMAL = re.compile(r"0|[1-9][0-9]*")  # ASCII only, no sign, no leading zeros


class MalformedCheckpoint(NoteError):
    """A checkpoint text or field does not follow the tlog-checkpoint format."""


class OriginMismatch(NoteError):
    """A correctly signed checkpoint comes from another log than the one expected."""


def _check_line(value: str, what: str) -> None:
    if not value:
        raise MalformedCheckpoint(f"checkpoint {what} is empty")
    for ch in value:
        if ch < " ":
            raise MalformedCheckpoint(
                f"checkpoint {what} contains control character U+{ord(ch):04X}"
            )


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin, tree size and root hash, plus optional extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        # bool is an int subclass; True is not a tree size
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise MalformedCheckpoint(f"checkpoint size must be an integer, got {self.size!r}")
        if not 0 <= self.size <= MAX_SIZE:
            raise MalformedCheckpoint(f"checkpoint size {self.size} is out of range")
        if len(self.root_hash) != 32:
            raise MalformedCheckpoint(
                f"checkpoint root hash must be 32 bytes, got {len(self.root_hash)}"
            )
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for i, ext in enumerate(self.extensions, start=1):
            _check_line(ext, f"extension line {i}")

    def body(self) -> str:
        """The note text: origin, size, base64 root hash and extensions, one per line."""
        lines = [self.origin, str(self.size), _b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint body strictly; raise :class:`MalformedCheckpoint` on any defect."""
    if not text.endswith("\n"):
        raise MalformedCheckpoint("checkpoint text does not end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedCheckpoint(
            f"checkpoint has {len(lines)} line(s); it needs origin, tree size and root hash"
        )
    origin, size_line, root_line, *extensions = lines
    if not origin:
        raise MalformedCheckpoint("checkpoint origin is empty")
    if not _DECIMAL.fullmatch(size_line):
        raise MalformedCheckpoint(
            f"checkpoint size {size_line!r} is not a decimal number without sign or leading zeros"
        )
    size = int(size_line)
    if size > MAX_SIZE:
        raise MalformedCheckpoint(f"checkpoint size {size_line} is too large")
    root_hash = _b64decode(root_line)
    if root_hash is None:
        raise MalformedCheckpoint(f"checkpoint root hash {root_line!r} is not valid base64")
    if len(root_hash) != 32:
        raise MalformedCheckpoint(f"checkpoint root hash must be 32 bytes, got {len(root_hash)}")
    for i, ext in enumerate(extensions, start=1):
        if not ext:
            raise MalformedCheckpoint(f"checkpoint extension line {i} is empty")
    return Checkpoint(origin, size, root_hash, tuple(extensions))


def sign_checkpoint(cp: Checkpoint, *signers: Signer) -> bytes:
    """The checkpoint as a signed note."""
    return sign_note(cp.body(), *signers)


def open_checkpoint(
    note: bytes, verifiers: Iterable[Verifier], origin: str | None = None
) -> tuple[Checkpoint, Note]:
    """Verify a signed checkpoint note (see :func:`ledger.note.open_note`) and parse it.

    When ``origin`` is given, the checkpoint must come from that log.
    """
    opened = open_note(note, verifiers)
    cp = parse_checkpoint(opened.text)
    if origin is not None and cp.origin != origin:
        raise OriginMismatch(
            f"checkpoint origin {cp.origin!r} does not match the expected origin {origin!r}"
        )
    return cp, opened
