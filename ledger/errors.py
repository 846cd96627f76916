"""One base exception with user-facing text, and the few kinds the callers branch on.

Every error raised by the library is a :class:`LedgerError`. Its ``str()`` is meant for
people: it names the field, the position or the value that is wrong and why. Driver
errors (sqlite3, psycopg) are translated in ``ledger.store`` and re-raised with
``raise ... from e``. The CLI catches :class:`LedgerError` once and exits with
``exit_code``; the HTTP layer maps ``http_status``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of the input. ``loc`` is a path such as
    ``events[3].payload.segmentation.counts``."""

    loc: str
    message: str

    def __str__(self) -> str:
        return f"{self.loc}: {self.message}" if self.loc else self.message


class LedgerError(Exception):
    """Base of every error the ledger raises. The message is user-facing."""

    #: documented CLI exit code (see README, "Exit codes")
    exit_code: int = 2
    http_status: int = 400
    title: str = "Request failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(LedgerError):
    """The input is malformed or breaks a rule; nothing was written."""

    exit_code = 2
    http_status = 422
    title = "Validation failed"

    def __init__(self, message: str, errors: list[FieldError] | None = None) -> None:
        self.errors: list[FieldError] = list(errors or [])
        if self.errors:
            detail = "; ".join(str(e) for e in self.errors[:5])
            more = f" (and {len(self.errors) - 5} more)" if len(self.errors) > 5 else ""
            message = f"{message}: {detail}{more}"
        super().__init__(message)

    @classmethod
    def field(cls, loc: str, message: str) -> InvalidInput:
        return cls("invalid input", [FieldError(loc, message)])


class Conflict(LedgerError):
    """A stale revision, a reused event UUID with other content, a duplicate name."""

    exit_code = 3
    http_status = 409
    title = "Conflict"

    def __init__(self, message: str, errors: list[FieldError] | None = None) -> None:
        self.errors = list(errors or [])
        super().__init__(message)


class NotFound(LedgerError):
    exit_code = 4
    http_status = 404
    title = "Not found"


class StorageError(LedgerError):
    """The database failed in a way the caller cannot fix by changing the input."""

    exit_code = 5
    http_status = 500
    title = "Storage error"


class StorageUnavailable(StorageError):
    """The database is unreachable, busy or restarting; the same request may be retried."""

    http_status = 503
    title = "Storage unavailable"


class VerificationFailed(LedgerError):
    """A log, proof, note, checkpoint or release did not verify."""

    exit_code = 1
    http_status = 422
    title = "Verification failed"


class ProofError(VerificationFailed):
    """A Merkle inclusion or consistency proof is malformed or does not verify."""


class NoteError(VerificationFailed):
    """A signed note or verifier key is malformed, or no known key signed it."""


class ConfigError(LedgerError):
    exit_code = 6
    title = "Configuration error"
