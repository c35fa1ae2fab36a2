"""The shipped Norwegian rulesets: published facts, the G change on 1 May, and the worked example."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

import vedtak
from vedtak.language.check import lint
from vedtak.evaluation.examples import run_examples

ROOT = Path(__file__).resolve().parent.parent
RULESETS = sorted(p for p in (ROOT / "rulesets").iterdir() if p.is_dir())
G = {"2020-05-01": 101351, "2021-05-01": 106399, "2022-05-01": 111477, "2023-05-01": 118620,
     "2024-05-01": 124028, "2025-05-01": 130160, "2026-05-01": 136549}


@pytest.mark.parametrize("path", RULESETS, ids=lambda p: p.name)
def test_shipped_ruleset_checks_clean_and_passes_its_examples(path):
    rs = vedtak.load(path)
    assert lint(rs) == []
    results = run_examples(vedtak.compile(rs))
    assert results and all(r.passed for r in results)


@pytest.mark.parametrize("path", RULESETS, ids=lambda p: p.name)
def test_every_rule_has_a_legal_basis_and_every_ruleset_its_sources(path):
    for version in vedtak.load(path).versions:
        assert version.model.sources and "not legal advice" in (version.model.notice or "")
        assert all(rule.basis for rule in version.rules)


def test_g_has_every_published_value_from_2020():
    (version,) = vedtak.load(ROOT / "rulesets" / "dagpenger").versions
    assert {d.isoformat(): int(v) for d, v in version.parameters["G"].values} == G


def test_the_g_change_on_1_may_shows_in_the_explanation():
    """The same case dated 30 April and 1 May 2025 is decided under different G, and says so."""
    plan = vedtak.compile(ROOT / "rulesets" / "dagpenger")
    folder = ROOT / "rulesets" / "dagpenger"
    before = plan.decide_json((folder / "case-2025-04-30.json").read_text())
    after = plan.decide_json((folder / "case-2025-05-01.json").read_text())
    assert (before.outcome, after.outcome) == ("grant", "deny")
    assert "G = 124028 NOK" in before.explain() and "G = 130160 NOK" in after.explain()
    assert (before.parameters["G"], after.parameters["G"]) == (124028, 130160)


def test_the_published_worked_example_of_the_income_reduction():
    """Lånekassen's example: limit 195 295 (2021), income 200 000, 10 months -> 2 352.50 NOK."""
    text = (ROOT / "rulesets" / "studiestotte-omgjoring" / "2023.yaml").read_text()
    text = text.replace("INCOME_LIMIT: {unit: NOK, values: {2023-01-01: 205579}",
                        "INCOME_LIMIT: {unit: NOK, values: {2023-01-01: 195295}")
    plan = vedtak.compile(vedtak.load_text(text, "worked-example.yaml"))
    case = {"student_id": "W", "calendar_year_end": "2023-12-31", "lives_with_parents": False, "married": False,
            "lives_with_own_children": False, "education": "university_college", "loan_received": 120000,
            "credits_planned": 60, "credits_passed": 60, "degree_completed": False, "education_completed": False,
            "months_of_support": 10, "study_share": 1, "income": 200000, "net_wealth": 0}
    decision = plan.decide(case)
    assert decision.values["reduction"] == Decimal("2352.50")
    assert decision.values["converted"] == Decimal("27647.50")


def test_the_2024_income_limit_depends_on_the_months_of_support():
    plan = vedtak.compile(ROOT / "rulesets" / "studiestotte-omgjoring")
    base = {"student_id": "M", "calendar_year_end": "2024-12-31", "lives_with_parents": False, "married": False,
            "lives_with_own_children": False, "education": "university_college", "loan_received": 120000,
            "credits_planned": 60, "credits_passed": 60, "degree_completed": False, "education_completed": False,
            "study_share": 1, "income": 400000, "net_wealth": 0}
    six = plan.decide(dict(base, months_of_support=6))
    seven = plan.decide(dict(base, months_of_support=7))
    assert six.values["reduction"] == 0 and seven.outcome == "deny"


@pytest.mark.parametrize("path", RULESETS, ids=lambda p: p.name)
@pytest.mark.parametrize("fmt", ["md", "html"])
def test_shipped_specifications_are_up_to_date(path, fmt):
    """spec.md and spec.html beside each ruleset are what `vedtak docs` generates from it now.

    Regenerate with: vedtak docs rulesets/NAME -o rulesets/NAME/spec.md (and --format html).
    """
    from vedtak.language.docs import render
    assert (path / f"spec.{fmt}").read_text(encoding="utf-8") == render(vedtak.load(path), fmt)


def test_conditions_are_rendered_in_words():
    from vedtak.language.docs import readable
    version = vedtak.load(ROOT / "tests" / "golden" / "rulesets" / "child-benefit").versions[0]
    when = {r.id: readable(r.when) for r in version.rules if r.when is not None}
    assert when["not-resident"] == "not resident"
    assert when["pay"] == "household_income ≤ INCOME_CAP × 2 and days_between(birth_date, decided_on) > 0"
    assert when["newborn"] == 'youngest_months < 1 and decided_on ≥ 2024-03-01'
    assert readable(version.derived["young_children"]) == \
        "count(c for each c in children where years_between(c.birth_date, decided_on) < 6)"
    assert readable(version.derived["per_child"]) == 'RATE + (ARCTIC if municipality is one of ["tromso"], otherwise 0)'


def test_docs_command_writes_markdown_and_html(tmp_path):
    from click.testing import CliRunner
    from vedtak.cli.main import main
    out = tmp_path / "spec.html"
    r = CliRunner().invoke(main, ["docs", str(ROOT / "rulesets" / "dagpenger"), "--format", "html", "-o", str(out)])
    assert r.exit_code == 0 and r.output == f"wrote {out}\n"
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<td>2025-05-01</td>" in text and "130160 NOK" in text
    md = CliRunner().invoke(main, ["docs", str(ROOT / "rulesets" / "dagpenger")])
    assert md.output.startswith("# Unemployment benefit (dagpenger) — legal specification\n")
