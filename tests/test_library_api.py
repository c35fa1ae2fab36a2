"""The library API as the README documents it: validate/evaluate pairs and decide_json never raising."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vedtak
from vedtak.evaluation.compile import Validated

from test_cases import GOOD

# JSON texts a caller may pass to decide_json that are not a case: each must be a rejection.
HOSTILE_TEXTS = [
    "{not json", "", " ", "{", "}", "[", "null", "true", "1", '"a string"', "[1, 2]",
    '{"case_id": 1,}', "{'case_id': 1}", '{"a": NaN}', '{"a": Infinity}', "\x00", "\ufeff{}",
    '{"case_id": 1', "[" * 100_000, '{"a":' * 50_000, "1" * 10_000,
    b"\xff\xfe{", b'{"case_id": "\xc3"}', b"", "{}" * 3,
]


def test_validate_result_is_a_pair_that_evaluate_accepts(study_plan):
    """plan.validate() returns a pair that still unpacks as (case, rejection) and that evaluate() takes as is."""
    checked = study_plan.validate(dict(GOOD))
    assert isinstance(checked, Validated) and isinstance(checked, tuple)
    case, rejection = checked
    assert rejection is None and checked.ok and checked.case is case
    assert study_plan.evaluate(checked) == study_plan.evaluate(case) == study_plan.decide(dict(GOOD))


def test_evaluate_of_a_rejected_validation_returns_the_rejection(study_plan):
    """evaluate() given what validate() returned for an invalid case returns that rejection, never raises."""
    checked = study_plan.validate(dict(GOOD, income="a lot"))
    assert not checked.ok and checked.case is None
    decision = study_plan.evaluate(checked)
    assert decision is checked.rejection
    assert decision.status == "rejected" and [e.code for e in decision.errors] == ["wrong_type"]


@pytest.mark.parametrize("raw", [None, [], "text", 7, {}, {"case_id": 1}, dict(GOOD, application_date="1999-01-01")],
                         ids=["null", "list", "string", "int", "empty", "partial", "no-version"])
def test_validate_then_evaluate_equals_decide_for_odd_inputs(study_plan, raw):
    """For any raw input, plan.evaluate(plan.validate(raw)) is exactly plan.decide(raw)."""
    assert study_plan.evaluate(study_plan.validate(raw)).to_json() == study_plan.decide(raw).to_json()


def test_decide_json_of_text_that_is_not_json_is_a_malformed_input_rejection(study_plan):
    """decide_json("{not json") is a rejection with code malformed_input, not a CaseInputError."""
    d = study_plan.decide_json("{not json")
    assert d.status == "rejected"
    assert [e.code for e in d.errors] == ["malformed_input"]
    assert d.errors[0].message.startswith("the case is not valid JSON")
    assert json.loads(d.to_json())["errors"][0]["code"] == "malformed_input"
    assert d.explain().startswith("Case ?: rejected")


@pytest.mark.parametrize("text", HOSTILE_TEXTS, ids=range(len(HOSTILE_TEXTS)))
def test_decide_json_never_raises_on_hostile_text(study_plan, text):
    """Each hostile text gives a rejection (malformed input or an invalid case) whose JSON can be written."""
    d = study_plan.decide_json(text)
    assert d.status == "rejected"
    assert d.errors and all(e.code in ("malformed_input", "wrong_type", "missing_field", "unknown_field")
                            for e in d.errors)
    json.loads(d.to_json())


def test_module_level_decide_with_bad_json_text_is_a_rejection(study_plan):
    """vedtak.decide(plan, text) with text that is not JSON returns a malformed_input rejection."""
    d = vedtak.decide(study_plan, "{not json")
    assert [e.code for e in d.errors] == ["malformed_input"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=60), st.binary(max_size=60)))
def test_decide_json_is_total_on_arbitrary_text(study_plan, text):
    """Property: for arbitrary text or bytes, decide_json returns a Decision and never raises."""
    d = study_plan.decide_json(text)
    assert d.status in ("decided", "referred", "rejected")
    d.to_dict()


def test_durable_plan_takes_validate_results_and_rejects_bad_json(study_plan):
    """DurablePlan mirrors Plan: evaluate() takes what validate() returns; decide_json of non-JSON is a rejection."""
    pytest.importorskip("durable")
    from vedtak.evaluation.durable import DurablePlan
    plan = DurablePlan(study_plan.ruleset)
    assert plan.evaluate(plan.validate(dict(GOOD))).to_json() == study_plan.decide(dict(GOOD)).to_json()
    rejected = plan.validate(dict(GOOD, income="a lot"))
    assert plan.evaluate(rejected) is rejected.rejection
    assert [e.code for e in plan.decide_json("{not json").errors] == ["malformed_input"]
