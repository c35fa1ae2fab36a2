"""Audit benchmark: decide-and-record throughput to SQLite beside validate-and-evaluate, in one run.

Usage: python benchmarks/bench_audit.py [N] [--batch B] [--repeat R]

Decides N generated study-grant cases (default 100 000) in one process (a) without a log
(validate + evaluate raw dicts, as the core benchmark's figure (b)) and (b) with a SQLite
audit log, every decision committed before it is released, in transactions of B records
(default 1000). Prints cases/s and the ratio; target: with the log >= 0.5x without.
Afterwards it verifies the log it wrote. With --breakdown it also times each step an
audited case needs on its own, and prints the throughput their sum allows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import vedtak  # noqa: E402
from vedtak.audit import AuditLog, open_store  # noqa: E402
from vedtak.audit.verify import verify  # noqa: E402
from workload import generate  # noqa: E402

RULESET = HERE.parent / "rulesets" / "study-grant"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--breakdown", action="store_true",
                    help="Also time each step of an audited case alone, and the ratio those steps allow.")
    args = ap.parse_args()
    plan = vedtak.compile(vedtak.load(RULESET))
    cases = generate(args.n)

    plain, audited = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            start = time.perf_counter()
            for c in cases:
                plan.decide(c)
            plain.append(args.n / (time.perf_counter() - start))

            db = str(Path(tmp) / f"audit{i}.db")
            start = time.perf_counter()
            with AuditLog.open(db, batch_size=args.batch) as log:
                released = sum(1 for _ in log.decide_many(plan, cases))
            audited.append(args.n / (time.perf_counter() - start))
            assert released == args.n
        with open_store(db) as store:
            report = verify(store)
            size = Path(db).stat().st_size
    if not report.ok or report.records != args.n:
        print(f"the log does not verify: {report.problems[:3]}", file=sys.stderr)
        return 1
    a, b = statistics.median(plain), statistics.median(audited)
    print(f"{args.n:,} study-grant cases, SQLite log in transactions of {args.batch} (median of {args.repeat})")
    print(f"{'':44} {'cases/s':>10} {'ratio':>8}")
    print(f"{'validate + evaluate, no log':44} {a:10,.0f} {1:7.3f}x")
    print(f"{'validate + evaluate + commit to the audit log':44} {b:10,.0f} {b / a:7.3f}x   target >= 0.50"
          + (" ok" if b / a >= 0.5 else " MISSED"))
    print(f"log verified: {report.records:,} records, {size / report.records:,.0f} bytes per record on disk")
    if args.breakdown:
        breakdown(plan, cases, a, args.batch)
    return 0


def breakdown(plan, cases, plain_rate: float, batch: int) -> None:
    """What one audited case costs, step by step, and the ratio the steps the record requires allow."""
    import json
    import sqlite3
    from decimal import Decimal

    from vedtak.audit.log import PiiPolicy, make_entry
    from vedtak.audit.record import AuditRecordV1, sha256
    from vedtak.audit.store import SCHEMA, case_key
    from vedtak.decision import canonical_json

    n = len(cases)
    lines = [json.dumps(c) for c in cases]
    steps: dict[str, float] = {}

    def step(name, fn):
        start = time.perf_counter()
        out = fn()
        steps[name] = (time.perf_counter() - start) / n * 1e6
        return out

    step("parse the JSON line (a batch's input)", lambda: [json.loads(x, parse_float=Decimal) for x in lines])
    decisions = step("validate + decide", lambda: [plan.decide(c) for c in cases])
    step("canonical JSON of the input", lambda: [canonical_json(c) for c in cases])
    step("decision JSON (reasons rendered)", lambda: [d.to_json() for d in decisions])
    pii = PiiPolicy()
    entries = [make_entry(d, c, pii) for d, c in zip(decisions, cases)]
    bodies = step("record body", lambda: [AuditRecordV1.make_body(e, i + 1, "2026-01-01T00:00:00.000000Z", "0" * 64)
                                          for i, e in enumerate(entries)])
    step("SHA-256 of input and body", lambda: [(e.input_sha256, sha256(b)) for e, b in zip(entries, bodies)])
    rows = [(i + 1, "2026-01-01T00:00:00.000000Z", e.kind, case_key(e.case_id), "0" * 64, e.ruleset_sha256, b,
             "0" * 64, "0" * 64) for i, (e, b) in enumerate(zip(entries, bodies))]
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(str(Path(tmp) / "rows.db"), isolation_level=None)
        for pragma in ("page_size=65536", "journal_mode=WAL", "synchronous=FULL"):
            db.execute(f"PRAGMA {pragma}")
        for stmt in SCHEMA:
            db.execute(stmt)

        def insert():
            for k in range(0, n, batch):
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT INTO audit_records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows[k:k + batch])
                db.execute("COMMIT")
        step("SQLite insert of the finished rows", insert)
        db.close()
    print("\nper case, each step alone (µs):")
    for name, us in steps.items():
        print(f"  {name:42} {us:7.2f}")
    required = sum(us for name, us in steps.items() if not name.startswith("parse"))
    print(f"  {'every step but parsing, summed':42} {required:7.2f}"
          f"  -> at most {1e6 / required:,.0f} cases/s = {1e6 / required / plain_rate:.3f}x in one process")
    total = sum(steps.values())
    print(f"  {'every step, summed':42} {total:7.2f}"
          f"  -> at most {2e6 / total:,.0f} cases/s on 2 cores, were they perfectly parallel")


if __name__ == "__main__":
    raise SystemExit(main())
