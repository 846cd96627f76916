"""Pure functions over COCO segmentations: validation, RLE conversion and batch mask math.

A segmentation is either a COCO RLE ``{"size": [h, w], "counts": ...}`` (``counts`` a
compressed string, or a list of run lengths for uncompressed RLE) or a list of polygon
rings ``[[x1, y1, x2, y2, ...], ...]``. The ledger stores what was submitted; everything
computed here works on the canonical compressed RLE of the mask, so two spellings of the
same pixels give the same numbers.

pycocotools does not validate its input: a malformed compressed string makes it read
past the buffer or return garbage. Every string is therefore decoded and checked here
first (vectorised with numpy; a pure-Python decoder words the refusal when the fast
path finds a problem), and pycocotools only ever sees strings that are byte for byte
what this module would write itself. Area and bounding box come from the run lengths
(the box of a validated mask from pycocotools' toBbox of its canonical RLE, which gives
the same numbers), without a bitmap.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypedDict, TypeGuard, TypeVar

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
#: pycocotools reads a counts value of more than 30 bits wrongly (its shift overflows a
#: 32-bit int); below this many pixels every value of a canonical string fits in 30.
_COCO_BOX_MAX_PIXELS = 2**29 - 1

#: run lengths (or the values of a counts string) as 64-bit integers
Runs = npt.NDArray[np.int64]


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


def _decode_counts_reference(counts: str, loc: str, pixels: int | None = None) -> list[int]:
    """Run lengths of a compressed string; refuse anything pycocotools could misread.

    With ``pixels`` given, also refuse values longer than such an image needs, more
    runs than pixels + 1 and runs summing past ``pixels`` (the caller checks the exact
    total).

    One character at a time in pure Python: this is the specification the vectorised
    :func:`_decode_fast` is tested against, and the decoder that words the refusal
    once the fast path has found something wrong."""
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


# The vectorised decoder reads each character through a byte table: the group's
# payload as it contributes to its value. A value's last group carries the sign, so its
# payload is read as a signed 5-bit number (-16..15); the groups below it are unsigned
# (0..31). Shifting each group left by 5 bits per group below it in the same value and
# adding them up gives the value, sign extension included.
_VALID = bytes(range(_ZERO, _ZERO + 64))
_CODE_BYTES = bytes(
    ((c & _PAYLOAD) - (c & _SIGN) * 2 * (not c & _MORE)) % 256 if 0 <= c < 64 else 0
    for c in range(-_ZERO, 256 - _ZERO)
)
#: characters below this one end a value (no continuation bit)
_LAST_BELOW = _ZERO + _MORE
#: 1 for a character that ends a value, 0 for one that does not
_LAST_BYTES = bytes(1 if _ZERO <= c < _LAST_BELOW else 0 for c in range(256))
# pycocotools writes each value in the fewest groups. A longer spelling has a last group
# that only repeats the sign of the group below it: '0' (0) after a continuation
# character of payload 0..15 ('P'..'_'), or 'O' (-1) after one of payload 16..31
# ('`'..'o'). This table maps those to "a0" and "bO" and every other character to "x".
_PAIR_BYTES = bytes(
    ord("a")
    if _ZERO + _MORE <= c < _ZERO + _MORE + _SIGN
    else ord("b")
    if _ZERO + _MORE + _SIGN <= c < _ZERO + 64
    else c
    if c in (_ZERO, _ZERO + _PAYLOAD)
    else ord("x")
    for c in range(256)
)
#: a value v needs k + 1 groups when it is at least _WIDER[k - 1] and below _WIDER[k]
#: (for negative values, compare ~v = -v - 1): 5k + 4 bits plus the sign
_WIDER = np.array([1 << (5 * k + 4) for k in range(12)], dtype=np.int64)
#: the shift of each group of a value: 0, 5, 10, ...
_SHIFTS = np.arange(13, dtype=np.int64) * 5
#: 5, 10, 15, ...: 5 * (position + 1) for strings of up to 64K characters
_FIVES = np.arange(5, 5 * 2**16 + 1, 5, dtype=np.int64)
_FIVES.flags.writeable = False
#: above this many characters 64-bit sums in the fast path could wrap; the reference
#: decoder (Python integers) takes such strings
_FAST_MAX_CHARS = 1 << 27


def _has_long_spelling(data: bytes) -> bool:
    """Whether some value is written in more groups than pycocotools would use."""
    pairs = data.translate(_PAIR_BYTES)
    return b"a0" in pairs or b"bO" in pairs


def _decode_fast(counts: str, pixels: int | None) -> tuple[Runs, bool] | None:
    """Run lengths of a compressed string and whether the string is the canonical one
    (exactly what :func:`_encode_counts` writes for the canonical runs), or ``None`` if
    :func:`_decode_counts_reference` would refuse the string (or might: the caller
    lets it decide).

    The checks are the reference decoder's: characters '0'..'o' only, no value cut off
    at the end, none longer than ``pixels`` needs, no negative run and, with ``pixels``,
    at most pixels + 1 runs, each at most ``pixels`` (the caller checks their total).
    The 64-bit sums are exact: a value has at most 35 bits, and until a run leaves
    [0, pixels] (which refuses the string) no sum can come near 2**63 for a string
    this short."""
    if not isinstance(counts, str) or len(counts) > _FAST_MAX_CHARS or not counts.isascii():
        return None
    if not counts:
        return np.zeros(0, dtype=np.int64), True
    data = counts.encode("ascii")
    if data.translate(None, _VALID) or data[-1] >= _LAST_BELOW:
        return None  # a character outside '0'..'o', or the last value is cut off
    size = len(data)
    flags = data.translate(_LAST_BYTES)
    count = flags.count(1)  # number of values
    codes = np.frombuffer(data.translate(_CODE_BYTES), dtype=np.int8)
    # one spare slot, so that the values after the first make whole pairs (see below)
    buffer = np.empty(count + 1 - count % 2, dtype=np.int64)
    buffer[count:] = 0
    runs = buffer[:count]
    if count == size:
        runs[:] = codes  # every value is a single group
    else:
        max_chunks = _chunks_per_value(MAX_PIXELS if pixels is None else pixels)
        if bytes(max_chunks) in flags:
            return None  # a value longer than the mask needs
        last = np.frombuffer(flags, dtype=np.bool_)
        # shift of each group = 5 * its index in its value = 5 * (its position - the
        # position after the latest value end before it)
        fives = _FIVES[:size] if size <= len(_FIVES) else np.arange(5, 5 * size + 1, 5)
        after = np.maximum.accumulate(fives * last)
        shifts = np.empty(size, dtype=np.int64)
        shifts[0] = 0
        np.subtract(fives[:-1], after[:-1], out=shifts[1:])
        # each value is the difference of the running sum at its end and at the end
        # of the value before it
        sums = np.add.accumulate(codes << shifts)[last]
        runs[0] = sums[0]
        np.subtract(sums[1:], sums[:-1], out=runs[1:])
    # Run i > 2 is value i plus run i - 2: running sums along the odd runs and along the
    # even runs from index 2, both at once down the columns of the pairs (2k+1, 2k+2).
    pairs = buffer[1:].reshape(-1, 2)
    np.add.accumulate(pairs, axis=0, out=pairs)
    # The usual case, decided in one pass: with the first run in [0, pixels], every
    # later run in [1, pixels] (run - 1, read as unsigned, below pixels) means no
    # negative run, none above pixels and no empty one, as the checks below find.
    if (
        pixels is not None
        and 2 <= count <= pixels + 1
        and 0 <= int(runs[0]) <= pixels
        and np.maximum.reduce((runs[1:] - 1).view(np.uint64)) < pixels
    ):
        return runs, count == size or not _has_long_spelling(data)
    # Refuse negative runs and, with pixels, more than pixels + 1 runs or a run above
    # pixels. Runs after the first that are all positive are also what a canonical
    # string has.
    positive = count < 2 or np.minimum.reduce(runs[1:]) > 0
    if runs[0] < 0 or (not positive and np.minimum.reduce(runs) < 0):
        return None
    if pixels is not None and (count > pixels + 1 or np.maximum.reduce(runs) > pixels):
        return None
    # canonical: no empty run after the first, and every value in the fewest groups
    # (a longer spelling needs a continuation character)
    return runs, bool(positive) and (count == size or not _has_long_spelling(data))


def _decode_counts(counts: str, loc: str, pixels: int) -> tuple[Runs, int, bool]:
    """Run lengths of a compressed string for a mask of ``pixels`` pixels, their total
    and whether the string is canonical. Refuses anything pycocotools could misread
    with the reference decoder's message; the caller checks the total is ``pixels``."""
    fast = _decode_fast(counts, pixels)
    if fast is not None:
        runs, canonical = fast
        total = int(np.add.reduce(runs))  # exact: every run is within [0, pixels]
        if total <= pixels:
            return runs, total, canonical
    reference = _decode_counts_reference(counts, loc, pixels)  # words the refusal
    return np.array(reference, dtype=np.int64), sum(reference), False


def _extra_groups(values: Runs) -> npt.NDArray[np.intp]:
    """Groups beyond the first that pycocotools' writer spends on each value (the
    fewest that hold it)."""
    magnitude = values ^ (values >> 63)  # v for v >= 0, ~v = -v - 1 for v < 0
    return np.searchsorted(_WIDER, magnitude, side="right")


def _encode_counts(runs: Runs) -> str:
    """The compressed string of ``runs``, exactly as pycocotools' rleToString writes it."""
    if not len(runs):
        return ""
    values = runs.copy()
    values[3:] -= runs[1:-2]  # run i > 2 as the difference from run i - 2
    groups = _extra_groups(values) + 1
    ends = np.cumsum(groups)
    total = int(ends[-1])
    first = ends - groups
    place = np.arange(total, dtype=np.int64) - np.repeat(first, groups)
    chunks = (np.repeat(values, groups) >> _SHIFTS[place]) & _PAYLOAD
    chunks += _ZERO + _MORE
    chunks[ends - 1] -= _MORE  # the last group of each value has no continuation bit
    return chunks.astype(np.uint8).tobytes().decode("ascii")


def _canonical_runs(runs: Runs) -> Runs:
    """Drop zero-length runs after the first, joining their neighbours, as
    pycocotools' encoder would have written the same pixels."""
    if len(runs) < 2 or runs[1:].all():
        return runs
    keep = runs != 0
    keep[0] = True
    index = np.flatnonzero(keep)
    # the kept runs, with neighbours of the same colour (index parity) added together
    colour = index & 1
    first = np.flatnonzero(np.concatenate(([True], colour[1:] != colour[:-1])))
    return np.add.reduceat(runs[index], first)


def _rle(height: int, width: int, runs: Runs, canonical: str | None = None) -> RLE:
    """``canonical``, when given, is the counts string already known to be canonical."""
    counts = _encode_counts(_canonical_runs(runs)) if canonical is None else canonical
    return {"size": [height, width], "counts": counts}


def _area(runs: Runs) -> int:
    return int(np.add.reduce(runs[1::2]))


def _bbox(runs: Runs, height: int) -> tuple[float, float, float, float]:
    """COCO ``x, y, w, h`` of the set pixels, as pycocotools' toBbox gives it for the
    canonical RLE; all zeros for an empty mask.

    Runs are column-major and the odd ones are set. A set run from pixel s to e - 1
    covers columns s // h to (e - 1) // h; when it spans more than one column it covers
    the last row of one and the first row of the next, so every row; otherwise the rows
    s % h to (e - 1) % h."""
    lengths = runs[1::2]
    if not len(lengths):
        return (0.0, 0.0, 0.0, 0.0)
    ends = np.add.accumulate(runs)
    starts, stops = ends[0 : 2 * len(lengths) : 2], ends[1::2]
    if np.minimum.reduce(lengths) == 0:  # empty set runs (not canonical) add no pixel
        keep = lengths > 0
        lengths, starts, stops = lengths[keep], starts[keep], stops[keep]
        if not len(lengths):
            return (0.0, 0.0, 0.0, 0.0)
    left = int(starts[0]) // height
    right = (int(stops[-1]) - 1) // height
    rows = np.fmod(starts, height)
    below = int(np.maximum.reduce(rows + lengths))  # one past the lowest row, if no wrap
    top, bottom = (0, height - 1) if below > height else (int(np.minimum.reduce(rows)), below - 1)
    return (float(left), float(top), float(right - left + 1), float(bottom - top + 1))


# --- parsing ------------------------------------------------------------------------------


class _Parsed(NamedTuple):
    """A validated mask: its size, its runs and, when the submitted counts string is
    already canonical, that string (so it need not be written again)."""

    height: int
    width: int
    runs: Runs
    canonical: str | None

    def rle(self) -> RLE:
        return _rle(self.height, self.width, self.runs, self.canonical)


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
    if not _two_ints(size):
        raise InvalidInput.field(
            f"{loc}.size", f"expected [height, width] as two integers, got {size!r}"
        )
    height, width = size
    _check_pixels(height, width, f"{loc}.size")
    return height, width


def _two_ints(size: object) -> TypeGuard[list[int] | tuple[int, ...]]:
    if type(size) is list and len(size) == 2:
        first, second = size
        if type(first) is int and type(second) is int:  # the usual case, decided here
            return True
    return isinstance(size, list | tuple) and len(size) == 2 and all(map(_is_int, size))


_INT_ONLY = frozenset({int})
_NUMBER_TYPES = frozenset({int, float})


def _compressed_runs(counts: str, pixels: int, loc: str) -> tuple[Runs, str | None]:
    limit = (pixels + 1) * _chunks_per_value(pixels)
    if len(counts) > limit:
        message = f"{len(counts)} characters, more than {pixels} pixels can need ({limit})"
        raise InvalidInput.field(loc, message)
    runs, total, canonical = _decode_counts(counts, loc, pixels)
    if total != pixels:
        raise InvalidInput.field(loc, f"runs add up to {total} pixels, expected {pixels}")
    return runs, counts if canonical else None


def _plain_runs(counts: list[object], pixels: int) -> Runs | None:
    """``counts`` as an array if it holds only plain ints within [0, pixels] (and is not
    so long that their sum could leave 64 bits), else ``None``."""
    if len(counts) >= 2**31 or not set(map(type, counts)) <= _INT_ONLY:
        return None
    try:
        runs = np.array(counts, dtype=np.int64)
    except OverflowError:
        return None
    if len(runs) and (np.minimum.reduce(runs) < 0 or np.maximum.reduce(runs) > pixels):
        return None
    return runs


def _listed_runs(counts: list[Any], pixels: int, loc: str) -> Runs:
    if len(counts) > pixels + 1:
        raise InvalidInput.field(
            loc, f"{len(counts)} runs, more than a mask of {pixels} pixels can have"
        )
    runs = _plain_runs(counts, pixels)
    if runs is not None:
        total = int(np.add.reduce(runs))
    else:  # one run at a time, to name the first bad one
        for i, run in enumerate(counts):
            if not _is_int(run) or run < 0:
                raise InvalidInput.field(
                    f"{loc}[{i}]", f"expected a non-negative integer, got {run!r}"
                )
        total = sum(counts)
    if total != pixels:
        raise InvalidInput.field(loc, f"runs add up to {total} pixels, expected {pixels}")
    # every run is at most the total, so within 32 bits
    return np.array(counts, dtype=np.int64) if runs is None else runs


def _parse_runs(rle: Mapping[str, object], pixels: int, loc: str) -> tuple[Runs, str | None]:
    """Validated run lengths of an RLE's ``counts`` (compressed or uncompressed), and
    the counts string itself if it is already the canonical one."""
    for key in rle:
        if key not in ("size", "counts"):
            raise InvalidInput.field(f"{loc}.{key}", "unexpected field in RLE")
    if "counts" not in rle:
        raise InvalidInput.field(f"{loc}.counts", "missing")
    counts = rle["counts"]
    loc = f"{loc}.counts"
    if isinstance(counts, str):
        return _compressed_runs(counts, pixels, loc)
    if isinstance(counts, list):
        return _listed_runs(counts, pixels, loc), None
    raise InvalidInput.field(
        loc, f"expected a compressed string or a list of run lengths, got {_type_name(counts)}"
    )


def _ring(ring: list[object], height: int, width: int) -> npt.NDArray[np.float64] | None:
    """The coordinates of a ring if all are plain ints or floats inside the image (which
    makes them finite), else ``None``: the caller then names the first bad one."""
    if not set(map(type, ring)) <= _NUMBER_TYPES:
        return None
    try:
        coords = np.array(ring, dtype=np.float64)
    except OverflowError:  # an int beyond float range, so outside the image
        return None
    # nan propagates through min and max and fails every comparison
    if np.minimum.reduce(coords) >= 0:
        right, bottom = np.maximum.reduce(coords.reshape(-1, 2), axis=0)
        if right <= width and bottom <= height:
            return coords
    return None


def _parse_polygons(
    seg: list[object], height: int, width: int, loc: str
) -> tuple[Runs, str | None]:
    if not seg:
        raise InvalidInput.field(loc, "empty polygon list")
    rings: list[npt.NDArray[np.float64]] = []
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
        coords = _ring(ring, height, width)
        if coords is None:
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
            coords = np.array([float(v) for v in ring], dtype=np.float64)
        rings.append(coords)
    # Every ring has six or more numbers, so frPyObjects reads them as polygons, not boxes.
    return _merged_runs(coco_mask.frPyObjects(rings, height, width), intersect=False)


def _parse(
    seg: object, height: int, width: int, loc: str
) -> tuple[Literal["rle", "polygon"], Runs, str | None]:
    """Validate ``seg`` against the registered image size; return its kind, its runs and
    its canonical counts string when that is at hand without encoding."""
    pixels = _check_pixels(height, width, loc)
    if type(seg) is dict or isinstance(seg, Mapping):  # a dict skips the ABC check
        size = _parse_size(seg, loc)
        if size != (height, width):
            raise InvalidInput.field(
                f"{loc}.size",
                f"size {list(size)} does not match the registered image {height}x{width} "
                "(height x width)",
            )
        return "rle", *_parse_runs(seg, pixels, loc)
    if isinstance(seg, list):
        return "polygon", *_parse_polygons(seg, height, width, loc)
    expected = "an RLE object {size, counts} or a list of polygons"
    raise InvalidInput.field(loc, f"expected {expected}, got {_type_name(seg)}")


def _checked(rles: Sequence[Mapping[str, object]], loc: str) -> list[_Parsed]:
    """Validate RLEs that carry their own size (batch inputs)."""
    out: list[_Parsed] = []
    for i, rle in enumerate(rles):
        item_loc = f"{loc}[{i}]"
        if not isinstance(rle, Mapping):
            raise InvalidInput.field(item_loc, f"expected an RLE object, got {_type_name(rle)}")
        height, width = _parse_size(rle, item_loc)
        out.append(_Parsed(height, width, *_parse_runs(rle, height * width, item_loc)))
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
    kind, runs, canonical = _parse(seg, height, width, loc)
    area = _area(runs)
    if area == 0:
        raise InvalidInput.field(loc, "mask is empty (area 0)")
    rle = _rle(height, width, runs, canonical)
    if height * width > _COCO_BOX_MAX_PIXELS:
        return MaskInfo(kind, area, _bbox(runs, height), rle)
    # pycocotools' C code gives the box of a canonical RLE that _bbox computes from the
    # runs (tests check both against each other), in fewer steps.
    left, top, box_width, box_height = coco_mask.toBbox(rle).tolist()
    return MaskInfo(kind, area, (left, top, box_width, box_height), rle)


def to_rle(seg: object, height: int, width: int) -> RLE:
    """The canonical compressed RLE of any accepted segmentation (empty masks allowed)."""
    _, runs, canonical = _parse(seg, height, width, "segmentation")
    return _rle(height, width, runs, canonical)


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


def _areas(checked: list[_Parsed]) -> npt.NDArray[np.int64]:
    return np.array([_area(item.runs) for item in checked], dtype=np.int64)


def bboxes(rles: Sequence[Mapping[str, object]]) -> npt.NDArray[np.float64]:
    """COCO ``x, y, w, h`` box of each RLE, shape (N, 4)."""
    checked = _checked(rles, "rles")
    out = np.zeros((len(checked), 4), dtype=np.float64)
    for i, item in enumerate(checked):
        out[i] = _bbox(item.runs, item.height)
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
    checked_a, checked_b = _checked(a, "a"), _checked(b, "b")
    return _iou([item.rle() for item in checked_a], [item.rle() for item in checked_b])


def intersection_over_smaller(
    a: Sequence[Mapping[str, object]], b: Sequence[Mapping[str, object]]
) -> npt.NDArray[np.float64]:
    """|A ∩ B| / min(|A|, |B|) for every pair; 0 where either mask is empty.

    Derived from IoU and the areas without decoding bitmaps:
    IoU = I / (|A| + |B| - I)  gives  I = IoU (|A| + |B|) / (1 + IoU)."""
    checked_a, checked_b = _checked(a, "a"), _checked(b, "b")
    iou = _iou([item.rle() for item in checked_a], [item.rle() for item in checked_b])
    area_a = _areas(checked_a).astype(np.float64)[:, np.newaxis]
    area_b = _areas(checked_b).astype(np.float64)[np.newaxis, :]
    inter = np.rint(iou * (area_a + area_b) / (1.0 + iou))
    smaller = np.minimum(area_a, area_b)
    out = np.zeros_like(iou)
    np.divide(inter, smaller, out=out, where=smaller > 0)
    return out


def _merged_runs(rles: Sequence[Mapping[str, object]], intersect: bool) -> tuple[Runs, str | None]:
    """Runs of the pycocotools merge, in chunks (union and intersection are associative),
    and its counts string if that is canonical."""
    parts = [coco_mask.merge(chunk, intersect=intersect) for _, chunk in _chunked(rles)]
    while len(parts) > 1:
        parts = [coco_mask.merge(chunk, intersect=intersect) for _, chunk in _chunked(parts)]
    counts, (height, width) = parts[0]["counts"], parts[0]["size"]
    assert isinstance(counts, bytes)
    text = counts.decode("ascii")
    runs, _, canonical = _decode_counts(text, "counts", height * width)
    return runs, text if canonical else None


def merge(rles: Sequence[Mapping[str, object]], intersect: bool = False) -> RLE:
    """Union (or intersection) of RLEs of the same size."""
    checked = [item.rle() for item in _checked(rles, "rles")]
    if not checked:
        raise InvalidInput.field("rles", "nothing to merge")
    _same_size(checked, [f"rles[{i}]" for i in range(len(checked))])
    height, width = checked[0]["size"]
    return _rle(height, width, *_merged_runs(checked, intersect))


def rle_run_count(counts: str) -> int:
    """Number of runs in a compressed counts string."""
    fast = _decode_fast(counts, None)
    if fast is not None:
        return len(fast[0])
    return len(_decode_counts_reference(counts, "counts"))


def polygon_vertex_count(seg: Sequence[Sequence[float]]) -> int:
    """Number of vertices over all rings of a polygon segmentation."""
    return sum(len(ring) // 2 for ring in seg)
