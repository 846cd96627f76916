"""Deterministic, streaming COCO export of a release or of any as-of state.

The byte format
---------------
An export is one JSON document, written as its RFC 8785 (JCS) canonical form: UTF-8,
no whitespace, object keys in JCS order, numbers as JCS writes them, no trailing
newline. Re-canonicalizing a loaded export therefore gives the same bytes back. The
document is::

    {"annotations": [...], "categories": [...], "images": [...], "info": {...},
     "licenses": []}

* ``images``: every image registered before the tree size, in registration order.
  ``id`` is the sequence number of the image's ``image.registered`` entry;
  ``ledger_id`` is the ledger's image id; ``file_name``, ``width``, ``height`` and,
  when registered, ``sha256``, ``sequence_id`` and ``frame_index`` follow.
* ``categories``: the categories defined before the tree size (only those the policy
  names, when it names some), by ``id``: ``id``, ``name`` and ``supercategory`` when
  defined.
* ``annotations``: the instances the policy selects, in ``id`` order. ``id`` is the
  sequence number of the instance's ``mask.created`` entry, so an instance keeps its
  id in every release. ``image_id`` is the image's COCO id; ``segmentation`` is the
  current revision's mask exactly as submitted (compressed or uncompressed RLE, or
  polygons); ``area`` and ``bbox`` are pycocotools' ``area`` and ``toBbox`` of that
  mask; ``iscrowd`` is 0 or 1; ``instance_id`` and ``revision`` name the ledger
  instance and revision.
* ``info``: ``project``, ``release`` (absent for an as-of export), ``tree_size``,
  ``root_hash`` (hex Merkle root of the log at that size), ``policy``,
  ``date_created`` (server time of entry tree_size-1), ``version``, ``year``,
  ``format`` and ``hash_convention``.

The hash convention
-------------------
The export's hash is SHA-256 over exactly these bytes. A ``release.created`` event
records that hash; the export names the release, its tree size and the root hash at
that size, but never its own hash, so nothing is circular. Anyone can check a release
file with ``sha256sum``, or with ``sha256(rfc8785.dumps(json.load(f)))``.

The same state gives the same bytes on every backend: ids are sequence numbers,
everything is ordered by integers, and every value is canonicalized on the way out.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import numpy.typing as npt
from pycocotools import mask as coco_mask

from ledger.asof import (
    AsOf,
    Bbox,
    CategoryRecord,
    ImageRecord,
    InstanceState,
    as_of,
    categories,
    iter_images,
    iter_rows,
)
from ledger.canonical import canonical_bytes
from ledger.errors import InvalidInput
from ledger.events import ReleasePolicy
from ledger.store.base import Store

EXPORT_FORMAT = "annotation-ledger/coco/1"
HASH_CONVENTION = (
    "sha256 is SHA-256 over the exact bytes of this file: the RFC 8785 canonical JSON of "
    "this document, UTF-8, no trailing newline. A release.created event records it; this "
    "info block names the release, tree size and root hash but never the file's own hash."
)
#: bytes gathered before a chunk is handed out
CHUNK_BYTES = 1 << 18

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ExportHeader:
    """What the ``info`` block says about an export."""

    project: str
    tree_size: int
    root_hash: bytes
    date_created: str
    policy: ReleasePolicy
    release: str | None = None


def policy_json(policy: ReleasePolicy) -> dict[str, Any]:
    return policy.model_dump(mode="json", exclude_none=True)


def info_block(header: ExportHeader) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date_created": header.date_created,
        "description": (
            f"{header.project} release {header.release}"
            if header.release is not None
            else f"{header.project} as of tree size {header.tree_size}"
        ),
        "format": EXPORT_FORMAT,
        "hash_convention": HASH_CONVENTION,
        "policy": policy_json(header.policy),
        "project": header.project,
        "root_hash": header.root_hash.hex(),
        "tree_size": header.tree_size,
        "version": header.release if header.release is not None else f"tree-{header.tree_size}",
        "year": int(header.date_created[:4]),
    }
    if header.release is not None:
        info["release"] = header.release
    return info


def coco_image(img: ImageRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "file_name": img.file_name,
        "height": img.height,
        "id": img.seq,
        "ledger_id": img.image_id,
        "width": img.width,
    }
    if img.sha256 is not None:
        out["sha256"] = img.sha256
    if img.sequence_id is not None:
        out["sequence_id"] = img.sequence_id
    if img.frame_index is not None:
        out["frame_index"] = img.frame_index
    return out


def coco_category(cat: CategoryRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"id": cat.category_id, "name": cat.name}
    if cat.supercategory is not None:
        out["supercategory"] = cat.supercategory
    return out


def coco_annotation(
    *,
    annotation_id: int,
    image_seq: int,
    category_id: int,
    segmentation: Any,
    area: int,
    bbox: Bbox,
    iscrowd: bool,
    instance_id: str,
    revision: int,
) -> dict[str, Any]:
    return {
        "area": area,
        "bbox": [round(float(v), 2) for v in bbox],
        "category_id": category_id,
        "id": annotation_id,
        "image_id": image_seq,
        "instance_id": instance_id,
        "iscrowd": int(iscrowd),
        "revision": revision,
        "segmentation": segmentation,
    }


# JSON text that the standard library writes exactly as RFC 8785 does: a compressed or
# uncompressed RLE, or polygons whose numbers have no exponent and no integral float
# ("20.0", which JCS writes "20"). Anything else goes through canonical_bytes.
_RLE_TEXT = re.compile(r'\{"counts":(?:"[0-o]*"|\[[0-9,]*\]),"size":\[[0-9]+,[0-9]+\]\}')
_POLYGON_TEXT = re.compile(r"\[\[[-0-9.,\[\]]*\]\]")
_INTEGRAL_FLOAT = re.compile(r"\.0(?![0-9])")
_PLAIN_ID = re.compile(r"[A-Za-z0-9._:@/+-]*")
_BOX_TEXT = re.compile(r"\[-?[0-9]+\.0,-?[0-9]+\.0,-?[0-9]+\.0,-?[0-9]+\.0\]")


def segmentation_text(text: str) -> str:
    """RFC 8785 text of a segmentation given as compact, key-sorted JSON text (as the
    projections store it, or as ``json.dumps(..., sort_keys=True)`` writes it)."""
    if _RLE_TEXT.fullmatch(text) or (
        _POLYGON_TEXT.fullmatch(text) and not _INTEGRAL_FLOAT.search(text)
    ):
        return text
    return canonical_bytes(json.loads(text)).decode("utf-8")


def _box_text(bbox: Bbox | str) -> str:
    if isinstance(bbox, str):
        if _BOX_TEXT.fullmatch(bbox):
            return bbox.replace(".0,", ",").replace(".0]", "]")
        values = [round(float(v), 2) for v in json.loads(bbox)]
    elif all(float(v).is_integer() and abs(v) < 1e15 for v in bbox):  # pixel boxes
        return "[" + ",".join(str(int(v)) for v in bbox) + "]"
    else:
        values = [round(float(v), 2) for v in bbox]
    return canonical_bytes(values).decode("ascii")


def annotation_bytes(
    *,
    annotation_id: int,
    image_seq: int,
    category_id: int,
    segmentation: str,
    area: int,
    bbox: Bbox | str,
    iscrowd: bool,
    instance_id: str,
    revision: int,
) -> bytes:
    """Canonical bytes of :func:`coco_annotation`, written directly. ``segmentation``
    and a ``bbox`` given as text are compact, key-sorted JSON text; tests check the
    result against ``canonical_bytes(coco_annotation(...))``."""
    # ledger ids need no escaping (see ledger.events.Identifier)
    name = (
        f'"{instance_id}"'
        if _PLAIN_ID.fullmatch(instance_id)
        else json.dumps(instance_id, ensure_ascii=False)
    )
    return (
        f'{{"area":{int(area)},"bbox":{_box_text(bbox)},"category_id":{int(category_id)},'
        f'"id":{int(annotation_id)},"image_id":{int(image_seq)},"instance_id":{name},'
        f'"iscrowd":{int(iscrowd)},"revision":{int(revision)},'
        f'"segmentation":{segmentation_text(segmentation)}}}'
    ).encode()


def annotation_of(state: InstanceState) -> dict[str, Any]:
    return coco_annotation(
        annotation_id=state.annotation_id,
        image_seq=state.image_seq,
        category_id=state.category_id,
        segmentation=state.segmentation,
        area=state.area,
        bbox=state.bbox,
        iscrowd=state.iscrowd,
        instance_id=state.instance_id,
        revision=state.revision,
    )


def write_coco(
    header: ExportHeader,
    annotations: Iterable[dict[str, Any] | bytes],
    categories: Iterable[dict[str, Any]],
    images: Iterable[dict[str, Any]],
) -> Iterator[bytes]:
    """The canonical bytes of a COCO document, in chunks; each iterable is read once,
    in this order, so that each can be a streaming query. An item is a JSON object, or
    its canonical bytes already (see :func:`annotation_bytes`)."""
    buffer: list[bytes] = []
    held = 0

    def put(piece: bytes) -> Iterator[bytes]:
        nonlocal held
        buffer.append(piece)
        held += len(piece)
        if held >= CHUNK_BYTES:
            yield b"".join(buffer)
            buffer.clear()
            held = 0

    def array(items: Iterable[dict[str, Any] | bytes], loc: str) -> Iterator[bytes]:
        first = True
        for i, item in enumerate(items):
            piece = item if isinstance(item, bytes) else canonical_bytes(item, loc=f"{loc}[{i}]")
            yield from put(piece if first else b"," + piece)
            first = False

    yield from put(b'{"annotations":[')
    yield from array(annotations, "annotations")
    yield from put(b'],"categories":[')
    yield from array(categories, "categories")
    yield from put(b'],"images":[')
    yield from array(images, "images")
    yield from put(b'],"info":' + canonical_bytes(info_block(header)) + b',"licenses":[]}')
    if buffer:
        yield b"".join(buffer)


def export_state(
    store: Store,
    project: str,
    size: int,
    policy: ReleasePolicy | None = None,
    release: str | None = None,
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """COCO export of the state as of ``size`` from the projections, streamed.

    ``policy`` defaults to every current revision (``selection="all"``); a release
    passes its own policy and name. ``progress`` is called with the number of
    annotations written so far, now and then."""
    chosen = policy if policy is not None else ReleasePolicy(selection="all")
    where: AsOf = as_of(store, project, size)
    header = ExportHeader(project, size, where.root_hash, where.recorded_at, chosen, release)
    wanted = None if chosen.categories is None else set(chosen.categories)

    def annotations() -> Iterator[bytes]:
        count = 0
        for row in iter_rows(store, project, size):
            if chosen.selection == "accepted" and row["review"] != "accept":
                continue
            if wanted is not None and int(row["category_id"]) not in wanted:
                continue
            count += 1
            yield annotation_bytes(
                annotation_id=row["annotation_id"],
                image_seq=row["image_seq"],
                category_id=row["category_id"],
                segmentation=row["segmentation"],
                area=row["area"],
                bbox=row["bbox"],
                iscrowd=bool(row["iscrowd"]),
                instance_id=row["instance_id"],
                revision=row["revision"],
            )
            if progress is not None and count % 1000 == 0:
                progress(count)
        if progress is not None:
            progress(count)

    cats = (
        coco_category(c)
        for c in categories(store, project, size)
        if wanted is None or c.category_id in wanted
    )
    imgs = (coco_image(i) for i in iter_images(store, project, size))
    return write_coco(header, annotations(), cats, imgs)


@dataclass(frozen=True)
class Written:
    sha256: str
    size: int


def write_to(chunks: Iterable[bytes], out: IO[bytes] | None = None) -> Written:
    """Write chunks to ``out`` (or nowhere), hashing them on the way."""
    digest = hashlib.sha256()
    total = 0
    for chunk in chunks:
        digest.update(chunk)
        total += len(chunk)
        if out is not None:
            out.write(chunk)
    return Written(digest.hexdigest(), total)


def export_bytes(chunks: Iterable[bytes]) -> bytes:
    """The whole export in memory (tests and small states)."""
    return b"".join(chunks)


# --- area and bbox of a mask, from the mask alone ---------------------------------------
#
# Used when an export is rebuilt from the log alone. The entries were validated when they
# were appended, so this trusts their content; what it still checks is whatever could
# make pycocotools read out of bounds or give a number that is not the mask's (a
# tampered log must fail verification, never crash it).
#
# Compressed counts are decoded with numpy, many masks in one pass: a call per mask
# costs tens of microseconds of numpy overhead, a batch of thousands costs a few
# nanoseconds per character. pycocotools' own toBbox is not used on submitted strings:
# a zero-length run of ones (valid, though pycocotools never writes one) makes it
# count a pixel that is not set. Tests check that area and box equal those of
# ledger.masks.validate_segmentation on random masks.

_COUNTS = re.compile(r"[0-o]*[0-O]")  # 6-bit groups; the last one ends a value
_PAYLOAD, _MORE, _SIGN = 0x1F, 0x20, 0x10
_NO_BOX: Bbox = (0.0, 0.0, 0.0, 0.0)

#: one mask to measure: segmentation, image height, image width, where it comes from
MaskItem = tuple[Any, int, int, str]


@dataclass
class _Decoded:
    """Run lengths of many counts strings, concatenated."""

    runs: npt.NDArray[np.int64]
    owner: npt.NDArray[np.intp]  # which string each run belongs to
    index: npt.NDArray[np.int64]  # position of each run in its string
    first: npt.NDArray[np.intp]  # index of each string's first run


def _decode_many(strings: list[str], locs: list[str]) -> _Decoded:
    """Decode compressed counts strings (pycocotools' rleFrString), all at once."""
    for text, loc in zip(strings, locs, strict=True):
        if not _COUNTS.fullmatch(text):
            raise InvalidInput.field(loc, "not a compressed RLE string")
    count = len(strings)
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=count)
    chunk = np.frombuffer("".join(strings).encode("ascii"), dtype=np.uint8).astype(np.int64)
    chunk -= 48
    ends = np.flatnonzero((chunk & _MORE) == 0)  # last character of each value
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    sizes = ends - starts + 1
    owner = np.searchsorted(np.cumsum(lengths), starts, side="right")
    if int(sizes.max()) > 7:
        bad = int(owner[int(np.argmax(sizes > 7))])
        raise InvalidInput.field(locs[bad], "run length does not fit in 32 bits")
    place = np.arange(len(chunk), dtype=np.int64) - np.repeat(starts, sizes)
    values = np.add.reduceat((chunk & _PAYLOAD) << (5 * place), starts)
    negative = (chunk[ends] & _SIGN) != 0
    values[negative] -= np.left_shift(1, 5 * sizes[negative])
    first = np.searchsorted(owner, np.arange(count), side="left")
    index = np.arange(len(values), dtype=np.int64) - first[owner]
    # run i > 2 is stored as its difference from run i - 2: two running sums per
    # string, over the odd runs and over the even runs from run 2 on
    runs = values.copy()
    for chain in ((index % 2) == 1, ((index % 2) == 0) & (index >= 2)):
        pos = np.flatnonzero(chain)
        if not len(pos):
            continue
        part = values[pos]
        total = np.cumsum(part)
        who = owner[pos]
        heads = np.flatnonzero(np.concatenate(([True], who[1:] != who[:-1])))
        base = total[heads] - part[heads]
        runs[pos] = total - np.repeat(base, np.diff(np.append(heads, len(pos))))
    return _Decoded(runs, owner, index, first)


def _stats_many(
    decoded: _Decoded, heights: npt.NDArray[np.int64], widths: npt.NDArray[np.int64],
    locs: list[str],
) -> list[tuple[int, Bbox]]:  # fmt: skip
    """Area and COCO box of each decoded mask: pycocotools' rleArea and rleToBbox of
    its canonical RLE (the box of the pixels that are set)."""
    runs, owner, index = decoded.runs, decoded.owner, decoded.index
    count = len(locs)
    totals = np.add.reduceat(runs, decoded.first)
    lowest = np.minimum.reduceat(runs, decoded.first)
    bad = np.flatnonzero((totals != heights * widths) | (lowest < 0))
    if len(bad):
        i = int(bad[0])
        raise InvalidInput.field(locs[i], f"runs do not cover the {heights[i]}x{widths[i]} mask")
    start = decoded.first[owner]
    cum = np.cumsum(runs)
    end = cum - (cum[start] - runs[start])  # end of each run within its mask
    ones = ((index % 2) == 1) & (runs > 0)  # a zero-length run of ones sets no pixel
    who = owner[ones]
    size = runs[ones]
    h = heights[who]
    x0, y0 = np.divmod(end[ones] - size, h)
    x1, y1 = np.divmod(end[ones] - 1, h)
    area = np.zeros(count, dtype=np.int64)
    xs, ys, xe, ye = (np.zeros(count, dtype=np.int64) for _ in range(4))
    span = np.zeros(count, dtype=bool)
    if len(who):
        # runs are in mask order: reduce each mask's runs of ones in one pass
        heads = np.flatnonzero(np.concatenate(([True], who[1:] != who[:-1])))
        masks_with_ones = who[heads]
        area[masks_with_ones] = np.add.reduceat(size, heads)
        xs[masks_with_ones] = np.minimum.reduceat(x0, heads)
        xe[masks_with_ones] = np.maximum.reduceat(x1, heads)
        ys[masks_with_ones] = np.minimum.reduceat(np.minimum(y0, y1), heads)
        ye[masks_with_ones] = np.maximum.reduceat(np.maximum(y0, y1), heads)
        # a run across columns spans the full height
        span[masks_with_ones] = np.logical_or.reduceat(x1 > x0, heads)
    ys[span] = 0
    ye[span] = heights[span] - 1
    out: list[tuple[int, Bbox]] = []
    for i in range(count):
        if area[i] == 0:
            out.append((0, _NO_BOX))
        else:
            box = (float(xs[i]), float(ys[i]), float(xe[i] - xs[i] + 1), float(ye[i] - ys[i] + 1))
            out.append((int(area[i]), box))
    return out


def _check_polygon(seg: list[Any], height: int, width: int, loc: str) -> None:
    """Refuse what would make pycocotools' rasterizer misbehave."""
    if not seg:
        raise InvalidInput.field(loc, "empty polygon list")
    for i, ring in enumerate(seg):
        if not isinstance(ring, list) or len(ring) < 6 or len(ring) % 2:
            raise InvalidInput.field(f"{loc}[{i}]", "not a polygon of three or more points")
        try:
            total: float = sum(ring)  # TypeError for what is not a number; inf or NaN if any is
        except TypeError:
            total = math.nan
        if not math.isfinite(total):
            raise InvalidInput.field(f"{loc}[{i}]", "coordinates must be finite numbers")
        xs, ys = ring[0::2], ring[1::2]
        if min(xs) < 0 or max(xs) > width or min(ys) < 0 or max(ys) > height:
            raise InvalidInput.field(f"{loc}[{i}]", "polygon leaves the image")


def _polygons_counts(polygons: list[tuple[list[Any], int, int]]) -> list[str]:
    """Compressed counts of polygon masks, rasterized and merged by pycocotools; the
    rings of all polygons of one image size go to pycocotools in one call."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, (_, height, width) in enumerate(polygons):
        by_size.setdefault((height, width), []).append(i)
    out: list[str] = [""] * len(polygons)
    for (height, width), members in by_size.items():
        rings = [ring for i in members for ring in polygons[i][0]]
        rles = coco_mask.frPyObjects(rings, height, width)
        pos = 0
        for i in members:
            parts = rles[pos : pos + len(polygons[i][0])]
            pos += len(parts)
            while len(parts) > 1:  # pycocotools fails on more than 255 RLEs at once
                parts = [coco_mask.merge(parts[k : k + 255]) for k in range(0, len(parts), 255)]
            counts = parts[0]["counts"]
            out[i] = counts.decode("ascii") if isinstance(counts, bytes) else str(counts)
    return out


def _uncompressed_counts(counts: list[Any], loc: str) -> str:
    """An uncompressed RLE's run lengths as a compressed string (rleToString)."""
    if not counts or not all(type(c) is int and 0 <= c < 2**32 for c in counts):
        raise InvalidInput.field(loc, "run lengths must be integers from 0 to 2**32 - 1")
    out = []
    for i, run in enumerate(counts):
        value = run - counts[i - 2] if i > 2 else run
        more = True
        while more:
            chunk = value & _PAYLOAD
            value >>= 5
            more = value != -1 if chunk & _SIGN else value != 0
            out.append(chr(48 + (chunk | _MORE if more else chunk)))
    return "".join(out)


def mask_stats_many(items: list[MaskItem]) -> list[tuple[int, Bbox]]:
    """Area and COCO ``[x, y, w, h]`` box of each segmentation on its image.

    Equal to what ``ledger.masks.validate_segmentation`` computes for every valid
    mask; raises InvalidInput, at the item's ``loc``, for what cannot be a mask of its
    image."""
    if not items:
        return []
    strings: list[str] = []
    locs: list[str] = []
    polygons: list[tuple[list[Any], int, int]] = []
    polygon_at: list[int] = []
    for seg, height, width, loc in items:
        if isinstance(seg, dict):
            if seg.get("size") != [height, width] or set(seg) != {"size", "counts"}:
                raise InvalidInput.field(loc, f"not an RLE of a {height}x{width} image")
            counts = seg["counts"]
            if isinstance(counts, str):
                strings.append(counts)
            elif isinstance(counts, list):
                strings.append(_uncompressed_counts(counts, f"{loc}.counts"))
            else:
                raise InvalidInput.field(f"{loc}.counts", "not a compressed string or run lengths")
            locs.append(f"{loc}.counts")
        elif isinstance(seg, list):
            _check_polygon(seg, height, width, loc)
            polygon_at.append(len(strings))
            polygons.append((seg, height, width))
            strings.append("")
            locs.append(loc)
        else:
            raise InvalidInput.field(loc, "expected an RLE object or a list of polygons")
    for i, counts in zip(polygon_at, _polygons_counts(polygons), strict=True):
        strings[i] = counts
    heights = np.array([item[1] for item in items], dtype=np.int64)
    widths = np.array([item[2] for item in items], dtype=np.int64)
    return _stats_many(_decode_many(strings, locs), heights, widths, locs)


def mask_stats(seg: Any, height: int, width: int, loc: str = "segmentation") -> tuple[int, Bbox]:
    """Area and COCO box of one segmentation (see :func:`mask_stats_many`)."""
    return mask_stats_many([(seg, height, width, loc)])[0]


def runs_of_counts(counts: str, loc: str = "counts") -> list[int]:
    """Run lengths of one compressed counts string."""
    return [int(v) for v in _decode_many([counts], [loc]).runs]
