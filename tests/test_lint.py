"""Lint findings: unreachable rules, unused names, parameters without a value at the start."""

from __future__ import annotations

import vedtak
from vedtak.language.check import lint

from conftest import CHILD_BENEFIT, STUDY_GRANT

LINT_RULESET = """\
ruleset: lint
title: Lint
version: "1"
valid: {from: 2025-01-01}
decision_date: day
case_id: id
automate: [no, yes]
case:
  id: string
  day: date
  age: int
  flag: bool
  kind: string
parameters:
  LIMIT: {values: {2025-01-01: 18}}
  LATE: {values: {2025-06-01: 3}}
derive:
  spare: age + 1
rules:
  - {id: a, basis: x, when: age < LIMIT or age > 67, decide: no, because: x}
  - {id: b, basis: x, when: age < 10 and flag, decide: no, because: x}
  - {id: c, basis: x, when: age > 20 and age < 19, decide: no, because: x}
  - {id: d, basis: x, when: 'not flag and kind in ["a", "b"]', decide: yes, because: x}
  - {id: e, basis: x, when: kind == "a" and not flag and age == 30, decide: yes, because: x}
  - {id: f, basis: x, when: age >= 18, decide: yes, because: x}
  - {id: g, basis: x, when: age == 40 or age * 2 > LATE, decide: yes, because: x}
otherwise: {refer: general, because: x}
"""


def test_lint_reports_each_finding_with_its_location(tmp_path):
    path = tmp_path / "lint.yaml"
    path.write_text(LINT_RULESET)
    got = [(d.code, d.line, d.column, d.message) for d in lint(vedtak.load(path))]
    assert got == [
        ("missing_parameter", 16, 18, 'parameter "LATE" has no value on 2025-01-01, the first day of this '
                                      "version (its first value is from 2025-06-01)"),
        ("unused_derived", 18, 3, 'derived value "spare" is not used by any rule'),
        ("unreachable_rule", 21, 29, 'rule "b" can never fire: rule "a" before it matches every case it matches'),
        ("unreachable_rule", 22, 29, 'rule "c" can never fire: its condition can never hold'),
        ("unreachable_rule", 24, 29, 'rule "e" can never fire: rule "d" before it matches every case it matches'),
    ]
    assert all(d.severity == "warning" for d in lint(vedtak.load(path)))


def test_the_shipped_and_golden_rulesets_lint_clean():
    assert lint(vedtak.load(STUDY_GRANT)) == []
    assert lint(vedtak.load(CHILD_BENEFIT)) == []
