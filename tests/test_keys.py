"""Tests for ledger.keys: file modes, refusals and verifier key lists."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.errors import ConfigError
from ledger.keys import load_signer_key, load_verifier_keys, write_signer_key
from ledger.note import generate_signer, parse_signer_key

# Key pair from golang.org/x/mod sumdb/note/note_test.go (TestSign, TestOpen).
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Run with umask 0, so only the modes the code asks for restrict the files."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def write_file(path: Path, content: bytes, file_mode: int = 0o600) -> Path:
    path.write_bytes(content)
    path.chmod(file_mode)
    return path


def test_write_then_load_round_trip(tmp_path: Path) -> None:
    signer = generate_signer("example.com/log")
    path = tmp_path / "signer.key"
    write_signer_key(path, signer)
    loaded = load_signer_key(path)
    assert loaded == signer
    assert loaded.key_string() == signer.key_string()
    assert path.read_text() == signer.key_string() + "\n"


@pytest.mark.usefixtures("open_umask")
def test_written_key_has_mode_0600_even_with_open_umask(tmp_path: Path) -> None:
    path = tmp_path / "signer.key"
    write_signer_key(path, generate_signer("x"))
    assert mode(path) == 0o600


@pytest.mark.usefixtures("open_umask")
def test_parent_directories_are_created_0700(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "signer.key"
    write_signer_key(path, generate_signer("x"))
    assert mode(tmp_path / "a") == 0o700
    assert mode(tmp_path / "a" / "b") == 0o700
    assert mode(path) == 0o600


def test_existing_parent_directory_is_left_alone(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    write_signer_key(tmp_path / "signer.key", generate_signer("x"))
    assert mode(tmp_path) == 0o755


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "signer.key"
    first = generate_signer("x")
    write_signer_key(path, first)
    with pytest.raises(ConfigError, match=r"^refusing to overwrite existing signing key file "):
        write_signer_key(path, generate_signer("x"))
    assert load_signer_key(path) == first


def test_refuses_to_write_through_a_symlink(tmp_path: Path) -> None:
    link = tmp_path / "signer.key"
    link.symlink_to(tmp_path / "elsewhere.key")
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        write_signer_key(link, generate_signer("x"))
    assert not (tmp_path / "elsewhere.key").exists()


def test_write_under_a_file_fails_clearly(tmp_path: Path) -> None:
    blocker = write_file(tmp_path / "file", b"")
    with pytest.raises(ConfigError, match="cannot create signing key file"):
        write_signer_key(blocker / "signer.key", generate_signer("x"))


def test_load_go_signer_key_file(tmp_path: Path) -> None:
    path = write_file(tmp_path / "peter.key", (PETER_SKEY + "\n").encode())
    assert load_signer_key(path).verifier().key_string() == PETER_VKEY


def test_load_tolerates_crlf(tmp_path: Path) -> None:
    path = write_file(tmp_path / "peter.key", (PETER_SKEY + "\r\n").encode())
    assert load_signer_key(path) == parse_signer_key(PETER_SKEY)


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.key"
    with pytest.raises(ConfigError, match=f"^signing key file {path} does not exist$"):
        load_signer_key(path)


@pytest.mark.parametrize("file_mode", [0o644, 0o640, 0o604, 0o660])
def test_load_refuses_files_readable_by_others(tmp_path: Path, file_mode: int) -> None:
    path = write_file(tmp_path / "signer.key", PETER_SKEY.encode(), file_mode)
    expected = (
        f"signing key file {path} is readable by other users (mode {file_mode:04o}); "
        f"run chmod 600 {path}"
    )
    with pytest.raises(ConfigError) as exc:
        load_signer_key(path)
    assert str(exc.value) == expected


def test_load_refuses_files_writable_by_group(tmp_path: Path) -> None:
    path = write_file(tmp_path / "signer.key", PETER_SKEY.encode(), 0o620)
    with pytest.raises(ConfigError, match=r"is accessible by other users \(mode 0620\)"):
        load_signer_key(path)


def test_load_accepts_owner_read_only(tmp_path: Path) -> None:
    path = write_file(tmp_path / "signer.key", PETER_SKEY.encode(), 0o400)
    assert load_signer_key(path).name == "PeterNeumann"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"garbage\n", "does not hold a valid key: malformed signer key: does not start with"),
        (PETER_VKEY.encode(), "does not hold a valid key: malformed signer key"),
        (b"", "does not hold a valid key"),
        (PETER_SKEY.replace("c74f20a3", "c74f20a4").encode(), "key id c74f20a4 does not match"),
        (b"\xff\xfe", "is not UTF-8 text"),
    ],
)
def test_load_unparsable_content(tmp_path: Path, content: bytes, match: str) -> None:
    path = write_file(tmp_path / "signer.key", content)
    with pytest.raises(ConfigError, match=match) as exc:
        load_signer_key(path)
    assert "AYEKFALVFGyNhPJE" not in str(exc.value)  # never echo the secret


def test_load_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_signer_key(tmp_path)


VERIFIERS_TEXT = f"""\
# witnesses and the log
{PETER_VKEY}

   {ENOCH_VKEY}   \r
"""


def test_load_verifier_keys_from_text() -> None:
    keys = load_verifier_keys(VERIFIERS_TEXT)
    assert [k.key_string() for k in keys] == [PETER_VKEY, ENOCH_VKEY]


def test_load_verifier_keys_from_path(tmp_path: Path) -> None:
    path = tmp_path / "verifiers.txt"
    path.write_text(VERIFIERS_TEXT)
    assert [k.name for k in load_verifier_keys(path)] == ["PeterNeumann", "EnochRoot"]


def test_load_verifier_keys_empty() -> None:
    assert load_verifier_keys("# nothing yet\n\n") == []


def test_load_verifier_keys_bad_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "verifiers.txt"
    path.write_text(f"# ok\n{PETER_VKEY}\nPeterNeumann+c74f20a4+{PETER_VKEY.split('+')[2]}\n")
    with pytest.raises(
        ConfigError,
        match=f"^verifier keys file {path}, line 3: malformed verifier key: key id c74f20a4",
    ):
        load_verifier_keys(path)


def test_load_verifier_keys_bad_text_line() -> None:
    with pytest.raises(ConfigError, match=r"^verifier keys, line 2: malformed verifier key"):
        load_verifier_keys(f"{PETER_VKEY}\nnot a key\n")


def test_str_is_text_not_a_path(tmp_path: Path) -> None:
    path = tmp_path / "verifiers.txt"
    path.write_text(PETER_VKEY + "\n")
    with pytest.raises(ConfigError, match="verifier keys, line 1: malformed verifier key"):
        load_verifier_keys(str(path))


def test_load_verifier_keys_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"verifier keys file .* does not exist"):
        load_verifier_keys(tmp_path / "nope.txt")


def test_load_verifier_keys_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "verifiers.txt"
    path.write_bytes(b"\xff\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_verifier_keys(path)
