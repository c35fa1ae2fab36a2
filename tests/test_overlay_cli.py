"""Overlays on the command line: check, test, decide, run, docs and replay --against take one, and the
audit log stores both sources; `replay --set NAME=VALUE` is a what-if of one parameter."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from cli_support import USAGE, error_line, run
from conftest import ROOT, STUDY_GRANT

WHAT_IF = ROOT / "rulesets" / "what-if-study-grant-income-limit"
CASES = STUDY_GRANT / "cases.jsonl"


def test_check_and_test_accept_the_shipped_overlay():
    """`vedtak check` and `vedtak test` load the shipped what-if overlay and pass, naming its version."""
    r = run("check", WHAT_IF)
    assert (r.exit_code, r.output) == (0, f"{WHAT_IF}: ok (ruleset study-grant, version 2024.1+income-limit-250k, "
                                          "13 rules)\n")
    r = run("test", WHAT_IF / "overlay.yaml")
    assert r.exit_code == 0 and r.output.endswith("4 passed, 0 failed\n")


def test_check_reports_an_overlay_that_changes_nothing(tmp_path):
    """An overlay replacing a parameter by the same value is a lint finding at its `extends` (exit 1)."""
    path = tmp_path / "same.yaml"
    path.write_text(f"ruleset: study-grant\nextends: {STUDY_GRANT}\nversion: same\n"
                    "parameters:\n  MIN_AGE: {values: {2020-01-01: 18}, description: minimum age (inclusive)}\n")
    r = run("check", path)
    assert r.exit_code == 1
    assert r.output.startswith(f"{path}:2:10: overlay_changes_nothing: the overlay changes nothing in ")


def test_check_shows_an_overlay_error_in_the_overlay_file(tmp_path):
    """A rule the base lacks is reported at its line and column in the overlay, with the did-you-mean."""
    path = tmp_path / "o.yaml"
    path.write_text(f"ruleset: study-grant\nextends: {STUDY_GRANT}\nversion: x\nrules:\n  remove: [grnt]\n")
    r = run("check", path)
    assert r.exit_code == 1
    assert r.output.splitlines()[:4] == [
        f'{path}:5:12: unknown_rule: rules.remove names rule "grnt", which no base version has',
        "      remove: [grnt]", "               ^^^^", '    hint: did you mean "grant"?']


def test_decide_and_docs_take_an_overlay():
    """`decide` decides under the overlay (the new limit, its version named); `docs` starts the version
    with its changes from the base, the parameter's old and new value."""
    r = run("decide", WHAT_IF, STUDY_GRANT / "case.json", "--json")
    assert r.exit_code == 0
    assert json.loads(r.output)["ruleset"]["version"] == "2024.1+income-limit-250k"
    r = run("docs", WHAT_IF)
    assert r.exit_code == 0
    assert "### Changes from the base\n" in r.output
    assert "| `INCOME_LIMIT` | 2020-01-01 | 200000 NOK | 250000 NOK |" in r.output
    assert r.output.index("Changes from the base") < r.output.index("### Case data")


def test_run_through_an_overlay_stores_both_sources_and_the_log_verifies_and_replays(tmp_path):
    """`run` with an overlay records the bundle of base and overlay source under the overlay's SHA-256;
    `audit verify` passes and a plain replay reproduces every record from the log alone."""
    db = tmp_path / "o.db"
    r = run("run", WHAT_IF, CASES, "--audit", db, "--out", tmp_path / "o.jsonl", "--workers", 1)
    assert r.exit_code in (0, 1), r.output
    with sqlite3.connect(db) as con:
        (path, source), = con.execute("SELECT path, source FROM audit_rulesets").fetchall()
    bundle = json.loads(source)
    assert path == str(WHAT_IF / "overlay.yaml")
    assert bundle["base"] == (STUDY_GRANT / "study-grant.yaml").read_text(encoding="utf-8")
    assert bundle["overlay"] == (WHAT_IF / "overlay.yaml").read_text(encoding="utf-8")
    assert run("audit", "verify", db).output.startswith("ok: 300 records")
    r = run("replay", db)
    assert (r.exit_code, r.output.splitlines()[0]) == (0, "replayed 300 records with the rulesets stored in the "
                                                          "log: 0 differences, 0 not reproducible")


@pytest.fixture(scope="module")
def base_log(tmp_path_factory) -> Path:
    """A log of the README's sample cases decided under rulesets/study-grant."""
    folder = tmp_path_factory.mktemp("log")
    db = folder / "d.db"
    r = run("run", STUDY_GRANT, CASES, "--audit", db, "--out", folder / "d.jsonl", "--workers", 1)
    assert r.exit_code in (0, 1), r.output
    return db


def test_replay_against_the_overlay_reports_its_impact(base_log):
    """`replay --against OVERLAY` on a log made with the base: the cases the higher limit changes."""
    r = run("replay", base_log, "--against", WHAT_IF, "--json")
    assert r.exit_code == 0
    report = json.loads(r.output)
    assert report["against"] == "study-grant 2024.1+income-limit-250k"
    assert report["replayed"] == 300 and report["differences"] > 0
    assert {"from": "decided:deny", "to": "decided:grant", "count": report["rules"][0]["count"]} in \
        report["transitions"]


def test_replay_set_is_the_same_what_if_as_the_overlay(base_log):
    """`replay --set INCOME_LIMIT=250000` changes exactly what the overlay with that limit changes, and says
    what was set."""
    overlay = json.loads(run("replay", base_log, "--against", WHAT_IF, "--json").output)
    r = run("replay", base_log, "--set", "INCOME_LIMIT=250000", "--json")
    assert r.exit_code == 0
    what_if = json.loads(r.output)
    assert what_if["set"] == {"INCOME_LIMIT": "250000"}
    assert what_if["against"] == "the stored rulesets with INCOME_LIMIT=250000"
    for key in ("changed", "transitions", "rules", "value_deltas", "replayed"):
        assert what_if[key] == overlay[key]
    text = run("replay", base_log, "--set", "INCOME_LIMIT=250000", "--limit", 0).output
    assert text.startswith("replayed 300 records against the stored rulesets with INCOME_LIMIT=250000: ")


@pytest.mark.parametrize("args,message", [
    (["--set", "INCOME_LIMT=1"], 'Error: --set INCOME_LIMT: no ruleset stored in the log has a parameter '
                                 'INCOME_LIMT; did you mean "INCOME_LIMIT"?'),
    (["--set", "INCOME_LIMIT=a lot"], "Error: --set INCOME_LIMIT=a lot: INCOME_LIMIT holds number values in "
                                      "study-grant 2024.1, not text"),
    (["--set", "INCOME_LIMIT"], "Error: Invalid value for --set: INCOME_LIMIT: write NAME=VALUE, e.g. "
                                "--set INCOME_LIMIT=250000"),
    (["--set", "INCOME_LIMIT=[1]"], "Error: Invalid value for --set: INCOME_LIMIT=[1]: the value must be one "
                                    "number, date, true/false or text"),
    (["--set", "MIN_AGE=1", "--set", "MIN_AGE=2"], "Error: Invalid value for --set: MIN_AGE is set twice"),
    (["--set", "MIN_AGE=1", "--against", str(WHAT_IF)], "Error: --against replays under another ruleset and "
                                                        "--set changes the stored ones: choose one (an overlay "
                                                        "file can replace parameters too)"),
])
def test_replay_set_refuses_a_bad_setting_as_a_usage_error(base_log, args, message):
    """An unknown name, a value of the wrong kind, a malformed or repeated --set, or --set with --against:
    exit 2 with one line saying what is wrong, never a traceback."""
    r = run("replay", base_log, *args)
    assert (r.exit_code, error_line(r)) == (USAGE, message)


def test_no_output_is_written_over_the_base_an_overlay_extends(tmp_path):
    """`docs -o` and `run --out` refuse the base's file as well as the overlay's (exit 2, nothing written)."""
    base = STUDY_GRANT / "study-grant.yaml"
    before = base.read_bytes()
    r = run("docs", WHAT_IF, "-o", base)
    assert r.exit_code == USAGE and "names the ruleset file" in error_line(r)
    r = run("run", WHAT_IF, CASES, "--audit", tmp_path / "x.db", "--out", base)
    assert r.exit_code == USAGE and "the ruleset file" in error_line(r)
    assert base.read_bytes() == before
