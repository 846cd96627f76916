"""Tests for ledger.masks: validation of COCO segmentations and batch mask math."""

from __future__ import annotations

import copy
import dataclasses
import enum
import math
import re
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycocotools import mask as coco_mask

from ledger import masks
from ledger.errors import InvalidInput

Bitmap = npt.NDArray[np.bool_]

# --- helpers, independent of the module under test -----------------------------------------


def runs_of(mask: Bitmap) -> list[int]:
    """Column-major run lengths, starting with a (possibly empty) run of zeros."""
    flat = mask.flatten(order="F").astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    runs: list[int] = np.diff(bounds).tolist()
    return [0, *runs] if flat[0] else runs


def coco_encode(mask: Bitmap) -> dict[str, Any]:
    encoded: dict[str, Any] = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return encoded


def compressed(mask: Bitmap) -> str:
    counts: bytes = coco_encode(mask)["counts"]
    return counts.decode("ascii")


def random_bitmaps(n: int, shape: tuple[int, int], seed: int) -> Bitmap:
    """n random non-empty bitmaps, all sharing pixel (0, 0)."""
    bits: Bitmap = np.random.default_rng(seed).random((n, *shape)) < 0.3
    bits[:, 0, 0] = True
    return bits


@st.composite
def bitmaps(draw: st.DrawFn, max_side: int = 40) -> Bitmap:
    height = draw(st.integers(1, max_side))
    width = draw(st.integers(1, max_side))
    mask: Bitmap = draw(hnp.arrays(np.bool_, (height, width)))
    mask[draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))] = True
    return mask


def refused(loc: str, reason: str) -> Any:
    """pytest.raises for an InvalidInput naming ``loc`` (literal) and ``reason`` (regex)."""
    return pytest.raises(InvalidInput, match=f"{re.escape(loc)}: {reason}")


# --- round trips ---------------------------------------------------------------------------


@given(bitmaps())
def test_encoded_bitmap_validates_and_decodes_to_the_same_pixels(mask: Bitmap) -> None:
    height, width = mask.shape
    rle = masks.encode(mask)
    info = masks.validate_segmentation(rle, height, width)
    assert rle == {"size": [height, width], "counts": compressed(mask)}
    assert info.kind == "rle"
    assert info.area == int(mask.sum())
    assert info.bbox == tuple(coco_mask.toBbox(coco_encode(mask)).tolist())
    assert info.rle == rle
    np.testing.assert_array_equal(masks.decode(rle, height, width), mask.astype(np.uint8))
    assert masks.rle_run_count(rle["counts"]) == len(runs_of(mask))


@given(bitmaps())
def test_uncompressed_rle_equals_its_compressed_form(mask: Bitmap) -> None:
    height, width = mask.shape
    seg = {"size": [height, width], "counts": runs_of(mask)}
    submitted = copy.deepcopy(seg)
    info = masks.validate_segmentation(seg, height, width)
    assert seg == submitted
    assert info.rle == masks.encode(mask)
    assert masks.to_rle(seg, height, width) == masks.encode(mask)


@st.composite
def rectangles(draw: st.DrawFn) -> Bitmap:
    height, width = draw(st.integers(3, 12)), draw(st.integers(3, 12))
    top, left = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
    bottom, right = draw(st.integers(top + 1, height)), draw(st.integers(left + 1, width))
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


@given(rectangles(), st.data())
def test_zero_length_runs_give_the_canonical_rle(mask: Bitmap, data: st.DataObject) -> None:
    height, width = mask.shape
    runs = runs_of(mask)
    at = data.draw(st.integers(0, len(runs) - 1))
    split = data.draw(st.integers(0, runs[at]))
    # the same pixels with an empty run in the middle of run `at`
    padded = [*runs[:at], split, 0, runs[at] - split, *runs[at + 1 :]]
    seg = {"size": [height, width], "counts": padded}
    from_pycocotools: bytes = coco_mask.frPyObjects(seg, height, width)["counts"]
    as_string = {"size": [height, width], "counts": from_pycocotools.decode("ascii")}
    assert as_string["counts"] != compressed(mask)
    assert masks.to_rle(seg, height, width) == masks.encode(mask)
    assert masks.to_rle(as_string, height, width) == masks.encode(mask)


def test_encode_treats_any_nonzero_pixel_as_set() -> None:
    mask = np.zeros((6, 7), dtype=np.uint8)
    mask[1:4, 2:6] = 1
    assert masks.encode(mask * 255) == masks.encode(mask.astype(bool))
    assert masks.encode(mask * 2)["counts"] == compressed(mask.astype(bool))


def test_polygon_is_rasterized_like_pycocotools() -> None:
    frame = [[0, 0, 5, 0, 5, 4, 0, 4]]
    triangle = [[0.5, 0.5, 4.5, 0.5, 0.5, 3.5], [4, 3, 5, 3, 5, 4]]
    submitted = copy.deepcopy(triangle)
    info = masks.validate_segmentation(triangle, 4, 5)
    assert triangle == submitted
    expected = coco_mask.merge(coco_mask.frPyObjects(triangle, 4, 5))
    assert info.kind == "polygon"
    assert info.rle["counts"] == expected["counts"].decode("ascii")
    assert info.area == int(coco_mask.area(expected))
    many = masks.validate_segmentation(triangle * 150, 4, 5)  # 300 rings, merged in chunks
    assert many.rle == info.rle
    full = masks.validate_segmentation(frame, 4, 5)
    assert (full.area, full.bbox) == (20, (0.0, 0.0, 5.0, 4.0))
    np.testing.assert_array_equal(masks.decode(frame, 4, 5), np.ones((4, 5), np.uint8))


def test_mask_info_is_frozen_and_hashable() -> None:
    info = masks.validate_segmentation([[0, 0, 5, 0, 5, 4]], 4, 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.area = 1  # type: ignore[misc]
    assert hash(info) == hash(dataclasses.replace(info))


def test_counts_helpers() -> None:
    assert masks.rle_run_count("") == 0
    assert masks.rle_run_count(masks.encode(np.eye(5, dtype=bool))["counts"]) == 10
    assert masks.polygon_vertex_count([[0, 0, 1, 0, 1, 1], [0, 0, 2, 0, 2, 2, 0, 2]]) == 7
    with refused("counts", "invalid character '~' at position 1"):
        masks.rle_run_count("1~")
    with refused("counts", "truncated value at position 1"):
        masks.rle_run_count("1P")


# --- refusals ------------------------------------------------------------------------------

H, W = 4, 5  # 20 pixels
FULL = compressed(np.ones((H, W), dtype=bool))
EMPTY = compressed(np.zeros((H, W), dtype=bool))
NAN, INF = math.nan, math.inf


def rle(counts: object, size: object = (H, W)) -> dict[str, object]:
    return {"size": list(size) if isinstance(size, tuple) else size, "counts": counts}


REFUSALS: list[tuple[str, object, str, str]] = [
    # (id, segmentation on a 4x5 image, field, reason)
    ("int", 42, "segmentation", "expected an RLE object .* got int"),
    ("null", None, "segmentation", "expected an RLE object .* got null"),
    ("str", "0d0", "segmentation", "expected an RLE object .* got str"),
    ("no size", {"counts": FULL}, "segmentation.size", "missing"),
    ("size 1", rle(FULL, [4]), "segmentation.size", r"expected \[height, width\]"),
    ("size str", rle(FULL, ["4", "5"]), "segmentation.size", r"expected \[height, width\]"),
    ("size bool", rle(FULL, [True, 5]), "segmentation.size", r"expected \[height, width\]"),
    ("size float", rle(FULL, [4.0, 5]), "segmentation.size", r"expected \[height, width\]"),
    ("size dict", rle(FULL, {"h": 4}), "segmentation.size", r"expected \[height, width\]"),
    (
        "size swapped",
        rle(FULL, [5, 4]),
        "segmentation.size",
        re.escape("size [5, 4] does not match the registered image 4x5 (height x width)"),
    ),
    ("no counts", {"size": [H, W]}, "segmentation.counts", "missing"),
    ("extra key", {**rle(FULL), "iscrowd": 0}, "segmentation.iscrowd", "unexpected field"),
    ("counts int", rle(20), "segmentation.counts", "expected a compressed string .* got int"),
    ("counts bytes", rle(b"0d0"), "segmentation.counts", ".* got bytes"),
    ("bad char", rle("0z0"), "segmentation.counts", "invalid character 'z' at position 1"),
    ("space", rle("0d0 "), "segmentation.counts", "invalid character ' ' at position 3"),
    ("non-ascii", rle("0é"), "segmentation.counts", "invalid character 'é' at position 1"),
    ("truncated", rle("0d"), "segmentation.counts", "truncated value at position 1"),
    ("short sum", rle("1"), "segmentation.counts", "runs add up to 1 pixels, expected 20"),
    ("long sum", rle("d0d0"), "segmentation.counts", "runs add up to more than the 20 pixels"),
    ("negative first", rle("O"), "segmentation.counts", "negative run length -1 at position 0"),
    ("negative delta", rle("111K"), "segmentation.counts", "negative run length -4 at position 3"),
    ("long value", rle("dP0"), "segmentation.counts", "value starting at position 0 is too long"),
    ("many runs", rle("0" * 22), "segmentation.counts", "more runs than a mask of 20 pixels"),
    ("overlong", rle("0" * 43), "segmentation.counts", re.escape("43 characters, more than 20")),
    ("run neg", rle([1, -1, 20]), "segmentation.counts[1]", "expected a non-negative integer"),
    ("run bool", rle([True, 19]), "segmentation.counts[0]", "expected a non-negative integer"),
    ("run float", rle([1.0, 19]), "segmentation.counts[0]", "expected a non-negative integer"),
    ("run sum", rle([1, 2]), "segmentation.counts", "runs add up to 3 pixels, expected 20"),
    ("run many", rle([0] * 21 + [20]), "segmentation.counts", "22 runs, more than"),
    ("no rings", [], "segmentation", "empty polygon list"),
    ("flat", [0, 0, 5, 0, 5, 4], "segmentation[0]", "expected a list of x, y coordinates"),
    ("ring dict", [{"x": 1}], "segmentation[0]", "expected a list of x, y coordinates, got dict"),
    ("nan", [[0, 0, 5, 0, 5, NAN]], "segmentation[0][5]", "expected a finite number, got nan"),
    ("inf", [[0, 0, INF, 0, 5, 4]], "segmentation[0][2]", "expected a finite number, got inf"),
    ("-inf", [[0, 0, 5, 0, -INF, 4]], "segmentation[0][4]", "expected a finite number, got -inf"),
    ("bool", [[0, 0, 5, 0, True, 4]], "segmentation[0][4]", "expected a number, got bool"),
    ("string", [[0, 0, "5", 0, 5, 4]], "segmentation[0][2]", "expected a number, got str"),
    ("none", [[0, 0, 5, 0, 5, None]], "segmentation[0][5]", "expected a number, got null"),
    ("odd", [[0, 0, 5, 0, 5, 4, 1]], "segmentation[0]", r"odd number of coordinates \(7\)"),
    ("box", [[0, 0, 5, 4]], "segmentation[0]", "4 coordinates, a polygon needs at least 3"),
    (
        "x out",
        [[0, 0, 5, 0, 5, 4], [0, 0, 5.5, 0, 5, 4]],
        "segmentation[1][2]",
        re.escape("x = 5.5 is outside [0, 5] (image width)"),
    ),
    (
        "y out",
        [[0, 0, 5, 0, 5, 4, 0, 4.5]],
        "segmentation[0][7]",
        re.escape("y = 4.5 is outside [0, 4] (image height)"),
    ),
    ("negative", [[0, -1, 5, 0, 5, 4]], "segmentation[0][1]", "y = -1 is outside"),
    ("huge", [[0, 0, 10**400, 0, 5, 4]], "segmentation[0][2]", "x = 1000* is outside"),
    ("empty rle", rle(EMPTY), "segmentation", re.escape("mask is empty (area 0)")),
    ("empty runs", rle([20]), "segmentation", re.escape("mask is empty (area 0)")),
    ("empty polygon", [[1, 1, 1, 1, 1, 1]], "segmentation", re.escape("mask is empty (area 0)")),
]


@pytest.mark.parametrize(
    ("seg", "loc", "reason"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_refusal_names_field_and_reason(seg: object, loc: str, reason: str) -> None:
    submitted = copy.deepcopy(seg)
    with refused(loc, reason) as caught:
        masks.validate_segmentation(seg, H, W)
    assert [e.loc for e in caught.value.errors] == [loc]
    assert seg == submitted


def test_size_mismatch_message_and_custom_location() -> None:
    seg = {"size": [480, 640], "counts": "0"}
    with refused(
        "payload.segmentation.size",
        re.escape("size [480, 640] does not match the registered image 768x1024 (height x width)"),
    ):
        masks.validate_segmentation(seg, 768, 1024, loc="payload.segmentation")
    with refused("payload.segmentation.counts", "truncated value"):
        masks.validate_segmentation(rle("0d"), H, W, loc="payload.segmentation")


def test_registered_size_beyond_coco_rle_is_refused() -> None:
    with refused("segmentation", "70000x70000 is not a size COCO RLE can hold"):
        masks.validate_segmentation([[0, 0, 1, 0, 1, 1]], 70000, 70000)


def test_to_rle_and_decode_accept_empty_masks_but_refuse_malformed_ones() -> None:
    assert masks.to_rle(rle([20]), H, W) == rle(EMPTY)
    assert not masks.decode(rle(EMPTY), H, W).any()
    with refused("segmentation.counts", "invalid character"):
        masks.decode(rle("0z"), H, W)


def test_encode_refuses_other_shapes() -> None:
    with refused("mask", re.escape("expected an H×W array, got shape (2, 2, 2)")):
        masks.encode(np.zeros((2, 2, 2), dtype=np.uint8))


COUNTS_CHARS = [chr(c) for c in range(48, 112)]


@given(
    st.integers(1, 5),
    st.integers(1, 5),
    st.one_of(st.text(max_size=20), st.text(alphabet=COUNTS_CHARS, max_size=12)),
)
def test_random_counts_are_refused_or_decode_consistently(
    height: int, width: int, counts: str
) -> None:
    seg = {"size": [height, width], "counts": counts}
    try:
        info = masks.validate_segmentation(seg, height, width)
    except InvalidInput as e:
        assert [err.loc for err in e.errors] in (["segmentation.counts"], ["segmentation"])
        return
    bitmap = masks.decode(seg, height, width)
    assert info.area == int(bitmap.sum()) > 0
    assert masks.encode(bitmap) == info.rle
    assert masks.rle_run_count(counts) == sum(1 for c in counts if ord(c) - 48 < 32)


@given(bitmaps(max_side=8), st.data())
def test_mutated_counts_are_refused_or_decode_consistently(
    mask: Bitmap, data: st.DataObject
) -> None:
    height, width = mask.shape
    counts = compressed(mask)
    at = data.draw(st.integers(0, len(counts) - 1))
    mutated = counts[:at] + data.draw(st.sampled_from(COUNTS_CHARS)) + counts[at + 1 :]
    seg = {"size": [height, width], "counts": mutated}
    try:
        rle_ = masks.to_rle(seg, height, width)
    except InvalidInput as e:
        assert [err.loc for err in e.errors] == ["segmentation.counts"]
        return
    assert masks.encode(masks.decode(seg, height, width)) == rle_


# --- batch math ----------------------------------------------------------------------------


def test_batch_math_over_more_rles_than_one_pycocotools_call_takes() -> None:
    bits_a = random_bitmaps(310, (12, 9), seed=1)
    bits_b = random_bitmaps(270, (12, 9), seed=2)
    a = [masks.encode(m) for m in bits_a]
    b = [masks.encode(m) for m in bits_b]

    area_a = bits_a.sum(axis=(1, 2))
    area_b = bits_b.sum(axis=(1, 2))
    np.testing.assert_array_equal(masks.areas(a), area_a)
    np.testing.assert_array_equal(masks.areas(a), [coco_mask.area(r) for r in a])
    np.testing.assert_array_equal(masks.bboxes(a), [coco_mask.toBbox(r) for r in a])

    flat_a = bits_a.reshape(len(a), -1).astype(np.int64)
    flat_b = bits_b.reshape(len(b), -1).astype(np.int64)
    inter = flat_a @ flat_b.T
    union = area_a[:, None] + area_b[None, :] - inter
    iou = masks.iou_matrix(a, b)
    assert iou.shape == (310, 270)
    np.testing.assert_allclose(iou, inter / union)
    assert iou[300, 260] == coco_mask.iou([a[300]], [b[260]], [0])[0, 0]
    ios = masks.intersection_over_smaller(a, b)
    # exact: the intersection recovered from IoU and the areas is rounded to whole pixels
    np.testing.assert_array_equal(ios, inter / np.minimum(area_a[:, None], area_b[None, :]))

    assert masks.merge(a) == masks.encode(bits_a.any(axis=0))
    assert masks.merge(a, intersect=True) == masks.encode(bits_a.all(axis=0))


def test_iou_of_a_mask_with_itself_is_one() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:7, 3:9] = True
    rle_ = masks.encode(mask)
    assert masks.iou_matrix([rle_], [rle_]).tolist() == [[1.0]]
    assert masks.intersection_over_smaller([rle_], [rle_]).tolist() == [[1.0]]


def test_touching_masks_do_not_overlap() -> None:
    left = np.zeros((10, 10), dtype=bool)
    left[:, :5] = True
    corner = np.zeros((10, 10), dtype=bool)
    corner[5:, 5:] = True
    a, b = [masks.encode(left)], [masks.encode(~left), masks.encode(corner)]
    assert masks.iou_matrix(a, b).tolist() == [[0.0, 0.0]]
    assert masks.intersection_over_smaller(a, b).tolist() == [[0.0, 0.0]]


def test_nested_masks() -> None:
    big = np.zeros((10, 10), dtype=bool)
    big[1:9, 1:9] = True
    small = np.zeros((10, 10), dtype=bool)
    small[3:5, 3:6] = True
    a, b = [masks.encode(big)], [masks.encode(small)]
    assert masks.iou_matrix(a, b)[0, 0] == pytest.approx(6 / 64)
    assert masks.intersection_over_smaller(a, b)[0, 0] == 1.0
    assert masks.intersection_over_smaller(b, [masks.encode(np.zeros((10, 10)))])[0, 0] == 0.0


def test_empty_batches() -> None:
    some = [masks.encode(np.eye(4, dtype=bool))]
    assert masks.areas([]).shape == (0,)
    assert masks.bboxes([]).shape == (0, 4)
    assert masks.iou_matrix([], some).shape == (0, 1)
    assert masks.intersection_over_smaller(some, []).shape == (1, 0)


def test_batch_inputs_are_validated() -> None:
    four, five = masks.encode(np.eye(4, dtype=bool)), masks.encode(np.eye(5, dtype=bool))
    with refused("rles[1].counts", "invalid character 'z'"):
        masks.areas([four, {"size": [4, 4], "counts": "z"}])
    with refused("rles[0].size", "expected"):
        masks.bboxes([{"size": [4], "counts": four["counts"]}])
    with refused("rles[0]", "expected an RLE object, got list"):
        masks.areas([[0, 0, 1, 0, 1, 1]])  # type: ignore[list-item]
    with refused("b[0].size", re.escape("size [5, 5] differs from a[0].size [4, 4]")):
        masks.iou_matrix([four], [five])
    with refused("rles[1].size", "size .* differs"):
        masks.merge([four, five])
    with refused("rles", "nothing to merge"):
        masks.merge([])


# --- the vectorised codec against its pure-Python reference -------------------------------


def reference_canonical_runs(runs: list[int]) -> list[int]:
    """Zero-length runs after the first dropped and their neighbours joined, one run at a
    time (what pycocotools' encoder would write for the same pixels)."""
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


def reference_encode(runs: list[int]) -> str:
    """pycocotools' rleToString, one value and one group at a time."""
    out: list[str] = []
    for i, run in enumerate(runs):
        value = run - runs[i - 2] if i > 2 else run
        more = True
        while more:
            chunk = value & 0x1F
            value >>= 5
            more = value != -1 if chunk & 0x10 else value != 0
            out.append(chr(chunk + (0x20 if more else 0) + 48))
    return "".join(out)


def respell(counts: str, value: int) -> str:
    """``counts`` with value number ``value`` written with one group more than needed:
    a last group that only repeats the sign of the group below it."""
    ends = [i for i, c in enumerate(counts) if ord(c) - 48 < 32]
    end = ends[value]
    chunk = ord(counts[end]) - 48
    extra = "O" if chunk & 0x10 else "0"
    return counts[:end] + chr(chunk + 0x20 + 48) + extra + counts[end + 1 :]


RUN_LENGTHS = st.one_of(st.integers(0, 40), st.integers(0, 2**20), st.integers(0, masks.MAX_PIXELS))


@st.composite
def counts_strings(draw: st.DrawFn) -> str:
    """Compressed strings: mostly well-formed, often with one character changed, a long
    spelling, a stray suffix, or nothing like a counts string at all."""
    kind = draw(st.sampled_from(["encoded", "mutated", "respelled", "suffixed", "random", "text"]))
    if kind == "random":
        return draw(st.text(alphabet=COUNTS_CHARS, max_size=40))
    if kind == "text":
        return draw(st.text(max_size=12))
    counts = reference_encode(draw(st.lists(RUN_LENGTHS, max_size=30)))
    if kind == "mutated" and counts:
        at = draw(st.integers(0, len(counts) - 1))
        counts = counts[:at] + draw(st.sampled_from(COUNTS_CHARS)) + counts[at + 1 :]
    elif kind == "respelled" and counts:
        count = sum(1 for c in counts if ord(c) - 48 < 32)
        counts = respell(counts, draw(st.integers(0, count - 1)))
    elif kind == "suffixed":
        counts += draw(st.sampled_from(["P", "P0", "`O", "PPPPPPP0", "O", "z", "0"]))
    return counts


PIXELS = st.one_of(st.integers(0, 64), st.integers(0, masks.MAX_PIXELS))


@given(counts_strings(), PIXELS)
def test_fast_decoder_agrees_with_the_reference(counts: str, pixels: int) -> None:
    try:
        expected = masks._decode_counts_reference(counts, "counts", pixels)
    except InvalidInput as e:
        with pytest.raises(InvalidInput) as caught:
            masks._decode_counts(counts, "counts", pixels)
        assert str(caught.value) == str(e)
        assert [err.loc for err in caught.value.errors] == ["counts"]
        fast = masks._decode_fast(counts, pixels)  # leaves the total to the caller
        assert fast is None or int(fast[0].sum()) > pixels
        return
    runs, total, canonical = masks._decode_counts(counts, "counts", pixels)
    assert runs.dtype == np.int64
    assert runs.tolist() == expected
    assert total == sum(expected)
    assert canonical == (counts == reference_encode(reference_canonical_runs(expected)))


@given(counts_strings())
def test_run_count_without_a_mask_size_agrees_with_the_reference(counts: str) -> None:
    try:
        expected = masks._decode_counts_reference(counts, "counts")
    except InvalidInput as e:
        assert masks._decode_fast(counts, None) is None
        with pytest.raises(InvalidInput) as caught:
            masks.rle_run_count(counts)
        assert str(caught.value) == str(e)
        return
    fast = masks._decode_fast(counts, None)
    assert fast is not None
    assert fast[0].tolist() == expected
    assert masks.rle_run_count(counts) == len(expected)


@given(st.lists(RUN_LENGTHS, max_size=40))
def test_encoder_and_canonical_runs_agree_with_the_reference(runs: list[int]) -> None:
    array = np.array(runs, dtype=np.int64)
    canonical = reference_canonical_runs(runs)
    assert masks._canonical_runs(array).tolist() == canonical
    assert masks._encode_counts(array) == reference_encode(runs)
    assert masks._encode_counts(np.array(canonical, dtype=np.int64)) == reference_encode(canonical)
    assert masks._decode_counts_reference(masks._encode_counts(array), "counts") == runs


@given(st.lists(st.integers(0, 2**16), max_size=40))
def test_encoder_writes_what_pycocotools_writes(runs: list[int]) -> None:
    # pycocotools stores counts as given, zero-length runs included
    width = max(1, sum(runs))
    ours = masks._encode_counts(np.array(runs, dtype=np.int64))
    theirs: bytes = coco_mask.frPyObjects({"size": [1, width], "counts": runs}, 1, width)["counts"]
    assert ours == theirs.decode("ascii")


def test_canonical_counts_are_kept_and_long_spellings_rewritten() -> None:
    mask = np.zeros((40, 30), dtype=bool)
    mask[5:33, 4:21] = True
    mask[10:12, 21:27] = True
    rle_ = masks.encode(mask)
    counts = rle_["counts"]
    info = masks.validate_segmentation(rle_, 40, 30)
    assert info.rle == rle_
    assert canonical_flag(counts, 1200)
    values = sum(1 for c in counts if ord(c) - 48 < 32)
    for value in range(values):
        longer = respell(counts, value)
        assert longer != counts
        assert masks._decode_counts_reference(longer, "c") == masks._decode_counts_reference(
            counts, "c"
        )
        assert not canonical_flag(longer, 1200)
        seg = {"size": [40, 30], "counts": longer}
        assert masks.validate_segmentation(seg, 40, 30) == info
        assert masks.to_rle(seg, 40, 30) == rle_


def canonical_flag(counts: str, pixels: int) -> bool:
    fast = masks._decode_fast(counts, pixels)
    assert fast is not None
    return fast[1]


# --- area and box from the runs against pycocotools ---------------------------------------


@given(bitmaps(), st.data())
def test_area_and_box_agree_with_pycocotools(mask: Bitmap, data: st.DataObject) -> None:
    height, width = mask.shape
    coco = coco_encode(mask)
    area, box = int(coco_mask.area(coco)), tuple(coco_mask.toBbox(coco).tolist())
    runs = runs_of(mask)
    for _ in range(data.draw(st.integers(0, 3))):  # the same pixels with empty runs
        if len(runs) + 2 <= height * width + 1:
            at = data.draw(st.integers(0, len(runs)))
            runs[at:at] = [0, 0]
    as_list = {"size": [height, width], "counts": runs}
    non_canonical: bytes = coco_mask.frPyObjects(as_list, height, width)["counts"]
    segs = [
        masks.encode(mask),
        as_list,
        {"size": [height, width], "counts": non_canonical.decode("ascii")},
    ]
    for seg in segs:
        info = masks.validate_segmentation(seg, height, width)
        assert (info.area, info.bbox) == (area, box)
    np.testing.assert_array_equal(masks.areas(segs), [area] * 3)
    np.testing.assert_array_equal(masks.bboxes(segs), [box] * 3)


@st.composite
def large_masks(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    """Runs of masks up to 2**28 pixels, without a bitmap: cut points anywhere."""
    height, width = draw(st.integers(1, 2**14)), draw(st.integers(1, 2**14))
    pixels = height * width
    cuts = sorted(draw(st.lists(st.integers(0, pixels), max_size=min(30, pixels))))
    runs = np.diff([0, *cuts, pixels]).tolist()
    return height, width, runs


@given(large_masks())
def test_area_and_box_of_large_masks_agree_with_pycocotools(
    mask: tuple[int, int, list[int]],
) -> None:
    height, width, runs = mask
    seg = {"size": [height, width], "counts": runs}
    canonical = masks.to_rle(seg, height, width)  # pycocotools' box needs canonical runs
    area = int(coco_mask.area(canonical))
    box = coco_mask.toBbox(canonical).tolist()
    assert area == sum(runs[1::2])
    np.testing.assert_array_equal(masks.areas([seg, canonical]), [area, area])
    np.testing.assert_array_equal(masks.bboxes([seg, canonical]), [box, box])
    if area:
        info = masks.validate_segmentation(seg, height, width)
        assert (info.area, list(info.bbox)) == (area, box)
        assert info.rle == canonical


def test_box_of_masks_beyond_what_pycocotools_decodes() -> None:
    # pycocotools reads values of more than 30 bits wrongly (a 32-bit shift); the box
    # comes from the runs, so it stays right on images of 2**30 pixels and more
    height, width = 49367, 56790
    runs = [320964456, 395431931, 650255408, 41819751, 3844405, 1391235979]
    info = masks.validate_segmentation({"size": [height, width], "counts": runs}, height, width)
    left = runs[0] // height
    assert info.bbox == (float(left), 0.0, float(width - left), float(height))
    assert info.area == runs[1] + runs[3] + runs[5]
    np.testing.assert_array_equal(masks.bboxes([info.rle]), [info.bbox])
    np.testing.assert_array_equal(masks.areas([info.rle]), [info.area])


# --- refusals the fast paths hand to the one-at-a-time checks -----------------------------


class Four(enum.IntEnum):
    FOUR = 4


MORE_REFUSALS: list[tuple[str, object, str, str]] = [
    # (id, segmentation on a 4x5 image, field, exact message)
    (
        "too long first",
        rle("PP0z"),
        "segmentation.counts",
        "value starting at position 0 is too long for this mask",
    ),
    ("negative first", rle("Oz"), "segmentation.counts", "negative run length -1 at position 0"),
    (
        "invalid first",
        rle("zP"),
        "segmentation.counts",
        "invalid character 'z' at position 0 (allowed: '0' to 'o')",
    ),
    (
        "nul",
        rle("44\x00"),
        "segmentation.counts",
        "invalid character '\\x00' at position 2 (allowed: '0' to 'o')",
    ),
    (
        "sum before count",
        rle("10" * 11),
        "segmentation.counts",
        "runs add up to more than the 20 pixels of the mask",
    ),
    (
        "count before char",
        rle("0" * 22 + "z"),
        "segmentation.counts",
        "more runs than a mask of 20 pixels can have",
    ),
    (
        "negative odd chain",
        rle("111O1O"),
        "segmentation.counts",
        "negative run length -1 at position 5",
    ),
    (
        "negative even chain",
        rle("44M"),
        "segmentation.counts",
        "negative run length -3 at position 2",
    ),
    ("truncated", rle("44P"), "segmentation.counts", "truncated value at position 2"),
    (
        "huge run",
        rle([2**70, 1]),
        "segmentation.counts",
        "runs add up to 1180591620717411303425 pixels, expected 20",
    ),
    (
        "huge negative run",
        rle([-(2**70), 20]),
        "segmentation.counts[0]",
        "expected a non-negative integer, got -1180591620717411303424",
    ),
    (
        "numpy run",
        rle([4, np.int64(16)]),
        "segmentation.counts[1]",
        "expected a non-negative integer, got np.int64(16)",
    ),
    (
        "numpy nan",
        [[0, 0, np.float64("nan"), 0, 5, 4]],
        "segmentation[0][2]",
        "expected a finite number, got nan",
    ),
    (
        "numpy int",
        [[0, 0, np.int64(5), 0, 5, 4]],
        "segmentation[0][2]",
        "expected a number, got int64",
    ),
    (
        "big int",
        [[0, 0, 2**80, 0, 5, 4]],
        "segmentation[0][2]",
        "x = 1208925819614629174706176 is outside [0, 5] (image width)",
    ),
    (
        "first bad wins",
        [[0, 0, 5, 0, 5, 4], [1, 1, 5, NAN, 5, 6]],
        "segmentation[1][3]",
        "expected a finite number, got nan",
    ),
    (
        "just outside",
        [[0, 0, 5.000000000000001, 0, 5, 4]],
        "segmentation[0][2]",
        "x = 5.000000000000001 is outside [0, 5] (image width)",
    ),
]


@pytest.mark.parametrize(
    ("seg", "loc", "message"), [r[1:] for r in MORE_REFUSALS], ids=[r[0] for r in MORE_REFUSALS]
)
def test_refusal_messages_are_exact(seg: object, loc: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        masks.validate_segmentation(seg, H, W)
    assert str(caught.value) == f"invalid input: {loc}: {message}"


def test_number_subclasses_are_accepted_as_before() -> None:
    four_by_four = (1.0, 0.0, 4.0, 4.0)
    runs = masks.validate_segmentation(rle([Four.FOUR, 16]), H, W)
    assert (runs.area, runs.bbox, runs.rle) == (16, four_by_four, rle("4`0"))
    as_floats = masks.validate_segmentation([[0, 0, 5, 0, 5, 4]], H, W)
    as_numpy = masks.validate_segmentation([[0, 0, np.float64(5), 0, 5, 4]], H, W)
    as_enum = masks.validate_segmentation([[0, 0, Four.FOUR, 0, 5, 4]], H, W)
    assert as_numpy == as_floats
    assert as_enum.rle == masks.validate_segmentation([[0, 0, 4, 0, 5, 4]], H, W).rle
