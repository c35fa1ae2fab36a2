"""Golden cases as data: ruleset errors with exact locations, and example decisions."""

from __future__ import annotations

import pytest
import yaml

import vedtak
from vedtak.evaluation.examples import run_examples

from conftest import CHILD_BENEFIT, GOLDEN, STUDY_GRANT

EXPECTED = yaml.safe_load((GOLDEN / "errors-expected.yaml").read_text())
ERROR_FILES = sorted((GOLDEN / "errors").glob("*.yaml"))


def test_every_error_golden_has_an_expectation():
    """Each golden error file is listed in errors-expected.yaml, and each listed file exists."""
    assert sorted(p.name for p in ERROR_FILES) == sorted(EXPECTED)


@pytest.mark.parametrize("path", ERROR_FILES, ids=lambda p: p.stem)
def test_ruleset_error_is_reported_with_code_and_location(path):
    """Loading the file fails with exactly the expected diagnostics, each at its line and column."""
    with pytest.raises(vedtak.RulesetError) as info:
        vedtak.load(path)
    got = [f"{d.code} {d.line}:{d.column}" for d in info.value.diagnostics]
    assert got == EXPECTED[path.name]
    for d in info.value.diagnostics:
        assert d.file == str(path)
        assert d.source_line is not None and d.message == d.message.strip()
        text = d.format()
        assert text.startswith(f"{path}:{d.line}:{d.column}: {d.code}: ")
        assert "^" in text.splitlines()[2]


def test_unknown_name_carries_symbol_and_suggestion():
    """Errors carry the offending symbol and a did-you-mean suggestion as attributes."""
    with pytest.raises(vedtak.RulesetError) as info:
        vedtak.load(GOLDEN / "errors" / "unknown_name.yaml")
    (d,) = info.value.diagnostics
    assert (d.symbol, d.suggestion, d.hint) == ("incme", "income", 'did you mean "income"?')
    assert d.format() == (
        f'{GOLDEN / "errors" / "unknown_name.yaml"}:23:11: unknown_name: "incme" is not a case field, '
        "parameter or derived value\n"
        "        when: incme < LIMIT\n"
        "              ^^^^^\n"
        '    hint: did you mean "income"?')


def _examples():
    for ruleset in (STUDY_GRANT, CHILD_BENEFIT):
        plan = vedtak.compile(vedtak.load(ruleset))
        for result in run_examples(plan):
            yield pytest.param(result, id=f"{plan.id}:{result.version}:{result.example.name}")


@pytest.mark.parametrize("result", list(_examples()))
def test_example_decides_as_expected(result):
    """Every example in the shipped and golden rulesets gets the decision it expects."""
    assert result.mismatches == [], result.decision.explain()


def test_examples_reach_every_rule_of_the_study_grant():
    """The study-grant examples reach every rule, `otherwise` included."""
    plan = vedtak.compile(vedtak.load(STUDY_GRANT))
    reached = {r.decision.rule for r in run_examples(plan)}
    assert reached >= {rule.id for rule in plan.ruleset.latest.rules}
