"""Audit benchmark: decide-and-record throughput to SQLite beside validate-and-evaluate, in one run.

Usage: python benchmarks/bench_audit.py [N] [--batch B] [--repeat R]

Decides N generated study-grant cases (default 100 000) in one process (a) without a log
(validate + evaluate raw dicts, as the core benchmark's figure (b)) and (b) with a SQLite
audit log, every decision committed before it is released, in transactions of B records
(default 1000). Prints cases/s and the ratio; target: with the log >= 0.5x without.
Afterwards it verifies the log it wrote.
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
