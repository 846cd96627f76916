"""Prometheus metrics: requests, latencies, appends, log sizes.

Under gunicorn every worker is a process: ``api.gunicorn_config`` sets
``PROMETHEUS_MULTIPROC_DIR`` before any worker starts, counters and histograms are
written there, and ``/metrics`` (served by whichever worker) adds them up. Log sizes
and database reachability are read from the database at scrape time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ledger.errors import LedgerError
from ledger.service import AppendResult
from ledger.store import Store

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _LogCollector(Collector):
    """Log size per project, and whether the database answered, read at scrape time."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        sizes = GaugeMetricFamily(
            "ledger_log_size", "Entries in each project's log", labels=["project"]
        )
        up = GaugeMetricFamily("ledger_database_up", "1 when the database answered the scrape")
        try:
            heads = self.store.projects()
        except LedgerError:
            up.add_metric([], 0)
        else:
            up.add_metric([], 1)
            for head in heads:
                if head.size:
                    sizes.add_metric([head.project], head.size)
        yield sizes
        yield up


class Metrics:
    """The metrics of one app."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.multiprocess = multiprocess_dir() is not None
        # In multiprocess mode values live in files, not in a registry.
        self.registry: CollectorRegistry | None = None if self.multiprocess else CollectorRegistry()
        reg = self.registry
        self.requests = Counter(
            "ledger_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "ledger_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.appended = Counter(
            "ledger_events_appended", "Events appended to a log", ["project"], registry=reg
        )
        self.duplicates = Counter(
            "ledger_events_duplicate",
            "Events posted again (idempotent retries) and not appended",
            ["project"],
            registry=reg,
        )
        self.batches = Counter(
            "ledger_append_batches", "Append transactions committed", ["project"], registry=reg
        )
        if self.registry is not None:
            self.registry.register(_LogCollector(store))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observe_append(self, result: AppendResult) -> None:
        appended = result.appended
        if appended:
            self.batches.labels(result.project).inc()
            self.appended.labels(result.project).inc(appended)
        duplicates = len(result.results) - appended
        if duplicates:
            self.duplicates.labels(result.project).inc(duplicates)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        if self.registry is not None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(_LogCollector(self.store))
        return generate_latest(registry), CONTENT_TYPE_LATEST
