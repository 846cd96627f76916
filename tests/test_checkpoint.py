"""Tests for ledger.checkpoint: the C2SP example, a real sum.golang.org checkpoint,
round trips and every rejection path."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.checkpoint import (
    Checkpoint,
    MalformedCheckpoint,
    OriginMismatch,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)
from ledger.errors import NoteError
from ledger.note import (
    InvalidSignature,
    MalformedNote,
    UnverifiedNote,
    generate_signer,
    parse_verifier_key,
    sign_note,
)

# Example from the C2SP tlog-checkpoint spec (c2sp.org/tlog-checkpoint); its public key
# is not published, so only the body and the signature line's key id can be checked.
C2SP_CHECKPOINT = (
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)

# The public verifier key of sum.golang.org, built into the Go toolchain (also in
# transparency-dev/formats log/id_test.go).
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
# A checkpoint served by https://sum.golang.org/latest and cosigned by a test witness,
# copied from google/trillian-examples witness/golang/cmd/addrwitness/README.md. The two
# test.example.com lines are by keys unknown here (one is a timestamped cosignature).
SUMDB_CHECKPOINT = (
    "go.sum database tree\n"
    "15081221\n"
    "BoMMe1wd25Tco0mYGROkyqxHZWx+hcSCtMV315Lu6Lg=\n"
    "\n"
    "— sum.golang.org Az3grilD7vQqTrv66jRgKM84Y80KTprrSt4bKmiOPxgmS5ZVBTeCl6dUvjYnN13R+C8j0jGY1WnUADGMkok3U0m2Zgo=\n"
    "— test.example.com qTGhC3917mAr6hGh+T55tNjxaej/D/GQivJZRIj7XGdAcQOTqfMWIPgp/v/904LEduN/h2sSRtHUJXUL4b9Gm7Bz4Qc=\n"
    "— test.example.com /Pa7Y/dUvWMAAAAAQVwkQVi81ArPV7BIaQYrMIxyzY0m8a4BdeeBhSKd3PviPK4/3Sd+NKSc5N7PDTCfAkUSVniN+R2oKIggA4iiDQ==\n"
)

ROOT = bytes(range(32))
ROOT64 = base64.b64encode(ROOT).decode()


def test_body_format() -> None:
    cp = Checkpoint("example.com/log", 5, ROOT)
    assert cp.body() == f"example.com/log\n5\n{ROOT64}\n"
    with_ext = Checkpoint("example.com/log", 0, ROOT, ("ext one", "ext two"))
    assert with_ext.body() == f"example.com/log\n0\n{ROOT64}\next one\next two\n"


def test_c2sp_example_body() -> None:
    body = C2SP_CHECKPOINT[: C2SP_CHECKPOINT.index("\n\n") + 1]
    cp = parse_checkpoint(body)
    assert cp.origin == "example.com/behind-the-sofa"
    assert cp.size == 20852163
    assert cp.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.extensions == ()
    assert cp.body() == body


def test_c2sp_example_note_is_unverified_without_its_key() -> None:
    with pytest.raises(UnverifiedNote, match=r"signed by: example\.com/behind-the-sofa\+033de0ae"):
        open_checkpoint(C2SP_CHECKPOINT.encode(), [])


def test_real_sumdb_checkpoint_opens() -> None:
    cp, note = open_checkpoint(
        SUMDB_CHECKPOINT.encode(), [parse_verifier_key(SUMDB_VKEY)], "go.sum database tree"
    )
    assert cp == Checkpoint(
        "go.sum database tree",
        15081221,
        base64.b64decode("BoMMe1wd25Tco0mYGROkyqxHZWx+hcSCtMV315Lu6Lg="),
    )
    assert [(s.name, s.key_id.hex()) for s in note.sigs] == [("sum.golang.org", "033de0ae")]
    assert [(s.name, s.key_id.hex()) for s in note.unverified_sigs] == [
        ("test.example.com", "a931a10b"),
        ("test.example.com", "fcf6bb63"),
    ]


def test_real_sumdb_checkpoint_with_changed_size_is_rejected() -> None:
    forged = SUMDB_CHECKPOINT.replace("15081221", "15081222")
    with pytest.raises(InvalidSignature, match=r"invalid signature for key sum\.golang\.org\+"):
        open_checkpoint(forged.encode(), [parse_verifier_key(SUMDB_VKEY)])


def test_real_sumdb_checkpoint_origin_mismatch() -> None:
    with pytest.raises(
        OriginMismatch,
        match=r"^checkpoint origin 'go\.sum database tree' does not match the expected "
        r"origin 'sum\.golang\.org'$",
    ):
        open_checkpoint(
            SUMDB_CHECKPOINT.encode(), [parse_verifier_key(SUMDB_VKEY)], "sum.golang.org"
        )


def test_sign_and_open_round_trip() -> None:
    signer = generate_signer("example.com/log")
    cp = Checkpoint("example.com/log", 42, ROOT, ("extra",))
    msg = sign_checkpoint(cp, signer)
    assert msg.startswith(cp.body().encode() + b"\n\xe2\x80\x94 example.com/log ")
    opened, note = open_checkpoint(msg, [signer.verifier()], origin="example.com/log")
    assert opened == cp
    assert note.text == cp.body()


def test_open_without_origin_check() -> None:
    signer = generate_signer("k")
    cp = Checkpoint("some origin", 1, ROOT)
    assert open_checkpoint(sign_checkpoint(cp, signer), [signer.verifier()])[0] == cp


def test_origin_mismatch() -> None:
    signer = generate_signer("example.com/a")
    msg = sign_checkpoint(Checkpoint("example.com/a", 1, ROOT), signer)
    with pytest.raises(
        OriginMismatch, match=r"'example\.com/a' does not match .* 'example\.com/b'"
    ):
        open_checkpoint(msg, [signer.verifier()], origin="example.com/b")


def test_open_checks_signature_before_origin_and_body() -> None:
    signer, other = generate_signer("a"), generate_signer("a")
    msg = sign_checkpoint(Checkpoint("x", 1, ROOT), signer)
    with pytest.raises(UnverifiedNote):
        open_checkpoint(msg, [other.verifier()], origin="y")


def test_signed_note_that_is_not_a_checkpoint() -> None:
    signer = generate_signer("a")
    with pytest.raises(MalformedCheckpoint, match="needs origin, tree size and root hash"):
        open_checkpoint(sign_note("hello\n", signer), [signer.verifier()])


def test_forged_checkpoint_root() -> None:
    signer = generate_signer("a")
    msg = sign_checkpoint(Checkpoint("x", 1, ROOT), signer).decode()
    other = base64.b64encode(bytes(32)).decode()
    with pytest.raises(InvalidSignature):
        open_checkpoint(msg.replace(ROOT64, other).encode(), [signer.verifier()])


def test_malformed_note_is_reported_as_such() -> None:
    signer = generate_signer("a")
    body = Checkpoint("x", 1, ROOT).body()
    with pytest.raises(MalformedNote, match="no blank line"):
        open_checkpoint(body.encode(), [signer.verifier()])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (f"o\n1\n{ROOT64}", "checkpoint text does not end with a newline"),
        ("", "checkpoint text does not end with a newline"),
        ("o\n1\n", "checkpoint has 2 line\\(s\\)"),
        ("o\n", "checkpoint has 1 line\\(s\\)"),
        (f"\n1\n{ROOT64}\n", "checkpoint origin is empty"),
        (f"o\r\n1\n{ROOT64}\n", "checkpoint origin contains control character U\\+000D"),
        (f"o\n01\n{ROOT64}\n", "checkpoint size '01' is not a decimal number"),
        (f"o\n00\n{ROOT64}\n", "checkpoint size '00' is not a decimal number"),
        (f"o\n-1\n{ROOT64}\n", "checkpoint size '-1' is not a decimal number"),
        (f"o\n+1\n{ROOT64}\n", "checkpoint size '\\+1' is not a decimal number"),
        (f"o\n 1\n{ROOT64}\n", "checkpoint size ' 1' is not a decimal number"),
        (f"o\n1 \n{ROOT64}\n", "checkpoint size '1 ' is not a decimal number"),
        (f"o\n1.0\n{ROOT64}\n", "checkpoint size '1.0' is not a decimal number"),
        (f"o\n1_000\n{ROOT64}\n", "checkpoint size '1_000' is not a decimal number"),
        (f"o\n0x10\n{ROOT64}\n", "checkpoint size '0x10' is not a decimal number"),
        (f"o\n\u0661\n{ROOT64}\n", "checkpoint size '\u0661' is not a decimal number"),
        (f"o\n\n{ROOT64}\n", "checkpoint size '' is not a decimal number"),
        (f"o\n{2**64}\n{ROOT64}\n", "checkpoint size 18446744073709551616 is too large"),
        ("o\n1\nnot base64!\n", "checkpoint root hash 'not base64!' is not valid base64"),
        (
            f"o\n1\n{ROOT64.rstrip('=')}\n",
            "checkpoint root hash '[A-Za-z0-9]+' is not valid base64",
        ),
        ("o\n1\n\n", "checkpoint root hash must be 32 bytes, got 0"),
        (
            f"o\n1\n{base64.b64encode(bytes(31)).decode()}\n",
            "checkpoint root hash must be 32 bytes, got 31",
        ),
        (
            f"o\n1\n{base64.b64encode(bytes(33)).decode()}\n",
            "checkpoint root hash must be 32 bytes, got 33",
        ),
        (f"o\n1\n{ROOT64}\n\n", "checkpoint extension line 1 is empty"),
        (f"o\n1\n{ROOT64}\next\n\n", "checkpoint extension line 2 is empty"),
        (f"o\n1\n{ROOT64}\ne\txt\n", "checkpoint extension line 1 contains control character"),
    ],
)
def test_parse_rejects(text: str, match: str) -> None:
    with pytest.raises(MalformedCheckpoint, match="^(" + match + ")"):
        parse_checkpoint(text)


def test_parse_accepts_size_bounds() -> None:
    assert parse_checkpoint(f"o\n0\n{ROOT64}\n").size == 0
    assert parse_checkpoint(f"o\n{2**64 - 1}\n{ROOT64}\n").size == 2**64 - 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"origin": ""}, "checkpoint origin is empty"),
        ({"origin": "a\nb"}, "checkpoint origin contains control character U\\+000A"),
        ({"size": -1}, "checkpoint size -1 is out of range"),
        ({"size": 2**64}, "checkpoint size 18446744073709551616 is out of range"),
        ({"size": True}, "checkpoint size must be an integer, got True"),
        ({"size": 1.0}, "checkpoint size must be an integer, got 1.0"),
        ({"root_hash": bytes(31)}, "checkpoint root hash must be 32 bytes, got 31"),
        ({"root_hash": b""}, "checkpoint root hash must be 32 bytes, got 0"),
        ({"extensions": ("",)}, "checkpoint extension line 1 is empty"),
        ({"extensions": ("ok", "x\ny")}, "checkpoint extension line 2 contains control"),
    ],
)
def test_constructor_rejects(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"origin": "o", "size": 1, "root_hash": ROOT, **kwargs}
    with pytest.raises(MalformedCheckpoint, match="^" + match):
        Checkpoint(**args)  # type: ignore[arg-type]


def test_extensions_given_as_list_become_a_tuple() -> None:
    cp = Checkpoint("o", 1, ROOT, ["a", "b"])  # type: ignore[arg-type]
    assert cp.extensions == ("a", "b")
    assert hash(cp) == hash(Checkpoint("o", 1, ROOT, ("a", "b")))


def test_errors_are_note_errors() -> None:
    assert issubclass(MalformedCheckpoint, NoteError)
    assert issubclass(OriginMismatch, NoteError)
    assert not issubclass(OriginMismatch, MalformedCheckpoint)


LINE = st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=30)


@settings(max_examples=100, deadline=None)
@given(
    origin=LINE,
    size=st.integers(min_value=0, max_value=2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(LINE, max_size=3).map(tuple),
)
def test_body_parse_round_trip(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    cp = Checkpoint(origin, size, root, extensions)
    assert parse_checkpoint(cp.body()) == cp
