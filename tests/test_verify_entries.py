"""The fast entry check of `LogChecker` reads seq, prev, project and recorded_at exactly
as a JSON parser does: adversarial entries, and a property test against the full parse."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.canonical import canonical_bytes
from ledger.entry import entry_bytes
from ledger.merkle import leaf_hash, root_from_leaves
from ledger.verify import Failure, FailureFound, LogChecker

P = "proj"
T = "2026-11-01T09:00:00.000000Z"


def chain(events: list[Any], principals: list[str] | None = None, project: str = P) -> list[bytes]:
    out: list[bytes] = []
    prev = None
    for seq, event in enumerate(events):
        principal = principals[seq] if principals else "tester"
        raw = entry_bytes(
            event=canonical_bytes(event),
            prev=prev,
            principal=principal,
            project=project,
            recorded_at=T,
            seq=seq,
        )
        out.append(raw)
        prev = leaf_hash(raw)
    return out


def check(raws: list[bytes], deep: bool = False, project: str = P) -> Failure | None:
    checker = LogChecker(project, deep=deep)
    try:
        checker.feed(raws, [])
    except FailureFound as stop:
        return stop.failure
    assert checker.root() == root_from_leaves(leaf_hash(r) for r in raws)
    return None


def test_valid_entries_pass_and_hash_like_the_reference() -> None:
    raws = chain([{"n": k} for k in range(40)])
    hashes: list[bytes] = []
    checker = LogChecker(P, root_sizes=[1, 7, 40])
    checker.feed(raws[:13], hashes)
    checker.feed(raws[13:], hashes)
    assert hashes[0] == leaf_hash(raws[0])
    assert [size for size, _ in checker.roots] == [1, 7, 40]
    for size, root in checker.roots:
        assert root == root_from_leaves(leaf_hash(r) for r in raws[:size])


ADVERSARIAL_PRINCIPALS = [
    'quote " inside',
    "back\\slash",
    'ends with \\"',
    ',"prev":null,"principal":"x',
    "ünïcødé \u2028 and 😀",
    "tab\tand\nnewline",
    "",
]


@pytest.mark.parametrize("principal", ADVERSARIAL_PRINCIPALS)
def test_adversarial_principals_are_read_exactly(principal: str) -> None:
    raws = chain([{"a": 1}, {"b": 2}, {"c": 3}], [principal] * 3)
    assert check(raws) is None
    assert check(raws, deep=True) is None


def test_a_fake_frame_inside_the_event_does_not_hide_a_broken_chain() -> None:
    good = chain([{"a": 1}, {"b": 2}])
    expected_prev = leaf_hash(good[0]).hex()
    # the event carries what the frame of entry 1 should look like; its real prev is wrong
    decoy: dict[str, Any] = {"x": {"0": 1, "prev": expected_prev, "principal": "tester"}}
    raw = entry_bytes(
        event=canonical_bytes(decoy),
        prev=bytes(32),
        principal="tester",
        project=P,
        recorded_at=T,
        seq=1,
    )
    failure = check([good[0], raw])
    assert failure is not None and (failure.seq, failure.kind) == (1, "chain")


def test_each_field_is_checked() -> None:
    raws = chain([{"k": k} for k in range(4)])
    cases = [
        (raws[2].replace(b'"seq":2', b'"seq":5'), "sequence"),
        (raws[2].replace(b'"project":"proj"', b'"project":"prok"'), "project"),
        (raws[2].replace(b'"recorded_at":"2026', b'"recorded_at":"2025'), "time"),
        (
            raws[2]
            .replace(b'"prev":"', b'"prev":"0', 1)
            .replace(b'","principal"', b'0","principal"'),
            "chain",
        ),
        (raws[2].replace(b'"v":1', b'"v":2'), "malformed"),
        (raws[2][:-1], "malformed"),
        (b"[]", "malformed"),
    ]
    for bad, kind in cases:
        failure = check([raws[0], raws[1], bad, raws[3]])
        assert failure is not None and (failure.seq, failure.kind) == (2, kind), (bad, failure)
    other = chain([{"k": 0}], project="other")
    failure = check(other)
    assert failure is not None and failure.kind == "project"


def test_non_canonical_but_valid_entries_take_the_full_parse() -> None:
    raws = chain([{"k": 0}, {"k": 1}])
    spaced = raws[1].replace(b'"seq":1', b'"seq": 1')
    assert check([raws[0], spaced]) is None  # same fields: accepted, as by the parser
    odd_time = raws[1].replace(T.encode(), b"2026-11-02 09:00:00Z")
    assert check([raws[0], odd_time]) is None


def test_deep_mode_parses_the_event() -> None:
    raws = chain([{"k": 0}, {"k": 1}])
    smuggled = raws[1].replace(b'},"prev"', b'},"extra":{},"prev"')
    assert check([raws[0], smuggled]) is None  # the frame and its fields are intact
    failure = check([raws[0], smuggled], deep=True)
    assert failure is not None and (failure.seq, failure.kind) == (1, "malformed")


TEXT_CHARS = st.characters(exclude_categories=["Cs"])  # strings are UTF-8: no surrogates
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.text(TEXT_CHARS, max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(TEXT_CHARS, max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
events = st.dictionaries(
    st.sampled_from(["event", "prev", "principal", "project", "seq", "v", "x", ',"prev":']),
    json_values,
    max_size=4,
)
MUTATIONS = [
    (b'"seq":', b'"seq":1'),
    (b'"prev":', b'"prev":"00",'),
    (b'"project":"proj"', b'"project":"pro"'),
    (b'"principal":', b'"principal":"a",'),
    (b'"prev":null', b'"prev":"aa"'),
    (b',"v":1}', b',"v":1,"seq":0}'),
    (b"2026-", b"2027-"),
]


@settings(max_examples=60, deadline=None)
@given(
    evs=st.lists(events, min_size=1, max_size=6),
    principals=st.lists(st.text(TEXT_CHARS, max_size=10), min_size=6, max_size=6),
    target=st.integers(0, 5),
    mutation=st.sampled_from(MUTATIONS),
)
def test_fast_check_agrees_with_the_full_parse(
    evs: list[Any], principals: list[str], target: int, mutation: tuple[bytes, bytes]
) -> None:
    raws = chain(evs, principals)
    assert check(raws) is None
    i = target % len(raws)
    old, new = mutation
    pos = raws[i].rfind(old)
    if pos < 0:
        return
    mutated = raws[i][:pos] + new + raws[i][pos + len(old) :]
    try:
        obj = json.loads(mutated)
    except ValueError:
        return  # not JSON: only the full parse (deep) speaks about it
    if not isinstance(obj, dict) or set(obj) != {
        "event",
        "prev",
        "principal",
        "project",
        "recorded_at",
        "seq",
        "v",
    }:
        return
    tampered = [*raws[:i], mutated, *raws[i + 1 :]]
    fast, deep = check(tampered), check(tampered, deep=True)
    assert (fast and (fast.seq, fast.kind)) == (deep and (deep.seq, deep.kind))
