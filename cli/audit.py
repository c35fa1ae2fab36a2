"""Click commands for the audit log: audit verify/show/export/checkpoint/keygen, and replay."""

from __future__ import annotations

import heapq
import json
import os
import sys
from contextlib import nullcontext
from decimal import Decimal
from pathlib import Path

import click
from rich.table import Table

import vedtak
from vedtak.audit.log import open_store
from vedtak.audit.record import record_ref
from vedtak.audit.verify import (KeyFileError, generate_key, load_checkpoint, load_private_key, load_public_key,
                                 sign_checkpoint, verify)
from vedtak.language.overlay import WhatIfError, parse_setting
from vedtak.audit.replay import ReplayScopeError
from vedtak.audit.replay import replay as replay_log

from .common import (EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, cell, check_log_path, check_output, console, echo_json,
                     given, load_ruleset, log_files, safe_json, safe_text, say, write_output)


def _open(db: str, *, read_only: bool = False):
    """An existing audit log; a path that is not one (missing, a directory, empty, another file) is a usage error.
    ``read_only`` for commands that only read: opening writes nothing and waits for no writer."""
    check_log_path("DB", db, existing=True)
    try:
        return open_store(db, read_only=read_only)
    except Exception as exc:  # a locked, corrupt or unreachable store: a message, not a traceback
        raise click.ClickException(f"cannot open the audit log {db}: {exc}") from None


@click.group()
def audit() -> None:
    """Verify, inspect and export an audit log (a SQLite file or a postgresql:// URL)."""


@audit.command("verify")
@click.argument("db")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False),
              help="A signed checkpoint (from `vedtak audit checkpoint`): detects a truncated tail.")
@click.option("--public-key", type=click.Path(exists=True, dir_okay=False),
              help="The public key (PEM) the checkpoint was signed with.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_cmd(db: str, checkpoint: str | None, public_key: str | None, as_json: bool) -> None:
    """Recompute the hash chain and name the first record that is not as it was written.

    Finds edited, deleted, inserted and reordered records, a head that does not match the
    last record, and stored rulesets whose source no longer matches its SHA-256 — on the
    main chain and on every partition chain of a distributed run, whose manifest must
    match its partitions' record counts and last hashes. Exit 1 if anything is wrong.

    Example: vedtak audit verify decisions.db --checkpoint head.json --public-key audit.pub
    """
    if checkpoint and not public_key:
        raise click.UsageError("--checkpoint needs --public-key")
    if public_key and not checkpoint:
        raise click.UsageError("--public-key verifies a --checkpoint: add --checkpoint FILE")
    cp = _read_key("--checkpoint", checkpoint, load_checkpoint)[1] if checkpoint else None
    key = Path(public_key).read_bytes() if public_key else None
    if key is not None:
        _read_key("--public-key", public_key, load_public_key)
    with _open(db, read_only=True) as store:
        report = verify(store, checkpoint=cp, public_key=key)
    if as_json:
        echo_json(json.dumps(report.to_dict(), sort_keys=True))
    elif report.ok:
        extra = f"; checkpoint at record {cp['seq']} verified" if cp else ""
        chains = (f"; {report.chains} partition chains match the manifests of {report.runs} runs"
                  if report.chains else "")
        items = (f"; {report.work_items} work items match their records and {report.queue_events} queue events"
                 if report.work_items or report.queue_events else "")
        say(f"ok: {report.records} records, the chain verifies (head {report.head[0]}, "
            f"{report.head[1][:16]}){chains}{items}{extra}", style="green")
    else:
        for p in sorted(report.problems):
            say(f"{p.where}: {p.kind}: {p.message}")
        first = f"; first bad record: {report.first_bad}" if report.first_bad is not None else ""
        say(f"FAILED: {len(report.problems)} problem{'s' if len(report.problems) != 1 else ''}{first}",
            style="bold red")
    sys.exit(EXIT_OK if report.ok else EXIT_FINDINGS)


def _case_ids(case_id: str) -> list:
    ids: list = [case_id]
    if case_id.lstrip("-").isdigit():
        ids.append(int(case_id))
    return ids


@audit.command("show")
@click.argument("db")
@click.argument("case_id", required=False)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1),
              help="Without CASE_ID: how many latest records to list.")
def show(db: str, case_id: str | None, limit: int) -> None:
    """Show a case's recorded decisions explained, or list the latest records.

    Example: vedtak audit show decisions.db A-1001
    """
    if case_id is not None and given(click.get_current_context(), "limit"):
        raise click.UsageError("--limit sets how many latest records to list without CASE_ID; a case shows all "
                               "its records")
    with _open(db, read_only=True) as store:
        if case_id is None:
            seq, _ = store.head()
            from vedtak.audit.replay import label

            from .tables import print_table  # a table on a terminal, full tab-separated lines for a pipe
            rows = []
            for record in store.records_from(max(1, seq - limit + 1)):
                d = json.loads(record.decision)
                result = label(d)
                if d.get("status") == "rejected":  # what was wrong, as codes: invalid_type, already_decided, ...
                    codes = sorted({str(e.get("code")) for e in d.get("errors") or [] if isinstance(e, dict)})
                    result += f": {', '.join(codes)}" if codes else ""
                rows.append((record.seq, record.recorded_at, record.kind, record.case_id, result,
                             "" if d.get("rule") is None else str(d["rule"])))
            print_table(("seq", "recorded at", "kind", "case", "result", "rule"), rows)
            return
        records = [r for cid in _case_ids(case_id) for r in store.records(cid)]
        if not records:
            say(f"no record of case {case_id} in {db}", style="bold red", err=True)
            sys.exit(EXIT_FINDINGS)
        from vedtak.audit.replay import explain_record
        for record in _chain_order(records):
            hashes = (f"released JSON sha256 {record.released_sha256[:16]}, block hash {record.hash[:16]}"
                      if getattr(record, "record_version", 1) == 2 else f"hash {record.hash[:16]}")
            say(f"Record {record.ref} ({record.kind}, recorded {record.recorded_at}, {hashes})", style="bold")
            for line in explain_record(store, record).split("\n"):  # not splitlines: data may hold U+2028
                say("  " + line)


def _chain_order(records: list) -> list:
    """Records in the order their chains hold them (each chain by sequence number), the chains merged
    by time: a record's own date never moves it before the records it follows (a back-dated one too)."""
    by_chain: dict[str, list] = {}
    for record in records:
        by_chain.setdefault(record.chain or "", []).append(record)
    chains = [sorted(found, key=lambda r: r.seq) for _, found in sorted(by_chain.items())]
    return list(heapq.merge(*chains, key=lambda r: r.recorded_at))


@audit.command("export")
@click.argument("db")
@click.option("-o", "--out", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              help="Where to write the JSON Lines (default: standard output).")
def export(db: str, out: str) -> None:
    """Write every record as one JSON object per line, with its hash.

    Example: vedtak audit export decisions.db -o decisions.jsonl
    """
    if out != "-":
        check_output("-o", out, log_files(db))
    with _open(db, read_only=True) as store:
        target, part = _export_paths(out)
        try:  # a full disk is a message, also when it shows only as the file is closed
            with (_export_file(part) if part else open(target, "w", encoding="utf-8") if out != "-"
                  else nullcontext(sys.stdout)) as sink:
                for record in store.records():
                    sink.write(safe_json(json.dumps(record.to_dict(), sort_keys=True, separators=(",", ":"),
                                                    ensure_ascii=False)))
                    sink.write("\n")
            if part:
                os.replace(part, target)
                part = None
        except OSError as exc:
            if out == "-" and isinstance(exc, BrokenPipeError):
                raise  # the reader went away (| head): the command group ends quietly
            raise click.ClickException(f"cannot write -o {safe_text(out)}: {exc.strerror or exc}; "
                                       + ("nothing was written" if part else "the output may be partial")) from None
        finally:  # Ctrl-C, SIGTERM or a fault: no partial export is left, and a file -o named is untouched
            if part:
                try:
                    os.unlink(part)
                except OSError:
                    pass


def _export_paths(out: str) -> tuple[str, str | None]:
    """Where an export goes, and the temporary file beside it that is renamed into place once complete
    (None: written as it goes, to standard output or to a device or pipe that cannot be replaced)."""
    if out == "-":
        return out, None
    target = os.path.realpath(out)  # a symbolic link's target is replaced, not the link
    if os.path.exists(target) and not os.path.isfile(target):
        return target, None
    folder, name = os.path.split(target)
    return target, os.path.join(folder, f".{name}.{os.getpid()}.part")


def _export_file(path: str):
    """A new file only this export writes: created, never opened through a link another process made."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "w", encoding="utf-8")


def _read_key(option: str, path: str, load):
    """A key or checkpoint file's bytes and what they load as, or a usage error saying what the file is instead."""
    try:
        data = Path(path).read_bytes()
        return data, load(data)
    except KeyFileError as exc:
        raise click.UsageError(f"{option} {safe_text(path)}: {exc}") from None
    except OSError as exc:
        raise click.UsageError(f"{option} {safe_text(path)}: cannot read it: {exc.strerror or exc}") from None


@audit.command("keygen")
@click.option("--out", "prefix", required=True, help="Writes PREFIX.key (private, keep it secret) and PREFIX.pub.")
def keygen(prefix: str) -> None:
    """Make an Ed25519 key pair for signing checkpoints of the log's head.

    Example: vedtak audit keygen --out audit
    """
    key_path, pub_path = Path(prefix + ".key"), Path(prefix + ".pub")
    if prefix.endswith(("/", os.sep)) or Path(prefix).is_dir():
        raise click.UsageError(f"--out {safe_text(prefix)} is a directory; give a prefix such as "
                               f"{safe_text(os.path.join(prefix, 'audit'))}")
    if prefix.endswith((".key", ".pub")):
        raise click.UsageError(f"--out {safe_text(prefix)}: give the prefix alone; keygen adds .key and .pub")
    if os.path.lexists(prefix):
        raise click.UsageError(f"--out {safe_text(prefix)} is an existing file; give a new prefix "
                               "(keygen writes PREFIX.key and PREFIX.pub)")
    for path in (key_path, pub_path):
        if path.exists() or path.is_symlink():
            raise click.UsageError(f"{safe_text(path)} exists; not overwriting a key (choose another --out)")
        check_output("--out", str(path))
    private, public = generate_key()
    try:  # created private from the start (never readable by others, not even for a moment), never over a file
        with os.fdopen(os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(private)
        with open(pub_path, "xb") as f:
            f.write(public)
    except OSError as exc:
        raise click.ClickException(f"cannot write the key pair {safe_text(prefix)}: {exc.strerror or exc}") from None
    say(f"wrote {key_path} (private) and {pub_path} (public)")


@audit.command("checkpoint")
@click.argument("db")
@click.option("--key", required=True, type=click.Path(exists=True, dir_okay=False), help="The private key (PEM).")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the signed checkpoint; keep it outside the log.")
def checkpoint(db: str, key: str, out: str) -> None:
    """Sign the log's current heads, so that a later truncation of a tail is detected: the main chain's,
    every partition chain's and the queue events'.

    Example: vedtak audit checkpoint decisions.db --key audit.key -o head.json
    """
    private = _read_key("--key", key, load_private_key)[0]
    check_output("-o", out, log_files(db) + [("the --key file", key)])
    with _open(db, read_only=True) as store:
        cp = sign_checkpoint(store, private)
    write_output("-o", out, json.dumps(cp, sort_keys=True, indent=2) + "\n")
    also = [f"{len(cp['chains'])} partition chain heads"] if cp.get("chains") else []
    also += [f"queue event {cp['queue']['id']}"] if cp.get("queue") else []
    say(f"signed record {cp['seq']} ({cp['hash'][:16]})" + (f" with {' and '.join(also)}" if also else "")
        + f" into {out}")


@click.command("replay")
@click.argument("db")
@click.option("--against", "ruleset", type=click.Path(exists=True),
              help="Impact analysis: decide the recorded cases under this ruleset instead "
                   "(the same ruleset id; only its records are replayed).")
@click.option("--ruleset", "ruleset_id", metavar="ID",
              help="Replay only the records of this ruleset id (in a log that holds several).")
@click.option("--set", "settings", multiple=True, metavar="NAME=VALUE",
              help="What-if: decide the recorded cases with parameter NAME replaced by VALUE for all dates "
                   "(a number, date, true/false or text), in every stored ruleset that has it. Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(0),
              help="How many changed cases to list in text output.")
def replay(db: str, ruleset: str | None, ruleset_id: str | None, as_json: bool, limit: int,
           settings: tuple[str, ...] = ()) -> None:
    """Re-decide every recorded case from the log alone and report each difference.

    Without --against, a clean log replays with zero differences (exit 0; 1 otherwise).
    With --against, shows what a rule change would alter: outcome transitions, rules that
    changed hands, value deltas, and the changed cases. --against must be a version of a
    ruleset the log holds (another id is a usage error, exit 2), and only that ruleset's
    records are replayed; --ruleset ID limits a plain replay the same way. --set NAME=VALUE
    is a what-if of one parameter, reported as --against is (exit 0).

    Example: vedtak replay decisions.db --against rulesets/what-if-study-grant-income-limit

    What-if: vedtak replay decisions.db --set INCOME_LIMIT=250000
    """
    if as_json and given(click.get_current_context(), "limit"):
        raise click.UsageError("--limit shortens the text report; --json lists every changed case")
    what_if = _settings(settings)
    if what_if and ruleset:
        raise click.UsageError("--against replays under another ruleset and --set changes the stored ones: "
                               "choose one (an overlay file can replace parameters too)")
    plan = None
    if ruleset:
        rs = load_ruleset(ruleset)
        if rs is None:
            sys.exit(EXIT_USAGE)
        plan = vedtak.compile(rs)
    with _open(db, read_only=True) as store:
        try:
            report = replay_log(store, against=plan, ruleset_id=ruleset_id, settings=what_if)
        except (ReplayScopeError, WhatIfError) as exc:
            raise click.UsageError(str(exc)) from None
    if as_json:
        echo_json(json.dumps(report.to_dict(), sort_keys=True, ensure_ascii=False))
    else:
        _print_replay(report, limit)
    if plan is not None or what_if:
        sys.exit(EXIT_OK)
    sys.exit(EXIT_OK if report.ok else EXIT_FINDINGS)


def _settings(specs: tuple[str, ...]) -> dict:
    """The --set options as parameter name -> value (a usage error for a malformed or repeated one)."""
    out: dict = {}
    for spec in specs:
        try:
            name, value = parse_setting(spec)
        except WhatIfError as exc:
            raise click.BadParameter(str(exc), param_hint="--set") from None
        if name in out:
            raise click.BadParameter(f"{name} is set twice", param_hint="--set")
        out[name] = value
    return out


def _print_replay(report, limit: int) -> None:
    what = f"against {report.against}" if report.against else "with the rulesets stored in the log"
    if report.ruleset and not report.against:
        what = f"of ruleset {report.ruleset} {what}"
    say(f"replayed {report.replayed} records {what}: {len(report.differences)} "
        f"{'changed' if report.against else 'differences'}, {len(report.unreproducible)} not reproducible"
        + (f", {report.skipped_human} human decisions not re-evaluated" if report.skipped_human else "")
        + "".join(f", {n} {one if n == 1 else many} not re-evaluated" for n, one, many in (
            (report.skipped_unreadable, "unreadable line", "unreadable lines"),
            (report.skipped_repeated, "repeated case id", "repeated case ids"),
            (report.skipped_already_decided, "rejection of a case already decided earlier",
             "rejections of cases already decided earlier")) if n)
        + (f", {report.skipped_other_rulesets} records of other rulesets left out" if report.skipped_other_rulesets
           else ""),
        style="bold" if report.ok or report.against else "bold red")
    if report.against:
        table = Table("recorded", "under the new ruleset", "cases", box=None)
        for (a, b), n in sorted(report.transitions.items(), key=lambda x: (-x[1], x[0])):
            table.add_row(cell(a), cell(b if b != a else "(same)"), str(n))
        console().print(table)
        if report.rule_changes:
            rules = Table("rule before", "rule after", "cases", box=None)
            for (a, b), n in sorted(report.rule_changes.items(), key=lambda x: (-x[1], str(x[0]))):
                rules.add_row(cell(str(a)), cell(str(b)), str(n))
            console().print(rules)
        for name, (n, total) in sorted(report.value_deltas.items()):
            say(f"value {name}: changed in {n} cases, total change {total:+}" if isinstance(total, Decimal)
                else f"value {name}: changed in {n} cases")
    for d in report.differences[:limit]:
        changes = "; ".join(f"{k}: {json.dumps(a, ensure_ascii=False)} -> {json.dumps(b, ensure_ascii=False)}"
                            for k, a, b in d.changes)
        say(f"  record {d.ref}, case {d.case_id}: {changes}")
    if len(report.differences) > limit:
        say(f"  ... and {len(report.differences) - limit} more (use --json for all)")
    for seq, cid, why, chain in report.unreproducible[:limit]:
        say(f"  record {record_ref(seq, chain)}, case {cid}: not reproducible: {why}")
