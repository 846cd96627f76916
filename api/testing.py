"""Run the real service for tests and benchmarks: gunicorn on a free port.

    with LiveServer(database_url, data_dir=tmp) as server:
        httpx.get(server.url + "/readyz")

The server runs ``python -m gunicorn -c python:api.gunicorn_config api.wsgi:app`` in its
own process group, with its output in ``<data_dir>/gunicorn.log``; ``start`` waits for
``/readyz`` and ``stop`` ends the whole group. :func:`scratch_postgres` makes a
migrated PostgreSQL database and drops it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LiveServer:
    """gunicorn serving ``api.wsgi:app`` on 127.0.0.1 and a free port."""

    def __init__(
        self,
        database_url: str,
        *,
        data_dir: Path,
        workers: int = 2,
        threads: int = 1,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        self.data_dir = Path(data_dir)
        self.workers = workers
        self.threads = threads
        self.extra_env = dict(env or {})
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / "gunicorn.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> LiveServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(
            {
                "LEDGER_DATABASE_URL": self.database_url,
                "LEDGER_DATA_DIR": str(self.data_dir),
                "LEDGER_THREADS": str(self.threads),
                **self.extra_env,
            }
        )
        for _ in range(5):
            self.port = free_port()
            argv = [
                sys.executable, "-m", "gunicorn", "-c", "python:api.gunicorn_config",
                "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
                "api.wsgi:app",
            ]  # fmt: skip
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    argv, env=env, stdout=log, stderr=log, start_new_session=True
                )
            if self._wait_ready(timeout):
                return self
            self.stop()
            if "Address already in use" not in self.log_text():
                break
        raise RuntimeError(f"gunicorn did not become ready:\n{self.log_text()[-4000:]}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def with_database(admin_url: str, dbname: str) -> str:
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{dbname}"))


@contextlib.contextmanager
def scratch_postgres(admin_url: str, prefix: str = "ledger_api") -> Iterator[str]:
    """A new, migrated PostgreSQL database; dropped (with its connections) afterwards."""
    import psycopg

    from ledger.store import open_store

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(admin_url, name)
    try:
        open_store(url, upgrade=True).close()
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
