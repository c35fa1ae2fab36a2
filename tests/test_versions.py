"""Versions side by side: validity windows, overlaps and gaps, and effective-dated parameters."""

from __future__ import annotations

import shutil
from datetime import date

import pytest

import vedtak

from conftest import CHILD_BENEFIT


def _copy(tmp_path, edit_2025=None):
    target = tmp_path / "child-benefit"
    shutil.copytree(CHILD_BENEFIT, target)
    if edit_2025:
        p = target / "2025.yaml"
        p.write_text(edit_2025(p.read_text()))
    return target


def _case(day: str, **extra) -> dict:
    case = {"ref": "X", "decided_on": day, "birth_date": "1990-05-01", "resident": True, "municipality": "oslo",
            "income": 400000, "partner_income": 0,
            "children": [{"birth_date": "2020-01-01", "disabled": False, "support": 0}]}
    case.update(extra)
    return case


def test_overlapping_windows_are_a_load_error(tmp_path):
    """Two versions that both govern a day are reported, with a hint to end the earlier one."""
    path = _copy(tmp_path, lambda t: t.replace("valid: {from: 2025-01-01}", "valid: {from: 2024-12-01}"))
    with pytest.raises(vedtak.RulesetError) as info:
        vedtak.load(path)
    (d,) = info.value.diagnostics
    assert (d.code, d.line, d.column, d.file) == ("overlapping_versions", 5, 8, str(path / "2025.yaml"))
    assert d.hint == "end version 2024 with `to: 2024-11-30`"


def test_gapped_windows_are_a_load_error(tmp_path):
    """A span of days that no version governs is reported with the missing dates."""
    path = _copy(tmp_path, lambda t: t.replace("valid: {from: 2025-01-01}", "valid: {from: 2025-02-01}"))
    with pytest.raises(vedtak.RulesetError) as info:
        vedtak.load(path)
    (d,) = info.value.diagnostics
    assert d.code == "gap_between_versions"
    assert d.message == "no version governs 2025-01-01 to 2025-01-31"


def test_versions_of_different_rulesets_in_one_directory_are_refused(tmp_path):
    path = _copy(tmp_path, lambda t: t.replace("ruleset: child-benefit", "ruleset: other"))
    with pytest.raises(vedtak.RulesetError) as info:
        vedtak.load(path)
    assert [d.code for d in info.value.diagnostics] == ["mixed_rulesets"]


def test_the_version_in_force_on_the_decision_date_governs(child_plan):
    """31 December is decided by 2024, 1 January by 2025; each decision names its version."""
    assert child_plan.decide(_case("2024-12-31")).ruleset["version"] == "2024"
    assert child_plan.decide(_case("2025-01-01")).ruleset["version"] == "2025"


def test_parameters_are_taken_as_in_force_on_the_decision_date(child_plan):
    """RATE changes on 2024-09-01: the day before and the day itself get different amounts."""
    before = child_plan.decide(_case("2024-08-31"))
    after = child_plan.decide(_case("2024-09-01"))
    assert (before.values["amount"], after.values["amount"]) == (1766, 1968)
    assert before.parameters["RATE"] == 1766 and after.parameters["RATE"] == 1968


def test_a_date_before_every_version_is_rejected_not_decided(child_plan):
    d = child_plan.decide(_case("2023-12-31"))
    assert d.status == "rejected"
    assert [e.code for e in d.errors] == ["no_version"]
    assert d.errors[0].path == "decided_on"


def test_periods_split_only_where_parameters_change(child_plan):
    starts = [p.start for vp in child_plan.versions for p in vp.periods]
    assert starts == [date(2024, 1, 1), date(2024, 9, 1), date(2025, 1, 1)]
