"""Signed notes with Ed25519 keys, as specified by C2SP signed-note.

Spec: https://c2sp.org/signed-note. The behaviour follows Go's reference
implementation, golang.org/x/mod/sumdb/note, so that a note signed here opens with
``note.Open`` and a note signed with ``note.Sign`` opens here.

A signed note is a text ending in a newline, a blank line, and one or more signature
lines ``— <key name> <base64(4-byte key id ‖ signature)>``. Keys travel as strings:

* verifier key: ``<name>+<key id hex>+<base64(0x01 ‖ 32-byte public key)>``
* signer key:   ``PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 ‖ 32-byte seed)>``

where the key id is ``SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]``.

Two checks are stricter than Go, and never reject what Go itself writes: base64 must be
canonical (padded, zero padding bits, no line breaks), and key names may not contain
control characters (Go refuses only Unicode spaces and '+').

Failures raise :class:`MalformedKey`, :class:`MalformedNote`, :class:`InvalidSignature`,
:class:`UnverifiedNote` or :class:`AmbiguousKey`, all subclasses of
:class:`~ledger.errors.NoteError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ledger.errors import NoteError

__all__ = [
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "AmbiguousKey",
    "InvalidSignature",
    "MalformedKey",
    "MalformedNote",
    "Note",
    "Signature",
    "Signer",
    "UnverifiedNote",
    "Verifier",
    "generate_signer",
    "key_id",
    "open_note",
    "parse_signer_key",
    "parse_verifier_key",
    "sign_note",
]

#: signature type byte for Ed25519 (the only type Go's note package supports)
ALG_ED25519 = 0x01
#: Go's note.Open rejects notes with more signature lines than this
MAX_SIGNATURES = 100

_PRIVATE_PREFIX = "PRIVATE+KEY+"
_SIG_PREFIX = "— "  # em dash U+2014, space
_HEX_ID = re.compile(r"[0-9a-fA-F]{8}")  # strconv.ParseUint(s, 16, 32) on 8 chars


class MalformedKey(NoteError):
    """A verifier or signer key string (or a key name) is not well formed."""


class MalformedNote(NoteError):
    """A signed note, or a text to sign, does not follow the signed-note format."""


class InvalidSignature(NoteError):
    """A signature by a known key (name and key id) does not verify."""


class UnverifiedNote(NoteError):
    """The note is well formed but carries no signature by any known key.

    ``note`` holds the parsed text and the signatures that could not be checked.
    """

    def __init__(self, message: str, note: Note) -> None:
        super().__init__(message)
        self.note = note


class AmbiguousKey(NoteError):
    """Several known verifiers share the name and key id of a signature."""


def key_id(name: str, public_key: bytes) -> bytes:
    """Return the 4-byte key id of an Ed25519 key: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key)[:4]."""
    if len(public_key) != 32:
        raise MalformedKey(f"Ed25519 public key must be 32 bytes, got {len(public_key)}")
    return _raw_key_id(name, bytes([ALG_ED25519]) + public_key)


def _raw_key_id(name: str, typed_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + typed_key).digest()[:4]


def _name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid key name, or None.

    Go's isValidName: non-empty, no '+', no Unicode space (White_Space, which is
    categories Zs/Zl/Zp plus the ASCII and C1 space controls). Control characters
    (category Cc) are refused too: no signed note may contain them.
    """
    if not name:
        return "key name is empty"
    if "+" in name:
        return f"key name {name!r} contains '+'"
    for ch in name:
        category = unicodedata.category(ch)
        if category in ("Zs", "Zl", "Zp"):
            return f"key name {name!r} contains a space character (U+{ord(ch):04X})"
        if category == "Cc":
            return f"key name {name!r} contains a control character (U+{ord(ch):04X})"
        if category == "Cs":
            return f"key name {name!r} is not valid UTF-8 (lone surrogate)"
    return None


def _check_name(name: str) -> None:
    problem = _name_problem(name)
    if problem is not None:
        raise MalformedKey(problem)


def _b64decode(s: str) -> bytes | None:
    """Strict standard base64 (RFC 4648 §4, padded); None if not canonical."""
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return None
    # Reject encodings that decode but are not what an encoder would write
    # (excess padding, non-zero trailing bits), so each value has one spelling.
    if base64.b64encode(raw).decode() != s:
        return None
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _key_label(name: str, kid: bytes) -> str:
    return f"{name}+{kid.hex()}"


@dataclass(frozen=True)
class Verifier:
    """An Ed25519 verifier key: checks signatures made by one named key."""

    name: str
    key_id: bytes
    public_key: bytes
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        expected = key_id(self.name, self.public_key)
        if self.key_id != expected:
            raise MalformedKey(
                f"key id {self.key_id.hex()} does not match the key (expected {expected.hex()})"
            )
        object.__setattr__(self, "_key", Ed25519PublicKey.from_public_bytes(self.public_key))

    def key_string(self) -> str:
        """The verifier key in Go's format, ``<name>+<key id hex>+<base64 key>``."""
        typed = bytes([ALG_ED25519]) + self.public_key
        return f"{self.name}+{self.key_id.hex()}+{_b64encode(typed)}"

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """Whether ``sig`` is a valid Ed25519 signature of ``msg`` by this key."""
        try:
            self._key.verify(sig, msg)
        except _CryptoInvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """An Ed25519 signing key with its name. Equality compares name and key id."""

    name: str
    key_id: bytes
    private_key: Ed25519PrivateKey = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        expected = key_id(self.name, self._public_bytes())
        if self.key_id != expected:
            raise MalformedKey(
                f"key id {self.key_id.hex()} does not match the key (expected {expected.hex()})"
            )

    def _public_bytes(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def key_string(self) -> str:
        """The secret signer key in Go's format, ``PRIVATE+KEY+<name>+<id>+<base64 seed>``."""
        seed = self.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        typed = bytes([ALG_ED25519]) + seed
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key_id.hex()}+{_b64encode(typed)}"

    def verifier(self) -> Verifier:
        return Verifier(self.name, self.key_id, self._public_bytes())

    def sign(self, msg: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``msg``."""
        return self.private_key.sign(msg)


def generate_signer(name: str) -> Signer:
    """A new random Ed25519 signer named ``name``."""
    _check_name(name)
    private_key = Ed25519PrivateKey.generate()
    public = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return Signer(name, key_id(name, public), private_key)


def _split_key(s: str, what: str) -> tuple[str, bytes, bytes]:
    """Split ``<name>+<hex id>+<base64>`` into name, key id and the decoded key data.

    Like Go, the name ends at the first '+' and the key data (whose base64 may itself
    contain '+') is everything after the second.
    """
    name, sep1, rest = s.partition("+")
    hex_id, sep2, key64 = rest.partition("+")
    if not sep1 or not sep2:
        raise MalformedKey(f"malformed {what}: expected <name>+<key id>+<key data>")
    problem = _name_problem(name)
    if problem is not None:
        raise MalformedKey(f"malformed {what}: {problem}")
    if not _HEX_ID.fullmatch(hex_id):
        raise MalformedKey(f"malformed {what}: key id {hex_id!r} is not 8 hexadecimal digits")
    data = _b64decode(key64)
    if data is None:
        raise MalformedKey(f"malformed {what}: key data is not valid base64")
    if not data:
        raise MalformedKey(f"malformed {what}: key data is empty")
    if data[0] != ALG_ED25519:
        raise MalformedKey(
            f"malformed {what}: unknown key algorithm 0x{data[0]:02x} "
            f"(only Ed25519, 0x{ALG_ED25519:02x}, is supported)"
        )
    if len(data) != 33:
        raise MalformedKey(f"malformed {what}: Ed25519 key must be 32 bytes, got {len(data) - 1}")
    return name, bytes.fromhex(hex_id), data[1:]


def parse_verifier_key(s: str) -> Verifier:
    """Parse a verifier key ``<name>+<key id hex>+<base64(0x01 ‖ public key)>``."""
    name, kid, public = _split_key(s, "verifier key")
    expected = key_id(name, public)
    if kid != expected:
        raise MalformedKey(
            f"malformed verifier key: key id {kid.hex()} does not match the key "
            f"(expected {expected.hex()})"
        )
    return Verifier(name, kid, public)


def parse_signer_key(s: str) -> Signer:
    """Parse a signer key ``PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 ‖ seed)>``.

    Error messages never include the key data.
    """
    if not s.startswith(_PRIVATE_PREFIX):
        raise MalformedKey(f"malformed signer key: does not start with {_PRIVATE_PREFIX!r}")
    name, kid, seed = _split_key(s[len(_PRIVATE_PREFIX) :], "signer key")
    private_key = Ed25519PrivateKey.from_private_bytes(seed)
    public = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    expected = key_id(name, public)
    if kid != expected:
        raise MalformedKey(
            f"malformed signer key: key id {kid.hex()} does not match the key derived "
            f"from the seed (expected {expected.hex()})"
        )
    return Signer(name, kid, private_key)


@dataclass(frozen=True)
class Signature:
    """One signature line of a note: key name, 4-byte key id, and the base64 as written."""

    name: str
    key_id: bytes
    base64: str


@dataclass(frozen=True)
class Note:
    """An opened note: its text, the verified signatures, and those by unknown keys."""

    text: str
    sigs: list[Signature]
    unverified_sigs: list[Signature]


def _control_char(s: str) -> str | None:
    """The first ASCII control character other than newline in ``s``, or None."""
    for ch in s:
        if ch < " " and ch != "\n":
            return ch
    return None


def sign_note(text: str, *signers: Signer) -> bytes:
    """Sign ``text`` with each signer and return the encoded note.

    The text must be non-empty, end with a newline, and contain no control characters
    other than newline; the output is ``text``, a blank line, then one signature line
    per signer, in order.
    """
    if not text:
        raise MalformedNote("malformed note: text is empty")
    if not text.endswith("\n"):
        raise MalformedNote("malformed note: text does not end with a newline")
    bad = _control_char(text)
    if bad is not None:
        raise MalformedNote(f"malformed note: text contains control character U+{ord(bad):04X}")
    try:
        msg = text.encode()
    except UnicodeEncodeError as e:
        raise MalformedNote("malformed note: text is not valid UTF-8") from e
    if not signers:
        raise NoteError("cannot sign a note without a signer")
    seen: set[tuple[str, bytes]] = set()
    lines = []
    for signer in signers:
        if (signer.name, signer.key_id) in seen:
            raise NoteError(f"signer {_key_label(signer.name, signer.key_id)} given twice")
        seen.add((signer.name, signer.key_id))
        sig64 = _b64encode(signer.key_id + signer.sign(msg))
        lines.append(f"{_SIG_PREFIX}{signer.name} {sig64}\n")
    return msg + b"\n" + "".join(lines).encode()


def _parse_signature_line(line: str, number: int) -> tuple[Signature, bytes]:
    if not line.startswith(_SIG_PREFIX):
        raise MalformedNote(
            f"malformed note: signature line {number} does not start with an em dash and a space"
        )
    name, _, sig64 = line[len(_SIG_PREFIX) :].partition(" ")
    problem = _name_problem(name)
    if problem is not None:
        raise MalformedNote(f"malformed note: signature line {number}: {problem}")
    if not sig64:
        raise MalformedNote(f"malformed note: signature line {number} has no signature")
    raw = _b64decode(sig64)
    if raw is None:
        raise MalformedNote(f"malformed note: signature line {number} is not valid base64")
    if len(raw) < 5:
        raise MalformedNote(f"malformed note: signature line {number} is too short")
    return Signature(name, raw[:4], sig64), raw[4:]


def open_note(msg: bytes, verifiers: Iterable[Verifier]) -> Note:
    """Parse a signed note and check its signatures against the known ``verifiers``.

    As Go's note.Open: signatures whose (name, key id) is unknown are returned in
    ``unverified_sigs``; a signature by a known key that does not verify raises
    :class:`InvalidSignature`; a note with no verified signature raises
    :class:`UnverifiedNote`; repeated signatures by one key are dropped (only the
    first is checked); a signature matching several known verifiers raises
    :class:`AmbiguousKey`.
    """
    try:
        decoded = msg.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedNote(f"malformed note: not valid UTF-8 (byte {e.start})") from e
    bad = _control_char(decoded)
    if bad is not None:
        raise MalformedNote(f"malformed note: contains control character U+{ord(bad):04X}")

    # The text ends at the last blank line (text may contain blank lines itself).
    split = msg.rfind(b"\n\n")
    if split < 0:
        raise MalformedNote("malformed note: no blank line between text and signatures")
    text, sig_block = msg[: split + 1], msg[split + 2 :]
    if not sig_block:
        raise MalformedNote("malformed note: no signature lines after the blank line")
    if not sig_block.endswith(b"\n"):
        raise MalformedNote("malformed note: last signature line does not end with a newline")

    known: dict[tuple[str, bytes], list[Verifier]] = {}
    for v in verifiers:
        known.setdefault((v.name, v.key_id), []).append(v)

    sigs: list[Signature] = []
    unverified: list[Signature] = []
    seen_keys: set[tuple[str, bytes]] = set()
    seen_unverified: set[str] = set()
    lines = sig_block[:-1].decode().split("\n")
    for number, line in enumerate(lines, start=1):
        sig, raw_sig = _parse_signature_line(line, number)
        if number > MAX_SIGNATURES:
            raise MalformedNote(f"malformed note: too many signatures (more than {MAX_SIGNATURES})")
        key = (sig.name, sig.key_id)
        candidates = known.get(key)
        if candidates is None:
            if line not in seen_unverified:
                seen_unverified.add(line)
                unverified.append(sig)
            continue
        if len(candidates) > 1:
            raise AmbiguousKey(f"ambiguous key {_key_label(*key)}")
        if key in seen_keys:
            continue
        seen_keys.add(key)
        if not candidates[0].verify(text, raw_sig):
            raise InvalidSignature(f"invalid signature for key {_key_label(*key)}")
        sigs.append(sig)

    note = Note(text.decode(), sigs, unverified)
    if not sigs:
        signed_by = ", ".join(_key_label(s.name, s.key_id) for s in unverified)
        raise UnverifiedNote(
            f"note has no signature from a known key (signed by: {signed_by})", note
        )
    return note
