"""The command line through CliRunner: exact output, exit codes, and help on every command."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from vedtak.cli.main import main

from conftest import GOLDEN, STUDY_GRANT

SG = str(STUDY_GRANT)


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


def test_check_reports_ok():
    r = run("check", SG)
    assert (r.exit_code, r.output) == (0, f"{SG}: ok (ruleset study-grant, version 2024.1, 13 rules)\n")


def test_check_reports_a_broken_ruleset_with_location_and_exit_1():
    path = GOLDEN / "errors" / "unknown_name.yaml"
    r = run("check", path)
    assert r.exit_code == 1
    assert r.output == (
        f'{path}:23:11: unknown_name: "incme" is not a case field, parameter or derived value\n'
        "        when: incme < LIMIT\n"
        "              ^^^^^\n"
        '    hint: did you mean "income"?\n'
        f"{path}: 1 problem; the ruleset was not loaded\n")


def test_test_runs_the_examples():
    r = run("test", SG)
    assert (r.exit_code, r.output) == (0, "35 passed, 0 failed\n")


def test_test_reports_a_failing_example_with_expected_and_actual(tmp_path):
    text = (STUDY_GRANT / "study-grant.yaml").read_text().replace(
        'values: {amount: "65000"}', 'values: {amount: "65001"}')
    (tmp_path / "sg.yaml").write_text(text)
    r = run("test", tmp_path / "sg.yaml")
    assert r.exit_code == 1
    lines = r.output.splitlines()
    assert lines[0] == f"FAIL study-grant 2024.1: a 50 % study load gets half the grant ({tmp_path / 'sg.yaml'})"
    assert lines[1] == '  values: expected {"amount": "65001"}, got {"amount": 65000}'
    assert lines[2] == "    Case 1: decided: grant"
    assert lines[-1] == "34 passed, 1 failed"


def test_decide_prints_the_explanation():
    r = run("decide", SG, STUDY_GRANT / "case.json")
    assert r.exit_code == 0
    assert r.output.splitlines()[:6] == [
        "Case 1001: decided: grant",
        "Rule: grant (Study grant scheme § 11 (grant amount))",
        "Reasons:",
        "  A monthly grant of 9550 NOK for a 80 % study load, for 10 months: 95500 NOK.",
        "Values:",
        "  amount = 95500"]


def test_decide_json_prints_canonical_json_from_stdin():
    case = (STUDY_GRANT / "case.json").read_text()
    r = run("decide", SG, "-", "--json", input=case)
    assert r.exit_code == 0
    data = json.loads(r.output)
    assert (data["status"], data["values"], data["case_id"]) == ("decided", {"amount": 95500}, 1001)
    assert r.output == json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def test_decide_rejects_an_invalid_case_with_exit_1():
    r = run("decide", SG, "-", "--json", input='{"case_id": 1}')
    assert r.exit_code == 1
    data = json.loads(r.output)
    assert data["status"] == "rejected"
    assert [e["path"] for e in data["errors"]][:2] == ["age", "resident"]


def test_decide_reports_text_that_is_not_json():
    r = run("decide", SG, "-", input="{oops")
    assert r.exit_code == 1
    assert r.output.startswith("<stdin>: malformed_input: not JSON: Expecting property name enclosed in double "
                               "quotes at column 2")


def test_usage_errors_exit_2():
    assert run("decide", SG).exit_code == 2
    assert run("check", "/no/such/ruleset").exit_code == 2
    assert run("frobnicate").exit_code == 2


def _commands():
    for name, cmd in sorted(main.commands.items()):
        if isinstance(cmd, click.Group):
            yield pytest.param((name,), cmd, id=name)
            for sub, subcmd in sorted(cmd.commands.items()):
                yield pytest.param((name, sub), subcmd, id=f"{name} {sub}")
        else:
            yield pytest.param((name,), cmd, id=name)


@pytest.mark.parametrize("words,command", list(_commands()))
def test_every_command_has_help_with_an_example(words, command):
    """Every command and subcommand has a summary, and every leaf command an example."""
    r = run(*words, "--help")
    assert r.exit_code == 0
    assert command.help and command.help.strip(), words
    if not isinstance(command, click.Group):
        assert "Example: vedtak " + " ".join(words) in r.output
