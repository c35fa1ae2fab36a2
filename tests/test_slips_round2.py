"""Operator slips, round 2 of the review (issue 13 §4): every output is checked for real before a
command starts (exit 2, nothing created), `run --out -` writes decisions to standard output, a
--pii-key-file holds a real key, and the values a caseworker gives go through the case-input
number rules.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from vedtak.audit import AuditLog, open_store
from vedtak.audit.verify import verify
from vedtak.audit.queue import list_items

from conftest import STUDY_GRANT
from workload import generate
from cli_support import USAGE, error_line, run

SG = str(STUDY_GRANT)
PROC = os.path.isdir("/proc/self")  # Linux: no file can be created in /proc, whoever asks
VEDTAK = [sys.executable, "-m", "vedtak.cli"]


@pytest.fixture
def cases(tmp_path):
    path = tmp_path / "cases.jsonl"
    shutil.copy(STUDY_GRANT / "cases.jsonl", path)
    return path


@pytest.fixture
def db(tmp_path, study_plan):
    path = str(tmp_path / "decisions.db")
    with AuditLog.open(path) as log:
        list(log.decide_many(study_plan, generate(30, seed=8)))
    return path


def _files(folder) -> list[str]:
    return sorted(os.listdir(folder))


# -- 1. unwritable outputs are refused before anything is opened ---------------------------------

@pytest.mark.skipif(not PROC, reason="needs Linux /proc")
@pytest.mark.parametrize("option,path,message", [
    ("--out", "/proc/x.jsonl", "Error: --out /proc/x.jsonl: cannot create a file in /proc (no such file or directory)"),
    ("--summary-json", "/proc/x.json",
     "Error: --summary-json /proc/x.json: cannot create a file in /proc (no such file or directory)"),
    ("--audit", "/nonexistent/u.db", "Error: --audit /nonexistent/u.db: the directory /nonexistent does not exist"),
])
def test_run_refuses_an_unwritable_output_before_the_run(tmp_path, cases, option, path, message):
    """The reproductions: `--out /proc/x.jsonl` exited 1 after creating the log, `--summary-json
    /proc/x.json` failed only after the whole run, `--audit /nonexistent/u.db` exited 3 asking
    whether the disk was full. Each is now exit 2 naming the path, and no log is created."""
    args = ["--audit", tmp_path / "a.db"] if option != "--audit" else []
    r = run("run", SG, cases, *args, option, path, "--workers", 1)
    assert (r.exit_code, error_line(r)) == (USAGE, message)
    assert _files(tmp_path) == ["cases.jsonl"]


@pytest.mark.skipif(not PROC, reason="needs Linux /proc")
def test_decide_audit_in_a_missing_directory_is_a_usage_error(tmp_path):
    """`decide --audit /nonexistent/u.db` is exit 2, "the directory /nonexistent does not exist"."""
    r = run("decide", SG, STUDY_GRANT / "case.json", "--audit", "/nonexistent/u.db")
    assert (r.exit_code, error_line(r)) == (USAGE, "Error: --audit /nonexistent/u.db: the directory /nonexistent "
                                                   "does not exist")
    r = run("decide", SG, STUDY_GRANT / "case.json", "--audit", "/proc/u.db")
    assert (r.exit_code, error_line(r)) == (USAGE, "Error: --audit /proc/u.db: cannot create a file in /proc (no "
                                                   "such file or directory)")


@pytest.mark.skipif(not PROC, reason="needs Linux /proc")
def test_every_other_output_in_proc_is_a_usage_error(tmp_path, db, keys):
    """docs -o, audit export -o, audit checkpoint -o and audit keygen --out in /proc: exit 2 naming the
    directory, before anything is written (the log and the keys are untouched)."""
    before = _files(tmp_path)
    for args, label in [
        (["docs", SG, "-o", "/proc/d.md"], "-o /proc/d.md"),
        (["audit", "export", db, "-o", "/proc/e.jsonl"], "-o /proc/e.jsonl"),
        (["audit", "checkpoint", db, "--key", keys[0], "-o", "/proc/c.json"], "-o /proc/c.json"),
        (["audit", "keygen", "--out", "/proc/k"], "--out /proc/k.key"),
    ]:
        r = run(*args)
        assert (r.exit_code, error_line(r)) == (
            USAGE, f"Error: {label}: cannot create a file in /proc (no such file or directory)"), args
    assert _files(tmp_path) == before


def test_a_file_system_that_refuses_is_found_by_a_real_probe(tmp_path, cases, monkeypatch):
    """Permissions can say yes (root passes every check) where the file system says no (a read-only
    mount): the check creates a file for real. Simulated here: every new file fails with EROFS. The
    run is exit 2 naming why, and nothing is created."""
    out_dir = tmp_path / "ro"
    out_dir.mkdir()
    real_mkstemp = tempfile.mkstemp

    def refuse(*args, dir=None, **kwargs):
        if os.fspath(dir) == str(out_dir):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    for option in ("--out", "--summary-json"):
        r = run("run", SG, cases, "--audit", tmp_path / "a.db", option, out_dir / "x", "--workers", 1)
        assert (r.exit_code, error_line(r)) == (
            USAGE, f"Error: {option} {out_dir / 'x'}: cannot create a file in {out_dir} (read-only file system)")
    r = run("run", SG, cases, "--audit", out_dir / "a.db", "--workers", 1)
    assert (r.exit_code, error_line(r)) == (
        USAGE, f"Error: --audit {out_dir / 'a.db'}: cannot create a file in {out_dir} (read-only file system)")
    r = run("docs", SG, "-o", out_dir / "d.md")
    assert (r.exit_code, error_line(r)) == (
        USAGE, f"Error: -o {out_dir / 'd.md'}: cannot create a file in {out_dir} (read-only file system)")
    assert _files(tmp_path) == ["cases.jsonl", "ro"] and _files(out_dir) == []


def test_an_existing_output_that_cannot_be_opened_for_writing_is_refused(tmp_path, cases, monkeypatch):
    """An existing --out file that the file system will not open for writing (a read-only mount, an
    immutable file; simulated) is exit 2 before the run, and the file is unchanged."""
    out = tmp_path / "out.jsonl"
    out.write_text("keep me\n")
    real_open = os.open

    def refusing_open(path, flags, *args):
        if os.fspath(path) == str(out) and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refusing_open)
    r = run("run", SG, cases, "--audit", tmp_path / "a.db", "--out", out, "--workers", 1)
    assert (r.exit_code, error_line(r)) == (
        USAGE, f"Error: --out {out}: the file cannot be written (read-only file system)")
    assert out.read_text() == "keep me\n" and not (tmp_path / "a.db").exists()


def test_the_probe_leaves_nothing_behind_and_a_good_run_still_runs(tmp_path, cases):
    """A writable --out, --summary-json and --audit pass the checks; the probes leave no file behind."""
    out = tmp_path / "out"
    out.mkdir()
    r = run("run", SG, cases, "--audit", out / "a.db", "--out", out / "d.jsonl", "--summary-json", out / "s.json",
            "--workers", 1)
    assert r.exit_code == 0, r.output
    assert _files(out) == ["a.db", "d.jsonl", "s.json"]


# -- 2. run --out - -----------------------------------------------------------------------------

def test_out_dash_writes_the_decisions_to_standard_output(tmp_path, cases):
    """The reproduction: `run --out -` wrote a file named "-". Now the decisions go to standard output,
    one JSON per line in input order, identical to what --out FILE writes; the summary goes to
    standard error; no file "-" is made."""
    proc = subprocess.run([*VEDTAK, "run", SG, str(cases), "--audit", str(tmp_path / "a.db"), "--out", "-",
                           "--workers", "1"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "-").exists()
    lines = proc.stdout.splitlines()
    assert len(lines) == 300 and [json.loads(line)["case_id"] for line in lines] == list(range(300))
    assert "automation rate" in proc.stderr and "automation rate" not in proc.stdout
    again = run("run", SG, cases, "--audit", tmp_path / "b.db", "--out", tmp_path / "d.jsonl", "--workers", 1)
    assert again.exit_code == 0
    assert (tmp_path / "d.jsonl").read_text(encoding="utf-8") == proc.stdout


def test_out_dash_reads_standard_input_too(tmp_path):
    """`run RULESET - --out -`: cases on standard input, decisions on standard output, nothing else."""
    cases = (STUDY_GRANT / "cases.jsonl").read_text(encoding="utf-8").splitlines()[:5]
    proc = subprocess.run([*VEDTAK, "run", SG, "-", "--audit", str(tmp_path / "a.db"), "--out", "-", "--workers",
                           "1"], input="\n".join(cases) + "\n", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["case_id"] for line in proc.stdout.splitlines()] == [0, 1, 2, 3, 4]


def test_out_dash_with_dask_is_a_usage_error(tmp_path, cases):
    """--executor dask writes a directory of part files: --out - is exit 2 saying so, no log made."""
    r = run("run", SG, cases, "--audit", tmp_path / "a.db", "--executor", "dask", "--out", "-")
    assert r.exit_code == USAGE and "--out - writes decisions to standard output" in error_line(r)
    assert not (tmp_path / "a.db").exists()


# -- 3. a pii key of at least 128 bits ----------------------------------------------------------

@pytest.mark.parametrize("content,held", [(b"x", "1 byte"), (b"", "0 bytes"), (b"  fifteen-bytes!! \n", "15 bytes"),
                                          (b"\n\n\n", "0 bytes")])
@pytest.mark.parametrize("command", ["run", "decide"])
def test_a_short_pii_key_is_a_usage_error_saying_how_to_make_one(tmp_path, cases, content, held, command):
    """The reproduction: a 1-byte --pii-key-file was accepted. A key of under 16 bytes (128 bits,
    whitespace around it aside) is exit 2 saying how to make one, and no log is created."""
    key = tmp_path / "pii.key"
    key.write_bytes(content)
    target = cases if command == "run" else STUDY_GRANT / "case.json"
    r = run(command, SG, target, "--audit", tmp_path / "a.db", "--pii", "pseudonymise", "--pii-key-file", key)
    assert (r.exit_code, error_line(r)) == (
        USAGE, f"Error: --pii-key-file {key} holds {held} of key; a key needs at least 16 bytes (128 bits) of "
               "secret: make one with: head -c 32 /dev/urandom > pii.key")
    assert not (tmp_path / "a.db").exists()


def test_a_key_file_that_is_not_a_key_is_refused_and_a_real_key_works(tmp_path, cases):
    """A --pii-key-file of more than 64 KiB is not a key (exit 2); 32 random bytes are one (exit 0)."""
    big = tmp_path / "big.key"
    big.write_bytes(b"k" * (64 * 1024 + 1))
    r = run("run", SG, cases, "--audit", tmp_path / "a.db", "--pii", "pseudonymise", "--pii-key-file", big)
    assert r.exit_code == USAGE and "holds more than 64 KiB: not a key file" in error_line(r)
    good = tmp_path / "pii.key"
    good.write_bytes(os.urandom(32).replace(b"\n", b"x").replace(b" ", b"y"))
    r = run("run", SG, cases, "--audit", tmp_path / "a.db", "--pii", "pseudonymise", "--pii-key-file", good,
            "--workers", 1)
    assert r.exit_code == 0, r.output


# -- 4. caseworkers' values follow the number rules of case input -------------------------------

def _referral(db):
    with open_store(db) as store:
        return next(i for i in list_items(store, open_only=True) if i.queue == "general")


@pytest.mark.parametrize("value,message", [
    ("9" * 38, f'refused: value amount: "{"9" * 38}" is out of range: a number may have at most 34 significant '
               "digits and must be below 10^34"),
    ("1" + "0" * 34, f'refused: value amount: "1{"0" * 34}" is out of range: a number may have at most 34 '
                     "significant digits and must be below 10^34"),
    ("\u0665", 'refused: value amount: "\u0665" is not a whole number'),
    ("1\u0660", 'refused: value amount: "1\u0660" is not a whole number'),
    ("\uff11\uff12", 'refused: value amount: "\uff11\uff12" is not a whole number'),
    ("1e5", 'refused: value amount: "1e5" is not a whole number'),
    ("+5", 'refused: value amount: "+5" is not a whole number'),
    ("9" * 5000, f'refused: value amount: "{"9" * 20}...99999999 (5000 characters)" is out of range: a number may '
                 "have at most 34 significant digits and must be below 10^34"),
])
def test_a_caseworkers_number_outside_the_case_input_rules_is_refused(db, value, message):
    """The reproduction: `--value amount=` with 38 digits, or with a non-ASCII digit (٥), was accepted.
    Values go through the case-input number rules (ASCII digits only; at most 34 significant digits,
    below 10^34): the value is named, nothing is recorded and the item stays open."""
    item = _referral(db)
    r = run("queue", "decide", db, item.id, "--outcome", "grant", "--value", f"amount={value}", "--by", "kari",
            "--reason", "x")
    assert (r.exit_code, r.output) == (1, message + "\n")
    with open_store(db) as store:
        assert [i.status for i in list_items(store) if i.id == item.id] == ["open"]
        assert not [r for r in store.records() if r.kind == "human"]


@pytest.mark.parametrize("value,stored", [("65000", 65000), (" 65000 ", 65000), ("-3", -3), ("9" * 34, int("9" * 34)),
                                          ("000012", 12)])
def test_a_caseworkers_number_inside_the_rules_is_recorded_exactly(db, value, stored):
    """ASCII whole numbers of up to 34 digits are recorded exactly as given (never rounded)."""
    item = _referral(db)
    r = run("queue", "decide", db, item.id, "--outcome", "grant", "--value", f"amount={value}", "--by", "kari",
            "--reason", "x")
    assert r.exit_code == 0, r.output
    with open_store(db) as store:
        (human,) = [r for r in store.records() if r.kind == "human"]
        assert json.loads(human.decision)["values"] == {"amount": stored}
        assert verify(store).ok


MONEY_RULESET = """\
ruleset: paid
title: p
version: "1"
valid: {from: 2020-01-01}
decision_date: d
case_id: id
automate: []
case:
  id: {type: string}
  d: {type: date}
  income: {type: money}
rules:
  - id: r
    basis: "x"
    when: income > 0
    decide: pay
    values: {amount: income}
    because: "pay {amount}"
otherwise: {refer: manual, basis: y, because: "other"}
"""


@pytest.mark.parametrize("value,ok", [("12.50", True), ("1e3", True), ("0.%s1" % ("0" * 30), True),
                                      ("1" * 35, False), ("1.%s" % ("1" * 34), False), ("1e34", False),
                                      ("\u0661.5", False), ("NaN", False), ("Infinity", False), ("1e999999999", False),
                                      ("1_000", False), (" ", False)])
def test_a_caseworkers_money_value_follows_the_same_rules(tmp_path, value, ok):
    """A money value (a decimal) of up to 34 significant digits below 10^34, in ASCII digits, is recorded
    as given; anything else (35 digits, 10^34, an Arabic-Indic digit, NaN, an exponent past any decimal,
    an underscore) is refused naming the value, exit 1, nothing recorded."""
    ruleset = tmp_path / "paid.yaml"
    ruleset.write_text(MONEY_RULESET)
    cases = tmp_path / "c.jsonl"
    cases.write_text(json.dumps({"id": "P1", "d": "2025-01-01", "income": 100}) + "\n")
    db = tmp_path / "p.db"
    assert run("run", ruleset, cases, "--audit", db, "--workers", 1).exit_code == 0
    with open_store(str(db)) as store:
        (item,) = list_items(store)
    r = run("queue", "decide", db, item.id, "--outcome", "pay", "--value", f"amount={value}", "--by", "kari",
            "--reason", "x")
    with open_store(str(db)) as store:
        humans = [json.loads(r.decision) for r in store.records() if r.kind == "human"]
    if ok:
        assert r.exit_code == 0, r.output
        from decimal import Decimal
        assert Decimal(humans[0]["values"]["amount"]) == Decimal(value)
    else:
        assert r.exit_code == 1 and r.output.startswith("refused: value amount: ") and humans == []


def test_summary_json_dash_writes_the_summary_to_standard_output(tmp_path, cases):
    """`--summary-json -` writes the summary JSON to standard output (the table goes to standard error);
    with `--out -` too, both would want standard output: exit 2, no log."""
    proc = subprocess.run([*VEDTAK, "run", SG, str(cases), "--audit", str(tmp_path / "a.db"), "--summary-json", "-",
                           "--workers", "1"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["read"], summary["decided"]) == (300, 262) and "automation rate" in proc.stderr
    assert not (tmp_path / "-").exists()
    r = run("run", SG, cases, "--audit", tmp_path / "b.db", "--summary-json", "-", "--out", "-")
    assert (r.exit_code, error_line(r)) == (USAGE, "Error: --out - and --summary-json - both name standard output: "
                                                   "give one of them a file")
    assert not (tmp_path / "b.db").exists()


def test_out_dash_to_a_reader_that_goes_away_says_how_to_finish(tmp_path, study_plan):
    """`run --out - | head -1`: the reader goes away after one line. The run stops (exit 3) saying that
    standard output could not be written, every decision of the run is in the log, and --resume
    writes every decision again (each case once, as first decided)."""
    cases = tmp_path / "many.jsonl"
    base = json.loads((STUDY_GRANT / "case.json").read_text())
    cases.write_text("".join(json.dumps(dict(base, case_id=i)) + "\n" for i in range(3000)))  # far over a pipe's buffer
    args = [*VEDTAK, "run", SG, str(cases), "--audit", str(tmp_path / "a.db"), "--out", "-", "--workers", "1",
            "--batch-size", "100"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 3, err
    assert json.loads(first)["case_id"] == 0
    assert "cannot write the decisions to standard output: Broken pipe;" in err and "Traceback" not in err
    assert err.rstrip().endswith("Run the same command with --resume to write every decision again.")
    again = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert [json.loads(line)["case_id"] for line in again.stdout.splitlines()] == list(range(3000))
    with open_store(str(tmp_path / "a.db")) as store:
        assert verify(store).ok


def test_a_log_that_cannot_be_created_says_why_not_disk_full(tmp_path):
    """Past the command's checks (a library caller, or a directory removed meanwhile), a log SQLite
    cannot open or create is a StoreError asking about its directory, not "is its disk full?"."""
    from vedtak.audit.store import StoreError
    with pytest.raises(StoreError) as caught:
        AuditLog.open(str(tmp_path / "gone" / "u.db"))
    assert "cannot be opened or created" in str(caught.value) and "does its directory exist" in str(caught.value)
    assert "disk full" not in str(caught.value)


@pytest.mark.parametrize("args,param", [
    (["decide", "{db}", "1", "--outcome", "deny", "--by", "k\udcff", "--reason", "x"], "--by"),
    (["decide", "{db}", "1", "--outcome", "deny", "--by", "kari", "--reason", "bad \udcff byte"], "--reason"),
    (["decide", "{db}", "1", "--outcome", "grant", "--value", "amount=1\udcff", "--by", "kari", "--reason", "x"],
     "--value"),
    (["review", "{db}", "4", "--by", "kari", "--reason", "r\udcfe"], "--reason"),
    (["review", "{db}", "4\udcfe", "--by", "kari", "--reason", "r"], "CASE_ID"),
    (["claim", "{db}", "1", "--by", "\udcff"], "--by"),
    (["assign", "{db}", "1", "--to", "\udcff", "--by", "siri"], "--to"),
    (["supervisors", "{db}", "--add", "s\udcff", "--by", "s\udcff"], "--add"),
    (["list", "{db}", "--queue", "g\udcff"], "--queue"),
])
def test_queue_text_that_is_not_utf8_is_a_usage_error(db, args, param):
    """A byte that is not UTF-8 in a queue command's text (the shell passes $'\\xff'; Python keeps it as a
    lone surrogate) was a UnicodeEncodeError traceback at the log. Now exit 2 naming the option, and
    nothing changes in the log."""
    with open_store(db) as store:
        before = (len(list(store.records())), [(i.id, i.status, i.assignee) for i in list_items(store)])
    r = run("queue", *[a.replace("{db}", db) for a in args])
    assert r.exit_code == USAGE
    assert error_line(r).startswith(f"Error: Invalid value for '{param}': ")
    assert error_line(r).endswith("holds a byte that is not UTF-8 text; type it again as UTF-8")
    with open_store(db) as store:
        assert (len(list(store.records())), [(i.id, i.status, i.assignee) for i in list_items(store)]) == before


def test_the_queue_library_refuses_lone_surrogates_with_a_code(db):
    """Through the library, a lone surrogate in who or why is a QueueError (not_text), never a crash."""
    from vedtak.audit import queue as queue_api
    with open_store(db) as store:
        item = next(i for i in list_items(store) if i.queue == "general")
        for call in (lambda: queue_api.claim(store, item.id, "k\ud800"),
                     lambda: queue_api.decide(store, item.id, outcome="deny", values={}, by="kari", reason="\udc80"),
                     lambda: queue_api.request_review(store, 4, "kari", "why \udfff")):
            with pytest.raises(queue_api.QueueError) as caught:
                call()
            assert caught.value.code == "not_text"
        assert verify(store).ok


def test_an_existing_log_on_a_read_only_file_system_is_refused_before_the_run(tmp_path, cases, db, monkeypatch):
    """run and decide into an existing log the file system will not let be written (a read-only mount;
    simulated) are exit 2 before anything is decided, and the log is unchanged."""
    import types
    real_statvfs = os.statvfs

    def statvfs(path):
        if os.fspath(path) == db:
            return types.SimpleNamespace(f_flag=os.ST_RDONLY)
        return real_statvfs(path)

    before = open(db, "rb").read()
    monkeypatch.setattr(os, "statvfs", statvfs)
    for args in (["run", SG, cases, "--workers", 1], ["decide", SG, STUDY_GRANT / "case.json"]):
        r = run(*args, "--audit", db)
        assert (r.exit_code, error_line(r)) == (USAGE, f"Error: --audit {db}: the audit log cannot be written "
                                                       "(read-only)")
    assert open(db, "rb").read() == before
