"""Tests for ledger.note: Go's own vectors, an independent reading of the C2SP spec,
and every rejection path."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import NoteError
from ledger.note import (
    AmbiguousKey,
    InvalidSignature,
    MalformedKey,
    MalformedNote,
    Signature,
    Signer,
    UnverifiedNote,
    Verifier,
    generate_signer,
    key_id,
    open_note,
    parse_signer_key,
    parse_verifier_key,
    sign_note,
)

# --- Vectors copied from golang.org/x/mod sumdb/note/note_test.go (TestNewVerifier,
# TestNewSigner, TestSign, TestVerifierList, TestOpen).
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
# TestNewVerifier: "wrong length key, with adjusted key hash" and "unknown algorithm, with
# adjusted key hash".
GO_BAD_LENGTH_VKEY = "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
GO_BAD_ALG_VKEY = "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"

PETER = Signature(
    "PeterNeumann",
    bytes.fromhex("c74f20a3"),
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
)
ENOCH = Signature(
    "EnochRoot",
    bytes.fromhex("af0cfe78"),
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=",
)

# --- Example from the C2SP signed-note spec (c2sp.org/signed-note, section "Note"); its
# public key is not published, so it can only be parsed, not verified.
C2SP_NOTE = (
    "Ognuno sta solo sul cuor della terra\n"
    "trafitto da un raggio di sole:\n"
    "\n"
    "ed è subito sera.\n"
    "\n"
    "— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)


def peter() -> Verifier:
    return parse_verifier_key(PETER_VKEY)


def enoch() -> Verifier:
    return parse_verifier_key(ENOCH_VKEY)


def go_note(*sig_lines: str) -> bytes:
    return (TEXT + "\n" + "".join(sig_lines)).encode()


def go_insert(line: str, at: int, extra: str) -> str:
    """Go's ``line[:at] + extra + line[at:]``, which indexes bytes, not characters."""
    raw = line.encode()
    return (raw[:at] + extra.encode() + raw[at:]).decode()


# --- An independent reading of c2sp.org/signed-note, sharing no code with ledger.note.


def spec_key_id(name: str, public_key: bytes) -> bytes:
    # key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public key)[:4]
    return hashlib.sha256(name.encode("utf-8") + b"\x0a" + b"\x01" + public_key).digest()[:4]


def spec_public_key(vkey: str) -> bytes:
    """The raw Ed25519 key of a verifier key string."""
    return base64.b64decode(vkey.split("+", 2)[2])[1:]


def spec_open(msg: bytes, name: str, public_key: bytes) -> str:
    """Return the note text if ``msg`` carries a valid signature by (name, key); else fail."""
    msg.decode("utf-8")  # must be valid UTF-8
    assert all(b >= 0x20 or b == 0x0A for b in msg), "control character"
    split = msg.rindex(b"\n\n")  # text ends at the last blank line
    text, block = msg[: split + 1], msg[split + 2 :]
    assert block.endswith(b"\n")
    wanted_id = spec_key_id(name, public_key)
    for line in block[:-1].decode("utf-8").split("\n"):
        assert line[:2] == "\u2014\u0020", line
        line_name, sig64 = line[2:].split(" ", 1)
        raw = base64.b64decode(sig64, validate=True)
        if line_name == name and raw[:4] == wanted_id:
            Ed25519PublicKey.from_public_bytes(public_key).verify(raw[4:], text)
            return text.decode("utf-8")
    raise AssertionError(f"no signature by {name}")


def spec_sign(text: str, name: str, private_key: Ed25519PrivateKey) -> bytes:
    public = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    raw = spec_key_id(name, public) + private_key.sign(text.encode())
    return f"{text}\n\u2014 {name} {base64.b64encode(raw).decode()}\n".encode()


def raw_public(signer: Signer) -> bytes:
    return signer.verifier().public_key


# --- Go vectors


def test_key_id_matches_go_vectors() -> None:
    assert key_id("PeterNeumann", spec_public_key(PETER_VKEY)) == bytes.fromhex("c74f20a3")
    assert key_id("EnochRoot", spec_public_key(ENOCH_VKEY)) == bytes.fromhex("af0cfe78")
    assert spec_key_id("PeterNeumann", spec_public_key(PETER_VKEY)).hex() == "c74f20a3"


def test_key_id_rejects_wrong_length() -> None:
    with pytest.raises(MalformedKey, match="must be 32 bytes, got 31"):
        key_id("x", bytes(31))


def test_go_verifier_key_parses_and_round_trips() -> None:
    v = peter()
    assert v.name == "PeterNeumann"
    assert v.key_id == bytes.fromhex("c74f20a3")
    assert v.public_key == spec_public_key(PETER_VKEY)
    assert v.key_string() == PETER_VKEY
    assert enoch().key_string() == ENOCH_VKEY


def test_go_signer_key_derives_go_verifier_key() -> None:
    s = parse_signer_key(PETER_SKEY)
    assert s.name == "PeterNeumann"
    assert s.key_id == bytes.fromhex("c74f20a3")
    assert s.verifier() == peter()
    assert s.key_string() == PETER_SKEY


def test_sign_reproduces_go_output_exactly() -> None:
    # Ed25519 is deterministic, so the Go output is reproduced byte for byte.
    assert sign_note(TEXT, parse_signer_key(PETER_SKEY)) == go_note(PETER_SIG)


def test_go_signed_note_opens() -> None:
    n = open_note(go_note(PETER_SIG), [peter()])
    assert n.text == TEXT
    assert n.sigs == [PETER]
    assert n.unverified_sigs == []


def test_go_open_one_verified_one_unknown() -> None:
    n = open_note(go_note(PETER_SIG, ENOCH_SIG), [peter()])
    assert n.sigs == [PETER]
    assert n.unverified_sigs == [ENOCH]


def test_go_open_both_verified() -> None:
    n = open_note(go_note(PETER_SIG, ENOCH_SIG), [peter(), enoch()])
    assert n.sigs == [PETER, ENOCH]
    assert n.unverified_sigs == []


def test_go_open_both_unverified() -> None:
    with pytest.raises(UnverifiedNote) as exc:
        open_note(go_note(PETER_SIG, ENOCH_SIG), [])
    assert str(exc.value) == (
        "note has no signature from a known key "
        "(signed by: PeterNeumann+c74f20a3, EnochRoot+af0cfe78)"
    )
    assert exc.value.note.text == TEXT
    assert exc.value.note.sigs == []
    assert exc.value.note.unverified_sigs == [PETER, ENOCH]


def test_go_open_duplicated_verifier_is_ambiguous() -> None:
    with pytest.raises(AmbiguousKey, match=r"^ambiguous key EnochRoot\+af0cfe78$"):
        open_note(go_note(ENOCH_SIG), [enoch(), peter(), enoch()])


def test_go_open_unused_duplicated_verifier_is_fine() -> None:
    assert open_note(go_note(PETER_SIG), [enoch(), peter(), enoch()]).sigs == [PETER]


def test_go_open_too_many_signatures() -> None:
    for verifiers in ([peter()], []):
        with pytest.raises(MalformedNote, match=r"too many signatures \(more than 100\)"):
            open_note(go_note(*[PETER_SIG] * 101), verifiers)


def test_go_open_accepts_100_signatures_and_drops_repeats() -> None:
    n = open_note(go_note(*[PETER_SIG] * 100), [peter()])
    assert n.sigs == [PETER]


def test_go_open_invalid_signature() -> None:
    corrupt = go_insert(PETER_SIG, 60, "ABCD")
    with pytest.raises(
        InvalidSignature, match=r"^invalid signature for key PeterNeumann\+c74f20a3$"
    ):
        open_note(go_note(corrupt), [peter()])


def test_go_open_duplicated_verified_and_unverified_signatures() -> None:
    enoch_abcd = go_insert(ENOCH_SIG, 60, "ABCD")
    msg = go_note(PETER_SIG, PETER_SIG, ENOCH_SIG, ENOCH_SIG, enoch_abcd)
    n = open_note(msg, [peter()])
    assert n.sigs == [PETER]
    assert n.unverified_sigs == [
        ENOCH,
        Signature(
            "EnochRoot",
            bytes.fromhex("af0cfe78"),
            "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n"
            + "ABCD"
            + "2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=",
        ),
    ]


def test_go_open_checks_only_first_signature_per_key() -> None:
    # Go skips later signatures by a key it has already checked, valid or not.
    corrupt = go_insert(PETER_SIG, 60, "ABCD")
    assert open_note(go_note(PETER_SIG, corrupt), [peter()]).sigs == [PETER]
    with pytest.raises(InvalidSignature):
        open_note(go_note(corrupt, PETER_SIG), [peter()])


@pytest.mark.parametrize(
    ("msg", "match"),
    [
        # TestOpen's badMsgs, in order
        (TEXT.encode(), "no blank line between text and signatures"),
        ((TEXT + "\n").encode(), "no signature lines after the blank line"),
        (go_note(PETER_SIG[:-1]), "last signature line does not end with a newline"),
        (b"\x01" + go_note(PETER_SIG), "contains control character U\\+0001"),
        (b"\xff" + go_note(PETER_SIG), "not valid UTF-8 \\(byte 0\\)"),
        (
            go_note(
                "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
            ),
            "last signature line does not end with a newline",
        ),
        (
            go_note(PETER_SIG, "Unexpected line.\n"),
            "signature line 2 does not start with an em dash and a space",
        ),
    ],
)
def test_go_bad_messages(msg: bytes, match: str) -> None:
    with pytest.raises(MalformedNote, match="^malformed note: " + match):
        open_note(msg, [peter()])


def test_go_new_verifier_rejects_every_mangling() -> None:
    # TestNewVerifier: every proper substring and every single-byte increment fails.
    b = PETER_VKEY.encode()
    manglings = [b[i:j] for i in range(len(b) + 1) for j in range(i + 1, len(b) + 1)]
    manglings.remove(b)
    for i in range(len(b)):
        manglings.append(b[:i] + bytes([b[i] + 1]) + b[i + 1 :])
    for m in manglings:
        with pytest.raises(MalformedKey):
            parse_verifier_key(m.decode())


def test_go_new_signer_rejects_every_mangling() -> None:
    # TestNewSigner: every proper substring and every single-byte increment fails.
    b = PETER_SKEY.encode()
    manglings = [b[i:j] for i in range(len(b) + 1) for j in range(i + 1, len(b) + 1)]
    manglings.remove(b)
    for i in range(len(b)):
        manglings.append(b[:i] + bytes([b[i] + 1]) + b[i + 1 :])
    for m in manglings:
        with pytest.raises(MalformedKey):
            parse_signer_key(m.decode())


def test_go_sign_rejects_text_without_newline() -> None:
    with pytest.raises(MalformedNote, match="text does not end with a newline"):
        sign_note("abc", parse_signer_key(PETER_SKEY))


def test_go_signer_and_verifier_agree() -> None:
    # testSignerAndVerifier
    s = generate_signer("EnochRoot")
    v = s.verifier()
    assert (s.name, s.key_id) == (v.name, v.key_id)
    sig = s.sign(b"hi")
    assert v.verify(b"hi", sig)
    assert not v.verify(b"hi", bytes([sig[0] ^ 1]) + sig[1:])
    assert not v.verify(b"ii", sig)
    assert not v.verify(b"hi", sig[:-1])
    assert v.verify(b"hi", bytes(64)) is False


# --- Interoperability with the independent spec reading


def test_spec_reading_accepts_go_vector() -> None:
    assert spec_open(go_note(PETER_SIG), "PeterNeumann", spec_public_key(PETER_VKEY)) == TEXT


def test_note_signed_here_opens_with_spec_reading() -> None:
    s = generate_signer("example.com/log")
    text = "line one\n\nline three after a blank line\n"
    msg = sign_note(text, s)
    assert spec_open(msg, "example.com/log", raw_public(s)) == text


def test_note_signed_by_spec_reading_opens_here() -> None:
    private_key = Ed25519PrivateKey.generate()
    msg = spec_sign("hello\n", "spec.example", private_key)
    public = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    v = Verifier("spec.example", spec_key_id("spec.example", public), public)
    assert open_note(msg, [v]).text == "hello\n"


def test_verifier_key_string_matches_spec() -> None:
    s = generate_signer("example.com/log")
    public = raw_public(s)
    expected = (
        f"example.com/log+{spec_key_id('example.com/log', public).hex()}+"
        + base64.b64encode(b"\x01" + public).decode()
    )
    assert s.verifier().key_string() == expected


def test_c2sp_example_note_parses_with_text_containing_a_blank_line() -> None:
    with pytest.raises(UnverifiedNote, match=r"signed by: quasimodo\.example/salvatore\+367ba04b"):
        open_note(C2SP_NOTE.encode(), [])
    # the text ends at the last blank line, so it keeps its own blank line
    with pytest.raises(UnverifiedNote) as exc:
        open_note(C2SP_NOTE.encode(), [])
    assert exc.value.note.text == C2SP_NOTE[: C2SP_NOTE.index("\n\n— ") + 1]
    assert "sole:\n\ned è subito sera.\n" in exc.value.note.text


# --- Signing


def test_sign_with_several_signers_in_order() -> None:
    a, b = generate_signer("a.example"), generate_signer("b.example")
    msg = sign_note("x\n", a, b)
    n = open_note(msg, [b.verifier(), a.verifier()])
    assert [s.name for s in n.sigs] == ["a.example", "b.example"]
    assert msg.decode().startswith("x\n\n— a.example ")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "text is empty"),
        ("no newline", "text does not end with a newline"),
        ("tab\there\n", "text contains control character U\\+0009"),
        ("crlf\r\n", "text contains control character U\\+000D"),
        ("\ud800\n", "text is not valid UTF-8"),
    ],
)
def test_sign_rejects_bad_text(text: str, match: str) -> None:
    with pytest.raises(MalformedNote, match="^malformed note: " + match):
        sign_note(text, generate_signer("x"))


def test_sign_needs_a_signer() -> None:
    with pytest.raises(NoteError, match="without a signer"):
        sign_note("x\n")


def test_sign_rejects_the_same_key_twice() -> None:
    s = generate_signer("x")
    with pytest.raises(NoteError, match=r"signer x\+[0-9a-f]{8} given twice"):
        sign_note("x\n", s, s)


# --- Opening: forged, stripped, unknown and wrong keys


def test_flipped_signature_bit_is_rejected() -> None:
    s = generate_signer("log.example")
    msg = sign_note("checkpoint\n", s)
    line = msg.decode().split("\n")[-2]
    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    raw[10] ^= 0x01  # inside the Ed25519 signature, after the key id
    forged = msg.decode().replace(line, f"— log.example {base64.b64encode(raw).decode()}")
    with pytest.raises(InvalidSignature, match=r"invalid signature for key log\.example\+"):
        open_note(forged.encode(), [s.verifier()])


def test_flipped_text_bit_is_rejected() -> None:
    s = generate_signer("log.example")
    msg = bytearray(sign_note("checkpoint 1\n", s))
    msg[11] ^= 0x01  # "1" -> "0"
    with pytest.raises(InvalidSignature, match=r"invalid signature for key log\.example"):
        open_note(bytes(msg), [s.verifier()])


def test_flipped_key_id_bit_makes_the_signature_unknown() -> None:
    raw = bytearray(base64.b64decode(PETER.base64))
    raw[3] ^= 0x01
    line = f"— PeterNeumann {base64.b64encode(raw).decode()}\n"
    with pytest.raises(UnverifiedNote, match=r"signed by: PeterNeumann\+c74f20a2\)"):
        open_note(go_note(line), [peter()])


def test_stripped_signature_is_malformed() -> None:
    with pytest.raises(MalformedNote, match="no signature lines"):
        open_note(go_note(), [peter()])


def test_unknown_key() -> None:
    with pytest.raises(UnverifiedNote, match=r"\(signed by: PeterNeumann\+c74f20a3\)$"):
        open_note(go_note(PETER_SIG), [enoch()])


def test_wrong_key_with_the_same_name() -> None:
    impostor = generate_signer("PeterNeumann")
    msg = sign_note(TEXT, impostor)
    with pytest.raises(UnverifiedNote, match="note has no signature from a known key"):
        open_note(msg, [peter()])


def test_open_accepts_any_iterable_of_verifiers() -> None:
    assert open_note(go_note(PETER_SIG), (v for v in [peter()])).sigs == [PETER]


@pytest.mark.parametrize(
    ("sig_line", "match"),
    [
        ("- PeterNeumann " + PETER.base64, "signature line 1 does not start with an em dash"),
        ("—PeterNeumann " + PETER.base64, "signature line 1 does not start with an em dash"),
        ("— PeterNeumann", "signature line 1 has no signature"),
        ("— PeterNeumann ", "signature line 1 has no signature"),
        ("—  " + PETER.base64, "signature line 1: key name is empty"),
        (
            "— Peter+Neumann " + PETER.base64,
            "signature line 1: key name 'Peter\\+Neumann' contains",
        ),
        ("— Bad Name " + PETER.base64, "signature line 1 is not valid base64"),
        ("— PeterNeumann " + PETER.base64[:-1], "signature line 1 is not valid base64"),
        ("— PeterNeumann " + PETER.base64 + "=", "signature line 1 is not valid base64"),
        # same bytes as PETER.base64 but with a non-zero padding bit: not canonical
        ("— PeterNeumann " + PETER.base64[:-2] + "N=", "signature line 1 is not valid base64"),
        ("— PeterNeumann AAAA", "signature line 1 is too short"),
        ("— PeterNeumann AAAAAA==", "signature line 1 is too short"),
        ("— Peter\u00a0Neumann " + PETER.base64, "signature line 1: key name .* \\(U\\+00A0\\)"),
    ],
)
def test_bad_signature_lines(sig_line: str, match: str) -> None:
    with pytest.raises(MalformedNote, match="^malformed note: " + match):
        open_note(go_note(sig_line + "\n"), [peter()])


def test_error_classes_are_distinct_note_errors() -> None:
    classes = [MalformedKey, MalformedNote, InvalidSignature, UnverifiedNote, AmbiguousKey]
    for cls in classes:
        assert issubclass(cls, NoteError)
        for other in classes:
            assert cls is other or not issubclass(cls, other)


# --- Verifier keys


SUFFIX = PETER_VKEY.split("+", 1)[1]  # "c74f20a3+<key>"
KEY64 = PETER_VKEY.split("+", 2)[2]


@pytest.mark.parametrize(
    ("vkey", "match"),
    [
        ("", "expected <name>\\+<key id>\\+<key data>"),
        ("PeterNeumann", "expected <name>\\+<key id>\\+<key data>"),
        ("PeterNeumann+c74f20a3", "expected <name>\\+<key id>\\+<key data>"),
        ("+" + SUFFIX, "key name is empty"),
        (
            "Peter Neumann+" + SUFFIX,
            "key name 'Peter Neumann' contains a space character \\(U\\+0020\\)",
        ),
        ("Peter\u00a0Neumann+" + SUFFIX, "contains a space character \\(U\\+00A0\\)"),
        ("Peter\u3000Neumann+" + SUFFIX, "contains a space character \\(U\\+3000\\)"),
        ("Peter\u2028Neumann+" + SUFFIX, "contains a space character \\(U\\+2028\\)"),
        ("Peter\tNeumann+" + SUFFIX, "contains a control character \\(U\\+0009\\)"),
        ("Peter\x85Neumann+" + SUFFIX, "contains a control character \\(U\\+0085\\)"),
        ("Peter\x7fNeumann+" + SUFFIX, "contains a control character \\(U\\+007F\\)"),
        ("Peter\ud800+" + SUFFIX, "is not valid UTF-8"),
        ("PeterNeumann+c74f20a+" + KEY64, "key id 'c74f20a' is not 8 hexadecimal digits"),
        ("PeterNeumann+c74f20a3a+" + KEY64, "key id 'c74f20a3a' is not 8 hexadecimal digits"),
        ("PeterNeumann+c74f20g3+" + KEY64, "key id 'c74f20g3' is not 8 hexadecimal digits"),
        ("PeterNeumann+0xc74f20+" + KEY64, "key id '0xc74f20' is not 8 hexadecimal digits"),
        ("PeterNeumann+c74f20a3+" + KEY64[:-1], "key data is not valid base64"),
        ("PeterNeumann+c74f20a3+" + KEY64 + "\n", "key data is not valid base64"),
        ("PeterNeumann+c74f20a3+" + KEY64[:20] + "!" + KEY64[21:], "key data is not valid base64"),
        ("PeterNeumann+c74f20a3+", "key data is empty"),
        (GO_BAD_ALG_VKEY, "unknown key algorithm 0x65 \\(only Ed25519, 0x01, is supported\\)"),
        # Go's vector ends in "EY==", whose padding bits are not zero: not canonical here
        (GO_BAD_LENGTH_VKEY, "key data is not valid base64"),
        (GO_BAD_LENGTH_VKEY.replace("EY==", "EQ=="), "Ed25519 key must be 32 bytes, got 36"),
        (
            "PeterNeumann+c74f20a4+" + KEY64,
            "key id c74f20a4 does not match the key \\(expected c74f20a3\\)",
        ),
        ("EnochRoot+" + SUFFIX, "key id c74f20a3 does not match the key"),
    ],
)
def test_bad_verifier_keys(vkey: str, match: str) -> None:
    with pytest.raises(MalformedKey, match="^malformed verifier key: (.* )?" + match):
        parse_verifier_key(vkey)


def test_verifier_key_id_hex_is_case_insensitive_like_go() -> None:
    v = parse_verifier_key("PeterNeumann+C74F20A3+" + KEY64)
    assert v == peter()
    assert v.key_string() == PETER_VKEY


def test_verifier_constructor_checks_key_id() -> None:
    with pytest.raises(MalformedKey, match="key id 00000000 does not match the key"):
        Verifier("PeterNeumann", bytes(4), spec_public_key(PETER_VKEY))
    with pytest.raises(MalformedKey, match="must be 32 bytes, got 31"):
        Verifier("PeterNeumann", bytes(4), bytes(31))
    with pytest.raises(MalformedKey, match="key name is empty"):
        Verifier("", bytes(4), bytes(32))


# --- Signer keys


SKEY_SEED64 = PETER_SKEY.split("+", 4)[4]


@pytest.mark.parametrize(
    ("skey", "match"),
    [
        (PETER_VKEY, "does not start with 'PRIVATE\\+KEY\\+'"),
        ("PRIVATE+PeterNeumann+c74f20a3+" + SKEY_SEED64, "does not start with"),
        ("PRIVATE+KEY+PeterNeumann", "expected <name>\\+<key id>\\+<key data>"),
        ("PRIVATE+KEY++c74f20a3+" + SKEY_SEED64, "key name is empty"),
        ("PRIVATE+KEY+PeterNeumann+zzzzzzzz+" + SKEY_SEED64, "is not 8 hexadecimal digits"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3+" + SKEY_SEED64[:-4], "Ed25519 key must be 32 bytes"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3+" + SKEY_SEED64[1:], "key data is not valid base64"),
        (
            "PRIVATE+KEY+PeterNeumann+c74f20a4+" + SKEY_SEED64,
            "key id c74f20a4 does not match the key derived from the seed",
        ),
        ("PRIVATE+KEY+EnochRoot+c74f20a3+" + SKEY_SEED64, "does not match the key derived"),
    ],
)
def test_bad_signer_keys(skey: str, match: str) -> None:
    with pytest.raises(MalformedKey, match="^malformed signer key: (.* )?" + match) as exc:
        parse_signer_key(skey)
    assert SKEY_SEED64[4:20] not in str(exc.value)  # the secret never leaks into messages


def test_signer_repr_hides_the_private_key() -> None:
    s = parse_signer_key(PETER_SKEY)
    assert SKEY_SEED64 not in repr(s)
    assert "private_key" not in repr(s)


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("", "key name is empty"),
        ("a+b", "key name 'a\\+b' contains '\\+'"),
        ("a b", "space character"),
        ("a\u1680b", "space character \\(U\\+1680\\)"),
        ("a\nb", "control character \\(U\\+000A\\)"),
    ],
)
def test_generate_signer_rejects_bad_names(name: str, match: str) -> None:
    with pytest.raises(MalformedKey, match=match):
        generate_signer(name)


def test_zero_width_space_is_a_valid_name_as_in_go() -> None:
    # U+200B is not White_Space, so Go's isValidName accepts it.
    assert generate_signer("a\u200bb").name == "a\u200bb"


# --- Properties

NAMES = st.text(
    alphabet=st.characters(
        exclude_categories=("Zs", "Zl", "Zp", "Cc", "Cs"), exclude_characters="+"
    ),
    min_size=1,
    max_size=40,
)
LINES = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs"), include_characters=" "),
    max_size=30,
)
TEXTS = st.lists(LINES, min_size=1, max_size=6).map(lambda lines: "\n".join(lines) + "\n")


@settings(max_examples=60, deadline=None)
@given(NAMES)
def test_key_strings_round_trip(name: str) -> None:
    s = generate_signer(name)
    assert parse_verifier_key(s.verifier().key_string()) == s.verifier()
    again = parse_signer_key(s.key_string())
    assert again == s
    assert again.sign(b"m") == s.sign(b"m")
    assert s.key_id == spec_key_id(name, raw_public(s))


@settings(max_examples=60, deadline=None)
@given(NAMES, TEXTS)
def test_sign_open_round_trip(name: str, text: str) -> None:
    s = generate_signer(name)
    msg = sign_note(text, s)
    n = open_note(msg, [s.verifier()])
    assert n.text == text
    assert [(sig.name, sig.key_id) for sig in n.sigs] == [(name, s.key_id)]
    assert spec_open(msg, name, raw_public(s)) == text


@settings(max_examples=60, deadline=None)
@given(NAMES, st.sampled_from(["+", " ", "\u00a0", "\u2029", "\x00", "\t", "\x1f", "\x9f"]))
def test_names_with_forbidden_characters_are_rejected(name: str, bad: str) -> None:
    with pytest.raises(MalformedKey, match="key name"):
        generate_signer(name[:1] + bad + name[1:])
