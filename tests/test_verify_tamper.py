"""A verifier that misses nothing: every row the log holds is covered by a hash or checked against one.

Each test reproduces a tampering that `vedtak audit verify` used to pass (exit 0) or crash on, and
checks that it now fails with exit 1 and names the bad record, work item, queue event, run or chain.
Tamperings of one record's body are made on version 1 records (one a row: tests/fixtures/v1_log.db,
written by the release before record version 2, upgraded on first open); the rest on a new log.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vedtak.audit import AuditLog, open_store
from vedtak.audit.record import GENESIS, AuditRecordV1, Entry
from vedtak.audit.verify import verify
from vedtak.cli.main import main
from vedtak.batch.distributed import DistributedRun
from vedtak.audit.queue import assign, change_supervisors, claim, decide, release, request_review

from audit_support import raw
from conftest import STUDY_GRANT
from workload import generate


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def failed(db, *extra) -> str:
    """`audit verify` on the log must fail (exit 1, no traceback); its output."""
    r = run("audit", "verify", db, *extra)
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    return r.output


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def template(tmp_path_factory, study_plan) -> Path:
    """A log with decisions, referrals and a rejection, and a queue that has seen every kind of change:
    a supervisor named, items claimed, released, assigned and decided, a review opened, and a referral
    decided again (its item superseded). It verifies clean."""
    db = tmp_path_factory.mktemp("template") / "audit.db"
    cases = generate(40, seed=8)
    with AuditLog.open(str(db)) as log:
        list(log.decide_many(study_plan, cases + [{"case_id": 999, "age": "x"}]))
    with open_store(str(db)) as store:
        items = [row[0] for row in store.work_item_rows(queue="general")]
        change_supervisors(store, "sara", add=True, by="sara")
        claim(store, items[0], "kari")
        decide(store, items[0], outcome="deny", values={}, by="kari", reason="Checked")
        claim(store, items[1], "ola")
        release(store, items[1], "ola")
        assign(store, items[2], "per", "sara")
        granted = next(c for c in cases if study_plan.decide(c).outcome == "grant")
        request_review(store, granted["case_id"], "kari", "The applicant disputes it")
    referred = next(c for c in cases if study_plan.decide(c).status == "referred"
                    and c["case_id"] != _case_of_item(db, items[0]))
    with AuditLog.open(str(db)) as log:
        log.decide_once(study_plan, referred, redecide=True)
    with open_store(str(db), read_only=True) as store:
        report = verify(store)
    assert report.ok, report.problems
    return db


def _case_of_item(db, item_id):
    return json.loads(raw(str(db), "SELECT case_id FROM audit_work_items WHERE id = ?", (item_id,))[0][0])


@pytest.fixture
def db(template, tmp_path) -> str:
    path = tmp_path / "audit.db"
    shutil.copy(template, path)
    return str(path)


V1_LOG = Path(__file__).parent / "fixtures" / "v1_log.db"


@pytest.fixture(scope="module")
def v1_template(tmp_path_factory) -> Path:
    """The version 1 fixture log (records one a row, partition chains, a decided and open work items),
    upgraded by opening it to write once; it verifies clean."""
    path = tmp_path_factory.mktemp("v1") / "audit.db"
    shutil.copy(V1_LOG, path)
    open_store(str(path)).close()
    with open_store(str(path), read_only=True) as store:
        report = verify(store)
    assert report.ok and report.chains == 4, report.problems
    return path


@pytest.fixture
def v1(v1_template, tmp_path) -> str:
    path = tmp_path / "v1.db"
    shutil.copy(v1_template, path)
    return str(path)


def test_the_template_log_verifies_and_says_what_it_checked(db):
    """An untouched log verifies (exit 0) and says how many work items and queue events it checked."""
    r = run("audit", "verify", db)
    assert r.exit_code == 0, r.output
    assert "work items match their records" in r.output and "queue events" in r.output


# -- work items -------------------------------------------------------------------------------------

def test_every_item_set_to_decided_without_a_human_record_is_named(db):
    """Every open item set to decided (no caseworker's record) fails, naming each such item."""
    open_ids = [r[0] for r in raw(db, "SELECT id FROM audit_work_items WHERE status = 'open'")]
    raw(db, "UPDATE audit_work_items SET status = 'decided', decided_seq = 1 WHERE status = 'open'")
    out = failed(db)
    for item_id in open_ids:
        assert f"work item {item_id}: work_item: work item {item_id} is marked decided (record 1), but no " \
               "caseworker's record closes it" in out


def test_all_items_deleted_names_each_record_that_opened_one(db):
    """Deleting every work item fails: each referral or rejection record whose item is gone is named,
    and so is the decided item its caseworker's record closed."""
    openers = [r[0] for r in raw(db, "SELECT record_seq FROM audit_work_items WHERE kind = 'referral'")]
    decided = raw(db, "SELECT id, decided_seq FROM audit_work_items WHERE status = 'decided'")[0]
    raw(db, "DELETE FROM audit_work_items")
    out = failed(db)
    for seq in openers:
        assert f"record {seq}: work_item: record {seq} opened a work item" in out
    assert f"work item {decided[0]}, closed by record {decided[1]}, is missing from the log" in out


def test_a_rewritten_proposal_is_named(db):
    """An item's proposed decision rewritten (none to a grant) fails, naming the item and the column."""
    (item_id, seq), = raw(db, "SELECT id, record_seq FROM audit_work_items WHERE kind = 'referral' "
                              "AND status = 'open' LIMIT 1")
    raw(db, "UPDATE audit_work_items SET proposed = ? WHERE id = ?",
        ('{"outcome":"grant","values":{"amount":99999}}', item_id))
    out = failed(db)
    assert f"work item {item_id}: column proposed was changed" in out and f"record {seq} opened it with" in out


@pytest.mark.parametrize("column,value", [("queue", "fast-track"), ("priority", 9), ("reason_text", "approved"),
                                          ("created_at", "2020-01-01T00:00:00.000000Z")])
def test_any_opened_column_rewritten_is_named(db, column, value):
    """Each column a referral record committed to (queue, priority, reason, creation time) is checked."""
    (item_id,), = raw(db, "SELECT id FROM audit_work_items WHERE kind = 'referral' AND status = 'open' LIMIT 1")
    raw(db, f"UPDATE audit_work_items SET {column} = ? WHERE id = ?", (value, item_id))
    assert f"work item {item_id}: column {column} was changed" in failed(db)


def test_an_item_re_pointed_at_another_cases_decision_is_named_and_cannot_be_decided(db):
    """An open referral item re-pointed at another case's automated decision: verify names the item
    (its record opens no work item), and `queue decide` refuses it (it used to let a caseworker decide
    a case the engine had already decided)."""
    (item_id,), = raw(db, "SELECT id FROM audit_work_items WHERE kind = 'referral' AND status = 'open' LIMIT 1")
    with open_store(db, read_only=True) as store:
        target = next(r for r in store.records() if r.kind == "decision")
    seq, cid = target.seq, json.dumps(target.case_id)
    raw(db, "UPDATE audit_work_items SET record_seq = ?, case_id = ? WHERE id = ?", (seq, cid, item_id))
    assert f"work item {item_id} names record {seq}, which opens no work item" in failed(db)
    r = run("queue", "decide", db, item_id, "--outcome", "deny", "--by", "mallory", "--reason", "forged")
    assert r.exit_code == 1 and f"refused: work item {item_id} (case {json.loads(cid)}) names record {seq}, a " \
        "decision of case" in r.output
    with open_store(db) as store:  # the case keeps its automated decision only
        assert [r.kind for r in store.records(json.loads(cid))] == ["decision"]


def test_a_forged_claim_without_its_event_is_named(db):
    """An item set claimed by someone with no claim event fails, naming the item and the column."""
    (item_id,), = raw(db, "SELECT id FROM audit_work_items WHERE status = 'open' LIMIT 1")
    raw(db, "UPDATE audit_work_items SET status = 'claimed', assignee = 'mallory', claimed_at = ? WHERE id = ?",
        ("2030-01-01T00:00:00.000000Z", item_id))
    assert f"work item {item_id}: column status is 'claimed', but its queue events and records make it 'open'" \
        in failed(db)


def test_a_superseded_item_reopened_is_named(db):
    """The item of a referral decided again (superseded) set back to open fails, naming the item."""
    (item_id, by), = raw(db, "SELECT id, decided_seq FROM audit_work_items WHERE status = 'superseded'")
    raw(db, "UPDATE audit_work_items SET status = 'open', decided_seq = NULL WHERE id = ?", (item_id,))
    assert f"work item {item_id}: column status is 'open', but its queue events and records make it " \
           "'superseded'" in failed(db)


def test_a_rewritten_review_item_is_named(db):
    """A review item's reason rewritten fails: it is not the item its review-opened event committed to."""
    (item_id,), = raw(db, "SELECT id FROM audit_work_items WHERE kind = 'review'")
    raw(db, "UPDATE audit_work_items SET reason_text = 'nothing to see' WHERE id = ?", (item_id,))
    assert f"work item {item_id} was changed: it is not the review queue event" in failed(db)


def test_a_forged_review_item_is_named(db):
    """A review item inserted with no queue event that opened it fails, naming the item."""
    raw(db, "INSERT INTO audit_work_items (id, record_seq, kind, case_id, queue, reason_code, reason_text, proposed, "
            "priority, created_at, status) VALUES (500, 1, 'review', '\"x\"', 'review', 'review-requested', 'r', "
            "NULL, 1, '2030-01-01T00:00:00.000000Z', 'open')")
    assert "work item 500 is a review no queue event opened" in failed(db)


# -- the queue's events -----------------------------------------------------------------------------

def test_an_edited_queue_event_is_named(db):
    """A claim event's actor rewritten fails, naming the event."""
    (event_id,), = raw(db, "SELECT id FROM audit_work_item_events WHERE action = 'claimed' LIMIT 1")
    raw(db, "UPDATE audit_work_item_events SET actor = 'mallory' WHERE id = ?", (event_id,))
    assert f"queue event {event_id}: queue_event: queue event {event_id} was changed" in failed(db)


def test_a_deleted_queue_event_is_named(db):
    """A release event deleted (and the item set claimed again to match) fails, naming the missing event."""
    (event_id, item_id), = raw(db, "SELECT id, item_id FROM audit_work_item_events WHERE action = 'released'")
    raw(db, "DELETE FROM audit_work_item_events WHERE id = ?", (event_id,))
    assert f"queue event {event_id} is missing (deleted)" in failed(db)


def test_an_edited_supervisors_list_is_named(db):
    """The supervisors list in audit_meta rewritten fails: the supervisor events named others."""
    raw(db, "UPDATE audit_meta SET value = '[\"mallory\"]' WHERE key = 'queue_supervisors'")
    assert "supervisors: queue_event: the supervisors listed in the log ([\"mallory\"])" in failed(db)


def test_a_cut_queue_tail_is_found_by_a_signed_checkpoint(db, keys):
    """The last queue event deleted together with what it did (the item put back as it was) passes
    without a checkpoint, as a cut tail of any chain does; a checkpoint signed before names the event."""
    key, pub = keys
    assert run("audit", "checkpoint", db, "--key", key, "-o", Path(db).with_suffix(".cp")).exit_code == 0
    (event_id, item_id, action), = raw(db, "SELECT id, item_id, action FROM audit_work_item_events "
                                           "ORDER BY id DESC LIMIT 1")
    assert action == "review-opened"
    raw(db, "DELETE FROM audit_work_item_events WHERE id = ?", (event_id,))
    raw(db, "DELETE FROM audit_work_items WHERE id = ?", (item_id,))
    assert run("audit", "verify", db).exit_code == 0
    out = failed(db, "--checkpoint", Path(db).with_suffix(".cp"), "--public-key", pub)
    assert f"queue event {event_id}: checkpoint: queue event {event_id} is missing" in out


# -- malformed bodies ---------------------------------------------------------------------------------

def _replace_body(db: str, seq: int, body: str) -> None:
    raw(db, "UPDATE audit_records SET body = ?, hash = ? WHERE seq = ?", (body, sha(body), seq))
    (head,) = raw(db, "SELECT seq FROM audit_head")[0]
    if head == seq:
        raw(db, "UPDATE audit_head SET hash = ?", (sha(body),))


def _real_body(db: str, seq: int) -> dict:
    return json.loads(raw(db, "SELECT body FROM audit_records WHERE seq = ?", (seq,))[0][0])


@pytest.mark.parametrize("change", [
    lambda d: [], lambda d: "ruleset", lambda d: {**d, "ruleset": "ruleset"}, lambda d: {**d, "seq": "5"},
    lambda d: {k: v for k, v in d.items() if k != "recorded_at"}, lambda d: {**d, "decision": []},
    lambda d: {**d, "kind": 7}, lambda d: {**d, "case_id": {"a": 1}}, lambda d: {**d, "pii": "x"},
    lambda d: {**d, "recorded_at": "yesterday"}, lambda d: {**d, "decision": {**d["decision"], "reasons": "x"}},
], ids=["list", "string", "ruleset-string", "seq-string", "no-recorded_at", "decision-list", "kind-number",
        "case-object", "pii-string", "time-text", "reasons-string"])
def test_a_correctly_hashed_malformed_body_is_reported_as_edited(v1, change):
    """A record whose body is replaced by a malformed one with a correct hash is reported as forged or
    changed, naming the record (exit 1), never a crash (AttributeError before)."""
    (seq,), = raw(v1, "SELECT seq FROM audit_records WHERE kind = 'referral' LIMIT 1")
    _replace_body(v1, seq, json.dumps(change(_real_body(v1, seq))))
    assert f"record {seq}: edited: record {seq} was forged or changed" in failed(v1)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
KEYS = st.sampled_from(["seq", "kind", "case_id", "decision", "input", "ruleset", "recorded_at", "prev_hash", "pii",
                        "chain", "record_version", "decision_date", "engine_version"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(whole=JSON, fields=st.dictionaries(KEYS, JSON, max_size=3), use_whole=st.booleans(),
       kind=st.sampled_from(["decision", "referral", "rejection", "human", "manifest"]))
def test_any_json_value_as_a_correctly_hashed_body_never_crashes_verify(v1_template, tmp_path_factory, whole,
                                                                       fields, use_whole, kind):
    """Any JSON value, or a real record with any fields replaced by any JSON values, as a body with a
    correct hash: verify never raises, and a body that is not the original is reported (the record,
    its item or its neighbours are named)."""
    path = str(tmp_path_factory.mktemp("h") / "audit.db")
    shutil.copy(v1_template, path)
    rows = raw(path, "SELECT seq FROM audit_records WHERE kind = ? LIMIT 1", (kind,))
    seq = rows[0][0]
    original = _real_body(path, seq)
    body = whole if use_whole else {**original, **fields}
    _replace_body(path, seq, json.dumps(body))
    with open_store(path, read_only=True) as store:
        report = verify(store)
    if body != original:
        assert not report.ok
    report.to_dict()


# -- time ---------------------------------------------------------------------------------------------

def _append_forged(db: str, entry: Entry, recorded_at: str) -> int:
    (seq, prev), = raw(db, "SELECT seq, hash FROM audit_head")
    body = AuditRecordV1.make_body(entry, seq + 1, recorded_at, prev)
    raw(db, "INSERT INTO audit_records (seq, recorded_at, kind, case_id, input_sha256, ruleset_sha256, body, "
            "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (seq + 1, recorded_at, entry.kind, json.dumps(entry.case_id), entry.input_sha256, entry.ruleset_sha256,
         body, prev, sha(body)))
    raw(db, "UPDATE audit_head SET seq = ?, hash = ?", (seq + 1, sha(body)))
    return seq + 1


def test_a_back_dated_record_is_named_and_show_lists_it_in_chain_order(v1):
    """A correctly chained record appended with a time before its predecessor's fails as back-dated;
    `audit show` of its case lists it after the case's earlier records (it used to come first)."""
    (cid, rs_json), = raw(v1, "SELECT case_id, body FROM audit_records WHERE kind = 'decision' LIMIT 1")
    original = AuditRecordV1.from_body(rs_json, "")
    entry = Entry("decision", original.case_id, original.input, original.decision, original.ruleset_id,
                  original.ruleset_version, original.ruleset_sha256, original.decision_date, original.engine_version)
    seq = _append_forged(v1, entry, "2001-01-01T00:00:00.000000Z")
    assert f"record {seq}: backdated: record {seq} is dated 2001-01-01T00:00:00.000000Z, before the record " \
           "before it" in failed(v1)
    shown = run("audit", "show", v1, str(original.case_id)).output
    assert shown.index(f"Record {original.seq} ") < shown.index(f"Record {seq} ")


# -- distributed runs ---------------------------------------------------------------------------------

class InProcessRun(DistributedRun):
    """A distributed run whose partitions run one after another in this process (no cluster)."""

    def _execute(self, run_id, parts):
        return {p.index: self.task(t) for p, t in zip(parts, self._tasks(run_id, parts))}, {}


@pytest.fixture(scope="module")
def dist_template(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dist")
    cases = folder / "cases.jsonl"
    cases.write_text("".join(json.dumps(c) + "\n" for c in generate(60, seed=3)))
    db = folder / "audit.db"
    InProcessRun(str(STUDY_GRANT), [str(cases)], str(db), partition_bytes=3000).run()
    with open_store(str(db), read_only=True) as store:
        assert verify(store).ok
        assert len(store.chains()) >= 2
    return db


@pytest.fixture
def dist(dist_template, tmp_path) -> str:
    path = tmp_path / "audit.db"
    shutil.copy(dist_template, path)
    return str(path)


def test_a_forged_partition_chain_without_a_manifest_fails_even_with_a_signed_checkpoint(v1, keys):
    """An audit_runs row without a manifest, a chain head and one correctly hashed grant (the forgery that
    passed with exit 0): verify fails, names the run as unfinished (nothing commits to its records), also
    with a checkpoint signed before the forgery."""
    key, pub = keys
    cp = Path(v1).with_suffix(".cp")
    assert run("audit", "checkpoint", v1, "--key", key, "-o", cp).exit_code == 0
    chain = "run-forged/00000"
    (body0,), = raw(v1, "SELECT body FROM audit_records WHERE kind = 'decision' LIMIT 1")
    r = AuditRecordV1.from_body(body0, "")
    entry = Entry("decision", "F-1", r.input, r.decision, r.ruleset_id, r.ruleset_version, r.ruleset_sha256,
                  r.decision_date, r.engine_version)
    body = AuditRecordV1.make_body(entry, 1, r.recorded_at, GENESIS, chain)
    raw(v1, "INSERT INTO audit_runs (run_id, run_key, spec, started_at) VALUES ('run-forged', 'k', '{}', ?)",
        (r.recorded_at,))
    raw(v1, "INSERT INTO audit_chains (chain, run_id, part, spec, seq, hash) VALUES (?, 'run-forged', 0, '{}', 1, ?)",
        (chain, sha(body)))
    raw(v1, "INSERT INTO audit_chain_records VALUES (?, 1, ?, 'decision', '\"F-1\"', ?, ?, ?, ?, ?)",
        (chain, r.recorded_at, entry.input_sha256, r.ruleset_sha256, body, GENESIS, sha(body)))
    for extra in ((), ("--checkpoint", cp, "--public-key", pub)):
        out = failed(v1, *extra)
        assert "run run-forged: unfinished: run run-forged has no manifest: nothing commits to its 1 partition " \
               "chains (1 records) yet" in out


def test_a_chain_of_no_run_is_named_as_inserted(db):
    """Partition chain records and a head with no audit_runs row: the chain is named as inserted."""
    raw(db, "INSERT INTO audit_chains (chain, run_id, part, spec, seq, hash) VALUES ('run-x/00000', 'run-x', 0, "
            "'{}', 0, ?)", (GENESIS,))
    assert "record run-x/00000:1: inserted: partition chain run-x/00000: the chain's 0 records belong to no " \
           "registered run" in failed(db)


def test_a_really_unfinished_run_is_named_as_unfinished(tmp_path):
    """A run whose partitions are recorded but whose manifest was never written (interrupted) fails
    (exit 1), named as unfinished, with the hint that --resume finishes it."""
    cases = tmp_path / "cases.jsonl"
    cases.write_text("".join(json.dumps(c) + "\n" for c in generate(20, seed=4)))
    db = tmp_path / "audit.db"

    class Interrupted(InProcessRun):
        def _finish(self, store, run_id, spec, summary):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Interrupted(str(STUDY_GRANT), [str(cases)], str(db), partition_bytes=2000).run()
    out = failed(db)
    assert ": unfinished: run run-" in out and "(vedtak run --resume finishes it)" in out


@pytest.mark.parametrize("sql,named", [
    ("UPDATE audit_runs SET spec = replace(spec, '\"pii\":\"keep\"', '\"pii\":\"drop\"')", "column spec of run"),
    ("UPDATE audit_runs SET started_at = '2001-01-01T00:00:00.000000Z'", "column started_at of run"),
    ("UPDATE audit_runs SET run_key = 'x'", "column run_key of run"),
    ("UPDATE audit_runs SET manifest_seq = NULL", "column manifest_seq of run"),
    ("UPDATE audit_chains SET done = replace(done, '\"read\"', '\"reed\"') WHERE part = 0", "column done of partition"),
    ("UPDATE audit_chains SET spec = '{}' WHERE part = 1", "column spec of partition chain"),
    ("UPDATE audit_chains SET part = 7 WHERE part = 1", "column part of partition chain"),
])
def test_run_and_chain_metadata_is_checked_against_the_manifest(dist, sql, named):
    """audit_runs (spec, start, run key, manifest) and audit_chains (spec, summary, partition) rows edited:
    each fails, naming the run or the chain and the column."""
    raw(dist, sql)
    assert named in failed(dist)


def test_a_stored_rulesets_id_and_version_are_checked_against_its_records(v1):
    """The id or version of a stored ruleset rewritten (its source untouched) fails, naming the ruleset."""
    raw(v1, "UPDATE audit_rulesets SET version = '1999-01-01'")
    assert "is listed as study-grant 1999-01-01, but record 1 names it study-grant" in failed(v1)


def test_a_checkpoint_commits_to_every_partition_chains_head(v1, keys):
    """A checkpoint lists every partition chain's head; a chain cut with its head after it was signed is
    named by the checkpoint (on that chain), beside the manifest."""
    key, pub = keys
    cp = Path(v1).with_suffix(".cp")
    assert run("audit", "checkpoint", v1, "--key", key, "-o", cp).exit_code == 0
    chains = json.loads(cp.read_text())["chains"]
    assert len(chains) == 4
    name, head = sorted(chains.items())[0]
    raw(v1, "DELETE FROM audit_chain_records WHERE chain = ? AND seq = ?", (name, head["seq"]))
    (prev,), = raw(v1, "SELECT hash FROM audit_chain_records WHERE chain = ? AND seq = ?", (name, head["seq"] - 1))
    raw(v1, "UPDATE audit_chains SET seq = seq - 1, hash = ? WHERE chain = ?", (prev, name))
    out = failed(v1, "--checkpoint", cp, "--public-key", pub)
    assert f"record {name}:{head['seq']}: checkpoint:" in out


def test_a_version_1_checkpoint_still_verifies(v1, keys):
    """A checkpoint signed as before (main head only, no chains or queue) still verifies a clean log."""
    import base64
    from vedtak.audit.checkpoint import _message, load_private_key
    key, pub = keys
    (seq, head), = raw(v1, "SELECT seq, hash FROM audit_head")
    cp = {"seq": seq, "hash": head, "signed_at": "2026-01-01T00:00:00.000000Z"}
    cp["signature"] = base64.b64encode(load_private_key(Path(key).read_bytes()).sign(_message(cp))).decode()
    Path(v1).with_suffix(".cp").write_text(json.dumps(cp))
    r = run("audit", "verify", v1, "--checkpoint", Path(v1).with_suffix(".cp"), "--public-key", pub)
    assert r.exit_code == 0, r.output


def test_an_upgraded_log_keeps_its_earlier_events_and_chains_the_new_ones(db):
    """A log written before queue events were chained (no hash columns) is upgraded on the next write:
    its earlier events stay as they were (not covered), new ones are chained, and it verifies."""
    con = sqlite3.connect(db, isolation_level=None)
    for column in ("detail", "prev_hash", "hash"):
        con.execute(f"ALTER TABLE audit_work_item_events DROP COLUMN {column}")
    con.execute("DELETE FROM audit_work_items WHERE kind = 'review'")
    con.execute("DELETE FROM audit_work_item_events WHERE action = 'review-opened'")
    con.close()
    with open_store(db, read_only=True) as store:
        assert verify(store).ok
    with open_store(db) as store:
        (item_id,) = [r[0] for r in store.work_item_rows(status="open")][:1]
        claim(store, item_id, "kari")
    (n,), = raw(db, "SELECT COUNT(*) FROM audit_work_item_events WHERE hash IS NOT NULL")
    assert n == 1
    assert run("audit", "verify", db).exit_code == 0


def test_a_raised_mark_of_where_the_queue_chain_begins_is_named(db):
    """Moving the mark of where the queue's event chain begins past chained events (to excuse forged
    unhashed ones) fails, naming the first chained event below the mark."""
    raw(db, "INSERT INTO audit_meta (key, value) VALUES ('queue_events_chained_from', '1000')")
    assert "queue event 1: queue_event: queue event 1 is chained, but the log says its chain begins at event " \
           "1000" in failed(db)


def test_a_stored_rulesets_id_is_checked_against_its_source_in_a_log_of_blocks(db):
    """In a log of version 2 blocks (whose records name a ruleset by SHA-256 only), a stored ruleset's
    id rewritten fails too: the columns must be what the stored source (as hashed) says."""
    (sha,), = raw(db, "SELECT sha256 FROM audit_rulesets")
    raw(db, "UPDATE audit_rulesets SET ruleset_id = 'other-grant'")
    assert f"ruleset {sha[:12]}: ruleset: the stored ruleset {sha[:12]} is listed as other-grant" in failed(db)
