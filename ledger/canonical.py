"""RFC 8785 (JCS) canonical JSON bytes, and a strict JSON parser for untrusted input.

Every hash in the ledger is over the bytes :func:`canonical_bytes` returns, so they must
equal those of any other RFC 8785 implementation; the tests check them byte for byte
against the ``rfc8785`` package. That package is pure Python; this module gets most of
the speed of the standard library's C encoder by handing it a value it will write in
JCS form already. JCS and ``json.dumps(sort_keys=True, ensure_ascii=False,
separators=(",", ":"))`` agree on everything except:

* numbers: JCS writes a float as ECMAScript's ``Number.prototype.toString`` does
  (RFC 8785 §3.2.2.3): ``1.0`` is ``1``, ``1e16`` is ``10000000000000000``,
  ``1e-05`` is ``0.00001``, ``1e-07`` is ``1e-7``. Both use the shortest digits that
  round-trip, so they differ only in layout, and only for integral floats and for
  magnitudes below 1e-4.
* key order: JCS sorts keys by UTF-16 code units (§3.2.3), Python by code points;
  the two orders differ only when a key has a character outside the BMP.

(String escaping is the same: both escape ``"``, ``\\``, ``\\b \\t \\n \\f \\r`` and
the other controls below U+0020 as lowercase ``\\u00xx``, and nothing else, U+007F
and U+2028/2029 included.)

So one pass over the value (:func:`_prepare`) validates it against I-JSON (RFC 7493)
and rewrites what Python would write differently: integral floats become ints, and
the rare values the C encoder cannot spell at all (floats below 1e-4 whose repr uses
another layout, objects with keys outside the BMP) are written here and stand in the
tree as placeholder integers that are swapped for their text afterwards
(:func:`_splice`). Only the containers on the way to a rewritten value are copied,
and long arrays of floats (polygon coordinates) are checked by a few passes in C.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from itertools import compress, count
from json.encoder import c_make_encoder  # type: ignore[attr-defined]
from json.encoder import encode_basestring as _encode_string  # as ensure_ascii=False
from typing import Any, NoReturn, TypeAlias

import rfc8785

from ledger.errors import InvalidInput

__all__ = ["MAX_SAFE_INTEGER", "JSONValue", "canonical_bytes", "format_number", "parse_json"]

JSONValue: TypeAlias = (
    bool | int | float | str | Sequence["JSONValue"] | Mapping[str, "JSONValue"] | None
)
"""A JSON value. The static type is covariant so that ``dict[str, list[int]]`` fits; at
run time arrays must be lists or tuples and objects dicts, as in the rfc8785 package."""

#: Integers beyond this are not exact as IEEE 754 doubles; I-JSON and the ``rfc8785``
#: package refuse them (write such numbers as strings).
MAX_SAFE_INTEGER = 2**53 - 1

# The C encoder with JCS separators and key order; keys are sorted by code point,
# which is JCS order whenever no key has a character outside the BMP (checked below).
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, check_circular=False, allow_nan=False, sort_keys=True, separators=(",", ":")
)


def compact_c_encoder(*, allow_nan: bool) -> Callable[[Any, int], Sequence[str]] | None:
    """What ``json.JSONEncoder.encode`` builds on every call for compact, key-sorted
    output without ASCII escaping or a circular-reference check, built once: the C
    encoder itself, called as ``"".join(encoder(value, 0))``. None where the C
    accelerator is missing. Without the circular check, a value that contains itself
    raises RecursionError."""
    if c_make_encoder is None:
        return None
    encoder: Callable[[Any, int], Sequence[str]] = c_make_encoder(
        None, _ENCODER.default, _encode_string, None, ":", ",", True, False, allow_nan
    )
    return encoder


_encode = compact_c_encoder(allow_nan=False)

_INF = float("inf")
_NON_BMP = re.compile("[\U00010000-\U0010ffff]")
_SURROGATE = re.compile("[\ud800-\udfff]")

# Placeholders for text written here: negative integers with a 30-digit prefix and an
# 8-digit index. No number written for an accepted value has more than 22 digits, so a
# match is either a placeholder or inside a string; _splice counts matches to tell.
_PLACEHOLDER_BASE = 271828182845904523536028747135 * 10**8
_PLACEHOLDER = re.compile(r"-271828182845904523536028747135(\d{8})")


class _Refusal(Exception):
    """A value RFC 8785 cannot represent. ``path`` collects the way to it, innermost
    first, while the exception travels up through the containers."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str | int] = []


class _Clash(Exception):
    """A string in the value contains placeholder text; the slow path is used instead."""


def canonical_bytes(value: JSONValue, *, loc: str = "") -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``value``.

    Raises :class:`InvalidInput`, with a field error whose ``loc`` is the JSON path of
    the offending part (under ``loc``), for what I-JSON does not allow: NaN and
    infinities, integers beyond ±(2**53 - 1), strings or keys with lone surrogates,
    keys that are not strings, and types that are not JSON (bool is not a number).
    """
    try:
        try:
            return _canonical_text(value).encode("utf-8")
        except _Clash:
            # Only a string holding placeholder text gets here: let the reference
            # implementation write it (the value has been validated already).
            return rfc8785.dumps(value)
    except _Refusal as e:
        raise InvalidInput.field(_join_path(loc, reversed(e.path)), e.message) from None
    except (UnicodeEncodeError, rfc8785.CanonicalizationError):
        path, message = _find_surrogate(value)
        raise InvalidInput.field(_join_path(loc, path), message) from None
    except RecursionError:
        message = "value is nested too deeply or contains itself"
        raise InvalidInput.field(loc, message) from None


def _canonical_text(value: Any) -> str:
    raw: list[str] = []
    prepared = _prepare(value, raw)
    text = _ENCODER.encode(prepared) if _encode is None else "".join(_encode(prepared, 0))
    return _splice(text, raw) if raw else text


def _placeholder(raw: list[str], text: str) -> int:
    raw.append(text)
    return -(_PLACEHOLDER_BASE + len(raw) - 1)


def _splice(text: str, raw: list[str]) -> str:
    """Put the texts in ``raw`` in place of their placeholders in ``text``."""
    found = 0

    def put(match: re.Match[str]) -> str:
        nonlocal found
        found += 1
        index = int(match[1])
        return raw[index] if index < len(raw) else match[0]

    text = _PLACEHOLDER.sub(put, text)
    # Each placeholder was written exactly once; any further match was inside a string.
    if found != len(raw):
        raise _Clash
    return text


def _prepare(value: Any, raw: list[str]) -> Any:
    """``value`` as the C encoder should see it: the same object if it can be written
    as it is, else a copy with the differences rewritten. Raises :class:`_Refusal`."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        return _check_int(value)
    if kind is float:
        return _number(value, raw)
    if kind is dict:
        return _prepare_object(value, raw)
    if kind is list or kind is tuple:
        return _prepare_array(value, raw)
    # Subclasses are written as their base type, as the rfc8785 package does.
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return _check_int(int(value))
    if isinstance(value, float):
        return _number(float(value), raw)
    if isinstance(value, dict):
        return _prepare_object(dict(value), raw)
    if isinstance(value, list | tuple):
        return _prepare_array(list(value), raw)
    raise _Refusal(f"{kind.__name__} is not a JSON type")


def _prepare_object(obj: dict[Any, Any], raw: list[str]) -> Any:
    try:
        keys = "".join(obj)
    except TypeError:
        key = next(k for k in obj if not isinstance(k, str))
        raise _Refusal(f"object key {key!r} is not a string") from None
    if not keys.isascii() and _NON_BMP.search(keys):
        return _placeholder(raw, _object_text(obj))
    out = obj
    for key, item in obj.items():
        kind = type(item)
        # Inline fast paths for what is written as it is.
        if kind is str or kind is bool or item is None:
            continue
        if kind is int and -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
            continue
        if kind is float and (1e-4 <= item < 1e16 or -1e16 < item <= -1e-4) and item % 1.0:
            continue
        try:
            new = _prepare_item(item, kind, raw)
        except _Refusal as e:
            e.path.append(key)
            raise
        if new is not item:
            if out is obj:
                out = dict(obj)
            out[key] = new
    return out


def _prepare_item(item: Any, kind: type, raw: list[str]) -> Any:
    """``_prepare`` of an object's or array's item, calling the handler of a nested
    object or array directly."""
    if kind is dict:
        return _prepare_object(item, raw)
    if kind is list:
        return _prepare_array(item, raw)
    return _prepare(item, raw)


def _prepare_array(array: list[Any] | tuple[Any, ...], raw: list[str]) -> Any:
    if len(array) >= 8 and type(array[0]) is float:
        fast = _prepare_coordinates(array)
        if fast is not None:
            return fast
    out: Any = array
    for index, item in enumerate(array):
        kind = type(item)
        if kind is float and (1e-4 <= item < 1e16 or -1e16 < item <= -1e-4) and item % 1.0:
            continue
        if kind is str or kind is bool or item is None:
            continue
        if kind is int and -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
            continue
        try:
            new = _prepare_item(item, kind, raw)
        except _Refusal as e:
            e.path.append(index)
            raise
        if new is not item:
            if out is array:
                out = list(array)
            out[index] = new
    return out


def _prepare_coordinates(array: list[Any] | tuple[Any, ...]) -> Any:
    """Fast path for arrays of non-negative floats (polygon coordinates), checked by a
    few passes in C instead of a loop in Python. None if the array is not of that kind."""
    try:
        # Raises TypeError unless every item is a float.
        integral = list(compress(count(), map(float.is_integer, array)))
    except TypeError:
        return None
    total = sum(array)  # NaN or an infinity makes it non-finite
    smallest = min(filter(None, array), default=1.0)  # ignoring zeros, which are integral
    if not (total - total == 0.0 and smallest >= 1e-4 and max(array) <= 2**53):
        return None
    if not integral:
        return array
    out = list(array)
    for index in integral:
        out[index] = int(array[index])
    return out


def _object_text(obj: dict[str, Any]) -> str:
    """An object with a key outside the BMP, written here with its keys in UTF-16
    order (surrogatepass only so that a lone surrogate reaches the final check)."""
    items = sorted(obj.items(), key=lambda item: item[0].encode("utf-16-be", "surrogatepass"))
    parts = []
    for key, item in items:
        try:
            parts.append(f"{_encode_string(key)}:{_canonical_text(item)}")
        except _Refusal as e:
            e.path.append(key)
            raise
    return "{" + ",".join(parts) + "}"


def _check_int(number: int) -> int:
    if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
        return number
    shown = str(number) if number.bit_length() <= 128 else f"a {number.bit_length()}-bit integer"
    raise _Refusal(f"{shown} is outside the exact range of JSON numbers, ±(2**53 - 1)")


def _number(number: float, raw: list[str]) -> float | int:
    """A finite float as the C encoder should see it to write its JCS form."""
    if number.is_integer():
        if -(2**53) <= number <= 2**53:
            return int(number)  # exact, and the same digits as the shortest form
        if -1e21 < number < 1e21:
            return int(format_number(number))  # shortest digits padded with zeros
        return number  # repr writes 1e+21 and beyond as ECMAScript does
    if number != number:
        raise _Refusal("NaN is not a JSON number")
    if number in (_INF, -_INF):
        raise _Refusal(f"{'-' if number < 0 else ''}Infinity is not a JSON number")
    if -1e-4 < number < 1e-4:
        text = format_number(number)
        if text != repr(number):
            return _placeholder(raw, text)
    return number


def format_number(number: float) -> str:
    """The RFC 8785 text of a finite float: ECMAScript's ``Number.prototype.toString``
    (ECMA-262 Number::toString, adopted by RFC 8785 §3.2.2.3), laid out from the
    shortest round-trip digits that ``repr`` gives."""
    if number == 0:
        return "0"
    sign = "-" if number < 0 else ""
    mantissa, _, exponent = repr(abs(number)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    if fraction == "0":
        fraction = ""
    digits = (whole + fraction).lstrip("0")
    significant = digits.rstrip("0")
    # value = 0.<significant> x 10**point
    point = len(digits) + int(exponent or 0) - len(fraction)
    k = len(significant)
    if k <= point <= 21:
        body = significant + "0" * (point - k)
    elif 0 < point <= 21:
        body = f"{significant[:point]}.{significant[point:]}"
    elif -6 < point <= 0:
        body = "0." + "0" * -point + significant
    else:
        e = point - 1
        head = significant[0] + ("." + significant[1:] if k > 1 else "")
        body = f"{head}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + body


def _find_surrogate(value: object) -> tuple[list[str | int], str]:
    """Where the first lone surrogate in ``value`` is (the error path only)."""
    stack: list[tuple[object, list[str | int]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            found = _SURROGATE.search(item)
            if found:
                return path, f"string contains a lone surrogate U+{ord(found[0]):04X}"
        elif isinstance(item, dict):
            for key in item:
                found = _SURROGATE.search(key)
                if found:
                    message = f"object key {key!r} contains a lone surrogate U+{ord(found[0]):04X}"
                    return path, message
            stack.extend((child, [*path, key]) for key, child in reversed(item.items()))
        elif isinstance(item, list | tuple):
            stack.extend((child, [*path, i]) for i, child in reversed(list(enumerate(item))))
    return [], "string contains a lone surrogate"


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _join_path(loc: str, parts: Any) -> str:
    """``payload.points[3]``; keys that are not identifiers as ``["a key"]``."""
    path = loc
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.match(part):
            path += f".{part}" if path else part
        else:
            path += f"[{json.dumps(part, ensure_ascii=False)}]"
    return path


# --- strict parsing -----------------------------------------------------------------
#
# The C parser does the work. Its hooks notice duplicate keys and NaN/Infinity, and a
# walk over the result notices what it lets through: numbers that overflow to inf,
# lone surrogate escapes (decoded to surrogate code points) and deep nesting (which
# it also stops, with RecursionError, at Python's recursion limit). Only then does a
# slow tokenizer go over the text to say where the problem is.


class _Suspect(Exception):
    """Raised by the decoder hooks; the exact place is then found by :func:`_locate`."""


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Suspect
    return obj


def _constant(name: str) -> NoReturn:
    raise _Suspect


_DECODER = json.JSONDecoder(object_pairs_hook=_object_pairs, parse_constant=_constant)


def parse_json(data: bytes | str, *, max_depth: int = 64, loc: str = "") -> Any:
    """Parse JSON from an untrusted source, strictly.

    Refused, with :class:`InvalidInput` whose field error is at ``loc`` (default
    ``"body"``) and whose message gives the line and column: invalid UTF-8, a byte
    order mark, syntax errors, duplicate object keys, ``NaN``/``Infinity``/
    ``-Infinity``, numbers too large for a double, lone surrogates (escaped or raw),
    and arrays and objects nested deeper than ``max_depth``.
    """
    where = loc or "body"
    text = _as_text(data, where)
    if text.startswith("\ufeff"):
        raise InvalidInput.field(where, "line 1 column 1: byte order mark is not allowed")
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as e:
        message = e.msg[:1].lower() + e.msg[1:]
        raise InvalidInput.field(where, f"line {e.lineno} column {e.colno}: {message}") from None
    except (_Suspect, RecursionError, ValueError) as e:
        # a hook fired, the nesting outran the C parser, or an integer was too long
        deep = isinstance(e, RecursionError)
        raise _located(text, max_depth, where, deep) from None
    try:
        if _parsed_ok(value, max_depth):
            return value
        deep = False
    except RecursionError:
        deep = True
    raise _located(text, max_depth, where, deep)


def _as_text(data: bytes | str, where: str) -> str:
    if isinstance(data, str):
        if not data.isascii():
            try:
                data.encode("utf-8")
            except UnicodeEncodeError as e:
                char = f"U+{ord(data[e.start]):04X}"
                raise InvalidInput.field(
                    where, f"{_position(data, e.start)}: lone surrogate {char}"
                ) from None
        return data
    raw = bytes(data)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        prefix = raw[: e.start].decode("utf-8")
        message = f"invalid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})"
        raise InvalidInput.field(where, f"{_position(prefix, len(prefix))}: {message}") from None


_NUMBERS = (int, float)


def _parsed_ok(value: Any, depth_left: int) -> bool:
    """No non-finite float (1e400 overflows to inf), no surrogate code point (from a
    lone surrogate escape), no nesting deeper than ``depth_left``."""
    kind = type(value)
    if kind is float:
        return bool(value - value == 0.0)
    if kind is str:
        return value.isascii() or not _SURROGATE.search(value)
    if kind is dict:
        keys = "".join(value)
        if not keys.isascii() and _SURROGATE.search(keys):
            return False
        items = value.values()
    elif kind is list:
        items = value
        # All-number arrays (coordinates) are checked in C: a finite sum means no inf/NaN.
        if value and type(value[0]) in _NUMBERS:
            try:
                total = sum(value)
            except TypeError:
                pass
            else:
                if total - total == 0:
                    return depth_left > 0
    else:
        return True
    if depth_left <= 0:
        return False
    for item in items:
        kind = type(item)
        if kind is float:
            if item - item != 0.0:
                return False
        elif kind is str:
            if not item.isascii() and _SURROGATE.search(item):
                return False
        elif (kind is dict or kind is list) and not _parsed_ok(item, depth_left - 1):
            return False
    return True


def _located(text: str, max_depth: int, where: str, deep: bool) -> InvalidInput:
    """The error for a text the fast path refused, with the position of the problem.
    ``deep``: Python's recursion limit was hit (only with a very large ``max_depth``)."""
    found = _locate(text, max_depth)
    if found is None:
        return InvalidInput.field(where, "nesting too deep to parse" if deep else "malformed JSON")
    pos, message = found
    return InvalidInput.field(where, f"{_position(text, pos)}: {message}")


def _position(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    column = pos - text.rfind("\n", 0, pos)
    return f"line {line} column {column}"


_TOKEN = re.compile(
    r"""(?P<space>[ \t\n\r]*)
    (?:
        (?P<string>"[^"\\]*(?:\\.[^"\\]*)*")
      | (?P<number>-?(?:0|[1-9][0-9]*)(?P<float>(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?))
      | (?P<word>-?[A-Za-z]+)
      | (?P<punct>[][{}:,])
    )""",
    re.VERBOSE,
)
_STRING_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)


def _locate(text: str, max_depth: int) -> tuple[int, str] | None:
    """Position and description of the first refused construct in ``text``, or None.

    A plain tokenizer, used only once the fast parse has found a problem: it reports
    duplicate keys, non-finite numbers, over-long integers, lone surrogates and
    nesting beyond ``max_depth``, and gives up quietly at a syntax error."""
    frames: list[set[str] | None] = []  # an object's keys so far, or None for an array
    expect_key = False
    pos = 0
    while match := _TOKEN.match(text, pos):
        start, pos = match.end("space"), match.end()
        if punct := match["punct"]:
            if punct in "[{":
                if len(frames) >= max_depth:
                    return start, f"nesting deeper than {max_depth} levels"
                frames.append(set() if punct == "{" else None)
                expect_key = punct == "{"
            elif punct in "]}":
                if not frames:
                    return None
                frames.pop()
                expect_key = False
            elif punct == ",":
                expect_key = bool(frames) and frames[-1] is not None
            else:
                expect_key = False
        elif (token := match["string"]) is not None:
            offset = _lone_surrogate_escape(token)
            if offset is not None:
                escape = token[offset : offset + 6]
                return start + offset, f"lone surrogate {escape} in string"
            keys = frames[-1] if frames else None
            if expect_key and keys is not None:
                try:
                    key = json.loads(token)
                except ValueError:
                    return None
                if key in keys:
                    return start, f"duplicate key {key!r}"
                keys.add(key)
                expect_key = False
        elif (token := match["number"]) is not None:
            if match["float"]:
                if float(token) in (_INF, -_INF):
                    return start, f"number {token} is out of range for a double"
            else:
                limit = sys.get_int_max_str_digits()
                if limit and len(token.lstrip("-")) > limit:
                    return start, f"integer with {len(token.lstrip('-'))} digits is too long"
        elif match["word"] in ("NaN", "Infinity", "-Infinity"):
            return start, f"{match['word']} is not a JSON number"
    return None


def _lone_surrogate_escape(token: str) -> int | None:
    """Offset in a JSON string token of a ``\\uXXXX`` surrogate escape that is not half
    of a high-low pair, or None."""
    high: int | None = None  # offset of a high surrogate escape waiting for its pair
    high_end = 0
    for match in _STRING_ESCAPE.finditer(token):
        unit = int(match[1], 16) if match[1] else -1
        if high is not None:
            if 0xDC00 <= unit <= 0xDFFF and match.start() == high_end:
                high = None
                continue
            return high
        if 0xD800 <= unit <= 0xDBFF:
            high, high_end = match.start(), match.end()
        elif 0xDC00 <= unit <= 0xDFFF:
            return match.start()
    return high
