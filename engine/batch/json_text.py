"""One JSON text (a line of JSON Lines, an item of a JSON array, the case given to decide) read
within :class:`~vedtak.batch.input_limits.Limits`: never an exception for bad data, always a reason.

Numbers with a fraction or an exponent are exact Decimals; a number no int or Decimal can hold is
kept as a :class:`~vedtak.evaluation.cases.BigNumber`. A key given twice in one object is refused (JSON would
keep the last silently), found cheaply: only a text with more colons than keys is decoded again.

A line is read by msgspec first (a study-grant line, checks included, in a third of the standard
library's time; ``benchmarks/bench_parse.py``), and by the standard library whenever the fast reading
might differ from it: msgspec refuses the text, or the text could break a limit, repeat a key or hold
an escaped surrogate. The result is the same either way (``tests/test_fast_parse.py`` checks that
differentially); :func:`parse_json_reference` is the standard library's reading alone.
"""

from __future__ import annotations

import codecs
import json
import re
import sys
from decimal import Decimal, InvalidOperation

import msgspec

from ..evaluation.cases import LONE_SURROGATE, BigNumber, shown
from .input_limits import DEFAULT, MAX_DEPTH, Limits

BOM = codecs.BOM_UTF8

_LONE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # a JSON escape that may be a lone surrogate
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)  # a string (skipped) or a bracket
_SURROGATE_BYTES = re.compile("[\udc80-\udcff]")  # bytes that are not UTF-8, as surrogateescape keeps them
_MAX_INT_DIGITS = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 4300


def _big_int(text: str):
    return int(text) if len(text) <= _MAX_INT_DIGITS else BigNumber(text)


def _big_float(text: str):
    try:
        return Decimal(text)
    except (InvalidOperation, ValueError):
        return BigNumber(text)


def _too_deep(text: str, limit: int) -> bool:
    """Whether ``text`` nests deeper than ``limit``. Brackets inside strings do not count."""
    depth = 0
    for m in _BRACKET.finditer(_STRING.sub('""', text) if '"' in text else text):
        if m.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _where(path: str) -> str:
    return f" at {path}" if path else ""


def problem(value, limits: Limits = DEFAULT, path: str = "") -> str | None:
    """Why a parsed case breaks a limit or holds something that is not text, or None.

    Walks the value without recursion: strings (values and keys) for lone surrogates and length,
    lists for their length.
    """
    stack = [(value, path)]
    while stack:
        v, at = stack.pop()
        cls = v.__class__
        if cls is str:
            if len(v) > limits.string_chars:
                return f"a string of {len(v):,} characters{_where(at)}, over the limit string_chars={limits.string_chars}"
            if not v.isascii() and LONE_SURROGATE.search(v):
                return f"a lone surrogate{_where(at)}: a string must be Unicode text"
        elif cls is dict:
            for k, x in v.items():
                name = shown(k, 60)
                kat = f"{at}.{name}" if at else name
                if len(k) > limits.string_chars:
                    return (f"a key of {len(k):,} characters{_where(at)}, over the limit "
                            f"string_chars={limits.string_chars}")
                if not k.isascii() and LONE_SURROGATE.search(k):
                    return f"a lone surrogate in the key {kat}: a key must be Unicode text"
                stack.append((x, kat))
        elif cls is list:
            if len(v) > limits.list_items:
                return f"a list of {len(v):,} items{_where(at)}, over the limit list_items={limits.list_items}"
            stack.extend((x, f"{at}[{i}]") for i, x in enumerate(v))
    return None


def parse_json(text: str, limits: Limits = DEFAULT, depth: int | None = None):
    """``(value, None)`` for JSON text within the limits, else ``(None, why)``; never raises.

    Numbers with a fraction or an exponent are exact Decimals; a number no int or Decimal can hold
    is kept as a :class:`~vedtak.evaluation.cases.BigNumber`, for validation to reject its field. The costly
    checks run only on a line that could break a limit: one with more brackets than the depth
    limit, a possible surrogate escape, or more characters than a string or list may have.
    """
    return _parse(text, limits, limits.depth if depth is None else depth,
                  min(limits.string_chars, 2 * limits.list_items))


_decoder = json.JSONDecoder(parse_float=Decimal)  # made once: json.loads makes one per call
_decoder_big = json.JSONDecoder(parse_float=_big_float, parse_int=_big_int)
_decode, _raw_decode = _decoder.decode, _decoder.raw_decode
_decode_big, _raw_decode_big = _decoder_big.decode, _decoder_big.raw_decode


class _Twice(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _no_twice(pairs: list) -> dict:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set = set()
        for k, _ in pairs:
            if k in seen:
                raise _Twice(k)
            seen.add(k)
    return value


_decode_pairs = json.JSONDecoder(parse_float=_big_float, parse_int=_big_int, object_pairs_hook=_no_twice).decode


def _keys(value) -> int:
    """How many keys the objects in ``value`` hold, all levels together."""
    n, stack = 0, [value]
    while stack:
        v = stack.pop()
        if v.__class__ is dict:
            n += len(v)
            stack.extend(x for x in v.values() if x.__class__ in (dict, list))
        elif v.__class__ is list:
            stack.extend(x for x in v if x.__class__ in (dict, list))
    return n


def _duplicate_key(text: str, value) -> str | None:
    """Why ``value``, decoded from ``text``, is not what the text says: a key given twice in one object
    (JSON keeps only the last). Cheap for a case without one: every key is followed by a colon, so a
    text with no more colons than the value has keys cannot repeat one; only other texts are decoded
    again, noting every key."""
    colons = text.count(":")
    if colons <= (len(value) if value.__class__ is dict else 0) or colons <= _keys(value):
        return None
    try:
        _decode_pairs(text)
    except _Twice as exc:
        return f"the key {shown(str(exc.key), 60)} appears twice in one object: a case gives each field once"
    except (ValueError, ArithmeticError, RecursionError):  # pragma: no cover - the text was decoded before
        return None
    return None


def _message(exc: json.JSONDecodeError, where: str) -> str:
    """The decoder's message with its location (its own messages may end in "at")."""
    return f"{exc.msg}{'' if exc.msg.endswith(' at') else ' at'} {where}"


def parse_json_reference(text: str, limits: Limits = DEFAULT, depth: int | None = None):
    """:func:`parse_json` read by the standard library alone: what the fast reading must equal."""
    return _parse_reference(text, limits, limits.depth if depth is None else depth,
                            min(limits.string_chars, 2 * limits.list_items))


# msgspec hands the hook each number literal with a fraction or an exponent exactly as written, as
# the standard library hands parse_float; it reads every integer as an exact int (and refuses one of
# more than 4 300 characters, sign included, which then goes to the standard library). Needs msgspec
# >= 0.19: before it, some 65-bit integers were misread (msgspec issue 701).
_fast_decode = msgspec.json.Decoder(float_hook=Decimal).decode


def _parse(text: str, limits: Limits, depth: int, walk_above: int):
    """:func:`parse_json` with its thresholds worked out (the path of every JSON line and case).

    msgspec reads the text, and its value is the answer, only when the standard library would have
    run none of its costly checks on it: no more characters than a string or list may have, no
    backslash that may start an escaped surrogate, no more colons than keys (else a key may repeat,
    and msgspec keeps the last silently), no more brackets than the depth limit. An object with no
    more colons than keys and no ``[`` needs no bracket count: its inner objects, if any, are empty,
    so it is at most 2 deep. msgspec refuses NaN, Infinity, lone surrogates, a raw surrogate in a
    library caller's str, nesting past the recursion limit and every syntax error; such a text, and
    every other doubt, is read by the standard library, whose value or reason is then the answer.
    """
    if len(text) <= walk_above and ("\\" not in text or not _LONE_ESCAPE.search(text)):
        try:
            value = _fast_decode(text)
        except Exception:  # msgspec refused it (or Decimal an exponent): the standard library says why
            return _parse_reference(text, limits, depth, walk_above)
        colons = text.count(":")
        keys = len(value) if value.__class__ is dict else 0
        if colons <= keys and depth >= 2 and "[" not in text:  # a flat object (or a scalar)
            return value, None
        # past MAX_DEPTH (a Limits built in code may allow more) the decoders' own recursion limits decide
        brackets = text.count("{") + text.count("[")
        if brackets <= min(depth, MAX_DEPTH) and (colons <= keys or colons <= _keys(value)):
            return value, None
    return _parse_reference(text, limits, depth, walk_above)


def _parse_reference(text: str, limits: Limits, depth: int, walk_above: int):
    """:func:`parse_json_reference` with its thresholds worked out."""
    if text.count("{") + text.count("[") > depth and _too_deep(text, depth):
        return None, f"nested deeper than the limit depth={limits.depth}"
    try:
        try:
            value = _decode(text)
        except json.JSONDecodeError:
            raise
        except (ValueError, ArithmeticError):  # an int of 4 300+ digits, an exponent past any decimal
            value = _decode_big(text)
    except json.JSONDecodeError as exc:
        at = f"line {exc.lineno} column {exc.colno}" if exc.lineno > 1 else f"column {exc.colno}"
        return None, f"not JSON: {_message(exc, at)}"
    except RecursionError:
        return None, f"nested deeper than the limit depth={limits.depth}"
    except (ValueError, ArithmeticError) as exc:  # pragma: no cover - the second reading keeps numbers
        return None, f"not JSON: {shown(str(exc), 80)}"
    if len(text) > walk_above or ("\\u" in text and _LONE_ESCAPE.search(text)):
        why = problem(value, limits)
        if why:
            return None, why
    if text.count(":") > (len(value) if value.__class__ is dict else 0):  # else no key can repeat
        why = _duplicate_key(text, value)
        if why:
            return None, why
    return value, None


def read_document(data: bytes, limits: Limits = DEFAULT):
    """One case given whole (``vedtak decide``): ``(value, None)`` or ``(None, why)``; never raises.
    A caller reading a stream need read no more than ``limits.line_bytes + 1`` bytes."""
    if len(data) > limits.line_bytes:
        return None, f"the case is more than {limits.line_bytes:,} bytes, over the limit line_bytes={limits.line_bytes}"
    try:
        text = data.removeprefix(BOM).decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (byte {exc.start + 1})"
    return parse_json(text, limits)


# -- the items of a JSON array, one at a time ---------------------------------------------

_WS = re.compile(r"[ \t\n\r]*")


def _skip_ws(text: str, pos: int) -> int:
    return _WS.match(text, pos).end()


def _at(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    return f"line {line} column {pos - (text.rfind(chr(10), 0, pos) + 1) + 1}"


def _element(text: str, pos: int, limits: Limits, depth: int, walk_above: int):
    """One element of an array at ``pos``: ``(value, why, end)``; ``end`` is None when the text from
    ``pos`` on cannot be read."""
    try:
        try:
            value, end = _raw_decode(text, pos)
        except json.JSONDecodeError:
            raise
        except (ValueError, ArithmeticError):  # an int of 4 300+ digits, an exponent past any decimal
            value, end = _raw_decode_big(text, pos)
    except json.JSONDecodeError as exc:
        return None, f"not JSON: {_message(exc, _at(text, exc.pos))}", None
    except RecursionError:
        end = _element_end(text, pos)
        return None, f"nested deeper than the limit depth={limits.depth}", end
    span = text[pos:end]
    if span.count("{") + span.count("[") > depth and _too_deep(span, depth):
        return None, f"nested deeper than the limit depth={limits.depth}", end
    if not span.isascii() and _SURROGATE_BYTES.search(span):
        return None, f"not UTF-8 text at {_at(text, pos + _SURROGATE_BYTES.search(span).start())}", end
    why = _duplicate_key(span, value)
    if why is None and (len(span) > walk_above or ("\\u" in span and _LONE_ESCAPE.search(span))):
        why = problem(value, limits)
    return (None, why, end) if why else (value, None, end)


def _element_end(text: str, pos: int) -> int | None:
    """Where the element nested too deep for the decoder at ``pos`` ends (its brackets closed), or None."""
    depth = 0
    for m in _TOKEN.finditer(text, pos):
        c = m.group()
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                return m.end()
            if depth < 0:
                return None
    return None
