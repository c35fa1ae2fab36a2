"""PostgreSQL block insert: one 1 000-record block and its case-index rows, written three ways.

Usage: python benchmarks/bench_pg_insert.py [--postgres URL] [--blocks 30] [--records 1000] [--items 110]

Builds one block of N study-grant records as a batch worker builds it (records, digests,
index), then, on the server (default $VEDTAK_TEST_POSTGRES; the benchmark drops and creates
its own two tables, ``bench_blocks`` and ``bench_case_index``, shaped as ``audit_blocks`` and
``audit_case_index``), inserts the block row and its N index rows per transaction:

- executemany: the block row, then one single-row INSERT per index row (psycopg's
  executemany, which pipelines the statements);
- jsonb: the block row, then one INSERT ... SELECT over the block's index as one jsonb array
  (``jsonb_array_elements``: one statement per block);
- copy: the block row, then ``COPY ... FROM STDIN`` of the index rows as one text buffer;
- jsonb, pglz: as jsonb, on a connection that leaves the block row's TOAST compression at
  the server's default (pglz) where the others use lz4, as the store's writer does;
- store: ``PostgresStore._link_block`` as shipped (an append to a partition chain, whatever
  way the store uses), for comparison.

Prints, per way, the statements' time and the commit's (fsync on) in microseconds per record,
the median of ``--blocks`` blocks after one warm-up each. The ways run interleaved, block by
block, so that a slower moment of a shared machine falls on all of them alike.

Then the work items a block's referrals open (``--items``, 110 a block: the study-grant
workload refers about 11 % of its cases), into a table shaped as ``audit_work_items``, four
ways: one multi-row INSERT (11 parameters an item), executemany, one jsonb statement, COPY.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from workload import generate  # noqa: E402

RULESET = HERE.parent / "rulesets" / "study-grant"

BLOCK_TABLE = """CREATE TABLE bench_blocks (chain TEXT NOT NULL, first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL,
    recorded_at TEXT NOT NULL, header TEXT NOT NULL, records BYTEA NOT NULL, digests BYTEA NOT NULL,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (chain, first_seq))"""
INDEX_TABLE = """CREATE TABLE bench_case_index (case_id TEXT NOT NULL, chain TEXT NOT NULL, seq BIGINT NOT NULL,
    kind TEXT NOT NULL, PRIMARY KEY (case_id, chain, seq))"""
BLOCK_INSERT = ("INSERT INTO bench_blocks (chain, first_seq, last_seq, recorded_at, header, records, digests, "
                "prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)")


def build_block(n: int):
    """One block of ``n`` study-grant records, built as a batch worker builds it."""
    from vedtak.audit.log import PiiPolicy
    from vedtak.batch.runner import decide_block
    from vedtak.evaluation.compile import compile as compile_plan
    from vedtak.batch.inputs import Item
    from vedtak.language.load import load

    plan = compile_plan(load(str(RULESET)))
    items = []
    for i, case in enumerate(generate(n, seed=7), 1):
        items.append(Item("cases.jsonl", i, case, None, json.dumps(case)))
    return decide_block(items, plan, PiiPolicy("keep", None)).block


def _text_field(value: str) -> str:
    """A value in COPY's text format."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def way_executemany(cur, block, chain, first):
    index = json.loads(block.index)
    cur.executemany("INSERT INTO bench_case_index (case_id, chain, seq, kind) VALUES (%s, %s, %s, %s)",
                    [(k, chain, first + i, c) for i, (k, c) in enumerate(index) if k is not None])


def way_jsonb(cur, block, chain, first):
    cur.execute("INSERT INTO bench_case_index (case_id, chain, seq, kind) SELECT x->>0, %s, %s::bigint + ord - 1, "
                "x->>1 FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS t(x, ord) "
                "WHERE jsonb_typeof(x->0) = 'string'", (chain, first, block.index))


def way_copy(cur, block, chain, first):
    index = json.loads(block.index)
    c = _text_field(chain)
    text = "".join([f"{_text_field(k)}\t{c}\t{first + i}\t{kind}\n" for i, (k, kind) in enumerate(index)
                    if k is not None])
    with cur.copy("COPY bench_case_index (case_id, chain, seq, kind) FROM STDIN") as copy:
        copy.write(text)


WORK_TABLE = """CREATE TABLE bench_work_items (id BIGINT PRIMARY KEY, record_seq BIGINT, kind TEXT NOT NULL,
    case_id TEXT, queue TEXT NOT NULL, reason_code TEXT NOT NULL, reason_text TEXT NOT NULL, proposed TEXT,
    priority INTEGER NOT NULL, created_at TEXT NOT NULL, status TEXT NOT NULL, assignee TEXT, claimed_at TEXT,
    decided_seq BIGINT, record_chain TEXT)"""
WORK_COLUMNS = "id, record_seq, record_chain, kind, case_id, queue, reason_code, reason_text, proposed, priority, " \
               "created_at"


def items_multirow(cur, rows):
    cur.execute(f"INSERT INTO bench_work_items ({WORK_COLUMNS}, status) VALUES "
                + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'open')"] * len(rows)),
                tuple(v for row in rows for v in row))


def items_executemany(cur, rows):
    cur.executemany(f"INSERT INTO bench_work_items ({WORK_COLUMNS}, status) VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'open')", rows)


def items_jsonb(cur, rows):
    cur.execute(f"INSERT INTO bench_work_items ({WORK_COLUMNS}, status) SELECT (x->>0)::bigint, (x->>1)::bigint, "
                "x->>2, x->>3, x->>4, x->>5, x->>6, x->>7, x->>8, (x->>9)::int, x->>10, 'open' "
                "FROM jsonb_array_elements(%s::jsonb) AS t(x)", (json.dumps(rows),))


def items_copy(cur, rows):
    with cur.copy(f"COPY bench_work_items ({WORK_COLUMNS}, status) FROM STDIN") as copy:
        for row in rows:
            copy.write_row((*row, "open"))


def bench_work_items(db, blocks_n: int, n: int) -> dict:
    """Seconds per block of ``n`` work items, each way (median of ``blocks_n`` after a warm-up)."""
    with db.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_work_items")
        cur.execute(WORK_TABLE)
    db.commit()
    ways = {"multi-row": items_multirow, "executemany": items_executemany, "jsonb": items_jsonb, "copy": items_copy}
    timings: dict = {name: [] for name in ways}
    next_id = 0
    try:
        for b in range(blocks_n + 1):
            for name, way in ways.items():
                rows = [(next_id + i + 1, i + 1, "bench/00000", "referral", f'"C-{next_id + i:07d}"', "general",
                         "rule", "The rule refers the case to a caseworker", '{"outcome":"grant"}', 0,
                         "2026-01-01T00:00:00.000000Z") for i in range(n)]
                next_id += n
                started = time.perf_counter()
                with db.cursor() as cur:
                    way(cur, rows)
                ended = time.perf_counter()
                db.commit()
                if b:
                    timings[name].append(ended - started)
    finally:
        with db.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS bench_work_items")
        db.commit()
    return timings


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres", default=os.environ.get("VEDTAK_TEST_POSTGRES"),
                    help="A PostgreSQL URL where the benchmark may create and drop its tables "
                         "(default: $VEDTAK_TEST_POSTGRES).")
    ap.add_argument("--blocks", type=int, default=30, help="blocks written each way (default 30)")
    ap.add_argument("--records", type=int, default=1000, help="records per block (default 1000)")
    ap.add_argument("--items", type=int, default=110, help="work items per block (default 110)")
    args = ap.parse_args()
    if not args.postgres:
        print("no PostgreSQL server: give --postgres URL or set VEDTAK_TEST_POSTGRES (bash .ci/postgres starts one)",
              file=sys.stderr)
        return 2
    import psycopg

    from vedtak.audit import blocks
    from vedtak.audit.postgres import PostgresStore
    from vedtak.audit.record import GENESIS, utc_now
    from vedtak.evaluation.decision import ENGINE_VERSION

    block = build_block(args.records)
    n = len(block)
    db = psycopg.connect(args.postgres, autocommit=False)
    plain = psycopg.connect(args.postgres, autocommit=False)  # the server's default TOAST compression
    try:  # as the store's writer does (engine/audit/postgres.py _lz4)
        db.execute("SET default_toast_compression = 'lz4'")
        db.commit()
        lz4 = "lz4"
    except psycopg.Error:
        db.rollback()
        lz4 = "the server's default (no lz4 here)"
    with db.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_blocks")
        cur.execute("DROP TABLE IF EXISTS bench_case_index")
        cur.execute(BLOCK_TABLE)
        cur.execute(INDEX_TABLE)
    db.commit()
    # the store's own way, on a partition chain of a throwaway run in the audit tables
    store = PostgresStore(args.postgres)
    run_id = "bench-insert-" + utc_now()
    store.start_run(run_id, run_id, "{}", [(f"{run_id}/{w:05d}", w, "{}") for w in range(1)])
    ways = {"executemany": way_executemany, "jsonb": way_jsonb, "copy": way_copy, "jsonb, pglz": way_jsonb,
            "store": None}
    timings: dict = {name: ([], [], []) for name in ways}
    try:
        for b in range(args.blocks + 1):
            for w, (name, way) in enumerate(ways.items()):
                first = b * n + 1
                if way is None:
                    chain = f"{run_id}/00000"
                    started = time.perf_counter()
                    seq, prev = store._begin_chain_append(chain)
                    store._link_block(block, seq, prev, chain, utc_now())
                    row = mid = time.perf_counter()
                    store._commit()
                else:
                    chain = f"bench/{w}"
                    now = utc_now()
                    head = blocks.header(chain, first, first + n - 1, now, block.codec, ENGINE_VERSION, block.rulesets)
                    conn = plain if name.endswith("pglz") else db
                    started = time.perf_counter()
                    with conn.cursor() as cur:
                        hash_ = blocks.block_hash(GENESIS, head, block.link)
                        cur.execute(BLOCK_INSERT, (chain, first, first + n - 1, now, head, block.payload,
                                                   block.digests, GENESIS, hash_))
                        row = time.perf_counter()
                        way(cur, block, chain, first)
                    mid = time.perf_counter()
                    conn.commit()
                ended = time.perf_counter()
                if b:  # the first block of each way warms up
                    timings[name][0].append(row - started)
                    timings[name][1].append(mid - row)
                    timings[name][2].append(ended - mid)
        with db.cursor() as cur:
            cur.execute("SELECT chain, COUNT(*) FROM bench_case_index GROUP BY chain ORDER BY chain")
            counts = cur.fetchall()
        assert all(c == n * (args.blocks + 1) for _, c in counts) and len(counts) == 4, counts
        items = bench_work_items(db, args.blocks, args.items)
    finally:
        with db.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS bench_blocks")
            cur.execute("DROP TABLE IF EXISTS bench_case_index")
        db.commit()
        db.close()
        plain.close()
        store.close()
    print(f"PostgreSQL: one block of {n} records and its {n} case-index rows per transaction; "
          f"median of {args.blocks} blocks; block rows TOAST-compressed with {lz4} unless named pglz")
    print("µs per record:")
    print(f"{'way':>12} {'block row':>10} {'index rows':>11} {'commit':>8} {'total':>8}")
    for name, parts in timings.items():
        r, i, c = (statistics.median(t) / n * 1e6 for t in parts)
        if name == "store":  # the store's statements are timed together
            print(f"{name:>12} {'':>10} {r + i:>11.2f} {c:8.2f} {r + i + c:8.2f}   (block row and index rows)")
        else:
            print(f"{name:>12} {r:10.2f} {i:11.2f} {c:8.2f} {r + i + c:8.2f}")
    print(f"work items, {args.items} a block (the store uses copy), µs per item:")
    for name, seconds in items.items():
        print(f"{name:>12} {statistics.median(seconds) / args.items * 1e6:10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
