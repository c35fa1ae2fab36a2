"""Tampering with version 2 blocks themselves — their header and columns, whole blocks deleted, swapped or
back-dated, the index by case id, a compressed block's data — on SQLite and PostgreSQL: verify fails
(exit 1) and names the exact record (the block's first) or index row."""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vedtak.audit import AuditLog, blocks, open_store
from vedtak.audit.blocks import DIGEST
from vedtak.audit.verify import verify

from audit_support import fresh_url, raw
from block_support import block_at, edit_record, frame, full_link, rehash_from, write_block
from cli_support import run
from workload import generate

BLOCKS = [(1, 7), (8, 14), (15, 21), (22, 28), (29, 35), (36, 40)]


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path):
    return fresh_url(request.param, tmp_path)


@pytest.fixture
def filled(url, study_plan):
    """A log holding 40 study-grant decisions in blocks of 7 (the last of 5)."""
    with AuditLog.open(url, batch_size=7) as log:
        assert len(list(log.decide_many(study_plan, generate(40, seed=3)))) == 40
    assert raw(url, "SELECT first_seq, last_seq FROM audit_blocks ORDER BY first_seq") == BLOCKS
    return url


def problems(url) -> list[tuple[int, str]]:
    """(seq, kind) of each problem verify reports; the report is not ok exactly when there are some."""
    with open_store(url) as store:
        report = verify(store)
    assert report.ok == (not report.problems)
    return [(p.seq, p.kind) for p in report.problems]


def cli_verify(url) -> tuple[int, str]:
    r = run("audit", "verify", url)
    return r.exit_code, r.output


def test_a_clean_log_of_blocks_verifies(filled):
    """The untouched log: no problem, exit 0."""
    assert problems(filled) == []
    assert cli_verify(filled)[0] == 0


def test_an_edited_header_is_named_at_its_block(filled):
    """A block's header (which its hash commits to) changed: the block is named by its first record."""
    block = block_at(filled, 8)
    header = json.loads(block["header"])
    header["engine_version"] = "9.9.9"
    raw(filled, "UPDATE audit_blocks SET header = ? WHERE first_seq = 8",
        (json.dumps(header, sort_keys=True, separators=(",", ":")),))
    assert problems(filled) == [(8, "edited")]
    code, out = cli_verify(filled)
    assert code == 1 and out.splitlines()[0] == ("record 8: edited: the block of records 8 to 14: its hash does not "
                                                 "match its header and records (changed, or its hash replaced)")


@pytest.mark.parametrize("column, value, kind", [
    ("recorded_at", "2020-01-01T00:00:00.000000Z", "edited"),
    ("prev_hash", "0" * 64, "broken_chain"),
    ("hash", "f" * 64, "edited"),
    ("last_seq", 13, "edited"),
])
def test_an_edited_column_is_named_at_its_block(filled, column, value, kind):
    """A block's column changed by itself: the block of records 15 to 21 is named, nothing else."""
    raw(filled, f"UPDATE audit_blocks SET {column} = ? WHERE first_seq = 15", (value,))
    if column == "hash":
        raw(filled, "UPDATE audit_head SET hash = hash")  # the head is the last block's, untouched
    found = problems(filled)
    assert found[0] == (15, kind) and {seq for seq, _ in found} == {15}


def test_a_block_moved_to_another_chain_is_named_as_missing(filled):
    """A block's chain column changed: its records are missing from the main chain, and the chain it now
    claims to be part of is named."""
    raw(filled, "UPDATE audit_blocks SET chain = 'elsewhere' WHERE first_seq = 15")
    found = problems(filled)
    assert found[0] == (15, "deleted")
    with open_store(filled) as store:
        report = verify(store)
    assert any(p.chain == "elsewhere" for p in report.problems)


def test_a_block_deleted_from_the_middle_is_named(filled):
    """The block of records 15 to 21 deleted with its index rows: exactly records 15 to 21 are missing."""
    raw(filled, "DELETE FROM audit_blocks WHERE first_seq = 15")
    raw(filled, "DELETE FROM audit_case_index WHERE seq BETWEEN 15 AND 21")
    assert problems(filled) == [(15, "deleted")]
    code, out = cli_verify(filled)
    assert code == 1 and out.splitlines()[0] == "record 15: deleted: records 15 to 21 are missing"


def test_two_swapped_blocks_are_named(filled):
    """The blocks of records 8-14 and 15-21 exchanged (their seq columns swapped, index rows to match):
    both are named as reordered."""
    raw(filled, "UPDATE audit_blocks SET first_seq = -8 WHERE first_seq = 8")
    raw(filled, "UPDATE audit_blocks SET first_seq = 8, last_seq = 14 WHERE first_seq = 15")
    raw(filled, "UPDATE audit_blocks SET first_seq = 15, last_seq = 21 WHERE first_seq = -8")
    raw(filled, "UPDATE audit_case_index SET seq = CASE WHEN seq < 15 THEN seq + 7 ELSE seq - 7 END "
                "WHERE seq BETWEEN 8 AND 21")
    assert problems(filled) == [(8, "reordered"), (15, "reordered")]
    code, out = cli_verify(filled)
    assert code == 1 and out.splitlines()[0] == ("record 8: reordered: records 8 to 14 hold the block written as "
                                                 "records 15 to 21: blocks were moved")


def test_a_deleted_index_row_is_named(filled):
    """An index row by case id deleted: the record it indexed is named."""
    raw(filled, "DELETE FROM audit_case_index WHERE seq = 23")
    assert problems(filled) == [(23, "index")]
    code, out = cli_verify(filled)
    assert code == 1 and out.splitlines()[0].startswith("record 23: index: record 23 (case 22, decision) has no index "
                                                        "row by case id")


def test_an_added_index_row_is_named(filled):
    """An index row added for a record that is not that case's: the record it points at is named."""
    raw(filled, "INSERT INTO audit_case_index (case_id, chain, seq, kind) SELECT '12345', chain, seq, kind "
                "FROM audit_case_index WHERE seq = 30")
    assert problems(filled) == [(30, "index")]


def test_a_re_pointed_index_row_is_named_at_both_records(filled):
    """An index row pointed at another record: the record it left and the one it now names are named."""
    raw(filled, "UPDATE audit_case_index SET seq = 33 WHERE seq = 3")
    assert sorted(problems(filled)) == [(3, "index"), (33, "index")]


def _back_date(url, first: int, when: str) -> None:
    block = block_at(url, first)
    header = json.loads(block["header"])
    header["recorded_at"] = when
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    raw(url, "UPDATE audit_blocks SET header = ?, recorded_at = ? WHERE first_seq = ?", (text, when, first))


def test_a_back_dated_block_is_named_even_with_every_hash_recomputed(filled):
    """A block's time (column and header) set before its predecessor's, and every block hash from it to the
    head recomputed: the hashes hold, the time order does not, and the block is named as back-dated;
    `audit show` still lists the latest records last in the chain, not the back-dated ones."""
    _back_date(filled, 15, "2001-01-01T00:00:00.000000Z")
    rehash_from(filled, 15)
    assert problems(filled) == [(15, "backdated")]
    code, out = cli_verify(filled)
    assert code == 1 and out.splitlines()[0].startswith("record 15: backdated: records 15 to 21 recorded at "
                                                        "2001-01-01T00:00:00.000000Z, earlier than")
    shown = run("audit", "show", filled, "--limit", "3").output.splitlines()  # in chain order, not by time
    assert [line.split()[0] for line in shown[1:]] == ["38", "39", "40"]


def test_a_back_dated_block_with_its_own_hash_recomputed_is_named(filled):
    """Back-dated with only its own hash recomputed: named as back-dated, and as changed (the next block
    no longer follows it); no other record is named."""
    _back_date(filled, 15, "2001-01-01T00:00:00.000000Z")
    block = block_at(filled, 15)
    link = blocks.SEED
    import hashlib
    for i, record in enumerate(block["records"]):
        link = hashlib.sha256(link + hashlib.sha256(block["digests"][i * DIGEST:i * DIGEST + 32] + record).digest()
                              ).digest()
    raw(filled, "UPDATE audit_blocks SET hash = ? WHERE first_seq = 15",
        (blocks.block_hash(block["prev"], block["header"], link),))
    found = problems(filled)
    assert (15, "backdated") in found and {seq for seq, _ in found} == {15}


@pytest.fixture
def compressed(url, study_plan):
    """A log of 40 decisions in zstd-compressed blocks of 7."""
    pytest.importorskip("zstandard")
    with AuditLog.open(url, batch_size=7, compress="zstd") as log:
        list(log.decide_many(study_plan, generate(40, seed=3)))
    assert {json.loads(h)["codec"] for (h,) in raw(url, "SELECT header FROM audit_blocks")} == {"zstd"}
    return url


def test_a_compressed_log_verifies(compressed):
    """zstd-compressed blocks verify like plain ones."""
    assert problems(compressed) == []


def test_damaged_zstd_data_is_named_at_its_block(compressed):
    """A byte of a compressed block's data changed: the block cannot be read and is named, or (zstd frames
    carry no checksum) it reads as records of which the changed one is named."""
    ((data,),) = raw(compressed, "SELECT records FROM audit_blocks WHERE first_seq = 22")
    data = bytearray(data)
    data[len(data) // 2] ^= 0xFF
    raw(compressed, "UPDATE audit_blocks SET records = ? WHERE first_seq = 22", (bytes(data),))
    ((seq, kind),) = problems(compressed)  # unreadable (named at the block), or read as a changed record
    assert kind == "edited" and 22 <= seq <= 28
    code, out = cli_verify(compressed)
    assert code == 1 and out.splitlines()[0].startswith(f"record {seq}: edited: ")


def test_an_edited_record_in_a_compressed_block_is_named(compressed):
    """A record edited inside a compressed block (decompressed, changed, compressed again): named exactly."""
    edit_record(compressed, 25, lambda meta: meta.update(r="not-resident" if meta.get("r") != "not-resident"
                                                         else "grant"))
    assert problems(compressed) == [(25, "edited")]


def test_damaged_framing_is_named_at_its_block(filled):
    """A block's records blob cut in the middle of a record: the block cannot be read, and is named."""
    ((data,),) = raw(filled, "SELECT records FROM audit_blocks WHERE first_seq = 29")
    raw(filled, "UPDATE audit_blocks SET records = ? WHERE first_seq = 29", (bytes(data)[:-5],))
    found = problems(filled)  # and the work item its referral opened names a record the log cannot read
    assert found[0] == (29, "edited") and {kind for _, kind in found[1:]} <= {"work_item"}


def test_changed_digests_are_named_at_their_block(filled):
    """A block's digests cut short (records left alone): the block is named."""
    block = block_at(filled, 36)
    write_block(filled, block, digests=block["digests"][:-DIGEST])
    assert problems(filled) == [(36, "edited")]


def test_a_forged_block_inserted_in_the_middle_is_named(filled, study_plan, tmp_path):
    """A whole block of forged records, correctly hashed and linked after the block of records 8-14, put in
    as records 15-21 with every later block, index row, work item and the head renumbered: the forged
    block is named as inserted, and nothing outside it."""
    forged = str(tmp_path / "forged.db")  # the forger has the engine build the records and digests
    with AuditLog.open(forged, batch_size=7) as log:
        list(log.decide_many(study_plan, [{**c, "case_id": 9000 + i} for i, c in enumerate(generate(7, seed=8))]))
    source = block_at(forged, 1)
    ((prev, at),) = raw(filled, "SELECT hash, recorded_at FROM audit_blocks WHERE first_seq = 8")
    rulesets = json.loads(source["header"])["rulesets"]
    header = blocks.header(None, 15, 21, at, "none", json.loads(source["header"])["engine_version"], rulesets)
    hash_ = blocks.block_hash(prev, header, full_link(source, 7))
    for first, last in reversed(BLOCKS[2:]):
        raw(filled, "UPDATE audit_blocks SET first_seq = ?, last_seq = ? WHERE first_seq = ?",
            (first + 7, last + 7, first))
    raw(filled, "INSERT INTO audit_blocks (chain, first_seq, last_seq, recorded_at, header, records, digests, "
                "prev_hash, hash) VALUES ('', 15, 21, ?, ?, ?, ?, ?, ?)",
        (at, header, frame(source["records"]), source["digests"], prev, hash_))
    raw(filled, "UPDATE audit_case_index SET seq = seq + 7 WHERE seq >= 15")
    for key, _, seq, kind in raw(forged, "SELECT case_id, chain, seq, kind FROM audit_case_index"):
        raw(filled, "INSERT INTO audit_case_index (case_id, chain, seq, kind) VALUES (?, '', ?, ?)",
            (key, seq + 14, kind))
    raw(filled, "UPDATE audit_work_items SET record_seq = record_seq + 7 WHERE record_seq >= 15")
    raw(filled, "UPDATE audit_head SET seq = 47")
    found = problems(filled)  # (and the forged referrals' work items, which the forger did not make)
    assert found[0] == (15, "inserted") and all(15 <= seq <= 21 for seq, _ in found)


@pytest.fixture(scope="module")
def template(tmp_path_factory, study_plan):
    """One SQLite log of 40 decisions in blocks of 7, copied for each generated tampering."""
    path = str(tmp_path_factory.mktemp("template") / "audit.db")
    with AuditLog.open(path, batch_size=7) as log:
        list(log.decide_many(study_plan, generate(40, seed=3)))
    return path


def _tamper(url: str, seq: int, how: str) -> list[tuple[int, str]]:
    """Tamper with record ``seq`` as ``how`` says; the (seq, kind) verify must name first."""
    block = block_at(url, seq)
    i, first, last = seq - block["first"], block["first"], block["last"]
    if how == "edit":
        edit_record(url, seq, lambda meta: meta.update(r="not-resident" if meta.get("r") != "not-resident"
                                                       else "grant"))
        return [(seq, "edited")]
    if how == "edit, digests recomputed":
        edit_record(url, seq, lambda meta: meta.update(r="not-resident" if meta.get("r") != "not-resident"
                                                       else "grant"), recompute=True)
        # the last record of a block: any record's digests might have been recomputed up to the block's
        # hash, so the block is named (by its first record)
        return [(seq if seq < last else first, "edited")]
    if how == "delete":
        del block["records"][i]
        block["digests"] = block["digests"][:i * DIGEST] + block["digests"][(i + 1) * DIGEST:]
        write_block(url, block)
        return [(seq, "deleted")]
    # swap with the next record of the block (or the one before, for a block's last)
    j = i + 1 if seq < last else i - 1
    d = [block["digests"][k * DIGEST:(k + 1) * DIGEST] for k in range(len(block["records"]))]
    block["records"][i], block["records"][j] = block["records"][j], block["records"][i]
    d[i], d[j] = d[j], d[i]
    block["digests"] = b"".join(d)
    write_block(url, block)
    raw(url, "UPDATE audit_case_index SET seq = CASE seq WHEN ? THEN ? ELSE ? END WHERE seq IN (?, ?)",
        (seq, first + j, seq, seq, first + j))
    return sorted([(seq, "reordered"), (first + j, "reordered")])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=st.integers(1, 40), how=st.sampled_from(["edit", "edit, digests recomputed", "delete", "swap"]))
def test_any_one_record_tampered_is_named_exactly(template, tmp_path_factory, seq, how):
    """Whichever record of whichever block is edited (with or without its digests recomputed), removed, or
    swapped with its neighbour: verify names that record, with the right kind, and no other record."""
    url = str(tmp_path_factory.mktemp("t") / "audit.db")
    shutil.copyfile(template, url)
    expected = _tamper(url, seq, how)
    found = [p for p in problems(url) if p[1] != "work_item"]  # a removed referral leaves its work item
    assert sorted(found) == expected, (seq, how, found)
