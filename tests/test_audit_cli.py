"""The audit and replay commands through CliRunner, on a SQLite log: exact output and exit codes."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from vedtak.audit import AuditLog
from vedtak.audit.blocks import DIGEST
from vedtak.cli.main import main

from vedtak.audit import open_store

from audit_support import raw
from block_support import block_at, edit_record, write_block
from conftest import STUDY_GRANT
from workload import generate


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture
def db(tmp_path, study_plan):
    """A log of 30 study-grant decisions in three blocks: records 1-10, 11-20 and 21-30."""
    path = str(tmp_path / "decisions.db")
    with AuditLog.open(path, batch_size=10) as log:
        list(log.decide_many(study_plan, generate(30, seed=5)))
    return path


def test_decide_with_audit_records_before_printing(tmp_path):
    """decide --audit prints the decision the log's record renders, byte for byte, and commits to."""
    path = tmp_path / "one.db"
    r = run("decide", STUDY_GRANT, STUDY_GRANT / "case.json", "--audit", path, "--json")
    assert r.exit_code == 0
    with open_store(str(path)) as store:
        (record,) = list(store.records())
        assert record.record_version == 2 and record.renders_exactly
        assert json.loads(record.decision) == json.loads(r.output)
    assert raw(str(path), "SELECT first_seq, last_seq FROM audit_blocks") == [(1, 1)]


def test_verify_ok(db):
    r = run("audit", "verify", db)
    assert r.exit_code == 0
    assert r.output.startswith("ok: 30 records, the chain verifies (head 30, ")


def test_verify_names_the_first_bad_record_and_exits_1(db):
    """An edited record and a record removed from another block: both named, the first bad one last."""
    edit_record(db, 7, lambda meta: meta.update(r="not-resident" if meta.get("r") != "not-resident" else "grant"))
    block = block_at(db, 20)
    block["records"].pop()
    block["digests"] = block["digests"][:-DIGEST]
    write_block(db, block)
    r = run("audit", "verify", db)
    assert r.exit_code == 1
    assert r.output == ("record 7: edited: record 7 was changed: its content does not match its hash\n"
                        "record 20: deleted: record 20 was removed from the block of records 11 to 20 (written "
                        "with 10 records)\n"
                        "FAILED: 2 problems; first bad record: 7\n")
    data = json.loads(run("audit", "verify", db, "--json").output)
    assert (data["ok"], data["first_bad_seq"], [p["kind"] for p in data["problems"]]) == (False, 7,
                                                                                           ["edited", "deleted"])


def test_signed_checkpoint_catches_a_truncated_tail(db, tmp_path):
    prefix = tmp_path / "audit"
    assert run("audit", "keygen", "--out", prefix).exit_code == 0
    cp = tmp_path / "head.json"
    r = run("audit", "checkpoint", db, "--key", f"{prefix}.key", "-o", cp)
    assert r.exit_code == 0 and r.output.startswith("signed record 30 (")
    ok = run("audit", "verify", db, "--checkpoint", cp, "--public-key", f"{prefix}.pub")
    assert ok.exit_code == 0 and "checkpoint at record 30 verified" in ok.output
    (hash20,) = raw(db, "SELECT hash FROM audit_blocks WHERE last_seq = 20")[0]
    raw(db, "DELETE FROM audit_blocks WHERE first_seq > 20")
    raw(db, "DELETE FROM audit_case_index WHERE seq > 20")
    raw(db, "UPDATE audit_head SET seq = 20, hash = ?", (hash20,))
    assert run("audit", "verify", db).exit_code == 0
    r = run("audit", "verify", db, "--checkpoint", cp, "--public-key", f"{prefix}.pub")
    assert r.exit_code == 1
    assert r.output.splitlines()[0] == ("record 21: truncated: the signed checkpoint covers record 30 but the "
                                        "log ends at 20")
    assert run("audit", "verify", db, "--checkpoint", cp).exit_code == 2


def test_show_explains_a_recorded_case(db):
    r = run("audit", "show", db, "3")
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[0].startswith("Record 4 (decision, recorded ")
    assert lines[1].startswith("  Case 3: ")
    assert "  Trace:" in lines
    assert run("audit", "show", db, "nope").exit_code == 1


def test_show_without_a_case_lists_the_latest_records(db):
    r = run("audit", "show", db, "--limit", "3")
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[0].split() == ["seq", "recorded", "at", "kind", "case", "result", "rule"]
    assert [line.split()[0] for line in lines[1:]] == ["28", "29", "30"]


def test_export_writes_one_verified_record_per_line(db):
    """Each record exported with its decision rendered again, the SHA-256 of the decision released (which
    the rendering has) and its block's hashes."""
    import hashlib
    r = run("audit", "export", db)
    records = [json.loads(line) for line in r.output.splitlines()]
    assert [e["seq"] for e in records] == list(range(1, 31)) and {e["record_version"] for e in records} == {2}
    blocks = raw(db, "SELECT first_seq, prev_hash, hash FROM audit_blocks ORDER BY first_seq")
    assert [(e["block_prev_hash"], e["hash"]) for e in records] == [(p, h) for f, p, h in blocks for _ in range(10)]
    assert blocks[0][1] == "0" * 64 and blocks[1][1] == blocks[0][2]
    with open_store(db) as store:
        for e, record in zip(records, store.records()):
            assert e["released_sha256"] == hashlib.sha256(record.decision.encode()).hexdigest()
            assert e["decision"] == json.loads(record.decision)


def test_replay_of_a_clean_log(db):
    r = run("replay", db)
    assert (r.exit_code, r.output) == (0, "replayed 30 records with the rulesets stored in the log: "
                                          "0 differences, 0 not reproducible\n")


def test_replay_against_a_changed_ruleset(db, tmp_path):
    changed = tmp_path / "sg"
    shutil.copytree(STUDY_GRANT, changed)
    text = (changed / "study-grant.yaml").read_text()
    (changed / "study-grant.yaml").write_text(text.replace("BASE_MONTHLY: {unit: NOK, values: {2020-01-01: 13000}",
                                                           "BASE_MONTHLY: {unit: NOK, values: {2020-01-01: 13100}"))
    r = run("replay", db, "--against", changed, "--json")
    assert r.exit_code == 0
    data = json.loads(r.output)
    grants = [c for c in data["changed"] if [ch["key"] for ch in c["changes"]] == ["values"]]
    assert grants and all(c["changes"][0]["replayed"]["amount"] > c["changes"][0]["recorded"]["amount"]
                          for c in grants)
    with_values = [c for c in data["changed"] if "values" in [ch["key"] for ch in c["changes"]]]
    assert data["value_deltas"]["amount"]["changed"] == len(with_values)
    text_out = run("replay", db, "--against", changed).output
    assert text_out.splitlines()[0] == (f"replayed 30 records against study-grant 2024.1: {len(data['changed'])} "
                                        "changed, 0 not reproducible")


def test_missing_log_is_a_usage_error(tmp_path):
    r = run("audit", "verify", tmp_path / "nothing.db")
    assert r.exit_code == 2 and "no audit log at" in r.output
