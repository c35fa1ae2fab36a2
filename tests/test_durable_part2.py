"""The durable-rules backend on the ruleset language, part 2: scales, tables, item functions,
date parts and add_*, parameters that end, case and item defaults. It decides generated cases
(damaged ones too) exactly as the compiled plan and the reference interpreter; what it cannot
translate is a located `not_translatable` when its plan is built."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vedtak
from vedtak.evaluation.decision import Decision
from vedtak.evaluation.durable import DurablePlan
from vedtak.evaluation.examples import run_examples
from vedtak.evaluation.reference import run

from conftest import GOLDEN

FORMS = GOLDEN / "rulesets" / "part2-forms"
# the other part-2 golden rulesets, decided with the generic case strategy
OTHERS = [GOLDEN / "rulesets" / n for n in ("part2-core", "part2-props", "child-benefit-part2")]
PLANS = {p.name: (vedtak.compile(p), DurablePlan(vedtak.load(p))) for p in [FORMS, *OTHERS] if p.is_dir()}
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# every scale threshold of part2-forms, and the amounts around them
THRESHOLDS = [0, 100000, 208050, 217400, 292850, 300000, 306050, 500000, 670000, 697150]
NEAR = sorted({Decimal(t) + d for t in THRESHOLDS for d in (Decimal("-1"), Decimal("-0.01"), 0, Decimal("0.01"), 1)
               if t + d >= 0})
# month and year ends, leap days, and the days parameters change or end on
DAYS = [date(2024, 1, 1), date(2024, 1, 31), date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 31),
        date(2024, 8, 31), date(2024, 9, 1), date(2024, 12, 28), date(2024, 12, 31), date(2025, 1, 1),
        date(2025, 2, 28), date(2025, 6, 30), date(2025, 7, 1), date(2025, 9, 30), date(2025, 10, 1),
        date(2025, 12, 29), date(2025, 12, 31), date(2026, 2, 28)]


def _around(day: date, years: int):
    """Dates about ``years`` years before ``day``: the day an age changes, and its neighbours."""
    try:
        anniversary = day.replace(year=day.year - years)
    except ValueError:  # 29 February
        anniversary = date(day.year - years, 2, 28)
    return st.sampled_from([anniversary + timedelta(days=k) for k in (-1, 0, 1)])


@st.composite
def forms_cases(draw):
    """Cases for part2-forms: incomes at every scale threshold, month and year ends, children
    whose age just changes, optional and defaulted fields absent or given, table keys the
    tables lack (a free-text category, zone 5)."""
    day = draw(st.one_of(st.sampled_from(DAYS), st.dates(date(2024, 1, 1), date(2026, 3, 31))))
    money = st.one_of(st.sampled_from(NEAR), st.decimals(0, 1_000_000, places=2))

    def child():
        born = st.one_of(*(_around(day, y) for y in (6, 16, 18)), st.dates(day - timedelta(days=17 * 365), day))
        return st.fixed_dictionaries(
            {"birth_date": born, "lives_with": st.sampled_from([True, True, True, False]),
             "school": st.sampled_from([None, "boarding", "day", "day", "day", "day"])},
            optional={"support": st.one_of(st.none(), st.decimals(0, 500, places=2)),
                      "band": st.one_of(st.none(), st.sampled_from(["low", "high"]))}
        ).map(lambda c: {k: v for k, v in c.items() if not (k == "school" and v is None)})

    case = draw(st.fixed_dictionaries(
        {"ref": st.just("C1"), "day": st.just(day), "income": money,
         "region": st.sampled_from(["north", "south", "finnmark"]), "zone": st.integers(1, 5),
         "children": st.lists(child(), min_size=draw(st.sampled_from([0, 1, 1, 1])), max_size=4)},
        optional={"bonus": st.one_of(st.none(), money),
                  "category": st.one_of(st.none(), st.sampled_from(["a", "b", "zz"])),
                  "moved_in": st.one_of(st.none(), _around(day, 1), st.dates(day - timedelta(days=800), day)),
                  "abroad": st.one_of(st.none(), st.booleans())}))
    return {k: (v.isoformat() if isinstance(v, date) else str(v) if isinstance(v, Decimal) else v)
            for k, v in case.items() if v is not None} | {
        "children": [{k: (v.isoformat() if isinstance(v, date) else str(v) if isinstance(v, Decimal) else v)
                      for k, v in c.items()} for c in case["children"]]}


def _reference(plan: vedtak.Plan, raw: dict) -> Decision:
    """The decision the reference interpreter makes (a tree walk over the checked rules)."""
    case, rejection = plan.validate(raw)
    if rejection is not None:  # validation is the plan's, before any evaluator
        return rejection
    period = plan.period_for(case[plan._date_field])
    result = run(period, case)
    outcomes = {"match": period.outcomes, "missing-data": period.missing,
                "missing-parameter": period.missing_parameter, "error": period.failed}[result.kind]
    detail = {"match": result.values, "error": result.error}.get(result.kind, result.missing)
    return Decision((outcomes[result.index], case, detail, None) if result.kind == "match"
                    else (outcomes[result.index], case, None, detail))


def _three(name: str, raw: dict) -> tuple[str, str, str]:
    compiled, durable = PLANS[name]
    return compiled.decide(raw).to_json(), durable.decide(raw).to_json(), _reference(compiled, raw).to_json()


@SETTINGS
@given(raw=forms_cases())
def test_durable_compiled_and_reference_decide_part2_forms_identically(raw):
    """Differential over every part-2 form: the durable backend, the compiled plan and the
    reference interpreter give the same decision JSON (outcome, rule, values, reasons, referral)."""
    compiled, durable, reference = _three("part2-forms", raw)
    assert compiled == reference
    if "binary floats" in durable:
        return  # durable-rules cannot compare this decimal exactly; it refers, saying so
    assert durable == compiled


def _other_versions():
    for name in sorted(set(PLANS) - {"part2-forms"}):
        for vp in PLANS[name][0].versions:
            yield pytest.param(name, vp.version, id=f"{name}:{vp.version.version}")


@pytest.mark.parametrize("name,version", list(_other_versions()))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_durable_agrees_on_the_other_part2_golden_rulesets(name, version, data):
    """The same differential on the other part-2 golden rulesets, with the generic case strategy."""
    from strategies import cases
    compiled, durable = PLANS[name]
    raw = data.draw(cases(version))
    a, b = compiled.decide(raw).to_json(), durable.decide(raw).to_json()
    if "binary floats" not in b:
        assert b == a


@pytest.mark.parametrize("name", sorted(PLANS))
def test_every_part2_example_decides_alike_on_all_three(name):
    """Each golden example passes on the compiled plan, and the durable backend and the reference
    interpreter give it the same decision."""
    compiled, _ = PLANS[name]
    results = list(run_examples(compiled))
    assert all(r.mismatches == [] for r in results)  # part2-props has no examples
    for result in results:
        a, b, c = _three(name, dict(result.example.case))
        assert a == b == c, result.example.name


def _case(**over) -> dict:
    base = {"ref": "T1", "day": "2024-03-15", "income": "150000", "region": "north", "zone": 1,
            "children": [{"birth_date": "2022-05-01", "lives_with": True}]}
    return base | over


def test_no_table_or_scale_is_posted_as_an_event_field():
    """Lookups, scale functions, date parts, add_* and item functions reach durable-rules as values
    the reference interpreter computed before posting: every posted field is a plain scalar, and
    no table or scale parameter is ever an event field."""
    compiled, durable = PLANS["part2-forms"]
    tables = {n for n, t in compiled.ruleset.latest.parameters.items() if t.kind != "values"}
    case, _ = compiled.validate(_case(bonus="10", moved_in="2023-06-01"))
    for vp in durable.plan.versions:
        for period in vp.periods:
            event, _, _ = durable._event(period, case)
            assert not tables & set(event)
            assert all(isinstance(v, (bool, int, float, str)) for v in event.values())
            lifted = [node for _, node in durable._lifted[id(period)].values()]
            assert not any(type(node).__name__ == "Name" and node.id in tables for node in lifted)


def test_an_absent_field_with_a_default_is_posted_as_its_default():
    """`abroad` (default false) is posted as false when the case lacks it, as given otherwise."""
    compiled, durable = PLANS["part2-forms"]
    period = durable.plan.period_for(date(2024, 3, 15))
    without, _ = compiled.validate(_case())
    given, _ = compiled.validate(_case(abroad=True))
    assert durable._event(period, without)[0]["abroad"] is False
    assert durable._event(period, given)[0]["abroad"] is True
    assert durable.decide(_case(abroad=True)).rule == "abroad"
    assert durable.decide(_case()).rule == "pay"


def test_a_rule_needing_a_parameter_that_ended_is_referred_by_durable_as_by_the_plan():
    """A parameter with no value in force (null) refers the case at the first rule that needs it,
    in its condition (grace_months) or in its values (housing): missing-parameter, naming it."""
    for day, rule, name in (("2025-12-30", "year-end", "grace_months"), ("2025-08-01", "pay", "housing")):
        compiled, durable, reference = _three("part2-forms", _case(day=day))
        assert compiled == durable == reference
        d = PLANS["part2-forms"][1].decide(_case(day=day))
        assert (d.status, d.rule, d.referral_reason, d.missing) == ("referred", rule, "missing-parameter", (name,))


def test_a_value_computed_before_posting_that_fails_where_the_rule_does_not_need_it_is_no_referral():
    """`known(moved_in) and add_years(moved_in, 1) > day`: with moved_in absent the lifted
    add_years fails, but the condition never reaches it; the case goes on to later rules."""
    compiled, durable, reference = _three("part2-forms", _case())
    assert compiled == durable == reference
    assert PLANS["part2-forms"][1].decide(_case()).rule == "pay"


def test_a_missing_table_key_and_an_amount_below_the_first_bracket_are_evaluation_errors():
    """A key the table lacks (zone 5; a free-text category) and bracket() below the scale's first
    bracket refer the case (evaluation-error) with the same words on all three evaluators."""
    boarding = [{"birth_date": "2010-01-01", "lives_with": True, "school": "boarding"}]
    for raw, rule in ((_case(zone=5, children=boarding), "boarding-school"),
                      (_case(category="zz"), "too-many-categories"), (_case(income="99999.99"), "pay")):
        compiled, durable, reference = _three("part2-forms", raw)
        assert compiled == durable == reference
        d = PLANS["part2-forms"][1].decide(raw)
        assert (d.rule, d.referral_reason) == (rule, "evaluation-error")


def test_a_comparison_of_two_constants_built_from_part2_forms_is_a_located_not_translatable(tmp_path):
    """What durable-rules cannot take (a comparison with no event field on either side) is refused
    when the durable plan is built, at the comparison's first operand, with a hint."""
    text = (FORMS / "2024.yaml").read_text().replace("when: abroad\n", 'when: abroad or 1 > 2\n')
    (tmp_path / "r.yaml").write_text(text)
    vedtak.compile(tmp_path / "r.yaml")  # the default backend takes it
    with pytest.raises(vedtak.RulesetError) as info:
        DurablePlan(vedtak.load(tmp_path / "r.yaml"))
    (d,) = info.value.diagnostics
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "abroad or 1 > 2" in s)
    assert (d.code, d.line, d.column, d.hint) == ("not_translatable", line, 21,
                                                  "use the default backend for this ruleset")


def test_decide_on_the_durable_backend_explains_part2_decisions_as_the_default(tmp_path):
    """`vedtak decide --backend durable` prints the same explanation (scales bracket by bracket,
    defaults used, a missing parameter) as the default backend."""
    import json
    from click.testing import CliRunner
    from vedtak.cli.main import main
    for day in ("2025-02-28", "2025-08-01"):
        path = tmp_path / f"{day}.json"
        path.write_text(json.dumps(_case(day=day, income="306051", region="finnmark")))
        args = ["decide", str(FORMS), str(path)]
        default, durable = CliRunner().invoke(main, args), CliRunner().invoke(main, args + ["--backend", "durable"])
        assert (default.exit_code, durable.exit_code) == (0, 0)
        assert durable.output == default.output
    assert "defaults used (not given in the case):" in default.output
    assert "Missing parameter: rule pay needs housing" in default.output
