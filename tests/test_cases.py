"""Case validation: every error is listed with its field path; the fast path matches the careful one."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from vedtak.evaluation.cases import build_validator, validate_slow

from conftest import STUDY_GRANT  # noqa: F401

GOOD = {"case_id": 1, "age": 22, "resident": True, "enrolled": True, "study_load_pct": 100, "income": 100000,
        "wealth": 0, "parents_income": 0, "lives_with_parents": False, "months_enrolled": 10,
        "has_prior_default": False, "application_date": "2025-03-01"}


def test_a_valid_case_is_typed(study_plan):
    """Money becomes Decimal and dates become dates; nothing is float."""
    case, rejection = study_plan.validate(dict(GOOD, income="1234.50"))
    assert rejection is None
    assert case["income"] == Decimal("1234.50") and type(case["income"]) is Decimal
    assert case["application_date"] == date(2025, 3, 1)


def test_an_invalid_case_is_rejected_with_every_error(study_plan):
    """Wrong type, out of range, missing, unknown and a bad date: all five reported, with paths."""
    raw = dict(GOOD, age="22", study_load_pct=-1, application_date="2025-02-30", incme=5)
    del raw["wealth"]
    d = study_plan.decide(raw)
    assert d.status == "rejected"
    assert [(e.path, e.code) for e in d.errors] == [
        ("age", "wrong_type"), ("study_load_pct", "out_of_range"), ("wealth", "missing_field"),
        ("application_date", "bad_date"), ("incme", "unknown_field")]
    assert d.errors[4].message == 'not a field of this ruleset\'s cases; did you mean "income"?'
    assert d.to_dict()["errors"][1] == {"path": "study_load_pct", "code": "out_of_range",
                                        "message": "-1 is below the minimum 0"}


def test_bools_are_not_numbers_and_numbers_are_not_bools(study_plan):
    d = study_plan.decide(dict(GOOD, resident=1, age=True))
    assert [(e.path, e.code) for e in d.errors] == [("age", "wrong_type"), ("resident", "wrong_type")]


def test_list_items_are_checked_with_their_index(child_plan):
    raw = {"ref": "C", "decided_on": "2024-05-01", "birth_date": "1990-01-01", "resident": True,
           "municipality": "oslo", "income": 1,
           "children": [{"birth_date": "2020-01-01", "disabled": False, "support": 0},
                        {"birth_date": "2020-13-01", "disabled": "no", "support": 0}]}
    d = child_plan.decide(raw)
    assert [(e.path, e.code) for e in d.errors] == [("children[1].birth_date", "bad_date"),
                                                    ("children[1].disabled", "wrong_type")]


def test_a_case_that_is_not_an_object_is_rejected(study_plan):
    d = study_plan.decide([1, 2])
    assert d.status == "rejected" and d.errors[0].code == "wrong_type"


def test_week_dates_and_datetimes_are_not_dates(study_plan):
    for bad in ("2025-W10-1", "20250301", "2025-03-01T00:00"):
        d = study_plan.decide(dict(GOOD, application_date=bad))
        assert d.status == "rejected", bad


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.text(max_size=12),
                   st.sampled_from(["2025-03-01", "2025-02-30", "1.5", "NaN", "1e3", "1_000"]),
                   st.decimals(allow_nan=True, allow_infinity=True, places=2), st.floats(allow_nan=True),
                   st.dates(), st.lists(st.integers(), max_size=2))


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(list(GOOD) + ["extra"]), VALUES), st.booleans())
def test_generated_fast_path_equals_the_careful_path(study_plan, overrides, drop):
    """For any input, the generated validator and the reference validator give the same result."""
    schema = study_plan.ruleset.latest.model.case
    fast = build_validator(schema)
    raw = dict(GOOD)
    raw.update(overrides)
    if drop:
        raw.pop("income", None)
    got, errors = fast(raw)
    want, want_errors = validate_slow(schema, raw)
    assert got == want
    assert list(errors) == list(want_errors)
