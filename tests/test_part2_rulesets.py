"""Rulesets written in the part-2 forms: trinnskatt against a brute-force tax, and the child-benefit
golden ruleset rewritten with item functions and rate tables deciding exactly as the original."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vedtak

from cli_support import run
from conftest import CHILD_BENEFIT, GOLDEN, ROOT
from strategies import cases

TRINNSKATT = ROOT / "rulesets" / "trinnskatt"
CHILD_BENEFIT_PART2 = GOLDEN / "rulesets" / "child-benefit-part2"
ORIGINAL = vedtak.compile(vedtak.load(CHILD_BENEFIT))
PART2 = vedtak.compile(vedtak.load(CHILD_BENEFIT_PART2))
TAX = vedtak.compile(vedtak.load(TRINNSKATT))
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Stortingets skattevedtak § 3-1, as in shared/facts/norwegian-rules.md: (from, rate) per bracket,
# and bracket 3's rate in Finnmark and Nord-Troms (tiltakssonen).
BRACKETS = {2024: [(208050, "0.017"), (292850, "0.040"), (670000, "0.136"), (937900, "0.166"), (1350000, "0.176")],
            2025: [(217400, "0.017"), (306050, "0.040"), (697150, "0.137"), (942400, "0.167"), (1410750, "0.177")]}
TILTAKSSONE_BRACKET_3 = {2024: "0.116", 2025: "0.117"}


def brute_force_tax(year: int, income: Decimal, tiltakssone: bool) -> tuple[Decimal, Decimal]:
    """The bracket tax and the marginal rate, one krone band at a time: each bracket's rate on the
    part of the income between its threshold and the next one."""
    table = [(Decimal(f), Decimal(TILTAKSSONE_BRACKET_3[year] if tiltakssone and i == 2 else r))
             for i, (f, r) in enumerate(BRACKETS[year])]
    tax, rate = Decimal(0), Decimal(0)
    for i, (start, r) in enumerate(table):
        end = table[i + 1][0] if i + 1 < len(table) else None
        inside = (income if end is None else min(income, end)) - start
        if inside > 0:
            tax += inside * r
        if income >= start:
            rate = r
    return tax, rate


def _incomes():
    near = [Decimal(f) + d for year in BRACKETS for f, _ in BRACKETS[year]
            for d in (Decimal(-1), Decimal("-0.01"), Decimal(0), Decimal("0.01"), Decimal(1))]
    return st.one_of(st.sampled_from(near + [Decimal(0)]),
                     st.decimals(min_value=0, max_value=5_000_000, places=2, allow_nan=False, allow_infinity=False))


@SETTINGS
@given(year=st.sampled_from(sorted(BRACKETS)), income=_incomes(), tiltakssone=st.booleans(),
       day=st.integers(0, 364))
def test_trinnskatt_equals_a_brute_force_sum_over_the_published_brackets(year, income, tiltakssone, day):
    """For any income in 2024 or 2025, in or outside tiltakssonen, the decision's tax before rounding
    is the Decimal sum over the facts' brackets, the tax is it rounded half up to whole kroner, and the
    marginal rate is the rate of the bracket the income is in."""
    when = date(year, 1, 1) + timedelta(days=day)
    decision = TAX.decide({"person_id": "P", "income_year_end": when.isoformat(), "personal_income": str(income),
                           "tiltakssone": tiltakssone})
    tax, rate = brute_force_tax(year, income, tiltakssone)
    assert (decision.status, decision.outcome) == ("decided", "assess"), decision.explain()
    assert decision.rule == ("tiltakssone" if tiltakssone else "ordinary")
    assert decision.values["tax_before_rounding"] == tax
    assert decision.values["bracket_tax"] == tax.quantize(Decimal(1), rounding=ROUND_HALF_UP)
    assert decision.values["marginal_rate"] == rate


def test_trinnskatt_gives_the_published_worked_check():
    """700 000 NOK in 2025 gives 1 507.05 + 15 644 + 390.45 = 17 541.50, published as 17 542."""
    decision = TAX.decide({"person_id": "P", "income_year_end": "2025-12-31", "personal_income": 700000,
                           "tiltakssone": False})
    assert decision.values["tax_before_rounding"] == Decimal("17541.50")
    assert decision.values["bracket_tax"] == Decimal("17542")
    assert decision.values["marginal_rate"] == Decimal("0.137")


def test_trinnskatt_examples_pass_through_the_command_line():
    """`vedtak test rulesets/trinnskatt` runs both years' examples, all passing, and exits 0."""
    r = run("test", TRINNSKATT)
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[-1] == "53 passed, 0 failed"


def _comparable(decision) -> dict:
    """The decision JSON without what names the ruleset's source (sha) and its parameters' shapes."""
    data = json.loads(decision.to_json())
    data.pop("ruleset", None)
    data.pop("parameters", None)
    return data


def _child(decided_on: date):
    """A child born relative to the decision date: newborn, around 6 and 18, unborn, or any age."""
    days = st.one_of(st.integers(-40, 40), st.integers(6 * 365 - 3, 6 * 365 + 3),
                     st.integers(18 * 365 - 3, 18 * 365 + 6), st.integers(40, 30 * 365), st.integers(40, 30 * 365))
    return st.fixed_dictionaries({"birth_date": days.map(lambda d: decided_on - timedelta(days=d)),
                                  "disabled": st.booleans(),
                                  "support": st.one_of(st.just(Decimal(0)),
                                                       st.decimals(0, 20000, places=2, allow_nan=False))})


@st.composite
def _child_benefit_cases(draw):
    """Schema-valid cases of either version (the original's strategy), with children drawn around
    the ages the rules test and applicants around 67, some missing the optional partner income, some
    damaged (a field removed or mistyped, a municipality outside the list)."""
    version = draw(st.sampled_from([vp.version for vp in ORIGINAL.versions]))
    case = draw(cases(version))
    decided_on = case["decided_on"]
    case["resident"] = draw(st.sampled_from([True, True, True, False]))
    if draw(st.sampled_from([True, True, True, False])):
        case["children"] = draw(st.lists(_child(decided_on), min_size=1, max_size=4))
    if draw(st.booleans()):  # an applicant around 67, the age the `late` rule tests
        case["birth_date"] = decided_on - timedelta(days=draw(st.integers(67 * 365 + 5, 67 * 365 + 25)))
    if draw(st.booleans()):  # household incomes around twice the cap, where `pay` ends
        case["income"] = draw(st.sampled_from([Decimal(0), Decimal(400000), Decimal(1400000), Decimal(1400001)]))
        case["partner_income"] = draw(st.sampled_from([Decimal(0), Decimal(1), Decimal(700000), Decimal(700001)]))
    damage = draw(st.sampled_from(["none"] * 7 + ["drop", "municipality", "type"]))
    if damage == "drop":
        case.pop(draw(st.sampled_from(sorted(case))))
    elif damage == "municipality":
        case["municipality"] = "stavanger"
    elif damage == "type":
        case[draw(st.sampled_from(["income", "resident", "children"]))] = "not this"
    return case


@SETTINGS
@given(case=_child_benefit_cases())
def test_child_benefit_in_part2_forms_decides_exactly_as_the_original(case):
    """The item functions and rate tables give the same status, outcome, queue, rule, basis, values,
    reasons, referral reason and missing fields (or rejection errors) as the if-chains on every case."""
    a, b = ORIGINAL.decide(dict(case)), PART2.decide(dict(case))
    assert (b.status, b.outcome, b.queue, b.rule, b.referral_reason, b.missing) == \
        (a.status, a.outcome, a.queue, a.rule, a.referral_reason, a.missing), b.explain()
    assert [e.code for e in b.errors] == [e.code for e in a.errors]
    assert _comparable(b) == _comparable(a)


@SETTINGS
@given(case=_child_benefit_cases(), data=st.data())
def test_child_order_never_changes_a_part2_decision(case, data):
    """Permuting the children gives byte-identical decision JSON: sums, counts, min and max over
    item functions do not depend on the order of the list."""
    children = case.get("children")
    if not isinstance(children, list):
        return
    shuffled = data.draw(st.permutations(children))
    first = PART2.decide(dict(case)).to_json()
    assert PART2.decide(dict(case, children=list(shuffled))).to_json() == first


@pytest.mark.parametrize("name", ["2024", "2025"])
def test_part2_child_benefit_uses_item_functions_and_tables(name):
    """The rewrite really uses the part-2 forms: item functions applied, rate tables, no if-chain on
    the municipality, and the per-child age written once."""
    (version,) = [v for v in PART2.ruleset.versions if v.version == name]
    assert {"child_age", "young", "child_months", "age_band", "child_rate"} <= set(version.item_functions)
    assert all(f.uses > 0 for f in version.item_functions.values())
    text = (CHILD_BENEFIT_PART2 / f"{name}.yaml").read_text()
    assert "table:" in text and 'in ["tromso"]' not in text
    assert text.count("years_between(child.birth_date") == 1 and "years_between(c.birth_date" not in text
