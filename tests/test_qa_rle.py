"""Run decoding and shape features on RLE, against bitmaps and scipy.ndimage."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage  # type: ignore[import-untyped]

from ledger.errors import InvalidInput
from ledger.masks import encode, to_rle
from ledger.qa.rle import decode_runs, mask_features


def _runs_of(m: npt.NDArray[np.uint8]) -> list[int]:
    flat = m.T.ravel()
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate(([0], edges, [flat.size]))).tolist()
    return [0, *runs] if flat.size and flat[0] else runs


def _truth(m: npt.NDArray[np.uint8], tiny: int, min_hole: int) -> tuple[int, int, int, int]:
    """(fragments, tiny fragments, holes, largest hole) by labeling the bitmap."""
    labels, fragments = ndimage.label(m, structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel())[1:]
    padded = np.pad(1 - m, 1, constant_values=1)
    background, count = ndimage.label(padded)  # 4-connected
    outside = set(
        np.unique(
            np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])
        ).tolist()
    )
    holes = [int((background == k).sum()) for k in range(1, count + 1) if k not in outside]
    holes = [h for h in holes if h >= min_hole]
    return fragments, int((sizes <= tiny).sum()), len(holes), max(holes, default=0)


masks = st.integers(1, 14).flatmap(
    lambda h: st.integers(1, 14).flatmap(
        lambda w: st.floats(0.05, 0.95).flatmap(
            lambda p: st.integers(0, 2**32 - 1).map(
                lambda seed: (np.random.default_rng(seed).random((h, w)) < p).astype(np.uint8)
            )
        )
    )
)


@settings(max_examples=60, deadline=None)
@given(st.lists(masks, min_size=1, max_size=8))
def test_features_match_bitmap_labeling(bitmaps: list[npt.NDArray[np.uint8]]) -> None:
    rles = [encode(m) for m in bitmaps]
    runs = decode_runs(
        [r["counts"] for r in rles], [m.shape[0] for m in bitmaps], [m.shape[1] for m in bitmaps]
    )
    features = mask_features(runs, tiny_area=2, min_hole_area=2)
    for i, m in enumerate(bitmaps):
        assert runs.of(i).tolist() == _runs_of(m)
        assert int(features.area[i]) == int(m.sum())
        fragments, tiny, holes, largest = _truth(m, 2, 2)
        got = (
            features.fragments[i],
            features.tiny_fragments[i],
            features.holes[i],
            features.largest_hole[i],
        )
        assert tuple(int(v) for v in got) == (fragments, tiny, holes, largest)
        if m.any():
            ys, xs = np.nonzero(m)
            box = (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            got_box = (features.x[i], features.y[i], features.w[i], features.h[i])
            assert tuple(int(v) for v in got_box) == tuple(int(v) for v in box)


def test_large_values_and_many_masks_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    import ledger.qa.rle as rle_module

    # runs longer than one 5-bit group, and batches cut in the middle of the list
    monkeypatch.setattr(rle_module, "BATCH_CHARS", 40)
    monkeypatch.setattr(rle_module, "BATCH_RUNS", 7)
    bitmaps = []
    for k in range(30):
        m = np.zeros((300, 200), dtype=np.uint8)
        m[10 + k : 200, 5 + k : 150 - k] = 1
        m[100:110, 60:70] = 0  # a hole of 100 px
        bitmaps.append(m)
    rles = [encode(m) for m in bitmaps]
    runs = decode_runs([r["counts"] for r in rles], [300] * 30, [200] * 30)
    features = mask_features(runs)
    for i, m in enumerate(bitmaps):
        assert runs.of(i).tolist() == _runs_of(m)
    assert features.area.tolist() == [int(m.sum()) for m in bitmaps]
    assert features.holes.tolist() == [1] * 30 and features.largest_hole.tolist() == [100] * 30
    assert features.fragments.tolist() == [1] * 30


@pytest.mark.parametrize(
    ("counts", "size", "match"),
    [
        ("", (2, 2), r"m\.counts: empty counts string"),
        ("0~", (2, 2), r"m\.counts: invalid character '~' at position 1"),
        ("04é", (2, 2), r"m\.counts: expected an ASCII compressed RLE string"),
        ("0P", (2, 2), r"m\.counts: truncated value at the end of the string"),
        ("0" + "P" * 7 + "0", (2, 2), r"m\.counts: value starting at position 1 is too long"),
        ("0O", (2, 2), r"m\.counts: negative run length -1"),
        ("13", (2, 2), r"m\.counts: runs add up to 4 pixels, expected 6"),
    ],
)
def test_malformed_strings_are_refused(counts: str, size: tuple[int, int], match: str) -> None:
    height, width = size if counts != "13" else (2, 3)
    with pytest.raises(InvalidInput, match=match):
        decode_runs(["2", counts], [1, height], [2, width], ["ok", "m"])


def test_zero_length_runs_are_made_canonical() -> None:
    # 2 zeros, 0 ones, 1 zero, 1 one: the same pixels as 3 zeros, 1 one
    written = to_rle({"size": [2, 2], "counts": [3, 1]}, 2, 2)["counts"]
    odd = "2011"  # hand-made compressed string of the runs [2, 0, 1, 1]
    runs = decode_runs([written, odd], [2, 2], [2, 2])
    assert runs.of(0).tolist() == [3, 1]
    assert runs.of(1).tolist() == [3, 1]
    assert runs.non_canonical.tolist() == [False, True]
