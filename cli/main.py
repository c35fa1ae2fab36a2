"""The `vedtak` command group: check, test, decide (audit and replay live in `audit`)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

import click

import vedtak
from vedtak.language.check import lint
from vedtak.batch.input_limits import Limits, help_text as limit_help
from vedtak.batch.inputs import read_document
from vedtak.evaluation.decision import json_value
from vedtak.errors import CaseInputError
from vedtak.evaluation.examples import run_examples
from vedtak.language.overlay import source_files

from .audit import audit, replay
from .queue import queue
from .common import (EXIT_FINDINGS, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, check_log_path, check_output,
                     echo_json, given, is_url, load_ruleset, log_files, read_pii_key, safe_text, same_file, say,
                     write_output)


def parse_limits(specs: tuple[str, ...]) -> Limits:
    """The --limit options as input limits (a usage error if one is not NAME=VALUE)."""
    try:
        return Limits.parse(specs)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--limit") from None


class Terminated(BaseException):
    """SIGTERM arrived while a command ran: unwound like Ctrl-C (``finally`` blocks run), then exit 143.
    A BaseException, as KeyboardInterrupt is, so that no ``except Exception`` takes it for a fault."""


def _terminate(signum, frame) -> None:
    raise Terminated


def _stopped(message: str, code: int) -> None:
    say(message, style="bold red", err=True)
    sys.exit(code)


class _Commands(click.Group):
    """The command group. A reader of standard output that goes away (`| head`) ends a command quietly;
    Ctrl-C ends any command with "interrupted" and exit 130, SIGTERM with "terminated" and exit 143,
    never click's "Aborted!" or a traceback (a batch run handles both itself, between two chunks)."""

    def main(self, *args, **kwargs):
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _terminate)
            if signal.getsignal(signal.SIGINT) is vedtak._quit_while_starting:  # the modules are imported
                signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            return super().main(*args, **kwargs)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def make_context(self, *args, **kwargs) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt:
            _stopped("interrupted", EXIT_INTERRUPTED)
        except Terminated:
            _stopped("terminated", EXIT_TERMINATED)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            try:  # nothing more can reach the reader; keep the interpreter's last flush from failing too
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            sys.exit(EXIT_FINDINGS)
        except KeyboardInterrupt:
            _stopped("interrupted", EXIT_INTERRUPTED)
        except Terminated:
            _stopped("terminated", EXIT_TERMINATED)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(vedtak.__version__, prog_name="vedtak")
def main() -> None:
    """vedtak: decide cases by rules, explain every decision, refer the rest.

    A ruleset is a YAML file (or a directory of dated versions of one ruleset). Start
    with `vedtak check`, run its examples with `vedtak test`, and decide one case with
    `vedtak decide`.

    Exit codes: 0 ok, 1 findings (problems in a ruleset, failed examples, an invalid
    case), 2 usage errors, 3 a run stopped early (the log or the output full, the log
    locked too long, partitions left undone: --resume finishes it), 130 interrupted
    (Ctrl-C), 143 terminated (SIGTERM).
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
        rs = load_ruleset(path)
        if rs is None:
            findings += 1
            continue
        warnings = lint(rs)
        for d in warnings:
            say(d.format())
        findings += len(warnings)
        versions = ", ".join(v.version for v in rs.versions)
        rules = sum(len(v.rules) for v in rs.versions)
        state = "ok" if not warnings else f"{len(warnings)} finding{'s' if len(warnings) != 1 else ''}"
        say(f"{path}: {state} (ruleset {rs.id}, version{'s' if len(rs.versions) > 1 else ''} {versions}, "
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
        rs = load_ruleset(path)
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
                    say(f"PASS {rs.id} {r.version}: {r.example.name}", style="green")
                continue
            failed += 1
            say(f"FAIL {rs.id} {r.version}: {r.example.name} ({r.file})", style="bold red")
            for key, want, got in r.mismatches:
                say(f"  {key}: expected {json.dumps(json_value(want), ensure_ascii=False)}, "
                       f"got {json.dumps(json_value(got), ensure_ascii=False)}")
            for line in r.decision.explain().split("\n"):
                say("    " + line)
        for v in rs.versions:
            untested = [rule.id for rule in v.rules if (v.version, rule.id) not in covered]
            if untested:
                say(f"{v.source.path}: no example reaches rule{'s' if len(untested) > 1 else ''} "
                       + ", ".join(untested), style="yellow")
    say(f"{passed} passed, {failed} failed", style="bold green" if not failed else "bold red")
    sys.exit(EXIT_FINDINGS if failed else EXIT_OK)


@main.command()
@click.argument("ruleset", type=click.Path(exists=True))
@click.argument("case", type=click.File("rb"))
@click.option("--json", "as_json", is_flag=True, help="Print the decision as canonical JSON.")
@click.option("--trace", is_flag=True, help="With --json: include the evaluation trace.")
@click.option("--backend", type=click.Choice(["compiled", "durable"]), default="compiled", show_default=True,
              help="The evaluator: vedtak's compiled rules, or durable-rules as an independent second one.")
@click.option("--audit", "audit_db", metavar="DB",
              help="Record the decision in this audit log (SQLite path or postgresql:// URL) before printing it.")
@click.option("--pii", type=click.Choice(["keep", "pseudonymise", "drop"]), default="keep", show_default=True,
              help="With --audit: what the log keeps of fields marked pii.")
@click.option("--pii-key-file", type=click.Path(exists=True, dir_okay=False),
              help="With --pii pseudonymise: a file holding the secret key for the keyed pseudonyms.")
@click.option("--redecide", is_flag=True, help="With --audit: decide again a case id this ruleset already decided or "
              "referred in the log; the new record names the one it supersedes. (Without it such a case is "
              "rejected as already_decided.)")
@click.option("--limit", "limit_specs", multiple=True, metavar="NAME=VALUE", help=limit_help())
def decide(ruleset: str, case, as_json: bool, trace: bool, backend: str, audit_db: str | None, pii: str,
           pii_key_file: str | None, limit_specs: tuple[str, ...], redecide: bool = False) -> None:
    """Decide one case (a JSON file, or - for standard input) and explain the decision.

    With --audit, the decision is committed to the audit log before it is shown. A case id
    this ruleset already decided or referred in that log is rejected (already_decided,
    naming the earlier record) unless --redecide decides it again, superseding that record.
    Exits 1 when the case is rejected as invalid input.

    Example: vedtak decide rulesets/study-grant case.json --audit decisions.db
    """
    ctx = click.get_current_context()
    limits = parse_limits(limit_specs)
    if trace and not as_json:
        raise click.UsageError("--trace shows the evaluation trace in the JSON output: add --json")
    if not audit_db and given(ctx, "pii"):
        raise click.UsageError("--pii says what the audit log keeps: add --audit DB")
    if redecide and not audit_db:
        raise click.UsageError("--redecide supersedes a decision recorded in an audit log: add --audit DB")
    if pii_key_file and pii != "pseudonymise":
        raise click.UsageError("--pii-key-file is the key for --pii pseudonymise; it is not used otherwise")
    if audit_db:
        for what, path in [("the case file", getattr(case, "name", None)), ("the ruleset", ruleset),
                           ("the --pii-key-file", pii_key_file)]:
            if path and path != "-" and not is_url(audit_db) and any(
                    same_file(f, path) for _, f in log_files(audit_db)):
                raise click.UsageError(f"--audit {safe_text(audit_db)} names {what} {safe_text(path)}; "
                                       "give the audit log's own path")
    check_log_path("--audit", audit_db)
    pii_key = read_pii_key(pii_key_file)  # before anything is read or opened
    if backend == "durable":
        try:
            import durable.lang  # noqa: F401 - only to learn whether durable-rules is installed
        except ImportError:
            raise click.UsageError("--backend durable needs durable-rules, which is not installed: "
                                   "pip install 'vedtak[durable]' (or use the default backend)") from None
    rs = load_ruleset(ruleset)
    if rs is None:
        sys.exit(EXIT_FINDINGS)
    if backend == "durable":
        from vedtak.evaluation.durable import DurablePlan
        from vedtak.errors import RulesetError
        try:
            plan = DurablePlan(rs)
        except RuntimeError as exc:  # durable-rules present but unusable
            raise click.UsageError(f"--backend durable: {exc}") from None
        except RulesetError as exc:
            for d in exc.diagnostics:
                say(d.format(), err=True)
            say(f"{ruleset}: cannot be run by durable-rules; use the default backend", style="bold red", err=True)
            sys.exit(EXIT_FINDINGS)
    else:
        plan = vedtak.compile(rs)
    try:
        raw, why = read_document(case.read(limits.line_bytes + 1), limits)  # never more than the limit
        if why is not None:  # not recorded: there is no case to record
            raise CaseInputError(f"malformed_input: {why}")
        if audit_db:
            from vedtak.audit import AuditLog
            key = pii_key
            try:
                log = AuditLog.open(audit_db, pii=pii, pii_key=key)
            except ValueError as exc:
                raise click.UsageError(str(exc)) from None
            except Exception as exc:  # a directory, a file that is not a database, a locked or unreachable store
                raise click.ClickException(f"cannot open the audit log {safe_text(audit_db)}: {exc}") from None
            with log:
                decision, superseded = log.decide_once(plan, raw, redecide=redecide)
        else:
            decision, superseded = plan.decide(raw), None
    except CaseInputError as exc:
        say(f"{getattr(case, 'name', '<stdin>')}: {exc}", style="bold red", err=True)
        sys.exit(EXIT_FINDINGS)
    if as_json:
        text = decision.to_json(trace=trace)
        if superseded is not None:  # as the log records it, and as run --redecide writes it out
            data = json.loads(text)
            data["supersedes"] = superseded.seq
            if superseded.chain is not None:
                data["supersedes_chain"] = superseded.chain
            text = vedtak.canonical_json(data)
        echo_json(text)
    else:
        style = {"decided": "bold green", "referred": "bold yellow", "rejected": "bold red"}[decision.status]
        lines = decision.explain().split("\n")  # not splitlines(): a case id may hold U+2028
        if superseded is not None:
            lines.append(f"Supersedes record {safe_text(superseded.ref)}")
        say(lines[0], style=style)
        for line in lines[1:]:
            say(line)
    sys.exit(EXIT_FINDINGS if decision.status == "rejected" else EXIT_OK)


@main.command()
@click.argument("ruleset", type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(["md", "html"]), default="md", show_default=True,
              help="Markdown or a standalone HTML page.")
@click.option("-o", "--out", type=click.Path(dir_okay=False), help="Write to this file instead of standard output.")
def docs(ruleset: str, fmt: str, out: str | None) -> None:
    """Generate the legal specification of a ruleset from the ruleset itself.

    For each version: its validity, the case data it uses, the parameters with their
    dated values, the derived values, and each rule in order with its legal basis, its
    condition in words and its outcome (Public Administration Act § 13).

    Example: vedtak docs rulesets/dagpenger --format html -o dagpenger.html
    """
    from vedtak.language.docs import render
    rs = load_ruleset(ruleset)
    if rs is None:
        sys.exit(EXIT_FINDINGS)
    if out:
        check_output("-o", out, [("the ruleset file", p) for v in rs.versions for p in source_files(v)])
    text = render(rs, fmt)
    if out:
        write_output("-o", out, text)
        say(f"wrote {out}")
    else:
        click.echo(text, nl=False)


@main.command()
@click.argument("ruleset", type=click.Path(exists=True))
@click.argument("cases", nargs=-1, required=True)
@click.option("--audit", "audit_db", required=True, metavar="DB",
              help="The audit log (SQLite path or postgresql:// URL); every decision is recorded here first.")
@click.option("--out", type=click.Path(), help="Write one decision JSON per line, in input order; - for standard "
              "output, the summary then on standard error (with --executor "
              "dask: a directory, one part-NNNNN.jsonl per partition).")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Worker processes deciding cases (default: the machine's cores; with --executor dask, the "
              "local cluster's workers).")
@click.option("--executor", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="local: worker processes on this machine, one audit chain. dask: partitions decided on a Dask "
              "cluster, one audit chain per partition and a manifest.")
@click.option("--scheduler", metavar="ADDRESS", help="With --executor dask: a running scheduler "
              "(tcp://HOST:PORT) instead of a local cluster. Workers must see the input files at the same paths "
              "and reach the (PostgreSQL) audit log.")
@click.option("--partition-size", default="32MB", show_default=True, metavar="SIZE",
              help="With --executor dask: about how much of an input file each partition takes (e.g. 512KB, 64MB).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run: cases already in the log with the same "
              "input and ruleset are not decided again.")
@click.option("--redecide", is_flag=True, help="Decide again cases this ruleset already decided or referred in the "
              "log; each new record names the one it supersedes. (Without it, and without --resume, such a case "
              "is rejected as already_decided.)")
@click.option("--lock-timeout", type=click.FloatRange(0.1, 86400), default=60.0, show_default=True, metavar="SECONDS",
              help="How long a write waits while another process holds the audit log locked; then the run "
              "stops (exit 3) and --resume continues it.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "json", "csv"]),
              help="The input format (default: from the file name, or the first character for stdin).")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 100000),
              help="Cases per block of audit records (one row of the log; the run commits up to 16 "
              "blocks in one transaction while its workers keep ahead).")
@click.option("--summary-json", type=click.Path(dir_okay=False), help="Also write the summary as JSON here (- for "
              "standard output).")
@click.option("--log-json", is_flag=True, help="Structured JSON logs (structlog) on standard error.")
@click.option("--pii", type=click.Choice(["keep", "pseudonymise", "drop"]), default="keep", show_default=True,
              help="What the log keeps of fields marked pii.")
@click.option("--pii-key-file", type=click.Path(exists=True, dir_okay=False),
              help="With --pii pseudonymise: a file holding the secret key.")
@click.option("--limit", "limit_specs", multiple=True, metavar="NAME=VALUE", help=limit_help())
@click.option("--compress", type=click.Choice(["none", "zstd"]), default="none", show_default=True,
              help="Compress each block of records the log stores (zstd: about a third of the size on disk).")
@click.option("--keep-released", is_flag=True, help="Keep each released decision JSON in full in the log too "
              "(by default a record keeps its SHA-256 and what renders it again from the stored ruleset).")
def run(ruleset: str, cases: tuple[str, ...], audit_db: str, out: str | None, workers: int | None, executor: str,
        scheduler: str | None, partition_size: str, resume: bool, fmt: str | None, batch_size: int,
        summary_json: str | None, log_json: bool, pii: str, pii_key_file: str | None, redecide: bool = False,
        lock_timeout: float = 60.0, limit_specs: tuple[str, ...] = (), compress: str = "none",
        keep_released: bool = False) -> None:
    """Decide case files in a batch: JSON Lines, a JSON array or CSV (- for stdin).

    Every decision is committed to the audit log before it is written out. A malformed
    line or an invalid case is reported with its file and line, recorded as a rejection,
    and the batch goes on; every case read is accounted for in the summary. Exit 1 if any
    case was rejected, 0 otherwise, 2 for usage errors.

    A case id this ruleset already decided or referred in the log is rejected
    (already_decided) unless --resume releases the recorded decision or --redecide decides
    it again. If the run stops early — Ctrl-C (exit 130), the log or the output full or the
    log locked longer than --lock-timeout (exit 3) — everything written out is recorded, the
    log is consistent, and the same command with --resume finishes the run.

    With --executor dask, the inputs are cut into partitions that cluster workers read
    and decide themselves, each into its own audit chain; the run ends with a manifest
    record committing to every partition. Exit 3 if partitions are left undone (they are
    named; run the same command with --resume to finish).

    Example: vedtak run rulesets/study-grant rulesets/study-grant/cases.jsonl --audit decisions.db --out decisions.jsonl

    On a cluster: vedtak run rulesets/study-grant cases.jsonl --audit postgresql://vedtak@db/audit --executor dask
    --scheduler tcp://scheduler:8786 --out decisions/
    """
    from vedtak.cli.batch import BatchOptions, run_batch
    ctx = click.get_current_context()
    check_log_path("--audit", audit_db)
    limits = parse_limits(limit_specs)
    if executor != "dask":
        for name, flag in (("partition_size", "--partition-size"), ("scheduler", "--scheduler")):
            if given(ctx, name):
                raise click.UsageError(f"{flag} applies only with --executor dask")
    if scheduler and given(ctx, "workers"):
        raise click.UsageError("--workers sets the local cluster's workers; a --scheduler's cluster has its own")
    if pii_key_file and pii != "pseudonymise":
        raise click.UsageError("--pii-key-file is the key for --pii pseudonymise; it is not used otherwise")
    if redecide and resume:
        raise click.UsageError("--resume releases recorded decisions and --redecide replaces them: choose one")
    if redecide and executor == "dask":
        raise click.UsageError("--redecide works with the local executor only (a partition cannot supersede "
                               "records on other chains); run it without --executor dask")
    try:
        run_batch(BatchOptions(ruleset, list(cases), audit_db, out, workers, executor, scheduler, partition_size,
                               resume, fmt, batch_size, summary_json, log_json, pii, pii_key_file, redecide=redecide,
                               lock_timeout=lock_timeout, limits=limits, compress=compress,
                               keep_released=keep_released))
    except (KeyboardInterrupt, Terminated) as exc:  # before the run started, or a second signal: what was
        # written out is recorded
        what, code = ("terminated", EXIT_TERMINATED) if isinstance(exc, Terminated) else ("interrupted",
                                                                                          EXIT_INTERRUPTED)
        _stopped(f"{what}: every decision written out is recorded in the audit log. Run the same command with "
                 "--resume to continue.", code)


main.add_command(audit)
main.add_command(queue)
main.add_command(replay)
