"""The `vedtak run` command's output: progress, the summary table, structured logs."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click
import structlog
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vedtak.audit import AuditLog
from vedtak.audit.log import PiiPolicy, open_store
from vedtak.audit.store import StoreError
from vedtak.batch.runner import Batch, BatchStopped, Summary
from vedtak.errors import RulesetError
from vedtak.batch.input_limits import Limits
from vedtak.batch.inputs import header_problems
from vedtak.language.overlay import source_files

from .common import (EXIT_FINDINGS, EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, cell,
                     check_output, console, load_ruleset, log_files, read_pii_key, safe_json, safe_text, same_file,
                     say)


@dataclass
class BatchOptions:
    ruleset: str
    cases: list[str]
    audit: str
    out: str | None
    workers: int | None
    executor: str
    scheduler: str | None
    partition_size: str
    resume: bool
    fmt: str | None
    batch_size: int
    summary_json: str | None
    log_json: bool
    pii: str
    pii_key_file: str | None
    redecide: bool = False
    lock_timeout: float = 60.0  # seconds a write waits for another process's lock on the log
    limits: Limits = field(default_factory=Limits)  # what one input line may cost to read
    compress: str = "none"  # block compression of the log's records
    keep_released: bool = False  # the log keeps each released decision JSON in full too


def parse_size(text: str) -> int:
    """512KB, 64MB, 1GB or a number of bytes."""
    t = text.strip().upper().removesuffix("B")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    number = t[:-1] if scale > 1 else t
    if not number.isdigit() or int(number) == 0:
        raise click.BadParameter(f"{text!r} is not a size such as 512KB or 64MB", param_hint="--partition-size")
    return int(number) * scale


def _preflight(o: BatchOptions, rs) -> None:
    """Refuse output paths that would destroy an input, the ruleset, a key or the log, or cannot be written.

    Runs before the audit log or any output is opened, so that a slip costs nothing.
    """
    log = log_files(o.audit)
    inputs = [("the input file", path) for path in o.cases if path != "-"]
    for what, path in inputs:
        for log_what, log_path in log:
            if same_file(path, log_path):
                raise click.UsageError(f"{safe_text(path)} is {log_what} {safe_text(log_path)}, not a case file")
    protected = inputs + log + [("the ruleset file", p) for v in rs.versions for p in source_files(v)]
    if o.pii_key_file:
        protected.append(("the --pii-key-file", o.pii_key_file))
    dask = o.executor == "dask"
    if o.out == "-" and dask:
        raise click.UsageError("--out - writes decisions to standard output, which a local run does; with "
                               "--executor dask, --out names a directory of part files")
    check_output("--out", None if o.out == "-" else o.out, protected, directory=dask)
    if dask and o.out:
        for what, path in inputs:
            if (os.path.dirname(os.path.realpath(path)) == os.path.realpath(o.out)
                    and Path(path).name.startswith("part-") and Path(path).suffix == ".jsonl"):
                raise click.UsageError(f"--out {safe_text(o.out)} would hold the partition output file "
                                       f"{safe_text(path)}, which is {what}; choose another directory")
    summary_protected = protected + ([] if dask or not o.out or o.out == "-" else [("the --out file", o.out)])
    if o.summary_json == "-" and o.out == "-":
        raise click.UsageError("--out - and --summary-json - both name standard output: give one of them a file")
    check_output("--summary-json", None if o.summary_json == "-" else o.summary_json, summary_protected)


def run_batch(o: BatchOptions) -> None:
    rs = load_ruleset(o.ruleset)
    if rs is None:
        sys.exit(EXIT_FINDINGS)
    for path in o.cases:
        if path != "-" and not Path(path).is_file():
            raise click.UsageError(f"no case file {path}")
    if o.cases.count("-") > 1:
        raise click.UsageError("standard input (-) can be read only once")
    if o.scheduler and o.executor != "dask":
        raise click.UsageError("--scheduler needs --executor dask")
    key = read_pii_key(o.pii_key_file)
    try:
        PiiPolicy(o.pii, key)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _preflight(o, rs)  # output paths first: they need no input read
    # every CSV header is checked before anything is opened or decided: a column the cases lack
    # would reject every row, each for the same reason
    problems = header_problems(o.cases, rs.latest.model.case, o.fmt)
    if problems:
        raise click.UsageError("a CSV header does not match this ruleset's cases; nothing was decided or recorded:\n"
                               + "\n".join(f"  {safe_text(p)}" for p in problems))
    logger = structlog.wrap_logger(structlog.PrintLogger(sys.stderr), processors=[
        structlog.processors.TimeStamper(fmt="iso", utc=True), structlog.processors.JSONRenderer(sort_keys=True)]) \
        if o.log_json else None
    workers = o.workers or os.cpu_count() or 1
    if logger is not None:
        logger.info("run_started", ruleset=o.ruleset, inputs=o.cases, audit=o.audit, workers=workers,
                    executor=o.executor, resume=o.resume)
    if o.executor == "dask":
        summary = _run_distributed(o, workers, key, logger)
    else:
        summary = _run_local(o, workers, key, logger)
    if logger is not None:
        logger.info("run_finished", **{k: v for k, v in summary.to_dict().items() if k != "problems"})
    _print_summary(summary, err=_stdout_taken(o))  # --out - or --summary-json -: stdout holds that only
    if o.summary_json == "-":
        click.echo(json.dumps(summary.to_dict(), indent=2, sort_keys=True))
    elif o.summary_json:
        try:  # checked before the run, but a disk can fill up meanwhile
            Path(o.summary_json).write_text(json.dumps(summary.to_dict(), indent=2, sort_keys=True) + "\n")
        except OSError as exc:
            raise click.ClickException(f"cannot write --summary-json {safe_text(o.summary_json)}: "
                                       f"{exc.strerror or exc}; every decision is recorded in the audit log and "
                                       "the summary above is complete") from None
    sys.exit(EXIT_FINDINGS if summary.n_rejected or summary.duplicates_across_partitions else EXIT_OK)


def _stdout_taken(o: BatchOptions) -> bool:
    """Whether standard output holds the decisions (--out -) or the summary JSON (--summary-json -),
    so that the summary table goes to standard error."""
    return o.out == "-" or o.summary_json == "-"


def _progress(show: bool, what: str) -> Progress:
    return Progress(TextColumn(what), BarColumn(), TextColumn("{task.completed:,} cases"), TimeElapsedColumn(),
                    console=console(err=True), disable=not show)


def _run_local(o: BatchOptions, workers: int, key: bytes | None, logger) -> Summary:
    try:
        log = AuditLog.open(o.audit, pii=o.pii, pii_key=key, batch_size=o.batch_size, timeout=o.lock_timeout,
                            compress=o.compress, keep_released=o.keep_released)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except StoreError as exc:  # locked longer than the timeout, or full, before anything was done
        say(f"{safe_text(str(exc))}; nothing was decided or recorded. Run the command again when the log is "
            "free.", style="bold red", err=True)
        sys.exit(EXIT_INCOMPLETE)
    except Exception as exc:  # an unreachable server, a file that is not a database: a message, not a traceback
        raise click.ClickException(f"cannot open the audit log {o.audit}: {exc}") from None
    if o.out and o.out != "-" and Path(o.out).is_dir():
        raise click.UsageError(f"--out {o.out} is a directory; a local run writes one file")
    try:
        output = _StandardOutput() if o.out == "-" else _Output(o.out) if o.out else _Discard()
    except OSError as exc:  # checked before the run; a file system can still refuse
        log.close()
        raise click.ClickException(f"cannot write --out {safe_text(o.out)}: {exc.strerror or exc}; nothing was "
                                   "decided or recorded") from None
    with log, output as sink:
        progress = _progress(sys.stderr.isatty() and not o.log_json, "deciding")
        with progress:
            task = progress.add_task("cases", total=None)

            def advance(n: int) -> None:
                progress.advance(task, n)
                if logger is not None:
                    logger.info("batch_committed", cases=n, ruleset=o.ruleset)

            batch = Batch(o.ruleset, o.cases, log, workers=workers, resume=o.resume, chunk_size=o.batch_size,
                          fmt=o.fmt, progress=advance, pii=(o.pii, key), redecide=o.redecide, limits=o.limits)
            try:
                return batch.run(write_chunk=sink.write_chunk)
            except RulesetError as exc:  # pragma: no cover - the ruleset was loaded above
                raise click.ClickException(exc.format()) from None
            except BatchStopped as exc:
                progress.stop()
                stopped = exc
        _print_summary(stopped.summary, err=_stdout_taken(o))
        _report_stop(o, stopped, sink, logger)


def _report_stop(o: BatchOptions, exc: BatchStopped, sink, logger) -> None:
    """Say why a run stopped early, what is safe, and how to finish it; exit 130 or 3."""
    done = exc.summary.read
    if logger is not None:
        logger.info("run_stopped", why=exc.why, cases=done, recorded=exc.recorded)
    if o.summary_json:  # what the run did before it stopped, and why it stopped
        data = dict(exc.summary.to_dict(), stopped={"why": exc.why, "message": str(exc), "recorded": exc.recorded})
        try:
            text = json.dumps(data, indent=2, sort_keys=True) + "\n"
            if o.summary_json == "-":
                click.echo(text, nl=False)
            else:
                Path(o.summary_json).write_text(text)
        except OSError:
            pass  # the disk that stopped the run may hold it too; the message below says what matters
    if exc.why in ("interrupted", "terminated"):  # Ctrl-C, SIGTERM
        say(f"{exc.why} after {done:,} cases: each is recorded in the audit log"
            + (" and written out" if o.out else "") + ". Run the same command with --resume to continue.",
            style="bold red", err=True)
        sys.exit(EXIT_INTERRUPTED if exc.why == "interrupted" else EXIT_TERMINATED)
    if exc.why == "output" and o.out == "-":  # the reader went away (| head) or its disk is full
        why = getattr(exc.__cause__, "strerror", None) or str(exc.__cause__ or exc)
        say(f"cannot write the decisions to standard output: {safe_text(why)}; {sink.lines:,} complete decisions "
            f"were written before, and the audit log holds every decision of this run ({exc.recorded:,} records). "
            "Run the same command with --resume to write every decision again.", style="bold red", err=True)
        sys.exit(EXIT_INCOMPLETE)
    if exc.why == "output":
        cut = "it holds the first" if sink.cut_ok else "it may end in a partial line after the first"
        why = getattr(exc.__cause__, "strerror", None) or str(exc.__cause__ or exc)
        say(f"cannot write --out {safe_text(o.out)}: {safe_text(why)}; {cut} {sink.lines:,} decisions, each "
            f"complete, and the audit log holds every decision of this run ({exc.recorded:,} records). Free space "
            "and run the same command with --resume: it writes the whole output again.", style="bold red",
            err=True)
        sys.exit(EXIT_INCOMPLETE)
    then = ("When the other process has finished" if getattr(exc.__cause__, "reason", None) == "locked"
            else "Once there is space on its disk")
    say(f"{safe_text(str(exc))}. The run stopped after {done:,} cases, each recorded and written out; the "
        f"chunk being recorded was rolled back and the log is consistent. {then}, run the same command with "
        "--resume to finish.", style="bold red", err=True)
    sys.exit(EXIT_INCOMPLETE)


class _Output:
    """The --out file, written one committed chunk at a time with plain os.write calls. A write that
    fails (disk full, a file size limit) is cut back to the last complete line: the file never ends
    in half a decision."""

    _write = staticmethod(os.write)

    def __init__(self, path: str):
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        self.size = self.lines = 0
        self.cut_ok = True

    def write_chunk(self, text: bytes | str) -> None:
        data = memoryview(text if isinstance(text, bytes) else text.encode("utf-8"))
        written = 0
        try:
            while written < len(data):
                written += self._write(self._fd, data[written:])
        except OSError:
            try:
                os.ftruncate(self._fd, self.size)
            except OSError:  # not a regular file (a pipe, a device): nothing can be cut back
                self.cut_ok = written == 0
            raise
        self.size += len(data)
        self.lines += data.obj.count(b"\n")

    def __enter__(self) -> "_Output":
        return self

    def __exit__(self, *exc) -> None:
        os.close(self._fd)


def _run_distributed(o: BatchOptions, workers: int, key: bytes | None, logger) -> Summary:
    try:
        from vedtak.batch.distributed import DistributedRun, IncompleteRun
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise click.UsageError(f"--executor dask needs Dask: pip install 'vedtak[dask]' ({exc})") from None
    if "-" in o.cases:
        raise click.UsageError("--executor dask reads input files on the workers; standard input (-) cannot be "
                               "partitioned (write it to a file first)")
    postgres = o.audit.startswith(("postgresql://", "postgres://"))
    if o.scheduler and not postgres:
        raise click.UsageError("a cluster's workers append to one shared audit log: use a postgresql:// URL "
                               "with --scheduler (a SQLite file serves only the local cluster)")
    if o.out and Path(o.out).exists() and not Path(o.out).is_dir():
        raise click.UsageError(f"--out {o.out} is a file; with --executor dask it names a directory")
    try:
        open_store(o.audit, timeout=o.lock_timeout).close()
    except StoreError as exc:
        say(f"{safe_text(str(exc))}; nothing was decided or recorded. Run the command again when the log is free.",
            style="bold red", err=True)
        sys.exit(EXIT_INCOMPLETE)
    except Exception as exc:
        raise click.ClickException(f"cannot open the audit log {o.audit}: {exc}") from None
    progress = _progress(sys.stderr.isatty() and not o.log_json, "partitions")
    with progress:
        task = progress.add_task("cases", total=None)

        def advance(cases: int, partitions: int) -> None:
            progress.advance(task, cases)
            if logger is not None:
                logger.info("partition_done", cases=cases)

        run = DistributedRun(o.ruleset, o.cases, o.audit, out_dir=o.out, workers=workers, scheduler=o.scheduler,
                             resume=o.resume, chunk_size=o.batch_size, partition_bytes=parse_size(o.partition_size),
                             fmt=o.fmt, pii=(o.pii, key), progress=advance, limits=o.limits,
                             lock_timeout=o.lock_timeout, keep_released=o.keep_released, codec=o.compress)
        try:
            summary = run.run()
        except StoreError as exc:  # the driver's own writes: registering the run, its manifest
            progress.stop()
            say(f"{safe_text(str(exc))}; nothing of the failed write was recorded and the log is consistent. "
                "Run the same command with --resume when the log can be written.", style="bold red", err=True)
            sys.exit(EXIT_INCOMPLETE)
        except IncompleteRun as exc:
            progress.stop()
            _print_summary(exc.summary, err=_stdout_taken(o))
            say(f"run {exc.run_id} is incomplete: {len(exc.missing)} of {run.info.partitions} partitions were not "
                "completed:", style="bold red", err=True)
            for part, why in exc.missing:
                end = f"byte {part.end}" if part.fmt != "json" else "the end"
                say(f"  partition {part.index}: {part.source} from line {part.first_line} (byte {part.start}) to "
                    f"{end}: {why}", err=True)
            say("Run the same command with --resume to decide only those partitions.", err=True)
            sys.exit(EXIT_INCOMPLETE)
    info = run.info
    say(f"run {info.run_id}: {info.partitions} partitions" + (
        f" (resumed: {info.partitions_done_before} were already complete)" if info.resumed_run else "")
        + f"; manifest record {info.manifest_seq}", err=True)
    for cid, n in summary.duplicates_across_partitions[:MAX_SHOWN]:
        say(f"duplicate_case_id: case id {safe_text(cid)} was decided in {n} partitions of this run", err=True)
    return summary


MAX_SHOWN = 50


class _StandardOutput:
    """--out -: the decisions on standard output, one committed chunk at a time (flushed, so that a reader
    sees each chunk once it is recorded). On a terminal, characters that would move the cursor or recolour
    the screen are written as JSON escapes (the same JSON value); piped, the bytes are those of a file."""

    lines = 0
    cut_ok = True  # a pipe cannot be cut back: a failed write may leave part of a line

    def write_chunk(self, text: bytes | str) -> None:
        out = sys.stdout
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if out.isatty():
            text = safe_json(text)
        try:
            buffer = getattr(out, "buffer", None)
            if buffer is not None:
                buffer.write(text.encode("utf-8"))
            else:  # pragma: no cover - a text stream without bytes underneath
                out.write(text)
            out.flush()
        except OSError:
            self.cut_ok = False
            raise
        self.lines += text.count("\n")

    def __enter__(self) -> "_StandardOutput":
        return self

    def __exit__(self, *exc) -> None:
        pass


class _Discard:
    lines = 0
    cut_ok = True

    def write(self, text: str) -> None:
        pass

    def write_chunk(self, text: str) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def _print_summary(s: Summary, err: bool = False) -> None:
    for source, line, code, message in s.problems:
        say(safe_text(f"{source}:{line}: {code}: {message}"), err=True)  # data may hold control characters
    if s.n_rejected > len(s.problems):
        say(f"... and {s.n_rejected - len(s.problems)} more rejected cases (see --summary-json or the log)", err=True)
    if s.rejected.get("already_decided"):
        say(f"{s.rejected['already_decided']:,} cases were decided before in this log and were not decided again: "
            "--resume releases their recorded decisions, --redecide decides them again", err=True)
    table = Table("", "cases", box=None, show_header=False)
    table.add_row("read", f"{s.read:,}")
    table.add_row("decided", f"{s.n_decided:,}")
    for outcome, n in sorted(s.decided.items()):
        table.add_row(cell(f"  {outcome}"), f"{n:,}")
    table.add_row("referred", f"{s.n_referred:,}")
    for (queue, reason), n in sorted(s.referred.items()):
        table.add_row(cell(f"  {queue} ({reason})"), f"{n:,}")
    table.add_row("rejected", f"{s.n_rejected:,}")
    for code, n in sorted(s.rejected.items()):
        table.add_row(cell(f"  {code}"), f"{n:,}")
    if s.resumed:
        table.add_row("(already in the log, not decided again)", f"{s.resumed:,}")
    if s.redecided:
        table.add_row("(decided again, superseding a record)", f"{s.redecided:,}")
    if s.duplicates_across_partitions:
        table.add_row("case ids decided in two partitions", f"{len(s.duplicates_across_partitions):,}")
    rate = s.read / s.seconds if s.seconds else 0.0
    table.add_row("automation rate", f"{100 * s.n_decided / s.read:.1f} %" if s.read else "-")
    table.add_row("time", f"{s.seconds:.2f} s ({rate:,.0f} cases/s)")
    console(err).print(table)
