"""Optional fields inside list items: missing-data naming the item path, known(p.x), and
outcomes that never depend on the order of a list's items (issue 13, section 3)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vedtak
from vedtak.cli.main import main
from vedtak.errors import RulesetError
from vedtak.evaluation.reference import run

try:
    from vedtak.evaluation.durable import DurablePlan
    import durable  # noqa: F401
    HAVE_DURABLE = True
except ImportError:  # pragma: no cover - depends on the installation
    HAVE_DURABLE = False

HEADER = """\
ruleset: household
title: Household support
version: "1"
valid: {from: 2025-01-01}
decision_date: day
case_id: id
automate: [grant, deny]
case:
  id: {type: string}
  day: {type: date}
  persons:
    type: list
    items: {name: string, adult: bool, salary: {type: money, optional: true}}
derive:
  total: sum(p.salary for p in persons)
  known_total: sum(p.salary for p in persons if known(p.salary))
  top: max(p.salary for p in persons)
  n_known: count(p for p in persons if known(p.salary))
"""


def ruleset(tmp_path, when: str, values: str = "{}", because: str = "Granted.") -> str:
    """A one-rule ruleset over `persons`, written to a file; returns its path."""
    text = HEADER + f"""\
rules:
  - id: support
    basis: "§ 1"
    when: "{when}"
    decide: grant
    values: {values}
    because: "{because}"
otherwise: {{decide: deny, because: "No rule applies."}}
"""
    path = tmp_path / f"rs{abs(hash((when, values, because)))}.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def case(persons: list[dict], case_id: str = "H1") -> dict:
    return {"id": case_id, "day": "2025-03-01", "persons": persons}


# -- the reproductions ----------------------------------------------------------------------

def test_an_item_lacking_a_summed_field_refers_with_missing_data_naming_the_item(tmp_path):
    """sum() over an item without the optional field: missing-data naming persons[1].salary, in
    the decision's missing list, its referral and its reason text; never Python's error text."""
    plan = vedtak.compile(ruleset(tmp_path, "sum(p.salary for p in persons) > 10"))
    d = plan.decide(case([{"name": "a", "adult": True, "salary": 20}, {"name": "b", "adult": True}]))
    assert (d.status, d.referral_reason, d.rule) == ("referred", "missing-data", "support")
    assert d.missing == ("persons[1].salary",)
    assert d.to_dict()["referral"] == {"reason": "missing-data", "fields": ["persons[1].salary"]}
    assert d.reasons == ["Missing data: rule support needs persons[1].salary, which the case does not give."]
    assert "NoneType" not in d.explain() and "unsupported operand" not in d.to_json()


def test_any_gives_the_same_result_whichever_person_comes_first(tmp_path):
    """any(p.salary > 0 ...) decides [{salary: 1}, {}] and [{}, {salary: 1}] alike: one known
    true item settles any(), so the missing salary is not needed in either order."""
    plan = vedtak.compile(ruleset(tmp_path, "any(p.salary > 0 for p in persons)"))
    one = {"name": "a", "adult": True, "salary": 1}
    none = {"name": "b", "adult": True}
    first, second = plan.decide(case([one, none])), plan.decide(case([none, one]))
    assert (first.status, first.outcome, first.rule) == ("decided", "grant", "support")
    assert first.to_json() == second.to_json()


def test_any_that_the_known_items_do_not_settle_refers_in_both_orders(tmp_path):
    """any() whose known items are all false and one item lacks the field: missing-data in
    both orders, naming the same person."""
    plan = vedtak.compile(ruleset(tmp_path, "any(p.salary > 0 for p in persons)"))
    zero = {"name": "a", "adult": True, "salary": 0}
    none = {"name": "b", "adult": True}
    ab, ba = plan.decide(case([zero, none])), plan.decide(case([none, zero]))
    assert (ab.referral_reason, ab.missing) == ("missing-data", ("persons[1].salary",))
    assert (ba.referral_reason, ba.missing) == ("missing-data", ("persons[0].salary",))


def test_all_is_settled_by_one_known_false_item(tmp_path):
    """all(): a known false item decides it whatever the others lack; otherwise missing-data."""
    plan = vedtak.compile(ruleset(tmp_path, "all(p.salary > 5 for p in persons)"))
    low = {"name": "a", "adult": True, "salary": 1}
    high = {"name": "c", "adult": True, "salary": 9}
    none = {"name": "b", "adult": True}
    assert plan.decide(case([none, low])).outcome == "deny"
    assert plan.decide(case([low, none])).outcome == "deny"
    d = plan.decide(case([high, none]))
    assert (d.referral_reason, d.missing) == ("missing-data", ("persons[1].salary",))


def test_a_rule_testing_known_on_the_item_field_is_decided(tmp_path):
    """known(p.salary) guards an item field: the rule reads only the salaries that are there."""
    plan = vedtak.compile(ruleset(tmp_path, "sum(p.salary for p in persons if known(p.salary)) > 10",
                                  values="{amount: known_total, n: n_known}",
                                  because="Known salaries {known_total}."))
    d = plan.decide(case([{"name": "a", "adult": True}, {"name": "b", "adult": False, "salary": "12.50"}]))
    assert (d.status, d.outcome) == ("decided", "grant")
    assert d.values == {"amount": Decimal("12.50"), "n": 1}
    assert d.reasons == ["Known salaries 12.50."]


def test_every_missing_item_is_named(tmp_path):
    """sum() needs every item: each item without the field is listed, in list order."""
    plan = vedtak.compile(ruleset(tmp_path, "sum(p.salary for p in persons) > 10"))
    d = plan.decide(case([{"name": "a", "adult": True}, {"name": "b", "adult": True, "salary": 3},
                          {"name": "c", "adult": True}]))
    assert d.missing == ("persons[0].salary", "persons[2].salary")
    assert "persons[0].salary, persons[2].salary" in d.reasons[0]


def test_a_value_needing_a_missing_item_field_refers(tmp_path):
    """A rule's value (through a derived value) that needs a missing item field: missing-data."""
    plan = vedtak.compile(ruleset(tmp_path, "count(persons) > 0", values="{amount: total}"))
    d = plan.decide(case([{"name": "a", "adult": True, "salary": 2}, {"name": "b", "adult": True}]))
    assert (d.rule, d.referral_reason, d.missing) == ("support", "missing-data", ("persons[1].salary",))


def test_a_reason_text_needing_a_missing_item_field_refers(tmp_path):
    """A `because` text showing a derived value that needs a missing item field refers the case,
    rather than releasing a decision whose grounds cannot be written."""
    plan = vedtak.compile(ruleset(tmp_path, "count(persons) > 0", because="Highest salary {top}."))
    d = plan.decide(case([{"name": "a", "adult": True}, {"name": "b", "adult": True, "salary": 2}]))
    assert (d.rule, d.referral_reason, d.missing) == ("support", "missing-data", ("persons[0].salary",))
    full = plan.decide(case([{"name": "a", "adult": True, "salary": 1}]))
    assert full.reasons == ["Highest salary 1."]


def test_an_error_in_one_item_is_not_hidden_by_another_item_coming_first(tmp_path):
    """any() evaluates every item: an item whose value cannot be computed (division by zero)
    refers the case (evaluation-error) whether or not a true item comes before it."""
    plan = vedtak.compile(ruleset(tmp_path, "any(10 / p.salary > 1 for p in persons if known(p.salary))"))
    ok, zero = {"name": "a", "adult": True, "salary": 5}, {"name": "b", "adult": True, "salary": 0}
    first, second = plan.decide(case([ok, zero])), plan.decide(case([zero, ok]))
    assert (first.referral_reason, first.detail) == ("evaluation-error", "division by zero")
    assert first.to_json() == second.to_json()


def test_equal_values_written_differently_give_one_answer(tmp_path):
    """max() and sum() over 5.00 and 5 give the same value text in either order."""
    plan = vedtak.compile(ruleset(tmp_path, "count(persons) > 0", values="{amount: top, total: total}"))
    a, b = {"name": "a", "adult": True, "salary": "5.00"}, {"name": "b", "adult": True, "salary": 5}
    first, second = plan.decide(case([a, b])), plan.decide(case([b, a]))
    assert first.to_json() == second.to_json()
    assert first.values == {"amount": Decimal("5"), "total": Decimal("10.00")}


def test_known_of_a_required_item_field_is_a_located_error(tmp_path):
    """known(p.name) on a required item field is refused at load, located, as for case fields."""
    with pytest.raises(RulesetError) as info:
        vedtak.load(ruleset(tmp_path, "any(known(p.name) for p in persons)"))
    diag = info.value.diagnostics[0]
    assert diag.code == "not_optional" and '"name"' in diag.message
    assert (diag.line, diag.column) == (22, 22)  # the `p.name` inside the condition


def test_cli_decide_names_the_item_path(tmp_path):
    """`vedtak decide --json` of such a case: a missing-data referral naming the item, exit 0."""
    path = ruleset(tmp_path, "sum(p.salary for p in persons) > 10")
    case_file = tmp_path / "case.json"
    case_file.write_text(json.dumps(case([{"name": "a", "adult": True}])), encoding="utf-8")
    result = CliRunner().invoke(main, ["decide", path, str(case_file), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["referral"] == {"reason": "missing-data", "fields": ["persons[0].salary"]}
    assert "Traceback" not in result.output


# -- the property: no outcome depends on the order of the items ----------------------------

EXPRESSIONS = [
    ("any(p.salary > 5 for p in persons)", "{amount: known_total}", "Known {known_total}."),
    ("all(p.salary > 5 for p in persons)", "{n: n_known}", "All earn."),
    ("sum(p.salary for p in persons) > 10", "{amount: total}", "Total {total}."),
    ("count(p for p in persons if p.salary > 5) >= 2", "{amount: top}", "Top {top}."),
    ("min(p.salary for p in persons) < 3", "{}", "Lowest below 3."),
    ("max(p.salary for p in persons if known(p.salary)) > 7", "{amount: max(p.salary for p in persons "
     "if known(p.salary))}", "Top known {known_total}."),
    ("any(p.adult and p.salary > 5 for p in persons)", "{}", "An adult earns."),
    ("all(not p.adult or known(p.salary) for p in persons) and count(persons) > 0", "{amount: known_total}",
     "Every adult gave a salary."),
    ("sum(p.salary for p in persons if p.adult) > 10 or count(persons) > 3", "{}", "Adults {known_total}."),
    ("count(p.salary > 5 for p in persons) >= 1", "{}", "Counted."),
    ("any(100 / p.salary > 10 for p in persons if known(p.salary))", "{amount: known_total}", "Small."),
    ("count(persons) > 2 or any(p.salary > 5 for p in persons)", "{}", "Large or earning."),
    ("any(p.salary > 5 for p in persons) and count(persons) > 2", "{amount: total}", "Earning and large."),
]

SALARIES = st.sampled_from(["0", "1", "1.0", "3", "5", "5.00", "6", "8", "12.5", "-2"])


@st.composite
def households(draw):
    """A list of 0-5 persons, each with or without a salary, written various ways."""
    n = draw(st.integers(0, 5))
    persons = []
    for i in range(n):
        p = {"name": f"p{i}", "adult": draw(st.booleans())}
        given = draw(st.sampled_from(["value", "value", "absent", "null"]))
        if given == "value":
            p["salary"] = Decimal(draw(SALARIES))
        elif given == "null":
            p["salary"] = None
        persons.append(p)
    return persons


def _normal(decision, names: list[str]) -> tuple:
    """A decision with its item paths named by person instead of position."""
    def by_name(path: str) -> str:
        if "[" not in path:
            return path
        head, rest = path.split("[", 1)
        index, tail = rest.split("]", 1)
        return f"{head}<{names[int(index)]}>{tail}"

    missing = frozenset(by_name(p) for p in decision.missing)
    reasons = () if decision.referral_reason in ("missing-data", "evaluation-error") else tuple(decision.reasons)
    values = json.loads(decision.to_json())["values"]
    return decision.status, decision.outcome, decision.rule, decision.referral_reason, missing, values, reasons


def _reference(plan, raw: dict, names: list[str]) -> tuple:
    """The reference interpreter's result, positions named by person as in :func:`_normal`."""
    validated, rejection = plan.validate(raw)
    assert rejection is None
    period = plan.period_for(validated["day"])
    r = run(period, validated)
    missing = frozenset(p.split("[")[0] + f"<{names[int(p.split('[')[1].split(']')[0])]}>" + p.split("]", 1)[1]
                        if "[" in p else p for p in r.missing)
    return r.index, r.kind, missing, r.values


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("orders")
    out = []
    for when, values, because in EXPRESSIONS:
        ruleset_ = vedtak.load(ruleset(tmp, when, values, because))
        out.append((vedtak.compile(ruleset_), DurablePlan(ruleset_) if HAVE_DURABLE else None))
    return out


ORDERS = {"checked": 0}


@pytest.mark.parametrize("which", range(len(EXPRESSIONS)), ids=[e[0][:40] for e in EXPRESSIONS])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(persons=households(), data=st.data())
def test_no_outcome_depends_on_the_order_of_the_items(plans, which, persons, data):
    """For every permutation tried (as given, reversed, one drawn at random): status, outcome,
    rule, values, reasons and the missing item paths (as a set, by person) are identical, on the
    compiled plan, the reference interpreter and durable-rules; and the three agree."""
    plan, durable_plan = plans[which]
    orders = [persons, persons[::-1], data.draw(st.permutations(persons))]
    seen, ref_seen = set(), set()
    for order in orders:
        names = [p["name"] for p in order]
        raw = case([dict(p) for p in order])
        d = plan.decide(raw)
        assert d.status in ("decided", "referred")
        assert "NoneType" not in " ".join(d.reasons)
        normal = _normal(d, names)
        seen.add(json.dumps(normal, default=sorted, sort_keys=True))
        index, kind, missing, values = _reference(plan, raw, names)
        assert d._outcome.index == index
        assert {"missing-data": "missing-data", "error": "evaluation-error"}.get(kind) == d.referral_reason \
            or (kind == "match" and d.referral_reason in (None, "automation-policy"))
        assert missing == normal[4]
        if kind == "match":
            assert values == tuple.__getitem__(d, 2)
        ref_seen.add((index, kind, missing))
        if durable_plan is not None:
            b = durable_plan.decide(raw)
            assert _normal(b, names) == normal, (b.to_json(), d.to_json())
        ORDERS["checked"] += 1
    assert len(seen) == 1, seen
    assert len(ref_seen) == 1, ref_seen
