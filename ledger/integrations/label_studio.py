"""Label Studio webhooks → ledger events.

Label Studio posts ``{"action": ..., "project": {...}, "task": {...}, "annotation": {...}}``
(plural actions carry lists: ``"annotation": [...]`` or ``"annotations": [...]`` and
``"task"``/``"tasks"``). :func:`convert` turns one such payload into the events that
bring the ledger in line with it, reading the project's current state:

- each Label Studio user becomes the actor ``ls-user-<id>`` (``actor.registered`` when
  unknown); deletions without a user are made by the tool actor ``label-studio``;
- the label config plus the instructions form the guideline ``label-studio-<project>``,
  versioned by the first 16 hex digits of their SHA-256 (``guideline.published`` when
  that version is not registered);
- each label name becomes a category (``category.defined`` with the next free id);
- each task becomes the image ``ls-task-<id>`` at ``original_width`` × ``original_height``;
- each brush or polygon result becomes the instance
  ``ls:a<annotation>:t<task>:<result id>``: created when new, edited when its mask or
  label changed, deleted when its result disappeared or its annotation was deleted.

Brush results are Label Studio's own RLE of an RGBA image; the alpha channel, as a
binary mask, is stored as COCO compressed RLE. Polygon points are percentages of the
original size, stored as a COCO polygon in pixels. Event ids are uuid5 of what they
record, and the state check makes a redelivered webhook append nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from ledger.errors import FieldError, InvalidInput, NotFound
from ledger.integrations import ProjectState, event_id, now_text, safe_part, time_text
from ledger.masks import encode
from ledger.store.base import Store

TOOL = {"name": "label-studio", "version": "webhook-1"}
TOOL_ACTOR = "label-studio"
ACTIONS = (
    "ANNOTATION_CREATED",
    "ANNOTATIONS_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATIONS_UPDATED",
    "ANNOTATIONS_DELETED",
    "ANNOTATION_DELETED",
)
MASK_TYPES = ("brushlabels", "polygonlabels", "polygon", "brush")
#: largest image a brush mask may describe (pixels)
MAX_PIXELS = 100_000_000


# --- Label Studio's brush RLE ----------------------------------------------------------


class _Bits:
    def __init__(self, data: bytes, loc: str) -> None:
        self.bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
        self.pos = 0
        self.loc = loc

    def read(self, size: int) -> int:
        end = self.pos + size
        if end > self.bits.size:
            raise InvalidInput.field(self.loc, "brush RLE ends too early")
        value = 0
        for bit in self.bits[self.pos : end]:
            value = (value << 1) | int(bit)
        self.pos = end
        return value


def decode_brush_rle(
    rle: Any, height: int, width: int, loc: str = "value.rle"
) -> npt.NDArray[np.uint8]:
    """Label Studio's brush RLE (a list of byte values encoding an RGBA image) as a
    binary ``height × width`` mask of its alpha channel (alpha > 0)."""
    if not isinstance(rle, list) or not rle:
        raise InvalidInput.field(loc, "must be a non-empty list of byte values")
    if not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in rle):
        raise InvalidInput.field(loc, "must hold integers from 0 to 255")
    stream = _Bits(bytes(rle), loc)
    total = stream.read(32)
    if total != height * width * 4:
        raise InvalidInput.field(
            loc, f"brush RLE holds {total} values, not {height}×{width}×4 (RGBA)"
        )
    word = stream.read(5) + 1
    sizes = [stream.read(4) + 1 for _ in range(4)]
    out = np.zeros(total, dtype=np.uint8)
    i = 0
    while i < total:
        repeat = stream.read(1)
        j = i + 1 + stream.read(sizes[stream.read(2)])
        if j > total:
            raise InvalidInput.field(loc, "brush RLE runs past the image")
        if repeat:
            out[i:j] = stream.read(word) & 0xFF
            i = j
        else:
            while i < j:
                out[i] = stream.read(word) & 0xFF
                i += 1
    alpha = out.reshape(height, width, 4)[:, :, 3]
    return (alpha > 0).astype(np.uint8)


# --- payload helpers -------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _id(value: Any, loc: str) -> str:
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise InvalidInput.field(loc, "must be a Label Studio id (an integer or a string)")
    return safe_part(value)


def _dim(value: Any, loc: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
        raise InvalidInput.field(loc, "must be an integer from 1 to 100000")
    return value


def _user(annotation: dict[str, Any]) -> tuple[str, str | None]:
    user = annotation.get("completed_by")
    if isinstance(user, dict):
        uid = user.get("id")
        email = user.get("email")
        name = email if isinstance(email, str) and email else None
    else:
        uid, name = user, None
    if isinstance(uid, bool) or not isinstance(uid, int | str) or uid == "":
        return TOOL_ACTOR, None
    return f"ls-user-{safe_part(uid)}", name


def _labels(value: dict[str, Any]) -> list[str]:
    for key in ("brushlabels", "polygonlabels", "labels"):
        found = value.get(key)
        if isinstance(found, list) and found:
            return [str(x) for x in found]
    return []


def _file_name(task: dict[str, Any], task_id: str) -> str:
    data = task.get("data")
    if isinstance(data, dict):
        for v in data.values():
            if isinstance(v, str) and 0 < len(v) <= 1000:
                return v
    return f"label-studio-task-{task_id}"


class _Converter:
    def __init__(self, store: Store, project: str, payload: dict[str, Any]) -> None:
        if store.head(project) is None:
            raise NotFound(f"project {project} does not exist")
        self.project = project
        self.payload = payload
        self.state = ProjectState(store, project)
        self.setup: list[dict[str, Any]] = []
        self.masks: list[dict[str, Any]] = []
        self.ls_project = self._ls_project_id()
        self.guideline: dict[str, str] | None = None

    def _ls_project_id(self) -> str:
        proj = self.payload.get("project")
        if isinstance(proj, dict) and proj.get("id") is not None:
            return _id(proj, "project.id")
        return "default"

    def _event(
        self, kind: str, payload: dict[str, Any], actor: str, when: str, **extra: Any
    ) -> dict[str, Any]:
        key = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        ev: dict[str, Any] = {
            "id": event_id("label-studio", self.project, kind, key),
            "type": kind,
            "actor": actor,
            "client_time": when,
            "tool": TOOL,
            "payload": payload,
        }
        ev.update(extra)
        return ev

    def ensure_actor(self, actor_id: str, name: str | None, when: str) -> None:
        if actor_id in self.state.actors:
            return
        kind = "tool" if actor_id == TOOL_ACTOR else "annotator"
        payload: dict[str, Any] = {"actor_id": actor_id, "kind": kind}
        if name and len(name) <= 200:
            payload["display_name"] = name
        self.setup.append(self._event("actor.registered", payload, TOOL_ACTOR, when))
        self.state.actors.add(actor_id)

    def ensure_guideline(self, when: str) -> dict[str, str]:
        if self.guideline is not None:
            return self.guideline
        proj = self.payload.get("project")
        proj = proj if isinstance(proj, dict) else {}
        config = proj.get("label_config")
        instructions = proj.get("expert_instruction")
        document = json.dumps(
            {
                "label_config": config if isinstance(config, str) else "",
                "instructions": instructions if isinstance(instructions, str) else "",
            },
            sort_keys=True,
            ensure_ascii=False,
        )
        digest = hashlib.sha256(document.encode()).hexdigest()
        gid, version = f"label-studio-{self.ls_project}", digest[:16]
        if (gid, version) not in self.state.guideline_hashes:
            payload: dict[str, Any] = {"guideline_id": gid, "version": version, "sha256": digest}
            title = proj.get("title")
            if isinstance(title, str) and title and len(title) <= 500:
                payload["title"] = title
            self.setup.append(self._event("guideline.published", payload, TOOL_ACTOR, when))
            self.state.guideline_hashes[(gid, version)] = digest
        self.guideline = {"id": gid, "version": version}
        return self.guideline

    def category(self, name: str, when: str) -> int:
        if name not in self.state.categories:
            if len(name) > 200 or not name:
                raise InvalidInput.field("result.value", "a label must have 1 to 200 characters")
            self.state.max_category += 1
            cid = self.state.max_category
            self.state.categories[name] = cid
            self.setup.append(
                self._event(
                    "category.defined", {"category_id": cid, "name": name}, TOOL_ACTOR, when
                )
            )
        return self.state.categories[name]

    def ensure_image(self, task: dict[str, Any], task_id: str, h: int, w: int, when: str) -> str:
        image_id = f"ls-task-{task_id}"
        known = self.state.image(image_id)
        if known is None:
            payload = {
                "image_id": image_id,
                "width": w,
                "height": h,
                "file_name": _file_name(task, task_id),
            }
            self.setup.append(self._event("image.registered", payload, TOOL_ACTOR, when))
            self.state.images[image_id] = (h, w)
        elif known != (h, w):
            raise InvalidInput.field(
                "result.original_width",
                f"task {task_id} was registered as {known[1]}×{known[0]}, not {w}×{h}",
            )
        return image_id

    def segmentation(self, result: dict[str, Any], h: int, w: int, loc: str) -> Any:
        value = result.get("value")
        if not isinstance(value, dict):
            raise InvalidInput.field(f"{loc}.value", "must be an object")
        kind = result.get("type")
        if kind == "brushlabels" or "rle" in value:
            if value.get("format", "rle") != "rle":
                raise InvalidInput.field(f"{loc}.value.format", "only the rle format is read")
            mask = decode_brush_rle(value.get("rle"), h, w, f"{loc}.value.rle")
            return dict(encode(mask))
        points = value.get("points")
        if not isinstance(points, list) or len(points) < 3:
            raise InvalidInput.field(f"{loc}.value.points", "a polygon needs 3 or more points")
        ring: list[float] = []
        for k, pt in enumerate(points):
            if (
                not isinstance(pt, list)
                or len(pt) != 2
                or not all(
                    isinstance(c, int | float) and not isinstance(c, bool) and -1e6 < c < 1e6
                    for c in pt
                )
            ):
                raise InvalidInput.field(f"{loc}.value.points[{k}]", "must be [x%, y%]")
            ring += [round(pt[0] * w / 100.0, 3), round(pt[1] * h / 100.0, 3)]
        return [ring]

    def annotation(
        self, annotation: dict[str, Any], task: dict[str, Any], loc: str, replace: bool
    ) -> None:
        ann_id = _id(annotation, f"{loc}.id")
        task_ref = annotation.get("task", task.get("id"))
        task_id = _id(task_ref if task_ref is not None else task, f"{loc}.task")
        actor, name = _user(annotation)
        when = (
            time_text(annotation.get("updated_at"))
            or time_text(annotation.get("created_at"))
            or now_text()
        )
        prefix = f"ls:a{ann_id}:t{task_id}:"
        existing = self.state.instances(prefix)
        seen: set[str] = set()
        results = annotation.get("result")
        if results is None:
            results = []
        if not isinstance(results, list):
            raise InvalidInput.field(f"{loc}.result", "must be a list")
        if annotation.get("was_cancelled") is True:
            results = []
        for k, result in enumerate(results):
            rloc = f"{loc}.result[{k}]"
            if not isinstance(result, dict):
                raise InvalidInput.field(rloc, "must be an object")
            value = result.get("value")
            is_mask = isinstance(value, dict) and ("rle" in value or "points" in value)
            if result.get("type") not in MASK_TYPES and not is_mask:
                continue  # not a mask (choices, text areas, rectangles)
            if "id" not in result:
                raise InvalidInput.field(f"{rloc}.id", "a result needs its id")
            instance_id = prefix + safe_part(result["id"])
            if instance_id in seen:
                continue
            seen.add(instance_id)
            h = _dim(result.get("original_height"), f"{rloc}.original_height")
            w = _dim(result.get("original_width"), f"{rloc}.original_width")
            if h * w > MAX_PIXELS:
                raise InvalidInput.field(rloc, "the image is too large")
            labels = _labels(value) if isinstance(value, dict) else []
            if not labels:
                raise InvalidInput.field(f"{rloc}.value", "a mask result needs a label")
            seg = self.segmentation(result, h, w, rloc)
            self.ensure_actor(actor, name, when)
            guideline = self.ensure_guideline(when)
            cid = self.category(labels[0], when)
            image_id = self.ensure_image(task, task_id, h, w, when)
            current = existing.get(instance_id)
            if current is None:
                payload: dict[str, Any] = {
                    "instance_id": instance_id,
                    "image_id": image_id,
                    "category_id": cid,
                    "segmentation": seg,
                }
                self.masks.append(
                    self._event("mask.created", payload, actor, when, guideline=guideline)
                )
                continue
            if current["deleted"]:
                continue  # a deleted instance is never brought back
            old_seg = json.loads(current["segmentation"])
            change: dict[str, Any] = {}
            if old_seg != seg:
                change["segmentation"] = seg
            if int(current["category_id"]) != cid:
                change["category_id"] = cid
            if change:
                payload = {"instance_id": instance_id, "revision": int(current["revision"])}
                payload.update(change)
                self.masks.append(
                    self._event("mask.edited", payload, actor, when, guideline=guideline)
                )
        if replace:
            gone = [i for i in sorted(existing) if i not in seen and not existing[i]["deleted"]]
            self.delete(gone, existing, actor, when, "result removed in Label Studio")

    def delete(
        self,
        instance_ids: Iterable[str],
        existing: dict[str, dict[str, Any]],
        actor: str,
        when: str,
        reason: str,
    ) -> None:
        for instance_id in instance_ids:
            row = existing[instance_id]
            if row["deleted"]:
                continue
            self.ensure_actor(actor, None, when)
            gid, _, version = str(row["guideline"]).rpartition("@")
            payload = {
                "instance_id": instance_id,
                "revision": int(row["revision"]),
                "reason": reason,
            }
            self.masks.append(
                self._event(
                    "mask.deleted", payload, actor, when, guideline={"id": gid, "version": version}
                )
            )

    def run(self) -> list[dict[str, Any]]:
        action = self.payload.get("action")
        if action not in ACTIONS:
            raise InvalidInput.field(
                "action", f"must be one of {', '.join(ACTIONS)} (got {str(action)[:100]!r})"
            )
        annotations = _as_list(self.payload.get("annotation")) + _as_list(
            self.payload.get("annotations")
        )
        tasks = _as_list(self.payload.get("task")) + _as_list(self.payload.get("tasks"))
        by_task: dict[Any, dict[str, Any]] = {}
        for t in tasks:
            if isinstance(t, dict) and isinstance(t.get("id"), int | str):
                by_task[t["id"]] = t
        for k, ann in enumerate(annotations):
            loc = f"annotation[{k}]"
            if isinstance(ann, int | str) and not isinstance(ann, bool):
                ann = {"id": ann}
            if not isinstance(ann, dict):
                raise InvalidInput.field(loc, "must be an object")
            if action.endswith("DELETED"):
                ann_id = _id(ann, f"{loc}.id")
                existing = self.state.instances(f"ls:a{ann_id}:t")
                self.delete(
                    sorted(existing), existing, TOOL_ACTOR, now_text(), "deleted in Label Studio"
                )
                continue
            task_ref = ann.get("task")
            if isinstance(task_ref, dict):
                task = task_ref
            elif isinstance(task_ref, int | str) and task_ref in by_task:
                task = by_task[task_ref]
            elif len(tasks) == 1 and isinstance(tasks[0], dict):
                task = tasks[0]
            else:
                task = {}
            self.annotation(ann, task, loc, replace=True)
        return self.setup + self.masks


def convert(store: Store, project: str, payload: Any) -> list[dict[str, Any]]:
    """The events that bring ``project`` in line with one Label Studio webhook payload
    (possibly none: a redelivery changes nothing)."""
    if not isinstance(payload, dict):
        raise InvalidInput("invalid webhook", [FieldError("body", "must be a JSON object")])
    return _Converter(store, project, payload).run()
