"""Tamperings found by reviewing record version 2, each a failure that verify names and never a crash.

The case index is compared value by value, type by type (a row moved by 2^61 - 1, the modulus
of Python's integer hash, or its case id stored as bytes, once passed); a block's bytes are
read strictly (bytes after its zstd frame, a record length written in more bytes than it
takes); a column holding another type, or text that is not UTF-8, is reported, not raised.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import vedtak
from vedtak.audit import AuditLog, open_store
from vedtak.audit.verify import verify
from workload import generate

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["none", "zstd"])
def log(request, tmp_path) -> str:
    db = str(tmp_path / "a.db")
    plan = vedtak.compile(vedtak.load(ROOT / "rulesets" / "study-grant"))
    with AuditLog.open(db, batch_size=10, compress=request.param) as audit:
        list(audit.decide_many(plan, generate(30)))
    return db


def tamper(db: str, sql: str, params: tuple = ()) -> None:
    con = sqlite3.connect(db, isolation_level=None)
    con.execute(sql, params)
    con.close()


def report(db: str):
    with open_store(db, read_only=True) as store:
        return verify(store)


@pytest.mark.parametrize("sql", [
    "UPDATE audit_case_index SET seq = seq + 2305843009213693951 WHERE seq = 7",
    "UPDATE audit_case_index SET case_id = CAST(case_id AS BLOB) WHERE seq = 5",
    "UPDATE audit_case_index SET kind = CAST(kind AS BLOB) WHERE seq = 9",
])
def test_an_index_row_changed_in_value_or_type_is_named(log, sql):
    """An index row moved far away, or its case id or sequence number stored as another type, is named."""
    tamper(log, sql)
    found = report(log)
    assert not found.ok and {p.kind for p in found.problems} == {"index"}, found.problems


def test_the_report_is_the_same_in_every_run(log):
    """verify's report does not depend on the process (no use of Python's seeded hash)."""
    tamper(log, "UPDATE audit_case_index SET kind = 'r' WHERE seq = 3")
    import subprocess
    import sys
    runs = {subprocess.run([sys.executable, "-m", "vedtak.cli", "audit", "verify", log], capture_output=True,
                           text=True, env={"PYTHONHASHSEED": str(seed), "PATH": "/usr/bin:/bin"}).stdout
            for seed in (0, 1, 2, 3)}
    assert len(runs) == 1 and "record 3" in runs.pop()


@pytest.mark.parametrize("sql", [
    "UPDATE audit_blocks SET digests = hex(digests) WHERE first_seq = 11",
    "UPDATE audit_blocks SET records = CAST(records AS TEXT) WHERE first_seq = 11",
    "UPDATE audit_blocks SET first_seq = 'x' WHERE first_seq = 11",
    "UPDATE audit_blocks SET header = CAST(X'FF' AS TEXT) WHERE first_seq = 11",
    "UPDATE audit_rulesets SET source = CAST(source AS BLOB)",
])
def test_a_column_of_another_type_is_reported_not_raised(log, sql):
    """A block or ruleset column holding another type of value, or text that is not UTF-8, is a finding."""
    tamper(log, sql)
    found = report(log)
    assert not found.ok


def test_bytes_after_a_zstd_frame_or_a_longer_length_are_a_changed_block(tmp_path):
    """Bytes appended after a block's zstd frame, or a record length written in more bytes than it takes,
    change the block (the records read the same, but the stored bytes are not as written)."""
    plan = vedtak.compile(vedtak.load(ROOT / "rulesets" / "study-grant"))
    for codec in ("zstd", "none"):
        db = str(tmp_path / f"{codec}.db")
        with AuditLog.open(db, batch_size=10, compress=codec) as audit:
            list(audit.decide_many(plan, generate(20)))
        con = sqlite3.connect(db)
        (data,) = con.execute("SELECT records FROM audit_blocks WHERE first_seq = 11").fetchone()
        con.close()
        if codec == "zstd":
            forged = bytes(data) + b"\x00"
        else:  # the first record's length, a two-byte varint, written in three bytes
            first = bytes(data)
            assert first[0] >= 0x80 and first[1] < 0x80
            forged = bytes([first[0], first[1] | 0x80, 0]) + first[2:]
        tamper(db, "UPDATE audit_blocks SET records = ? WHERE first_seq = 11", (forged,))
        found = report(db)
        assert not found.ok and 11 in {p.seq for p in found.problems}, (codec, found.problems)


def test_two_work_items_with_their_ids_swapped_are_named(tmp_path):
    """Two open items' ids exchanged (a caseworker deciding item N would act on the other case): the
    items are numbered out of the order of the records that opened them, and verify says so."""
    db = str(tmp_path / "a.db")
    plan = vedtak.compile(vedtak.load(ROOT / "rulesets" / "study-grant"))
    with AuditLog.open(db) as audit:
        list(audit.decide_many(plan, generate(200)))
    con = sqlite3.connect(db)
    a, b = [r[0] for r in con.execute("SELECT id FROM audit_work_items ORDER BY id LIMIT 2")]
    con.close()
    tamper(db, f"UPDATE audit_work_items SET id = -1 WHERE id = {a}")
    tamper(db, f"UPDATE audit_work_items SET id = {a} WHERE id = {b}")
    tamper(db, f"UPDATE audit_work_items SET id = {b} WHERE id = -1")
    found = report(db)
    assert not found.ok and any(f"work items {b} and {a}" in p.message for p in found.problems), found.problems


def test_a_work_items_chain_changed_to_an_empty_name_is_named(log):
    """A main-chain item's record_chain set from NULL to '' (which reads as the main chain too) is named."""
    tamper(log, "UPDATE audit_work_items SET record_chain = '' WHERE id = (SELECT MIN(id) FROM audit_work_items)")
    found = report(log)
    assert not found.ok and any("record_chain" in p.message for p in found.problems), found.problems
