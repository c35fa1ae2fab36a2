"""The fast decision writer: ``Decision.to_json()`` is byte-identical to the canonical
``to_json_generic()`` for every decision, reason texts agree with the reference interpreter,
and ``plan.decide`` (with its single-version shortcut) decides as the reference does."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import vedtak
from vedtak.evaluation.decision import Decision, canonical_json, json_text, reason_json, reason_value
from vedtak.errors import RulesetError
from vedtak.language.load import format_value, load_text
from vedtak.evaluation.reference import Interpreter, run
from vedtak.evaluation.runtime import EVALUATION_ERRORS

from conftest import CHILD_BENEFIT, ROOT, STUDY_GRANT
from strategies import cases
from test_evaluation_errors import EXTREME_DECIMALS, EXTREME_INTS, _rulesets

PLANS = {name: vedtak.compile(vedtak.load(path)) for name, path in
         (("study-grant", STUDY_GRANT), ("dagpenger", ROOT / "rulesets" / "dagpenger"),
          ("studiestotte-omgjoring", ROOT / "rulesets" / "studiestotte-omgjoring"),
          ("child-benefit", CHILD_BENEFIT))}
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _versions():
    for name, plan in PLANS.items():
        for vp in plan.versions:
            yield pytest.param(plan, vp.version, id=f"{name}:{vp.version.version}")


def _reference_reasons(decision) -> list[str] | None:
    """The reason text as the reference interpreter renders it (None: it cannot be rendered)."""
    o = decision._outcome
    interp = Interpreter(decision.period, decision.case)
    values = decision.values

    def lookup(name):
        return values.get(name) if name in o.rule.values else interp.lookup(name)
    try:
        return [o.rule.because.render(lookup)]
    except EVALUATION_ERRORS:
        return None


def _check(plan, decision) -> None:
    """The fast JSON (and values JSON) is the canonical JSON; without the derived values it kept, the
    same JSON and reasons; an ordinary decision agrees with the reference interpreter."""
    text = decision.to_json()
    assert text == decision.to_json_generic()
    assert decision.values_json() == canonical_json(decision.to_dict()["values"])
    assert decision.to_json() == text  # the writer, once built, writes the same again
    if decision.status == "rejected":
        return
    bare = Decision((decision._outcome, decision.case, tuple.__getitem__(decision, 2), decision.detail))
    assert bare.to_json() == text and bare.reasons == decision.reasons
    result = run(decision.period, decision.case)
    kind = {"missing-data": "missing-data", "evaluation-error": "error"}.get(decision.referral_reason, "match")
    assert (result.index, result.kind) == (decision._outcome.index, kind)
    if kind == "match":
        assert result.values == (tuple.__getitem__(decision, 2) or None)
        assert decision.detail is None
        expected = _reference_reasons(decision)
        if expected is None:
            assert decision.reasons[0].startswith(f"(the reason text of rule {decision.rule} could not be rendered")
        else:
            assert decision.reasons[:1] == expected


@pytest.mark.parametrize("plan,version", list(_versions()))
@SETTINGS
@given(data=st.data())
def test_fast_json_equals_the_canonical_json_for_generated_cases(plan, version, data):
    """Every valid generated case of every shipped ruleset (and the child benefit, with list items
    and missing data): the fast JSON equals the generic one, and the decision the reference's."""
    case = data.draw(cases(version))
    _check(plan, plan.decide(case))


def _wide_numbers():
    """Decimals with many digits, negative values, exponents, and whole numbers of every size."""
    return st.one_of(
        st.decimals(allow_nan=False, allow_infinity=False),
        st.integers(-(10 ** 40), 10 ** 40),
        st.sampled_from([Decimal(x) for x in EXTREME_DECIMALS] + [Decimal("-0.00"), Decimal("1E+3"),
                                                                   Decimal("123456789012345678901234.5678901")]),
    )


@pytest.mark.parametrize("plan,version", list(_versions()))
@SETTINGS
@given(data=st.data())
def test_fast_json_equals_the_canonical_json_for_mutated_cases(plan, version, data):
    """A valid case with fields replaced by wide or negative numbers, nulls, text or nothing (so
    rejections and missing-data referrals too) is written exactly as the generic JSON."""
    case = dict(data.draw(cases(version)))
    for name in data.draw(st.lists(st.sampled_from(sorted(case)), max_size=3, unique=True)):
        case[name] = data.draw(st.one_of(_wide_numbers(), st.none(), st.just("x\"\\é"), st.just(True)))
    if data.draw(st.booleans()):
        case.pop(data.draw(st.sampled_from(sorted(case))))
    if data.draw(st.booleans()):  # often outside every version's window
        case[version.model.decision_date] = data.draw(st.dates(date(1990, 1, 1), date(2040, 1, 1))).isoformat()
    decision = plan.decide(case)
    _check(plan, decision)
    _same_as_validate_then_evaluate(plan, case, decision)


def _same_as_validate_then_evaluate(plan, raw, decision) -> None:
    """plan.decide (with its one-version shortcut) decides as plan.evaluate(plan.validate(raw)):
    the same period, case, values, detail and JSON."""
    other = plan.evaluate(plan.validate(raw))
    assert decision.to_json() == other.to_json()
    assert (decision.period, decision._outcome) == (other.period, other._outcome)
    assert (decision.case, decision.values, decision.detail) == (other.case, other.values, other.detail)


@pytest.mark.parametrize("raw", [[1, 2], "text", None, 7, {}, {"case_id": 1}])
def test_decide_rejects_what_is_not_a_case_as_validate_does(raw):
    """Input that is no case at all is rejected by decide exactly as by validate then evaluate."""
    for plan in PLANS.values():
        decision = plan.decide(raw)
        assert decision.status == "rejected"
        _same_as_validate_then_evaluate(plan, raw, decision)


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
@given(text=_rulesets(), data=st.data())
def test_fast_json_equals_the_canonical_json_over_extreme_arithmetic(text, data):
    """Random arithmetic over extreme values in conditions, values and reason texts (derived values
    kept by the decision, tiny, huge and negative decimals, whole numbers past 10^33)."""
    try:
        plan = vedtak.compile(load_text(text))
    except RulesetError:
        assume(False)
    for n in range(4):
        case = {"id": n, "day": "2024-05-01",
                "a": Decimal(data.draw(st.sampled_from(EXTREME_DECIMALS))),
                "b": Decimal(data.draw(st.sampled_from(EXTREME_DECIMALS))),
                "i": data.draw(st.sampled_from(EXTREME_INTS)), "j": data.draw(st.sampled_from(EXTREME_INTS))}
        _check(plan, plan.decide(case))


@given(value=st.one_of(st.decimals(), st.decimals(places=4), st.integers(), st.integers(-(10 ** 60), 10 ** 60),
                       st.sampled_from([Decimal("-0"), Decimal("-0.000"), Decimal("0E+5"), Decimal("1E-7"),
                                        Decimal("1" * 39 + ".5"), Decimal("1" * 40), Decimal("12995.0000")])))
@settings(max_examples=300, deadline=None)
def test_reason_value_writes_numbers_as_format_value(value):
    """The quick formatter of reason texts writes every int and decimal (NaN, infinities, many
    digits, exponents, negative zero) as format_value does, or fails alike."""
    try:
        expected = format_value(value)
    except Exception as exc:  # noqa: BLE001 - e.g. a signalling NaN: it must fail the same way
        with pytest.raises(type(exc)):
            reason_value(value)
        return
    assert reason_value(value) == expected


_ANY_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10 ** 45), 10 ** 45), st.decimals(allow_nan=False),
              st.text(), st.dates(), st.datetimes()),
    lambda sub: st.one_of(st.lists(sub, max_size=3), st.dictionaries(st.text(max_size=3), sub, max_size=3)),
    max_leaves=6)


@given(value=_ANY_VALUE)
@settings(max_examples=300, deadline=None)
def test_a_reason_value_inside_a_json_string_is_the_json_escape_of_its_text(value):
    """Each value of a reason text written inside its JSON string (how the fast writer joins the
    string from escaped pieces) is exactly the JSON escape of the value's text."""
    assert '"' + reason_json(value) + '"' == json_text(reason_value(value))


RENDER = """\
ruleset: render
title: Rendering
version: "1"
valid: {from: 2020-01-01}
decision_date: day
case_id: id
automate: [ok]
review_queue: review
case:
  id: string
  day: date
  name: string
  amount: decimal
  n: int
  flag: bool
  extra: {type: decimal, optional: true}
parameters:
  RATE: {values: {2020-01-01: 0.10, 2024-01-01: 0.125}}
  START: {values: {2020-01-01: 2020-01-01}}
derive:
  share: amount * RATE
rules:
  - id: held
    basis: "§ 1 \\"held\\""
    when: flag
    decide: hold
    values: {z_name: name, a_share: share, m_day: day, b_flag: flag, n: n}
    because: "Held for {name}: {share} of {amount} ({n}, {flag}, {day}, since {START}, rate {RATE})."
  - id: extra
    basis: "§ 2"
    when: extra > 1
    decide: ok
    values: {total: extra + share}
    because: "Extra {extra}, {total} in all: «{name}»."
otherwise: {refer: general, basis: "§ 3", because: "Nothing for {name} ({share})."}
"""


@given(name=st.text(max_size=6), cid=st.text(max_size=4), amount=_wide_numbers(), n=st.integers(-10 ** 40, 10 ** 40),
       flag=st.booleans(), extra=st.one_of(st.none(), _wide_numbers()),
       day=st.dates(date(2019, 6, 1), date(2026, 1, 1)))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_strings_values_of_every_type_and_policy_referrals_are_written_exactly(name, cid, amount, n, flag, extra, day):
    """Text with quotes, backslashes, control characters and non-ASCII (in the case id, the reason
    and the values), values of every type under sorted keys, automation-policy referrals, two
    parameter periods, rejections and missing data: the fast JSON is the generic JSON."""
    case = {"id": cid, "day": day.isoformat(), "name": name, "amount": amount, "n": n, "flag": flag}
    if extra is not None:
        case["extra"] = extra
    _check(RENDER_PLAN, RENDER_PLAN.decide(case))


RENDER_PLAN = vedtak.compile(load_text(RENDER))


def test_a_library_callers_lone_surrogate_is_escaped_as_the_generic_json_does():
    """A library caller may evaluate a case that never met the validator: a lone surrogate in its
    text is written as its JSON escape by both writers."""
    case = {"id": "a\ud800", "day": date(2024, 5, 1), "name": "b\udc00", "amount": Decimal("2.50"), "n": 3,
            "flag": True, "extra": None}
    d = RENDER_PLAN.evaluate(case)
    assert d.status == "referred" and d.referral_reason == "automation-policy"
    assert "\\ud800" in d.to_json() and d.to_json() == d.to_json_generic()


@pytest.mark.parametrize("cid", [Decimal("1.50"), date(2024, 1, 2), True, None, 10 ** 40, ["a"]])
def test_a_library_callers_case_id_of_any_type_is_written_as_the_generic_json_does(cid):
    """evaluate() takes an unvalidated dict: a case id that is no string or int is still written
    exactly as the generic JSON writes it."""
    case = {"id": cid, "day": date(2024, 5, 1), "name": "b", "amount": Decimal("2.50"), "n": 3,
            "flag": False, "extra": Decimal(2)}
    d = RENDER_PLAN.evaluate(case)
    assert d.rule == "extra" and d.to_json() == d.to_json_generic()


def test_an_ordinary_decision_keeps_no_detail_and_an_unusual_one_keeps_its_own():
    """``detail`` is None for a decided case (the derived values it keeps for its reason are not
    detail), and the missing fields of a missing-data referral."""
    base = {"id": "1", "day": "2024-05-01", "name": "x", "amount": 10, "n": 1, "flag": False, "extra": 5}
    granted = RENDER_PLAN.decide(base)
    assert (granted.rule, granted.detail, granted.values["total"]) == ("extra", None, Decimal("6.250"))
    assert granted.reasons == ["Extra 5, 6.250 in all: «x»."]
    missing = RENDER_PLAN.decide(dict(base, extra=None))
    assert (missing.referral_reason, missing.detail) == ("missing-data", ("extra",))


_BOUNDS = st.one_of(st.none(), st.sampled_from([Decimal("0"), Decimal("0.5"), Decimal("-3"), Decimal("130"),
                                                Decimal("1E+2"), Decimal("9E+33"), Decimal("-9E+33"), Decimal("1E-3"),
                                                Decimal("129.999")]))


@given(low=_BOUNDS, high=_BOUNDS, value=st.one_of(st.integers(-200, 200), st.integers(-(10 ** 41), 10 ** 41),
                                                  st.decimals(allow_nan=False, places=3), st.booleans()))
@settings(max_examples=300, deadline=None)
def test_the_generated_validator_compares_an_int_field_with_its_bounds_as_the_careful_path(low, high, value):
    """An int field's whole bounds are compared as int literals by the generated validator: for
    whole, fractional, exponent and large bounds it accepts and rejects as the careful path does."""
    from vedtak.evaluation.cases import build_validator, validate_slow
    from vedtak.language.model import FieldSpec
    schema = {"n": FieldSpec(type="int", min=low, max=high)}
    got, errors = build_validator(schema)({"n": value})
    want, want_errors = validate_slow(schema, {"n": value})
    assert got == want and list(errors) == list(want_errors)
