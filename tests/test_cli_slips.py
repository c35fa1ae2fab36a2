"""Operator slips on the command line: a clear message and the right exit code, never a traceback, nothing lost.

Covers issue 13 §4 (an output path naming an input or the audit log, unwritable or missing output
paths, key and checkpoint mix-ups, the durable backend without durable-rules, flags that would be
silently ignored) and §7 (control characters from data printed raw). The sweep of every command
over nonsense paths is in test_cli_sweep.py.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vedtak.audit import AuditLog
from vedtak.cli.common import safe_json, safe_text

from conftest import STUDY_GRANT
from workload import generate
from cli_support import USAGE, error_line, run

SG = str(STUDY_GRANT)


@pytest.fixture
def db(tmp_path, study_plan):
    path = str(tmp_path / "decisions.db")
    with AuditLog.open(path) as log:
        list(log.decide_many(study_plan, generate(10, seed=3)))
    return path


@pytest.fixture
def cases(tmp_path):
    path = tmp_path / "cases.jsonl"
    shutil.copy(STUDY_GRANT / "cases.jsonl", path)
    return path


# -- --out naming an input file or the audit log ---------------------------------------------------

@pytest.mark.parametrize("how", ["same", "dot-slash", "symlink", "hardlink"])
def test_out_naming_the_input_is_refused_before_anything_is_written(tmp_path, cases, how, monkeypatch):
    """--out naming the input (also as ./name, a symbolic or a hard link) is exit 2; the input stays whole, no log."""
    monkeypatch.chdir(tmp_path)
    before = cases.read_bytes()
    out = {"same": "cases.jsonl", "dot-slash": "./cases.jsonl", "symlink": "link.jsonl", "hardlink": "hard.jsonl"}[how]
    if how == "symlink":
        os.symlink("cases.jsonl", "link.jsonl")
    if how == "hardlink":
        os.link("cases.jsonl", "hard.jsonl")
    r = run("run", SG, "cases.jsonl", "--audit", "a.db", "--out", out, "--workers", 1)
    assert r.exit_code == USAGE
    assert error_line(r) == (f"Error: --out {out} names the input file cases.jsonl: writing there would destroy it; "
                             "choose another path")
    assert cases.read_bytes() == before
    assert not (tmp_path / "a.db").exists()


@pytest.mark.parametrize("suffix,what", [("", "the audit log"), ("-wal", "the audit log's wal file"),
                                         ("-journal", "the audit log's journal file")])
def test_out_naming_the_audit_log_or_its_journal_is_refused(tmp_path, db, cases, suffix, what):
    """--out naming the audit log or its -wal/-journal file is exit 2; the log is untouched and still verifies."""
    before = open(db, "rb").read()
    r = run("run", SG, cases, "--audit", db, "--out", db + suffix, "--workers", 1)
    assert r.exit_code == USAGE
    assert error_line(r) == (f"Error: --out {db + suffix} names {what} {db + suffix}: writing there would destroy "
                             "it; choose another path")
    assert open(db, "rb").read() == before
    assert run("audit", "verify", db).exit_code == 0


def test_summary_json_naming_the_input_or_the_out_file_is_refused(tmp_path, cases):
    """--summary-json may name neither an input nor the --out file."""
    r = run("run", SG, cases, "--audit", tmp_path / "a.db", "--summary-json", cases)
    assert r.exit_code == USAGE and "--summary-json" in error_line(r) and "the input file" in error_line(r)
    out = tmp_path / "o.jsonl"
    r = run("run", SG, cases, "--audit", tmp_path / "a.db", "--out", out, "--summary-json", out)
    assert r.exit_code == USAGE
    assert error_line(r) == (f"Error: --summary-json {out} names the --out file {out}: writing there would destroy "
                             "it; choose another path")
    assert not (tmp_path / "a.db").exists()


def test_out_naming_the_ruleset_file_or_an_audit_log_as_input_is_refused(tmp_path, db):
    """A run never writes over its ruleset file, and never reads its own audit log as a case file."""
    rs = tmp_path / "sg.yaml"
    shutil.copy(STUDY_GRANT / "study-grant.yaml", rs)
    r = run("run", rs, STUDY_GRANT / "cases.jsonl", "--audit", tmp_path / "a.db", "--out", rs)
    assert r.exit_code == USAGE and f"names the ruleset file {rs}" in error_line(r)
    r = run("run", SG, db, "--audit", db)
    assert (r.exit_code, error_line(r)) == (USAGE, f"Error: {db} is the audit log {db}, not a case file")


def test_decide_audit_naming_the_case_file_is_refused(tmp_path):
    """decide --audit naming the case file would turn the case into a database: exit 2, the case is unchanged."""
    case = tmp_path / "case.json"
    shutil.copy(STUDY_GRANT / "case.json", case)
    before = case.read_bytes()
    r = run("decide", SG, case, "--audit", case)
    assert r.exit_code == USAGE
    assert error_line(r) == f"Error: --audit {case} names the case file {case}; give the audit log's own path"
    assert case.read_bytes() == before


def test_audit_export_and_checkpoint_never_write_over_the_log(db, keys, tmp_path):
    """audit export -o and audit checkpoint -o naming the log are exit 2, and the log still verifies."""
    before = open(db, "rb").read()
    r = run("audit", "export", db, "-o", db)
    assert (r.exit_code, error_line(r)) == (
        USAGE, f"Error: -o {db} names the audit log {db}: writing there would destroy it; choose another path")
    r = run("audit", "checkpoint", db, "--key", keys[0], "-o", db)
    assert r.exit_code == USAGE and "names the audit log" in error_line(r)
    r = run("audit", "checkpoint", db, "--key", keys[0], "-o", keys[0])
    assert r.exit_code == USAGE and "names the --key file" in error_line(r)
    assert open(db, "rb").read() == before


def test_docs_never_writes_over_the_ruleset(tmp_path):
    """docs -o naming the ruleset file it documents is exit 2, and the ruleset is unchanged."""
    rs = tmp_path / "sg.yaml"
    shutil.copy(STUDY_GRANT / "study-grant.yaml", rs)
    before = rs.read_bytes()
    r = run("docs", rs, "-o", rs)
    assert r.exit_code == USAGE and f"names the ruleset file {rs}" in error_line(r)
    assert rs.read_bytes() == before


@pytest.mark.parametrize("db", ["", ":memory:"])
def test_an_audit_log_that_would_vanish_is_refused(tmp_path, db):
    """--audit '' or :memory: would record decisions nowhere (or, for decide '', not at all): exit 2."""
    message = f"Error: --audit needs a file path or a postgresql:// URL, not {db!r} (SQLite would keep that log nowhere)"
    for args in (["decide", SG, STUDY_GRANT / "case.json", "--audit", db],
                 ["run", SG, STUDY_GRANT / "cases.jsonl", "--audit", db, "--workers", 1]):
        r = run(*args)
        assert (r.exit_code, error_line(r)) == (USAGE, message)
    r = run("audit", "verify", db)
    assert (r.exit_code, error_line(r)) == (USAGE, message.replace("--audit", "DB"))


def test_a_file_that_is_not_an_audit_log_is_refused_as_one(tmp_path):
    """--audit naming a file that is not a SQLite database, or a directory: exit 2, and the file is untouched."""
    cases = tmp_path / "cases.jsonl"
    shutil.copy(STUDY_GRANT / "cases.jsonl", cases)
    before = cases.read_bytes()
    r = run("run", SG, STUDY_GRANT / "cases.jsonl", "--audit", cases, "--workers", 1)
    assert (r.exit_code, error_line(r)) == (USAGE, f"Error: --audit {cases} is not a vedtak audit log (not a SQLite database)")
    r = run("decide", SG, STUDY_GRANT / "case.json", "--audit", tmp_path)
    assert (r.exit_code, error_line(r)) == (USAGE, f"Error: --audit {tmp_path} is a directory, not an audit log")
    assert cases.read_bytes() == before


# -- unwritable or missing output paths, checked before the run ------------------------------------

def _missing(tmp_path) -> str:
    return str(tmp_path / "no-such-dir" / "out")


def test_run_output_paths_are_checked_before_the_run(tmp_path, cases):
    """--out or --summary-json in a missing directory, or --out a directory: exit 2 and no log is created."""
    db = tmp_path / "a.db"
    for args, message in [
        (["--out", _missing(tmp_path)], f"Error: --out {_missing(tmp_path)}: the directory {tmp_path / 'no-such-dir'} does not exist"),
        (["--summary-json", _missing(tmp_path)],
         f"Error: --summary-json {_missing(tmp_path)}: the directory {tmp_path / 'no-such-dir'} does not exist"),
        (["--out", tmp_path], f"Error: --out {tmp_path} is a directory; give a file path"),
        (["--out", cases / "x"], f"Error: --out {cases / 'x'}: the directory {cases} is not a directory"),
    ]:
        r = run("run", SG, cases, "--audit", db, "--workers", 1, *args)
        assert (r.exit_code, error_line(r)) == (USAGE, message)
        assert not db.exists()


def test_a_distributed_run_checks_its_output_directory_first(tmp_path, cases):
    """With --executor dask, --out is a directory: a file, or one whose part files would replace an input, is exit 2."""
    db = tmp_path / "a.db"
    r = run("run", SG, cases, "--audit", db, "--executor", "dask", "--out", cases)
    assert (r.exit_code, error_line(r)) == (USAGE, f"Error: --out {cases} names the input file {cases}: writing there "
                                                   "would destroy it; choose another path")
    other = tmp_path / "other.txt"
    other.write_text("")
    r = run("run", SG, cases, "--audit", db, "--executor", "dask", "--out", other)
    assert (r.exit_code, error_line(r)) == (USAGE, f"Error: --out {other} is a file; give a directory path")
    part = tmp_path / "part-00000.jsonl"
    shutil.copy(cases, part)
    r = run("run", SG, part, "--audit", db, "--executor", "dask", "--out", tmp_path)
    assert r.exit_code == USAGE and "would hold the partition output file" in error_line(r)
    assert not db.exists()


def test_other_output_paths_are_checked_before_writing(tmp_path, db, keys):
    """docs -o, audit checkpoint -o, audit export -o and audit keygen --out in a missing directory: exit 2."""
    missing = _missing(tmp_path)
    parent = tmp_path / "no-such-dir"
    for args, message in [
        (["docs", SG, "-o", missing], f"Error: -o {missing}: the directory {parent} does not exist"),
        (["audit", "checkpoint", db, "--key", keys[0], "-o", missing], f"Error: -o {missing}: the directory {parent} does not exist"),
        (["audit", "export", db, "-o", missing], f"Error: -o {missing}: the directory {parent} does not exist"),
        (["audit", "keygen", "--out", missing], f"Error: --out {missing}.key: the directory {parent} does not exist"),
        (["audit", "keygen", "--out", tmp_path], f"Error: --out {tmp_path} is a directory; give a prefix such as "
                                                 f"{tmp_path / 'audit'}"),
        (["audit", "keygen", "--out", keys[0]], f"Error: --out {keys[0]}: give the prefix alone; keygen adds .key and "
                                                ".pub"),
        (["audit", "keygen", "--out", keys[0][:-4]], f"Error: {keys[0]} exists; not overwriting a key (choose another "
                                                     "--out)"),
    ]:
        r = run(*args)
        assert (r.exit_code, error_line(r)) == (USAGE, message), args


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_output_is_a_usage_error(tmp_path, cases):
    """An output in a directory the user cannot write to is exit 2 before the run."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        r = run("run", SG, cases, "--audit", tmp_path / "a.db", "--summary-json", locked / "s.json")
        assert (r.exit_code, error_line(r)) == (
            USAGE, f"Error: --summary-json {locked / 's.json'}: cannot create a file in {locked} (permission denied)")
    finally:
        locked.chmod(0o700)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_summary_that_cannot_be_written_after_the_run_is_a_message(tmp_path, cases):
    """--summary-json on a full disk (/dev/full): exit 1 with a message, and every decision is in the log."""
    db = tmp_path / "a.db"
    r = run("run", SG, cases, "--audit", db, "--workers", 1, "--summary-json", "/dev/full")
    assert r.exit_code == 1
    assert error_line(r) == ("Error: cannot write --summary-json /dev/full: No space left on device; every decision "
                             "is recorded in the audit log and the summary above is complete")
    assert run("audit", "verify", db).exit_code == 0


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_outputs_on_a_full_disk_are_a_message(db, keys):
    """docs -o, audit checkpoint -o and audit export -o on a full disk (/dev/full): exit 1 with a message."""
    for args, after in [(["docs", SG, "-o", "/dev/full"], ""),
                        (["audit", "checkpoint", db, "--key", keys[0], "-o", "/dev/full"], ""),
                        # a device is written as it goes (a file is written beside and renamed into place)
                        (["audit", "export", db, "-o", "/dev/full"], "; the output may be partial")]:
        r = run(*args)
        assert (r.exit_code, error_line(r)) == (1, f"Error: cannot write -o /dev/full: No space left on device{after}")


def test_a_reader_that_goes_away_ends_a_command_quietly(tmp_path, study_plan):
    """`vedtak audit export DB | head -c 10`: the export stops without a traceback or an error message."""
    import subprocess
    path = str(tmp_path / "big.db")
    with AuditLog.open(path) as log:
        list(log.decide_many(study_plan, generate(300, seed=4)))
    proc = subprocess.Popen([sys.executable, "-m", "vedtak.cli", "audit", "export", path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout.read(10).startswith(b'{"')
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait() == 1 and stderr == ""


def test_the_private_key_is_never_readable_by_others(keys):
    """keygen creates the private key with mode 0600 from the start."""
    assert os.stat(keys[0]).st_mode & 0o777 == 0o600


# -- key and checkpoint mix-ups --------------------------------------------------------------------

KEYGEN = "`vedtak audit keygen --out PREFIX` writes PREFIX.key (private) and PREFIX.pub (public)"


@pytest.fixture
def checkpoint(db, keys, tmp_path):
    path = tmp_path / "head.json"
    assert run("audit", "checkpoint", db, "--key", keys[0], "-o", path).exit_code == 0
    return str(path)


@pytest.fixture
def odd_keys(tmp_path):
    """Files a key option may be given by mistake: an EC key pair, an encrypted key, garbage, an empty file."""
    from cryptography.hazmat.primitives import serialization as s
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    ec_key = ec.generate_private_key(ec.SECP256R1())
    files = {
        "ec.key": ec_key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()),
        "ec.pub": ec_key.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo),
        "locked.key": ed25519.Ed25519PrivateKey.generate().private_bytes(
            s.Encoding.PEM, s.PrivateFormat.PKCS8, s.BestAvailableEncryption(b"secret")),
        "garbage": bytes(range(256)) * 3,
        "empty": b"",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: str(tmp_path / name) for name in files}


def test_verify_given_the_private_key_says_so(db, keys, checkpoint):
    """verify --public-key given the private key: exit 2, naming the mix-up."""
    r = run("audit", "verify", db, "--checkpoint", checkpoint, "--public-key", keys[0])
    assert (r.exit_code, error_line(r)) == (USAGE, f"Error: --public-key {keys[0]}: this is a private key; verifying "
                                                   "needs the public key (PREFIX.pub); keep the private key secret")


def test_a_key_file_given_as_the_checkpoint_says_so(db, keys):
    """verify --checkpoint given a key file: exit 2, naming the mix-up."""
    for key in keys:
        r = run("audit", "verify", db, "--checkpoint", key, "--public-key", keys[1])
        assert (r.exit_code, error_line(r)) == (USAGE, f"Error: --checkpoint {key}: this is a key file, not a "
                                                       "checkpoint (`vedtak audit checkpoint` writes one)")


def test_checkpoint_given_the_public_key_says_so(db, keys, tmp_path):
    """checkpoint --key given the public key: exit 2, naming the mix-up; nothing is written."""
    r = run("audit", "checkpoint", db, "--key", keys[1], "-o", tmp_path / "cp.json")
    assert (r.exit_code, error_line(r)) == (
        USAGE, f"Error: --key {keys[1]}: this is a public key; signing needs the private key ({KEYGEN})")
    assert not (tmp_path / "cp.json").exists()


def test_other_files_given_as_keys_and_checkpoints(db, keys, checkpoint, odd_keys):
    """Another kind of key, an encrypted key, garbage or an empty file as a key or checkpoint: exit 2, said what."""
    cases = [
        (["audit", "checkpoint", db, "--key", odd_keys["ec.key"], "-o", checkpoint + "2"],
         "the key is of type EC; checkpoints are signed with Ed25519 keys"),
        (["audit", "checkpoint", db, "--key", odd_keys["locked.key"], "-o", checkpoint + "2"],
         "the private key is encrypted with a password"),
        (["audit", "checkpoint", db, "--key", odd_keys["garbage"], "-o", checkpoint + "2"], "not a PEM private key"),
        (["audit", "checkpoint", db, "--key", odd_keys["empty"], "-o", checkpoint + "2"], "not a PEM private key"),
        (["audit", "verify", db, "--checkpoint", checkpoint, "--public-key", odd_keys["ec.pub"]],
         "the key is of type EC; checkpoints are signed with Ed25519 keys"),
        (["audit", "verify", db, "--checkpoint", checkpoint, "--public-key", odd_keys["garbage"]],
         "not a PEM public key"),
        (["audit", "verify", db, "--checkpoint", checkpoint, "--public-key", odd_keys["empty"]],
         "not a PEM public key"),
        (["audit", "verify", db, "--checkpoint", odd_keys["garbage"], "--public-key", keys[1]],
         "not a checkpoint: `vedtak audit checkpoint` writes JSON with seq, hash, signed_at, signature"),
        (["audit", "verify", db, "--checkpoint", odd_keys["empty"], "--public-key", keys[1]], "not a checkpoint"),
        (["audit", "verify", db, "--checkpoint", db, "--public-key", keys[1]], "not a checkpoint"),
    ]
    for args, message in cases:
        r = run(*args)
        assert r.exit_code == USAGE and message in error_line(r), (args, r.output)
    assert not os.path.exists(checkpoint + "2")


def test_a_checkpoint_with_fields_of_the_wrong_type_is_refused(db, keys, checkpoint, tmp_path):
    """A checkpoint whose seq is not a whole number (an edited file) is exit 2, not a traceback."""
    data = json.loads(open(checkpoint).read())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(dict(data, seq="x")))
    r = run("audit", "verify", db, "--checkpoint", bad, "--public-key", keys[1])
    assert r.exit_code == USAGE and "not a checkpoint" in error_line(r)


def test_the_right_keys_still_verify(db, keys, checkpoint):
    """The checks above let the intended use through: a checkpoint verifies with its public key."""
    r = run("audit", "verify", db, "--checkpoint", checkpoint, "--public-key", keys[1])
    assert r.exit_code == 0 and "checkpoint at record 10 verified" in r.output


def test_the_library_reports_a_wrong_public_key_as_a_problem(db, keys, checkpoint):
    """verify() given a private key as the public key reports a checkpoint problem instead of raising."""
    from vedtak.audit.log import open_store
    from vedtak.audit.verify import verify
    with open_store(db) as store:
        report = verify(store, checkpoint=json.loads(open(checkpoint).read()),
                        public_key=open(keys[0], "rb").read())
    assert [(p.kind, p.message.split(";")[0]) for p in report.problems] == [("checkpoint", "this is a private key")]


# -- the durable backend without durable-rules ------------------------------------------------------

def test_durable_backend_without_durable_rules_is_a_usage_error(monkeypatch):
    """decide --backend durable when durable-rules cannot be imported: exit 2 with how to install it."""
    monkeypatch.setitem(sys.modules, "durable", None)
    monkeypatch.setitem(sys.modules, "durable.lang", None)
    r = run("decide", SG, STUDY_GRANT / "case.json", "--backend", "durable")
    assert (r.exit_code, error_line(r)) == (
        USAGE, "Error: --backend durable needs durable-rules, which is not installed: pip install 'vedtak[durable]' "
               "(or use the default backend)")


# -- flags that would be silently ignored -----------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["decide", SG, str(STUDY_GRANT / "case.json"), "--trace"],
     "--trace shows the evaluation trace in the JSON output: add --json"),
    (["decide", SG, str(STUDY_GRANT / "case.json"), "--pii", "drop"], "--pii says what the audit log keeps: add --audit DB"),
    (["decide", SG, str(STUDY_GRANT / "case.json"), "--audit", "{tmp}/a.db", "--pii-key-file", "{key}"],
     "--pii-key-file is the key for --pii pseudonymise; it is not used otherwise"),
    (["run", SG, "{cases}", "--audit", "{tmp}/a.db", "--partition-size", "1MB"],
     "--partition-size applies only with --executor dask"),
    (["run", SG, "{cases}", "--audit", "{tmp}/a.db", "--scheduler", "tcp://x:1"],
     "--scheduler applies only with --executor dask"),
    (["run", SG, "{cases}", "--audit", "{tmp}/a.db", "--pii", "drop", "--pii-key-file", "{key}"],
     "--pii-key-file is the key for --pii pseudonymise; it is not used otherwise"),
    (["run", SG, "{cases}", "--audit", "postgresql://x/y", "--executor", "dask", "--scheduler", "tcp://x:1",
      "--workers", "2"], "--workers sets the local cluster's workers; a --scheduler's cluster has its own"),
    (["audit", "verify", "{tmp}/a.db", "--public-key", "{key}"],
     "--public-key verifies a --checkpoint: add --checkpoint FILE"),
    (["run", SG, "{cases}", "--audit", "{tmp}/a.db", "--executor", "dask", "--redecide"],
     "--redecide works with the local executor only (a partition cannot supersede records on other chains); "
     "run it without --executor dask"),
    (["replay", "{tmp}/a.db", "--json", "--limit", "5"],
     "--limit shortens the text report; --json lists every changed case"),
    (["audit", "show", "{tmp}/a.db", "1001", "--limit", "5"],
     "--limit sets how many latest records to list without CASE_ID; a case shows all its records"),
])
def test_a_flag_that_would_be_ignored_is_a_usage_error(tmp_path, cases, args, message):
    """A flag that has no effect in its context is exit 2 naming what it needs, and nothing is recorded."""
    key = tmp_path / "pii.key"
    key.write_text("secret")
    r = run(*[a.format(tmp=tmp_path, cases=cases, key=key) for a in args])
    assert (r.exit_code, error_line(r)) == (USAGE, f"Error: {message}")
    assert not (tmp_path / "a.db").exists()


def test_the_flags_still_work_in_their_context(tmp_path):
    """--trace with --json, and --pii with --audit, are accepted."""
    r = run("decide", SG, STUDY_GRANT / "case.json", "--json", "--trace")
    assert r.exit_code == 0 and "trace" in json.loads(r.output)
    r = run("decide", SG, STUDY_GRANT / "case.json", "--audit", tmp_path / "a.db", "--pii", "drop")
    assert r.exit_code == 0


# -- control characters from data ------------------------------------------------------------------

HOSTILE = "A\x1b[31mRED\u202eevil\x07\x85\u2028"
SHOWN = "A\\x1b[31mRED\\u202eevil\\x07\\x85\\u2028"


def _string_id_ruleset(tmp_path):
    text = (STUDY_GRANT / "study-grant.yaml").read_text().replace(
        "  case_id: {type: int,", "  case_id: {type: string,")
    path = tmp_path / "sg.yaml"
    path.write_text(text)
    return path


def _assert_safe(output: str) -> None:
    for ch in ("\x1b", "\u202e", "\x07", "\x85", "\u2028"):
        assert ch not in output


def test_run_and_audit_show_escape_control_characters(tmp_path):
    """A case id and a field name holding ESC, U+202E and other controls are printed escaped by run and audit show."""
    rs = _string_id_ruleset(tmp_path)
    case = json.loads((STUDY_GRANT / "case.json").read_text())
    lines = [dict(case, case_id=HOSTILE), dict(case, case_id=HOSTILE), dict(case, case_id="B", **{"x\x1b[2J": 1})]
    path = tmp_path / "cases.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in lines))
    db = tmp_path / "a.db"
    r = run("run", rs, path, "--audit", db, "--workers", 1)
    assert r.exit_code == 1
    _assert_safe(r.output)
    assert f"{path}:2: duplicate_case_id: case_id: case id {SHOWN} appears more than once" in r.output
    assert f"{path}:3: unknown_field: x\\x1b[2J: not a field of this ruleset's cases" in r.output
    listing = run("audit", "show", db)
    _assert_safe(listing.output)
    assert SHOWN in listing.output
    shown = run("audit", "show", db, HOSTILE)
    assert shown.exit_code == 0
    _assert_safe(shown.output)
    assert f"Case {SHOWN}: decided: grant" in shown.output


def test_decide_escapes_control_characters_and_json_stays_the_same_value(tmp_path):
    """decide prints a hostile case id escaped; with --json the text is escaped JSON of the very same value."""
    rs = _string_id_ruleset(tmp_path)
    case = dict(json.loads((STUDY_GRANT / "case.json").read_text()), case_id=HOSTILE + "\U000e0041")
    r = run("decide", rs, "-", input=json.dumps(case))
    assert r.exit_code == 0
    _assert_safe(r.output)
    assert r.output.splitlines()[0] == f"Case {SHOWN}\\U000e0041: decided: grant"
    r = run("decide", rs, "-", "--json", input=json.dumps(case))
    _assert_safe(r.output)
    assert "\U000e0041" not in r.output
    assert json.loads(r.output)["case_id"] == HOSTILE + "\U000e0041"


def test_replay_reports_escape_control_characters(tmp_path):
    """replay --against lists changed cases with their ids escaped."""
    rs = _string_id_ruleset(tmp_path)
    case = dict(json.loads((STUDY_GRANT / "case.json").read_text()), case_id=HOSTILE)
    db = tmp_path / "a.db"
    assert run("decide", rs, "-", "--audit", db, input=json.dumps(case)).exit_code == 0
    changed = tmp_path / "changed.yaml"
    text = rs.read_text()
    assert "MIN_AGE: {values: {2020-01-01: 18}" in text
    changed.write_text(text.replace("MIN_AGE: {values: {2020-01-01: 18}", "MIN_AGE: {values: {2020-01-01: 23}"))
    r = run("replay", db, "--against", changed)
    assert r.exit_code == 0
    _assert_safe(r.output)
    assert f"case {SHOWN}:" in r.output


def test_queue_list_and_show_escape_control_characters(tmp_path):
    """queue list (table and --json) and queue show print a hostile case id escaped, and the JSON keeps its value."""
    rs = _string_id_ruleset(tmp_path)
    case = dict(json.loads((STUDY_GRANT / "case.json").read_text()), case_id=HOSTILE)
    db = tmp_path / "a.db"
    assert run("decide", rs, "-", "--audit", db, input=json.dumps(case)).exit_code == 0
    r = run("queue", "review", db, HOSTILE, "--by", "kari", "--reason", "disputed \x1b[2J")
    assert r.exit_code == 0
    listing = run("queue", "list", db)
    _assert_safe(listing.output)
    assert SHOWN in listing.output
    as_json = run("queue", "list", db, "--json")
    _assert_safe(as_json.output)
    assert [item["case_id"] for item in json.loads(as_json.output)] == [HOSTILE]
    item = json.loads(as_json.output)[0]["id"]
    shown = run("queue", "show", db, item)
    assert shown.exit_code == 0
    _assert_safe(shown.output)
    assert f"Case {SHOWN}" in shown.output
    assert '"case_id": "A\\u001b[31mRED\\u202eevil\\u0007\\u0085\\u2028"' in shown.output  # the case data as JSON


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec=None, categories=None), max_size=40))
def test_safe_text_leaves_nothing_a_terminal_acts_on(text):
    """For any text (surrogates included), safe_text has no control, format or bidi character and encodes as UTF-8."""
    import unicodedata
    shown = safe_text(text)
    shown.encode("utf-8")
    assert not [c for c in shown if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp")
                or (unicodedata.category(c) == "Cf" and c not in "\u200c\u200d")]
    if all(" " <= c <= "~" for c in text):
        assert shown == text


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(st.characters(codec=None)),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=8))
def test_safe_json_is_the_same_json_value(value):
    """safe_json escapes only inside strings: the text parses to the same value, and encodes as UTF-8."""
    for text in (json.dumps(value, ensure_ascii=False), json.dumps(value, ensure_ascii=False, indent=2)):
        safe = safe_json(text)
        safe.encode("utf-8")
        assert json.loads(safe) == value
