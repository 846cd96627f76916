"""As-of state: instances, current revisions and review status at a size or a time."""

from __future__ import annotations

import pytest

from ledger.asof import (
    as_of,
    categories,
    image_instances,
    instance,
    iter_images,
    iter_instances,
    resolve_size,
    size_at_time,
)
from ledger.errors import InvalidInput, NotFound
from ledger.merkle import tree_hash
from ledger.service import Ledger
from ledger.store import Store
from tests.test_release import P, built, later_changes


@pytest.fixture
def lg(store: Store) -> Ledger:
    return built(store)


def states(ledger: Ledger, size: int, **kwargs: object) -> dict[str, tuple[int, str | None, str]]:
    return {
        s.instance_id: (s.revision, s.review, s.op)
        for s in iter_instances(ledger.store, P, size, **kwargs)  # type: ignore[arg-type]
    }


def test_state_at_each_size(lg: Ledger) -> None:
    assert states(lg, 10) == {}
    assert states(lg, 11) == {"i0": (1, None, "created")}
    assert states(lg, 18)["i1"] == (2, None, "edited")
    at_17 = states(lg, 17)
    assert at_17["i1"] == (1, None, "created") and "i6" in at_17
    at_24 = states(lg, 24)
    assert at_24 == {
        "i0": (1, "accept", "created"),
        "i1": (2, "accept", "edited"),
        "i2": (1, "reject", "created"),
        "i3": (1, None, "created"),
        "i4": (1, "accept", "created"),
        "i5": (1, "accept", "created"),
    }
    assert states(lg, 24, include_deleted=True)["i6"] == (2, None, "deleted")


def test_an_edit_clears_the_review_and_later_entries_do_not_leak(lg: Ledger) -> None:
    later_changes(lg)
    size = lg.head(P).size
    now = states(lg, size)
    assert now["i0"] == (2, None, "edited")  # edited after its accept
    assert "i4" not in now  # deleted
    assert now["i2"] == (1, "accept", "created")  # second review wins
    assert states(lg, 24)["i0"] == (1, "accept", "created")


def test_instance_fields(lg: Ledger) -> None:
    s = instance(lg.store, P, "i5", 24)
    assert (s.image_id, s.category_id, s.actor, s.reviewer, s.review_seq) == (
        "img-2", 2, "model-x", "rita", 22,
    )  # fmt: skip
    assert s.annotation_id == 15 and s.image_seq == 6 and s.guideline == "seg-guide@1.0"
    assert s.area == 49 and s.bbox == (2.0, 2.0, 7.0, 7.0)
    assert s.segmentation["size"] == [24, 32]
    assert instance(lg.store, P, "i5", 24, masks=False).segmentation is None
    with pytest.raises(NotFound, match="instance 'i5' does not exist in proj at tree size 15"):
        instance(lg.store, P, "i5", 15)


def test_one_image(lg: Ledger) -> None:
    ids = [s.instance_id for s in image_instances(lg.store, P, "img-1", 24)]
    assert ids == ["i0", "i1", "i2", "i3", "i4"]
    assert [s.instance_id for s in image_instances(lg.store, P, "img-2", 24)] == ["i5"]
    with pytest.raises(NotFound, match="image 'img-2' is not registered in proj at tree size 6"):
        image_instances(lg.store, P, "img-2", 6)


def test_images_categories_and_root(lg: Ledger) -> None:
    assert [i.image_id for i in iter_images(lg.store, P, 6)] == ["img-1"]
    assert [i.image_id for i in iter_images(lg.store, P, 24, page=1)] == ["img-1", "img-2"]
    assert [c.name for c in categories(lg.store, P, 24)] == ["car", "person"]
    where = as_of(lg.store, P, 17)
    assert where.root_hash == tree_hash(17, lambda ix: lg.store.read_hashes(P, ix))


def test_paging_gives_the_same_stream(lg: Ledger) -> None:
    later_changes(lg)
    size = lg.head(P).size
    assert list(iter_instances(lg.store, P, size, page=2)) == list(
        iter_instances(lg.store, P, size)
    )


def test_state_at_a_time(lg: Ledger) -> None:
    # the test clock moves one minute per append, starting at 08:01
    assert size_at_time(lg.store, P, "2026-11-02T08:01:00Z") == 10
    assert size_at_time(lg.store, P, "2026-11-02T08:02:30Z") == 17
    assert size_at_time(lg.store, P, "2026-11-02T09:02:30+01:00") == 17
    assert resolve_size(lg.store, P, when="2030-01-01T00:00:00Z") == 24
    assert resolve_size(lg.store, P) == 24 and resolve_size(lg.store, P, 5) == 5


BAD_SIZES: list[tuple[dict[str, object], str]] = [
    ({"when": "2026-11-02T08:00:00Z"}, r"time: no entry of proj was recorded at or before"),
    ({"when": "2026-11-02T08:00:00"}, r"time: .* has no timezone"),
    ({"when": "yesterday"}, r"time: 'yesterday' is not an ISO 8601 time"),
    ({"at": 25}, r"at: tree size must be an integer from 1 to 24"),
    ({"at": 3, "when": "2026-11-02T08:00:00Z"}, r"give a tree size or a time, not both"),
]


def test_bad_sizes_and_times(lg: Ledger) -> None:
    for kwargs, match in BAD_SIZES:
        with pytest.raises(InvalidInput, match=match):
            resolve_size(lg.store, P, **kwargs)  # type: ignore[arg-type]


def test_unknown_project(lg: Ledger) -> None:
    with pytest.raises(NotFound, match="project nope does not exist"):
        resolve_size(lg.store, "nope")
