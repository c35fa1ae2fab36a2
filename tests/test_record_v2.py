"""Record version 2: what a compact record renders again is, byte for byte, what was released.

Cases of every shipped ruleset — valid ones from the case strategies, and the same cases
damaged (missing, wrong-typed and unknown fields, so that rejections and missing-data
referrals come too) — go through each writing path: ``AuditLog.decide_many`` (blocks built
without audit entries), ``AuditLog.record`` (blocks built from entries), and ``vedtak run``
(blocks built by the batch workers from the lines as read). Every record must render the
decision JSON that was released, hold its SHA-256, and the log must verify.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vedtak
from vedtak.audit import AuditLog, open_store
from vedtak.audit.verify import verify
from strategies import cases

ROOT = Path(__file__).resolve().parent.parent
RULESETS = ["study-grant", "dagpenger", "studiestotte-omgjoring"]
PLANS = {name: vedtak.compile(vedtak.load(ROOT / "rulesets" / name)) for name in RULESETS}


def damaged(plan):
    """Cases of the plan's latest version, some of them damaged: a field dropped, set to a wrong
    type or joined by an unknown one (rejections and missing-data referrals as well as decisions)."""
    version = plan.ruleset.latest
    names = sorted(version.model.case)

    def spoil(case, how, name):
        case = dict(case)
        if how == "drop":
            case.pop(name, None)
        elif how == "wrong":
            case[name] = "not a value" if not isinstance(case.get(name), str) else 12
        elif how == "extra":
            case["unexpected_field"] = name
        return case

    return st.builds(spoil, cases(version), st.sampled_from(["keep", "keep", "drop", "wrong", "extra"]),
                     st.sampled_from(names))


def _json_default(value):
    if isinstance(value, Decimal):
        return str(value)
    return value.isoformat()


def _rendered_equals_released(store, released: list[str]) -> None:
    records = list(store.records())
    assert len(records) == len(released)
    for record, text in zip(records, released):
        assert record.record_version == 2
        assert record.decision == text, record.ref
        assert record.released_sha256 == hashlib.sha256(text.encode("utf-8")).hexdigest()
        assert record.renders_exactly
    report = verify(store)
    assert report.ok, report.problems[:3]


@pytest.mark.parametrize("name", RULESETS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data())
def test_decide_many_records_render_what_was_released(name, data, tmp_path_factory):
    """Through decide_many (blocks built without audit entries), every record renders the
    decision JSON released for it and holds its SHA-256; the log verifies."""
    plan = PLANS[name]
    batch = data.draw(st.lists(damaged(plan), min_size=1, max_size=12))
    db = str(tmp_path_factory.mktemp("dm") / "a.db")
    with AuditLog.open(db, batch_size=5) as log:
        released = [d.to_json() for d in log.decide_many(plan, batch)]
    with open_store(db, read_only=True) as store:
        _rendered_equals_released(store, released)


@pytest.mark.parametrize("name", RULESETS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data())
def test_records_built_from_entries_render_what_was_released(name, data, tmp_path_factory):
    """Through AuditLog.record (blocks built from audit entries, zstd-compressed), the same holds."""
    plan = PLANS[name]
    batch = data.draw(st.lists(damaged(plan), min_size=1, max_size=8))
    db = str(tmp_path_factory.mktemp("rec") / "a.db")
    with AuditLog.open(db, compress="zstd") as log:
        pairs = [(raw, plan.decide(raw)) for raw in batch]
        log.record(plan, pairs)
    with open_store(db, read_only=True) as store:
        _rendered_equals_released(store, [d.to_json() for _, d in pairs])


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow])
@given(batch=st.lists(damaged(PLANS["dagpenger"]), min_size=1, max_size=30),
       repeat=st.booleans(), workers=st.sampled_from([1, 2]))
def test_a_batch_run_records_render_its_output_lines(batch, repeat, workers, tmp_path_factory):
    """vedtak run (workers build the blocks from the lines as read, spaces and all): each record
    renders exactly the line written out for its case — repeated case ids (duplicate_case_id)
    and unreadable lines included — and the log verifies."""
    tmp = tmp_path_factory.mktemp("run")
    lines = [json.dumps(c, default=_json_default, indent=None) for c in batch]
    if repeat:
        lines.append(lines[0])
    lines.insert(len(lines) // 2, '{"not json"')
    path = tmp / "cases.jsonl"
    path.write_text("\n".join(lines) + "\n")
    db, out = tmp / "a.db", tmp / "out.jsonl"
    r = subprocess.run([sys.executable, "-m", "vedtak.cli", "run", str(ROOT / "rulesets" / "dagpenger"), str(path),
                        "--audit", str(db), "--out", str(out), "--workers", str(workers), "--batch-size", "7"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode in (0, 1), r.stderr[-2000:]
    released = out.read_text().splitlines()
    assert len(released) == len(lines)
    with open_store(str(db), read_only=True) as store:
        _rendered_equals_released(store, released)
        inputs = [r.stored_input for r in store.records() if "malformed_input" not in r.decision]
    kept = [line for line in lines if line != '{"not json"']
    assert inputs == kept  # the lines as received, byte for byte


def test_a_record_whose_rendering_differs_is_a_replay_difference(tmp_path):
    """A compact record whose decision no longer follows from its input (its values rewritten and
    its digests recomputed, so the chain alone would not tell) is named by replay."""
    from vedtak.audit import blocks
    from vedtak.audit.replay import replay
    plan = PLANS["study-grant"]
    case = json.loads((ROOT / "rulesets" / "study-grant" / "case.json").read_text())
    db = str(tmp_path / "a.db")
    with AuditLog.open(db) as log:
        list(log.decide_many(plan, [case]))
    with open_store(db) as store:
        row = store._query("SELECT first_seq, records, digests, header FROM audit_blocks").__next__()
        (record,) = blocks.split_records(bytes(row[1]))
        forged = record.replace(b'"amount":95500', b'"amount":99500')
        assert forged != record
        store._execute("BEGIN IMMEDIATE")
        store._execute("UPDATE audit_blocks SET records = ? WHERE first_seq = ?",
                       (blocks._varint(len(forged)) + forged, row[0]))
        store._commit()
    with open_store(db, read_only=True) as store:
        report = replay(store)
    assert [d.seq for d in report.differences] == [1]
    assert "not reproduced" in str(report.differences[0].changes)
