"""Random rulesets of nested item functions (applied to each other, in nested generators, with
tables, scales, optional and defaulted item fields): each loads, compiles to valid code, and the
compiled plan, the reference interpreter and durable-rules decide every case alike.

The shapes here found three defects that `vedtak check` let through (a name captured between
nested item functions, a kept value inside a nested count(), a helper defined where the outer
item was not in scope)."""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

import vedtak
from vedtak.evaluation.durable import DurablePlan
from vedtak.evaluation.reference import run

HEAD = """ruleset: fuzz
title: Nested item functions
version: "1"
valid: {from: 2024-01-01}
decision_date: day
case_id: id
automate: [ok, no]
case:
  id: int
  day: date
  kids:
    type: list
    items:
      x: int
      t: {type: string, optional: true}
      s: {type: int, optional: true, default: 2}
parameters:
  TB:
    table:
      2024-01-01: {a: 1, b: 5}
  SC:
    scale:
      2024-01-01: [{from: 0, rate: 0.5}, {from: 3, rate: 2}]
derive:
"""

RULES = """rules:
  - id: big
    basis: "1"
    when: total > 10
    decide: ok
    values: {total: total}
    because: "Total {total}."
otherwise: {decide: no, because: "Total 10 or less."}
"""


def _atom(rnd: random.Random, fns: list[str], v: str, depth: int, taken: frozenset) -> str:
    c = rnd.randrange(9)
    if c == 0 or depth > 2:
        return f"{v}.x"
    if c == 1:
        return f"{v}.s"
    if c == 2 and fns:
        return f"{rnd.choice(fns)}({v})"
    if c == 3:
        return f"abs({v}.x - 1)"
    if c == 4:  # a generator inside the body, its item compared with the outer one
        g = rnd.choice(["d", "e", "j"]) + ("" if rnd.random() < .5 else "2")
        if g in taken or g == v:
            g += "q"
        inner = _atom(rnd, fns, g, depth + 1, taken | {g})
        cond = (f" if {_atom(rnd, fns, g, depth + 1, taken | {g})} < {_atom(rnd, fns, v, depth + 1, taken | {g})}"
                if rnd.random() < .6 else "")
        agg = rnd.choice(["sum", "count", "max", "min"])
        if agg == "count":
            return f"count({g} for {g} in kids{cond})"
        if agg in ("max", "min"):
            return f"{agg}(({inner}) for {g} in kids)"
        return f"sum(({inner}) for {g} in kids{cond})"
    if c == 5:
        return f'(TB[{v}.t] if known({v}.t) and {v}.t in ["a", "b"] else 0)'
    if c == 6 and fns:
        return f"({rnd.choice(fns)}({v}) + {rnd.choice(fns)}({v}))"
    if c == 7:
        return f"floor(marginal(SC, abs({v}.x)))"
    return str(rnd.randrange(-3, 4))


def ruleset_text(seed: int) -> str:
    rnd = random.Random(seed)
    fns, lines = [], []
    for i in range(rnd.randrange(1, 5)):
        body = " + ".join(_atom(rnd, fns, "c", 0, frozenset()) for _ in range(rnd.randrange(1, 3)))
        lines.append(f"f{i}(c): {body}")
        fns.append(f"f{i}")
    total = " + ".join(f"sum(({rnd.choice(fns)}(k) + {rnd.choice(fns)}(k)) for k in kids)" if rnd.random() < .5
                       else f"count(k for k in kids if {rnd.choice(fns)}(k) > {rnd.choice(fns)}(k))"
                       for _ in range(2))
    total += "".join(f" + count(k for k in kids if {f}(k) > 0)" for f in fns)  # every one applied
    lines.append(f"total: {total}")
    return HEAD + "".join(f"  {line}\n" for line in lines) + RULES


kid = st.fixed_dictionaries({"x": st.integers(-4, 6)},
                            optional={"t": st.sampled_from(["a", "b", "z"]), "s": st.sampled_from([None, 0, 3])})
cases = st.lists(st.builds(lambda i, kids: {"id": i, "day": "2024-05-01", "kids": kids},
                           st.integers(0, 99), st.lists(kid, max_size=3)), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**6), batch=cases)
def test_random_nested_item_functions_decide_alike_on_every_evaluator(seed, batch):
    """A random nested item-function ruleset loads and compiles; on every case the compiled plan, the
    reference interpreter and durable-rules give the same decision (JSON), and the compiled values
    equal the reference interpreter's."""
    text = ruleset_text(seed)
    plan = vedtak.compile(vedtak.load_text(text))
    durable = DurablePlan(vedtak.load_text(text))
    for raw in batch:
        d = plan.decide(raw)
        assert d.status != "rejected", d.to_json()
        result = run(d.period, d.case)
        assert result.index == d._outcome.index, (text, raw)
        if result.kind == "match":
            assert {k: str(v) for k, v in (result.values or {}).items()} == \
                {k: str(v) for k, v in d.values.items()}, (text, raw)
        assert json.loads(durable.decide(raw).to_json()) == json.loads(d.to_json()), (text, raw)
