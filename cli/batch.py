"""The `vedtak run` command's output: progress, the summary table, structured logs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
import structlog
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vedtak.audit import AuditLog
from vedtak.batch import Batch, Summary
from vedtak.errors import RulesetError

from .common import EXIT_FINDINGS, EXIT_OK, console, load_ruleset, say


def run_batch(ruleset, cases, audit_db, out, workers, resume, fmt, batch_size, summary_json, log_json, pii,
              pii_key_file) -> None:
    if load_ruleset(ruleset) is None:
        sys.exit(EXIT_FINDINGS)
    for path in cases:
        if path != "-" and not Path(path).is_file():
            raise click.UsageError(f"no case file {path}")
    if list(cases).count("-") > 1:
        raise click.UsageError("standard input (-) can be read only once")
    key = Path(pii_key_file).read_bytes().strip() if pii_key_file else None
    logger = structlog.wrap_logger(structlog.PrintLogger(sys.stderr), processors=[
        structlog.processors.TimeStamper(fmt="iso", utc=True), structlog.processors.JSONRenderer(sort_keys=True)]) \
        if log_json else None
    try:
        log = AuditLog.open(audit_db, pii=pii, pii_key=key, batch_size=batch_size)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except Exception as exc:  # an unreachable server, a locked file: a message, not a traceback
        raise click.ClickException(f"cannot open the audit log {audit_db}: {exc}") from None
    workers = workers or os.cpu_count() or 1
    show_progress = sys.stderr.isatty() and not log_json
    with log, (open(out, "w", encoding="utf-8") if out else _Discard()) as sink:
        progress = Progress(TextColumn("deciding"), BarColumn(), TextColumn("{task.completed:,} cases"),
                            TimeElapsedColumn(), console=console(err=True), disable=not show_progress)
        with progress:
            task = progress.add_task("cases", total=None)

            def advance(n: int) -> None:
                progress.advance(task, n)
                if logger is not None:
                    logger.info("batch_committed", cases=n, ruleset=ruleset)

            batch = Batch(ruleset, list(cases), log, workers=workers, resume=resume, chunk_size=batch_size,
                          fmt=fmt, progress=advance, pii=(pii, key))
            if logger is not None:
                logger.info("run_started", ruleset=ruleset, inputs=list(cases), audit=audit_db, workers=workers,
                            resume=resume)
            write = (lambda text: (sink.write(text), sink.write("\n")))
            try:
                summary = batch.run(write)
            except RulesetError as exc:  # pragma: no cover - the ruleset was loaded above
                raise click.ClickException(exc.format()) from None
    if logger is not None:
        logger.info("run_finished", **{k: v for k, v in summary.to_dict().items() if k != "problems"})
    _print_summary(summary)
    if summary_json:
        Path(summary_json).write_text(json.dumps(summary.to_dict(), indent=2, sort_keys=True) + "\n")
    sys.exit(EXIT_FINDINGS if summary.n_rejected else EXIT_OK)


class _Discard:
    def write(self, text: str) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def _print_summary(s: Summary) -> None:
    for source, line, code, message in s.problems:
        say(f"{source}:{line}: {code}: {message}", err=True)
    if s.n_rejected > len(s.problems):
        say(f"... and {s.n_rejected - len(s.problems)} more rejected cases (see --summary-json or the log)", err=True)
    table = Table("", "cases", box=None, show_header=False)
    table.add_row("read", f"{s.read:,}")
    table.add_row("decided", f"{s.n_decided:,}")
    for outcome, n in sorted(s.decided.items()):
        table.add_row(f"  {outcome}", f"{n:,}")
    table.add_row("referred", f"{s.n_referred:,}")
    for (queue, reason), n in sorted(s.referred.items()):
        table.add_row(f"  {queue} ({reason})", f"{n:,}")
    table.add_row("rejected", f"{s.n_rejected:,}")
    for code, n in sorted(s.rejected.items()):
        table.add_row(f"  {code}", f"{n:,}")
    if s.resumed:
        table.add_row("(already in the log, not decided again)", f"{s.resumed:,}")
    rate = s.read / s.seconds if s.seconds else 0.0
    table.add_row("automation rate", f"{100 * s.n_decided / s.read:.1f} %" if s.read else "-")
    table.add_row("time", f"{s.seconds:.2f} s ({rate:,.0f} cases/s)")
    console().print(table)
