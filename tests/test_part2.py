"""Ruleset language, part 2: defaults, parameters that end, scales, tables, item functions and dates,
end to end — decided, explained, recorded in the audit log, rendered and replayed exactly."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vedtak
from vedtak.audit import AuditLog, open_store
from vedtak.audit.verify import verify
from vedtak.errors import RulesetError
from vedtak.evaluation.reference import run
from vedtak.audit.replay import replay

from conftest import ROOT

CORE = ROOT / "tests" / "golden" / "rulesets" / "part2-core"
PLAN = vedtak.compile(vedtak.load(CORE))


def case(**over):
    base = {"id": "A1", "day": "2025-03-31", "income": "700000", "region": "north",
            "children": [{"birth_date": "2020-01-01", "lives_with": True},
                         {"birth_date": "2010-01-01", "lives_with": True, "support": "10"}]}
    base.update(over)
    return base


children = st.lists(st.fixed_dictionaries(
    {"birth_date": st.dates(date(2000, 1, 1), date(2026, 12, 31)), "lives_with": st.booleans()},
    optional={"support": st.one_of(st.none(), st.decimals(-3000, 3000, places=2))}), max_size=4)
cases = st.fixed_dictionaries({
    "id": st.text("abc123", min_size=1, max_size=6),
    "day": st.dates(date(2024, 1, 1), date(2026, 12, 31)),
    "income": st.one_of(st.sampled_from([0, 208050, 217400, 292850, 306050, 500000, 800000]),
                        st.decimals(-1000, 2_000_000, places=2)),
    "region": st.sampled_from(["north", "south"]),
    "children": children,
}, optional={"salary": st.one_of(st.none(), st.integers(0, 900_000))})


def _plain(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(type(value).__name__)


@settings(max_examples=150, deadline=None)
@given(raw=cases)
def test_compiled_and_reference_agree_on_every_form(raw):
    """The generated evaluator and the reference interpreter give the same outcome, rule, values and
    missing parameters on every case (scales, tables, item functions, defaults, dates, null)."""
    d = PLAN.decide(raw)
    assert d.status in ("decided", "referred")
    result = run(d.period, d.case)
    assert result.index == d._outcome.index
    if d.referral_reason == "missing-parameter":
        assert result.kind == "missing-parameter" and tuple(result.missing) == d.missing == ("housing",)
    elif d.referral_reason in ("missing-data", "evaluation-error"):
        assert result.kind in ("missing-data", "error")
    else:
        assert result.kind == "match"
        assert (result.values or {}) == d.values


def test_a_default_is_used_named_in_the_explanation_and_the_log_keeps_the_input_as_given(tmp_path):
    """An absent field with a default reads as its default (the decision uses it), the explanation
    names each defaulted field and list item, and the audit log keeps the case as it was given."""
    raw = case()
    d = PLAN.decide(raw)
    assert d.values["amount"] == Decimal("3594")  # 1968 + 1766 + 0 (support defaulted) + 10 + 100 - 250
    text = d.explain()
    assert "defaults used (not given in the case):" in text
    assert "salary = 0" in text and "children[0].support = 0" in text
    assert "children[1].support" not in text  # given
    db = str(tmp_path / "a.db")
    with AuditLog.open(db) as log:
        [released] = list(log.decide_many(PLAN, [raw]))
    with open_store(db, read_only=True) as store:
        [record] = list(store.records())
        given_back = json.loads(record.stored_input)
        assert "salary" not in given_back and "support" not in given_back["children"][0]
        assert record.decision == released.to_json()


def test_an_ended_parameter_refers_the_case_as_missing_parameter():
    """A parameter whose value is null from a date has no value in force from that day: a rule that
    needs it refers the case (missing-parameter, naming the parameter), by the compiled plan and
    the reference interpreter alike; before that date it decides."""
    before = PLAN.decide(case(day="2025-12-31"))
    after = PLAN.decide(case(day="2026-01-01"))
    assert before.status == "decided" and before.values["amount"] == Decimal("3594")
    assert after.status == "referred" and after.referral_reason == "missing-parameter"
    assert after.missing == ("housing",) and after.rule == "pay"
    data = json.loads(after.to_json())
    assert data["referral"] == {"reason": "missing-parameter", "parameters": ["housing"]}
    assert data["reasons"] == ["Missing parameter: rule pay needs housing, which has no value in force on 2026-01-01."]
    assert data["parameters"]["housing"] is None
    assert run(after.period, after.case).kind == "missing-parameter"


def test_a_parameter_read_only_in_a_branch_not_taken_does_not_refer_the_case():
    """A rule keeps deciding after a parameter ends when it does not read it then: the absence is
    found where the parameter is read, not wherever it is written."""
    text = RULESET.replace("BODY", "x: n * P if day < date(\"2025-01-01\") else n").replace(
        "  T: {table:", "  P: {values: {2024-01-01: 3, 2025-01-01: null}}\n  T: {table:")
    plan = vedtak.compile(vedtak.load_text(text))
    assert plan.decide({"id": "1", "day": "2024-12-31", "key": "a", "n": 2}).values == {"x": 6}
    assert plan.decide({"id": "1", "day": "2025-01-01", "key": "a", "n": 2}).values == {"x": 2}
    unguarded = vedtak.compile(vedtak.load_text(text.replace('x: n * P if day < date("2025-01-01") else n',
                                                             "x: n * P")))
    d = unguarded.decide({"id": "1", "day": "2025-06-01", "key": "a", "n": 2})
    assert d.referral_reason == "missing-parameter" and d.missing == ("P",)
    assert run(d.period, d.case).kind == "missing-parameter"


def test_the_explanation_shows_each_bracket_and_its_part():
    """marginal(): the trace lists every bracket the amount reaches, the part inside and its tax."""
    d = PLAN.decide(case(income="700000"))
    lines = d.trace().lines()
    head = lines.index("scale tax_scale applied to 700000 = 17265.050:")
    assert lines[head + 1:head + 4] == ["  0 to 217400: 217400 at 0 = 0",
                                        "  217400 to 306050: 88650 at 0.017 = 1507.050",
                                        "  above 306050: 393950 at 0.040 = 15758"]
    assert "scale reduction: 700000 falls in the bracket from 500000: 250" in lines
    scales = d.trace().to_dict()["scales"]
    assert [s["scale"] for s in scales] == ["reduction", "tax_scale", "tax_scale"]
    assert json.loads(d.to_json())["parameters"]["tax_scale"][1] == {"from": "217400", "rate": "0.017"}


RULESET = """\
ruleset: t
title: t
version: "1"
valid: {from: 2024-01-01}
decision_date: day
case_id: id
automate: [ok]
case:
  id: string
  day: date
  key: string
  n: int
parameters:
  T: {table: {2024-01-01: {a: 1, b: 2}}}
derive:
  BODY
rules:
  - {id: r, basis: b, when: "x > 0", decide: ok, because: "x is {x}.", values: {x: x}}
otherwise: {refer: general, because: "Other."}
"""


def plan_of(derive: str) -> vedtak.Plan:
    return vedtak.compile(vedtak.load_text(RULESET.replace("BODY", derive)))


def test_a_table_key_missing_at_evaluation_refers_the_case_naming_the_key():
    """A key whose values are not known at load may be missing at evaluation: evaluation-error, with the key."""
    plan = plan_of("x: T[key]")
    assert plan.decide({"id": "1", "day": "2024-05-01", "key": "b", "n": 0}).values == {"x": 2}
    d = plan.decide({"id": "1", "day": "2024-05-01", "key": "zz", "n": 0})
    assert d.referral_reason == "evaluation-error"
    assert d.reasons == ["Rule r could not be evaluated on this case: table \"T\" has no value for the key \"zz\"."]


def test_a_computed_impossible_date_refers_the_case():
    """date(y, m, d) with computed parts that make no date is an evaluation error: the case is referred."""
    plan = plan_of("x: days_between(date(day.year, 2, n), day)")
    assert plan.decide({"id": "1", "day": "2024-05-01", "key": "a", "n": 29}).status == "decided"
    d = plan.decide({"id": "1", "day": "2025-05-01", "key": "a", "n": 29})
    assert d.referral_reason == "evaluation-error" and "date(2025, 2, 29) is not a date" in d.reasons[0]


@pytest.mark.parametrize("expr, day, want", [
    ("add_months(day, 1)", "2025-01-31", "2025-02-28"),
    ("add_months(day, 1)", "2024-01-31", "2024-02-29"),
    ("add_months(day, -1)", "2025-03-31", "2025-02-28"),
    ("add_months(day, 13)", "2024-12-15", "2026-01-15"),
    ("add_years(day, 1)", "2024-02-29", "2025-02-28"),
    ("add_years(day, 4)", "2024-02-29", "2028-02-29"),
    ("add_days(day, -1)", "2024-03-01", "2024-02-29"),
])
def test_date_arithmetic_clamps_month_ends(expr, day, want):
    """add_months and add_years keep the day of the month, clamped to the target month's last day."""
    plan = vedtak.compile(vedtak.load_text(RULESET.replace("BODY", f"y: {expr}").replace(
        '"x > 0"', '"n >= 0"').replace("because: \"x is {x}.\", values: {x: x}", "because: \"{y}\", values: {y: y}")))
    assert plan.decide({"id": "1", "day": day, "key": "a", "n": 0}).values == {"y": date.fromisoformat(want)}


def test_date_arithmetic_beyond_the_calendar_refers_the_case():
    """A date beyond year 9999 is an evaluation error, never a crash."""
    plan = plan_of("x: days_between(day, add_years(day, n))")
    d = plan.decide({"id": "1", "day": "2024-05-01", "key": "a", "n": 8000})
    assert d.referral_reason == "evaluation-error" and "outside the calendar" in d.reasons[0]


@pytest.mark.parametrize("derive, code, message", [
    ('x: T["c"]', "table_incomplete", "table \"T\" on 2024-01-01 has no value for \"c\""),
    ("x: T[n]", "type_mismatch", 'table "T" has string keys, not int'),
    ("x: T + 1", "type_mismatch", '"T" is a table'),
    ("f(k): k + 1\n  x: f(n)", "wrong_arguments", "f() takes one list item"),
    ("f(k): 1\n  x: f", "wrong_arguments", 'is an item function'),
    ("x: day.week", "unknown_name", 'a date has no part "week"'),
    ("x: days_between(day, add_months(day, 1.5))", "type_mismatch", "add_months() adds a whole number, not decimal"),
    ("x: n.year", "unsupported_syntax", "attribute access is allowed only"),
])
def test_misused_forms_are_located_errors(derive, code, message):
    """Each misuse of a part-2 form is a located error with its code and a plain message."""
    with pytest.raises(RulesetError) as info:
        vedtak.load_text(RULESET.replace("BODY", derive))
    d = info.value.diagnostics[0]
    assert d.code == code and message in d.message, d.format()
    assert d.line > 0 and d.column > 0


def test_an_item_function_body_error_is_located_in_the_body_and_names_the_list():
    """An item function is checked against the items of each list it is applied to; an error in its
    body is located in the body and says which list's items it was applied to."""
    text = RULESET.replace("  n: int\n", "  n: int\n  kids: {type: list, items: {age: int}}\n").replace(
        "BODY", "f(k): k.height > 1\n  x: count(c for c in kids if f(c))")
    with pytest.raises(RulesetError) as info:
        vedtak.load_text(text)
    [d] = info.value.diagnostics
    assert d.code == "unknown_name" and (d.line, d.column) == (17, 9)  # at `k.height`
    assert 'no field "height"' in d.message and '(applied to items of "kids")' in d.message


def test_a_default_that_does_not_fit_its_field_is_a_located_error():
    """A default of the wrong type, outside min/max or one_of, is bad_default at the default."""
    for spec, why in [("{type: int, optional: true, default: x}", "is string, not int"),
                      ("{type: int, optional: true, min: 0, default: -1}", "below the field's min 0"),
                      ("{type: string, optional: true, one_of: [a, b], default: c}", "is not one of a, b")]:
        text = RULESET.replace("  n: int\n", f"  n: int\n  m: {spec}\n").replace("BODY", "x: n")
        with pytest.raises(RulesetError) as info:
            vedtak.load_text(text)
        [d] = info.value.diagnostics
        assert d.code == "bad_default" and why in d.message and d.line == 13, d.format()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow])
@given(batch=st.lists(cases, min_size=1, max_size=10))
def test_records_of_part2_decisions_render_exactly_verify_and_replay(batch, tmp_path_factory):
    """Decisions with scales, tables, item functions, defaults and missing-parameter referrals are
    recorded compactly, render back byte for byte what was released, verify, and replay clean."""
    raws = [json.loads(json.dumps(c, default=_plain)) for c in batch]
    db = str(tmp_path_factory.mktemp("p2") / "a.db")
    with AuditLog.open(db, batch_size=4) as log:
        released = [d.to_json() for d in log.decide_many(PLAN, raws)]
    with open_store(db, read_only=True) as store:
        records = list(store.records())
        assert [r.decision for r in records] == released
        for r, text in zip(records, released):
            assert r.released_sha256 == hashlib.sha256(text.encode("utf-8")).hexdigest()
        assert verify(store).ok
        report = replay(store)
        assert report.ok and not report.differences


def test_a_table_key_out_of_range_and_a_null_entry_are_located_where_written():
    """A whole-number table key beyond 34 digits is out_of_range at the key; a null entry is refused
    at the table it stands in, naming the key, in plain words."""
    big = RULESET.replace("  T: {table: {2024-01-01: {a: 1, b: 2}}}",
                          "  T: {table: {2024-01-01: {" + "1" + "0" * 40 + ": 1}}}").replace("BODY", "x: n")
    with pytest.raises(RulesetError) as info:
        vedtak.load_text(big)
    [d] = info.value.diagnostics
    assert d.code == "out_of_range" and "a key" in d.message and (d.line, d.column) == (14, 28)
    null = RULESET.replace("{a: 1, b: 2}", "{a: null, b: 2}").replace("BODY", "x: n")
    with pytest.raises(RulesetError) as info:
        vedtak.load_text(null)
    [d] = info.value.diagnostics
    assert d.code == "invalid_value" and 'the table entry "a" is null' in d.message
    assert "datetime" not in d.message and d.hint is None


def test_a_problem_an_overlay_causes_in_its_base_names_the_overlay(tmp_path):
    """An overlay that removes the only rule deciding an automated outcome leaves its base
    inconsistent: the error stands at the base's line, and its hint names the overlay and what it
    removed. A trace shows a list item's defaulted field as read."""
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(f"ruleset: study-grant\nextends: {ROOT / 'rulesets' / 'study-grant'}\nversion: x\n"
                       "rules:\n  remove: [grant]\n")
    with pytest.raises(RulesetError) as info:
        vedtak.load(overlay)
    [d] = info.value.diagnostics
    assert d.code == "unknown_outcome" and d.file.endswith("study-grant.yaml")
    assert str(overlay) in d.hint and "removes grant" in d.hint
    trace = PLAN.decide(case()).trace().lines()
    assert any("children = [{birth_date: 2020-01-01, lives_with: yes, support: 0}" in line for line in trace)
