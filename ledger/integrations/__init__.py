"""Converters from annotation tools' own formats (Label Studio webhooks, CVAT XML and
webhooks) to ledger events. They read the project's current state from the store and
return raw events for ``Ledger.append``; they never write themselves."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from ledger.store.base import Store

#: namespace of the deterministic event ids (uuid5) integrations produce
NAMESPACE = uuid.UUID("6f1c2a52-1f0b-5a43-9a53-3b8a2c1d7e10")
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.:@+-")


def event_id(*parts: object) -> str:
    """A uuid5 over ``parts``: the same input gives the same event id (idempotent retries)."""
    return str(uuid.uuid5(NAMESPACE, "\x1f".join(str(p) for p in parts)))


def safe_part(value: object) -> str:
    """``value`` as an identifier fragment: kept when it uses only safe characters, else
    a short hash of it (so the result stays deterministic)."""
    text = str(value)
    if text and len(text) <= 40 and all(c in _SAFE for c in text):
        return text
    return "h" + hashlib.sha256(text.encode()).hexdigest()[:16]


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def time_text(value: object) -> str | None:
    """An ISO 8601 time from a tool as an aware UTC time string, or None."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ProjectState:
    """The few projections an integration needs, read once per request."""

    def __init__(self, store: Store, project: str) -> None:
        self.store = store
        self.project = project
        self.actors = {
            r["actor_id"]
            for r in store.query("SELECT actor_id FROM actors WHERE project = ?", (project,))
        }
        self.guideline_hashes: dict[tuple[str, str], str] = {
            (r["guideline_id"], r["version"]): r["sha256"]
            for r in store.query(
                "SELECT guideline_id, version, sha256 FROM guidelines WHERE project = ?",
                (project,),
            )
        }
        self.categories: dict[str, int] = {}
        for r in store.query(
            "SELECT category_id, name FROM categories WHERE project = ? ORDER BY category_id",
            (project,),
        ):
            self.categories.setdefault(r["name"], int(r["category_id"]))
        self.max_category = max(self.categories.values(), default=0)
        self.images: dict[str, tuple[int, int]] = {}

    def image(self, image_id: str) -> tuple[int, int] | None:
        """(height, width) of a registered image."""
        if image_id not in self.images:
            rows = self.store.query(
                "SELECT width, height FROM images WHERE project = ? AND image_id = ?",
                (self.project, image_id),
            )
            if not rows:
                return None
            self.images[image_id] = (int(rows[0]["height"]), int(rows[0]["width"]))
        return self.images[image_id]

    def instances(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Instances whose id starts with ``prefix`` (no LIKE wildcards in it), with
        their current revision's row."""
        rows = self.store.query(
            "SELECT i.instance_id, i.revision, i.deleted, r.category_id, r.segmentation,"
            " r.guideline, r.image_id FROM instances i JOIN revisions r"
            " ON r.project = i.project AND r.instance_id = i.instance_id"
            " AND r.revision = i.revision"
            " WHERE i.project = ? AND i.instance_id LIKE ?",
            (self.project, prefix + "%"),
        )
        return {r["instance_id"]: r for r in rows if r["instance_id"].startswith(prefix)}
