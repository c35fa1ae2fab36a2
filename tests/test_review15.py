"""Regression tests for defects found in the adversarial review of ruleset language part 2
(/work/notes/review15.md). Each is an expected failure until its defect is fixed; strict, so a
fix that makes one pass must also remove its xfail mark."""

from __future__ import annotations

import pytest

import vedtak
from vedtak.errors import RulesetError

HEAD = """ruleset: review15
title: Review 15
version: "1"
valid: {from: 2024-01-01}
decision_date: day
case_id: id
automate: [ok, deny]
case:
  id: int
  day: date
  children:
    type: list
    items:
      x: int
"""

NESTED = HEAD + """derive:
  smaller(c): sum(d.x for d in children if d.x < c.x)
  score(c): smaller(c) + sum(smaller(d) for d in children)
  total: sum(score(c) for c in children)
rules:
  - id: big
    basis: "1"
    when: total > 100
    decide: ok
    because: "Above 100."
otherwise: {decide: deny, because: "100 or less."}
"""


def _decide_or_refused(text: str, case: dict):
    """The decision of ``case`` under ``text``, or None when the ruleset is refused at load."""
    try:
        plan = vedtak.compile(vedtak.load_text(text))
    except RulesetError:
        return None
    return plan.decide(case)


@pytest.mark.xfail(strict=True, reason="review15 #7")
def test_nested_item_function_capture():
    """An item function applied, inside another item function's generator, to that generator's
    variable keeps its own generator variable apart: the ruleset loads, and a case with no
    children (total 0) is denied by `otherwise`, never decided by a rule whose condition is false."""
    d = _decide_or_refused(NESTED, {"id": 1, "day": "2024-05-01", "children": []})
    assert d is not None, "a valid ruleset was refused"
    assert (d.status, d.outcome, d.rule) == ("decided", "deny", "otherwise")
    d = _decide_or_refused(NESTED, {"id": 2, "day": "2024-05-01",
                                    "children": [{"x": 10}, {"x": 20}, {"x": 30}]})
    # smaller: 0, 10, 30 (sum 40); score(c) = smaller(c) + 40; total = 40 + 120 = 160
    assert (d.status, d.outcome, d.rule) == ("decided", "ok", "big")


MEMO_COUNT = HEAD + """derive:
  age(c): abs(c.x) + 1
  younger(c): count(j for j in children if age(j) < age(c))
  total: max(younger(c) + age(c) for c in children)
rules:
  - id: many
    basis: "1"
    when: total > 3
    decide: ok
    because: "Above 3."
otherwise: {decide: deny, because: "3 or less."}
"""


@pytest.mark.xfail(strict=True, reason="review15 #10")
def test_memo_inside_nested_count():
    """An item function applied twice to the item of a generator and also inside a nested
    count() compiles (no SyntaxError from the generated code) and decides: for x = 1, 2, 3 the
    ages are 2, 3, 4 and max(younger + age) = 2 + 4 = 6 > 3."""
    plan = vedtak.compile(vedtak.load_text(MEMO_COUNT))
    d = plan.decide({"id": 1, "day": "2024-05-01", "children": [{"x": 1}, {"x": 2}, {"x": 3}]})
    assert (d.status, d.outcome, d.rule) == ("decided", "ok", "many")
    d = plan.decide({"id": 2, "day": "2024-05-01", "children": [{"x": 1}]})
    assert (d.status, d.outcome) == ("decided", "deny")
