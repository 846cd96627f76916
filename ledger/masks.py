"""Pure functions over COCO segmentations: validation, RLE conversion and batch mask math.

A segmentation is either a COCO RLE ``{"size": [h, w], "counts": ...}`` (``counts`` a
compressed string, or a list of run lengths for uncompressed RLE) or a list of polygon
rings ``[[x1, y1, x2, y2, ...], ...]``. The ledger stores what was submitted; everything
computed here works on the canonical compressed RLE of the mask, so two spellings of the
same pixels give the same numbers.

pycocotools does not validate its input: a malformed compressed string makes it read
past the buffer or return garbage. Every string is therefore decoded and checked in pure
Python first, and pycocotools only ever sees strings this module wrote itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypedDict, TypeVar

import numpy as np
import numpy.typing as npt
from pycocotools import mask as coco_mask

from ledger.errors import InvalidInput

__all__ = [
    "RLE",
    "MaskInfo",
    "areas",
    "bboxes",
    "decode",
    "encode",
    "intersection_over_smaller",
    "iou_matrix",
    "merge",
    "polygon_vertex_count",
    "rle_run_count",
    "to_rle",
    "validate_segmentation",
]

#: pycocotools 2.0.11 fails on lists of more than 255 RLEs ("out of bounds for uint8").
CHUNK = 255
#: pycocotools keeps run lengths in 32-bit unsigned integers.
MAX_PIXELS = 2**32 - 1


class RLE(TypedDict):
    """Compressed COCO RLE with ``counts`` as an ASCII string."""

    size: list[int]
    counts: str


@dataclass(frozen=True)
class MaskInfo:
    """What validation learned about a segmentation. ``bbox`` is COCO ``x, y, w, h`` of
    the mask's pixels; ``rle`` is the canonical compressed RLE of the mask."""

    kind: Literal["rle", "polygon"]
    area: int
    bbox: tuple[float, float, float, float]
    rle: RLE = field(hash=False)


# --- the compressed counts format --------------------------------------------------------
#
# pycocotools (maskApi.c, rleToString / rleFrString) writes the run lengths of a
# column-major bitmap as a string. Runs alternate 0s and 1s and start with 0s (a mask
# starting with a 1 has a first run of 0). Each run i > 2 is stored as the difference
# from run i - 2, which is small for smooth shapes. Each (possibly negative) value is a
# little-endian sequence of 5-bit groups, one character per group:
#
#   character = chr(48 + chunk), chunk in 0..63, so characters run from '0' to 'o'
#   chunk & 0x1f   five payload bits, least significant group first
#   chunk & 0x20   continuation: another group of the same value follows
#   chunk & 0x10   in the last group only: the value is negative (sign-extend)
#
# The reader in pycocotools stops at the terminating NUL, so a string that ends inside a
# value makes it read garbage; it also never checks that runs are non-negative or that
# they add up to h * w.

_ZERO = 48
_PAYLOAD = 0x1F
_MORE = 0x20
_SIGN = 0x10


def _chunks_per_value(pixels: int) -> int:
    """Groups needed for any value in [-pixels, pixels], sign bit included."""
    return (pixels.bit_length() + 1 + 4) // 5


def _decode_counts(counts: str, loc: str, pixels: int | None = None) -> list[int]:
    """Run lengths of a compressed string; refuse anything pycocotools could misread.

    With ``pixels`` given, also refuse values longer than such an image needs, more
    runs than pixels + 1 and runs summing past ``pixels`` (the caller checks the exact
    total)."""
    max_chunks = _chunks_per_value(MAX_PIXELS if pixels is None else pixels)
    runs: list[int] = []
    total = 0
    value = shift = start = 0
    for pos, char in enumerate(counts):
        chunk = ord(char) - _ZERO
        if not 0 <= chunk < 64:
            raise InvalidInput.field(
                loc, f"invalid character {char!r} at position {pos} (allowed: '0' to 'o')"
            )
        value |= (chunk & _PAYLOAD) << shift
        shift += 5
        if chunk & _MORE:
            if shift // 5 >= max_chunks:
                raise InvalidInput.field(
                    loc, f"value starting at position {start} is too long for this mask"
                )
            continue
        if chunk & _SIGN:
            value -= 1 << shift  # sign-extend: set every bit above the last group
        if len(runs) > 2:
            value += runs[-2]  # delta from run i - 2
        if value < 0:
            raise InvalidInput.field(loc, f"negative run length {value} at position {start}")
        total += value
        if pixels is not None and total > pixels:
            raise InvalidInput.field(
                loc, f"runs add up to more than the {pixels} pixels of the mask"
            )
        if pixels is not None and len(runs) > pixels:
            raise InvalidInput.field(loc, f"more runs than a mask of {pixels} pixels can have")
        runs.append(value)
        value = shift = 0
        start = pos + 1
    if shift:
        raise InvalidInput.field(loc, f"truncated value at position {start}")
    return runs


def _encode_counts(runs: Sequence[int]) -> str:
    """The compressed string of ``runs``, exactly as pycocotools' rleToString writes it."""
    out: list[str] = []
    for i, run in enumerate(runs):
        value = run - runs[i - 2] if i > 2 else run
        more = True
        while more:
            chunk = value & _PAYLOAD
            value >>= 5
            # stop once the rest is pure sign: 0 for positive, -1 for negative values
            more = value != -1 if chunk & _SIGN else value != 0
            if more:
                chunk |= _MORE
            out.append(chr(chunk + _ZERO))
    return "".join(out)


def _canonical_runs(runs: Sequence[int]) -> list[int]:
    """Drop zero-length runs after the first, joining their neighbours, as
    pycocotools' encoder would have written the same pixels."""
    out = list(runs[:1])
    i = 1
    while i < len(runs):
        if runs[i] == 0:
            if i + 1 < len(runs):
                out[-1] += runs[i + 1]
            i += 2
        else:
            out.append(runs[i])
            i += 1
    return out


def _rle(height: int, width: int, runs: Sequence[int]) -> RLE:
    return {"size": [height, width], "counts": _encode_counts(_canonical_runs(runs))}


# --- parsing ------------------------------------------------------------------------------


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_pixels(height: int, width: int, loc: str) -> int:
    pixels = height * width
    if height < 0 or width < 0 or pixels > MAX_PIXELS:
        raise InvalidInput.field(loc, f"{height}x{width} is not a size COCO RLE can hold")
    return pixels


def _parse_size(rle: Mapping[str, object], loc: str) -> tuple[int, int]:
    if "size" not in rle:
        raise InvalidInput.field(f"{loc}.size", "missing")
    size = rle["size"]
    if not isinstance(size, list | tuple) or len(size) != 2 or not all(map(_is_int, size)):
        raise InvalidInput.field(
            f"{loc}.size", f"expected [height, width] as two integers, got {size!r}"
        )
    height, width = size
    _check_pixels(height, width, f"{loc}.size")
    return height, width


def _parse_runs(rle: Mapping[str, object], pixels: int, loc: str) -> list[int]:
    """Validated run lengths of an RLE's ``counts`` (compressed or uncompressed)."""
    for key in rle:
        if key not in ("size", "counts"):
            raise InvalidInput.field(f"{loc}.{key}", "unexpected field in RLE")
    if "counts" not in rle:
        raise InvalidInput.field(f"{loc}.counts", "missing")
    counts = rle["counts"]
    loc = f"{loc}.counts"
    if isinstance(counts, str):
        limit = (pixels + 1) * _chunks_per_value(pixels)
        if len(counts) > limit:
            message = f"{len(counts)} characters, more than {pixels} pixels can need ({limit})"
            raise InvalidInput.field(loc, message)
        runs = _decode_counts(counts, loc, pixels)
    elif isinstance(counts, list):
        if len(counts) > pixels + 1:
            raise InvalidInput.field(
                loc, f"{len(counts)} runs, more than a mask of {pixels} pixels can have"
            )
        for i, run in enumerate(counts):
            if not _is_int(run) or run < 0:
                raise InvalidInput.field(
                    f"{loc}[{i}]", f"expected a non-negative integer, got {run!r}"
                )
        runs = counts
    else:
        raise InvalidInput.field(
            loc, f"expected a compressed string or a list of run lengths, got {_type_name(counts)}"
        )
    total = sum(runs)
    if total != pixels:
        raise InvalidInput.field(loc, f"runs add up to {total} pixels, expected {pixels}")
    return runs


def _parse_polygons(seg: list[object], height: int, width: int, loc: str) -> list[int]:
    if not seg:
        raise InvalidInput.field(loc, "empty polygon list")
    rings: list[list[float]] = []
    for i, ring in enumerate(seg):
        ring_loc = f"{loc}[{i}]"
        if not isinstance(ring, list):
            raise InvalidInput.field(
                ring_loc, f"expected a list of x, y coordinates, got {_type_name(ring)}"
            )
        if len(ring) % 2:
            raise InvalidInput.field(
                ring_loc, f"odd number of coordinates ({len(ring)}), expected x, y pairs"
            )
        if len(ring) < 6:
            raise InvalidInput.field(
                ring_loc, f"{len(ring)} coordinates, a polygon needs at least 3 points (6)"
            )
        for j, value in enumerate(ring):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInput.field(
                    f"{ring_loc}[{j}]", f"expected a number, got {_type_name(value)}"
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidInput.field(
                    f"{ring_loc}[{j}]", f"expected a finite number, got {value}"
                )
            axis, limit, name = ("y", height, "height") if j % 2 else ("x", width, "width")
            if not 0 <= value <= limit:
                raise InvalidInput.field(
                    f"{ring_loc}[{j}]",
                    f"{axis} = {value} is outside [0, {limit}] (image {name})",
                )
        rings.append([float(v) for v in ring])
    # Every ring has six or more numbers, so frPyObjects reads them as polygons, not boxes.
    return _merged_runs(coco_mask.frPyObjects(rings, height, width), intersect=False)


def _parse(
    seg: object, height: int, width: int, loc: str
) -> tuple[Literal["rle", "polygon"], list[int]]:
    """Validate ``seg`` against the registered image size; return its kind and runs."""
    pixels = _check_pixels(height, width, loc)
    if isinstance(seg, Mapping):
        size = _parse_size(seg, loc)
        if size != (height, width):
            raise InvalidInput.field(
                f"{loc}.size",
                f"size {list(size)} does not match the registered image {height}x{width} "
                "(height x width)",
            )
        return "rle", _parse_runs(seg, pixels, loc)
    if isinstance(seg, list):
        return "polygon", _parse_polygons(seg, height, width, loc)
    expected = "an RLE object {size, counts} or a list of polygons"
    raise InvalidInput.field(loc, f"expected {expected}, got {_type_name(seg)}")


def _checked(rles: Sequence[Mapping[str, object]], loc: str) -> list[RLE]:
    """Validate RLEs that carry their own size (batch inputs)."""
    out: list[RLE] = []
    for i, rle in enumerate(rles):
        item_loc = f"{loc}[{i}]"
        if not isinstance(rle, Mapping):
            raise InvalidInput.field(item_loc, f"expected an RLE object, got {_type_name(rle)}")
        height, width = _parse_size(rle, item_loc)
        out.append(_rle(height, width, _parse_runs(rle, height * width, item_loc)))
    return out


def _same_size(rles: Sequence[RLE], locs: Sequence[str]) -> None:
    if not rles:
        return
    first = rles[0]["size"]
    for rle, loc in zip(rles, locs, strict=True):
        if rle["size"] != first:
            raise InvalidInput.field(
                f"{loc}.size", f"size {rle['size']} differs from {locs[0]}.size {first}"
            )


# --- public API ---------------------------------------------------------------------------


def validate_segmentation(
    seg: object, height: int, width: int, loc: str = "segmentation"
) -> MaskInfo:
    """Check a submitted segmentation against the registered image; refuse empty masks.

    ``seg`` is not modified. Raises :class:`InvalidInput` naming the field at fault."""
    kind, runs = _parse(seg, height, width, loc)
    area = sum(runs[1::2])
    if area == 0:
        raise InvalidInput.field(loc, "mask is empty (area 0)")
    rle = _rle(height, width, runs)
    x, y, w, h = (float(v) for v in coco_mask.toBbox([rle])[0])
    return MaskInfo(kind, area, (x, y, w, h), rle)


def to_rle(seg: object, height: int, width: int) -> RLE:
    """The canonical compressed RLE of any accepted segmentation (empty masks allowed)."""
    return _rle(height, width, _parse(seg, height, width, "segmentation")[1])


def decode(seg: object, height: int, width: int) -> npt.NDArray[np.uint8]:
    """The H×W uint8 bitmap (0/1) of any accepted segmentation."""
    runs = _parse(seg, height, width, "segmentation")[1]
    values = np.arange(len(runs), dtype=np.uint8) % 2  # runs alternate 0s and 1s
    column_major = np.repeat(values, runs).reshape(width, height)
    return np.ascontiguousarray(column_major.T)


def encode(mask: npt.ArrayLike) -> RLE:
    """Compressed RLE of an H×W bitmap (any non-zero pixel is set)."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise InvalidInput.field("mask", f"expected an H×W array, got shape {array.shape}")
    height, width = array.shape
    _check_pixels(height, width, "mask")
    bitmap = np.asfortranarray((array != 0).astype(np.uint8).reshape(height, width, 1))
    encoded = coco_mask.encode(bitmap)[0]
    return {"size": [height, width], "counts": encoded["counts"].decode("ascii")}


_T = TypeVar("_T")


def _chunked(items: Sequence[_T]) -> Iterator[tuple[int, list[_T]]]:
    for start in range(0, len(items), CHUNK):
        yield start, list(items[start : start + CHUNK])


def areas(rles: Sequence[Mapping[str, object]]) -> npt.NDArray[np.int64]:
    """Pixel count of each RLE."""
    return _areas(_checked(rles, "rles"))


def _areas(checked: list[RLE]) -> npt.NDArray[np.int64]:
    out = np.zeros(len(checked), dtype=np.int64)
    for start, chunk in _chunked(checked):
        out[start : start + len(chunk)] = coco_mask.area(chunk)
    return out


def bboxes(rles: Sequence[Mapping[str, object]]) -> npt.NDArray[np.float64]:
    """COCO ``x, y, w, h`` box of each RLE, shape (N, 4)."""
    checked = _checked(rles, "rles")
    out = np.zeros((len(checked), 4), dtype=np.float64)
    for start, chunk in _chunked(checked):
        out[start : start + len(chunk)] = coco_mask.toBbox(chunk)
    return out


def _iou(a: list[RLE], b: list[RLE]) -> npt.NDArray[np.float64]:
    _same_size(a + b, [f"a[{i}]" for i in range(len(a))] + [f"b[{j}]" for j in range(len(b))])
    out = np.zeros((len(a), len(b)), dtype=np.float64)
    for i, chunk_a in _chunked(a):
        for j, chunk_b in _chunked(b):
            # iscrowd=0: the symmetric IoU (iscrowd=1 divides by the area of `a` only)
            iou = coco_mask.iou(chunk_a, chunk_b, [0] * len(chunk_b))
            out[i : i + len(chunk_a), j : j + len(chunk_b)] = iou
    return out


def iou_matrix(
    a: Sequence[Mapping[str, object]], b: Sequence[Mapping[str, object]]
) -> npt.NDArray[np.float64]:
    """IoU of every mask in ``a`` with every mask in ``b``, shape (len(a), len(b))."""
    return _iou(_checked(a, "a"), _checked(b, "b"))


def intersection_over_smaller(
    a: Sequence[Mapping[str, object]], b: Sequence[Mapping[str, object]]
) -> npt.NDArray[np.float64]:
    """|A ∩ B| / min(|A|, |B|) for every pair; 0 where either mask is empty.

    Derived from IoU and the areas without decoding bitmaps:
    IoU = I / (|A| + |B| - I)  gives  I = IoU (|A| + |B|) / (1 + IoU)."""
    checked_a, checked_b = _checked(a, "a"), _checked(b, "b")
    iou = _iou(checked_a, checked_b)
    area_a = _areas(checked_a).astype(np.float64)[:, np.newaxis]
    area_b = _areas(checked_b).astype(np.float64)[np.newaxis, :]
    inter = np.rint(iou * (area_a + area_b) / (1.0 + iou))
    smaller = np.minimum(area_a, area_b)
    return np.divide(inter, smaller, out=np.zeros_like(iou), where=smaller > 0)


def _merged_runs(rles: Sequence[Mapping[str, object]], intersect: bool) -> list[int]:
    """Runs of the pycocotools merge, in chunks (union and intersection are associative)."""
    parts = [coco_mask.merge(chunk, intersect=intersect) for _, chunk in _chunked(rles)]
    while len(parts) > 1:
        parts = [coco_mask.merge(chunk, intersect=intersect) for _, chunk in _chunked(parts)]
    counts = parts[0]["counts"]
    assert isinstance(counts, bytes)
    return _decode_counts(counts.decode("ascii"), "counts")


def merge(rles: Sequence[Mapping[str, object]], intersect: bool = False) -> RLE:
    """Union (or intersection) of RLEs of the same size."""
    checked = _checked(rles, "rles")
    if not checked:
        raise InvalidInput.field("rles", "nothing to merge")
    _same_size(checked, [f"rles[{i}]" for i in range(len(checked))])
    height, width = checked[0]["size"]
    return _rle(height, width, _merged_runs(checked, intersect))


def rle_run_count(counts: str) -> int:
    """Number of runs in a compressed counts string."""
    return len(_decode_counts(counts, "counts"))


def polygon_vertex_count(seg: Sequence[Sequence[float]]) -> int:
    """Number of vertices over all rings of a polygon segmentation."""
    return sum(len(ring) // 2 for ring in seg)
