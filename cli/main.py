"""Click commands: check, test, decide. Library errors become messages and exit codes here only."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.text import Text

import vedtak
from vedtak.check import lint
from vedtak.decision import json_value
from vedtak.errors import CaseInputError, RulesetError
from vedtak.examples import run_examples

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def _console(err: bool = False) -> Console:
    return Console(stderr=err, highlight=False, soft_wrap=True, emoji=False)


def _print(text: str, style: str | None = None, err: bool = False) -> None:
    _console(err).print(Text(text, style=style or ""))


def _load(path: str):
    """Load a ruleset or print its diagnostics; None when it does not load."""
    try:
        return vedtak.load(path)
    except RulesetError as exc:
        for d in exc.diagnostics:
            _print(d.format(), err=True)
        n = len(exc.diagnostics)
        _print(f"{path}: {n} problem{'s' if n != 1 else ''}; the ruleset was not loaded", style="bold red", err=True)
        return None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(vedtak.__version__, prog_name="vedtak")
def main() -> None:
    """vedtak: decide cases by rules, explain every decision, refer the rest.

    A ruleset is a YAML file (or a directory of dated versions of one ruleset). Start
    with `vedtak check`, run its examples with `vedtak test`, and decide one case with
    `vedtak decide`.

    Exit codes: 0 ok, 1 findings (problems in a ruleset, failed examples, an invalid
    case), 2 usage errors.
    """


@main.command()
@click.argument("rulesets", nargs=-1, required=True, type=click.Path(exists=True))
def check(rulesets: tuple[str, ...]) -> None:
    """Validate rulesets and lint them: types, names, unreachable rules, unused names.

    Every problem is printed as file:line:column: code: message, with the line and a caret.

    Example: vedtak check rulesets/study-grant
    """
    findings = 0
    for path in rulesets:
        rs = _load(path)
        if rs is None:
            findings += 1
            continue
        warnings = lint(rs)
        for d in warnings:
            _print(d.format())
        findings += len(warnings)
        versions = ", ".join(v.version for v in rs.versions)
        rules = sum(len(v.rules) for v in rs.versions)
        state = "ok" if not warnings else f"{len(warnings)} finding{'s' if len(warnings) != 1 else ''}"
        _print(f"{path}: {state} (ruleset {rs.id}, version{'s' if len(rs.versions) > 1 else ''} {versions}, "
               f"{rules} rules)", style="green" if not warnings else "yellow")
    sys.exit(EXIT_FINDINGS if findings else EXIT_OK)


@main.command()
@click.argument("rulesets", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-v", "--verbose", is_flag=True, help="Also list the examples that pass.")
def test(rulesets: tuple[str, ...], verbose: bool) -> None:
    """Run the examples written in rulesets, and report each failure with its trace.

    Example: vedtak test rulesets/study-grant
    """
    passed = failed = 0
    for path in rulesets:
        rs = _load(path)
        if rs is None:
            failed += 1
            continue
        plan = vedtak.compile(rs)
        results = run_examples(plan)
        covered = {(r.version, r.decision.rule) for r in results}
        for r in results:
            if r.passed:
                passed += 1
                if verbose:
                    _print(f"PASS {rs.id} {r.version}: {r.example.name}", style="green")
                continue
            failed += 1
            _print(f"FAIL {rs.id} {r.version}: {r.example.name} ({r.file})", style="bold red")
            for key, want, got in r.mismatches:
                _print(f"  {key}: expected {json.dumps(json_value(want), ensure_ascii=False)}, "
                       f"got {json.dumps(json_value(got), ensure_ascii=False)}")
            for line in r.decision.explain().splitlines():
                _print("    " + line)
        for v in rs.versions:
            untested = [rule.id for rule in v.rules if (v.version, rule.id) not in covered]
            if untested:
                _print(f"{v.source.path}: no example reaches rule{'s' if len(untested) > 1 else ''} "
                       + ", ".join(untested), style="yellow")
    _print(f"{passed} passed, {failed} failed", style="bold green" if not failed else "bold red")
    sys.exit(EXIT_FINDINGS if failed else EXIT_OK)


@main.command()
@click.argument("ruleset", type=click.Path(exists=True))
@click.argument("case", type=click.File("rb"))
@click.option("--json", "as_json", is_flag=True, help="Print the decision as canonical JSON.")
@click.option("--trace", is_flag=True, help="With --json: include the evaluation trace.")
def decide(ruleset: str, case, as_json: bool, trace: bool) -> None:
    """Decide one case (a JSON file, or - for standard input) and explain the decision.

    Exits 1 when the case is rejected as invalid input.

    Example: vedtak decide rulesets/study-grant case.json
    """
    rs = _load(ruleset)
    if rs is None:
        sys.exit(EXIT_FINDINGS)
    plan = vedtak.compile(rs)
    try:
        decision = plan.decide_json(case.read())
    except CaseInputError as exc:
        _print(f"{getattr(case, 'name', '<stdin>')}: {exc}", style="bold red", err=True)
        sys.exit(EXIT_FINDINGS)
    if as_json:
        click.echo(decision.to_json(trace=trace))
    else:
        style = {"decided": "bold green", "referred": "bold yellow", "rejected": "bold red"}[decision.status]
        lines = decision.explain().splitlines()
        _print(lines[0], style=style)
        for line in lines[1:]:
            _print(line)
    sys.exit(EXIT_FINDINGS if decision.status == "rejected" else EXIT_OK)
