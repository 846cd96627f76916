"""Key files: a secret signer key (mode 0600) and lists of public verifier keys.

A signer key file holds one line, the key in Go's note format
(``PRIVATE+KEY+<name>+<key id>+<base64>``, see :mod:`ledger.note`). A verifier keys
file holds one verifier key per line; blank lines and lines starting with ``#`` are
ignored. Every problem raises :class:`~ledger.errors.ConfigError`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ledger.errors import ConfigError, NoteError
from ledger.note import Signer, Verifier, parse_signer_key, parse_verifier_key

__all__ = ["load_signer_key", "load_verifier_keys", "write_signer_key"]


def _make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and any missing parents with mode 0700.

    ``Path.mkdir(parents=True)`` would give the parents default permissions.
    """
    missing = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            pass  # created meanwhile by someone else
        except OSError as e:
            raise ConfigError(f"cannot create key directory {d}: {e.strerror}") from e


def write_signer_key(path: Path, signer: Signer) -> None:
    """Write ``signer`` to a new file readable only by its owner.

    The file is created with mode 0600 (never briefly wider) and an existing file is
    never overwritten.
    """
    _make_private_dirs(path.parent)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError as e:
        raise ConfigError(f"refusing to overwrite existing signing key file {path}") from e
    except OSError as e:
        raise ConfigError(f"cannot create signing key file {path}: {e.strerror}") from e
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(signer.key_string() + "\n")
    except OSError as e:
        path.unlink(missing_ok=True)
        raise ConfigError(f"cannot write signing key file {path}: {e.strerror}") from e


def load_signer_key(path: Path) -> Signer:
    """Read a signer key file, refusing files that other users can access."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError as e:
        raise ConfigError(f"signing key file {path} does not exist") from e
    except OSError as e:
        raise ConfigError(f"cannot open signing key file {path}: {e.strerror}") from e
    try:
        # fstat the open file, so the file checked is the file read
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"signing key file {path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if os.name == "posix" and mode & 0o077:
            how = "readable" if mode & 0o044 else "accessible"
            raise ConfigError(
                f"signing key file {path} is {how} by other users (mode {mode:04o}); "
                f"run chmod 600 {path}"
            )
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8").strip()
        return parse_signer_key(text)
    except UnicodeDecodeError as e:
        raise ConfigError(f"signing key file {path} is not UTF-8 text") from e
    except NoteError as e:
        raise ConfigError(f"signing key file {path} does not hold a valid key: {e}") from e


def load_verifier_keys(path_or_text: Path | str) -> list[Verifier]:
    """Parse verifier keys, one per line, from a file (a ``Path``) or from text (a ``str``).

    Blank lines and lines starting with ``#`` are skipped.
    """
    if isinstance(path_or_text, Path):
        source = f"verifier keys file {path_or_text}"
        try:
            text = path_or_text.read_text(encoding="utf-8")
        except FileNotFoundError as e:
            raise ConfigError(f"{source} does not exist") from e
        except UnicodeDecodeError as e:
            raise ConfigError(f"{source} is not UTF-8 text") from e
        except OSError as e:
            raise ConfigError(f"cannot read {source}: {e.strerror}") from e
    else:
        source, text = "verifier keys", path_or_text
    verifiers = []
    for number, raw_line in enumerate(text.split("\n"), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            verifiers.append(parse_verifier_key(line))
        except NoteError as e:
            raise ConfigError(f"{source}, line {number}: {e}") from e
    return verifiers
