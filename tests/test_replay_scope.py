"""Replay keeps to one ruleset: --against another ruleset id is refused, and in a log that holds
several rulesets only the named ruleset's records are replayed (both stores)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import vedtak
from vedtak.audit import AuditLog, open_store
from vedtak.cli.main import main
from vedtak.audit.replay import ReplayScopeError, replay

from audit_support import fresh_url
from conftest import ROOT, STUDY_GRANT
from workload import generate

DAGPENGER = ROOT / "rulesets" / "dagpenger"
DAGPENGER_CASES = [json.loads(line) for line in (DAGPENGER / "cases.jsonl").read_text().splitlines() if line.strip()]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(params=["sqlite", "postgres"])
def study_only(request, tmp_path, study_plan):
    url = fresh_url(request.param, tmp_path)
    with AuditLog.open(url) as log:
        list(log.decide_many(study_plan, generate(30, seed=5)))
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def mixed(request, tmp_path, study_plan):
    """A log holding 30 study-grant records and 20 dagpenger records, interleaved."""
    url = fresh_url(request.param, tmp_path)
    dagpenger = vedtak.compile(DAGPENGER)
    study = generate(30, seed=5)
    with AuditLog.open(url) as log:
        list(log.decide_many(study_plan, study[:15]))
        list(log.decide_many(dagpenger, DAGPENGER_CASES))
        list(log.decide_many(study_plan, study[15:]))
    return url


def _changed_study_grant(tmp_path: Path) -> Path:
    changed = tmp_path / "sg"
    shutil.copytree(STUDY_GRANT, changed)
    text = (changed / "study-grant.yaml").read_text()
    (changed / "study-grant.yaml").write_text(text.replace("BASE_MONTHLY: {unit: NOK, values: {2020-01-01: 13000}",
                                                           "BASE_MONTHLY: {unit: NOK, values: {2020-01-01: 13100}"))
    return changed


def test_against_a_ruleset_with_another_id_is_a_usage_error_naming_both(study_only):
    """The reproduction: a study-grant log replayed --against dagpenger is refused (exit 2), with
    both ids in the message, instead of reporting every case as changed."""
    r = run("replay", study_only, "--against", DAGPENGER)
    assert r.exit_code == 2
    assert 'ruleset "dagpenger"' in r.output and '"study-grant"' in r.output
    assert "replayed" not in r.output
    with open_store(study_only) as store:
        with pytest.raises(ReplayScopeError) as caught:
            replay(store, against=vedtak.compile(DAGPENGER))
    assert (caught.value.wanted, caught.value.held) == ("dagpenger", ["study-grant"])


def test_against_replays_only_that_rulesets_records_in_a_mixed_log(mixed, tmp_path):
    """In a log of two rulesets, --against a new study-grant version re-decides the 30
    study-grant records only; the 20 dagpenger records are counted as left out, never changed."""
    r = run("replay", mixed, "--against", _changed_study_grant(tmp_path), "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert (data["replayed"], data["skipped_other_rulesets"], data["ruleset"]) == (30, 20, "study-grant")
    assert sum(t["count"] for t in data["transitions"]) == 30
    assert data["changed"] and all(isinstance(c["case_id"], int) for c in data["changed"])
    text = run("replay", mixed, "--against", _changed_study_grant(tmp_path / "again")).output
    assert text.splitlines()[0] == (f"replayed 30 records against study-grant 2024.1: {len(data['changed'])} "
                                    "changed, 0 not reproducible, 20 records of other rulesets left out")


def test_against_dagpenger_in_a_mixed_log_replays_only_dagpenger(mixed):
    """The same ruleset as recorded: the 20 dagpenger records replay unchanged, study-grant's are left out."""
    r = run("replay", mixed, "--against", DAGPENGER, "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert (data["replayed"], data["skipped_other_rulesets"], data["differences"]) == (20, 30, 0)


def test_a_plain_replay_can_be_limited_to_one_ruleset(mixed):
    """Without --against every record replays with its own stored ruleset; --ruleset ID keeps to
    one ruleset's records, and an id the log does not hold is a usage error naming the ids it holds."""
    everything = run("replay", mixed, "--json")
    assert everything.exit_code == 0
    assert (json.loads(everything.output)["replayed"], json.loads(everything.output)["skipped_other_rulesets"]) \
        == (50, 0)
    only = run("replay", mixed, "--ruleset", "dagpenger")
    assert (only.exit_code, only.output) == (
        0, "replayed 20 records of ruleset dagpenger with the rulesets stored in the log: 0 differences, "
           "0 not reproducible, 30 records of other rulesets left out\n")
    unknown = run("replay", mixed, "--ruleset", "child-benefit")
    assert unknown.exit_code == 2
    assert 'ruleset "child-benefit"' in unknown.output and '"dagpenger", "study-grant"' in unknown.output


def test_against_and_ruleset_must_agree(mixed):
    """--against one ruleset with --ruleset another is a usage error naming both."""
    r = run("replay", mixed, "--against", DAGPENGER, "--ruleset", "study-grant")
    assert r.exit_code == 2
    assert '"dagpenger"' in r.output and '"study-grant"' in r.output


def test_a_human_decision_of_another_ruleset_is_left_out(mixed):
    """A caseworker's decision is counted with its own ruleset: scoped to the other ruleset, it is
    left out rather than counted as a skipped human decision."""
    from vedtak.audit.queue import decide, list_items
    with open_store(mixed) as store:
        item = [i for i in list_items(store) if isinstance(i.case_id, str)][0]  # a dagpenger referral
        decide(store, item.id, outcome="deny", values={}, by="kari", reason="Checked by hand")
        study = replay(store, ruleset_id="study-grant")
        dagpenger = replay(store, ruleset_id="dagpenger")
    assert (study.skipped_human, study.skipped_other_rulesets, study.ok) == (0, 21, True)
    assert (dagpenger.skipped_human, dagpenger.replayed, dagpenger.ok) == (1, 20, True)
