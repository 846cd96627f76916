"""Import a COCO instances file as events: the start of a ledger, or more of one.

Every COCO image becomes an ``image.registered`` event with ledger id
``<prefix><image id>``, every category a ``category.defined`` (same id), and every
annotation a ``mask.created`` for instance ``<prefix><annotation id>`` with its
segmentation exactly as in the file (polygons, compressed or uncompressed RLE) and
its ``iscrowd``; ``bbox`` and ``area`` in the file are not taken over, the ledger
computes them. The project is created, the actor registered and the guideline version
published when they do not exist yet.

Events go through :meth:`ledger.service.Ledger.append` in batches, so each is validated
exactly like an event a tool posts. Event ids are UUID5 over the project, the source
id and the event's content: an event already in the log is skipped before it is sent,
so importing the same file again appends nothing, and an import cut short can simply
be run again. An annotation whose id was imported before with other content is a
conflict that names it.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger.canonical import parse_json
from ledger.errors import Conflict, FieldError, InvalidInput, LedgerError
from ledger.service import Ledger, check_project_name
from ledger.store.base import Store

#: namespace of the UUID5 event ids of imported events
IMPORT_NAMESPACE = uuid.UUID("6f1c2f0e-4a53-5b8e-9a43-1f6a3c0d2e71")
TOOL = {"name": "ledger-import-coco", "version": "1"}
_GUIDELINE = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9._:/+-]{0,127})@([A-Za-z0-9][A-Za-z0-9._+-]{0,63})$"
)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$")
_CHUNK = 500

Progress = Callable[[int, int], None]


@dataclass
class ImportResult:
    project: str
    images: int = 0
    categories: int = 0
    annotations: int = 0
    #: events appended by this run
    appended: int = 0
    #: annotations found in the log already (imported by an earlier run)
    already_present: int = 0
    #: annotations left out with ``skip_invalid``, with why
    skipped: list[FieldError] = field(default_factory=list)
    size: int = 0


@dataclass
class _Planned:
    event: dict[str, Any]
    loc: str  # where in the COCO file it comes from


def load_coco(source: Path | bytes | str) -> tuple[dict[str, Any], bytes]:
    """Parse a COCO file strictly (a path, or the file's bytes); return it and its bytes."""
    if isinstance(source, Path):
        try:
            raw = source.read_bytes()
        except OSError as e:
            raise InvalidInput.field("file", f"cannot read {source}: {e.strerror}") from None
    else:
        raw = source.encode("utf-8") if isinstance(source, str) else bytes(source)
    data = parse_json(raw, loc="file")
    if not isinstance(data, dict):
        raise InvalidInput.field("file", "a COCO file is a JSON object")
    return data, raw


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [] if key == "annotations" else None)
    if not isinstance(value, list):
        raise InvalidInput.field(key, "missing or not a list")
    return value


def _obj(item: Any, loc: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise InvalidInput.field(loc, "expected an object")
    return item


def _source_id(item: dict[str, Any], loc: str, prefix: str) -> tuple[Any, str]:
    """The COCO id (int or string) and the ledger id made from it."""
    value = item.get("id")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput.field(f"{loc}.id", f"expected an integer or a string, got {value!r}")
    ledger_id = f"{prefix}{value}"
    if not _ID.match(ledger_id):
        raise InvalidInput.field(
            f"{loc}.id", f"{ledger_id!r} is not a valid ledger id (letters, digits, ._:@/+-)"
        )
    return value, ledger_id


def _int(item: dict[str, Any], key: str, loc: str) -> int:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput.field(f"{loc}.{key}", f"expected an integer, got {value!r}")
    return value


def _content_id(project: str, kind: str, key: str, payload: dict[str, Any]) -> str:
    content = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return str(uuid.uuid5(IMPORT_NAMESPACE, f"{project}\x00{kind}\x00{key}\x00{content}"))


class _Planner:
    def __init__(self, project: str, actor: str, client_time: str) -> None:
        self.project = project
        self.actor = actor
        self.client_time = client_time
        self.planned: list[_Planned] = []

    def add(
        self, kind: str, key: str, payload: dict[str, Any], loc: str, guideline: Any = None
    ) -> None:
        event: dict[str, Any] = {
            "id": _content_id(self.project, kind, key, payload),
            "type": kind,
            "actor": self.actor,
            "client_time": self.client_time,
            "tool": TOOL,
            "payload": payload,
        }
        if guideline is not None:
            event["guideline"] = guideline
        self.planned.append(_Planned(event, loc))


def _existing(
    store: Store, project: str, table: str, key: str, values: list[Any]
) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for i in range(0, len(values), _CHUNK):
        chunk = values[i : i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for row in store.query(
            f"SELECT * FROM {table} WHERE project = ? AND {key} IN ({marks})", (project, *chunk)
        ):
            out[row[key]] = row
    return out


def _present_events(store: Store, project: str, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(ids), _CHUNK):
        chunk = list(ids[i : i + _CHUNK])
        marks = ",".join("?" * len(chunk))
        rows = store.query(
            f"SELECT event_id FROM entries WHERE project = ? AND event_id IN ({marks})",
            (project, *chunk),
        )
        found.update(r["event_id"] for r in rows)
    return found


def plan_import(
    store: Store,
    project: str,
    data: dict[str, Any],
    *,
    actor: str,
    guideline: str,
    guideline_sha256: str,
    source_name: str,
    prefix: str = "coco-",
    client_time: str | None = None,
) -> tuple[list[_Planned], ImportResult]:
    """The events an import would send, in order, and the counts of the file."""
    check_project_name(project)
    match = _GUIDELINE.match(guideline)
    if not match:
        raise InvalidInput.field("guideline", f"expected ID@VERSION, got {guideline!r}")
    guideline_ref = {"id": match[1], "version": match[2]}
    when = client_time or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    plan = _Planner(project, actor, when)
    head = store.head(project)
    exists = head is not None and head.size > 0

    images = _list(data, "images")
    cats = _list(data, "categories")
    anns = _list(data, "annotations")
    result = ImportResult(project, len(images), len(cats), len(anns))

    if not exists:
        plan.add(
            "project.created",
            "project",
            {"name": project, "description": f"imported from COCO file {source_name}"[:2000]},
            "file",
        )
    known_actor = _existing(store, project, "actors", "actor_id", [actor]) if exists else {}
    if actor not in known_actor:
        plan.add("actor.registered", actor, {"actor_id": actor, "kind": "annotator"}, "--actor")
    published: set[str] = set()
    if exists:
        rows = store.query(
            "SELECT version FROM guidelines WHERE project = ? AND guideline_id = ?",
            (project, match[1]),
        )
        published = {r["version"] for r in rows}
    if match[2] not in published:
        plan.add(
            "guideline.published",
            guideline,
            {
                "guideline_id": match[1],
                "version": match[2],
                "sha256": guideline_sha256,
                "title": f"COCO import of {source_name}"[:500],
            },
            "--guideline",
        )

    category_ids: set[int] = set()
    parsed_cats = []
    for i, raw in enumerate(cats):
        loc = f"categories[{i}]"
        item = _obj(raw, loc)
        cid = _int(item, "id", loc)
        if not 1 <= cid <= 2**31 - 1:
            message = f"category ids run from 1 to 2**31 - 1, got {cid}"
            raise InvalidInput.field(f"{loc}.id", message)
        name = item.get("name")
        if not isinstance(name, str):
            raise InvalidInput.field(f"{loc}.name", "expected a string")
        if cid in category_ids:
            raise InvalidInput.field(f"{loc}.id", f"category {cid} appears twice")
        category_ids.add(cid)
        parsed_cats.append((loc, cid, name, item.get("supercategory")))
    stored_cats = (
        _existing(store, project, "categories", "category_id", sorted(category_ids))
        if exists else {}
    )  # fmt: skip
    for loc, cid, name, superc in parsed_cats:
        if cid in stored_cats:
            if stored_cats[cid]["name"] != name:
                raise Conflict(
                    f"{loc}: category {cid} is {name!r} in the file but "
                    f"{stored_cats[cid]['name']!r} in {project}"
                )
            continue
        payload: dict[str, Any] = {"category_id": cid, "name": name}
        if isinstance(superc, str) and superc:
            payload["supercategory"] = superc
        plan.add("category.defined", str(cid), payload, loc)

    image_ids: dict[Any, str] = {}
    parsed_images = []
    for i, raw in enumerate(images):
        loc = f"images[{i}]"
        item = _obj(raw, loc)
        source, ledger_id = _source_id(item, loc, prefix)
        if source in image_ids:
            raise InvalidInput.field(f"{loc}.id", f"image {source!r} appears twice")
        image_ids[source] = ledger_id
        width, height = _int(item, "width", loc), _int(item, "height", loc)
        file_name = item.get("file_name")
        if not isinstance(file_name, str):
            raise InvalidInput.field(f"{loc}.file_name", "expected a string")
        parsed_images.append((loc, ledger_id, width, height, file_name))
    stored_images = (
        _existing(store, project, "images", "image_id", [p[1] for p in parsed_images])
        if exists else {}
    )  # fmt: skip
    for loc, ledger_id, width, height, file_name in parsed_images:
        if ledger_id in stored_images:
            row = stored_images[ledger_id]
            if (row["width"], row["height"]) != (width, height):
                raise Conflict(
                    f"{loc}: image {ledger_id!r} is {width}x{height} in the file but "
                    f"{row['width']}x{row['height']} in {project}"
                )
            continue
        plan.add(
            "image.registered",
            ledger_id,
            {"image_id": ledger_id, "width": width, "height": height, "file_name": file_name},
            loc,
        )

    seen: set[Any] = set()
    for i, raw in enumerate(anns):
        loc = f"annotations[{i}]"
        item = _obj(raw, loc)
        source, instance_id = _source_id(item, loc, prefix)
        if source in seen:
            raise InvalidInput.field(f"{loc}.id", f"annotation {source!r} appears twice")
        seen.add(source)
        image_source = item.get("image_id")
        if isinstance(image_source, bool) or image_source not in image_ids:
            raise InvalidInput.field(f"{loc}.image_id", f"image {image_source!r} is not in images")
        cid = _int(item, "category_id", loc)
        if cid not in category_ids and cid not in stored_cats:
            raise InvalidInput.field(f"{loc}.category_id", f"category {cid} is not in categories")
        if "segmentation" not in item:
            raise InvalidInput.field(f"{loc}.segmentation", "missing")
        crowd = item.get("iscrowd", 0)
        if crowd not in (0, 1) or (isinstance(crowd, float)):
            raise InvalidInput.field(f"{loc}.iscrowd", f"expected 0 or 1, got {crowd!r}")
        payload = {
            "instance_id": instance_id,
            "image_id": image_ids[image_source],
            "category_id": cid,
            "segmentation": item["segmentation"],
            "iscrowd": bool(crowd),
        }
        if "score" in item:
            payload["score"] = item["score"]
        plan.add("mask.created", instance_id, payload, loc, guideline_ref)

    if exists:
        present = _present_events(store, project, [p.event["id"] for p in plan.planned])
        result.already_present = len(present)
        plan.planned = [p for p in plan.planned if p.event["id"] not in present]
    return plan.planned, result


_EVENT_LOC = re.compile(r"events\[(\d+)\]")


def _event_indexes(error: LedgerError) -> set[int]:
    errors: list[FieldError] = getattr(error, "errors", [])
    return {int(m[1]) for e in errors if (m := _EVENT_LOC.match(e.loc))}


def _relocated(error: LedgerError, batch: list[_Planned]) -> LedgerError:
    """The same error with ``events[i]`` replaced by the place in the COCO file."""

    def fix(text: str) -> str:
        return _EVENT_LOC.sub(lambda m: batch[int(m[1])].loc, text)

    errors: list[FieldError] = getattr(error, "errors", [])
    fixed = [FieldError(fix(e.loc), e.message) for e in errors]
    if isinstance(error, InvalidInput):
        return InvalidInput("invalid COCO file", fixed)
    if isinstance(error, Conflict):
        return Conflict(fix(error.message), fixed)
    return error


def import_coco(
    ledger: Ledger,
    project: str,
    source: Path | bytes | str,
    *,
    actor: str,
    guideline: str,
    principal: str,
    prefix: str = "coco-",
    guideline_sha256: str | None = None,
    source_name: str | None = None,
    skip_invalid: bool = False,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import a COCO file (path or bytes) into ``project``; see the module docstring.

    ``guideline`` is ``ID@VERSION``; if that version is not published yet it is,
    with ``guideline_sha256`` (default: SHA-256 of the COCO file, the document the
    annotations were made to). With ``skip_invalid``, annotations the ledger refuses
    (empty or malformed masks) are left out and listed in the result instead of
    stopping the import; by default the first batch with one stops it, and the
    batches before it stay committed (run again to resume)."""
    data, raw = load_coco(source)
    name = source_name or (source.name if isinstance(source, Path) else "upload")
    planned, result = plan_import(
        ledger.store,
        project,
        data,
        actor=actor,
        guideline=guideline,
        guideline_sha256=guideline_sha256 or hashlib.sha256(raw).hexdigest(),
        source_name=name,
        prefix=prefix,
    )
    del data, raw
    size = min(batch_size or ledger.max_batch, ledger.max_batch)
    done = 0
    for start in range(0, len(planned), size):
        batch = planned[start : start + size]
        while batch:
            try:
                appended = ledger.append(project, [p.event for p in batch], principal)
            except InvalidInput as e:
                bad = _event_indexes(e)
                masks_only = all(batch[i].event["type"] == "mask.created" for i in bad)
                if not (skip_invalid and bad and masks_only):
                    raise _relocated(e, batch) from e
                for err in e.errors:
                    m = _EVENT_LOC.match(err.loc)
                    if m:
                        where = batch[int(m[1])].loc + err.loc[m.end() :]
                        result.skipped.append(FieldError(where, err.message))
                batch = [p for i, p in enumerate(batch) if i not in bad]
                continue
            except Conflict as e:
                raise _relocated(e, batch) from e
            result.appended += appended.appended
            result.already_present += len(appended.results) - appended.appended
            result.size = appended.size
            break
        done = min(start + size, len(planned))
        if progress is not None:
            progress(done, len(planned))
    head = ledger.store.head(project)
    result.size = head.size if head is not None else 0
    return result
