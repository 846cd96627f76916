"""Export workflows: write a release's files into a folder, with a manifest whose hash the
ledger records, so that a training run can prove which files it read.

Layout of a materialized release (every path is relative to the target folder)::

    coco.json                  the release's COCO export, byte for byte (its SHA-256 is
                               the one the release.created event recorded)
    masks/instance/<stem>.png  per image: pixel = instance index (0 = background)
    masks/instance-<k>/<stem>.png
                               layer k >= 2, only for images whose instances overlap
    masks/semantic/<stem>.png  per image: pixel = category id (0 = background)
    masks/index.json           per image: its files and which annotation each index is
    palette.json               category id -> name and RGB colour
    manifest.json              every other file with its SHA-256 and size

* ``<stem>`` is the image's ``file_name`` without its extension, each path part
  reduced to ``[A-Za-z0-9._-]`` (other characters become ``_``, ``.`` and ``..`` parts
  are dropped); two images with the same stem get ``~<coco image id>`` appended, in
  COCO image order.
* Instance masks: the annotations of an image are numbered 1..N in COCO order (by
  annotation id); ``masks/index.json`` maps each index to its annotation id, ledger
  instance id and category. A pixel holds one index, so overlapping instances go into
  further layers: each instance goes into the first layer where none of its pixels is
  taken. Every instance's pixels are therefore exactly its COCO mask. A PNG is 8-bit
  grayscale when the image has at most 255 instances, 16-bit grayscale otherwise.
* Semantic masks (DeepLab style): an 8-bit palette PNG whose pixel values are the
  category ids, 0 the background; where masks overlap, crowd regions are painted
  first, then the other annotations in COCO order, the last one winning. The palette
  is the PASCAL VOC colour map (``voc_color``: the bits of the index spread over the
  high bits of R, G and B), so index 0 is black. If a category id exceeds 255 the
  semantic PNGs are 16-bit grayscale instead (no palette); ``palette.json`` still
  gives each category's colour.
* ``manifest.json`` is RFC 8785 canonical JSON: the project, release, its tree size and
  export hash, the exports written, and ``files``: ``path``, ``sha256`` and ``bytes`` of
  every file, sorted by path. It lists no time and no folder, so writing the same
  release again with the same libraries gives the same manifest. Its SHA-256 is
  recorded in a ``release.materialized`` event (with the file count and the folder).

:func:`verify_materialized` hashes every file again and compares it with the manifest,
the manifest with the hashes the ledger recorded, and ``coco.json`` with the release.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
from PIL import Image

from ledger import __version__
from ledger.canonical import canonical_bytes
from ledger.coco import write_to
from ledger.entry import format_time
from ledger.errors import InvalidInput, LedgerError, NotFound, VerificationFailed
from ledger.masks import decode
from ledger.releases import Release, export_release, get_release
from ledger.service import Ledger, check_project_name
from ledger.store.base import Store

__all__ = [
    "EXPORTS",
    "MANIFEST",
    "MaterializationCheck",
    "Materialized",
    "WorkflowSettings",
    "check_materialized",
    "materialize_release",
    "on_release_created",
    "palette_bytes",
    "raise_failed",
    "verify_materialized",
    "voc_color",
]

MANIFEST_FORMAT = "annotation-ledger/materialized/1"
MANIFEST = "manifest.json"
COCO_FILE = "coco.json"
INDEX_FILE = "masks/index.json"
PALETTE_FILE = "palette.json"
#: what can be written besides the manifest
EXPORTS = ("coco", "instance", "semantic")
_MAX_INSTANCES = 65535
_SAFE_PART = re.compile(r"[^A-Za-z0-9._-]")

Progress = Callable[[int, int], None]


# --- palette ------------------------------------------------------------------------------


def voc_color(index: int) -> tuple[int, int, int]:
    """Colour of ``index`` in the PASCAL VOC colour map (DeepLab's
    ``create_pascal_label_colormap``): bit 3j, 3j+1, 3j+2 of the index become bit 7-j of
    R, G and B."""
    r = g = b = 0
    c = index
    for j in range(8):
        r |= ((c >> 0) & 1) << (7 - j)
        g |= ((c >> 1) & 1) << (7 - j)
        b |= ((c >> 2) & 1) << (7 - j)
        c >>= 3
    return r, g, b


def palette_bytes() -> bytes:
    """The 256-entry RGB palette of the semantic PNGs."""
    return b"".join(bytes(voc_color(i)) for i in range(256))


# --- writing ------------------------------------------------------------------------------


def _stem(file_name: str) -> str:
    parts = []
    for part in re.split(r"[/\\]+", file_name):
        if part in ("", ".", ".."):
            continue
        parts.append(_SAFE_PART.sub("_", part))
    if not parts:
        return "image"
    last = parts[-1]
    base, dot, _ext = last.rpartition(".")
    if dot and base.strip("."):
        parts[-1] = base
    return "/".join(parts)


def _png(array: npt.NDArray[Any], palette: bytes | None = None) -> bytes:
    height, width = array.shape
    if palette is not None:
        image = Image.frombytes("P", (width, height), np.ascontiguousarray(array).tobytes())
        image.putpalette(palette)
    else:
        image = Image.fromarray(np.ascontiguousarray(array))
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=6)
    return out.getvalue()


@dataclass
class _Writer:
    """Writes files under a folder and keeps their hashes for the manifest."""

    root: Path
    files: dict[str, tuple[str, int]] = field(default_factory=dict)

    def write(self, relative: str, data: bytes) -> None:
        self.write_chunks(relative, [data])

    def write_chunks(self, relative: str, chunks: Iterable[bytes]) -> str:
        if relative in self.files:
            raise InvalidInput.field("path", f"{relative} would be written twice")
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            written = write_to(chunks, out)
        self.files[relative] = (written.sha256, written.size)
        return written.sha256


def _layers(masks: list[npt.NDArray[np.uint8]]) -> list[int]:
    """Layer (0-based) of each mask: the first layer where none of its pixels is taken."""
    taken: list[npt.NDArray[np.bool_]] = []
    out = []
    for mask in masks:
        on = mask.astype(bool)
        for k, layer in enumerate(taken):
            if not (layer & on).any():
                layer |= on
                out.append(k)
                break
        else:
            taken.append(on.copy())
            out.append(len(taken) - 1)
    return out


@dataclass(frozen=True)
class Materialized:
    project: str
    name: str
    directory: Path
    manifest_sha256: str
    files: int
    #: sequence number of the release.materialized entry (None when not recorded)
    seq: int | None
    exports: tuple[str, ...]


def _check_exports(exports: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(e for e in EXPORTS if e in set(exports))
    unknown = sorted(set(exports) - set(EXPORTS))
    if unknown:
        raise InvalidInput.field(
            "exports", f"unknown export {unknown[0]!r} (known: {', '.join(EXPORTS)})"
        )
    if not chosen:
        raise InvalidInput.field("exports", f"choose at least one of {', '.join(EXPORTS)}")
    return chosen


def _prepare_target(directory: Path, overwrite: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise InvalidInput.field("target", f"{directory} exists and is not a folder")
    if directory.is_dir() and any(directory.iterdir()):
        if not overwrite:
            raise InvalidInput.field(
                "target",
                f"{directory} is not empty; choose a new folder, or overwrite a previous "
                "materialization",
            )
        if not (directory / MANIFEST).is_file():
            raise InvalidInput.field(
                "target",
                f"{directory} is not empty and holds no {MANIFEST}: refusing to overwrite "
                "a folder that is not a materialized release",
            )


def _write_files(
    store: Store,
    release: Release,
    root: Path,
    exports: tuple[str, ...],
    progress: Progress | None,
) -> _Writer:
    writer = _Writer(root)
    buffer = io.BytesIO()
    coco_sha = write_to(export_release(store, release.project, release.name), buffer).sha256
    if coco_sha != release.sha256:
        raise VerificationFailed(
            f"release {release.name}: export has SHA-256 {coco_sha}, the release recorded "
            f"{release.sha256}; nothing was written (run `ledger projections check`)"
        )
    coco_bytes = buffer.getvalue()
    if "coco" in exports:
        writer.write(COCO_FILE, coco_bytes)
    document = json.loads(coco_bytes)
    del buffer, coco_bytes
    categories = {int(c["id"]): c for c in document["categories"]}
    palette = {
        str(cid): {"name": c["name"], "rgb": list(voc_color(cid)) if cid < 256 else None}
        for cid, c in sorted(categories.items())
    }
    if "semantic" in exports:
        palette_doc: dict[str, Any] = {
            "background": {"index": 0, "rgb": [0, 0, 0]},
            "categories": palette,
            "colour_map": "pascal-voc",
        }
        writer.write(PALETTE_FILE, canonical_bytes(palette_doc))
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in document["annotations"]:
        by_image.setdefault(int(ann["image_id"]), []).append(ann)
    semantic_16 = any(cid > 255 for cid in categories)
    stems: set[str] = set()
    index: list[dict[str, Any]] = []
    images = document["images"]
    wants_masks = "instance" in exports or "semantic" in exports
    for done, img in enumerate(images, start=1):
        coco_id = int(img["id"])
        height, width = int(img["height"]), int(img["width"])
        stem = _stem(str(img["file_name"]))
        if stem in stems:
            stem = f"{stem}~{coco_id}"
        stems.add(stem)
        anns = sorted(by_image.get(coco_id, []), key=lambda a: int(a["id"]))
        if len(anns) > _MAX_INSTANCES:
            raise InvalidInput.field(
                f"images[{img['ledger_id']}]",
                f"{len(anns)} instances do not fit a 16-bit instance PNG",
            )
        if not wants_masks:
            continue
        masks = [decode(a["segmentation"], height, width) for a in anns]
        layers = _layers(masks)
        entry: dict[str, Any] = {
            "coco_image_id": coco_id,
            "file_name": img["file_name"],
            "image_id": img["ledger_id"],
            "instances": [
                {
                    "annotation_id": int(a["id"]),
                    "category_id": int(a["category_id"]),
                    "index": i,
                    "instance_id": a["instance_id"],
                    "iscrowd": int(a["iscrowd"]),
                    "layer": layers[i - 1] + 1,
                }
                for i, a in enumerate(anns, start=1)
            ],
        }
        if "instance" in exports:
            dtype = np.uint8 if len(anns) <= 255 else np.uint16
            planes = [
                np.zeros((height, width), dtype=dtype) for _ in range(max(layers, default=0) + 1)
            ]
            for i, (mask, layer) in enumerate(zip(masks, layers, strict=True), start=1):
                planes[layer][mask.astype(bool)] = i
            paths = []
            for k, plane in enumerate(planes, start=1):
                folder = "masks/instance" if k == 1 else f"masks/instance-{k}"
                path = f"{folder}/{stem}.png"
                writer.write(path, _png(plane))
                paths.append(path)
            entry["instance"] = paths
        if "semantic" in exports:
            sem = np.zeros((height, width), dtype=np.uint16 if semantic_16 else np.uint8)
            # crowd regions first, then the rest in COCO order: the last one painted wins
            order = sorted(range(len(anns)), key=lambda j: (not anns[j]["iscrowd"], j))
            for j in order:
                sem[masks[j].astype(bool)] = int(anns[j]["category_id"])
            path = f"masks/semantic/{stem}.png"
            writer.write(path, _png(sem, None if semantic_16 else palette_bytes()))
            entry["semantic"] = path
        index.append(entry)
        if progress is not None and (done % 100 == 0 or done == len(images)):
            progress(done, len(images))
    if wants_masks:
        index_doc: dict[str, Any] = {
            "images": index,
            "instance_png": "pixel = instance index, 0 = background; 8-bit, 16-bit above 255",
            "semantic_png": (
                "pixel = category id, 0 = background; "
                + ("16-bit grayscale" if semantic_16 else "8-bit palette, PASCAL VOC colour map")
            ),
        }
        writer.write(INDEX_FILE, canonical_bytes(index_doc))
    return writer


def _manifest(release: Release, exports: tuple[str, ...], writer: _Writer) -> bytes:
    document: dict[str, Any] = {
        "exports": list(exports),
        "files": [
            {"bytes": size, "path": path, "sha256": sha}
            for path, (sha, size) in sorted(writer.files.items())
        ],
        "format": MANIFEST_FORMAT,
        "project": release.project,
        "release": release.name,
        "release_seq": release.seq,
        "release_sha256": release.sha256,
        "tree_size": release.tree_size,
    }
    return canonical_bytes(document)


def materialize_release(
    ledger: Ledger,
    project: str,
    name: str,
    directory: str | Path,
    *,
    principal: str,
    actor: str = "exporter",
    exports: Iterable[str] = EXPORTS,
    overwrite: bool = False,
    record: bool = True,
    progress: Progress | None = None,
) -> Materialized:
    """Write the release's exports and manifest into ``directory`` and, with ``record``,
    append ``release.materialized`` with the manifest's SHA-256.

    The files are written into a new folder beside ``directory`` and moved into place
    when complete, so a failed run leaves no half-written target. ``directory`` must be
    new or empty; with ``overwrite`` it may also hold an earlier materialization."""
    check_project_name(project)
    chosen = _check_exports(exports)
    store = ledger.store
    release = get_release(store, project, name)
    target = Path(directory).absolute()
    _prepare_target(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        writer = _write_files(store, release, staging, chosen, progress)
        manifest = _manifest(release, chosen, writer)
        (staging / MANIFEST).write_bytes(manifest)
        manifest_sha = hashlib.sha256(manifest).hexdigest()
        if target.exists():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    seq = None
    if record:
        event = {
            "id": str(uuid.uuid4()),
            "type": "release.materialized",
            "actor": actor,
            "client_time": format_time(datetime.now(UTC)),
            "tool": {"name": "ledger-materialize", "version": __version__},
            "payload": {
                "name": name,
                "manifest_sha256": manifest_sha,
                "files": len(writer.files),
                "target": str(target)[:2000],
            },
        }
        seq = ledger.append(project, [event], principal).results[0].seq
    return Materialized(project, name, target, manifest_sha, len(writer.files), seq, chosen)


# --- verifying ----------------------------------------------------------------------------


@dataclass
class MaterializationCheck:
    """Outcome of :func:`verify_materialized`; ``problems`` is empty when it verified."""

    project: str
    directory: Path
    name: str | None = None
    manifest_sha256: str | None = None
    #: entries of the release.materialized events whose hash equals the manifest's
    recorded_seq: int | None = None
    files: int = 0
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _manifest_files(doc: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    files = doc.get("files")
    if not isinstance(files, list):
        raise ValueError("files is not a list")
    out = []
    for i, f in enumerate(files):
        if not isinstance(f, dict):
            raise ValueError(f"files[{i}] is not an object")
        path, sha, size = f.get("path"), f.get("sha256"), f.get("bytes")
        if not isinstance(path, str) or not isinstance(sha, str) or not isinstance(size, int):
            raise ValueError(f"files[{i}] needs path, sha256 and bytes")
        parts = path.split("/")
        if path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"files[{i}].path {path!r} is not a plain relative path")
        out.append((path, sha, size))
    return out


def verify_materialized(
    store: Store, project: str, directory: str | Path, name: str | None = None
) -> MaterializationCheck:
    """Re-hash every file of a materialized release and compare: each file with the
    manifest, the manifest with the ``release.materialized`` events of the release, and
    ``coco.json`` with the release's recorded export hash. Problems name the file."""
    check_project_name(project)
    root = Path(directory)
    check = MaterializationCheck(project, root, name)
    manifest_path = root / MANIFEST
    try:
        raw = manifest_path.read_bytes()
    except FileNotFoundError:
        check.problems.append(f"{MANIFEST} is missing from {root}")
        return check
    except OSError as e:
        check.problems.append(f"{MANIFEST} cannot be read: {e.strerror}")
        return check
    check.manifest_sha256 = hashlib.sha256(raw).hexdigest()
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        files = _manifest_files(doc)
        release_name = doc.get("release")
        if not isinstance(release_name, str):
            raise ValueError("release is missing")
    except ValueError as e:
        check.problems.append(f"{MANIFEST} is malformed: {e}")
        return check
    if doc.get("project") != project:
        check.problems.append(f"{MANIFEST} is of project {doc.get('project')!r}, not {project}")
    if name is not None and release_name != name:
        check.problems.append(f"{MANIFEST} is of release {release_name!r}, not {name!r}")
    check.name = name or release_name
    check.files = len(files)
    try:
        release = get_release(store, project, check.name)
    except NotFound as e:
        check.problems.append(str(e))
        release = None
    if release is not None:
        if doc.get("release_sha256") != release.sha256:
            check.problems.append(
                f"{MANIFEST} names export SHA-256 {doc.get('release_sha256')}, "
                f"the release recorded {release.sha256}"
            )
        recorded = store.query(
            "SELECT seq, manifest_sha256 FROM materializations"
            " WHERE project = ? AND name = ? ORDER BY seq",
            (project, check.name),
        )
        matching = [
            int(r["seq"]) for r in recorded if r["manifest_sha256"] == check.manifest_sha256
        ]
        if matching:
            check.recorded_seq = matching[-1]
        elif recorded:
            last = recorded[-1]
            check.problems.append(
                f"{MANIFEST} has SHA-256 {check.manifest_sha256}, but the ledger recorded "
                f"{last['manifest_sha256']} for release {check.name} (entry {last['seq']})"
            )
        else:
            check.problems.append(
                f"no release.materialized event of release {check.name} records "
                f"{MANIFEST} SHA-256 {check.manifest_sha256}"
            )
    listed = set()
    for path, sha, size in files:
        listed.add(path)
        file = root / path
        if not file.is_file():
            check.missing.append(path)
            check.problems.append(f"missing file {path}")
            continue
        actual, actual_size = _sha256_file(file)
        if actual != sha or actual_size != size:
            check.changed.append(path)
            check.problems.append(
                f"changed file {path}: SHA-256 {actual} ({actual_size} bytes), "
                f"the manifest says {sha} ({size} bytes)"
            )
        elif path == COCO_FILE and release is not None and actual != release.sha256:
            check.problems.append(
                f"{COCO_FILE} has SHA-256 {actual}, the release recorded {release.sha256}"
            )
    for file in sorted(root.rglob("*")):
        if file.is_file():
            rel = file.relative_to(root).as_posix()
            if rel != MANIFEST and rel not in listed:
                check.unlisted.append(rel)
                check.problems.append(f"unlisted file {rel} (not in the manifest)")
    return check


def check_materialized(
    store: Store,
    project: str,
    directory: str | Path,
    name: str | None = None,
    *,
    notify: bool = False,
) -> MaterializationCheck:
    """:func:`verify_materialized`, raising VerificationFailed that names the first
    problem (the changed file); with ``notify``, also queue a ``verification.failed``
    notification for the subscribers."""
    check = verify_materialized(store, project, directory, name)
    if not check.ok:
        raise_failed(store, check, notify=notify)
    return check


def raise_failed(store: Store, check: MaterializationCheck, *, notify: bool = False) -> NoReturn:
    """Raise VerificationFailed for a failed check (and queue a notification)."""
    what = f"materialized release {check.name or '?'}"
    first = check.problems[0] if check.problems else "unknown problem"
    more = f" (and {len(check.problems) - 1} more problems)" if len(check.problems) > 1 else ""
    message = f"{what} in {check.directory} did not verify: {first}{more}"
    if notify:
        from ledger.notify import notify_verification_failed, safe_notify

        safe_notify(
            lambda: notify_verification_failed(
                store, check.project, what, message, details={"problems": check.problems[:50]}
            )
        )
    raise VerificationFailed(message)


# --- the release-created hook -------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowSettings:
    """What happens when a release is created.

    ``export_dir``: materialize every new release into ``<export_dir>/<project>/<name>``
    (nothing is written when None); ``exports``: which files; ``notify``: queue
    ``release.created`` (and ``release.materialized``) notifications; ``deliver_now``:
    make one delivery attempt of those right away (a failed one is retried later by
    ``deliver_pending``)."""

    export_dir: Path | None = None
    exports: tuple[str, ...] = EXPORTS
    notify: bool = True
    deliver_now: bool = True

    @classmethod
    def from_settings(cls, settings: object) -> WorkflowSettings:
        """Read ``export_dir``, ``exports``, ``notify_on_release`` and
        ``notify_deliver_now`` from a settings object that has them (for example
        ``ledger.config.Settings`` once it defines them); missing ones keep defaults."""
        if isinstance(settings, WorkflowSettings):
            return settings
        raw_dir = getattr(settings, "export_dir", None)
        raw_exports = getattr(settings, "exports", None)
        if isinstance(raw_exports, str):
            raw_exports = [e.strip() for e in raw_exports.split(",") if e.strip()]
        return cls(
            export_dir=Path(raw_dir) if raw_dir else None,
            exports=_check_exports(raw_exports) if raw_exports else EXPORTS,
            notify=bool(getattr(settings, "notify_on_release", True)),
            deliver_now=bool(getattr(settings, "notify_deliver_now", True)),
        )


@dataclass
class ReleaseHookResult:
    materialized: Materialized | None = None
    deliveries: list[str] = field(default_factory=list)
    #: problems that did not stop the release (it is already recorded)
    errors: list[str] = field(default_factory=list)


def on_release_created(
    ledger: Ledger,
    project: str,
    release_name: str,
    settings: WorkflowSettings | object | None = None,
    *,
    principal: str = "ledger",
) -> ReleaseHookResult:
    """Call after ``release.created`` was appended: write the configured exports and
    notify subscribers. Never raises for an export or notification problem (the
    release already exists); those are returned in ``errors``."""
    from ledger.notify import (
        deliver_pending,
        notify_release_created,
        notify_release_materialized,
    )

    chosen = (
        WorkflowSettings.from_settings(settings) if settings is not None else WorkflowSettings()
    )
    result = ReleaseHookResult()
    if chosen.export_dir is not None:
        target = chosen.export_dir / project / release_name
        try:
            result.materialized = materialize_release(
                ledger,
                project,
                release_name,
                target,
                principal=principal,
                exports=chosen.exports,
            )
        except (LedgerError, OSError) as e:
            result.errors.append(f"materialize {release_name} into {target}: {e}")
    if chosen.notify:
        try:
            result.deliveries += notify_release_created(ledger.store, project, release_name)
            m = result.materialized
            if m is not None:
                result.deliveries += notify_release_materialized(
                    ledger.store,
                    project,
                    release_name,
                    m.manifest_sha256,
                    m.files,
                    seq=m.seq,
                    target=str(m.directory),
                )
            if chosen.deliver_now and result.deliveries:
                deliver_pending(ledger.store, only=result.deliveries)
        except LedgerError as e:
            result.errors.append(f"notify {release_name}: {e}")
    return result
