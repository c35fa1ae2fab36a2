"""Reading the audit log: commands that only read (audit verify/show/export/checkpoint, replay, queue
list/show) open the log without writing to it, so they never wait for another process's write lock
and work on a full disk; a log that needs its schema created or upgraded is refused clearly. And what
an auditor reads: `audit show` names an already_decided rejection as what it is and links records a
--redecide superseded; `replay` names the batch rejections it does not re-evaluate.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from vedtak.audit import AuditLog, StoreError, open_store
from vedtak.audit.verify import verify
from vedtak.audit.store import SCHEMA_VERSION
from vedtak.cli.main import main

from conftest import STUDY_GRANT
from workload import generate

SG = str(STUDY_GRANT)
HANG_GUARD = 240  # seconds: only so that a hang fails the test instead of the run; never a speed threshold

# Another process holding the log's write lock (BEGIN EXCLUSIVE) until it is killed.
HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("held", flush=True)
time.sleep(3600)
"""


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "vedtak.cli", *[str(a) for a in args]]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def make_log(tmp_path: Path, n: int = 30, seed: int = 5) -> tuple[Path, list[dict]]:
    """A log of ``n`` cases (decisions and referrals, so the queue has items), closed cleanly."""
    cases = generate(n, seed=seed)
    path = tmp_path / "cases.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in cases))
    db = tmp_path / "audit.db"
    r = invoke("run", SG, path, "--audit", db, "--workers", 1)
    assert r.exit_code == 0, r.output
    return db, cases


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reading_commands(db: Path, case_id) -> list[tuple[str, ...]]:
    """Every command that only reads the log, with what its output must show."""
    with open_store(str(db), read_only=True) as store:
        item = store.work_item_rows()[0][0]
    return [
        (("audit", "verify", db), "ok: "),
        (("audit", "show", db), "seq"),
        (("audit", "show", db, case_id), f"Case {case_id}:"),
        (("audit", "export", db), '"hash"'),
        (("replay", db), "0 differences"),
        (("queue", "list", db), "general"),
        (("queue", "show", db, item), f"Work item {item}"),
    ]


def limited(size: int):
    """For preexec_fn: no file of the child may grow past ``size`` bytes, and writing past it is an
    error (EFBIG), not death by SIGXFSZ: what a full disk looks like to the program."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return apply


# -- a writer holds the log -------------------------------------------------------------------

@pytest.fixture
def held(tmp_path):
    """A log, and another process holding its write lock for the whole test."""
    db, cases = make_log(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        # the lock is real: a writer that waits 0.2 s for it gives up
        other = sqlite3.connect(str(db), isolation_level=None, timeout=0.2)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
        yield db, cases
    finally:
        proc.kill()
        proc.wait()


def test_reading_commands_do_not_wait_for_a_process_holding_the_write_lock(held):
    """While another process holds the log's write lock (BEGIN EXCLUSIVE), audit verify, audit show
    (a case and the latest records), audit export, replay, queue list and queue show all complete
    with exit 0 and their usual output: reading never waits for the writer (reproduction: queue list
    used to fail after 60 s with exit 1, the others waited)."""
    db, cases = held
    for args, shown in reading_commands(db, cases[0]["case_id"]):
        r = subprocess.run(cli(*args), capture_output=True, text=True, timeout=HANG_GUARD)
        assert r.returncode == 0, (args, r.stderr[-2000:])
        assert shown in r.stdout, (args, r.stdout[-2000:])
        assert "Traceback" not in r.stderr


def test_a_reader_opens_a_held_log_at_once_and_a_writer_is_told_it_is_locked(held):
    """With another process holding the write lock, a store opened read-only reads and verifies the
    log at once; a store opened for writing with a 0.5 s lock timeout is told the log is locked
    (StoreError "locked") before it decides anything."""
    db, cases = held
    with open_store(str(db), timeout=0.5, read_only=True) as store:
        assert store.head()[0] == len(cases)
        assert verify(store).ok
    with pytest.raises(StoreError) as caught:
        AuditLog.open(str(db), timeout=0.5)
    assert caught.value.reason == "locked"


def test_a_checkpoint_is_signed_while_a_writer_holds_the_log(held, tmp_path):
    """audit checkpoint only reads the log: it signs the head while another process holds the lock."""
    db, cases = held
    assert invoke("audit", "keygen", "--out", tmp_path / "k").exit_code == 0
    r = subprocess.run(cli("audit", "checkpoint", db, "--key", tmp_path / "k.key", "-o", tmp_path / "cp.json"),
                       capture_output=True, text=True, timeout=HANG_GUARD)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "cp.json").read_text())["seq"] == len(cases)


# -- a full disk ------------------------------------------------------------------------------

def test_reading_commands_work_on_a_full_disk_and_change_nothing(tmp_path):
    """No file may grow (RLIMIT_FSIZE 0, as a full disk; not even the readers' -shm file beside the
    log): every reading command still completes with exit 0 and its usual output, and the log's
    file is byte for byte as it was (reproduction: audit verify could not open the log at all)."""
    db, cases = make_log(tmp_path)
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()
    before = digest(db)
    for args, shown in reading_commands(db, cases[0]["case_id"]):
        r = subprocess.run(cli(*args), capture_output=True, text=True, timeout=HANG_GUARD, preexec_fn=limited(0))
        assert r.returncode == 0, (args, r.stderr[-2000:])
        assert shown in r.stdout, (args, r.stdout[-2000:])
        assert "Traceback" not in r.stderr
    assert digest(db) == before


CRASHING_WRITER = """
import json, os, sys
from vedtak.audit import AuditLog
import vedtak
plan = vedtak.compile(vedtak.load(sys.argv[2]))
log = AuditLog.open(sys.argv[1])
log.store._db.execute("PRAGMA wal_autocheckpoint = 0")  # the records stay in the write-ahead log
for line in sys.stdin:
    log.decide(plan, json.loads(line))
os._exit(0)  # a crash: the connection is never closed, the write-ahead log never folded back
"""


def test_on_a_full_disk_records_only_in_the_write_ahead_log_are_read_too(tmp_path):
    """A writer crashed with its last records still in the write-ahead log and no -shm file is left:
    on a full disk (where no -shm can be made) audit verify and audit show read those records too."""
    db, cases = make_log(tmp_path, n=10)
    more = [dict(c, case_id=f"wal-{i}") for i, c in enumerate(generate(5, seed=6))]
    r = subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(db), SG], text=True, capture_output=True,
                       input="".join(json.dumps(c) + "\n" for c in more), timeout=HANG_GUARD)
    assert r.returncode == 0, r.stderr[-2000:]
    assert Path(f"{db}-wal").stat().st_size > 0
    os.unlink(f"{db}-shm")
    verified = subprocess.run(cli("audit", "verify", db), capture_output=True, text=True, timeout=HANG_GUARD,
                              preexec_fn=limited(0))
    assert verified.returncode == 0, verified.stderr[-2000:]
    assert f"ok: {len(cases) + len(more)} records" in verified.stdout
    shown = subprocess.run(cli("audit", "show", db, "wal-4"), capture_output=True, text=True, timeout=HANG_GUARD,
                           preexec_fn=limited(0))
    assert shown.returncode == 0 and "Case wal-4:" in shown.stdout, shown.stderr[-2000:]


# -- a log that is not at the current schema --------------------------------------------------

def downgrade_to_version_1(db: Path) -> None:
    """Make ``db`` a version 1 log, as vedtak wrote it before partition chains."""
    con = sqlite3.connect(str(db), isolation_level=None)
    for table in ("audit_chain_records", "audit_chains", "audit_runs"):
        con.execute(f"DROP TABLE {table}")
    con.execute("ALTER TABLE audit_work_items DROP COLUMN record_chain")
    con.execute("UPDATE audit_meta SET value = '1' WHERE key = 'schema_version'")
    con.close()


def test_a_log_that_needs_an_upgrade_is_refused_by_reading_commands_with_a_clear_message(tmp_path):
    """A version 1 log opened by a reading command is not changed: the command says the log needs an
    upgrade, which reading does not make, and how to make it (exit 1, no traceback); after a command
    that writes (queue supervisors) upgraded it, the reading commands work."""
    db, cases = make_log(tmp_path, n=10)
    downgrade_to_version_1(db)
    before = digest(db)
    for args in (("audit", "verify", db), ("queue", "list", db), ("replay", db), ("audit", "show", db)):
        r = invoke(*args)
        assert r.exit_code == 1, (args, r.output)
        assert (f"the audit log {db} has schema version 1 and needs an upgrade to version {SCHEMA_VERSION}, which reading "
                "commands do not make") in r.output
        assert f"vedtak queue supervisors {db}" in r.output
    with pytest.raises(StoreError) as caught:
        open_store(str(db), read_only=True)
    assert caught.value.reason == "upgrade"
    assert digest(db) == before
    assert invoke("queue", "supervisors", db).exit_code == 0
    assert invoke("audit", "verify", db).exit_code == 0
    assert f"Case {cases[0]['case_id']}:" in invoke("audit", "show", db, cases[0]["case_id"]).output


def test_a_sqlite_file_of_another_program_is_not_given_audit_tables_by_a_reading_command(tmp_path):
    """queue list, audit verify or replay on another program's SQLite database says it holds no audit
    log and leaves it as it was (they used to create the audit tables in it)."""
    db = tmp_path / "other.db"
    con = sqlite3.connect(str(db))
    con.execute("CREATE TABLE notes (text TEXT)")
    con.commit()
    con.close()
    before = digest(db)
    for args in (("queue", "list", db), ("audit", "verify", db), ("replay", db)):
        r = invoke(*args)
        assert r.exit_code == 1 and f"{db} holds no audit log (none of its tables)" in r.output, r.output
    assert digest(db) == before


# -- what an auditor reads --------------------------------------------------------------------

def test_show_names_an_already_decided_rejection_and_links_superseded_records(tmp_path):
    """After a batch is run twice and then with --redecide, `audit show` of a case shows the second
    run's record as "rejected: already_decided: case id X was decided before in this log (record N)"
    with no "rule None" and no replay claim; the first record says "Superseded by record M" and the
    redecided one "Supersedes record N"."""
    db, cases = make_log(tmp_path, n=6)
    path = tmp_path / "cases.jsonl"
    assert invoke("run", SG, path, "--audit", db, "--workers", 1).exit_code == 1
    assert invoke("run", SG, path, "--audit", db, "--workers", 1, "--redecide").exit_code == 0
    n = len(cases)
    for i, case in enumerate(cases):
        cid = case["case_id"]
        shown = invoke("audit", "show", db, cid).output
        first, second, third = i + 1, n + i + 1, 2 * n + i + 1
        with open_store(str(db), read_only=True) as store:
            what = "decided" if store.record(first).kind == "decision" else "referred"
        assert (f"Case {cid}: rejected: already_decided: case id {cid} was {what} before in this log "
                f"(record {first})") in shown
        assert "rule None" not in shown and "different result" not in shown
        blocks = shown.split("Record ")
        assert blocks[1].startswith(f"{first} ") and f"Superseded by record {third}" in blocks[1]
        assert blocks[2].startswith(f"{second} ") and "Supersede" not in blocks[2]
        assert blocks[3].startswith(f"{third} ") and f"Supersedes record {first}" in blocks[3]
        assert "Superseded by" not in blocks[3]


def test_replay_names_each_kind_of_batch_rejection_it_does_not_re_evaluate(tmp_path):
    """replay counts batch rejections by what they are: an unreadable line, a case id repeated in a
    run, a case already decided earlier; the text names each and never calls an already_decided
    rejection an unreadable line or a repeated case id; the JSON report counts each."""
    db, cases = make_log(tmp_path, n=4)
    again = tmp_path / "again.jsonl"
    again.write_text(json.dumps(cases[0]) + "\n{not json\n" + json.dumps(cases[1]) + "\n"
                     + json.dumps(dict(cases[2], case_id="fresh")) + "\n" + json.dumps(dict(cases[2], case_id="fresh"))
                     + "\n")
    invoke("run", SG, again, "--audit", db, "--workers", 1)
    r = invoke("replay", db)
    assert r.exit_code == 0, r.output
    assert ("1 unreadable line not re-evaluated, 1 repeated case id not re-evaluated, 2 rejections of cases "
            "already decided earlier not re-evaluated") in r.output
    report = json.loads(invoke("replay", db, "--json").output)
    assert (report["skipped_unreadable"], report["skipped_repeated"], report["skipped_already_decided"]) == (1, 1, 2)
    assert report["skipped_batch_rejections"] == 4
    only = tmp_path / "only.db"
    assert invoke("run", SG, tmp_path / "cases.jsonl", "--audit", only, "--workers", 1).exit_code == 0
    invoke("run", SG, tmp_path / "cases.jsonl", "--audit", only, "--workers", 1)
    text = invoke("replay", only).output
    assert f"{len(cases)} rejections of cases already decided earlier not re-evaluated" in text
    assert "unreadable" not in text and "repeated" not in text


def test_reading_commands_do_not_wait_for_a_postgresql_writer(tmp_path):
    """With the log on PostgreSQL, another connection holding the chain head's row lock and the
    schema row in an open transaction does not hold up the reading commands (they used to wait on
    the schema upsert at open); a database with no audit tables is refused and left without any."""
    from audit_support import fresh_url, raw
    import psycopg

    url = fresh_url("postgres", tmp_path)
    assert invoke("queue", "list", url).exit_code == 1
    assert raw(url, "SELECT to_regclass('audit_records')") == [(None,)]
    cases = generate(20, seed=7)
    path = tmp_path / "cases.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in cases))
    assert invoke("run", SG, path, "--audit", url, "--workers", 1).exit_code == 0
    holder = psycopg.connect(url)
    try:
        holder.execute("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
        holder.execute("UPDATE audit_meta SET value = value")
        for args, shown in reading_commands(url, cases[0]["case_id"]):
            r = subprocess.run(cli(*args), capture_output=True, text=True, timeout=HANG_GUARD)
            assert r.returncode == 0, (args, r.stderr[-2000:])
            assert shown in r.stdout, (args, r.stdout[-2000:])
    finally:
        holder.rollback()
        holder.close()


def test_the_latest_records_list_names_rejections_by_code_and_never_prints_none(tmp_path):
    """`audit show DB` (the latest records) gives a rejection's result with its error codes
    ("rejected: already_decided") and leaves the rule column empty where a record has no rule
    (rejections, a caseworker's decision), instead of printing "None"."""
    db, cases = make_log(tmp_path, n=3)
    invoke("run", SG, tmp_path / "cases.jsonl", "--audit", db, "--workers", 1)
    rows = [line.split("\t") for line in invoke("audit", "show", db, "--limit", 3).output.splitlines()]
    assert rows[0] == ["seq", "recorded at", "kind", "case", "result", "rule"]
    assert [r[2:] for r in rows[1:]] == [["rejection", str(c["case_id"]), "rejected: already_decided", ""]
                                         for c in cases]
    assert "None" not in invoke("audit", "show", db).output


def test_supersession_is_shown_for_records_kept_without_personal_data(tmp_path):
    """With --pii drop a record cannot be re-derived, so `audit show` shows it as recorded: the
    superseded record still says "Superseded by record M" and the new one "Supersedes record N"."""
    cases = generate(4, seed=8)
    path = tmp_path / "cases.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in cases))
    db = tmp_path / "p.db"
    assert invoke("run", SG, path, "--audit", db, "--workers", 1, "--pii", "drop").exit_code == 0
    assert invoke("run", SG, path, "--audit", db, "--workers", 1, "--pii", "drop", "--redecide").exit_code == 0
    for i, case in enumerate(cases):
        blocks = invoke("audit", "show", db, case["case_id"]).output.split("Record ")
        assert "shown as recorded; personal data was dropped" in blocks[1]
        assert f"Superseded by record {len(cases) + i + 1}" in blocks[1]
        assert f"Supersedes record {i + 1}" in blocks[2] and "Superseded by" not in blocks[2]
