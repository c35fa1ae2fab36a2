"""Audit benchmark: decide-and-record throughput, bytes per record and verify speed, in one run.

Usage: python benchmarks/bench_audit.py [N] [--batch B] [--repeat R] [--no-postgres]

Decides N generated study-grant cases (default 100 000) in one process (a) without a log
(validate + evaluate raw dicts, as the core benchmark's figure (b)) and (b) with an audit
log through ``AuditLog.decide_many`` — every block of B decisions (default 1000) committed
before it is released — on SQLite, on SQLite with zstd block compression, and on
PostgreSQL when ``VEDTAK_TEST_POSTGRES`` names a server. Prints cases/s and the ratio to
(a) (target: >= 0.4x), the log's bytes per record on disk (SQLite: the file after a WAL
checkpoint; targets: <= 400, <= 120 compressed), and how fast ``verify`` checks it
(target: >= 300 000 records/s). Every log is verified.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import vedtak  # noqa: E402
from vedtak.audit import AuditLog, open_store  # noqa: E402
from vedtak.audit.verify import verify  # noqa: E402
from workload import generate  # noqa: E402

RULESET = HERE.parent / "rulesets" / "study-grant"


def sqlite_bytes(db: str) -> int:
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return os.path.getsize(db)


def postgres_db(base: str) -> str:
    """A fresh database on the test server (dropped by the caller)."""
    import psycopg
    name = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(base, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    return base.rsplit("/", 1)[0] + "/" + name, name


def drop_postgres(base: str, name: str) -> None:
    import psycopg
    with psycopg.connect(base, autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    plan = vedtak.compile(vedtak.load(RULESET))
    cases = generate(args.n)
    pg = None if args.no_postgres else os.environ.get("VEDTAK_TEST_POSTGRES")

    plain: list[float] = []
    rows: dict[str, list[float]] = {}
    sizes: dict[str, float] = {}
    verified: dict[str, list[float]] = {}
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            start = time.perf_counter()
            for c in cases:
                plan.decide(c)
            plain.append(args.n / (time.perf_counter() - start))
            stores = [("sqlite", "none"), ("sqlite", "zstd")] + ([("postgresql", "none")] if pg else [])
            for kind, codec in stores:
                label = kind + (" + zstd" if codec == "zstd" else "")
                dropped = None
                if kind == "sqlite":
                    db = str(Path(tmp) / f"audit-{codec}-{i}.db")
                else:
                    db, dropped = postgres_db(pg)
                try:
                    start = time.perf_counter()
                    with AuditLog.open(db, batch_size=args.batch, compress=codec) as log:
                        released = sum(1 for _ in log.decide_many(plan, cases))
                    rows.setdefault(label, []).append(args.n / (time.perf_counter() - start))
                    assert released == args.n
                    with open_store(db, read_only=True) as store:
                        start = time.perf_counter()
                        report = verify(store)
                        verified.setdefault(label, []).append(report.records / (time.perf_counter() - start))
                    ok = ok and report.ok and report.records == args.n
                    if kind == "sqlite":
                        sizes[label] = sqlite_bytes(db) / args.n
                        os.remove(db)
                finally:
                    if dropped:
                        drop_postgres(pg, dropped)

    a = statistics.median(plain)
    print(f"{args.n:,} study-grant cases in one process, blocks of {args.batch} (median of {args.repeat})")
    print(f"{'':44}{'cases/s':>10} {'ratio':>8}   {'bytes/record':>12}   {'verify records/s':>16}")
    print(f"{'validate + evaluate, no log':44}{a:10,.0f} {1:7.3f}x")
    for label, rates in rows.items():
        r = statistics.median(rates)
        size = f"{sizes[label]:12,.0f}" if label in sizes else f"{'-':>12}"
        print(f"{'decide_many, audit log on ' + label:44}{r:10,.0f} {r / a:7.3f}x   {size}   "
              f"{statistics.median(verified[label]):16,.0f}")
    print("targets: ratio >= 0.400x; bytes/record <= 400 (<= 120 with zstd); verify >= 300,000 records/s")
    print("every log verified" if ok else "A LOG DID NOT VERIFY")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
