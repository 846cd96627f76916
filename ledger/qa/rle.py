"""Shape features of many COCO masks at once, computed on their runs, never on bitmaps.

A compressed COCO RLE lists the run lengths of a column-major bitmap, alternating 0s
and 1s (see ``ledger.masks`` for the string format). :func:`decode_runs` turns many
compressed strings into run lengths in a handful of numpy passes over their
concatenated characters, checking them as strictly as ``ledger.masks`` does, so that
pycocotools later only reads strings that are known to be well formed.

:func:`mask_features` then cuts each run of 1s into *segments*, one per image column
it covers. Everything the QA checks need is a property of those segments:

* area and box: sums and extremes of the segments;
* fragments: the 8-connected components of the mask. Two segments in neighbouring
  columns of the same mask touch when their row ranges overlap or meet diagonally
  (``a.start <= b.end + 1 and b.start <= a.end + 1``); components are the connected
  components of that graph (``scipy.sparse.csgraph``), found for all masks of a batch
  in one call;
* holes: the 4-connected background components that do not reach the outside. The
  background of a column between two of its segments is a *gap*; every other piece of
  background (above the first segment, below the last, whole empty columns, columns
  beyond the box, the image border) reaches the outside. Gaps in neighbouring columns
  connect when their row ranges overlap; a gap component is a hole unless one of its
  gaps touches an outside piece.

The cost is linear in the number of runs, which for a real mask is a few per column of
its box, instead of the height times the width of the image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from scipy.sparse import coo_matrix  # type: ignore[import-untyped]
from scipy.sparse.csgraph import connected_components  # type: ignore[import-untyped]

from ledger.errors import InvalidInput

__all__ = ["MaskFeatures", "Runs", "bitmap", "decode_runs", "mask_features"]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: groups of 5 bits a value may use; 7 groups hold any run of a 2**32-pixel mask
MAX_GROUPS = 7
#: batch sizes of decode_runs and mask_features (bound memory, not results)
BATCH_CHARS = 1_000_000
BATCH_RUNS = 500_000
#: threads that decode and measure batches at once
THREADS = min(2, os.cpu_count() or 1)


@dataclass(frozen=True)
class Runs:
    """Run lengths of ``n`` masks, concatenated: mask ``i`` owns
    ``runs[offsets[i]:offsets[i + 1]]``; runs alternate 0s and 1s, starting with 0s."""

    runs: IntArray
    offsets: IntArray
    heights: IntArray
    widths: IntArray
    #: True where a run after the first has length 0 (pycocotools never writes that)
    non_canonical: BoolArray

    def __len__(self) -> int:
        return len(self.heights)

    def of(self, i: int) -> IntArray:
        return self.runs[self.offsets[i] : self.offsets[i + 1]]


@dataclass(frozen=True)
class MaskFeatures:
    """Per-mask shape numbers, aligned with the input masks. Boxes are in pixels:
    ``x, y`` of the top-left pixel and ``w, h`` of the box that holds every pixel."""

    area: IntArray
    x: IntArray
    y: IntArray
    w: IntArray
    h: IntArray
    #: 8-connected components of the mask
    fragments: IntArray
    #: components with at most ``tiny_area`` pixels
    tiny_fragments: IntArray
    #: holes (4-connected background enclosed by the mask) of at least ``min_hole_area``
    holes: IntArray
    #: pixels of the largest hole (0 without holes)
    largest_hole: IntArray

    def __len__(self) -> int:
        return len(self.area)


_T = TypeVar("_T")


def _in_threads(tasks: list[Callable[[], _T]]) -> list[_T]:
    """Run ``tasks`` on up to ``THREADS`` threads (numpy and scipy release the GIL in
    their loops); results, and the first error, in task order."""
    if THREADS <= 1 or len(tasks) <= 1:
        return [task() for task in tasks]
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = [pool.submit(task) for task in tasks]
        return [future.result() for future in futures]


def _fail(name: str, message: str) -> InvalidInput:
    return InvalidInput.field(f"{name}.counts", message)


def decode_runs(
    counts: Sequence[str],
    heights: Sequence[int],
    widths: Sequence[int],
    names: Sequence[str] | None = None,
) -> Runs:
    """Run lengths of compressed COCO ``counts`` strings, checked.

    Raises :class:`InvalidInput` naming the first bad mask (``names[i]``, default
    ``masks[i]``): a character outside ``'0'..'o'``, a truncated or over-long value, a
    negative run, or runs that do not add up to height × width."""
    n = len(counts)
    names = names if names is not None else [f"masks[{i}]" for i in range(n)]
    h = np.asarray(heights, dtype=np.int64).reshape(n)
    w = np.asarray(widths, dtype=np.int64).reshape(n)
    encoded: list[bytes] = []
    for i, text in enumerate(counts):
        if not isinstance(text, str) or not text.isascii():
            raise _fail(names[i], "expected an ASCII compressed RLE string")
        if not text:
            raise _fail(names[i], "empty counts string")
        encoded.append(text.encode("ascii"))
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
    parts: list[IntArray] = []
    per_mask = np.zeros(n, dtype=np.int64)
    char_ends = np.cumsum(lengths)
    batches: list[tuple[int, int]] = []
    lo = 0
    while lo < n:
        base = int(char_ends[lo - 1]) if lo else 0
        hi = max(lo + 1, int(np.searchsorted(char_ends, base + BATCH_CHARS, side="right")))
        batches.append((lo, min(hi, n)))
        lo = min(hi, n)
    pixels = h * w
    results = _in_threads(
        [
            partial(_decode_batch, encoded[lo:hi], lengths[lo:hi], pixels[lo:hi], names[lo:hi])
            for lo, hi in batches
        ]
    )
    for (lo, hi), (batch_runs, batch_counts) in zip(batches, results, strict=True):
        parts.append(batch_runs)
        per_mask[lo:hi] = batch_counts
    runs = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(per_mask))).astype(np.int64)
    # zero-length runs other than a mask's first (which means it starts with a 1)
    zero = np.flatnonzero(runs == 0)
    zero_owner = np.searchsorted(offsets, zero, side="right") - 1
    non_canonical = np.zeros(n, dtype=bool)
    non_canonical[zero_owner[zero > offsets[zero_owner]]] = True
    if non_canonical.any():
        runs, offsets = _canonicalize(runs, offsets, np.flatnonzero(non_canonical))
    return Runs(runs, offsets, h, w, non_canonical)


def _decode_batch(
    encoded: list[bytes], lengths: IntArray, pixels: IntArray, names: Sequence[str]
) -> tuple[IntArray, IntArray]:
    """Runs of a batch of non-empty strings, and the number of runs of each."""
    chars = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    str_start = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    bad = np.flatnonzero((chars < 48) | (chars >= 112))
    if len(bad):
        at = int(bad[0])
        i = int(np.searchsorted(str_start, at, side="right") - 1)
        raise _fail(
            names[i],
            f"invalid character {chr(chars[at])!r} at position {at - int(str_start[i])} "
            "(allowed: '0' to 'o')",
        )
    chunk = chars - np.uint8(48)
    more = (chunk & 0x20) != 0
    truncated = np.flatnonzero(more[str_start + lengths - 1])
    if len(truncated):
        raise _fail(names[int(truncated[0])], "truncated value at the end of the string")
    value_end = np.flatnonzero(~more)
    value_start = np.empty_like(value_end)
    value_start[0] = 0
    value_start[1:] = value_end[:-1] + 1
    groups = value_end - value_start + 1
    long_values = np.flatnonzero(groups > MAX_GROUPS)
    if len(long_values):
        at = int(value_start[long_values[0]])
        i = int(np.searchsorted(str_start, at, side="right") - 1)
        raise _fail(names[i], f"value starting at position {at - int(str_start[i])} is too long")
    bounds = np.searchsorted(value_end, np.append(str_start, len(chars)))
    per_mask = np.diff(bounds).astype(np.int64)
    # most values fit in one character; add the higher groups only where they exist
    values = (chunk[value_start] & 0x1F).astype(np.int64)
    for g in range(1, int(groups.max())):
        longer = np.flatnonzero(groups > g)
        values[longer] |= (chunk[value_start[longer] + g] & 0x1F).astype(np.int64) << (5 * g)
    negative = np.flatnonzero((chunk[value_end] & 0x10) != 0)
    values[negative] -= np.int64(1) << (5 * groups[negative])

    offsets = np.concatenate(([0], np.cumsum(per_mask))).astype(np.int64)
    k = np.arange(len(values), dtype=np.int64) - np.repeat(offsets[:-1], per_mask)
    # run k > 2 is stored as the difference from run k - 2: undo it with running sums
    # over the odd runs (from k = 1) and over the even runs from k = 2, restarted at
    # every mask by subtracting the sum reached before the mask's own runs
    odd = (k & 1).astype(bool)
    sum_odd = np.cumsum(np.where(odd, values, 0))
    sum_even = np.cumsum(np.where(~odd & (k >= 2), values, 0))
    first = offsets[:-1]
    second = np.minimum(first + 1, len(values) - 1)  # masks with one run have no k >= 2
    runs = np.where(
        odd,
        sum_odd - np.repeat(sum_odd[first], per_mask),
        np.where(k >= 2, sum_even - np.repeat(sum_even[second], per_mask), values),
    )
    negative_runs = np.flatnonzero(runs < 0)
    if len(negative_runs):
        i = int(np.searchsorted(offsets, negative_runs[0], side="right") - 1)
        raise _fail(names[i], f"negative run length {int(runs[negative_runs[0]])}")
    sums = np.add.reduceat(runs, offsets[:-1])
    wrong = np.flatnonzero(sums != pixels)
    if len(wrong):
        i = int(wrong[0])
        raise _fail(names[i], f"runs add up to {int(sums[i])} pixels, expected {int(pixels[i])}")
    return runs, per_mask


def bitmap(runs: Runs, i: int) -> npt.NDArray[np.uint8]:
    """The H×W 0/1 bitmap of mask ``i`` (for pictures; the checks never need it)."""
    height, width = int(runs.heights[i]), int(runs.widths[i])
    mask_runs = runs.of(i)
    values = (np.arange(len(mask_runs)) % 2).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(values, mask_runs).reshape(width, height).T)


def _canonical(runs: list[int]) -> list[int]:
    """Drop zero-length runs after the first, joining their neighbours (as
    pycocotools' encoder writes the same pixels)."""
    out = runs[:1]
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


def _canonicalize(runs: IntArray, offsets: IntArray, which: IntArray) -> tuple[IntArray, IntArray]:
    """Rewrite the runs of the masks in ``which`` in canonical form (rare: only strings
    not written by pycocotools have zero-length runs)."""
    parts: list[IntArray] = []
    lengths = np.diff(offsets)
    previous = 0
    for i in which.tolist():
        parts.append(runs[offsets[previous] : offsets[i]])
        fixed = np.asarray(_canonical(runs[offsets[i] : offsets[i + 1]].tolist()), np.int64)
        parts.append(fixed)
        lengths[i] = len(fixed)
        previous = i + 1
    parts.append(runs[offsets[previous] :])
    return np.concatenate(parts), np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)


def _components(n_nodes: int, a: IntArray, b: IntArray) -> IntArray:
    """Component label of each node of the undirected graph with edges ``a[i]-b[i]``."""
    if n_nodes == 0:
        return np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n_nodes, n_nodes)).tocsr()
    _, labels = connected_components(graph, directed=False)
    return np.asarray(labels, dtype=np.int64)


def _neighbour_edges(
    column: IntArray, start: IntArray, end: IntArray, reach: int
) -> tuple[IntArray, IntArray]:
    """Pairs (i, j) of segments with ``column[j] == column[i] + 1`` whose rows overlap,
    widened by ``reach`` rows (1: 8-connectivity of pixels, 0: 4-connectivity).

    ``column`` is a global column key (distinct masks never have neighbouring keys) and
    segments are sorted by (column, start). Every segment is paired with each segment
    of the next column (a column of a real mask holds one or a few), and the pairs whose
    rows do not meet are dropped."""
    n = len(column)
    new = np.empty(n, dtype=bool)
    new[:1] = True
    new[1:] = column[1:] != column[:-1]
    group_first = np.flatnonzero(new)
    group_size = np.diff(np.append(group_first, n))
    following = np.minimum(np.cumsum(new), len(group_first) - 1)  # group index + 1
    has_next = column[group_first[following]] == column + 1
    count = np.where(has_next, group_size[following], 0)
    a = np.repeat(np.arange(n, dtype=np.int64), count)
    within = np.arange(len(a), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    b = np.repeat(group_first[following], count) + within
    meet = (start[b] <= end[a] + reach) & (start[a] <= end[b] + reach)
    return a[meet], b[meet]


def _segments(
    runs: Runs, lo: int, hi: int
) -> tuple[IntArray, IntArray, IntArray, IntArray, IntArray]:
    """Segments of masks ``lo..hi-1``: (mask, column, first row, last row, length),
    ordered by mask, column and row."""
    part = runs.runs[runs.offsets[lo] : runs.offsets[hi]]
    per_mask = np.diff(runs.offsets[lo : hi + 1])
    mask = np.repeat(np.arange(lo, hi, dtype=np.int64), per_mask)
    first_of_mask = np.repeat(runs.offsets[lo:hi] - runs.offsets[lo], per_mask)
    k = np.arange(len(part), dtype=np.int64) - first_of_mask
    # flat (column-major) start of each run within its own mask; every mask has runs
    before = np.cumsum(part) - part
    start = before - np.repeat(before[runs.offsets[lo:hi] - runs.offsets[lo]], per_mask)
    ones = (k % 2 == 1) & (part > 0)
    mask, start, length = mask[ones], start[ones], part[ones]
    height = runs.heights[mask]
    col0 = start // height
    col1 = (start + length - 1) // height
    pieces = col1 - col0 + 1
    seg_mask = np.repeat(mask, pieces)
    offset = np.arange(int(pieces.sum()), dtype=np.int64) - np.repeat(
        np.cumsum(pieces) - pieces, pieces
    )
    seg_col = np.repeat(col0, pieces) + offset
    seg_h = np.repeat(height, pieces)
    run_first = np.repeat(start, pieces)
    run_last = np.repeat(start + length - 1, pieces)
    row0 = np.maximum(run_first - seg_col * seg_h, 0)
    row1 = np.minimum(run_last - seg_col * seg_h, seg_h - 1)
    return seg_mask, seg_col, row0, row1, row1 - row0 + 1


def mask_features(runs: Runs, *, tiny_area: int = 16, min_hole_area: int = 1) -> MaskFeatures:
    """Area, box, fragments, tiny fragments and holes of every mask in ``runs``."""
    n = len(runs)
    out = {
        name: np.zeros(n, dtype=np.int64)
        for name in ("area", "x", "y", "w", "h", "fragments", "tiny", "holes", "largest")
    }
    batches: list[tuple[int, int]] = []
    lo = 0
    while lo < n:
        limit = runs.offsets[lo] + BATCH_RUNS
        hi = max(lo + 1, int(np.searchsorted(runs.offsets, limit, side="right")) - 1)
        batches.append((lo, min(hi, n)))
        lo = min(hi, n)
    # each batch writes its own slice of ``out``
    _in_threads(
        [
            partial(_batch_features, runs, lo, hi, tiny_area, min_hole_area, out)
            for lo, hi in batches
        ]
    )
    return MaskFeatures(
        area=out["area"],
        x=out["x"],
        y=out["y"],
        w=out["w"],
        h=out["h"],
        fragments=out["fragments"],
        tiny_fragments=out["tiny"],
        holes=out["holes"],
        largest_hole=out["largest"],
    )


def _batch_features(
    runs: Runs,
    lo: int,
    hi: int,
    tiny_area: int,
    min_hole_area: int,
    out: Mapping[str, IntArray],
) -> None:
    mask, col, row0, row1, length = _segments(runs, lo, hi)
    count = hi - lo
    local = mask - lo
    if not len(mask):
        return
    # segments come sorted by mask, then column, then row
    first = np.flatnonzero(np.concatenate(([True], local[1:] != local[:-1])))
    last = np.append(first[1:] - 1, len(local) - 1)
    present = local[first] + lo
    out["area"][present] = np.add.reduceat(length, first)
    out["x"][present] = col[first]
    out["w"][present] = col[last] - col[first] + 1
    top = np.minimum.reduceat(row0, first)
    out["y"][present] = top
    out["h"][present] = np.maximum.reduceat(row1, first) - top + 1
    max_width = int(runs.widths[lo:hi].max())
    # a global column key with an empty column between masks: never neighbours
    gcol = local * (max_width + 2) + col

    # fragments: components of the segment graph (8-connectivity)
    a, b = _neighbour_edges(gcol, row0, row1, 1)
    labels = _components(len(mask), a, b)
    comp_size = np.bincount(labels, weights=length).astype(np.int64)
    comp_mask = np.zeros(len(comp_size), dtype=np.int64)
    comp_mask[labels] = local
    out["fragments"][lo:hi] = np.bincount(comp_mask, minlength=count)
    out["tiny"][lo:hi] = np.bincount(
        comp_mask, weights=(comp_size <= tiny_area).astype(np.float64), minlength=count
    ).astype(np.int64)

    # holes: gaps between consecutive segments of one column
    same_col = gcol[1:] == gcol[:-1]
    g = np.flatnonzero(same_col)  # gap between segment g and g + 1
    if not len(g):
        return
    g_col, g_start, g_end = gcol[g], row1[g] + 1, row0[g + 1] - 1
    g_local = local[g]
    g_mask = mask[g]
    # first and last segment row of every occupied column
    col_first = np.flatnonzero(np.concatenate(([True], ~same_col)))
    col_last = np.append(col_first[1:] - 1, len(gcol) - 1)
    col_key = gcol[col_first]
    col_top = row0[col_first]
    col_bottom = row1[col_last]

    outside = (col[g] == 0) | (col[g] == runs.widths[g_mask] - 1)
    for step in (-1, 1):
        where = np.searchsorted(col_key, g_col + step)
        where_c = np.minimum(where, len(col_key) - 1)
        occupied = col_key[where_c] == g_col + step
        # an empty neighbour column is all background, reaching the outside
        touches = ~occupied | (g_start < col_top[where_c]) | (g_end > col_bottom[where_c])
        outside |= touches
    ga, gb = _neighbour_edges(g_col, g_start, g_end, 0)
    g_labels = _components(len(g), ga, gb)
    n_comp = int(g_labels.max()) + 1
    comp_outside = np.bincount(g_labels, weights=outside.astype(np.float64), minlength=n_comp)
    hole_size = np.bincount(g_labels, weights=g_end - g_start + 1, minlength=n_comp).astype(
        np.int64
    )
    hole_mask = np.zeros(n_comp, dtype=np.int64)
    hole_mask[g_labels] = g_local
    is_hole = (comp_outside == 0) & (hole_size >= min_hole_area)
    out["holes"][lo:hi] = np.bincount(hole_mask[is_hole], minlength=count)
    largest = np.zeros(count, dtype=np.int64)
    np.maximum.at(largest, hole_mask[is_hole], hole_size[is_hole])
    out["largest"][lo:hi] = largest
