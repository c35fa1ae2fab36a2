"""Signals and re-decisions: Ctrl-C and SIGTERM end every command with a short message and exit 130 or
143 (never click's "Aborted!" or a traceback, not even while the command imports its modules); an
interrupted `audit export -o` leaves no partial file; SIGTERM stops `vedtak run` between chunks like
Ctrl-C; `decide --audit` does not decide a recorded case again silently (already_decided, or
--redecide superseding the record).
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import vedtak
from vedtak.audit import AuditLog
from vedtak.cli.main import main

cli_main_module = sys.modules["vedtak.cli.main"]  # the module (vedtak.cli.main as an attribute is the group)

from conftest import STUDY_GRANT
from workload import generate
from run_support import DECIDING, head, output_ids, records, signal_once_recording, verifies, write_jsonl

SG = str(STUDY_GRANT)
SCRIPT = Path(sys.executable).parent / "vedtak"  # the console script, as a user starts it


def invoke(*args, **kwargs):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kwargs)





def open_work_items(db) -> list:
    con = sqlite3.connect(str(db))
    try:
        return con.execute("SELECT record_seq FROM audit_work_items WHERE status = 'open' ORDER BY id").fetchall()
    finally:
        con.close()


def in_terminal(args: list[str], delay: float, guard: float = 60.0) -> tuple[int, str]:
    """Run the vedtak console script on a pseudo-terminal and type Ctrl-C after ``delay`` seconds, as a
    user does; (exit code, everything the terminal showed). ``guard`` only catches a hang."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execv(str(SCRIPT), [str(SCRIPT), *args])
    out, started, sent = b"", time.monotonic(), None
    while True:
        if sent is None and time.monotonic() - started > delay:
            os.write(fd, b"\x03")
            sent = time.monotonic()
        ready, _, _ = select.select([fd], [], [], 0.02)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                break
            out += data
        if sent is not None and time.monotonic() - sent > guard:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"vedtak {' '.join(args)} did not stop within {guard} s of Ctrl-C")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")


needs_script = pytest.mark.skipif(not SCRIPT.exists(), reason="the vedtak console script is not installed here")


# -- Ctrl-C and SIGTERM outside a batch --------------------------------------------------------

def test_help_lists_every_exit_code():
    """`vedtak --help` names the exit codes 0, 1, 2, 3 (a run stopped early), 130 and 143."""
    out = invoke("--help").output
    text = " ".join(out.split())
    for part in ("0 ok", "1 findings", "2 usage errors", "3 a run stopped early", "130 interrupted (Ctrl-C)",
                 "143 terminated (SIGTERM)"):
        assert part in text, part


def test_ctrl_c_in_any_command_is_interrupted_and_exit_130(monkeypatch):
    """A KeyboardInterrupt while a command works (here while `check` loads a ruleset) prints
    "interrupted" and exits 130: not click's "Aborted!" with exit 1, and no traceback."""
    def interrupted(path):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli_main_module, "load_ruleset", interrupted)
    result = CliRunner().invoke(main, ["check", SG])
    assert result.exit_code == 130
    assert "interrupted" in result.output and "Aborted" not in result.output
    assert not isinstance(result.exception, KeyboardInterrupt)


def test_sigterm_in_any_command_is_terminated_and_exit_143(monkeypatch):
    """A real SIGTERM while a command works ends it with "terminated" and exit 143 (its `finally`
    blocks run); the process's own SIGTERM handler is back in place afterwards."""
    before = signal.getsignal(signal.SIGTERM)

    def terminated(path):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises as soon as the signal is delivered
        raise AssertionError("SIGTERM was not handled")
    monkeypatch.setattr(cli_main_module, "load_ruleset", terminated)
    result = CliRunner().invoke(main, ["test", SG])
    assert result.exit_code == 143, result.output
    assert "terminated" in result.output and "Traceback" not in result.output
    assert signal.getsignal(signal.SIGTERM) is before


@needs_script
def test_ctrl_c_while_decide_waits_on_standard_input_exits_130(tmp_path):
    """The reviewer's reproduction: `vedtak decide RULESET -` on a terminal, waiting for the case;
    Ctrl-C at varied moments (while the command starts and imports its modules, and while it waits)
    prints "interrupted" and exits 130, never "Aborted!" or a traceback."""
    for delay in (0.05, 0.15, 0.3, 1.5):
        code, shown = in_terminal(["decide", SG, "-"], delay)
        assert code == 130, (delay, shown[-2000:])
        assert "interrupted" in shown and "Aborted" not in shown and "Traceback" not in shown, shown[-2000:]


def _log_of(tmp_path, n: int):
    db = tmp_path / "k.db"
    path = write_jsonl(tmp_path / "cases.jsonl", generate(n, seed=41))
    assert invoke("run", SG, path, "--audit", db, "--workers", 1).exit_code in (0, 1)
    return db


def test_an_interrupted_export_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    """Ctrl-C in the middle of `audit export -o FILE` exits 130 with "interrupted"; FILE keeps what it
    held before (no partial export replaces it) and no temporary file is left beside it. Without an
    interruption the export is renamed into place whole."""
    db = _log_of(tmp_path, 60)
    out = tmp_path / "ex.jsonl"
    out.write_text("the previous export\n")
    from vedtak.audit.store import AuditStore
    real = AuditStore.records

    def records_then_interrupt(self, case_id=None):
        for i, record in enumerate(real(self, case_id)):
            if i == 25:
                raise KeyboardInterrupt
            yield record
    monkeypatch.setattr(AuditStore, "records", records_then_interrupt)
    result = CliRunner().invoke(main, ["audit", "export", str(db), "-o", str(out)])
    assert result.exit_code == 130 and "interrupted" in result.output and "Aborted" not in result.output
    assert out.read_text() == "the previous export\n"
    assert [p.name for p in tmp_path.iterdir() if "ex.jsonl" in p.name] == ["ex.jsonl"]
    monkeypatch.setattr(AuditStore, "records", real)
    whole = invoke("audit", "export", db, "-o", out)
    assert whole.exit_code == 0
    assert len(out.read_text().splitlines()) == len(records(db))
    assert [p.name for p in tmp_path.iterdir() if "ex.jsonl" in p.name] == ["ex.jsonl"]


def test_an_export_to_a_device_is_written_in_place(tmp_path):
    """-o naming something that is not a regular file (/dev/null) is written to, never replaced by a rename."""
    db = _log_of(tmp_path, 10)
    assert invoke("audit", "export", db, "-o", os.devnull).exit_code == 0
    assert Path(os.devnull).is_char_device()


@needs_script
def test_ctrl_c_during_an_export_on_a_terminal_leaves_no_partial_file(tmp_path):
    """The reviewer's reproduction on a real terminal: Ctrl-C while `audit export k.db -o ex.jsonl`
    writes; exit 130, "interrupted", no ex.jsonl and no temporary file (or, when the export finished
    first, an export of every record)."""
    db = _log_of(tmp_path, 3000)
    out = tmp_path / "ex.jsonl"
    code, shown = in_terminal(["audit", "export", str(db), "-o", str(out)], 0.6)
    assert "Traceback" not in shown and "Aborted" not in shown, shown[-2000:]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert leftovers == []
    if code == 0:  # finished before the Ctrl-C
        assert len(out.read_text().splitlines()) == len(records(db))
    else:
        assert code == 130 and "interrupted" in shown
        assert not out.exists()


# -- SIGTERM during a batch --------------------------------------------------------------------



@pytest.mark.parametrize("to_group", [False, True], ids=["to-the-process", "to-the-process-group"])
def test_sigterm_during_a_two_worker_run_stops_cleanly_and_resume_completes(tmp_path, to_group):
    """SIGTERM (to the main process, as `kill -TERM PID` sends it, or to the whole process group, as a
    service manager does) at varied moments of a two-worker run: exit 143, "terminated", a hint to
    --resume, no traceback from the workers or the main process, no process left behind; the log
    verifies and every output line is recorded; --resume then records every case exactly once."""
    cases = generate(20000, seed=43)
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    db, out = tmp_path / "t.db", tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "vedtak.cli", "run", SG, str(path), "--audit", str(db), "--out", str(out),
           "--workers", "2", "--batch-size", "500"]
    stopped = 0
    for attempt, pause in enumerate((0.0, 0.3, 0.1)):
        returncode, err = signal_once_recording(cmd + (["--resume"] if attempt else []), lambda: head(db),
                                                head(db), signal.SIGTERM, pause, to_group=to_group)
        assert "Traceback" not in err and "Error" not in err, err[-2000:]
        if returncode in (0, -signal.SIGTERM) and "terminated" not in err:
            # finished before the signal arrived; one that lands after the command returned, when the
            # default action is back, ends the process as it would any program: every case recorded
            assert sorted(r.case_id for r in records(db) if r.kind in DECIDING) == \
                sorted(c["case_id"] for c in cases), err[-2000:]
            break
        assert returncode == 143, err[-2000:]
        assert "terminated" in err and "--resume" in err
        stopped += 1
        assert verifies(db)
        ids = [r.case_id for r in records(db) if r.kind in DECIDING]
        assert len(ids) == len(set(ids)), "a case was recorded twice"
        assert set(output_ids(out)) <= set(ids), "an output line without its audit record"
    assert stopped >= 1
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert verifies(db)
    ids = [r.case_id for r in records(db) if r.kind in DECIDING]
    assert sorted(ids) == sorted(c["case_id"] for c in cases)
    assert output_ids(out) == [c["case_id"] for c in cases]


# -- decide --audit on a case already recorded ------------------------------------------------

def _batch_then_case(tmp_path, status: str):
    """A log holding the study-grant batch, and a file with one of its cases that was ``status``."""
    cases = generate(40, seed=44)
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    db = tmp_path / "e7.db"
    assert invoke("run", SG, path, "--audit", db, "--workers", 1).exit_code == 0
    kind = {"decided": "decision", "referred": "referral"}[status]
    record = next(r for r in records(db) if r.kind == kind)
    case = next(c for c in cases if str(c["case_id"]) == str(record.case_id))
    case_file = tmp_path / "c1.json"
    case_file.write_text(json.dumps(case))
    return db, case_file, record


@pytest.mark.parametrize("status", ["decided", "referred"])
def test_decide_audit_rejects_a_case_already_recorded_naming_the_record(tmp_path, status):
    """The reviewer's reproduction: the batch into e7.db, then `decide RULESET c1.json --audit e7.db`
    with one of its cases: rejected as already_decided naming the earlier record, exit 1; the log gains
    only that rejection (no second decision, no second open work item) and verifies."""
    db, case_file, record = _batch_then_case(tmp_path, status)
    n, items = len(records(db)), open_work_items(db)
    result = invoke("decide", SG, case_file, "--audit", db)
    assert result.exit_code == 1, result.output
    assert (f"case id {record.case_id} was {status} before in this log (record {record.seq}); "
            "it is not decided again") in result.output
    after = records(db)
    assert len(after) == n + 1 and after[-1].kind == "rejection"
    assert [r.case_id for r in after if r.kind in DECIDING].count(record.case_id) == 1
    assert open_work_items(db) == items
    assert verifies(db)
    as_json = invoke("decide", SG, case_file, "--audit", db, "--json")
    assert json.loads(as_json.output)["errors"][0]["code"] == "already_decided"


def test_decide_redecide_supersedes_the_record_and_closes_its_work_item(tmp_path):
    """`decide --audit --redecide` on a referred case records a new decision that names the record it
    supersedes (in the log, the JSON output and the text), closes the earlier record's open work item
    and opens the new one's; a second --redecide supersedes the newest record. The log verifies."""
    db, case_file, record = _batch_then_case(tmp_path, "referred")
    assert (record.seq,) in open_work_items(db)
    result = invoke("decide", SG, case_file, "--audit", db, "--redecide", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["supersedes"] == record.seq and shown["status"] == "referred"
    newest = records(db)[-1]
    assert newest.kind == "referral" and json.loads(newest.to_dict()["decision"] if isinstance(
        newest.to_dict()["decision"], str) else json.dumps(newest.to_dict()["decision"]))["supersedes"] == record.seq
    items = open_work_items(db)
    assert (record.seq,) not in items and (newest.seq,) in items
    again = invoke("decide", SG, case_file, "--audit", db, "--redecide")
    assert again.exit_code == 0 and f"Supersedes record {newest.seq}" in again.output
    assert verifies(db)


def test_redecide_needs_an_audit_log():
    """--redecide without --audit is a usage error (exit 2): there is no record to supersede."""
    result = CliRunner().invoke(main, ["decide", SG, "-", "--redecide"], input="{}")
    assert result.exit_code == 2 and "--redecide supersedes a decision recorded in an audit log" in result.output


def test_decide_audit_records_a_new_case_id_once(tmp_path):
    """A case id the log has not seen is decided and recorded as before, one record."""
    db = tmp_path / "n.db"
    case = generate(1, seed=45)[0]
    (tmp_path / "c.json").write_text(json.dumps(case))
    result = invoke("decide", SG, tmp_path / "c.json", "--audit", db)
    assert result.exit_code == 0 and "already_decided" not in result.output
    assert [r.case_id for r in records(db)] == [case["case_id"]]


def test_the_library_decide_is_unchanged_and_decide_once_is_opt_in(tmp_path):
    """AuditLog.decide still records every call (the library's contract); AuditLog.decide_once rejects a
    repeat as already_decided and, with redecide, returns the record it superseded."""
    plan = vedtak.compile(vedtak.load(SG))
    case = generate(1, seed=46)[0]
    with AuditLog.open(str(tmp_path / "l.db")) as log:
        first = log.decide(plan, case)
        log.decide(plan, case)
        assert len(list(log.store.records())) == 2
        repeat, superseded = log.decide_once(plan, case)
        assert repeat.status == "rejected" and repeat.errors[0].code == "already_decided" and superseded is None
        again, superseded = log.decide_once(plan, case, redecide=True)
        assert again.status == first.status and superseded is not None and superseded.seq == 2
