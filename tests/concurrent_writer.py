"""A writer process for the concurrency tests (importable, so it works with spawn)."""

from __future__ import annotations

from ledger.service import Ledger
from ledger.store import open_store
from tests import factory as f


def write(
    url: str, project: str, worker: int, batches: int, per_batch: int
) -> list[tuple[str, int]]:
    """Append ``batches`` batches; return (event id, acknowledged seq) of every event."""
    store = open_store(url)
    try:
        ledger = Ledger(store)
        acked: list[tuple[str, int]] = []
        for b in range(batches):
            events = [f.mask_created(f"w{worker}-{b}-{j}") for j in range(per_batch)]
            result = ledger.append(project, events, f"worker-{worker}")
            acked.extend((r.event_id, r.seq) for r in result.results)
        return acked
    finally:
        store.close()
