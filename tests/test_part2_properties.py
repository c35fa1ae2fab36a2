"""Properties of the part-2 forms: marginal() against a brute-force sum over brackets, bracket(),
list order, compiled = reference on every new form, month-end clamping, and the benchmark's two
rulesets deciding alike."""

from __future__ import annotations

import calendar
import functools
import json
import sys
from datetime import date, timedelta
from decimal import Decimal, localcontext

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vedtak
from vedtak.evaluation.reference import run

from conftest import GOLDEN, ROOT

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DAY = "2024-06-01"
ALL_FORMS = GOLDEN / "rulesets" / "part2-props" / "all-forms.yaml"

# ---------------------------------------------------------------------------------------------
# scales: marginal() and bracket()

SCALE_RULESET = """\
ruleset: scale-props
title: marginal and bracket over one generated scale
version: "1"
valid: {{from: 2024-01-01}}
decision_date: day
case_id: id
automate: [pay]
case:
  id: string
  day: date
  which: {{type: string, one_of: [marginal, bracket_int, bracket_dec]}}
  xi: int
  xd: decimal
parameters:
  S:
    scale:
      2024-01-01:
{brackets}
rules:
  - id: bracket-int
    basis: "b"
    when: which == "bracket_int"
    decide: pay
    values: {{b: "bracket(S, xi)"}}
    because: "b"
  - id: bracket-dec
    basis: "b"
    when: which == "bracket_dec"
    decide: pay
    values: {{b: "bracket(S, xd)"}}
    because: "b"
  - id: marginal
    basis: "m"
    when: "True"
    decide: pay
    values: {{mi: "marginal(S, xi)", md: "marginal(S, xd)"}}
    because: "m"
otherwise: {{refer: general, because: "never"}}
"""


def _text(d: Decimal) -> str:
    return format(d, "f")


def _scale_plan(brackets: tuple) -> vedtak.Plan:
    """The compiled ruleset of one scale, ``brackets`` a tuple of (from, rate); one compile per scale."""
    # cached by the text, not the Decimals: a rate of 0.0 equals a rate of 0, but prints otherwise
    return _compiled_scale("\n".join(f"        - {{from: {_text(f)}, rate: {_text(r)}}}" for f, r in brackets))


@functools.lru_cache(maxsize=None)
def _compiled_scale(lines: str) -> vedtak.Plan:
    return vedtak.compile(vedtak.load_text(SCALE_RULESET.format(brackets=lines)))


def brute_marginal(brackets: tuple, x) -> Decimal:
    """sum(rate_i * (min(x, from_{i+1}) - from_i)) over the brackets with from_i < x, added in
    bracket order from Decimal(0), in plain Decimal arithmetic with 34 digits."""
    with localcontext() as ctx:
        ctx.prec = 34
        total = Decimal(0)
        for i, (lower, rate) in enumerate(brackets):
            if not x > lower:
                break
            top = min(x, brackets[i + 1][0]) if i + 1 < len(brackets) else x
            total += rate * (top - lower)
        return total


def brute_bracket(brackets: tuple, x) -> Decimal | None:
    """The rate of the last bracket whose from is at most x; None below the first bracket."""
    found = None
    for lower, rate in brackets:
        if lower <= x:
            found = rate
    return found


_places = st.integers(0, 3)
_thresholds = st.one_of(
    st.integers(-10**6, 10**7).map(Decimal),
    st.builds(lambda n, k: Decimal(n).scaleb(-k), st.integers(-10**8, 10**9), _places))


def _rates(non_negative: bool):
    return st.builds(lambda n, k: Decimal(n).scaleb(-k), st.integers(0 if non_negative else -2000, 2000),
                     st.integers(0, 4))


def scales(non_negative: bool = False):
    """1-8 brackets with strictly ascending thresholds (whole or with decimals) and rates."""
    @st.composite
    def build(draw):
        froms = draw(st.lists(_thresholds, min_size=1, max_size=8, unique_by=lambda d: d))
        froms = sorted(set(froms))  # unique by value: 5 and 5.0 are one threshold
        rates = draw(st.lists(_rates(non_negative), min_size=len(froms), max_size=len(froms)))
        return tuple(zip(froms, rates))
    return build()


def near(brackets: tuple) -> list[Decimal]:
    """Every threshold, the same number written with more decimals, and points beside it."""
    return [lower + Decimal(d) for lower, _ in brackets for d in ("0", "0.000", "1", "-1", "0.01", "-0.01", "-100")]


def xs_for():
    """Arbitrary decimal points, with and without decimals."""
    return st.lists(st.builds(lambda n, k: Decimal(n).scaleb(-k), st.integers(-2 * 10**9, 2 * 10**9), _places),
                    max_size=6)


def ints_for(brackets: tuple):
    """Whole points at and beside every whole threshold, and arbitrary ones."""
    ints = [int(lower) + d for lower, _ in brackets for d in (-1, 0, 1)]
    return st.lists(st.integers(-2 * 10**7, 2 * 10**7), max_size=6).map(lambda more: ints + more)


def _decide(plan: vedtak.Plan, which: str, xi: int = 0, xd: Decimal = Decimal(0)):
    """The compiled decision and the reference interpreter's result for one case."""
    raw = {"id": "s", "day": DAY, "which": which, "xi": xi, "xd": xd}
    case, rejection = plan.validate(raw)
    assert rejection is None, rejection.to_json()
    decision = plan.evaluate(case)
    return decision, run(decision.period, case)


def _json_values(decision) -> dict:
    return json.loads(decision.to_json())["values"]


@SETTINGS
@given(data=st.data())
def test_marginal_equals_the_brute_force_sum_over_brackets(data):
    """marginal(S, x), compiled and in the reference interpreter, is the brute-force sum over the
    brackets: the same Decimal and the same text in the decision JSON, for int and decimal x."""
    brackets = data.draw(scales())
    plan = _scale_plan(brackets)
    xds, xis = near(brackets) + data.draw(xs_for()), data.draw(ints_for(brackets))
    for xd, xi in zip(xds, xis * len(xds)):
        decision, reference = _decide(plan, "marginal", xi, xd)
        assert decision.status == "decided", decision.explain()
        want = {"mi": brute_marginal(brackets, Decimal(xi)), "md": brute_marginal(brackets, xd)}
        assert decision.values == want and reference.values == want
        for k, v in want.items():
            assert str(decision.values[k]) == str(reference.values[k]) == str(v), (k, xi, xd)
        assert _json_values(decision) == {k: str(v) for k, v in want.items()}
        for used in reference.trace.scales:  # the explanation's brackets add up to the value
            assert used.function == "marginal" and used.value == brute_marginal(brackets, Decimal(used.x))
            assert sum(part[4] for part in used.parts) == used.value


@SETTINGS
@given(data=st.data())
def test_marginal_is_continuous_at_every_threshold(data):
    """Just below a threshold t, at t - 10^-k (within the bracket below), marginal differs from
    marginal(S, t) by exactly that bracket's rate times 10^-k (0 below the first bracket): no jump."""
    brackets = data.draw(scales())
    plan = _scale_plan(brackets)
    k = data.draw(st.integers(0, 6))
    step = Decimal(1).scaleb(-k)
    for i, (t, _) in enumerate(brackets):
        if i > 0 and t - step < brackets[i - 1][0]:
            continue  # the step reaches past the bracket below: not the limit at t
        at, _ = _decide(plan, "marginal", xd=t)
        below, _ = _decide(plan, "marginal", xd=t - step)
        rate_prev = brackets[i - 1][1] if i > 0 else Decimal(0)
        with localcontext() as ctx:
            ctx.prec = 34
            assert at.values["md"] - below.values["md"] == rate_prev * step, (t, k)


@SETTINGS
@given(data=st.data())
def test_marginal_is_monotone_for_non_negative_rates(data):
    """With every rate >= 0, x <= y implies marginal(S, x) <= marginal(S, y)."""
    brackets = data.draw(scales(non_negative=True))
    plan = _scale_plan(brackets)
    xs = sorted(near(brackets) + data.draw(xs_for()))
    got = [_decide(plan, "marginal", xd=x)[0].values["md"] for x in xs]
    assert all(a <= b for a, b in zip(got, got[1:])), list(zip(xs, got))


@SETTINGS
@given(data=st.data())
def test_bracket_is_the_last_bracket_starting_at_or_below_x(data):
    """bracket(S, x) is the rate of the last bracket whose from <= x; below the first bracket the
    case is referred as an evaluation error, compiled and in the reference interpreter alike."""
    brackets = data.draw(scales())
    plan = _scale_plan(brackets)
    xds, xis = near(brackets) + data.draw(xs_for()), data.draw(ints_for(brackets))
    for xd, xi in zip(xds, xis * len(xds)):
        for which, x in (("bracket_dec", xd), ("bracket_int", xi)):
            decision, reference = _decide(plan, which, xi, xd)
            want = brute_bracket(brackets, x)
            if want is None:
                assert (decision.status, decision.referral_reason) == ("referred", "evaluation-error"), x
                assert reference.kind == "error"
                assert "below the first bracket" in decision.explain()
            else:
                assert decision.values == {"b": want} == reference.values, x
                assert _json_values(decision) == {"b": str(want)}


# ---------------------------------------------------------------------------------------------
# list order

ORDER_RULESET = """\
ruleset: order-props
title: list order never matters
version: "1"
valid: {from: 2024-01-01}
decision_date: day
case_id: id
automate: [pay, deny]
case:
  id: string
  day: date
  people:
    type: list
    items:
      birth_date: date
      income: money
      extra: {type: money, optional: true, default: 0}
      kind: {type: string, one_of: [a, b, c]}
      score: {type: int, optional: true}
parameters:
  kind_rate:
    table:
      2024-01-01: {a: 1.5, b: 2.25, c: 0.5}
  S:
    scale:
      2024-01-01:
        - {from: 0, rate: 0.1}
        - {from: 1000, rate: 0.25}
        - {from: 5000.50, rate: 0.4}
derive:
  age(p): years_between(p.birth_date, day)
  adult(p): age(p) >= 18
  worth(p): marginal(S, p.income + p.extra) * kind_rate[p.kind]
  scored(p): known(p.score) and p.score > 5
rules:
  - id: empty
    basis: "e"
    when: count(p for p in people) == 0
    decide: deny
    because: "nobody"
  - id: minors
    basis: "m"
    when: all(not adult(p) for p in people)
    decide: deny
    values: {youngest: "min(age(p) for p in people)", oldest: "max(age(p) for p in people)"}
    because: "only minors"
  - id: scored
    basis: "s"
    when: any(scored(p) for p in people if adult(p))
    refer: general
    because: "a high score"
  - id: pay
    basis: "p"
    when: "True"
    decide: pay
    values:
      total: "sum(worth(p) for p in people if adult(p))"
      top: "max(worth(p) for p in people if adult(p) and p.kind != 'c')"
      low: "min(p.income + p.extra for p in people)"
      n: "count(p for p in people if adult(p) and p.extra > 0)"
      scores: "sum(p.score for p in people if known(p.score))"
    because: "{total}"
otherwise: {refer: general, because: "never"}
"""


@functools.lru_cache(maxsize=None)
def _order_plan() -> vedtak.Plan:
    return vedtak.compile(vedtak.load_text(ORDER_RULESET))


def _money():
    """Amounts, often equal in value but written with different exponents: 250, 250.0, 250.00."""
    places = st.integers(0, 2).map(lambda k: Decimal(1).scaleb(-k))
    return st.one_of(st.builds(lambda n, q: Decimal(n).quantize(q), st.sampled_from([0, 250, 1000, 6000]), places),
                     st.builds(lambda n, k: Decimal(n).scaleb(-k), st.integers(0, 900_000), st.integers(0, 2)))


_person = st.fixed_dictionaries(
    {"birth_date": st.sampled_from([date(2006, 6, 1), date(2006, 6, 2), date(1980, 1, 1), date(2010, 3, 3)]),
     "income": _money(), "kind": st.sampled_from(["a", "b", "c"])},
    optional={"extra": _money(), "score": st.integers(0, 9)})


@SETTINGS
@given(people=st.lists(_person, max_size=6), data=st.data())
def test_permuting_a_list_never_changes_the_decision(people, data):
    """Item functions, tables, a scale and sum/count/any/all/min/max over list items (with optional
    and defaulted item fields): any permutation of the list gives byte-identical decision JSON."""
    plan = _order_plan()
    order = data.draw(st.permutations(range(len(people))))
    first = plan.decide({"id": "o", "day": DAY, "people": people})
    again = plan.decide({"id": "o", "day": DAY, "people": [people[i] for i in order]})
    assert first.status in ("decided", "referred")
    assert again.to_json() == first.to_json()


# ---------------------------------------------------------------------------------------------
# compiled = reference on every new form

def _near_month_ends():
    ends = [date(y, m, calendar.monthrange(y, m)[1]) for y in (2023, 2024, 2025, 2026) for m in range(1, 13)]
    leap = [date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1), date(2023, 2, 28), date(2025, 3, 1)]
    return st.one_of(st.sampled_from(ends + leap + [d - timedelta(days=1) for d in ends]),
                     st.dates(date(2023, 1, 1), date(2026, 12, 31)))


_child = st.fixed_dictionaries(
    {"birth_date": st.one_of(st.sampled_from([date(2006, 2, 28), date(2008, 2, 29), date(2019, 12, 31),
                                              date(2024, 6, 1), date(2026, 3, 1)]),
                             st.dates(date(2009, 1, 1), date(2025, 12, 31))),
     "lives_with": st.sampled_from([True, True, True, False])},
    optional={"support": st.integers(0, 3000).map(Decimal), "grade": st.integers(0, 4)})


def all_forms_cases():
    """Cases for all-forms.yaml, most of them reaching its later rules; dates lean on month ends."""
    anyday = st.dates(date(2024, 1, 1), date(2026, 12, 31))
    day = st.one_of(anyday, anyday, anyday, _near_month_ends().filter(lambda d: d.year >= 2024))
    return st.fixed_dictionaries(
        {"ref": st.just("c"), "day": day, "start": _near_month_ends(), "months": st.integers(-30, 30),
         "income": st.one_of(st.sampled_from([Decimal(v) for v in (0, 99999, 100000, 100001, 300000, 900000)]),
                             st.decimals(0, 2_000_000, places=2)),
         "region": st.sampled_from(["north", "south"]), "category": st.sampled_from(["a", "a", "a", "b", "c"]),
         "children": st.lists(_child, max_size=4)},
        optional={"bonus": st.integers(0, 50_000).map(Decimal)})


@functools.lru_cache(maxsize=None)
def _all_forms_plan() -> vedtak.Plan:
    return vedtak.compile(vedtak.load(ALL_FORMS))


_KIND = {None: "match", "rule": "match", "missing-data": "missing-data",
         "missing-parameter": "missing-parameter", "evaluation-error": "error"}


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=all_forms_cases())
def test_compiled_evaluator_agrees_with_the_reference_interpreter_on_every_new_form(raw):
    """Scales, tables (a missing key included), nested item functions in generator conditions and
    elements, date parts, add_days/add_months/add_years at month ends and leap days, a parameter
    that ends, case and item defaults: the generated code and the interpreter decide alike."""
    plan = _all_forms_plan()
    case, rejection = plan.validate(raw)
    assert rejection is None, rejection.to_json()
    compiled = plan.evaluate(case)
    reference = run(compiled.period, case)
    assert (compiled._outcome.index, _KIND[compiled.referral_reason]) == (reference.index, reference.kind), \
        compiled.explain()
    if reference.kind == "match":
        values = tuple.__getitem__(compiled, 2)
        assert values == reference.values
        for k, v in (values or {}).items():
            assert type(v) is type(reference.values[k]) and str(v) == str(reference.values[k]), k
    elif reference.kind == "error":  # the same words for an impossible date, a missing key, ...
        assert compiled.detail == reference.error
    else:
        assert tuple(compiled.missing) == tuple(reference.missing)


def test_the_all_forms_ruleset_reaches_every_rule_and_every_kind_of_referral():
    """The differential test above is only as good as its ruleset's reach: fixed cases reach every
    rule, a missing table key, an impossible date, a parameter that has ended and a default."""
    plan = _all_forms_plan()
    kid = {"birth_date": "2020-02-29", "lives_with": True}
    base = {"ref": "c", "day": "2025-03-01", "start": "2024-01-31", "months": 1, "income": 150000,
            "region": "north", "category": "a", "children": [kid]}
    seen = {}
    for change in ({"children": []}, {"day": "2025-02-28", "start": "2025-01-30"}, {"category": "c"},
                   {"category": "b"}, {"months": -13}, {}, {"day": "2026-03-01"},
                   {"children": [{"birth_date": "2025-06-01", "lives_with": True}]}):
        d = plan.decide({**base, **change})
        seen[(d.rule, d.referral_reason)] = d
    reasons = {r for _, r in seen}
    assert {"evaluation-error", "missing-parameter", None} <= reasons, sorted(map(str, seen))
    assert {"none", "category", "dates", "pay"} <= {rule for rule, _ in seen}, sorted(map(str, seen))
    trace = run(seen[("pay", None)].period, plan.validate(base).case).trace
    assert trace.defaults == {"bonus": 0, "children[0].support": 0}


# ---------------------------------------------------------------------------------------------
# add_months / add_years clamp month ends

DATES_RULESET = """\
ruleset: date-props
title: add_months and add_years
version: "1"
valid: {from: 2024-01-01}
decision_date: day
case_id: id
automate: [pay]
case:
  id: string
  day: date
  d: date
  n: {type: int, min: -400, max: 400}
rules:
  - id: r
    basis: "r"
    when: "True"
    decide: pay
    values:
      m: add_months(d, n)
      y: add_years(d, n)
      months: months_between(d, add_months(d, n))
      parts: "add_months(d, n).day + 100 * add_months(d, n).month"
    because: "r"
otherwise: {refer: general, because: "never"}
"""


@functools.lru_cache(maxsize=None)
def _dates_plan() -> vedtak.Plan:
    return vedtak.compile(vedtak.load_text(DATES_RULESET))


def _shift(d: date, months: int) -> tuple[int, int]:
    y, m = divmod(d.month - 1 + months, 12)
    return d.year + y, m + 1


@SETTINGS
@given(d=st.one_of(_near_month_ends(), st.dates(date(1900, 1, 1), date(2100, 12, 31))), n=st.integers(-400, 400))
def test_add_months_and_add_years_clamp_to_the_end_of_the_target_month(d, n):
    """add_months(d, n) lands in the n-th month after d on day min(d.day, days in that month);
    add_years(d, n) is add_months(d, 12 n); without clamping, months_between(d, add_months(d, n)) == n
    for n >= 0. Compiled and reference interpreter alike."""
    plan = _dates_plan()
    case, rejection = plan.validate({"id": "d", "day": DAY, "d": d.isoformat(), "n": n})
    assert rejection is None
    decision = plan.evaluate(case)
    assert decision.status == "decided", decision.explain()
    assert decision.values == run(decision.period, case).values
    m, y = decision.values["m"], decision.values["y"]
    year, month = _shift(d, n)
    assert (m.year, m.month, m.day) == (year, month, min(d.day, calendar.monthrange(year, month)[1]))
    year, month = _shift(d, 12 * n)
    assert (y.year, y.month, y.day) == (year, month, min(d.day, calendar.monthrange(year, month)[1]))
    assert decision.values["parts"] == m.day + 100 * m.month
    if n >= 0 and m.day == d.day:
        assert decision.values["months"] == n


# ---------------------------------------------------------------------------------------------
# the part-2 benchmark's two rulesets

def test_the_benchmark_rulesets_in_part_2_and_part_1_forms_decide_identically():
    """benchmarks/part2/forms.yaml (scale, tables, item functions) and handwritten.yaml (the same
    rules in part-1 forms) give the same rule and amount as the Python if-chain on the benchmark's
    cases, and every rule of the workload fires."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import workload_part2 as w
    forms, hand = (vedtak.compile(vedtak.load(p)) for p in (w.FORMS, w.HANDWRITTEN))
    fired = set()
    for c in w.generate(3000):
        wanted = w.if_chain(c)
        assert w.vedtak_result(forms.decide(c)) == wanted == w.vedtak_result(hand.decide(c)), c
        fired.add(wanted[0])
    assert fired == set(w.RULES)
