"""RFC 8785 canonical bytes and the strict parser (ledger.canonical).

Expected bytes come from RFC 8785 (sections 3.2.2 and 3.2.3, Appendix B) and the
reference test data of cyberphone/json-canonicalization; property tests compare
with the ``rfc8785`` package on arbitrary values.
"""

from __future__ import annotations

import copy
import enum
import json
import math
import struct
from collections import OrderedDict, UserDict
from decimal import Decimal
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ledger.canonical import (
    MAX_SAFE_INTEGER,
    canonical_bytes,
    format_number,
    parse_json,
)
from ledger.errors import InvalidInput


def jcs(text: str) -> bytes:
    """Canonical bytes of a JSON text."""
    return canonical_bytes(parse_json(text))


def refusal(excinfo: pytest.ExceptionInfo[InvalidInput]) -> tuple[str, str]:
    [error] = excinfo.value.errors
    return error.loc, error.message


# --- RFC 8785 examples ---------------------------------------------------------------


def test_rfc8785_section_3_2_2_example() -> None:
    text = r"""{
      "numbers": [333333333.33333329, 1E30, 4.50,
                  2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"""
    expected = (
        r'{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        r'"string":"€$\u000f\nA' + "'" + r'B\"\\\\\"/"}'
    )
    assert jcs(text) == expected.encode("utf-8")


def test_rfc8785_section_3_2_3_sorting_example() -> None:
    text = r"""{
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis"
    }"""
    order = list(json.loads(jcs(text)).values())
    assert order == [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ]


# cyberphone/json-canonicalization testdata: input -> output
REFERENCE_DATA = {
    "arrays": (
        r'[56, {"d": true, "10": null, "1": [ ]}]',
        '[56,{"1":[],"10":null,"d":true}]',
    ),
    "french": (
        r"""{"peach": "This sorting order", "péché": "is wrong according to French",
            "pêche": "but canonicalization MUST", "sin":   "ingnore locale"}""",
        '{"peach":"This sorting order","péché":"is wrong according to French",'
        '"pêche":"but canonicalization MUST","sin":"ingnore locale"}',
    ),
    "structures": (
        r"""{"1": {"f": {"f": "hi","F": 5} ,"\n": 56.0}, "10": { }, "": "empty",
            "a": { }, "111": [ { } ], "A": { }}""",
        r'{"":"empty","1":{"\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}',
    ),
    "unicode": (
        r'{"Unnormalized Unicode":"\u1e0d\u0307"}',
        '{"Unnormalized Unicode":"\u1e0d\u0307"}',
    ),
    "values": (
        r"""{"numbers": [1E30, 4.50, 333333333.33333329, 2e-3, 0.000000000000000000000000001],
            "escaping": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]}""",
        r'{"escaping":"€$\u000f\nA' + "'" + r'B\"\\\\\"/","literals":[null,true,false],'
        r'"numbers":[1e+30,4.5,333333333.3333333,0.002,1e-27]}',
    ),
    "weird": (
        r"""{"\u20ac": "Euro Sign", "1": "One", "\u0080": "Control\u007f",
            "\ud83d\ude02": "Smiley", "\u00f6": "Latin Small Letter O With Diaeresis",
            "\ufb33": "Hebrew Letter Dalet With Dagesh", "</script>": "Browser Challenge"}""",
        '{"1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f602":"Smiley","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    ),
}


@pytest.mark.parametrize("name", sorted(REFERENCE_DATA))
def test_reference_test_data(name: str) -> None:
    source, expected = REFERENCE_DATA[name]
    assert jcs(source) == expected.encode("utf-8")
    assert rfc8785.dumps(json.loads(source)) == expected.encode("utf-8")


# RFC 8785 Appendix B: IEEE 754 bits -> ECMAScript Number.prototype.toString
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def from_bits(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B)
def test_appendix_b_numbers(bits: str, expected: str) -> None:
    value = from_bits(bits)
    assert canonical_bytes(value) == expected.encode()
    assert canonical_bytes([value]) == f"[{expected}]".encode()
    assert canonical_bytes({"n": value}) == f'{{"n":{expected}}}'.encode()
    assert format_number(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1"),
        (-1.0, "-1"),
        (-0.0, "0"),
        (0.5, "0.5"),
        (100.0, "100"),
        (1e16, "10000000000000000"),
        (2.0**53, "9007199254740992"),
        (2.0**53 + 2, "9007199254740994"),
        (2.0**60, "1152921504606847000"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.5e21, "1.5e+21"),
        (1e300, "1e+300"),
        (0.0001, "0.0001"),
        (0.00001, "0.00001"),
        (1.5e-5, "0.000015"),
        (0.000001, "0.000001"),
        (1e-7, "1e-7"),
        (1.2345e-8, "1.2345e-8"),
        (1e-10, "1e-10"),
        (5e-324, "5e-324"),
        (333333333.3333333, "333333333.3333333"),
        (123456789012345.67, "123456789012345.67"),
        (0.1 + 0.2, "0.30000000000000004"),
    ],
)
def test_es6_number_formatting(value: float, expected: str) -> None:
    assert canonical_bytes(value) == expected.encode()
    assert canonical_bytes([value, -value]) == rfc8785.dumps([value, -value])


def test_integers_up_to_the_safe_limit() -> None:
    values = [0, 1, -1, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 10**15]
    assert canonical_bytes(values) == rfc8785.dumps(values)
    assert canonical_bytes(True) == b"true"
    assert canonical_bytes([False, None]) == b"[false,null]"


def test_string_escaping_matches_rfc8785() -> None:
    every_low = "".join(map(chr, range(0x100)))
    for text in (every_low, "\u2028\u2029\ufeff\ufffe\uffff", "\U0001f600\U0010ffff", ""):
        assert canonical_bytes(text) == rfc8785.dumps(text)
        assert canonical_bytes({text: text}) == rfc8785.dumps({text: text})
    # only these are escaped; DEL and "/" are written as they are
    escaped = canonical_bytes('\b\t\n\f\r"\\ \x00\x1f\x7f/')
    assert escaped == b'"\\b\\t\\n\\f\\r\\"\\\\ \\u0000\\u001f\x7f/"'
    assert canonical_bytes("\u2028") == '"\u2028"'.encode()


def test_keys_sort_by_utf16_code_units() -> None:
    # U+FFFF sorts after U+10000 (whose first code unit is 0xD800) in UTF-16.
    value: Any = {
        "\uffff": 1,
        "\U00010000": 2,
        "\ue000": 3,
        "a": {"\U0001f600": 1e-5, "\uff01": 2.0},
    }
    expected = '{"a":{"\U0001f600":0.00001,"\uff01":2},"\U00010000":2,"\ue000":3,"\uffff":1}'
    assert canonical_bytes(value) == expected.encode()
    assert canonical_bytes(value) == rfc8785.dumps(value)


def test_nested_outside_bmp_objects() -> None:
    value: Any = {
        "\U0001f600": {"\U0001f601": [1.0, 1e-6, {"\U0001f602": 2e-9}], "b": 1},
        "z": 1e-5,
    }
    assert canonical_bytes(value) == rfc8785.dumps(value)


def test_input_is_not_modified() -> None:
    value: dict[str, Any] = {
        "a": [1.0, 1e-5, {"\U0001f600": 2.0}],
        "b": (3.0,),
        "polygon": [12.5, 0.0, 7.0, 3.25] * 4,
    }
    before = copy.deepcopy(value)
    assert canonical_bytes(value) == rfc8785.dumps(value)
    assert value == before
    assert type(value["a"][0]) is float
    assert type(value["polygon"][1]) is float


def test_text_that_looks_like_a_placeholder() -> None:
    # Strings holding placeholder-like text next to values that need one.
    lookalike = "-27182818284590452353602874713500000000"
    values: list[Any] = [
        [1e-5, lookalike],
        {"k": lookalike, "n": 2e-7},
        {lookalike: [1e-5], "\U0001f600": lookalike},
        [lookalike + "1", 1e-5, 3e-5],
        lookalike,
    ]
    for value in values:
        assert canonical_bytes(value) == rfc8785.dumps(value)


class Colour(enum.IntEnum):
    RED = 1


class Shape(enum.StrEnum):
    BOX = "box"


def test_subclasses_are_written_as_their_base_type() -> None:
    value = {
        "int": Colour.RED,
        "str": Shape.BOX,
        Shape.BOX: "key",
        "dict": OrderedDict([("b", 1), ("a", 2)]),
        "tuple": (1, 2.0, (3e-5,)),
    }
    assert canonical_bytes(value) == rfc8785.dumps(value)  # type: ignore[arg-type]


# --- refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "loc", "message"),
    [
        (math.nan, "", "NaN is not a JSON number"),
        ({"payload": {"points": [0.5, 1.5, 2.5, math.inf]}}, "payload.points[3]", "Infinity"),
        ([[-math.inf]], "[0][0]", "-Infinity is not a JSON number"),
        ({"a": [2**53]}, "a[0]", r"9007199254740992 is outside the exact range"),
        ({"a": -(2**53)}, "a", r"-9007199254740992 is outside"),
        ({"big": 10**400}, "big", r"a 1329-bit integer is outside"),
        (
            {"x-y": {"": [0, "\ud800"]}},
            '["x-y"][""][1]',
            "string contains a lone surrogate U\\+D800",
        ),
        ({"k": {"\udfff": 1}}, "k", r"object key '\\udfff' contains a lone surrogate U\+DFFF"),
        ({"\U0001f600": ["\udc00"]}, '["\U0001f600"][0]', "lone surrogate U\\+DC00"),
        ({"a": {1: "one"}}, "a", "object key 1 is not a string"),
        ({"a": {None: "none"}}, "a", "object key None is not a string"),
        ({"a": {(1, 2): 3}}, "a", r"object key \(1, 2\) is not a string"),
        ({"a": {"b", "c"}}, "a", "set is not a JSON type"),
        ([b"bytes"], "[0]", "bytes is not a JSON type"),
        ([Decimal("1.5")], "[0]", "Decimal is not a JSON type"),
        ({"m": UserDict(a=1)}, "m", "UserDict is not a JSON type"),
        ({"\U0001f600": {"n": math.nan}}, '["\U0001f600"].n', "NaN"),
    ],
)
def test_refusals_name_the_path(value: Any, loc: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as excinfo:
        canonical_bytes(value)
    assert refusal(excinfo)[0] == loc
    assert rfc8785_refuses(value)


def rfc8785_refuses(value: Any) -> bool:
    try:
        rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError, TypeError):
        return True
    return False


def test_refusal_path_is_under_the_given_loc() -> None:
    with pytest.raises(InvalidInput, match=r"events\[3\]\.payload\.points\[1\]: NaN") as excinfo:
        canonical_bytes({"payload": {"points": [1, math.nan]}}, loc="events[3]")
    assert refusal(excinfo)[0] == "events[3].payload.points[1]"


def test_cycles_and_absurd_depth_are_refused() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(InvalidInput, match="nested too deeply or contains itself"):
        canonical_bytes(cycle)
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(InvalidInput, match="nested too deeply"):
        canonical_bytes(deep)


# --- property tests ------------------------------------------------------------------

finite_floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**70), 2**70).map(float),
    st.builds(lambda m, e: m * 10.0**e, st.integers(-9999, 9999), st.integers(-26, 26)),
    st.integers(0, 2**64 - 1).map(lambda bits: from_bits(f"{bits:016x}")).filter(math.isfinite),
)
characters = st.one_of(
    st.characters(max_codepoint=0x7F),
    st.characters(max_codepoint=0x1F),
    st.characters(min_codepoint=0x80, max_codepoint=0xFFFF, exclude_categories=["Cs"]),
    st.characters(min_codepoint=0xE000, max_codepoint=0xFFFF),
    st.characters(min_codepoint=0x10000),
)
texts = st.text(characters, max_size=12)
keys = st.text(characters, max_size=3)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
    finite_floats,
    texts,
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(keys, children, max_size=6),
    ),
    max_leaves=40,
)


def props(examples: int) -> settings:
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


@props(600)
@given(json_values)
def test_matches_rfc8785_package(value: Any) -> None:
    assert canonical_bytes(value) == rfc8785.dumps(value)


# Anything at all, refusable or not: surrogates, NaN, infinities, integers of any size.
wild_texts = st.text(
    st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010) | characters, max_size=6
)
wild_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), wild_texts),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(wild_texts, children, max_size=4)
    ),
    max_leaves=20,
)


@props(400)
@given(wild_values)
def test_refuses_what_rfc8785_package_refuses(value: Any) -> None:
    try:
        expected = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError):
        with pytest.raises(InvalidInput, match=r"lone surrogate|NaN|Infinity|exact range"):
            canonical_bytes(value)
    else:
        assert canonical_bytes(value) == expected


@props(1500)
@given(finite_floats)
def test_numbers_match_rfc8785_package(value: float) -> None:
    assert format_number(value) == rfc8785.dumps(value).decode()
    assert canonical_bytes([value, {"v": value}]) == rfc8785.dumps([value, {"v": value}])


coordinates = st.one_of(
    st.floats(min_value=0, max_value=5000).map(lambda x: round(x, 2)),
    st.integers(0, 5000).map(float),
    st.sampled_from([0.0, -0.0, 1e-4, 9.9e-5, 1e-7, 2.0**53, 2.0**53 + 2, 1e16, 1e21]),
    finite_floats,
)


@props(300)
@given(st.lists(coordinates, min_size=8, max_size=40), st.sampled_from([None, "x", 1, True]))
def test_float_arrays_match_rfc8785_package(array: list[Any], odd: Any) -> None:
    assert canonical_bytes(array) == rfc8785.dumps(array)
    assert canonical_bytes({"p": [array]}) == rfc8785.dumps({"p": [array]})
    mixed = [*array, odd]
    assert canonical_bytes(mixed) == rfc8785.dumps(mixed)


def test_float_arrays_with_refused_values() -> None:
    for bad, message in ((math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity")):
        array = [1.5] * 10 + [bad, 2.5]
        with pytest.raises(InvalidInput, match=rf"points\[10\]: {message} is not a JSON number"):
            canonical_bytes({"points": array})


def unsafe_ints(value: Any) -> bool:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return any(unsafe_ints(item) for item in value)
    return type(value) is int and abs(value) > MAX_SAFE_INTEGER


@props(200)
@given(json_values)
def test_canonical_bytes_parse_back_and_are_a_fixed_point(value: Any) -> None:
    encoded = canonical_bytes(value)
    parsed = parse_json(encoded, max_depth=1000)
    # An integral float of 2**53 or more is written as an integer, which reads back as a
    # Python int that canonical_bytes (like the rfc8785 package) refuses.
    assume(not unsafe_ints(parsed))
    assert canonical_bytes(parsed) == encoded


@settings(max_examples=200, deadline=None)
@given(json_values, st.sampled_from([math.nan, math.inf, 2**53, "\ud800", {1: 1}, b""]))
def test_a_bad_leaf_is_found_where_it_is(value: Any, bad: Any) -> None:
    wrapped = {"payload": {"items": [value, bad]}}
    with pytest.raises(InvalidInput) as excinfo:
        canonical_bytes(wrapped)
    assert refusal(excinfo)[0] == "payload.items[1]"


# --- parse_json ----------------------------------------------------------------------


def test_parse_accepts_plain_json() -> None:
    text = '{"a": [1, -0.0, 2.5e3, "x\\u00e9\\ud83d\\ude00", true, null], "b": {}}'
    assert parse_json(text) == {"a": [1, -0.0, 2500.0, "x\u00e9\U0001f600", True, None], "b": {}}
    assert parse_json(text.encode()) == parse_json(text)
    assert parse_json(bytearray(b"[1]")) == [1]  # type: ignore[arg-type]
    assert parse_json(' "\\\\ud800" ') == "\\ud800"  # an escaped backslash, not an escape


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{\n  "a": 1,\n    "id": 2, "id": 3}', "line 3 column 14: duplicate key 'id'"),
        (b'[{"id": 1, "\\u0069d": 2}]', "line 1 column 12: duplicate key 'id'"),
        (b'{"a": {"b": {"c": 1, "c": 1}}}', "line 1 column 22: duplicate key 'c'"),
        (b"[1, NaN]", "line 1 column 5: NaN is not a JSON number"),
        (b'{"x": Infinity}', "line 1 column 7: Infinity is not a JSON number"),
        (b"[\n-Infinity]", "line 2 column 1: -Infinity is not a JSON number"),
        (b'{"x": [1e400]}', "line 1 column 8: number 1e400 is out of range for a double"),
        (b"-1E+309", "line 1 column 1: number -1E\\+309 is out of range"),
        (b"[" + b"9" * 5000 + b"]", "line 1 column 2: integer with 5000 digits is too long"),
        (b'["\\ud800"]', r"line 1 column 3: lone surrogate \\ud800 in string"),
        (b'["ok", "ab\\uDC00"]', r"line 1 column 11: lone surrogate \\uDC00 in string"),
        (b'["\\ud83d\\u0041"]', r"line 1 column 3: lone surrogate \\ud83d in string"),
        (b'["\\ude00\\ud83d"]', r"line 1 column 3: lone surrogate \\ude00 in string"),
        (b'["\\ud83d"]', r"lone surrogate \\ud83d in string"),
        (b'{"\\ud800": 1}', r"line 1 column 3: lone surrogate \\ud800 in string"),
        (b'["a\xff"]', r"line 1 column 4: invalid UTF-8 \(byte 0xff at offset 3\)"),
        (b'"\xc0\xaf"', r"line 1 column 2: invalid UTF-8 \(byte 0xc0 at offset 1\)"),
        (b'"\xed\xa0\x80"', r"invalid UTF-8 \(byte 0xed at offset 1\)"),
        (b'["\xe2\x82"]', r"invalid UTF-8 \(byte 0xe2 at offset 2\)"),
        (b"\xef\xbb\xbf{}", "line 1 column 1: byte order mark is not allowed"),
        (b"", "line 1 column 1: expecting value"),
        (b"[1,\n 2", "line 2 column 3: expecting ',' delimiter"),
        (b"{} {}", "line 1 column 4: extra data"),
        (b'{"a" 1}', "line 1 column 6: expecting ':' delimiter"),
        (b'"tab\there"', "line 1 column 5: invalid control character"),
        (b"[01]", "line 1 column 3: expecting ',' delimiter"),
        (b"{'a': 1}", "line 1 column 2: expecting property name enclosed in double quotes"),
        (b"[" * 65 + b"]" * 65, "line 1 column 65: nesting deeper than 64 levels"),
        (b'{"a":' * 65 + b"1" + b"}" * 65, "line 1 column 321: nesting deeper than 64 levels"),
        (b"[" * 200_000, "line 1 column 65: nesting deeper than 64 levels"),
    ],
)
def test_parse_refusals(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as excinfo:
        parse_json(data)
    assert refusal(excinfo)[0] == "body"


def test_parse_refuses_a_raw_lone_surrogate_in_text() -> None:
    with pytest.raises(InvalidInput, match="line 2 column 3: lone surrogate U\\+D800"):
        parse_json('[\n "\ud800"]')


def test_parse_depth_limit() -> None:
    assert parse_json("[" * 64 + "]" * 64) is not None
    assert parse_json('{"a":' * 64 + "1" + "}" * 64) is not None
    with pytest.raises(InvalidInput, match="line 1 column 4: nesting deeper than 3 levels"):
        parse_json("[[[[]]]]", max_depth=3)
    assert parse_json("[[[1.5, 2]]]", max_depth=3) == [[[1.5, 2]]]
    with pytest.raises(InvalidInput, match="nesting deeper than 2 levels"):
        parse_json("[[[1.5, 2]]]", max_depth=2)
    with pytest.raises(InvalidInput, match="nesting deeper than 0 levels"):
        parse_json("[]", max_depth=0)
    assert parse_json("7", max_depth=0) == 7
    with pytest.raises(InvalidInput, match="body: nesting too deep to parse"):
        parse_json("[" * 100_000 + "]" * 100_000, max_depth=10**6)


def test_parse_error_is_at_the_given_loc() -> None:
    with pytest.raises(InvalidInput, match=r"^invalid input: line 7: line 1 column 8") as excinfo:
        parse_json('{"a":1,"a":2}', loc="line 7")
    assert refusal(excinfo) == ("line 7", "line 1 column 8: duplicate key 'a'")


@settings(max_examples=100, deadline=None)
@given(json_values, keys)
def test_parse_finds_any_duplicate_key(value: Any, key: str) -> None:
    inner = canonical_bytes({key: value}).decode()[1:-1]
    text = f'{{"x": [{{{inner}, {inner}}}]}}'
    with pytest.raises(InvalidInput, match=r"line 1 column \d+: duplicate key"):
        parse_json(text, max_depth=1000)
