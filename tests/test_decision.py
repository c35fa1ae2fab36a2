"""Decisions: the JSON contract, explanations, referrals as values, and the library API."""

from __future__ import annotations

import json
import textwrap

import pytest

import vedtak

from conftest import STUDY_GRANT
from test_cases import GOOD


def test_decision_json_has_the_contracted_keys_in_canonical_form(study_plan):
    """Sorted keys, no whitespace, decimals as strings, and every key DESIGN.md lists."""
    d = study_plan.decide(dict(GOOD, study_load_pct=55, months_enrolled=7, income=210000, wealth=10000))
    text = d.to_json()
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert {k: data[k] for k in ("case_id", "status", "outcome", "queue", "rule", "basis", "values",
                                 "reasons", "decision_date")} == {
        "case_id": 1, "status": "decided", "outcome": "grant", "queue": None, "rule": "grant",
        "basis": "Study grant scheme § 11 (grant amount)", "values": {"amount": 46375},
        "reasons": ["A monthly grant of 6625 NOK for a 55 % study load, for 7 months: 46375 NOK."],
        "decision_date": "2025-03-01"}
    assert data["ruleset"]["id"] == "study-grant" and len(data["ruleset"]["sha256"]) == 64
    assert data["parameters"]["REDUCTION_RATE"] == "0.05"
    assert data["engine_version"] == vedtak.__version__


def test_decisions_are_immutable(study_plan):
    d = study_plan.decide(GOOD)
    with pytest.raises(AttributeError):
        d.status = "referred"
    d.values["amount"] = 0
    assert d.values["amount"] == 130000


def test_a_referral_by_rule_names_its_queue(study_plan):
    d = study_plan.decide(dict(GOOD, has_prior_default=True))
    assert (d.status, d.queue, d.outcome, d.referral_reason) == ("referred", "collections", None, "rule")


def test_a_missing_optional_field_refers_instead_of_deciding(child_plan):
    """partner_income is optional; the rule that reads it refers with missing-data, naming it."""
    raw = {"ref": "M", "decided_on": "2024-05-01", "birth_date": "1990-05-01", "resident": True,
           "municipality": "oslo", "income": 1,
           "children": [{"birth_date": "2020-01-01", "disabled": False, "support": 0}]}
    d = child_plan.decide(raw)
    assert (d.status, d.queue, d.rule, d.referral_reason, d.missing) == (
        "referred", "review", "partner-income-check", "missing-data", ("partner_income",))
    assert d.to_dict()["referral"] == {"reason": "missing-data", "fields": ["partner_income"]}
    assert d.reasons == ["Missing data: rule partner-income-check needs partner_income, "
                         "which the case does not give."]


def test_an_outcome_outside_automate_is_proposed_not_released(child_plan):
    raw = {"ref": "P", "decided_on": "2024-07-01", "birth_date": "1950-01-01", "resident": True,
           "municipality": "oslo", "income": 1, "partner_income": 0,
           "children": [{"birth_date": "2020-01-01", "disabled": False, "support": 0}]}
    d = child_plan.decide(raw)
    assert (d.status, d.queue, d.outcome, d.referral_reason) == (
        "referred", "review", "review-needed", "automation-policy")
    assert d.reasons[-1].startswith('The outcome "review-needed" is not released automatically')


def test_a_decision_with_several_reasons_is_canonical_json(child_plan):
    """A decision with two or more reasons (an automation-policy referral) is written without
    insignificant whitespace, byte for byte as the generic canonical JSON."""
    raw = {"ref": "P", "decided_on": "2024-07-01", "birth_date": "1950-01-01", "resident": True,
           "municipality": "oslo", "income": 1, "partner_income": 0,
           "children": [{"birth_date": "2020-01-01", "disabled": False, "support": 0}]}
    d = child_plan.decide(raw)
    assert len(d.reasons) >= 2
    assert d.to_json() == d.to_json_generic()
    assert '","' in d.to_json() and '", "' not in d.to_json()


RATIO_RULESET = """\
ruleset: ratio
title: Ratio
version: "1"
valid: {from: 2025-01-01}
decision_date: day
case_id: id
automate: [ok]
case:
  id: string
  day: date
  a: money
  b: money
derive:
  ratio: a / b
rules:
  - id: high
    basis: "§ 1"
    when: ratio > 2
    decide: ok
    because: "Ratio {ratio}."
otherwise: {refer: general, because: "Low ratio."}
"""


def test_an_evaluation_error_refers_the_case_naming_the_rule(tmp_path):
    """Division by zero is not an exception for the caller: the case is referred with the reason."""
    path = tmp_path / "ratio.yaml"
    path.write_text(RATIO_RULESET)
    plan = vedtak.compile(path)
    d = plan.decide({"id": "Z", "day": "2025-02-01", "a": 1, "b": 0})
    assert (d.status, d.rule, d.referral_reason) == ("referred", "high", "evaluation-error")
    assert d.reasons == ["Rule high could not be evaluated on this case: division by zero."]
    assert plan.decide({"id": "Y", "day": "2025-02-01", "a": 5, "b": 2}).status == "decided"


def test_decide_json_reads_fractions_as_decimals_and_reports_bad_json(study_plan):
    d = study_plan.decide_json(json.dumps(dict(GOOD, income=100000.5)).encode())
    assert d.case["income"] == vedtak.evaluation.decision.Decimal("100000.5")
    bad = study_plan.decide_json("{nope")  # a rejection, not an exception (issue 13, section 8)
    assert bad.status == "rejected" and [e.code for e in bad.errors] == ["malformed_input"]
    assert "not valid JSON" in bad.errors[0].message


def test_explain_shows_rule_basis_reasons_trace_and_ruleset(study_plan):
    text = study_plan.decide(dict(GOOD, age=17)).explain()
    assert text.splitlines()[:4] == [
        "Case 1: decided: deny",
        "Rule: age-out-of-range (Study grant scheme § 3 (age))",
        "Reasons:",
        "  The applicant is 17; the grant is for ages 18 to 30."]
    assert "  age-out-of-range: when age < MIN_AGE or age > MAX_AGE -> true  [age = 17, MIN_AGE = 18]" in text
    assert "Ruleset: study-grant version 2024.1" in text


def test_the_readme_library_example_runs(monkeypatch):
    """The README's library example, as written there, runs and prints a decision."""
    root = STUDY_GRANT.parent.parent
    monkeypatch.chdir(root)
    readme = (root / "README.md").read_text()
    block = readme.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(textwrap.dedent(block), "README.md", "exec"), namespace)
    assert namespace["decision"].status == "decided"
