"""CVAT → ledger events: webhooks (job status changes) and "CVAT for images 1.1" XML.

Webhooks are signed: ``X-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>``;
:func:`check_signature` compares in constant time. An ``update:job`` (or
``create:job``) delivery becomes a ``job.status_changed`` event with the job's state
and stage; other events are acknowledged and ignored.

The XML import reads ``<image>`` elements with their ``<polygon>`` and ``<mask>``
children (see :func:`import_xml`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import numpy.typing as npt

from ledger.errors import FieldError, InvalidInput, NotFound
from ledger.integrations import ProjectState, event_id, now_text, safe_part, time_text
from ledger.masks import encode
from ledger.store.base import Store

TOOL = {"name": "cvat", "version": "webhook-1"}
TOOL_ACTOR = "cvat"
JOB_EVENTS = ("update:job", "create:job")


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_signature(secret: str, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the HMAC-SHA256 signature of ``body`` (constant time)."""
    if not secret or not header:
        return False
    return hmac.compare_digest(signature(secret, body).encode(), header.strip().encode())


def _text(value: Any, limit: int) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str) and str(value) and len(str(value)) <= limit:
        return str(value)
    return None


def webhook_events(project: str, payload: Any) -> list[dict[str, Any]]:
    """The ``job.status_changed`` event of one CVAT webhook delivery, or none."""
    if not isinstance(payload, dict):
        raise InvalidInput("invalid webhook", [FieldError("body", "must be a JSON object")])
    kind = payload.get("event")
    if kind not in JOB_EVENTS:
        return []
    job = payload.get("job")
    if not isinstance(job, dict):
        raise InvalidInput.field("job", "must be an object")
    job_id = _text(job.get("id"), 200)
    status = _text(job.get("state"), 100)
    if job_id is None:
        raise InvalidInput.field("job.id", "must be an id")
    if status is None:
        raise InvalidInput.field("job.state", "must be a string of 1 to 100 characters")
    before = payload.get("before_update")
    if (
        kind == "update:job"
        and isinstance(before, dict)
        and "state" not in before
        and "stage" not in before
    ):
        return []  # neither state nor stage changed
    body: dict[str, Any] = {"source": "cvat", "job_id": job_id, "status": status}
    stage = _text(job.get("stage"), 100)
    if stage is not None:
        body["stage"] = stage
    task_id = _text(job.get("task_id"), 200)
    if task_id is not None:
        body["task_id"] = task_id
    url = _text(job.get("url"), 2000)
    if url is not None:
        body["url"] = url
    when = time_text(job.get("updated_date")) or now_text()
    sender = payload.get("sender")
    actor = TOOL_ACTOR
    if isinstance(sender, dict) and _text(sender.get("username"), 100):
        actor = "cvat-user-" + safe_part(sender.get("username"))
    return [
        {
            "id": event_id("cvat", project, "job", json.dumps(body, sort_keys=True), when),
            "type": "job.status_changed",
            "actor": actor,
            "client_time": when,
            "tool": TOOL,
            "payload": body,
        }
    ]


# --- CVAT for images 1.1 XML -----------------------------------------------------------


def cvat_mask(
    rle_text: str, left: int, top: int, width: int, height: int, img_h: int, img_w: int, loc: str
) -> npt.NDArray[np.uint8]:
    """A CVAT ``<mask>``: ``rle`` is comma-separated run lengths over the
    ``width × height`` box at (left, top), row-major, starting with a run of zeros."""
    try:
        runs = [int(x) for x in rle_text.split(",") if x.strip() != ""]
    except ValueError:
        raise InvalidInput.field(f"{loc}.rle", "must be comma-separated integers") from None
    if any(r < 0 for r in runs) or sum(runs) != width * height:
        raise InvalidInput.field(
            f"{loc}.rle", f"run lengths must be non-negative and add up to {width}×{height}"
        )
    if (
        left < 0
        or top < 0
        or width < 1
        or height < 1
        or left + width > img_w
        or top + height > img_h
    ):
        raise InvalidInput.field(loc, "the mask box must lie inside the image")
    flat = np.zeros(width * height, dtype=np.uint8)
    pos, value = 0, 0
    for run in runs:
        if value:
            flat[pos : pos + run] = 1
        pos += run
        value ^= 1
    full = np.zeros((img_h, img_w), dtype=np.uint8)
    full[top : top + height, left : left + width] = flat.reshape(height, width)
    return full


def _int_attr(el: ET.Element, name: str, loc: str) -> int:
    try:
        return int(float(el.attrib[name]))
    except (KeyError, ValueError):
        raise InvalidInput.field(f"{loc}.@{name}", "must be a number") from None


def import_xml(
    store: Store,
    project: str,
    data: bytes,
    *,
    actor: str,
    guideline: dict[str, str],
    source: str = "cvat",
) -> list[dict[str, Any]]:
    """Events for the images, labels and shapes of a CVAT for images 1.1 file: polygons
    (``points="x1,y1;x2,y2;..."``) and masks. Instance ids are
    ``cvat:<source>:<image id>:<shape index>``; shapes already in the ledger are skipped,
    so importing the same file twice appends nothing. ``actor`` must be registered
    (it is registered as an annotator when it is not)."""
    if store.head(project) is None:
        raise NotFound(f"project {project} does not exist")
    if b"<!DOCTYPE" in data[:4096] or b"<!ENTITY" in data:
        raise InvalidInput.field("file", "DTDs and entities are not accepted")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise InvalidInput.field("file", f"not XML: {e}") from None
    st = ProjectState(store, project)
    when = now_text()
    src = safe_part(source)
    setup: list[dict[str, Any]] = []
    masks: list[dict[str, Any]] = []

    def ev(kind: str, payload: dict[str, Any], who: str, **extra: Any) -> dict[str, Any]:
        key = json.dumps(payload, sort_keys=True)
        out = {
            "id": event_id("cvat-xml", project, kind, key),
            "type": kind,
            "actor": who,
            "client_time": when,
            "tool": {"name": "cvat", "version": "xml-1.1"},
            "payload": payload,
        }
        out.update(extra)
        return out

    if actor not in st.actors:
        setup.append(ev("actor.registered", {"actor_id": actor, "kind": "annotator"}, actor))
        st.actors.add(actor)
    if (guideline["id"], guideline["version"]) not in st.guideline_hashes:
        raise InvalidInput.field(
            "guideline", f"guideline {guideline['id']}@{guideline['version']} is not published"
        )
    existing = st.instances(f"cvat:{src}:")

    def category(name: str) -> int:
        if name not in st.categories:
            st.max_category += 1
            st.categories[name] = st.max_category
            setup.append(
                ev(
                    "category.defined",
                    {"category_id": st.max_category, "name": name[:200] or "unnamed"},
                    actor,
                )
            )
        return st.categories[name]

    for i, img in enumerate(root.iter("image")):
        loc = f"image[{i}]"
        width = _int_attr(img, "width", loc)
        height = _int_attr(img, "height", loc)
        if not (1 <= width <= 100_000 and 1 <= height <= 100_000):
            raise InvalidInput.field(loc, "width and height must be from 1 to 100000")
        name = img.attrib.get("name") or f"image-{i}"
        image_id = f"cvat-{src}-{safe_part(img.attrib.get('id', i))}"
        known = st.image(image_id)
        if known is None:
            setup.append(
                ev(
                    "image.registered",
                    {
                        "image_id": image_id,
                        "width": width,
                        "height": height,
                        "file_name": name[:1000],
                    },
                    actor,
                )
            )
            st.images[image_id] = (height, width)
        for k, shape in enumerate(img):
            sloc = f"{loc}.{shape.tag}[{k}]"
            if shape.tag not in ("polygon", "mask"):
                continue
            instance_id = f"cvat:{src}:{safe_part(img.attrib.get('id', i))}:{k}"
            if instance_id in existing:
                continue
            if shape.tag == "polygon":
                ring: list[float] = []
                for pt in shape.attrib.get("points", "").split(";"):
                    try:
                        x, y = (float(c) for c in pt.split(","))
                    except ValueError:
                        raise InvalidInput.field(f"{sloc}.@points", "must be x,y;x,y;...") from None
                    ring += [x, y]
                seg: Any = [ring]
            else:
                mask = cvat_mask(
                    shape.attrib.get("rle", ""),
                    _int_attr(shape, "left", sloc), _int_attr(shape, "top", sloc),
                    _int_attr(shape, "width", sloc), _int_attr(shape, "height", sloc),
                    height, width, sloc,
                )  # fmt: skip
                seg = dict(encode(mask))
            payload = {
                "instance_id": instance_id,
                "image_id": image_id,
                "category_id": category(shape.attrib.get("label", "unlabelled")),
                "segmentation": seg,
            }
            masks.append(ev("mask.created", payload, actor, guideline=guideline))
    return setup + masks
