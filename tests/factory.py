"""Builders of valid events, so that each test changes only what it is about."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import numpy as np

from ledger.masks import encode

T0 = "2026-11-01T09:00:00Z"
GUIDELINE = {"id": "seg-guide", "version": "1.0"}
TOOL = {"name": "test-tool", "version": "0.1"}


def event(
    type_: str, payload: dict[str, Any], actor: str = "admin", **extra: Any
) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "type": type_,
        "actor": actor,
        "client_time": T0,
        "tool": TOOL,
        "payload": payload,
    }
    if type_.startswith(("mask.", "review.")):
        ev["guideline"] = GUIDELINE
    ev.update(extra)
    return ev


def project_created(name: str = "test project") -> dict[str, Any]:
    return event("project.created", {"name": name})


def actor(actor_id: str, kind: str = "annotator", **extra: Any) -> dict[str, Any]:
    return event("actor.registered", {"actor_id": actor_id, "kind": kind, **extra})


def guideline(guideline_id: str = "seg-guide", version: str = "1.0") -> dict[str, Any]:
    digest = hashlib.sha256(f"{guideline_id}@{version}".encode()).hexdigest()
    return event(
        "guideline.published", {"guideline_id": guideline_id, "version": version, "sha256": digest}
    )


def category(category_id: int = 1, name: str = "car") -> dict[str, Any]:
    return event("category.defined", {"category_id": category_id, "name": name})


def image(image_id: str = "img-1", width: int = 64, height: int = 48) -> dict[str, Any]:
    return event(
        "image.registered",
        {"image_id": image_id, "width": width, "height": height, "file_name": f"{image_id}.png"},
    )


def box_rle(
    height: int = 48, width: int = 64, x0: int = 5, y0: int = 5, x1: int = 20, y1: int = 15
) -> dict[str, Any]:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    return dict(encode(mask))


def mask_created(
    instance_id: str = "inst-1",
    image_id: str = "img-1",
    category_id: int = 1,
    actor_id: str = "alice",
    segmentation: Any = None,
    **payload: Any,
) -> dict[str, Any]:
    return event(
        "mask.created",
        {
            "instance_id": instance_id,
            "image_id": image_id,
            "category_id": category_id,
            "segmentation": segmentation if segmentation is not None else box_rle(),
            **payload,
        },
        actor=actor_id,
    )


def mask_edited(
    instance_id: str, revision: int, actor_id: str = "alice", **payload: Any
) -> dict[str, Any]:
    if not payload:
        payload = {"segmentation": box_rle(x1=25)}
    return event(
        "mask.edited", {"instance_id": instance_id, "revision": revision, **payload}, actor=actor_id
    )


def mask_deleted(instance_id: str, revision: int, actor_id: str = "alice") -> dict[str, Any]:
    return event("mask.deleted", {"instance_id": instance_id, "revision": revision}, actor=actor_id)


def review(
    instance_id: str, revision: int, decision: str = "accept", actor_id: str = "rita"
) -> dict[str, Any]:
    return event(
        "review.decided",
        {"instance_id": instance_id, "revision": revision, "decision": decision},
        actor=actor_id,
    )


def setup_events() -> list[dict[str, Any]]:
    """A project with an annotator (alice), a reviewer (rita), a guideline, a category
    and one 64x48 image."""
    return [
        project_created(),
        actor("alice"),
        actor("rita", "reviewer"),
        guideline(),
        category(),
        image(),
    ]
