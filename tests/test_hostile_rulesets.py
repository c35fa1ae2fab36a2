"""Hostile rulesets: whatever a ruleset file holds, loading ends in a ruleset or a located RulesetError.

Each reproduction of issue 13 section 2 is a test through ``vedtak.load`` and through the CLI
(check, test, decide, run: exit 1, no traceback, ``file:line:column: code:``). The property tests
feed random expression trees and random YAML documents to the loader.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import vedtak
from vedtak.cli.main import main
from vedtak.errors import RulesetError
from vedtak.language.limits import DIGITS, MAX_DEPTH
from vedtak.language.source import MAX_NESTING, MAX_NODES

BASE = """\
ruleset: hostile
title: Hostile
version: "1"
valid: {from: 2025-01-01}
decision_date: d
case_id: id
automate: [grant]
case:
  id: {type: string}
  d: {type: date}
  a: {type: int}
  m: {type: money}
  flag: {type: bool}
  items: {type: list, items: {x: int, y: money}}
parameters:
  P: {values: {2025-01-01: 8000}}
  RATE: {values: {2025-01-01: 0.05}}
derive:
  total: m + a * RATE
rules:
  - id: r1
    basis: b
    when: a > P
    decide: grant
    because: "a is {a}"
otherwise: {refer: general, because: "no rule"}
examples:
  - name: e
    case: {id: A, d: 2025-03-01, a: 1, m: 0, flag: true, items: []}
    expect: {status: referred}
"""

CASE = {"id": "A", "d": "2025-03-01", "a": 9000, "m": "10", "flag": True, "items": [{"x": 1, "y": "2"}]}


def write(tmp_path: Path, text: str, name: str = "ruleset.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path, code: str):
    """Load must raise RulesetError (never anything else); every diagnostic is located; one has ``code``."""
    with pytest.raises(RulesetError) as info:
        vedtak.load(path)
    diags = info.value.diagnostics
    assert diags
    for d in diags:
        assert d.file == str(path) and d.line >= 1 and d.column >= 1 and re.fullmatch(r"[a-z_]+", d.code)
    found = [d for d in diags if d.code == code]
    assert found, [d.format()[:200] for d in diags]
    return found[0]


def cli_refuses(tmp_path: Path, path: Path, diag) -> None:
    """check, test, decide and run each exit 1 on the ruleset with the located message, no traceback."""
    case = tmp_path / "case.json"
    case.write_text(json.dumps(CASE))
    cases = tmp_path / "cases.jsonl"
    cases.write_text(json.dumps(CASE) + "\n")
    commands = [["check", path], ["test", path], ["decide", path, case],
                ["run", path, cases, "--audit", tmp_path / "log.db", "--out", tmp_path / "out.jsonl"]]
    for args in commands:
        r = CliRunner().invoke(main, [str(a) for a in args])
        assert r.exit_code == 1, (args[0], r.exit_code, r.output[-500:], r.exception)
        assert r.exception is None or isinstance(r.exception, SystemExit), (args[0], repr(r.exception))
        assert "Traceback" not in r.output
        assert f"{path}:{diag.line}:{diag.column}: {diag.code}:" in r.output, (args[0], r.output[-500:])
    assert not (tmp_path / "out.jsonl").exists()


def both(tmp_path: Path, text: str, code: str):
    path = write(tmp_path, text)
    diag = refused(path, code)
    cli_refuses(tmp_path, path, diag)
    return diag


# -- impossible dates ------------------------------------------------------------------------

def test_an_impossible_parameter_date_is_a_located_bad_date(tmp_path):
    """`values: {2025-02-30: 8000}` is a bad_date at the key, for load and every command."""
    d = both(tmp_path, BASE.replace("2025-01-01: 8000", "2025-02-30: 8000"), "bad_date")
    assert (d.line, d.column) == (16, 16)
    assert d.message == "2025-02-30 is not a date: day is out of range for month"


def test_check_prints_an_impossible_date_exactly(tmp_path):
    """The whole `vedtak check` output for `values: {2025-02-30: 8000}`: location, code, message, the
    line with a caret under the date, the summary; exit 1."""
    path = write(tmp_path, BASE.replace("2025-01-01: 8000", "2025-02-30: 8000"))
    r = CliRunner().invoke(main, ["check", str(path)])
    assert (r.exit_code, r.output) == (1, (
        f"{path}:16:16: bad_date: 2025-02-30 is not a date: day is out of range for month\n"
        "      P: {values: {2025-02-30: 8000}}\n"
        "                   ^^^^^^^^^^\n"
        f"{path}: 1 problem; the ruleset was not loaded\n"))


def test_an_impossible_validity_date_is_a_located_bad_date(tmp_path):
    """`valid: {from: 2025-13-01}` is one bad_date, not also a pydantic message about the same value."""
    path = write(tmp_path, BASE.replace("from: 2025-01-01", "from: 2025-13-01"))
    d = refused(path, "bad_date")
    assert (d.line, d.column, d.message) == (4, 15, "2025-13-01 is not a date: month must be in 1..12")
    with pytest.raises(RulesetError) as info:
        vedtak.load(path)
    assert len(info.value.diagnostics) == 1
    cli_refuses(tmp_path, path, d)


def test_an_example_case_dated_february_29_of_a_common_year_is_a_located_bad_date(tmp_path):
    """An example case dated 2025-02-29 is a bad_date at the date."""
    d = both(tmp_path, BASE.replace("d: 2025-03-01", "d: 2025-02-29"), "bad_date")
    assert (d.line, d.column) == (29, 22)


# -- numbers that are no number, or too large ----------------------------------------------------

@pytest.mark.parametrize("value", [".nan", ".inf", "-.Inf", ".NaN"])
def test_nan_and_infinity_parameter_values_are_located_out_of_range(tmp_path, value):
    """A YAML float that is no exact number (.nan, .inf) is out_of_range at the value."""
    d = both(tmp_path, BASE.replace("2025-01-01: 8000", f"2025-01-01: {value}"), "out_of_range")
    assert (d.line, d.column) == (16, 28)
    assert d.message == f"{value} is not an exact number"


def test_a_5000_digit_parameter_value_is_located_out_of_range(tmp_path):
    """A parameter value of 5 000 digits (beyond Python's int(str) limit) is out_of_range, quoted short."""
    d = both(tmp_path, BASE.replace("2025-01-01: 8000", "2025-01-01: " + "9" * 5000), "out_of_range")
    assert (d.line, d.column) == (16, 28)
    assert len(d.message) < 100


@pytest.mark.parametrize("value", ["1" * (DIGITS + 1), "1.0e+34", "0." + "1" * (DIGITS + 1), "1.0e-1000000",
                                   "1." + "1" * 5000])
def test_a_parameter_value_the_decimal_context_cannot_hold_is_out_of_range(tmp_path, value):
    """More significant digits than the context's precision, or too large or too small: out_of_range."""
    d = both(tmp_path, BASE.replace("RATE: {values: {2025-01-01: 0.05}}", f"RATE: {{values: {{2025-01-01: {value}}}}}"),
             "out_of_range")
    assert (d.line, d.column) == (17, 31)


@pytest.mark.parametrize("value", ["9" * DIGITS, "0." + "1" * DIGITS, "1.0E-999999", "1.500000000000000000000000000000000000"])
def test_a_parameter_value_at_the_limits_loads(tmp_path, value):
    """34 significant digits, a tiny exponent, trailing zeros: all held exactly, so they load."""
    path = write(tmp_path, BASE.replace("RATE: {values: {2025-01-01: 0.05}}", f"RATE: {{values: {{2025-01-01: {value}}}}}"))
    vedtak.compile(vedtak.load(path))


# -- literals that load and then overflow at output ---------------------------------------------

@pytest.mark.parametrize("literal", ["0x" + "f" * 20000, "floor(1e999999)", "floor(1e999999999999)",
                                     "1" * (DIGITS + 1), "1" * 5000, "1e-1000000"])
def test_a_number_literal_out_of_range_is_refused_at_load(tmp_path, literal):
    """A literal the engine could not hold or print (a 20 000-digit hex, 1e999999 under floor) is out_of_range."""
    d = both(tmp_path, BASE.replace("when: a > P", f"when: a > {literal}"), "out_of_range")
    assert d.line == 23 and d.column in (11, 15, 21)  # the literal, or the expression Python refused to read
    assert len(d.message) < 100


def test_literals_at_the_limit_load_compile_and_decide(tmp_path):
    """The largest literals in range load, compile and decide, and print exactly."""
    big = "9" * DIGITS
    path = write(tmp_path, BASE.replace("    decide: grant\n", f"    decide: grant\n    values:\n"
                                        f"      v: floor(9.999999999999999999999999999999999E+33)\n      w: {big}\n"))
    decision = vedtak.compile(vedtak.load(path)).decide(CASE)
    assert decision.values == {"v": int(big), "w": int(big)}
    assert json.loads(decision.to_json())["values"] == {"v": int(big), "w": int(big)}
    assert big in decision.explain()


@pytest.mark.parametrize("value", ["floor(" + " * ".join(["1.0e33"] * 140) + ")",
                                   " * ".join(["9" * DIGITS] * 140), "ceil(m * 1.0e33 * 1.0e33)", "a * " + "9" * DIGITS])
def test_a_whole_number_computed_beyond_range_is_an_evaluation_error_not_a_crash(tmp_path, value):
    """Literals in range can still multiply (or floor) into a whole number of thousands of digits, which
    no JSON or log could print: the case is referred as evaluation-error, and decide --json and --audit
    work."""
    text = BASE.replace("    decide: grant\n", f"    decide: grant\n    values:\n      v: {value}\n")
    path = write(tmp_path, text)
    decision = vedtak.compile(vedtak.load(path)).decide(CASE)
    assert (decision.status, decision.referral_reason) == ("referred", "evaluation-error")
    assert "more than 34 digits" in decision.reasons[0]
    decision.to_json()
    case = tmp_path / "case.json"
    case.write_text(json.dumps(CASE))
    for extra in (["--json"], ["--audit", str(tmp_path / "log.db")]):
        r = CliRunner().invoke(main, ["decide", str(path), str(case), *extra])
        assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
        assert "evaluation-error" in r.output


def test_whole_numbers_up_to_34_digits_are_computed_exactly(tmp_path):
    """The bound on computed whole numbers is the literals' bound: 34 digits still decide, exactly."""
    text = BASE.replace("    decide: grant\n", "    decide: grant\n    values:\n"
                        f"      v: {'3' * 17} * {'3' * 17}\n      w: floor(9.999999999999999999999999999999999e33 + 0)\n")
    decision = vedtak.compile(vedtak.load(write(tmp_path, text))).decide(CASE)
    assert decision.values == {"v": int("3" * 17) ** 2, "w": int("9" * 34)}


# -- expressions nested too deep ------------------------------------------------------------------

def _sum(n: int, name: str = "a") -> str:
    """A flat sum of ``n`` terms: the syntax tree nests it ``n`` levels deep."""
    return " + ".join([name] * n)


def test_a_when_summing_210_terms_is_too_deep_at_load(tmp_path):
    """`when:` a 210-term sum passed check and broke compile; now it is a located too_deep at load."""
    d = both(tmp_path, BASE.replace("when: a > P", f"when: {_sum(210)} > P"), "too_deep")
    assert d.line == 23
    assert f"the limit is {MAX_DEPTH}" in d.message


def test_600_nested_parentheses_are_too_deep_not_a_recursion_error(tmp_path):
    """About 600 levels of parentheses were a RecursionError in check; now a located too_deep."""
    both(tmp_path, BASE.replace("when: a > P", "when: " + "(" * 600 + "a" + ")" * 600 + " > P"), "too_deep")


@pytest.mark.parametrize("expr", ["not " * 5000 + "flag", "-" * 5000 + "a > 0", _sum(5000) + " > 0",
                                  "a if flag else " * 3000 + "a > 0"])
def test_an_expression_too_deep_for_the_parser_is_too_deep(tmp_path, expr):
    """Thousands of levels (which the parser itself cannot take) are a located too_deep, not a crash."""
    d = refused(write(tmp_path, BASE.replace("when: a > P", f"when: {expr}")), "too_deep")
    assert d.line == 23


def test_a_long_flat_and_chain_is_shallow_and_compiles(tmp_path):
    """`x and y and ...` is one node with many operands: 2 000 of them load, compile and decide."""
    plan = vedtak.compile(vedtak.load(write(tmp_path, BASE.replace("when: a > P", "when: " + "a > 0 and " * 2000 + "flag"))))
    assert plan.decide(CASE).outcome == "grant"


def _depth_exactly(n: int, kind: str) -> str:
    """A number-valued expression whose syntax tree is exactly ``n`` levels deep."""
    if kind == "int_sum":
        return _sum(n)
    if kind == "money_sum":
        return _sum(n, "m")
    if kind == "negation":
        return "-" * (n - 1) + "m"
    if kind == "abs":
        return "abs(" * (n - 1) + "m" + ")" * (n - 1)
    if kind == "max":
        return "max(a, " * (n - 1) + "a" + ")" * (n - 1)
    if kind == "round":
        return "round(" * (n - 1) + "m" + ", 2)" * (n - 1)
    if kind == "if":  # each IfExp adds one level: its branches are one level below it
        return "(a if flag else " * (n - 1) + "a" + ")" * (n - 1)
    if kind == "parenthesised_sum":  # (a + (a + (a + ...))): right-nested
        return "(a + " * (n - 1) + "a" + ")" * (n - 1)
    raise AssertionError(kind)


KINDS = ["int_sum", "money_sum", "negation", "abs", "max", "round", "if", "parenthesised_sum"]


def test_the_depth_helper_builds_what_it_says():
    """The expressions built for the depth tests have exactly the depth they are meant to have."""
    import ast

    from vedtak.language.limits import measure
    for kind in KINDS:
        for n in (1, 2, 7):
            assert measure(ast.parse(_depth_exactly(n, kind), mode="eval").body)[0] == n, (kind, n)


@pytest.mark.parametrize("kind", KINDS)
def test_every_depth_up_to_the_limit_compiles_and_one_more_is_refused(tmp_path, kind):
    """Depths 1..MAX_DEPTH load, compile and decide (as a value, and inside a condition); MAX_DEPTH+1
    is a located too_deep at load, so nothing that loads can fail to compile."""
    depths = sorted({1, 2, 3, MAX_DEPTH // 2, MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH})
    for n in depths:
        text = BASE.replace("when: a > P", f"when: {_depth_exactly(n - 1, kind) if n > 1 else 'a'} > P"
                            if n > 1 else "when: flag")
        text = text.replace("    decide: grant\n", f"    decide: grant\n    values:\n      v: {_depth_exactly(n, kind)}\n")
        plan = vedtak.compile(vedtak.load(write(tmp_path, text)))
        decision = plan.decide(CASE)
        assert decision.status in ("decided", "referred"), (kind, n)
    text = BASE.replace("    decide: grant\n", f"    decide: grant\n    values:\n"
                        f"      v: {_depth_exactly(MAX_DEPTH + 1, kind)}\n")
    d = refused(write(tmp_path, text), "too_deep")
    assert d.line == 26 and f"nests {MAX_DEPTH + 1} levels deep" in d.message
    text = BASE.replace("when: a > P", f"when: {_depth_exactly(MAX_DEPTH, kind)} > P")
    refused(write(tmp_path, text), "too_deep")


def test_nested_generators_at_the_limit_compile(tmp_path):
    """Generators nested in generators (any over items inside any over items, with a sum inside) up to
    exactly MAX_DEPTH load, compile and decide; the generated code for list loops fits too."""
    import ast

    from vedtak.language.limits import measure

    def nested(k: int) -> str:
        e = "p0.y > sum(q.y for q in items if q.x > 0)"
        for i in range(k):
            e = f"any({e} for p{i} in items)"
        return e
    k = max(k for k in range(1, MAX_DEPTH) if measure(ast.parse(nested(k), mode="eval").body)[0] <= MAX_DEPTH)
    expr = "not " * (MAX_DEPTH - measure(ast.parse(nested(k), mode="eval").body)[0]) + nested(k)
    assert measure(ast.parse(expr, mode="eval").body)[0] == MAX_DEPTH
    plan = vedtak.compile(vedtak.load(write(tmp_path, BASE.replace("when: a > P", f"when: {expr}"))))
    assert plan.decide(CASE).status in ("decided", "referred")
    refused(write(tmp_path, BASE.replace("when: a > P", f"when: not {expr}")), "too_deep")


def test_every_depth_from_1_to_the_limit_compiles(tmp_path):
    """Every depth 1..MAX_DEPTH of a money sum (the most brackets per level in the generated code),
    as a rule's value, loads, compiles and decides; the sum of 200 terms of the issue is refused."""
    for n in range(1, MAX_DEPTH + 1):
        text = BASE.replace("    decide: grant\n", f"    decide: grant\n    values:\n      v: {_sum(n, 'm')}\n")
        decision = vedtak.compile(vedtak.load(write(tmp_path, text))).decide(CASE)
        assert decision.values == {"v": 10 * n}, n
    text = BASE.replace("    decide: grant\n", f"    decide: grant\n    values:\n      v: {_sum(200, 'm')}\n")
    refused(write(tmp_path, text), "too_deep")


def test_derived_values_count_where_they_are_used(tmp_path):
    """A chain of derived values is inlined by the compiler: its depth adds up, within the limit it
    compiles, beyond it the first derived value too deep is named."""
    def chain(n: int) -> str:
        lines = "".join(f"  c{i}: c{i - 1} + 1\n" for i in range(1, n))
        return BASE.replace("derive:\n", "derive:\n  c0: a\n" + lines).replace("when: a > P", f"when: c{n - 1} > P")
    ok = chain(MAX_DEPTH // 4 - 1)  # each link: + (1), the name (1), the memo around it (2)
    assert vedtak.compile(vedtak.load(write(tmp_path, ok))).decide(CASE).status in ("decided", "referred")
    d = refused(write(tmp_path, chain(MAX_DEPTH)), "too_deep")
    assert "with the derived values it uses" in d.message and "derived value" in d.message


def test_a_large_derived_value_in_many_rules_is_too_large_at_load(tmp_path):
    """The compiler copies a derived value into each rule that uses it: a 12 000-part derived value in
    200 rules (2.4 million parts of generated code) is a located too_large at load, in bounded time;
    the same value in a few rules loads and compiles."""
    from vedtak.language.limits import MAX_COMPILED

    def ruleset(n: int) -> str:
        rules = "".join(f"  - id: big{i}\n    basis: b\n    when: big and a > {i}\n    decide: grant\n"
                        f"    because: x\n" for i in range(n))
        return BASE.replace("derive:\n", "derive:\n  big: " + "a > 0 and " * 4000 + "flag\n").replace(
            "rules:\n", "rules:\n" + rules)
    d = refused(write(tmp_path, ruleset(200)), "too_large")
    assert (d.line, d.column) == (21, 1) and f"the limit is {MAX_COMPILED}" in d.message
    assert vedtak.compile(vedtak.load(write(tmp_path, ruleset(3)))).decide(CASE).outcome == "grant"


def test_derived_values_that_double_at_each_step_are_too_large(tmp_path):
    """d1 = d0 + d0, d2 = d1 + d1, ...: the generated code would double per step (2^40); too_large at load."""
    lines = "".join(f"  c{i}: c{i - 1} + c{i - 1}\n" for i in range(1, 40))
    text = BASE.replace("derive:\n", "derive:\n  c0: a\n" + lines).replace("when: a > P", "when: c39 > P")
    refused(write(tmp_path, text), "too_large")


# -- YAML bombs and bounds -------------------------------------------------------------------------

BOMB = """\
    case:
      id: A
      d: 2025-03-01
      a: 1
      m: 0
      flag: true
      items: []
      l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
""" + "".join(f"      l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]\n" for i in range(1, 9))


def test_a_yaml_alias_bomb_in_examples_is_refused_in_bounded_memory(tmp_path):
    """Billion laughs inside `examples` (10^9 strings once expanded) is a located too_large, found
    without expanding it."""
    import tracemalloc
    text = BASE.replace("    case: {id: A, d: 2025-03-01, a: 1, m: 0, flag: true, items: []}\n", BOMB)
    path = write(tmp_path, text)
    tracemalloc.start()
    try:
        d = refused(path, "too_large")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000
    assert d.line == 36 + 4 and str(MAX_NODES) in d.message  # l4: 10^5 nodes is the first past the bound
    cli_refuses(tmp_path, path, d)


def test_an_alias_that_contains_itself_is_refused(tmp_path):
    """A recursive alias (`&a [*a]`) would be an endless document: alias_loop."""
    text = BASE.replace("items: []}\n", "items: []}\n    extra: &loop [1, *loop]\n", 1)
    refused(write(tmp_path, text), "alias_loop")


def test_yaml_nested_beyond_the_bound_is_too_deep(tmp_path):
    """Mappings and lists nested deeper than MAX_NESTING are a located too_deep, not a RecursionError."""
    deep = "[" * (MAX_NESTING + 5) + "]" * (MAX_NESTING + 5)
    refused(write(tmp_path, BASE + f"description: {deep}\n"), "too_deep")


def test_a_file_larger_than_the_bound_is_refused_unread(tmp_path):
    """A ruleset file above MAX_SOURCE_BYTES is refused unread as too_large, naming the limit; so is
    text of that size handed to load_text."""
    from vedtak.language.source import MAX_SOURCE_BYTES
    path = write(tmp_path, BASE + "#" * MAX_SOURCE_BYTES + "\n")
    d = refused(path, "too_large")
    assert str(MAX_SOURCE_BYTES) in d.message and (d.line, d.column) == (1, 1)
    with pytest.raises(RulesetError) as info:
        vedtak.load_text(BASE + "#" * MAX_SOURCE_BYTES + "\n")
    assert [d.code for d in info.value.diagnostics] == ["too_large"]


# -- parameter values of the wrong shape -----------------------------------------------------------

def test_a_parameter_whose_only_value_is_empty_never_has_a_value(tmp_path):
    """An empty value is null: no value in force from that date. A parameter with no other value is one
    located message saying so (a null after a value ends the parameter; see test_part2)."""
    path = write(tmp_path, BASE.replace("2025-01-01: 8000", "2025-01-01: "))
    with pytest.raises(RulesetError) as info:
        vedtak.load(path)
    [d] = info.value.diagnostics
    assert (d.code, d.line) == ("invalid_value", 16)
    assert "never has a value" in d.message and "datetime" not in d.message


@pytest.mark.parametrize("value, shown", [("[1, 2]", "a list"), ("{a: 1}", "a mapping")])
def test_a_parameter_value_of_the_wrong_shape_is_one_clear_message(tmp_path, value, shown):
    """One message saying what a parameter value may be, at the value, with no pydantic union paths."""
    path = write(tmp_path, BASE.replace("2025-01-01: 8000", f"2025-01-01: {value}"))
    with pytest.raises(RulesetError) as info:
        vedtak.load(path)
    assert len(info.value.diagnostics) == 1
    d = info.value.diagnostics[0]
    assert (d.code, d.line, d.column) == ("invalid_value", 16, 28)
    assert d.message == f'parameter "P" on 2025-01-01: {shown} is not a parameter value'
    assert "datetime" not in info.value.format() and ".bool" not in info.value.format()
    assert d.hint.startswith("a parameter value is one number, date, true/false or text")


def test_a_parameter_date_key_that_is_no_date_is_one_message(tmp_path):
    """`values: {foo: 1}`: the key is not a date, said once, at the key."""
    path = write(tmp_path, BASE.replace("2025-01-01: 8000", "foo: 1"))
    with pytest.raises(RulesetError) as info:
        vedtak.load(path)
    [d] = info.value.diagnostics
    assert (d.code, d.line, d.column, d.message) == ("invalid_value", 16, 16, 'parameters.P.values: "foo" is not a date')


def test_a_parameter_of_mixed_types_is_not_also_an_unknown_name(tmp_path):
    """A parameter whose values have two types is reported once, where it is defined; the rules and
    reason texts that use it get no false unknown_name."""
    text = BASE.replace("P: {values: {2025-01-01: 8000}}", 'P: {values: {2025-01-01: 8000, 2025-06-01: "x"}}')
    text = text.replace('because: "a is {a}"', 'because: "a is {a}, above {P}"')
    path = write(tmp_path, text)
    with pytest.raises(RulesetError) as info:
        vedtak.load(path)
    assert [d.code for d in info.value.diagnostics] == ["type_mismatch"]


def test_a_parameter_out_of_range_is_not_also_an_unknown_name(tmp_path):
    """A parameter value out of range is one out_of_range; the condition that uses it is not an unknown_name."""
    path = write(tmp_path, BASE.replace("2025-01-01: 8000", "2025-01-01: 1.0e+40"))
    with pytest.raises(RulesetError) as info:
        vedtak.load(path)
    assert [d.code for d in info.value.diagnostics] == ["out_of_range"]


def test_a_placeholder_with_a_format_is_one_bad_placeholder_not_an_unknown_name(tmp_path):
    """`{a:.2f}` and `{a!r}` in a reason text name a value and then a format: bad_placeholder, located
    at the placeholder, with the plain form as the hint; not a false unknown_name."""
    path = write(tmp_path, BASE.replace('because: "a is {a}"', 'because: "a is {a:.2f} or {P!r}"'))
    with pytest.raises(RulesetError) as info:
        vedtak.load(path)
    assert [(d.code, d.line, d.column) for d in info.value.diagnostics] == [
        ("bad_placeholder", 25, 21), ("bad_placeholder", 25, 32)]
    assert info.value.diagnostics[0].hint.startswith('write "{a}"')


def test_parameters_changing_on_too_many_dates_are_too_large(tmp_path):
    """Each parameter period is compiled on its own; more than MAX_PERIODS of them in one version is a
    located too_large at load instead of minutes of compiling in decide and run."""
    from datetime import date, timedelta

    from vedtak.language.limits import MAX_PERIODS
    values = ", ".join(f"{date(2025, 1, 1) + timedelta(days=i)}: {i}" for i in range(MAX_PERIODS + 1))
    path = write(tmp_path, BASE.replace("P: {values: {2025-01-01: 8000}}", f"P: {{values: {{{values}}}}}"))
    d = refused(path, "too_large")
    assert (d.line, d.column) == (15, 1) and f"the limit is {MAX_PERIODS}" in d.message
    values = ", ".join(f"{date(2025, 1, 1) + timedelta(days=i)}: {i}" for i in range(MAX_PERIODS))
    vedtak.load(write(tmp_path, BASE.replace("P: {values: {2025-01-01: 8000}}", f"P: {{values: {{{values}}}}}")))


def test_a_control_character_in_the_file_is_located_and_never_reaches_the_terminal(tmp_path):
    """A raw ESC in the file is a yaml_syntax error at its line and column (not at 1:1), and the quoted
    source line shows it as "?", so `vedtak check` prints no escape sequence."""
    path = write(tmp_path, BASE.replace("title: Hostile", 'title: "\x1b[31mred"'))
    d = refused(path, "yaml_syntax")
    assert (d.line, d.column) == (2, 9)
    r = CliRunner().invoke(main, ["check", str(path)])
    assert r.exit_code == 1 and "\x1b" not in r.output and '    title: "?[31mred"' in r.output


def test_control_characters_in_names_are_escaped_in_messages(tmp_path):
    """A case field named with an ANSI escape (a YAML escape in a quoted key) is reported with the
    escape written out, never sent raw to the terminal."""
    path = write(tmp_path, BASE.replace("  flag: {type: bool}\n", '  flag: {type: bool}\n  "\\e[2J": {type: int}\n'))
    d = refused(path, "bad_name")
    assert "\x1b" in d.message
    r = CliRunner().invoke(main, ["check", str(path)])
    assert r.exit_code == 1 and "\x1b" not in r.output and "\\x1b[2J" in r.output


def test_a_diagnostic_on_a_very_long_line_quotes_a_window_of_it(tmp_path):
    """An error on a 20 000-character line quotes at most a window of the line (with ...), and the
    caret still points at the column; the output stays small."""
    path = write(tmp_path, BASE.replace("when: a > P", "when: a > " + "0x" + "f" * 20000))
    d = refused(path, "out_of_range")
    text = d.format()
    assert len(text) < 1000
    r = CliRunner().invoke(main, ["check", str(path)])
    assert r.exit_code == 1 and len(r.output) < 2000
    far = write(tmp_path, BASE.replace("when: a > P", "when: " + "a > 0 and " * 3000 + "nosuch"))
    d = refused(far, "unknown_name")
    quoted, caret = d.format().split("\n")[1:3]
    assert quoted.startswith("    ...") and quoted[caret.index("^"):].startswith("nosuch")


def test_a_field_bound_out_of_range_is_refused(tmp_path):
    """`min: 1.0e+999999` on a case field (which docs would print in full) is a located invalid_value."""
    d = both(tmp_path, BASE.replace("  a: {type: int}", "  a: {type: int, min: 1.0e+999999}"), "invalid_value")
    assert (d.line, d.column) == (11, 6) and "out of range" in d.message


def test_a_ruleset_path_that_is_no_regular_file_is_unreadable_not_a_hang(tmp_path):
    """A named pipe given as the ruleset would block a read forever: it is refused as unreadable."""
    import os
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(RulesetError) as info:
        vedtak.load(fifo)
    assert [(d.code, d.message) for d in info.value.diagnostics] == [
        ("unreadable", "cannot read the file: not a regular file")]


@pytest.mark.parametrize("first, second", [("{from: 0001-01-01, to: 9999-12-31}", "{from: 0001-01-01}"),
                                           ("{from: 0001-01-01}", "{from: 9999-12-31}"),
                                           ("{from: 0001-01-01, to: 9999-12-30}", "{from: 9999-12-31}")])
def test_versions_at_the_ends_of_the_calendar_load_or_are_located(tmp_path, first, second):
    """Two versions valid from 0001-01-01 overlapped with an OverflowError while writing the hint; at
    the first and last days of the calendar, versions load or get a located overlapping_versions."""
    folder = tmp_path / "versions"
    folder.mkdir()
    write(folder, BASE.replace("valid: {from: 2025-01-01}", f"valid: {first}").replace(
        "2025-01-01: 8000", "0001-01-01: 8000"), "a.yaml")
    write(folder, BASE.replace("valid: {from: 2025-01-01}", f"valid: {second}").replace('version: "1"', 'version: "2"')
          .replace("2025-01-01: 8000", "0001-01-01: 8000"), "b.yaml")
    try:
        rs = vedtak.load(folder)
    except RulesetError as exc:
        assert [d.code for d in exc.diagnostics] == ["overlapping_versions"]
        assert exc.diagnostics[0].file == str(folder / "b.yaml") and exc.diagnostics[0].line == 4
    else:
        assert vedtak.compile(rs).decide(dict(CASE, d="9999-12-31")).status in ("decided", "referred")
    r = CliRunner().invoke(main, ["check", str(folder)])
    assert r.exit_code in (0, 1) and (r.exception is None or isinstance(r.exception, SystemExit)), repr(r.exception)


@pytest.mark.parametrize("case_id, expect", [("{2000-01-01: 1}", "{status: referred}"),
                                             ("A", "{status: referred, values: {v: {2000-01-01: !!binary aGk=}}}"),
                                             ("{1: [!!set {a}]}", "{status: rejected, errors: [wrong_type]}")])
def test_an_example_with_yaml_only_keys_and_values_runs_without_a_traceback(tmp_path, case_id, expect):
    """YAML can write what JSON cannot (date and number keys, bytes, sets) in an example's case or its
    expectation: a date or number key is read as text, as JSON has it, and `vedtak test` reports the
    example; !!binary and !!set are a located invalid_value. Never a TypeError from JSON."""
    text = BASE.replace("case: {id: A,", f"case: {{id: {case_id},").replace(
        "expect: {status: referred}", f"expect: {expect}")
    path = write(tmp_path, text)
    r = CliRunner().invoke(main, ["test", str(path)])
    assert r.exit_code in (0, 1) and (r.exception is None or isinstance(r.exception, SystemExit)), repr(r.exception)
    if "!!" in case_id + expect:
        d = refused(path, "invalid_value")
        assert d.line in (29, 30) and "is not supported in a ruleset" in d.message
    else:
        assert "1 failed" in r.output  # the case id is no text: the example's case is rejected


def test_a_timestamp_with_a_time_of_day_is_a_bad_date(tmp_path):
    """`valid: {from: 2025-01-01 10:00:00}` has a time of day, which no ruleset value can be: bad_date."""
    d = refused(write(tmp_path, BASE.replace("from: 2025-01-01", "from: 2025-01-01 10:00:00")), "bad_date")
    assert (d.line, d.column) == (4, 15) and "time of day" in d.message


def test_thousands_of_problems_print_the_first_hundred_and_a_count(tmp_path):
    """6 000 unknown names in one condition: load lists them all, `vedtak check` prints the first
    MAX_DIAGNOSTICS, then how many more, then the total; the output stays small."""
    from vedtak.errors import MAX_DIAGNOSTICS
    path = write(tmp_path, BASE.replace("when: a > P", "when: " + " and ".join(["nosuch"] * 6000)))
    with pytest.raises(RulesetError) as info:
        vedtak.load(path)
    assert len(info.value.diagnostics) == 6000
    r = CliRunner().invoke(main, ["check", str(path)])
    assert r.exit_code == 1 and r.output.count("unknown_name") == MAX_DIAGNOSTICS
    assert r.output.endswith(f"... and {6000 - MAX_DIAGNOSTICS} more problems\n"
                             f"{path}: 6000 problems; the ruleset was not loaded\n")
    assert len(r.output) < 100_000


def test_a_byte_that_is_not_utf8_is_located_and_a_bom_is_accepted(tmp_path):
    """A Latin-1 byte in a ruleset file is `unreadable` at its line and column (not 0:0); a UTF-8
    byte-order mark, as editors on Windows write it, loads."""
    path = tmp_path / "latin.yaml"
    path.write_bytes(BASE.encode().replace(b"title: Hostile", b"title: Hostile \xe6"))
    d = refused(path, "unreadable")
    assert (d.line, d.column, d.message) == (2, 16, "the file is not UTF-8 text: byte 0xe6 cannot be read")
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbf" + BASE.encode())
    vedtak.load(bom)


def test_a_directory_of_too_many_versions_is_too_large(tmp_path):
    """More than MAX_VERSIONS .yaml files in a ruleset directory are refused before any is read."""
    from vedtak.language.limits import MAX_VERSIONS
    for i in range(MAX_VERSIONS + 1):
        (tmp_path / f"v{i:04d}.yaml").write_text("not: read")
    with pytest.raises(RulesetError) as info:
        vedtak.load(tmp_path)
    [d] = info.value.diagnostics
    assert (d.code, d.line, d.column) == ("too_large", 1, 1) and str(MAX_VERSIONS) in d.message


@pytest.mark.parametrize("literal", ["date(2025, 2, 30)", "date(2025, 13, 1)", "date(0, 1, 1)", 'date("2025-02-29")'])
def test_an_impossible_date_literal_in_an_expression_is_refused_at_load(tmp_path, literal):
    """An impossible date written in an expression, as text or as year, month, day, is a located
    bad_literal at load, not an evaluation error in every case."""
    d = refused(write(tmp_path, BASE.replace("when: a > P", f"when: d > {literal}")), "bad_literal")
    assert d.line == 23 and "not a date" in d.message


def test_a_nul_character_in_an_expression_is_a_syntax_error(tmp_path):
    """A NUL character in an expression (a ValueError from Python's parser) is a located syntax_error."""
    d = refused(write(tmp_path, BASE.replace("when: a > P", 'when: "a >\\0 P"')), "syntax_error")
    assert d.line == 23


def test_load_text_with_a_lone_surrogate_is_a_ruleset_error():
    """Text handed to load_text (as an audit log stores it) with a lone surrogate is a RulesetError."""
    with pytest.raises(RulesetError):
        vedtak.load_text(BASE.replace("title: Hostile", "title: \ud800"))


# -- property tests ---------------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.filter_too_much])
COUNTED = {"expressions": 0, "documents": 0, "mutations": 0}  # hostile inputs tried, for the closing note

_NAMES = ["a", "m", "flag", "d", "id", "items", "P", "RATE", "total", "nosuch", "p", "x", "True", "None"]
_NUMBERS = ["0", "1", "-7", "0.05", "1e999999", "1e-999999", "1e999999999999", "0x" + "f" * 300, "9" * 40,
            "12_000", "0." + "1" * 40, "1j", "0b101", "0o17", "3.14e+5", "1e", ".5", "5.", "10" * 3]
_STRINGS = ['"x"', "'2025-01-01'", '""', '"\\u00e6"', 'date("2025-02-30")', 'date("2025-03-01")', 'date(2025, 2, 30)']
_FUNCS = ["min", "max", "abs", "round", "floor", "ceil", "sum", "count", "any", "all", "years_between",
          "months_between", "days_between", "date", "known", "len", "print", "__import__"]


def _expressions():
    leaf = st.sampled_from(_NAMES + _NUMBERS + _STRINGS)

    def grow(child):
        unary = st.tuples(st.sampled_from(["-", "not ", "+", "~"]), child).map("".join)
        binary = st.tuples(child, st.sampled_from([" + ", " - ", " * ", " / ", " // ", " % ", " ** ", " < ", " == ",
                                                   " >= ", " != ", " and ", " or ", " in ", " is "]), child).map("".join)
        paren = child.map(lambda c: f"({c})")
        ifexp = st.tuples(child, child, child).map(lambda t: f"{t[0]} if {t[1]} else {t[2]}")
        call = st.tuples(st.sampled_from(_FUNCS), st.lists(child, max_size=3)).map(lambda t: f"{t[0]}({', '.join(t[1])})")
        gen = st.tuples(st.sampled_from(["sum", "count", "any", "all", "min", "max"]), child, child).map(
            lambda t: f"{t[0]}({t[1]} for p in items if {t[2]})")
        member = st.tuples(child, st.lists(st.sampled_from(_NUMBERS + _STRINGS), max_size=3)).map(
            lambda t: f"{t[0]} in [{', '.join(t[1])}]")
        other = st.tuples(child, st.sampled_from([".x", ".y", "[0]", ".__class__", "(1)"])).map("".join)
        return st.one_of(unary, binary, paren, ifexp, call, gen, member, other)

    tree = st.recursive(leaf, grow, max_leaves=40)
    deep = st.tuples(st.integers(0, 400), st.sampled_from(["(", "-", "not ", "abs(", "a + "]), tree).map(
        lambda t: t[1] * t[0] + t[2] + (")" * t[0] if t[1].endswith("(") else ""))
    return st.one_of(tree, deep, _typed_conditions(), _typed_conditions())


_NUMERIC_LEAVES = ["a", "m", "P", "RATE", "total", "0", "1", "-7", "0.05", "1e-999999", "9" * 34,
                   "9.999999999999999999999999999999999e33", "0." + "1" * 34, "12_000"]


def _typed_conditions():
    """Well-typed conditions of random shape and depth, most of which load: they reach the compiler."""
    def grow_num(child):
        return st.one_of(
            st.tuples(child, st.sampled_from([" + ", " - ", " * ", " / "]), child).map(lambda t: f"({''.join(t)})"),
            st.tuples(st.sampled_from(["abs", "floor", "ceil", "-"]), child).map(lambda t: f"{t[0]}({t[1]})"),
            st.tuples(st.sampled_from(["min", "max"]), st.lists(child, min_size=2, max_size=3)).map(
                lambda t: f"{t[0]}({', '.join(t[1])})"),
            st.tuples(child, st.integers(0, 12)).map(lambda t: f"round({t[0]}, {t[1]})"),
            st.tuples(child, child).map(lambda t: f"({t[0]} if flag else {t[1]})"),
            st.sampled_from(["sum(p.x for p in items)", "sum(p.y for p in items if p.x > 0)", "count(items)",
                             'days_between(d, date("2024-01-01"))']))
    number = st.recursive(st.sampled_from(_NUMERIC_LEAVES), grow_num, max_leaves=25)

    def grow_bool(child):
        return st.one_of(st.tuples(child, st.sampled_from([" and ", " or "]), child).map(lambda t: f"({''.join(t)})"),
                         child.map(lambda c: f"not {c}"),
                         st.tuples(number, child).map(lambda t: f"any(p.x > {t[0]} for p in items) or {t[1]}"))
    compare = st.tuples(number, st.sampled_from([" < ", " <= ", " == ", " != ", " > "]), number).map("".join)
    return st.recursive(st.one_of(compare, st.just("flag")), grow_bool, max_leaves=6)


def _located(exc: RulesetError, path: Path) -> None:
    assert exc.diagnostics
    for d in exc.diagnostics:
        assert d.file == str(path) and d.line >= 1 and d.column >= 1 and re.fullmatch(r"[a-z_]+", d.code), d


@PROPERTY
@given(expr=_expressions(), where=st.sampled_from(["when", "value", "derive"]))
def test_any_expression_loads_or_is_located_and_what_loads_decides(tmp_path, expr, where):
    """Random expression trees (names of a small schema, every operator and function, random nesting,
    huge and tiny literals) in a condition, a value or a derived value: load either succeeds, and then
    the ruleset compiles and decides a case without raising, or raises a RulesetError of located
    diagnostics; `vedtak check` exits 0 or 1 and never prints a traceback."""
    COUNTED["expressions"] += 1
    quoted = json.dumps(expr)
    if where == "when":
        text = BASE.replace("when: a > P", f"when: {quoted}")
    elif where == "value":
        text = BASE.replace("    decide: grant\n", f"    decide: grant\n    values:\n      v: {quoted}\n")
    else:
        text = BASE.replace("  total: m + a * RATE\n", f"  total: {quoted}\n")
    path = write(tmp_path, text)
    try:
        rs = vedtak.load(path)
    except RulesetError as exc:
        _located(exc, path)
    else:
        decision = vedtak.compile(rs).decide(CASE)
        assert decision.status in ("decided", "referred")
        decision.to_json()
        decision.explain()
    r = CliRunner().invoke(main, ["check", str(path)])
    assert r.exit_code in (0, 1) and (r.exception is None or isinstance(r.exception, SystemExit)), repr(r.exception)
    assert "Traceback" not in r.output


_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**40, max_value=10**60),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20), st.dates(), st.datetimes(),
    st.sampled_from(["2025-02-30", "grant", "a > P", "{a}", "true", "01", "&x", "*x", "!!str", ""]))
_VALUES = st.recursive(_SCALARS, lambda c: st.one_of(st.lists(c, max_size=4),
                                                     st.dictionaries(st.one_of(st.text(max_size=8), st.integers(),
                                                                               st.dates()), c, max_size=4)),
                       max_leaves=20)
_TOP_KEYS = ["ruleset", "title", "version", "valid", "decision_date", "case_id", "automate", "case", "parameters",
             "derive", "rules", "otherwise", "examples", "review_queue", "nosuch"]


def _dump(data) -> str:
    import yaml
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _load_or_located(path: Path) -> None:
    """Load succeeds, and the lint takes what loaded and `vedtak test` runs its examples without a
    traceback; or the diagnostics are all located."""
    from vedtak.language.check import lint
    try:
        rs = vedtak.load(path)
    except RulesetError as exc:
        _located(exc, path)
    else:
        lint(rs)
        r = CliRunner().invoke(main, ["test", str(path)])
        assert r.exit_code in (0, 1) and (r.exception is None or isinstance(r.exception, SystemExit)), repr(r.exception)


@PROPERTY
@given(doc=st.one_of(_VALUES, st.dictionaries(st.sampled_from(_TOP_KEYS), _VALUES, max_size=10)))
def test_any_yaml_document_loads_or_is_located(tmp_path, doc):
    """A random YAML document (nested mappings, lists and scalars of every YAML type, with the keys of a
    ruleset): load succeeds or raises a RulesetError whose diagnostics all carry file, line and code."""
    COUNTED["documents"] += 1
    _load_or_located(write(tmp_path, _dump(doc)))


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


STUDY_GRANT_TEXT = (Path(__file__).resolve().parent.parent / "rulesets" / "study-grant" / "study-grant.yaml").read_text()


@PROPERTY
@given(data=st.data())
def test_a_mutated_study_grant_loads_or_is_located(tmp_path, data):
    """The shipped study-grant ruleset with one random value replaced by a random value (or one random
    token of its text replaced by hostile YAML): load succeeds or raises located diagnostics."""
    import yaml
    COUNTED["mutations"] += 1
    if data.draw(st.booleans(), label="structural"):
        doc = yaml.safe_load(STUDY_GRANT_TEXT)
        paths = [p for p in _paths(doc) if p]
        path = data.draw(st.sampled_from(paths), label="path")
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = data.draw(_VALUES, label="value")
        text = _dump(doc)
    else:
        tokens = list(re.finditer(r"[^\s:{}\[\],]+", STUDY_GRANT_TEXT))
        token = data.draw(st.sampled_from(tokens), label="token")
        hostile = data.draw(st.sampled_from(
            ["2025-02-30", "2025-13-01", ".nan", "-.inf", "9" * 5000, "1" * 40, "&a", "*a", "*nosuch", "[", "{", "}",
             "!!python/object/apply:os.system", "!!binary", "!!set", "<<", "? x", "|", ">", "'", '"', "\t", "%YAML",
             "---", "...", "~", "null", "0x" + "f" * 50, "0001-01-01", "9999-12-31", "0000-01-01", "a" * 1000, "\u202e", "\x00", "\ufeff"]), label="hostile")
        text = STUDY_GRANT_TEXT[:token.start()] + hostile + STUDY_GRANT_TEXT[token.end():]
    _load_or_located(write(tmp_path, text))


_DAYS = st.one_of(st.sampled_from(["0001-01-01", "0001-01-02", "2024-12-31", "2025-01-01", "9999-12-30", "9999-12-31",
                                   "2025-02-30", "2024-02-29"]), st.dates().map(str))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(windows=st.lists(st.tuples(_DAYS, st.one_of(st.none(), _DAYS)), min_size=1, max_size=3))
def test_any_set_of_version_windows_loads_or_is_located(tmp_path, windows):
    """A directory of versions with random validity windows (the calendar's first and last days, impossible
    dates, overlaps and gaps): load succeeds, or every diagnostic is located in one of the files."""
    import shutil
    COUNTED["mutations"] += 1
    folder = tmp_path / "versions"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for i, (start, end) in enumerate(windows):
        window = f"{{from: {start}" + (f", to: {end}}}" if end else "}")
        write(folder, BASE.replace("valid: {from: 2025-01-01}", f"valid: {window}")
              .replace('version: "1"', f'version: "{i}"').replace("2025-01-01: 8000", "0001-01-01: 8000"), f"v{i}.yaml")
    try:
        rs = vedtak.load(folder)
    except RulesetError as exc:
        assert exc.diagnostics
        for d in exc.diagnostics:
            assert Path(d.file).parent == folder and d.line >= 1 and d.column >= 1, d
    else:
        vedtak.compile(rs)
