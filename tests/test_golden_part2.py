"""Golden error cases of the ruleset language, part 2, read as a ruleset author reads them: in
the file's own terms, never Python's or pydantic's."""

from __future__ import annotations

import pytest
import yaml

import vedtak

from conftest import GOLDEN

ERROR_FILES = sorted((GOLDEN / "errors").glob("*.yaml"))
# what a Python or pydantic message leaks: reprs of values, model paths, type names
INTERNALS = ("datetime.date(", "Decimal(", ".bool", ".int", ".str", "pydantic", "Traceback", "function-",
             "input_value", "input_type", "NoneType", "dict[", "list[", "model_type", "[type=", "Field required")


def _diagnostics(path):
    with pytest.raises(vedtak.RulesetError) as info:
        vedtak.load(path)
    return info.value.diagnostics


@pytest.mark.parametrize("path", ERROR_FILES, ids=lambda p: p.stem)
def test_no_golden_error_message_shows_python_or_pydantic_internals(path):
    """Every golden error's message and hint is free of Python reprs and pydantic paths."""
    for d in _diagnostics(path):
        text = f"{d.message}\n{d.hint or ''}"
        assert not [w for w in INTERNALS if w in text], text


@pytest.mark.parametrize("name,words", [
    ("bad_default_field.yaml", ['the default of "bonus"', "not money"]),
    ("bad_default_item_field.yaml", ['the default of "kids[].support" (-5) is below the field\'s min 0']),
    ("item_function_missing_field.yaml", ['list items have no field "support"', 'applied to items of "adults"']),
    ("table_incomplete_one_of.yaml", ['table "RATE" on 2025-01-01 has no value for', "west"]),
    ("scale_used_bare.yaml", ['"TAX" is a scale: use marginal(TAX, x) or bracket(TAX, x)']),
    ("table_without_key.yaml", ['"RATE" is a table: read one value by its key']),
    ("marginal_amount_scale.yaml", ['marginal() needs a scale of rates; "FEE" has amounts']),
    ("date_part_week.yaml", ['a date has no part "week"']),
    ("add_months_decimal.yaml", ["add_months() adds a whole number, not decimal"]),
    ("parameter_all_null.yaml", ["every dated value is null"]),
    ("parameter_values_and_scale.yaml", ["exactly one of `values`, `scale`", "it has values and scale"]),
])
def test_a_part2_error_says_what_is_wrong_in_the_authors_terms(name, words):
    """Each part-2 misuse names the field, table, scale or list concerned, as the author wrote it."""
    (d,) = _diagnostics(GOLDEN / "errors" / name)
    assert all(w in d.message for w in words), d.message


def test_an_item_function_body_error_is_located_in_the_body_not_where_it_is_applied():
    """The body of `paid(k)` reads `k.support`, which the items of `adults` lack: the error points
    at `k.support` in the item function's own line in `derive`."""
    path = GOLDEN / "errors" / "item_function_missing_field.yaml"
    (d,) = _diagnostics(path)
    assert d.source_line.strip() == "paid(k): k.support > 0"
    assert yaml.safe_load(path.read_text())["derive"]["paid(k)"] == "k.support > 0"
