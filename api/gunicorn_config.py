"""gunicorn settings for the ledger service (``deploy/gunicorn.conf.py`` imports these).

Use: ``gunicorn -c deploy/gunicorn.conf.py api.wsgi:app`` (or ``-c
python:api.gunicorn_config``, which is what ``ledger serve`` runs).

* Binds ``LEDGER_HOST:LEDGER_PORT`` (default 127.0.0.1:8080) unless ``--bind`` is given.
* Workers: ``LEDGER_WORKERS``, else ``WEB_CONCURRENCY``, else 2 x cores + 1. Appends are
  short database transactions; more workers than that only queue on the project lock.
* Threads per worker: ``LEDGER_THREADS`` (default 1: sync workers). With more than one,
  gunicorn's gthread worker keeps client connections alive between requests.
* Timeouts: a worker silent for 120 s is restarted (a SQLite writer may wait its 30 s
  busy timeout; verifying a long log takes time); 30 s to finish requests on shutdown.
* Logs: JSON lines on stderr. The app writes one line per request (request id, route,
  status, duration, principal, never a header or a query string, so never a token);
  gunicorn's own access log would repeat it and is off unless ``LEDGER_ACCESS_LOG=1``,
  in which case it is JSON too and leaves out the query string.
* Metrics: ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary folder unless set) collects
  every worker's counters for ``/metrics``.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ledger.config import load_settings

_settings = load_settings()

_host = _settings.host
bind = [f"[{_host}]:{_settings.port}" if ":" in _host else f"{_host}:{_settings.port}"]
workers = int(
    os.environ.get("LEDGER_WORKERS")
    or os.environ.get("WEB_CONCURRENCY")
    or multiprocessing.cpu_count() * 2 + 1
)
threads = int(os.environ.get("LEDGER_THREADS") or 1)
worker_class = "gthread" if threads > 1 else "sync"
timeout = 120
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then so that a slow leak cannot grow without bound.
max_requests = 20_000
max_requests_jitter = 2_000
# Event batches can be large; headers and request lines cannot.
limit_request_line = 8190
limit_request_fields = 100
proc_name = "ledger"
# gunicorn's control socket has one default path per user: two services (or a service
# and its tests) on one machine would fight over it.
control_socket_disable = True

errorlog = "-"
loglevel = os.environ.get("LEDGER_LOG_LEVEL", "info")
accesslog = "-" if os.environ.get("LEDGER_ACCESS_LOG") in ("1", "true", "yes") else None
# %(U)s is the path without the query string; no request header is logged.
access_log_format = (
    '{"request_id": "%({x-request-id}o)s", "method": "%(m)s", "path": "%(U)s", '
    '"status": %(s)s, "bytes_out": "%(B)s", "duration_us": %(D)s, "remote": "%(h)s"}'
)
_access_handlers = ["access"] if accesslog else []
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "api.logs.JsonFormatter"},
        "access": {"format": "%(message)s"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        },
        "access": {
            "class": "logging.StreamHandler",
            "formatter": "access",
            "stream": "ext://sys.stderr",
        },
    },
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": _access_handlers, "propagate": False},
        "ledger": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
    },
    "root": {"level": "WARNING", "handlers": ["stderr"]},
}

# Set before any worker imports prometheus_client, which reads it at import time.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
_own_metrics_dir = not _metrics_dir
if not _metrics_dir:
    _metrics_dir = tempfile.mkdtemp(prefix="ledger-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def on_starting(server: Any) -> None:
    """Start from empty metric files (a restart must not resume old counts)."""
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
