"""Lint findings for the forms of the ruleset language, part 2: item functions never applied,
table keys no lookup can use, and (an error at load, reported by `vedtak check`) scales whose
thresholds are not ascending."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import vedtak
from vedtak.language.check import lint
from vedtak.cli.main import main

from conftest import GOLDEN

ROOT = Path(__file__).resolve().parent.parent
PART2 = GOLDEN / "rulesets" / "part2-forms"

LINT2 = """\
ruleset: lint2
title: Lint, part 2
version: "1"
valid: {from: 2025-01-01}
decision_date: day
case_id: id
automate: [no]
case:
  id: string
  day: date
  region: {type: string, one_of: [north, south]}
  kind: string
  kids: {type: list, items: {band: {type: string, one_of: [low, high]}, age: int}}
parameters:
  BY_REGION: {table: {2025-01-01: {north: 1, south: 2, east: 3}, 2025-06-01: {north: 1, south: 2, west: 4}}}
  BY_BAND: {table: {2025-01-01: {low: 1, high: 2, mid: 3}}}
  BY_KIND: {table: {2025-01-01: {a: 1, b: 2}}}
  BY_NUMBER: {table: {2025-01-01: {1: 10, 2: 20, 3: 30}}}
derive:
  rate(k): BY_BAND[k.band]
  spare(k): k.age + 1
  doubled(k): 2 * rate(k)
  total: sum(rate(k) for k in kids)
rules:
  - id: a
    basis: x
    when: BY_REGION[region] > 1 and BY_KIND[kind] > 0 and BY_KIND["a"] > 0 and BY_NUMBER[2] > total
    decide: no
    because: x
otherwise: {refer: general, because: x}
"""


def _findings(tmp_path, text: str) -> list[tuple]:
    path = tmp_path / "lint2.yaml"
    path.write_text(text)
    return [(d.code, d.line, d.column, d.severity, d.message) for d in lint(vedtak.load(path))]


def test_part2_findings_are_located_warnings(tmp_path):
    """An item function never applied (also one only another unused one would apply) is reported
    at its key in `derive`; a table's keys that no lookup can reach are reported at the table,
    when every lookup's key is a literal or a field (or item field) with one_of. A table looked
    up by a free-text key (BY_KIND) gets no finding."""
    assert _findings(tmp_path, LINT2) == [
        ("unused_table_keys", 15, 3, "warning", 'table "BY_REGION" has keys no lookup can use: "east", "west"'),
        ("unused_table_keys", 16, 3, "warning", 'table "BY_BAND" has keys no lookup can use: "mid"'),
        ("unused_table_keys", 18, 3, "warning", 'table "BY_NUMBER" has keys no lookup can use: 1, 3'),
        ("unused_item_function", 21, 3, "warning", 'item function "spare" is not applied to a list item anywhere'),
        ("unused_item_function", 22, 3, "warning", 'item function "doubled" is not applied to a list item anywhere'),
    ]


def test_an_unused_table_key_finding_says_which_keys_the_lookups_use(tmp_path):
    """The hint names the keys the lookups can use, so the author sees what is covered."""
    path = tmp_path / "lint2.yaml"
    path.write_text(LINT2)
    by_number = [d for d in lint(vedtak.load(path)) if "BY_NUMBER" in d.message]
    assert [d.hint for d in by_number] == [
        "its lookups can use only 2; remove the other keys, or allow them in the key field's one_of"]


def test_an_item_function_applied_anywhere_is_not_reported_nor_listed_as_an_unused_derived_value(tmp_path):
    """Item functions are not derived values: one that a generator applies gets no finding at all."""
    text = LINT2.replace("  spare(k): k.age + 1\n", "").replace("  doubled(k): 2 * rate(k)\n", "")
    codes = [c for c, *_ in _findings(tmp_path, text)]
    assert "unused_item_function" not in codes and "unused_derived" not in codes


def test_one_lookup_with_an_unknown_key_silences_the_table(tmp_path):
    """If any lookup's key could be any value, no key of that table is called unused."""
    text = LINT2.replace('BY_NUMBER[2] > total', 'BY_NUMBER[2] + BY_NUMBER[count(kids)] > total')
    assert all("BY_NUMBER" not in m for *_, m in _findings(tmp_path, text))


def test_a_parameter_ended_before_the_version_starts_says_when_it_ended(tmp_path):
    """missing_parameter on a parameter whose value ended (null) says so, at its scale or table."""
    text = LINT2.replace("  BY_KIND: {table: {2025-01-01: {a: 1, b: 2}}}",
                         "  BY_KIND: {table: {2024-01-01: {a: 1, b: 2}, 2024-06-01: null, 2025-02-01: {a: 1, b: 2}}}")
    found = [f for f in _findings(tmp_path, text) if f[0] == "missing_parameter"]
    assert found == [("missing_parameter", 17, 20, "warning", 'parameter "BY_KIND" has no value on 2025-01-01, '
                      "the first day of this version (its value ended on 2024-06-01)")]


def test_check_reports_a_scale_whose_thresholds_are_not_ascending(tmp_path):
    """`vedtak check` refuses a scale with a bracket starting at or below the one before: an
    error at load (scale_not_ascending), at that bracket's `from`, exit code 1."""
    path = tmp_path / "scale.yaml"
    path.write_text(LINT2.replace("  BY_NUMBER: {table: {2025-01-01: {1: 10, 2: 20, 3: 30}}}\n",
                                  "  BY_NUMBER: {table: {2025-01-01: {1: 10, 2: 20, 3: 30}}}\n"
                                  "  TAX:\n    scale:\n      2025-01-01:\n        - {from: 0, rate: 0}\n"
                                  "        - {from: 1000, rate: 0.1}\n        - {from: 1000, rate: 0.2}\n")
                    .replace("BY_NUMBER[2] > total", "BY_NUMBER[2] > total + marginal(TAX, total)"))
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 1
    assert result.output.splitlines()[:3] == [
        f"{path}:24:18: scale_not_ascending: scale \"TAX\" on 2025-01-01: bracket 3 starts at 1000, "
        "not above bracket 2's 1000",
        "            - {from: 1000, rate: 0.2}",
        "                     ^",
    ]


def test_shipped_rulesets_and_the_part2_golden_ruleset_lint_clean():
    """Every shipped ruleset and the part-2 golden ruleset have no lint findings."""
    for path in sorted(p for p in (ROOT / "rulesets").iterdir() if p.is_dir()) + [PART2]:
        assert lint(vedtak.load(path)) == [], path.name
