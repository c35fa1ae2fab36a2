"""Regression tests for defects found in the adversarial review of ruleset language part 2
of the part-2 change: nested item functions, memoised item functions in nested generators, item
function names, table and scale shapes, overlay inserts. Each failed before its fix."""

from __future__ import annotations

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


def test_memo_inside_nested_count():
    """An item function applied twice to the item of a generator and also inside a nested
    count() compiles (no SyntaxError from the generated code) and decides: for x = 1, 2, 3 the
    ages are 2, 3, 4 and max(younger + age) = 2 + 4 = 6 > 3."""
    plan = vedtak.compile(vedtak.load_text(MEMO_COUNT))
    d = plan.decide({"id": 1, "day": "2024-05-01", "children": [{"x": 1}, {"x": 2}, {"x": 3}]})
    assert (d.status, d.outcome, d.rule) == ("decided", "ok", "many")
    d = plan.decide({"id": 2, "day": "2024-05-01", "children": [{"x": 1}]})
    assert (d.status, d.outcome) == ("decided", "deny")


def _diagnostics(text: str) -> list:
    """The diagnostics that loading ``text`` gives (none when it loads)."""
    try:
        vedtak.load_text(text)
    except RulesetError as e:
        return list(e.diagnostics)
    return []


def test_item_function_parameter_named_like_a_derived_value():
    """An item function whose parameter has the name of a derived value is one located
    shadowed_name error, not a derived_cycle naming a cycle that does not exist."""
    text = HEAD + """derive:
  f(total): total.x
  total: sum(f(c) for c in children)
rules:
  - {id: r, basis: "1", when: total > 1, decide: ok, because: "x"}
otherwise: {decide: deny, because: "y"}
"""
    codes = [d.code for d in _diagnostics(text)]
    assert codes == ["shadowed_name"], codes


def test_item_function_parameter_named_like_a_field_reports_once():
    """An item function whose parameter hides a case field is reported once (shadowed_name),
    with no false unknown_function where the function is applied."""
    text = HEAD + """derive:
  f(day): day.x
  total: sum(f(c) for c in children)
rules:
  - {id: r, basis: "1", when: total > 1, decide: ok, because: "x"}
otherwise: {decide: deny, because: "y"}
"""
    codes = [d.code for d in _diagnostics(text)]
    assert codes == ["shadowed_name"], codes


def test_table_with_date_keys_is_one_plain_diagnostic():
    """A table whose keys YAML reads as dates gets one diagnostic in vedtak's words, without
    pydantic's type names or a Python repr in its path."""
    text = HEAD + """parameters:
  T:
    table:
      2024-01-01: {2024-01-01: 1, 2025-01-01: 2}
rules:
  - {id: r, basis: "1", when: "T[day] > 1", decide: ok, because: "x"}
otherwise: {decide: deny, because: "y"}
"""
    diags = _diagnostics(text)
    assert len(diags) == 1, [d.message for d in diags]
    assert "datetime" not in diags[0].message and "[key].int" not in diags[0].message


def test_overlay_insert_after_a_rule_it_removes(tmp_path):
    """An overlay that removes a rule and inserts another after it either keeps the inserted
    rule or is refused with a diagnostic in the overlay file; the insert is never dropped."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "r.yaml").write_text(HEAD + """rules:
  - {id: first, basis: "1", when: count(c for c in children) > 5, decide: deny, because: "x"}
  - {id: second, basis: "2", when: count(c for c in children) > 3, decide: ok, because: "x"}
otherwise: {decide: ok, because: "y"}
""")
    over = tmp_path / "over"
    over.mkdir()
    (over / "overlay.yaml").write_text("""ruleset: review15
extends: ../base
version: "1+o"
rules:
  remove: [first]
  insert: [{after: first, id: added, basis: "3", when: count(c for c in children) > 4, decide: deny, because: "x"}]
""")
    try:
        rs = vedtak.load(over)
    except RulesetError as e:
        assert any(d.file.endswith("overlay.yaml") for d in e.diagnostics), [str(d) for d in e.diagnostics]
        return
    assert [r.id for r in rs.versions[0].rules] == ["added", "second", "otherwise"]


INNER_MEMO = HEAD + """derive:
  g(c): abs(c.x) + 1
  total: sum(sum(g(d) + g(d) for d in children if d.x < c.x) for c in children)
rules:
  - id: many
    basis: "1"
    when: total > 3
    decide: ok
    because: "Above 3."
otherwise: {decide: deny, because: "3 or less."}
"""


def test_memoised_inner_generator_reads_outer_variable():
    """A nested generator that applies an item function twice to its own item and reads the
    outer generator's item decides (no NameError from the generated code): for x = 1, 2 the
    inner sums are 0 and 2 * (abs(1) + 1) = 4, so total 4 > 3."""
    plan = vedtak.compile(vedtak.load_text(INNER_MEMO))
    d = plan.decide({"id": 1, "day": "2024-05-01", "children": [{"x": 1}, {"x": 2}]})
    assert (d.status, d.outcome, d.rule) == ("decided", "ok", "many")
