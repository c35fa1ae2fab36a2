"""`vedtak run` under operator slips and faults: Ctrl-C, the same batch run twice or twice at once,
a full disk under the log or the output, and a log locked longer than the timeout.

Each fault ends with a clear message and an exit code (130 for Ctrl-C, 3 for a full or locked
log or output), never a traceback; the log verifies, and ``--resume`` finishes the run with
every case recorded exactly once.
"""

from __future__ import annotations

import errno
import json
import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import time
import uuid

import pytest
from click.testing import CliRunner

from vedtak.audit import AuditLog, open_store
from vedtak.audit.sqlite import SQLiteStore
from vedtak.audit.verify import verify
from vedtak.batch.runner import Batch, BatchStopped
from vedtak.cli import batch as cli_batch
from vedtak.cli.main import main

from conftest import STUDY_GRANT
from workload import generate
from run_support import (DECIDING, deciding_ids, head, output_ids, records, signal_once_recording, verifies,
                         write_jsonl)

SG = str(STUDY_GRANT)


def run(*args, input=None):
    return CliRunner().invoke(main, ["run", SG, *[str(a) for a in args]], input=input, catch_exceptions=False)


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "vedtak.cli", "run", SG, *[str(a) for a in args]]








# -- Ctrl-C ------------------------------------------------------------------------------------

def test_ctrl_c_during_a_two_worker_run_stops_cleanly_and_resume_completes(tmp_path):
    """SIGINT to the process group (as a terminal sends it) at five varied moments of a two-worker run
    (the first run and interrupted resumes): each stops with exit 130, no worker traceback, a log that
    verifies, an output of complete lines all recorded, and a hint to --resume; the last --resume
    records every case exactly once and writes the whole output in input order."""
    cases = generate(80000, seed=11)
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    db, out = tmp_path / "c.db", tmp_path / "out.jsonl"
    cmd = cli(path, "--audit", db, "--out", out, "--workers", 2, "--batch-size", 500)
    rng = random.Random(13)
    interrupted = 0
    for attempt in range(5):
        returncode, err = signal_once_recording(cmd + (["--resume"] if attempt else []), lambda: head(db),
                                                head(db), signal.SIGINT, rng.uniform(0, 0.6))
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-2000:]
        if returncode in (0, -signal.SIGINT) and "interrupted" not in err:
            # finished before the signal arrived; one that lands in the interpreter's last moments,
            # after Python has put back the default action, ends the process as it would any program
            # (a shell reports 130 for both): then the run must have recorded every case
            assert sorted(deciding_ids(db)) == sorted(c["case_id"] for c in cases), err[-2000:]
            break
        assert returncode == 130, err[-2000:]
        assert "--resume" in err
        interrupted += 1
        assert verifies(db)
        ids = deciding_ids(db)
        assert len(ids) == len(set(ids)), "a case was recorded twice"
        assert set(output_ids(out)) <= set(ids), "an output line without its audit record"
    assert interrupted >= 3
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert verifies(db)
    ids = deciding_ids(db)
    assert sorted(ids) == sorted(c["case_id"] for c in cases)
    assert [r.kind for r in records(db)].count("rejection") == 0
    assert output_ids(out) == [c["case_id"] for c in cases]


def test_ctrl_c_while_waiting_for_standard_input_stops_at_once(tmp_path):
    """A run reading a stream that has gone quiet (standard input kept open) stops on one Ctrl-C,
    exit 130, with every complete chunk recorded and written out; no traceback."""
    db, out = tmp_path / "s.db", tmp_path / "out.jsonl"
    cases = generate(250, seed=12)
    proc = subprocess.Popen(cli("-", "--format", "jsonl", "--audit", db, "--out", out, "--workers", 1,
                                "--batch-size", 100), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    proc.stdin.write("".join(json.dumps(c) + "\n" for c in cases))
    proc.stdin.flush()
    waited = time.monotonic()
    while head(db) < 200 and time.monotonic() - waited < 120:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)  # a hang guard, not a speed threshold
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("vedtak run did not stop within 60 s of Ctrl-C")
    assert proc.returncode == 130 and "Traceback" not in err
    assert "interrupted after 200 cases" in err
    assert output_ids(out) == deciding_ids(db) == [c["case_id"] for c in cases[:200]]
    assert verifies(db)


# -- the same batch twice ----------------------------------------------------------------------

def work_items(db) -> list:
    con = sqlite3.connect(str(db))
    try:
        return con.execute("SELECT record_seq, status FROM audit_work_items WHERE kind = 'referral' "
                           "ORDER BY id").fetchall()
    finally:
        con.close()


def test_a_second_run_of_the_same_batch_rejects_every_case_as_already_decided(tmp_path):
    """Run twice into one log without --resume: the second run decides nothing, rejects each case
    with already_decided naming its earlier record, opens no second work item, exits 1 and says how to
    release (--resume) or decide again (--redecide); the log verifies and replays with no difference."""
    cases = generate(300, seed=21)
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    db = tmp_path / "a.db"
    first = run(path, "--audit", db, "--workers", 1, "--out", tmp_path / "1.jsonl")
    assert first.exit_code == 0, first.output
    items = work_items(db)
    assert items and all(status == "open" for _, status in items)
    seq_of = {r.case_id: r.seq for r in records(db)}
    second = run(path, "--audit", db, "--workers", 1, "--out", tmp_path / "2.jsonl", "--summary-json",
                 tmp_path / "s.json")
    assert second.exit_code == 1
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["rejected_by_error"] == {"already_decided": 300} and summary["decided"] == 0
    assert "--resume releases their recorded decisions, --redecide decides them again" in second.output
    first_case = cases[0]["case_id"]
    assert (f"already_decided: case_id: case id {first_case} was "
            f"{'decided' if records(db)[0].kind == 'decision' else 'referred'} before in this log "
            f"(record {seq_of[first_case]}); it is not decided again") in second.output
    for line in (tmp_path / "2.jsonl").read_text().splitlines():
        d = json.loads(line)
        assert d["status"] == "rejected" and d["errors"][0]["code"] == "already_decided"
        assert f"(record {seq_of[d['case_id']]})" in d["errors"][0]["message"]
    assert work_items(db) == items, "a second work item was opened for a recorded case"
    assert sorted(deciding_ids(db)) == sorted(c["case_id"] for c in cases)
    assert verifies(db)
    replayed = CliRunner().invoke(main, ["replay", str(db), "--json"], catch_exceptions=False)
    assert replayed.exit_code == 0 and json.loads(replayed.output)["differences"] == 0


def test_resume_after_a_complete_run_releases_every_recorded_decision(tmp_path):
    """--resume over a complete run records nothing and writes the same output as the first run."""
    path = write_jsonl(tmp_path / "cases.jsonl", generate(200, seed=22))
    db = tmp_path / "r.db"
    assert run(path, "--audit", db, "--workers", 1, "--out", tmp_path / "1.jsonl").exit_code == 0
    n = len(records(db))
    again = run(path, "--audit", db, "--workers", 1, "--out", tmp_path / "2.jsonl", "--resume")
    assert again.exit_code == 0 and "(already in the log, not decided again)" in again.output
    assert len(records(db)) == n
    assert (tmp_path / "1.jsonl").read_text() == (tmp_path / "2.jsonl").read_text()


def test_resume_releases_repeated_lines_as_first_recorded_and_rejects_a_changed_case(tmp_path):
    """--resume over a finished run whose input repeats a line: the first copy is released as its
    decision and the repeat as its duplicate_case_id rejection, exactly as first written, with nothing
    recorded again; a case whose data changed since it was decided is an already_decided rejection."""
    cases = generate(50, seed=26)
    lines = cases[:10] + [cases[3]] + cases[10:]
    path = write_jsonl(tmp_path / "cases.jsonl", lines)
    db = tmp_path / "rep.db"
    assert run(path, "--audit", db, "--workers", 1, "--batch-size", 7, "--out", tmp_path / "1.jsonl").exit_code == 1
    n = len(records(db))
    again = run(path, "--audit", db, "--workers", 1, "--batch-size", 7, "--out", tmp_path / "2.jsonl", "--resume")
    assert again.exit_code == 1
    assert len(records(db)) == n
    assert (tmp_path / "1.jsonl").read_text() == (tmp_path / "2.jsonl").read_text()
    changed = [dict(c, income=c["income"] + 1) if i == 5 else c for i, c in enumerate(cases)]
    third = run(write_jsonl(tmp_path / "changed.jsonl", changed), "--audit", db, "--workers", 1, "--resume",
                "--summary-json", tmp_path / "s.json")
    summary = json.loads((tmp_path / "s.json").read_text())
    assert third.exit_code == 1 and summary["rejected_by_error"] == {"already_decided": 1}
    assert summary["resumed_from_log"] == len(cases) - 1
    assert len(records(db)) == n + 1


def test_redecide_records_decisions_that_name_the_records_they_supersede(tmp_path):
    """--redecide decides recorded cases again; each new record's decision names the record it
    supersedes, the superseded referral's work item is closed as superseded (one open item per
    case), and --redecide with --resume is a usage error."""
    cases = generate(200, seed=23)
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    db = tmp_path / "d.db"
    assert run(path, "--audit", db, "--workers", 1).exit_code == 0
    first = {r.case_id: r.seq for r in records(db)}
    again = run(path, "--audit", db, "--workers", 1, "--redecide", "--out", tmp_path / "2.jsonl")
    assert again.exit_code == 0, again.output
    assert "(decided again, superseding a record)" in again.output
    newer = [r for r in records(db) if r.seq > len(cases)]
    assert len(newer) == len(cases)
    for r in newer:
        assert json.loads(r.decision)["supersedes"] == first[r.case_id]
    for line in (tmp_path / "2.jsonl").read_text().splitlines():
        d = json.loads(line)
        assert d["supersedes"] == first[d["case_id"]]
    items = work_items(db)
    open_items = [seq for seq, status in items if status == "open"]
    assert all(seq > len(cases) for seq in open_items)
    assert sorted(seq for seq, status in items if status == "superseded") == sorted(
        seq for seq, _ in items if seq <= len(cases))
    assert verifies(db)
    shown = CliRunner().invoke(main, ["audit", "show", str(db), str(newer[0].case_id)], catch_exceptions=False)
    assert f"Supersedes record {first[newer[0].case_id]}" in shown.output
    assert "different result" not in shown.output
    replayed = CliRunner().invoke(main, ["replay", str(db), "--json"], catch_exceptions=False)
    assert json.loads(replayed.output)["differences"] == 0
    both = run(path, "--audit", db, "--redecide", "--resume")
    assert both.exit_code == 2 and "choose one" in both.output


def test_a_case_rejected_earlier_may_be_sent_again(tmp_path):
    """A rejection (invalid input) is not a decision: the corrected case is decided in a later run."""
    good = generate(2, seed=24)
    bad = dict(good[0], income="lots")
    db = tmp_path / "x.db"
    assert run(write_jsonl(tmp_path / "bad.jsonl", [bad]), "--audit", db, "--workers", 1).exit_code == 1
    r = run(write_jsonl(tmp_path / "good.jsonl", [good[0]]), "--audit", db, "--workers", 1)
    assert r.exit_code == 0, r.output
    assert [rec.kind for rec in records(db)][0] == "rejection" and len(deciding_ids(db)) == 1


def start_database(url: str) -> str:
    """A database of its own on the test server (other tests drop the tables of the shared one)."""
    import psycopg
    name = "vedtak_faults_" + uuid.uuid4().hex[:10]
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    import psycopg
    base, name = url.rsplit("/", 1)
    with psycopg.connect(os.environ["VEDTAK_TEST_POSTGRES"], autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_two_runs_of_one_input_at_once_record_each_case_once(tmp_path, kind):
    """Two `vedtak run` processes on one input and one log at the same time: every case id is
    recorded exactly once as a decision or referral; the other run's copy of it is an
    already_decided rejection (both runs account for every case); the log verifies."""
    if kind == "postgres":
        if not os.environ.get("VEDTAK_TEST_POSTGRES"):
            pytest.skip("no PostgreSQL server: set VEDTAK_TEST_POSTGRES (bash .ci/postgres starts one)")
        db = start_database(os.environ["VEDTAK_TEST_POSTGRES"])
    else:
        db = str(tmp_path / "two.db")
    try:
        cases = generate(5000, seed=25)
        path = write_jsonl(tmp_path / "cases.jsonl", cases)
        open_store(db).close()  # created before both start, so that neither run creates it
        procs = [subprocess.Popen(cli(path, "--audit", db, "--workers", 1, "--batch-size", 100, "--out",
                                      tmp_path / f"out{i}.jsonl"), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for i in range(2)]
        errs = [p.communicate(timeout=300)[1] for p in procs]
        for p, err in zip(procs, errs):
            assert p.returncode in (0, 1), err[-2000:]
            assert "Traceback" not in err
        assert verifies(db)
        all_records = records(db)
        ids = [r.case_id for r in all_records if r.kind in DECIDING]
        assert sorted(ids) == sorted(c["case_id"] for c in cases), "a case was recorded twice or not at all"
        rejections = [r for r in all_records if r.kind == "rejection"]
        assert len(rejections) == len(cases)
        assert all(json.loads(r.decision)["errors"][0]["code"] == "already_decided" for r in rejections)
        outs = [output_ids(tmp_path / f"out{i}.jsonl") for i in range(2)]
        assert outs[0] == outs[1] == [c["case_id"] for c in cases]
        released = [[json.loads(line)["status"] != "rejected" for line in
                     (tmp_path / f"out{i}.jsonl").read_text().splitlines()] for i in range(2)]
        assert all(a != b for a, b in zip(*released)), "a case released as decided by both runs, or by neither"
    finally:
        if kind == "postgres":
            drop_database(db)


# -- a full disk ---------------------------------------------------------------------------------

def limited(size: int):
    """For preexec_fn: no file of the child may grow past ``size`` bytes, and writing past it is an
    error (EFBIG), not death by SIGXFSZ — what a full disk looks like to the program."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return apply


def test_a_full_disk_under_the_log_stops_the_run_cleanly_and_resume_completes(tmp_path):
    """The log's file cannot grow (RLIMIT_FSIZE): the run stops with exit 3 and a message saying the
    log cannot be written and to --resume, no traceback; what it wrote out is recorded; the log
    verifies; --resume (with room) records every case exactly once."""
    cases = generate(10000, seed=31)
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    db, out = tmp_path / "full.db", tmp_path / "out.jsonl"
    cmd = cli(path, "--audit", db, "--workers", 1, "--batch-size", 200)
    # the decisions go to a pipe (which the file size limit does not bound): the log's files fill first
    r = subprocess.run(cmd + ["--out", "-"], capture_output=True, text=True, timeout=300,
                       preexec_fn=limited(2_000_000))
    assert r.returncode == 3, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert f"the audit log {db} cannot be written" in r.stderr and "--resume" in r.stderr
    assert verifies(db)
    recorded = deciding_ids(db)
    assert 0 < len(recorded) < len(cases)
    assert [json.loads(line)["case_id"] for line in r.stdout.splitlines()] == recorded
    done = subprocess.run(cmd + ["--resume", "--out", out], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(deciding_ids(db)) == sorted(c["case_id"] for c in cases)
    assert output_ids(out) == [c["case_id"] for c in cases]


def test_a_log_at_its_size_limit_reports_it_is_full(tmp_path, monkeypatch):
    """SQLite's own "database or disk is full" (a page limit stands in for the disk) stops the run with
    exit 3 and says the log is full; the log verifies and a --resume with room completes."""
    cases = generate(1500, seed=32)
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    db = tmp_path / "pages.db"
    opened = SQLiteStore._open

    def small(self, synchronous="FULL"):
        opened(self, synchronous)
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        self._db.execute(f"PRAGMA max_page_count = {pages + 12}")

    monkeypatch.setattr(SQLiteStore, "_open", small)
    r = run(path, "--audit", db, "--workers", 1, "--batch-size", 100)
    monkeypatch.undo()
    assert r.exit_code == 3, r.output
    assert f"the audit log {db} is full: no space left on its disk" in r.output
    assert "--resume" in r.output
    assert verifies(db) and 0 < len(deciding_ids(db)) < len(cases)
    assert run(path, "--audit", db, "--workers", 1, "--resume").exit_code == 0
    assert sorted(deciding_ids(db)) == sorted(c["case_id"] for c in cases)


def test_a_full_output_device_stops_the_run_and_resume_writes_the_whole_output(tmp_path):
    """--out /dev/full (every write fails with ENOSPC): exit 3, a message naming the output, no
    traceback; the log holds the recorded chunk and verifies; --resume to a file completes it."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    cases = generate(500, seed=33)
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    db = tmp_path / "o.db"
    r = subprocess.run(cli(path, "--audit", db, "--workers", 1, "--batch-size", 100, "--out", "/dev/full"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 3, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert "cannot write --out /dev/full: No space left on device" in r.stderr
    assert verifies(db) and len(deciding_ids(db)) == 100
    out = tmp_path / "out.jsonl"
    done = run(path, "--audit", db, "--workers", 1, "--out", out, "--resume")
    assert done.exit_code == 0, done.output
    assert output_ids(out) == [c["case_id"] for c in cases]
    assert sorted(deciding_ids(db)) == sorted(c["case_id"] for c in cases)


@pytest.mark.parametrize("fail_after", [1, 5000, 23456])
def test_a_disk_filling_up_mid_write_leaves_no_half_written_line(tmp_path, monkeypatch, fail_after):
    """The disk fills in the middle of a chunk's write (the first bytes land, then ENOSPC): the output
    is cut back to its last complete line, the message says how many decisions it holds, exit 3;
    --resume completes output and log."""
    cases = generate(400, seed=34)
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    db, out = tmp_path / "m.db", tmp_path / "out.jsonl"
    room = [fail_after]

    def filling(fd, data):
        if room[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = os.write(fd, bytes(data[:room[0]]))
        room[0] -= n
        return n

    monkeypatch.setattr(cli_batch._Output, "_write", staticmethod(filling))
    r = run(path, "--audit", db, "--workers", 1, "--batch-size", 50, "--out", out, "--summary-json",
            tmp_path / "s.json")
    monkeypatch.undo()
    assert r.exit_code == 3
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["stopped"]["why"] == "output" and summary["read"] == len(output_ids(out))
    written = output_ids(out)  # complete lines only
    assert f"it holds the first {len(written):,} decisions, each complete" in r.output
    assert written == [c["case_id"] for c in cases[:len(written)]]
    assert set(written) < set(deciding_ids(db)) and verifies(db)
    assert run(path, "--audit", db, "--workers", 1, "--out", out, "--resume").exit_code == 0
    assert output_ids(out) == [c["case_id"] for c in cases]
    assert sorted(deciding_ids(db)) == sorted(c["case_id"] for c in cases)


# -- a locked log ------------------------------------------------------------------------------

@pytest.mark.parametrize("executor", ["local", "dask"])
def test_a_log_locked_longer_than_the_timeout_at_the_start(tmp_path, executor):
    """Another process holds the log exclusively locked past --lock-timeout: exit 3, a message saying
    the log is locked and that nothing was recorded, no traceback; once free, the run completes."""
    cases = generate(100, seed=41)
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    db = tmp_path / "l.db"
    open_store(str(db)).close()
    holder = sqlite3.connect(str(db), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        r = subprocess.run(cli(path, "--audit", db, "--workers", 1, "--lock-timeout", 0.5, "--executor", executor),
                           capture_output=True, text=True, timeout=300)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.returncode == 3, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert f"the audit log {db} is locked by another process, longer than the 0.5 s timeout" in r.stderr
    assert "nothing was decided or recorded" in r.stderr
    assert records(db) == []
    if executor == "local":
        assert run(path, "--audit", db, "--workers", 1).exit_code == 0
        assert sorted(deciding_ids(db)) == sorted(c["case_id"] for c in cases)


def test_ctrl_c_while_waiting_for_a_locked_log_stops_at_once(tmp_path):
    """Waiting (up to a long --lock-timeout) for a log another process holds locked, the run still
    hears Ctrl-C: exit 130, no traceback, nothing recorded."""
    path = write_jsonl(tmp_path / "cases.jsonl", generate(50, seed=44))
    db = tmp_path / "w.db"
    open_store(str(db)).close()
    holder = sqlite3.connect(str(db), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        proc = subprocess.Popen(cli(path, "--audit", db, "--workers", 1, "--lock-timeout", 600),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        time.sleep(2)
        os.killpg(proc.pid, signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)  # a hang guard: without it the wait would last 600 s
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail("vedtak run waiting for a locked log did not stop within 60 s of Ctrl-C")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert proc.returncode == 130 and "Traceback" not in err and "--resume" in err
    assert records(db) == []


def test_ctrl_c_while_a_batch_waits_for_the_log_lock_stops_it_between_chunks(tmp_path):
    """In the middle of a run, another connection holds the log; SIGINT during the (long) wait stops
    the batch as interrupted, with the chunks before it recorded and written out and the waiting
    chunk not recorded at all."""
    import threading

    path = write_jsonl(tmp_path / "cases.jsonl", generate(600, seed=45))
    db = str(tmp_path / "wait.db")
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    lines: list[str] = []

    def interrupt_while_waiting() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # only while the batch's own handler is installed
            handler = signal.getsignal(signal.SIGINT)
            if holder.in_transaction and getattr(handler, "__name__", "") == "stop":
                time.sleep(0.5)
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    def lock_after_first_chunk(n: int) -> None:
        if not holder.in_transaction:
            holder.execute("BEGIN EXCLUSIVE")

    sender = threading.Thread(target=interrupt_while_waiting)
    sender.start()
    try:
        with AuditLog.open(db, timeout=600) as log:
            batch = Batch(SG, [str(path)], log, chunk_size=200, progress=lock_after_first_chunk)
            with pytest.raises(BatchStopped) as stopped:
                batch.run(lines.append)
    finally:
        sender.join()
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
    assert stopped.value.why == "interrupted" and stopped.value.summary.read == 200 == len(lines)
    assert verifies(db) and deciding_ids(db) == [json.loads(x)["case_id"] for x in lines]


def test_a_log_locked_in_the_middle_of_a_run_stops_it_and_resume_completes(tmp_path):
    """The lock is taken by another connection after the first chunk: the next append waits the
    timeout, then the run stops (BatchStopped, why "log") having written out exactly what it
    recorded; the log verifies; a resumed run completes."""
    cases = generate(600, seed=42)
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    db = str(tmp_path / "mid.db")
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    lines: list[str] = []

    def lock_after_first_chunk(n: int) -> None:
        if not holder.in_transaction:
            holder.execute("BEGIN EXCLUSIVE")

    with AuditLog.open(db, timeout=0.3) as log:
        batch = Batch(SG, [str(path)], log, chunk_size=200, progress=lock_after_first_chunk)
        with pytest.raises(BatchStopped) as stopped:
            batch.run(lines.append)
    holder.execute("ROLLBACK")
    holder.close()
    assert stopped.value.why == "log" and stopped.value.__cause__.reason == "locked"
    assert "is locked by another process, longer than the 0.3 s timeout" in str(stopped.value)
    assert stopped.value.summary.read == 200 == len(lines)
    assert verifies(db) and deciding_ids(db) == [json.loads(x)["case_id"] for x in lines]
    with AuditLog.open(db) as log:
        summary = Batch(SG, [str(path)], log, chunk_size=200, resume=True).run(lambda text: None)
    assert summary.read == 600 and summary.resumed == 200
    assert sorted(deciding_ids(db)) == sorted(c["case_id"] for c in cases)


def test_a_second_distributed_run_of_the_same_batch_rejects_every_case_as_already_decided(tmp_path):
    """--executor dask, run twice into one log: the second run's partitions decide nothing again; each
    case is an already_decided rejection naming the first run's record (on its partition chain), and
    every case id has exactly one decision or referral; the log verifies. --redecide is local only."""
    from vedtak.batch.distributed import DistributedRun

    cases = generate(1200, seed=51)
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    db = str(tmp_path / "dist.db")
    first = DistributedRun(SG, [str(path)], db, workers=2, partition_bytes=200_000).run()
    assert first.n_rejected == 0
    second = DistributedRun(SG, [str(path)], db, workers=2, partition_bytes=200_000).run()
    assert dict(second.rejected) == {"already_decided": len(cases)} and second.read == len(cases)
    assert second.duplicates_across_partitions == []
    assert sorted(deciding_ids(db)) == sorted(c["case_id"] for c in cases)
    rejection = next(r for r in records(db) if r.kind == "rejection")
    assert f"(record {first_chain_ref(db, rejection.case_id)})" in json.loads(rejection.decision)["errors"][0]["message"]
    assert verifies(db)
    r = run(path, "--audit", db, "--executor", "dask", "--redecide")
    assert r.exit_code == 2 and "--redecide works with the local executor only" in r.output


def first_chain_ref(db: str, case_id) -> str:
    found = next(r for r in records(db) if r.case_id == case_id and r.kind in DECIDING)
    return found.ref


def postgres_database() -> str:
    if not os.environ.get("VEDTAK_TEST_POSTGRES"):
        pytest.skip("no PostgreSQL server: set VEDTAK_TEST_POSTGRES (bash .ci/postgres starts one)")
    return start_database(os.environ["VEDTAK_TEST_POSTGRES"])


def test_a_full_disk_under_the_output_with_a_postgresql_log(tmp_path):
    """With the log on a server, only the output file is limited (RLIMIT_FSIZE, as a full disk): the
    write that crosses the limit lands in part and is cut back to the last complete line; exit 3, the
    message gives how many decisions the output holds; the log verifies; --resume completes both."""
    db = postgres_database()
    try:
        cases = generate(400, seed=35)
        path = write_jsonl(tmp_path / "cases.jsonl", cases)
        out = tmp_path / "out.jsonl"
        cmd = cli(path, "--audit", db, "--workers", 1, "--batch-size", 50, "--out", out)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, preexec_fn=limited(200_000))
        assert r.returncode == 3, r.stderr[-2000:]
        assert "Traceback" not in r.stderr
        written = output_ids(out)
        assert 0 < len(written) < len(cases) and out.stat().st_size <= 200_000
        assert f"it holds the first {len(written):,} decisions, each complete" in " ".join(r.stderr.split())
        assert written == [c["case_id"] for c in cases[:len(written)]]
        assert set(written) < set(deciding_ids(db)) and verifies(db)
        done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert output_ids(out) == [c["case_id"] for c in cases]
        assert sorted(deciding_ids(db)) == sorted(c["case_id"] for c in cases)
    finally:
        drop_database(db)


def test_a_postgresql_log_locked_longer_than_the_timeout(tmp_path):
    """Another session holds the chain head (SELECT ... FOR UPDATE) past --lock-timeout: the run stops
    with exit 3, says the log is locked, no traceback, nothing recorded; once free, it completes."""
    import psycopg

    db = postgres_database()
    try:
        cases = generate(100, seed=43)
        path = write_jsonl(tmp_path / "cases.jsonl", cases)
        open_store(db).close()
        with psycopg.connect(db) as holder:
            holder.execute("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
            r = subprocess.run(cli(path, "--audit", db, "--workers", 1, "--lock-timeout", 0.5),
                               capture_output=True, text=True, timeout=300)
            holder.rollback()
        assert r.returncode == 3, r.stderr[-2000:]
        assert "Traceback" not in r.stderr
        assert "the audit log is locked by another process, longer than the 0.5 s timeout" in r.stderr
        assert records(db) == []
        assert run(path, "--audit", db, "--workers", 1).exit_code == 0
        assert sorted(deciding_ids(db)) == sorted(c["case_id"] for c in cases)
    finally:
        drop_database(db)


def chain_records(db) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(con.execute("SELECT COUNT(*) FROM audit_chain_records").fetchone()[0]) + int(con.execute(
                "SELECT COALESCE(SUM(last_seq - first_seq + 1), 0) FROM audit_blocks WHERE chain <> ''").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_ctrl_c_during_a_distributed_run_stops_cleanly_and_resume_completes(tmp_path):
    """--executor dask with a local cluster: Ctrl-C to the process group stops the driver with exit
    130 and no worker traceback (the cluster's processes do not take the signal); the log verifies
    and --resume completes the run with every case recorded once."""
    cases = generate(20000, seed=14)
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    db = tmp_path / "d.db"
    cmd = cli(path, "--audit", db, "--executor", "dask", "--workers", 2, "--partition-size", "1MB")
    returncode, err = signal_once_recording(cmd, lambda: chain_records(db), 0, signal.SIGINT)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert returncode == 130, err[-3000:]
    assert "--resume" in err
    with open_store(str(db)) as store:  # the interrupted run is named unfinished, and nothing else is wrong
        report = verify(store)
    assert report.unfinished and {p.kind for p in report.problems} == {"unfinished"}, report.problems[:3]
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert verifies(db)
    assert sorted(deciding_ids(db)) == sorted(c["case_id"] for c in cases)


def test_a_line_separator_inside_a_value_does_not_split_a_decision_line(tmp_path):
    """Decisions are released one JSON per line; a U+2028 or U+0085 inside a value (JSON keeps them
    raw) does not cut a decision in two, through the library's per-line writer or the --out file."""
    case = dict(generate(1, seed=46)[0], case_id="A\u2028B\x85C")
    path = tmp_path / "u.jsonl"
    path.write_text(json.dumps(case, ensure_ascii=False) + "\n", encoding="utf-8")
    lines: list[str] = []
    with AuditLog.open(str(tmp_path / "u.db")) as log:
        Batch(SG, [str(path)], log).run(lines.append)
    assert len(lines) == 1 and json.loads(lines[0])["case_id"] == case["case_id"]
    run(path, "--audit", tmp_path / "v.db", "--workers", 1, "--out", tmp_path / "out.jsonl")
    assert output_ids(tmp_path / "out.jsonl") == [case["case_id"]]
