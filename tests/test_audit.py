"""The audit log, one conformance suite for SQLite and PostgreSQL: chain, tamper detection, replay."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vedtak
from vedtak.audit import AuditLog, blocks, open_store
from vedtak.audit.blocks import DIGEST
from vedtak.audit.verify import generate_key, sign_checkpoint, verify
from vedtak.evaluation.decision import canonical_json
from vedtak.audit.replay import replay

from audit_support import fresh_url, raw
from block_support import (block_at, digest_entry, edit_record, find_value, full_link, replace_values, set_digest,
                           write_block)
from conftest import STUDY_GRANT
from workload import generate

KINDS = ["sqlite", "postgres"]
BLOCKS = [(1, 7), (8, 14), (15, 21), (22, 28), (29, 35), (36, 40)]  # the filled log's blocks


@pytest.fixture(params=KINDS)
def url(request, tmp_path):
    return fresh_url(request.param, tmp_path)


@pytest.fixture
def filled(url, study_plan):
    """A log holding 40 study-grant decisions, committed in batches of 7."""
    with AuditLog.open(url, batch_size=7) as log:
        released = list(log.decide_many(study_plan, generate(40, seed=3)))
    assert len(released) == 40
    return url


def problems(url, **kw):
    """(seq, kind) of each problem verify finds, in the order it reports them."""
    with open_store(url) as store:
        report = verify(store, **kw)
    assert report.ok == (not report.problems)
    return [(p.seq, p.kind) for p in report.problems]


def test_records_chain_and_verify(filled):
    """Sequence numbers run 1..n in blocks of 7, each block's prev_hash is the hash before it, and verify agrees."""
    with open_store(filled) as store:
        records = list(store.records())
        assert [r.seq for r in records] == list(range(1, 41))
        assert {r.record_version for r in records} == {2}
        rows = raw(filled, "SELECT first_seq, last_seq, prev_hash, hash FROM audit_blocks WHERE chain = '' "
                           "ORDER BY first_seq")
        assert [(f, last) for f, last, _, _ in rows] == BLOCKS
        assert rows[0][2] == "0" * 64
        assert all(b[2] == a[3] for a, b in zip(rows, rows[1:]))
        assert store.head() == (40, rows[-1][3])
        assert records[0].prev_hash == "0" * 64 and records[-1].hash == rows[-1][3]
        assert {r.kind for r in records} <= {"decision", "referral", "rejection"}
        assert len(store.rulesets()) == 1 and store.rulesets()[0].source == \
            (STUDY_GRANT / "study-grant.yaml").read_text()
    assert raw(filled, "SELECT count(*) FROM audit_case_index")[0][0] == 40
    assert problems(filled) == []


def test_record_holds_the_input_as_received_and_renders_the_released_decision(filled, study_plan):
    """A version 2 record keeps the case input (canonical JSON for a library caller) and the SHA-256 of
    the released decision JSON, which it renders again, byte for byte, from the stored ruleset."""
    with open_store(filled) as store:
        record = next(store.records())
        assert record.record_version == 2 and record.kind == "decision"
        case = generate(40, seed=3)[0]
        assert json.loads(record.input) == case
        assert record.stored_input == canonical_json(case)
        released = study_plan.decide(case).to_json()
        assert record.decision == released
        assert record.released_sha256 == hashlib.sha256(released.encode()).hexdigest()
        assert record.renders_exactly
        assert record.ruleset_sha256 == study_plan.ruleset.latest.sha256
        _, data = blocks.meta_and_input(block_at(filled, 1)["records"][0])
        assert data.decode() == canonical_json(case) and record.case_id == case["case_id"]


def test_decide_returns_only_after_the_record_is_committed(url, study_plan):
    """The library's decide with a log: when it returns, another connection sees the record."""
    case = generate(1, seed=9)[0]
    with AuditLog.open(url) as log:
        decision = log.decide(study_plan, case)
        with open_store(url) as other:
            (record,) = list(other.records())
            assert record.decision == decision.to_json() and record.renders_exactly
    assert raw(url, "SELECT first_seq, last_seq FROM audit_blocks") == [(1, 1)]


def _deny_to_grant(meta):
    """A decision turned around in its compact decision: its outcome, else the rule that decided it."""
    text = json.dumps(meta)
    if '"deny"' in text or '"grant"' in text:
        replace_values(meta, "deny", "grant") if '"deny"' in text else replace_values(meta, "grant", "deny")
    else:
        meta["r"] = "not-resident" if meta.get("r") != "not-resident" else "age-out-of-range"


def test_an_edited_record_is_detected_at_its_record(filled):
    """A record's outcome changed in its block, its digests left alone: verify names that record."""
    edit_record(filled, 12, _deny_to_grant)
    assert problems(filled) == [(12, "edited")]


def test_an_edit_with_recomputed_digests_is_detected_at_its_record(filled):
    """The forger recomputes the edited record's own leaf and link: the next record no longer follows it."""
    edit_record(filled, 17, _deny_to_grant, recompute=True)
    assert problems(filled) == [(17, "edited")]


def test_an_edit_with_recomputed_digests_and_block_hashes_is_still_named(filled):
    """Every digest of the block and the block's hash recomputed: the next block no longer follows it,
    and verify names the changed block by its first record."""
    edit_record(filled, 17, _deny_to_grant, recompute=True)
    block = block_at(filled, 17)
    for i in range(17 - 15 + 1, 7):
        released = block["digests"][i * DIGEST:i * DIGEST + 32]
        entry, _ = digest_entry(released, block["records"][i], full_link(block, i))
        set_digest(block, i, entry)
    write_block(filled, block, hash=blocks.block_hash(block["prev"], block["header"], full_link(block, 7)))
    assert problems(filled) == [(15, "edited")]


def _drop(block, i):
    del block["records"][i]
    block["digests"] = block["digests"][:i * DIGEST] + block["digests"][(i + 1) * DIGEST:]


def test_a_deleted_record_is_detected(filled):
    """Record 5 removed from its block with its digests: record 5 is named as deleted (and a work item
    that named record 6 no longer finds the referral, which is now read as record 5)."""
    block = block_at(filled, 5)
    _drop(block, 4)
    write_block(filled, block)
    found = problems(filled)
    assert found[0] == (5, "deleted") and {kind for _, kind in found[1:]} <= {"work_item"}


def test_a_deleted_last_record_of_a_block_is_detected(filled):
    """The last record of a block removed with its digests: the block's tail no longer matches its hash."""
    block = block_at(filled, 14)
    _drop(block, 6)
    write_block(filled, block)
    assert problems(filled) == [(14, "deleted")]


def test_a_deleted_record_with_renumbering_is_detected(filled):
    """Record 5 removed and every later record renumbered: the blocks' columns, index rows, work items and
    the head (the headers are hashed): record 5 is named."""
    block = block_at(filled, 5)
    _drop(block, 4)
    write_block(filled, block, last_seq=6)
    for first, last in BLOCKS[1:]:
        raw(filled, "UPDATE audit_blocks SET first_seq = ?, last_seq = ? WHERE first_seq = ?",
            (first - 1, last - 1, first))
    raw(filled, "DELETE FROM audit_case_index WHERE seq = 5")
    raw(filled, "UPDATE audit_case_index SET seq = seq - 1 WHERE seq > 5")
    raw(filled, "UPDATE audit_work_items SET record_seq = record_seq - 1 WHERE record_seq > 5")
    raw(filled, "UPDATE audit_head SET seq = 39")
    assert problems(filled) == [(5, "deleted")]


def test_two_swapped_records_are_detected(filled):
    """Records 8 and 12 exchanged with their digests inside a block: both are named as reordered."""
    block = block_at(filled, 8)
    d = [block["digests"][i * DIGEST:(i + 1) * DIGEST] for i in range(7)]
    block["records"][0], block["records"][4] = block["records"][4], block["records"][0]
    d[0], d[4] = d[4], d[0]
    block["digests"] = b"".join(d)
    write_block(filled, block)
    raw(filled, "UPDATE audit_case_index SET seq = CASE seq WHEN 8 THEN 12 ELSE 8 END WHERE seq IN (8, 12)")
    assert problems(filled) == [(8, "reordered"), (12, "reordered")]


def test_two_records_swapped_across_blocks_are_named(filled):
    """Records 8 and 20 exchanged with their digests between two blocks: record 8 is named, and in the other
    block record 20 or the record before it (a record does not hold its own seq: that the record at 20
    came from elsewhere and that record 19 was changed with its digests recomputed look alike)."""
    a, b = block_at(filled, 8), block_at(filled, 20)
    da, db = a["digests"][:DIGEST], b["digests"][5 * DIGEST:6 * DIGEST]
    a["records"][0], b["records"][5] = b["records"][5], a["records"][0]
    a["digests"] = db + a["digests"][DIGEST:]
    b["digests"] = b["digests"][:5 * DIGEST] + da + b["digests"][6 * DIGEST:]
    write_block(filled, a)
    write_block(filled, b)
    found = problems(filled)
    assert found[0][0] == 8 and len(found) == 2 and found[1][0] in (19, 20)


def test_an_inserted_record_is_detected(filled, study_plan, tmp_path):
    """A forged record, correctly hashed, inserted after record 9 with the later records (their index rows
    and work items too) renumbered: the inserted record (10) is named."""
    block = block_at(filled, 9)
    forged = str(tmp_path / "forged.db")  # the forger has the engine write the record for them
    with AuditLog.open(forged) as log:
        log.decide(study_plan, {**generate(1, seed=99)[0], "case_id": 999})
    source = block_at(forged, 1)
    record = source["records"][0]
    entry, _ = digest_entry(source["digests"][:32], record, full_link(block, 2))
    block["records"].insert(2, record)
    block["digests"] = block["digests"][:2 * DIGEST] + entry + block["digests"][2 * DIGEST:]
    for first, last in reversed(BLOCKS[2:]):
        raw(filled, "UPDATE audit_blocks SET first_seq = ?, last_seq = ? WHERE first_seq = ?",
            (first + 1, last + 1, first))
    write_block(filled, block, last_seq=15)
    raw(filled, "UPDATE audit_case_index SET seq = seq + 1 WHERE seq >= 10")
    ((key, kind),) = raw(forged, "SELECT case_id, kind FROM audit_case_index")
    raw(filled, "INSERT INTO audit_case_index (case_id, chain, seq, kind) VALUES (?, '', 10, ?)", (key, kind))
    raw(filled, "UPDATE audit_work_items SET record_seq = record_seq + 1 WHERE record_seq >= 10")
    raw(filled, "UPDATE audit_head SET seq = 41")
    assert problems(filled) == [(10, "inserted")]


def test_a_truncated_tail_is_detected_by_the_head(filled):
    """The last two blocks deleted: the head still says 40, so record 29 is named as where the log was cut."""
    raw(filled, "DELETE FROM audit_blocks WHERE first_seq > 28")
    raw(filled, "DELETE FROM audit_case_index WHERE seq > 28")
    assert problems(filled) == [(29, "truncated")]


def test_a_truncated_tail_with_the_head_rewritten_needs_a_signed_checkpoint(filled):
    """Without a checkpoint, cutting the tail and rewriting the head goes unnoticed; with one, it is caught."""
    private, public = generate_key()
    with open_store(filled) as store:
        checkpoint = sign_checkpoint(store, private)
    assert checkpoint["seq"] == 40
    assert problems(filled, checkpoint=checkpoint, public_key=public) == []
    (hash28,) = raw(filled, "SELECT hash FROM audit_blocks WHERE last_seq = 28")[0]
    raw(filled, "DELETE FROM audit_blocks WHERE first_seq > 28")
    raw(filled, "DELETE FROM audit_case_index WHERE seq > 28")
    raw(filled, "UPDATE audit_head SET seq = 28, hash = ?", (hash28,))
    assert problems(filled) == []
    assert problems(filled, checkpoint=checkpoint, public_key=public) == [(29, "truncated")]
    _, other_public = generate_key()
    assert problems(filled, checkpoint=checkpoint, public_key=other_public)[0][1] == "checkpoint"


def test_an_edited_ruleset_source_is_detected(filled):
    """The stored ruleset source changed: the first record that uses it is named."""
    raw(filled, "UPDATE audit_rulesets SET source = replace(source, '13000', '14000')")
    assert problems(filled) == [(1, "ruleset")]


def test_concurrent_writer_processes_keep_one_chain(url, study_plan):
    """Four processes append 60 decisions each to one log at once: one unbroken chain of 240."""
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).with_name("audit_writer.py")
    procs = [subprocess.Popen([sys.executable, str(script), url, str(STUDY_GRANT), str(i), "60", "5"])
             for i in range(4)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    with open_store(url) as store:
        assert store.count() == 240
        ids = sorted(r.case_id for r in store.records())
    assert ids == sorted(w * 100000 + i for w in range(4) for i in range(60))
    assert problems(url) == []


def test_a_clean_log_replays_with_zero_differences(filled):
    with open_store(filled) as store:
        report = replay(store)
    assert (report.replayed, len(report.differences), len(report.unreproducible)) == (40, 0, 0)


def test_replay_reports_a_tampered_decision_as_a_difference(filled):
    """A granted amount raised in its record with the record's digests recomputed: verify names the record,
    and replay reports that deciding the stored input again does not give the recorded decision."""
    with open_store(filled) as store:
        record = next(r for r in store.records() if find_value(r.meta, "amount") is not None)
        seq, old = record.seq, find_value(record.meta, "amount")
    new = str(Decimal(old) + 1) if isinstance(old, str) else old + 1
    edit_record(filled, seq, lambda meta: replace_values(meta, old, new), recompute=True)
    assert problems(filled) == [(seq, "edited")]
    with open_store(filled) as store:
        report = replay(store)
        assert [d.seq for d in report.differences] == [seq]
        ((key, _, replayed),) = report.differences[0].changes
        assert key == "decision" and "gives another decision than the one recorded" in replayed


def test_replay_against_a_changed_threshold_reports_exactly_the_cases_it_moves(filled, tmp_path, study_plan):
    """Raising MIN_AGE from 18 to 19 changes exactly the recorded cases of applicants aged 18."""
    changed = tmp_path / "sg"
    shutil.copytree(STUDY_GRANT, changed)
    path = changed / "study-grant.yaml"
    path.write_text(path.read_text().replace("MIN_AGE: {values: {2020-01-01: 18}", "MIN_AGE: {values: {2020-01-01: 19}"))
    new_plan = vedtak.compile(changed)
    cases = generate(40, seed=3)
    expected = {c["case_id"] for c in cases
                if study_plan.decide(c).to_dict()["rule"] != new_plan.decide(c).to_dict()["rule"]}
    assert expected == {c["case_id"] for c in cases if c["age"] == 18 and study_plan.decide(c).rule not in (
        "not-resident", "before-scheme-start")}
    with open_store(filled) as store:
        report = replay(store, against=new_plan)
    assert {d.case_id for d in report.differences} == expected
    assert sum(report.rule_changes.values()) == len(expected)
    assert sum(report.transitions.values()) == 40
    assert all(b == "age-out-of-range" for (_, b) in report.rule_changes)


def test_pseudonymised_fields_are_keyed_hashes_and_replay_says_why_it_cannot_reproduce(url, study_plan):
    case = generate(1, seed=4)[0]
    with AuditLog.open(url, pii="pseudonymise", pii_key=b"secret") as log:
        log.decide(study_plan, case)
    with open_store(url) as store:
        (record,) = list(store.records())
        stored = json.loads(record.input)
        assert stored["age"].startswith("hmac-sha256:") and stored["income"] == case["income"]
        note = json.loads(record.pii)
        assert (note["fields"], note["mode"]) == (["age"], "pseudonymise")
        # this case's reason names the age: the log keeps it masked, and a keyed hash of what was released
        reasons = json.loads(record.decision)["reasons"]
        assert note["masked"] == ["reasons"] and reasons == ["The applicant is [personal data]; the grant is for "
                                                             "ages 18 to 30."]
        report = replay(store)
    assert report.unreproducible == [(1, case["case_id"],
                                      "personal data was pseudonymised in the log (age); the decision's reasons are "
                                      "stored masked", None)]
    assert problems(url) == []


def test_dropped_fields_are_not_stored(url, study_plan):
    case = generate(1, seed=4)[0]
    with AuditLog.open(url, pii="drop") as log:
        log.decide(study_plan, case)
    with open_store(url) as store:
        (record,) = list(store.records())
    assert "age" not in json.loads(record.input)


def test_pseudonymising_needs_a_key():
    from vedtak.audit.log import PiiPolicy
    with pytest.raises(ValueError, match="needs a key"):
        PiiPolicy("pseudonymise")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.integers(0, 6), min_size=1, max_size=6), seed=st.integers(0, 10**6))
def test_any_sequence_of_appends_verifies(tmp_path_factory, study_plan, batches, seed):
    """Whatever the batch sizes (empty ones included), the log verifies and replays cleanly."""
    url = str(tmp_path_factory.mktemp("prop") / "a.db")
    cases = generate(sum(batches), seed=seed)
    rng = random.Random(seed)
    for c in cases:  # some invalid inputs too: rejections are recorded like any outcome
        if rng.random() < 0.2:
            c["age"] = "old"
    with AuditLog.open(url) as log:
        i = 0
        for size in batches:
            log.record(study_plan, [(c, study_plan.decide(c)) for c in cases[i:i + size]])
            i += size
    assert problems(url) == []
    with open_store(url) as store:
        assert store.count() == len(cases)
        assert replay(store).ok


def test_replay_is_deterministic(filled):
    with open_store(filled) as store:
        first = replay(store).to_dict()
        assert replay(store).to_dict() == first


def test_exact_decimals_survive_the_log(url, child_plan):
    """A fractional money input is stored as its exact decimal text and replays identically."""
    case = {"ref": "D", "decided_on": "2024-05-01", "birth_date": "1990-05-01", "resident": True,
            "municipality": "tromso", "income": Decimal("400000.10"), "partner_income": "0.05",
            "children": [{"birth_date": "2020-01-01", "disabled": False, "support": 0}]}
    with AuditLog.open(url) as log:
        decision = log.decide(child_plan, case)
    assert decision.values["amount"] == Decimal("2266.50")
    with open_store(url) as store:
        (record,) = list(store.records())
        assert json.loads(record.input)["income"] == "400000.10"
        assert replay(store).ok
