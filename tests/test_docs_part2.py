"""`vedtak docs` on the part-2 forms: scales as bracket tables and tables as key/value tables by
date, parameters that end, field defaults, item functions and expressions read back as text;
and every example of docs/rulesets.md decided alike by the compiled plan and the reference
interpreter, as that page says."""

from __future__ import annotations

import ast
import re

import pytest

import vedtak
from vedtak.language.docs import readable, render
from vedtak.language.expr import CheckedExpr
from vedtak.evaluation.reference import run

from test_docs_examples import EXAMPLES

FORMS = """\
ruleset: every-form
title: Every part-2 form
version: "1"
valid: {from: 2024-01-01}
decision_date: day
case_id: id
automate: [pay]
case:
  id: string
  day: date
  income: {type: money, min: 0}
  salary: {type: money, optional: true, default: 0}
  region: {type: string, optional: true, default: south, one_of: [north, south]}
  children:
    type: list
    items:
      birth_date: date
      lives_with: bool
      support: {type: money, optional: true, default: 0}
parameters:
  TRINN:
    unit: NOK
    basis: "Skattevedtaket § 3-1"
    description: "rates <on> income & more"
    scale:
      2024-01-01:
        - {from: 0, rate: 0}
        - {from: 208050, rate: 0.017}
      2025-01-01:
        - {from: 0, rate: 0}
        - {from: 217400, rate: 0.017}
        - {from: 306050, rate: 0.040}
      2027-01-01: null
  FEE:
    unit: NOK
    scale:
      2024-01-01:
        - {from: 0, amount: 100}
        - {from: 100000, amount: 500}
  SATS:
    unit: NOK
    table:
      2024-01-01: {under_6: 1766, from_6: 1310}
      2024-09-01: {under_6: 1968, from_6: 1766}
      2026-06-01: null
  REGION_RATE:
    table:
      2024-01-01: {north: 0.116, south: 0.136}
  INDEX:
    table:
      2024-01-01: {2024: 100, 2025: 104}
  HOUSING: {values: {2024-01-01: 100, 2026-01-01: null}}
derive:
  age(child): years_between(child.birth_date, day)
  eligible(child): child.lives_with and age(child) < 18
  rate(child): SATS["under_6"] if age(child) < 6 else SATS["from_6"] + child.support * 0.50
  n_eligible: count(c for c in children if eligible(c))
  total: sum(rate(c) for c in children if eligible(c))
  tax: marginal(TRINN, income + salary)
  next_year: add_months(day, 1).year
rules:
  - id: pay
    basis: "§ 1"
    when: n_eligible > 0 and day.year >= 2024
    decide: pay
    values:
      total: total + HOUSING
      tax: tax
      fee: bracket(FEE, income)
      rr: REGION_RATE[region]
      index: INDEX[next_year]
    because: "Pay {total}."
otherwise: {refer: general, because: "No eligible children."}
"""


@pytest.fixture(scope="module")
def forms(tmp_path_factory):
    path = tmp_path_factory.mktemp("forms") / "forms.yaml"
    path.write_text(FORMS, encoding="utf-8")
    return vedtak.load(path)


@pytest.fixture(scope="module")
def md(forms) -> str:
    return render(forms, "md")


@pytest.fixture(scope="module")
def page(forms) -> str:
    return render(forms, "html")


def _after(text: str, heading: str) -> str:
    """The text from a heading line up to the next heading of any level."""
    start = text.index(heading + "\n")
    end = text.find("\n#", start + len(heading))
    return text[start:end if end >= 0 else None]


def test_md_renders_a_scale_as_one_bracket_table_per_dated_value(md):
    """A scale is a section of its own: its basis and description, then for each dated value the
    dates it is in force and a table of brackets (from, to, rate) with the unit on the amounts; the
    last bracket has no upper limit, and a null date says no value is in force from then."""
    assert _after(md, "#### Scale `TRINN`") == """\
#### Scale `TRINN`

Legal basis: Skattevedtaket § 3-1

rates <on> income & more

Each bracket runs from its `from` (inclusive) to the next bracket's `from` (not included), the last \
without an upper limit; marginal() applies each rate to the part of an amount inside its bracket.

In force from 2024-01-01 to 2024-12-31:

| from | to | rate |
|---|---|---|
| 0 NOK | 208050 NOK | 0 |
| 208050 NOK |  | 0.017 |

In force from 2025-01-01 to 2026-12-31:

| from | to | rate |
|---|---|---|
| 0 NOK | 217400 NOK | 0 |
| 217400 NOK | 306050 NOK | 0.017 |
| 306050 NOK |  | 0.040 |

No value in force from 2027-01-01.
"""


def test_md_renders_a_scale_of_amounts_with_an_amount_column(md):
    """A scale of amounts has an `amount` column, the unit on each amount, and says that bracket()
    gives the amount of the bracket an amount falls in."""
    fee = _after(md, "#### Scale `FEE`")
    assert "bracket() gives the amount of the bracket an amount falls in." in fee
    assert "In force from 2024-01-01:\n\n| from | to | amount |\n|---|---|---|\n" \
           "| 0 NOK | 100000 NOK | 100 NOK |\n| 100000 NOK |  | 500 NOK |\n" in fee


def test_md_renders_a_table_as_key_value_rows_per_dated_value(md):
    """A table is a key/value table for each dated value, with the dates it is in force; text keys
    are quoted, whole-number keys are not; a null date says no value is in force from then."""
    assert _after(md, "#### Table `SATS`") == """\
#### Table `SATS`

In force from 2024-01-01 to 2024-08-31:

| key | value |
|---|---|
| "under_6" | 1766 NOK |
| "from_6" | 1310 NOK |

In force from 2024-09-01 to 2026-05-31:

| key | value |
|---|---|
| "under_6" | 1968 NOK |
| "from_6" | 1766 NOK |

No value in force from 2026-06-01.
"""
    assert "| key | value |\n|---|---|\n| 2024 | 100 |\n| 2025 | 104 |\n" in _after(md, "#### Table `INDEX`")
    assert '| "north" | 0.116 |\n| "south" | 0.136 |' in md


def test_md_says_a_parameter_that_ends_has_no_value_from_its_date(md):
    """A `null` in a plain parameter's values is the row "no value in force from DATE", and the
    value before it ends the day before."""
    assert "| `HOUSING` | 2024-01-01 | 2025-12-31 | 100 |  |  |\n" \
           "|  | 2026-01-01 |  | no value in force from 2026-01-01 |  |  |\n" in md
    assert "unknown" not in _after(md, "### Parameters")


def test_md_lists_field_defaults_in_the_case_data(md):
    """A case field with a default says so in the required column (a text default quoted), and
    an item field with a default says so among the list's items."""
    assert "| `salary` | money | optional, default 0 |  |  |  |\n" in md
    assert '| `region` | string | optional, default "south" |  | one of north, south |  |\n' in md
    assert "| `children` | list | required |  | items: birth_date (date), lives_with (bool), " \
           "support (money, default 0) |  |\n" in md


def test_md_lists_item_functions_among_the_derived_values_in_the_order_written(md):
    """Item functions are listed as `name(item)` with their body, in the order of `derive`, among
    the derived values; a call of one reads as the call, never as its inlined body; table lookups
    read `T["key"]` and date parts `d.year`, also on a computed date."""
    assert _after(md, "### Derived values").split("\n\n", 2)[2] == """\
| name | definition |
|---|---|
| `age(child)` | years_between(child.birth_date, day) |
| `eligible(child)` | child.lives_with and age(child) < 18 |
| `rate(child)` | SATS["under_6"] if age(child) < 6, otherwise SATS["from_6"] + child.support × 0.50 |
| `n_eligible` | count(c for each c in children where eligible(c)) |
| `total` | sum(rate(c) for each c in children where eligible(c)) |
| `tax` | marginal(TRINN, income + salary) |
| `next_year` | add_months(day, 1).year |
"""
    assert "A name with an item, `name(item)`, is a value of one list item" in md
    assert "- When: n_eligible > 0 and day.year ≥ 2024\n" in md
    assert "- Value `rr` = REGION_RATE[region]\n- Value `index` = INDEX[next_year]\n" in md


def test_html_renders_the_same_tables_and_escapes_text(page):
    """The HTML page has the same bracket and key/value tables, headings with code spans, and
    escapes every text: a description's <, > and &, quoted keys, and `<` in an expression."""
    assert "<h4>Scale <code>TRINN</code></h4>" in page
    assert "<p>rates &lt;on&gt; income &amp; more</p>" in page
    assert "<table><thead><tr><th>from</th><th>to</th><th>rate</th></tr></thead><tbody>" \
           "<tr><td>0 NOK</td><td>217400 NOK</td><td>0</td></tr>" \
           "<tr><td>217400 NOK</td><td>306050 NOK</td><td>0.017</td></tr>" \
           "<tr><td>306050 NOK</td><td></td><td>0.040</td></tr></tbody></table>" in page
    assert "<p>No value in force from 2027-01-01.</p>" in page
    assert "<tr><td>&quot;under_6&quot;</td><td>1968 NOK</td></tr>" in page
    assert "<td>optional, default &quot;south&quot;</td>" in page
    assert "<tr><td><code>eligible(child)</code></td><td>child.lives_with and age(child) &lt; 18</td></tr>" in page
    assert "<td>no value in force from 2026-01-01</td>" in page
    assert "<on>" not in page and "& more" not in page


def _expr(text: str) -> CheckedExpr:
    return CheckedExpr(text, ast.parse(text, mode="eval").body, None, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("text,want", [
    ('sats["under_6"]', 'sats["under_6"]'),
    ("rate[band] * 2", "rate[band] × 2"),
    ("day.year", "day.year"),
    ("add_months(day, 1).month", "add_months(day, 1).month"),
    ("date(day.year, 1, 1) > day", "date(day.year, 1, 1) > day"),
    ("count(c for c in kids if eligible(c))", "count(c for each c in kids where eligible(c))"),
])
def test_readable_renders_subscripts_date_parts_and_item_function_calls(text, want):
    """readable() reads a table lookup with its key in double quotes, a date part on any date
    expression, and an item function's call as written."""
    assert readable(_expr(text)) == want


def test_readable_renders_a_call_never_the_inlined_body(forms):
    """A checked generator whose condition applies an item function reads as the call, though
    the checker has attached the function's body to it (``node.inline``) for the evaluators."""
    expr = forms.latest.derived["n_eligible"]
    calls = [n for n in ast.walk(expr.tree) if isinstance(n, ast.Call) and hasattr(n, "inline")]
    assert calls, "the checker inlines eligible(c)"
    assert readable(expr) == "count(c for each c in children where eligible(c))"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_documented_example_decides_alike_in_the_plan_and_the_reference_interpreter(name, tmp_path):
    """Each example case on docs/rulesets.md gets the same rule, kind of result and values from
    the compiled plan as from the reference interpreter (engine/evaluation/reference.py), as the page says."""
    folder = tmp_path / name
    folder.mkdir()
    for file, text in EXAMPLES[name]:
        (folder / file).write_text(text, encoding="utf-8")
    ruleset = vedtak.load(folder if len(EXAMPLES[name]) > 1 else folder / EXAMPLES[name][0][0])
    plan = vedtak.compile(ruleset)
    kinds = {"missing-data": "missing-data", "missing-parameter": "missing-parameter",
             "evaluation-error": "error"}
    compared = 0
    for version in ruleset.versions:
        for example in version.model.examples:
            d = plan.decide(dict(example.case))
            if d.status == "rejected":
                continue
            result = run(d.period, d.case)
            assert result.index == d._outcome.index, example.name
            assert result.kind == kinds.get(d.referral_reason, "match"), example.name
            if result.kind == "match":
                assert (result.values or {}) == d.values, example.name
            if result.kind == "missing-parameter":
                assert tuple(result.missing) == d.missing, example.name
            compared += 1
    assert compared > 0


def test_every_part2_form_is_in_a_documented_example_that_a_test_runs():
    """docs/rulesets.md has, in the example rulesets that tests/test_docs_examples.py loads and
    runs, every part-2 form: defaults, null values, scales of rates and of amounts, tables with
    text and whole-number keys, item functions, date parts and date arithmetic; and an error
    block for each new error code."""
    from test_docs_examples import ERRORS
    text = "\n".join(body for files in EXAMPLES.values() for _, body in files)
    forms = {
        "a case field default": r"^  \w+: \{type: \w+, optional: true, default: ",
        "an item field default": r"^      \w+: \{type: \w+, optional: true, default: ",
        "a parameter that ends": r": null\}",
        "a scale of rates": r"- \{from: \d+, rate: ",
        "a scale of amounts": r"- \{from: \d+, amount: ",
        "a table with text keys": r"^      \d{4}-\d\d-\d\d: \{[a-z_]+: ",
        "a table with whole-number keys": r"^      \d{4}-\d\d-\d\d: \{\d+: ",
        "a table lookup": r"[A-Z_]+\[\w+\]",
        "an item function": r"^  \w+\(\w+\): ",
        "marginal": r"marginal\(", "bracket": r"bracket\(",
        "add_days": r"add_days\(", "add_months": r"add_months\(", "add_years": r"add_years\(",
        "date parts": r"\.year\b", "month part": r"\.month\b", "day part": r"\bday\.day\b",
        "a computed date": r"date\(day\.year, ",
        "expected reason missing-parameter": r"reason: missing-parameter",
    }
    missing = [what for what, pattern in forms.items() if not re.search(pattern, text, re.M)]
    assert missing == []
    codes = {code for (code, _), _ in ERRORS}
    assert {"bad_default", "scale_not_ascending", "table_incomplete"} <= codes
