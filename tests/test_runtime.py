"""The function library: calendar arithmetic as age is counted, rounding, a fixed decimal context."""

from __future__ import annotations

import decimal
from datetime import date
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from vedtak.evaluation import runtime
from vedtak.evaluation.reference import _months, _years


def test_years_between_counts_whole_years_as_age_is_counted():
    born = date(2007, 9, 1)
    assert runtime.years_between(born, date(2025, 8, 31)) == 17
    assert runtime.years_between(born, date(2025, 9, 1)) == 18


def test_a_leap_day_birthday_completes_on_the_first_of_march():
    born = date(2008, 2, 29)
    assert runtime.years_between(born, date(2026, 2, 28)) == 17
    assert runtime.years_between(born, date(2026, 3, 1)) == 18
    assert runtime.years_between(born, date(2028, 2, 29)) == 20


def test_months_between_counts_complete_months():
    assert runtime.months_between(date(2025, 1, 31), date(2025, 2, 28)) == 0
    assert runtime.months_between(date(2025, 1, 31), date(2025, 3, 1)) == 1
    assert runtime.months_between(date(2025, 1, 15), date(2025, 3, 15)) == 2
    assert runtime.days_between(date(2025, 1, 1), date(2024, 12, 31)) == -1


@given(st.dates(), st.dates())
def test_calendar_functions_agree_with_the_reference(a, b):
    """The compiled library and the reference interpreter's own calendar code agree on all dates."""
    assert runtime.years_between(a, b) == _years(a, b)
    assert runtime.months_between(a, b) == _months(a, b)


def test_round_is_half_up_unless_told_otherwise():
    assert runtime.round_to(Decimal("2.5")) == Decimal("3")
    assert runtime.round_to(Decimal("-2.5")) == Decimal("-3")
    assert runtime.round_to(Decimal("2.345"), 2) == Decimal("2.35")
    assert runtime.round_to(Decimal("2.5"), 0, "half_even") == Decimal("2")
    assert runtime.floor(Decimal("-0.5")) == -1 and runtime.ceil(Decimal("0.1")) == 1


def test_arithmetic_ignores_the_callers_decimal_context(study_plan):
    """An embedding program that lowers decimal precision does not change a decision."""
    from test_cases import GOOD
    case = dict(GOOD, income="200100.37", study_load_pct=55, months_enrolled=7)
    expected = study_plan.decide(case).to_json()
    with decimal.localcontext() as ctx:
        ctx.prec = 3
        ctx.rounding = decimal.ROUND_DOWN
        assert study_plan.decide(case).to_json() == expected
