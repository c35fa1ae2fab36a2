"""Issue 14, item 4: every JSON line and case is read by msgspec where that is safe, and the answer
is exactly the standard library's — the same value with the same types (int or Decimal, and the
Decimal's own digits and exponent), or for a bad text the same reason, word for word.

Each test compares :func:`vedtak.batch.json_text.parse_json` (the fast path) with
:func:`vedtak.batch.json_text.parse_json_reference` (the standard library's reading alone) on a class of
texts: study-grant cases, arbitrary JSON, mutated lines and the fixed hostile cases.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vedtak.batch import inputs, json_text
from vedtak.batch.input_limits import DEFAULT, Limits
from vedtak.batch.json_text import parse_json, parse_json_reference, read_document

from workload import generate  # benchmarks/, put on the path by conftest

CASES = [json.dumps(c) for c in generate(500, seed=14)]
SMALL = Limits(string_chars=12, depth=3, list_items=4)  # limits a short text can break
LIMITS = st.sampled_from([DEFAULT, SMALL, Limits(depth=1), Limits(depth=2), Limits(list_items=1, string_chars=3)])
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same(a, b) -> bool:
    """Equal values of identical types at every level: Decimal('1.0'), Decimal('1.00') and 1 all differ,
    and so do the orders of an object's keys."""
    stack = [(a, b)]
    while stack:  # without recursion: a text may nest as deep as the decoders allow
        a, b = stack.pop()
        if type(a) is not type(b):
            return False
        if type(a) is dict:
            if list(a) != list(b) or any(type(k) is not type(j) for k, j in zip(a, b)):
                return False
            stack.extend((a[k], b[k]) for k in a)
        elif type(a) is list:
            if len(a) != len(b):
                return False
            stack.extend(zip(a, b))
        elif type(a) is Decimal:
            if a.as_tuple() != b.as_tuple():
                return False
        elif type(a) is float:
            if repr(a) != repr(b):
                return False
        elif a != b:
            return False
    return True


def agree(text: str, limits: Limits = DEFAULT) -> tuple:
    """Both readings of ``text``; fails unless they are the same (the value's types included)."""
    fast, ref = parse_json(text, limits), parse_json_reference(text, limits)
    assert fast[1] == ref[1], (text, fast, ref)
    assert same(fast[0], ref[0]), (text, fast, ref)
    return fast


# -- JSON texts of every shape, written with any spacing and any number literal ---------------------

_WS = st.sampled_from(["", "", " ", "\n", "\t", "\r\n", "  "])
_NUMBER = st.one_of(
    st.integers().map(str),
    st.integers(-10 ** 60, 10 ** 60).map(str),
    st.sampled_from([str(2 ** 63 - 1), str(-2 ** 63), str(2 ** 64 - 1), str(2 ** 64), str(-2 ** 63 - 1),
                     str(2 ** 64 + 10 ** 18 + 1), "19999999999999999999", "19933688932870350000",
                     "9" * 4300, "-" + "9" * 4300, "9" * 4301, "-0", "-0.0", "0e0", "1E+34", "1e400", "-1e-400",
                     "1e999999999999999999999", "215000.50", "0.1000000000000000000000001", "1.0", "1.00"]),
    st.from_regex(r"-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,40})?([eE][-+]?[0-9]{1,22})?", fullmatch=True),
    st.decimals(allow_nan=False, allow_infinity=False).map(str).filter(lambda s: s[-1:] != "."),
)
_TEXT = st.text(st.characters(blacklist_categories=()), max_size=12)  # surrogates and controls too
_STRING = st.one_of(st.builds(json.dumps, _TEXT, ensure_ascii=st.booleans()),
                    st.sampled_from(['"a:b"', '"{["', '"\\u003a"', '"\\ud800"', '"\\udc00x"', '"\\ud83d\\ude00"',
                                     '"\\/"', '"\\u0000"', '"é"', '"\\u0061"']))
_KEY = st.one_of(st.sampled_from(['"a"', '"b"', '"\\u0061"', '"a:"', '"\\ud800"']), _STRING)  # keys often repeat
_LEAF = st.one_of(st.sampled_from(["null", "true", "false", "NaN", "Infinity", "-Infinity"]), _NUMBER, _STRING)


def _containers(children):
    items = st.lists(st.tuples(_WS, children, _WS), max_size=5)
    array = items.map(lambda xs: "[" + ",".join(a + x + b for a, x, b in xs) + "]")
    members = st.lists(st.tuples(_KEY, _WS, children, _WS), max_size=5)
    obj = members.map(lambda ms: "{" + ",".join(f"{k}{a}:{b}{v}" for k, a, v, b in ms) + "}")
    return st.one_of(array, obj)


JSON_TEXT = st.builds(lambda a, t, b: a + t + b, _WS, st.recursive(_LEAF, _containers, max_leaves=25), _WS)
# texts msgspec is meant to answer alone: no NaN, no surrogates, keys that rarely repeat
_PLAIN = st.one_of(st.sampled_from(["null", "true", "false"]), _NUMBER,
                   st.builds(json.dumps, st.text(st.characters(exclude_categories=["Cs"]), max_size=12),
                             ensure_ascii=st.booleans()))
CLEAN_TEXT = st.recursive(_PLAIN, lambda children: st.one_of(
    st.lists(children, max_size=5).map(lambda xs: "[" + ", ".join(xs) + "]"),
    st.dictionaries(st.text("abcdefgh", min_size=1, max_size=4), children, max_size=5).map(
        lambda d: "{" + ", ".join(f'"{k}": {v}' for k, v in d.items()) + "}")), max_leaves=25)


@st.composite
def mutated(draw, base=st.one_of(st.sampled_from(CASES), JSON_TEXT, CLEAN_TEXT)) -> str:
    """A valid text with a few characters inserted, deleted or replaced, cut short, or a piece of
    it copied elsewhere (which often repeats a key)."""
    text = draw(base)
    chars = st.one_of(st.sampled_from(list('{}[]:,"\\u d8e0E-+.1 N\x00\x1f\x7f\ufeff٢\ud800é\n')), st.characters())
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 12)))
        op = draw(st.integers(0, 4))
        if op == 0:
            text = text[:i] + draw(chars) + text[i:]
        elif op == 1:
            text = text[:i] + text[j:]
        elif op == 2:
            text = text[:i] + draw(chars) + text[i + 1:]
        elif op == 3:
            text = text[:i]
        else:
            k = draw(st.integers(0, len(text)))
            text = text[:k] + text[i:j] + text[k:]
    return text


# -- the properties -------------------------------------------------------------------------------------

@SETTINGS
@given(i=st.integers(0, len(CASES) - 1), limits=LIMITS, newline=st.sampled_from(["", "\n", "\r\n"]))
def test_a_study_grant_case_reads_the_same_on_both_paths(i, limits, newline):
    """A generated study-grant line (as a JSON Lines reader has it, with its line end) gives the same
    dict, with ints and bools of the same types, on the fast and the standard path, under any limits."""
    value, why = agree(CASES[i] + newline, limits)
    if limits == DEFAULT:
        assert why is None and value == json.loads(CASES[i])


@SETTINGS
@given(text=st.one_of(JSON_TEXT, CLEAN_TEXT), limits=LIMITS)
def test_any_json_text_reads_the_same_on_both_paths(text, limits):
    """Any JSON text — nested lists and objects, repeated and escaped keys, colons and brackets inside
    strings, unicode and surrogates, ints of any size, decimals with many digits and exponents,
    NaN and infinities — gives the same value or the same reason on both paths, under any limits."""
    agree(text, limits)


@SETTINGS
@given(text=mutated(), limits=LIMITS)
def test_a_mutated_line_reads_the_same_on_both_paths(text, limits):
    """A valid line with characters inserted, deleted or replaced, cut short, or a piece copied
    elsewhere is read alike on both paths: the same value, or the same reason with its column."""
    agree(text, limits)


@settings(max_examples=60, deadline=None)
@given(data=st.lists(st.one_of(st.sampled_from(CASES), mutated(), JSON_TEXT).map(
    lambda t: t.encode("utf-8", "surrogatepass")), min_size=1, max_size=15), bom=st.booleans())
def test_a_json_lines_file_reads_the_same_items_on_both_paths(tmp_path_factory, data, bom):
    """A JSON Lines file of good, mutated and arbitrary lines (one perhaps after a byte-order mark,
    some not UTF-8) yields the same items — number, case or reason — through inputs.read with the
    fast path as with the standard library's alone."""
    path = tmp_path_factory.mktemp("lines") / "c.jsonl"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + b"\n".join(x.replace(b"\n", b" ") for x in data) + b"\n")
    fast = list(inputs.read(str(path), {}, "jsonl"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(inputs, "_parse", json_text._parse_reference)
        ref = list(inputs.read(str(path), {}, "jsonl"))
    assert [(x.line, x.error) for x in fast] == [(x.line, x.error) for x in ref]
    assert all(same(x.raw, y.raw) for x, y in zip(fast, ref))


# -- the fixed hostile cases -----------------------------------------------------------------------------

GOOD = CASES[0]
HOSTILE = [
    '{"case_id": 1, "case_id": 2}', GOOD[:-1] + ', "income": 1}', '{"x": {"a": 1, "b": {"c": 1, "c": 2}}}',
    '{"a": 1, "\\u0061": 2}', '{"a:": 1, "a:": 2}', '{"t": "10:30:00", "a": 1}', '[{"a": ":"}, {"a": 1}]',
    GOOD[:-1] + ', "income": NaN}', GOOD[:-1] + ', "income": Infinity}', GOOD[:-1] + ', "income": -Infinity}',
    GOOD[:-1] + ', "income": -0}', GOOD[:-1] + ', "income": -0.0}', GOOD[:-1] + ', "income": 1e400}',
    GOOD[:-1] + ', "income": 1e999999999999999999999}', GOOD[:-1] + ', "income": 12345678901234567890123456789012345}',
    GOOD[:-1] + ', "income": 215000.50}', GOOD[:-1] + ', "income": 0.1000000000000000000000001}',
    GOOD[:-1] + f', "income": {"9" * 5000}}}', GOOD[:-1] + f', "income": -{"9" * 4300}}}',
    GOOD[:-1] + ', "income": 19999999999999999999}', GOOD[:-1] + ', "income": 18446744073709551616}',
    '{"a": "\\ud800"}', '{"\\udfff": 1}', '{"a": "\\ud83d\\ude00"}', '{"a": "\\uD800\\u0041"}', '{"a": "\ud800"}',
    "[" * 33 + "]" * 33, "[" * 32 + "]" * 32, '{"a":' * 33 + "1" + "}" * 33, "[" * 5000, "[" * 900 + "]" * 900, "[" * 100_000 + "]" * 100_000,
    '{"note": "' + "[" * 100 + '"}', "\ufeff" + GOOD, '{"income": "٢١٥٠٠٠"}', '{"income": ٢١٥٠٠٠}',
    '{"a": "' + "x" * 65_536 + '"}', '{"a": "' + "x" * 65_537 + '"}', '{"a": [' + ",".join(["1"] * 10_001) + "]}",
    '{"a": "\x01"}', '{"a": 1,}', "[1,]", "", "   ", "\x0c{}", "\u00a0{}", "{} x", "{}{}", "1.", ".5", "01", "+1",
    "-", "1e", "1e+", '{"a": "\\x"}', '{"a": "\\/"}', '{"a": "\\u0000"}', '{"a" 1}', "nul", "tru", '"\x7f"',
    '{"a": {}}', '{"a": {}, "b": {}}', "{}", "[]", "null", "1", '"s"', "1e0400", "-0e0", "1E+00", "-0.0E-0",
    "1." + "5" * 5000, "1e" + "9" * 25, "1e-0000000000000000000000400", "-a", "2e-", '{"\\u00e9": 1, "é": 2}',
    "{1:2}", '{"a":1 "b":2}', "[1 2]", '{"a"::1}', "[1]]", '{"a":1}}', "'a'", '{"a":true1}', "true false", '"a"\x00',
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("limits", [DEFAULT, SMALL, Limits(depth=1), Limits(depth=100_000)],
                         ids=["default", "small", "depth1", "depth_past_max"])
def test_each_hostile_case_reads_the_same_on_both_paths(text, limits):
    """Duplicate keys (also one spelled with an escape), NaN, infinities, -0, 1e400, exponents past any
    decimal, 35-digit and 5 000-digit numbers, 65-bit ints, lone surrogates (escaped or raw), deep
    nesting (also under a depth limit past MAX_DEPTH, built in code), brackets inside strings, a byte-order mark, digits other than 0-9, strings and lists at
    and past their limits, and syntax errors: the same value or reason on both paths."""
    agree(text, limits)


def test_the_fast_path_reads_a_case_without_the_standard_library(monkeypatch):
    """A study-grant line, one with a Decimal, and one with a nested object and list are answered by
    msgspec alone (the standard library is never asked), with Decimal digits as written."""
    monkeypatch.setattr(json_text, "_parse_reference", lambda *a: pytest.fail("the standard library was asked"))
    assert parse_json(GOOD + "\n")[0] == json.loads(GOOD)
    value = parse_json('{"income": 215000.50, "rate": 1E+2, "n": 12345678901234567890123}')[0]
    assert [str(v) for v in value.values()] == ["215000.50", "1E+2", "12345678901234567890123"]
    assert type(value["n"]) is int and type(value["rate"]) is Decimal
    assert parse_json('{"a": {"b": [1, 2]}, "t": "10-30"}') == ({"a": {"b": [1, 2]}, "t": "10-30"}, None)


@pytest.mark.parametrize("text, why", [
    ('{"case_id": 1, "case_id": 2}', "the key case_id appears twice in one object: a case gives each field once"),
    ('{"a": "\\ud800"}', "a lone surrogate at a: a string must be Unicode text"),
    ("[" * 40 + "]" * 40, "nested deeper than the limit depth=32"),
    ('{"a": 1,}', "not JSON: Expecting property name enclosed in double quotes at column 9"),
])
def test_a_text_msgspec_cannot_vouch_for_gets_the_standard_librarys_reason(text, why):
    """A repeated key, an escaped lone surrogate, nesting past the limit and a syntax error are each
    answered by the standard library's reading, with its reason word for word."""
    assert parse_json(text) == (None, why)


def test_decide_reads_a_case_file_alike_on_both_paths():
    """``vedtak decide`` reads a whole case file (bytes, perhaps after a byte-order mark) through the
    same fast path: a case, a Decimal, a repeated key and NaN read as the standard library reads them."""
    for text in [GOOD, '{"a": 0.10}', '{"a": 1, "a": 2}', '{"a": NaN}']:
        for data in (text.encode(), b"\xef\xbb\xbf" + text.encode()):
            fast = read_document(data)
            ref = parse_json_reference(data.removeprefix(b"\xef\xbb\xbf").decode())
            assert fast[1] == ref[1] and same(fast[0], ref[0])


def test_a_library_callers_str_with_a_raw_surrogate_reads_alike():
    """A str with a raw lone surrogate (which msgspec cannot encode) is read by the standard library,
    as before: the lone surrogate is refused the same way on both paths."""
    assert agree('{"a": "x\udc80"}')[0] == {"a": "x\udc80"}  # short: no walk, as before
    assert agree('{"a": "x\udc80"}', SMALL)[1] == "a lone surrogate at a: a string must be Unicode text"


def test_the_comparison_tells_apart_what_equality_would_not():
    """The differential tests' comparison refuses values Python calls equal: Decimal('1.0'),
    Decimal('1.00') and 1; True and 1; -0 and 0 as Decimals; a BigNumber and its text; one object
    with its keys in another order."""
    from vedtak.evaluation.cases import BigNumber
    assert same({"a": [Decimal("1.0")]}, {"a": [Decimal("1.0")]})
    for a, b in [(Decimal("1.0"), Decimal("1.00")), (Decimal("1"), 1), (True, 1), (Decimal("-0"), Decimal("0")),
                 (BigNumber("1e999999999999999999999"), "1e999999999999999999999"),
                 ({"a": 1, "b": 2}, {"b": 2, "a": 1}), ([[1]], [[1.0]])]:
        assert a == b and not same(a, b)
