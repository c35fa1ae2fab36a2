"""Old logs stay valid: a log written before record version 2 (tests/fixtures/v1_log.db, made by
tests/fixtures/make_v1_log.sh with commit 4f4221d) verifies, shows, exports and replays with today's
code; new blocks continue its chains; no version 1 row is rewritten; a tampered version 1 row is named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vedtak.audit import AuditLog, open_store
from vedtak.audit.verify import verify

from audit_support import raw
from cli_support import run
from conftest import STUDY_GRANT
from workload import generate

FIXTURE = Path(__file__).with_name("fixtures") / "v1_log.db"
V1_HEAD = 28  # main chain: a batch run (1-25), a caseworker's decision (26), a dask manifest (27), decide (28)
V1_RECORDS = 44  # and the dask run's 4 partition chains of 4 records each


@pytest.fixture
def v1(tmp_path) -> str:
    """A copy of the version 1 fixture log, opened once by a writing command (the schema upgrade)."""
    path = tmp_path / "v1.db"
    shutil.copyfile(FIXTURE, path)
    assert run("queue", "supervisors", path).exit_code == 0
    return str(path)


def v1_rows(db: str) -> tuple[list, list, list]:
    """Every version 1 record row of the main chain and the partition chains, and the runs' rows."""
    return (raw(db, "SELECT * FROM audit_records ORDER BY seq"),
            raw(db, "SELECT * FROM audit_chain_records ORDER BY chain, seq"),
            raw(db, "SELECT * FROM audit_runs"))


def problems(db: str) -> list[tuple[int, str, str]]:
    with open_store(db, read_only=True) as store:
        report = verify(store)
    assert report.ok == (not report.problems)
    return [(p.seq, p.kind, p.chain) for p in report.problems]


def test_the_fixture_is_a_version_1_log():
    """The fixture holds only version 1 rows, as the release before record version 2 wrote them."""
    assert raw(str(FIXTURE), "SELECT value FROM audit_meta WHERE key = 'schema_version'") == [("2",)]
    assert not raw(str(FIXTURE), "SELECT name FROM sqlite_master WHERE name = 'audit_blocks'")
    kinds = [k for (k,) in raw(str(FIXTURE), "SELECT kind FROM audit_records ORDER BY seq")]
    assert len(kinds) == V1_HEAD and kinds.count("referral") == 2 and kinds[24:] == [
        "rejection", "human", "manifest", "decision"]
    assert all(json.loads(b)["record_version"] == 1 for (b,) in raw(str(FIXTURE), "SELECT body FROM audit_records"))
    assert raw(str(FIXTURE), "SELECT count(*), count(DISTINCT chain) FROM audit_chain_records") == [(16, 4)]


def test_a_version_1_log_verifies_shows_exports_and_replays(v1):
    """After the upgrade, auditors' commands read the version 1 log as before, and change none of its rows."""
    before = v1_rows(str(FIXTURE))
    r = run("audit", "verify", v1)
    assert r.exit_code == 0 and r.output.startswith(f"ok: {V1_RECORDS} records, the chain verifies (head {V1_HEAD}, ")
    shown = run("audit", "show", v1, "1")
    assert shown.exit_code == 0
    lines = shown.output.splitlines()
    assert lines[0].startswith("Record 2 (referral, ") and any(line.startswith("Record 26 (human, ") for line in lines)
    assert "Closes work item 1 (record 2)" in shown.output
    exported = [json.loads(line) for line in run("audit", "export", v1).output.splitlines()]
    assert len(exported) == V1_RECORDS and {e["record_version"] for e in exported} == {1}
    main = [e for e in exported if "chain" not in e or e["chain"] is None]
    assert [e["hash"] for e in main] == [h for (h,) in raw(v1, "SELECT hash FROM audit_records ORDER BY seq")]
    r = run("replay", v1)
    assert r.exit_code == 0 and r.output.startswith("replayed 41 records with the rulesets stored in the log: "
                                                    "0 differences, 0 not reproducible")
    assert v1_rows(v1) == before


def test_new_blocks_continue_the_version_1_chain(v1, study_plan):
    """Decisions appended by today's library go into blocks whose chain starts at the version 1 head; the
    whole log verifies and replays, and no version 1 row is rewritten."""
    before = v1_rows(v1)
    ((head_seq, head_hash),) = raw(v1, "SELECT seq, hash FROM audit_head")
    assert head_seq == V1_HEAD
    cases = [{**c, "case_id": 5000 + i} for i, c in enumerate(generate(12, seed=7))]
    with AuditLog.open(v1, batch_size=5) as log:
        assert len(list(log.decide_many(study_plan, cases))) == 12
    found = raw(v1, "SELECT first_seq, last_seq, prev_hash, hash FROM audit_blocks WHERE chain = '' "
                    "ORDER BY first_seq")
    assert [(f, last) for f, last, _, _ in found] == [(29, 33), (34, 38), (39, 40)]
    assert found[0][2] == head_hash
    assert all(b[2] == a[3] for a, b in zip(found, found[1:]))
    assert raw(v1, "SELECT seq, hash FROM audit_head") == [(40, found[-1][3])]
    assert v1_rows(v1) == before
    assert problems(v1) == []
    with open_store(v1) as store:
        records = [r for r in store.records() if r.chain is None]
        assert [r.seq for r in records] == list(range(1, 41))
        assert [getattr(r, "record_version", 1) for r in records] == [1] * V1_HEAD + [2] * 12
        from vedtak.audit.replay import replay
        report = replay(store)
        assert (len(report.differences), len(report.unreproducible)) == (0, 0)


def test_a_batch_run_and_a_caseworker_append_blocks_to_a_version_1_log(v1, tmp_path):
    """A batch run and a caseworker's decision of a work item the version 1 log opened both append blocks
    after its head; a case the version 1 log decided is still caught as already decided."""
    before = v1_rows(v1)
    cases = tmp_path / "more.jsonl"
    lines = [json.dumps({**c, "case_id": 7000 + i}) for i, c in enumerate(generate(6, seed=11))]
    lines.append((STUDY_GRANT / "cases.jsonl").read_text().splitlines()[3])  # case 3: decided in the v1 log
    cases.write_text("\n".join(lines) + "\n")
    r = run("run", STUDY_GRANT, cases, "--audit", v1, "--out", tmp_path / "out.jsonl", "--workers", "1")
    assert r.exit_code == 1  # the repeated case is rejected
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [e["code"] for e in out[-1]["errors"]] == ["already_decided"]
    ((first, prev),) = raw(v1, "SELECT first_seq, prev_hash FROM audit_blocks WHERE chain = '' ORDER BY first_seq "
                               "LIMIT 1")
    assert (first, prev) == (V1_HEAD + 1, before[0][-1][-1])
    # work item 2 was opened by version 1 record 20 (case 19's referral)
    assert run("queue", "claim", v1, "2", "--by", "kari").exit_code == 0
    r = run("queue", "decide", v1, "2", "--outcome", "deny", "--by", "kari", "--reason", "Study load not documented")
    assert r.exit_code == 0 and r.output.startswith("work item 2 decided: deny (audit record 36)")
    with open_store(v1) as store:
        human = store.record(36)
        assert (human.record_version, human.kind, human.case_id) == (2, "human", 19)
        assert json.loads(human.decision)["closes"] == {"record": 20, "work_item": 2}
    assert v1_rows(v1) == before
    assert problems(v1) == []
    assert run("audit", "verify", v1).exit_code == 0


@pytest.mark.parametrize("appended", [False, True], ids=["v1 only", "with blocks after"])
def test_a_tampered_version_1_row_is_still_named(v1, study_plan, appended):
    """A version 1 record edited in place is named at its seq, whether or not blocks follow it."""
    if appended:
        with AuditLog.open(v1) as log:
            list(log.decide_many(study_plan, [{**c, "case_id": 6000 + i} for i, c in enumerate(generate(3, seed=2))]))
    raw(v1, "UPDATE audit_records SET body = replace(body, '\"status\":\"decided\"', '\"status\":\"referred\"') "
            "WHERE seq = 5")
    assert raw(v1, "SELECT body LIKE '%\"status\":\"referred\"%' FROM audit_records WHERE seq = 5") == [(1,)]
    found = problems(v1)
    assert found == [(5, "edited", "")]
    r = run("audit", "verify", v1)
    assert r.exit_code == 1 and r.output.splitlines()[0] == (
        "record 5: edited: record 5 was changed: its content does not match its hash")


def test_the_version_1_head_changed_with_its_hash_recomputed_is_named(v1, study_plan):
    """The last version 1 record rewritten with its hash (and the head) recomputed: the first block no
    longer follows it, and record 28 is named."""
    import hashlib
    with AuditLog.open(v1) as log:
        list(log.decide_many(study_plan, [{**c, "case_id": 6100 + i} for i, c in enumerate(generate(3, seed=5))]))
    ((body,),) = raw(v1, f"SELECT body FROM audit_records WHERE seq = {V1_HEAD}")
    forged = body.replace('"outcome":"grant"', '"outcome":"deny"')
    assert forged != body
    raw(v1, f"UPDATE audit_records SET body = ?, hash = ? WHERE seq = {V1_HEAD}",
        (forged, hashlib.sha256(forged.encode()).hexdigest()))
    assert problems(v1) == [(V1_HEAD, "edited", "")]


def test_a_tampered_version_1_partition_record_is_named(v1):
    """A record of a version 1 partition chain edited in place is named at its chain and seq."""
    ((chain,),) = raw(v1, "SELECT min(chain) FROM audit_chain_records")
    raw(v1, "UPDATE audit_chain_records SET body = replace(body, '\"case_id\":', '\"case_id\": ') "
            "WHERE chain = ? AND seq = 3", (chain,))
    assert (3, "edited", chain) in problems(v1)


def test_reading_commands_read_a_version_1_log_as_it_is(tmp_path):
    """An auditor's copy of a log written before record version 2 (schema version 2), never opened by
    a writer since, is verified, shown, exported, replayed and listed as it is: nothing is upgraded,
    the file's bytes are unchanged and nothing is created beside it."""
    import shutil
    from click.testing import CliRunner
    from vedtak.cli.main import main as cli_main
    db = tmp_path / "old.db"
    shutil.copy(Path(__file__).parent / "fixtures" / "v1_log.db", db)
    before = db.read_bytes()
    runner = CliRunner()
    for args in (["audit", "verify"], ["audit", "show", "--limit", "3"], ["audit", "export"], ["replay"],
                 ["queue", "list"]):
        r = runner.invoke(cli_main, [*args, str(db)])
        assert r.exit_code == 0, (args, r.output)
    assert "0 differences" in runner.invoke(cli_main, ["replay", str(db)]).output
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.db"]


def test_a_dask_run_appends_to_a_version_1_log(v1, tmp_path):
    """A distributed run on the version 1 log: its partition chains are blocks beside the version 1
    partition chains, its manifest a block after the version 1 head; the whole log verifies and no
    version 1 row is rewritten."""
    import subprocess
    import sys
    before = v1_rows(v1)
    cases = tmp_path / "dist.jsonl"
    cases.write_text("".join(json.dumps({**c, "case_id": 8000 + i}) + "\n" for i, c in enumerate(generate(40, seed=4))))
    r = subprocess.run([sys.executable, "-m", "vedtak.cli", "run", str(STUDY_GRANT), str(cases), "--audit", v1,
                        "--executor", "dask", "--workers", "1", "--partition-size", "2KB",
                        "--out", str(tmp_path / "parts")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    after = v1_rows(v1)
    assert after[:2] == before[:2] and set(before[2]) < set(after[2])  # one more run
    ((first, prev),) = raw(v1, "SELECT first_seq, prev_hash FROM audit_blocks WHERE chain = '' ORDER BY first_seq "
                               "LIMIT 1")
    assert (first, prev) == (V1_HEAD + 1, before[0][-1][-1])
    ((chains,),) = raw(v1, "SELECT count(DISTINCT chain) FROM audit_blocks WHERE chain <> ''")
    assert chains >= 2
    assert problems(v1) == []
    out = run("audit", "verify", v1)
    assert out.exit_code == 0 and f"{4 + chains} partition chains match the manifests of 2 runs" in out.output
