"""Storage: one interface (``Store``), SQLite and PostgreSQL implementations."""

from __future__ import annotations

from ledger.errors import StorageError
from ledger.store.base import AppendTxn, ExistingEvent, Head, Store, WriteBatch

__all__ = ["AppendTxn", "ExistingEvent", "Head", "Store", "WriteBatch", "open_store"]


def open_store(url: str, *, upgrade: bool = False, sqlite_busy_timeout: float = 30.0) -> Store:
    """Open the store a database URL names; with ``upgrade``, apply pending migrations."""
    store: Store
    if url.startswith("sqlite:"):
        from ledger.store.sqlite import SQLiteStore

        store = SQLiteStore(url, busy_timeout=sqlite_busy_timeout)
    elif url.startswith(("postgresql:", "postgres:")):
        from ledger.store.postgres import PostgresStore

        store = PostgresStore(url)
    else:
        raise StorageError(
            f"unsupported database URL {url.split(':', 1)[0]!r}: "
            "use sqlite:///path/to/file.db or postgresql://user@host/dbname"
        )
    if upgrade:
        store.upgrade()
    return store
