"""Distributed benchmark: `vedtak run --executor dask` on a local 2-worker cluster vs `--workers 2`.

Usage: python benchmarks/bench_dask.py [N] [--postgres URL] [--workers 2] [--partition-size 32MB] [--no-serial]

Writes N generated study-grant cases (default 1 000 000) as JSON Lines, then runs the real
command line in a child process: the local executor (`--workers W`, one audit chain) and the
Dask executor (a local cluster of W worker processes, one chain per partition and a
manifest), each with a SQLite audit file and — given `--postgres` or VEDTAK_TEST_POSTGRES —
with PostgreSQL (whose audit tables are dropped before each run). Prints wall time, cases/s,
the ratio of each Dask run to the local run on the same store, and verifies every log.
On one 2-core machine this measures Dask's overhead; the point of the executor is that the
same command runs on many machines. So a third row per store ("serial") runs the same
partitions one after another in this process, without a cluster: what one worker does with
one partition (read its byte range, decide, build blocks, append them to its chain) — the
rate each machine adds to a real cluster.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_batch import write_cases  # noqa: E402

RULESET = HERE.parent / "rulesets" / "study-grant"
TABLES = ("audit_records", "audit_head", "audit_rulesets", "audit_meta", "audit_work_items", "audit_work_item_events",
          "audit_chain_records", "audit_chains", "audit_runs", "audit_blocks", "audit_case_index")


def reset_postgres(url: str) -> None:
    import psycopg
    with psycopg.connect(url, autocommit=True) as db:
        for table in TABLES:
            db.execute(f"DROP TABLE IF EXISTS {table}")
        db.execute("DROP SEQUENCE IF EXISTS audit_work_item_ids")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=1_000_000)
    ap.add_argument("--postgres", default=os.environ.get("VEDTAK_TEST_POSTGRES"),
                    help="A PostgreSQL URL whose audit tables may be dropped (default: $VEDTAK_TEST_POSTGRES).")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--partition-size", default="32MB")
    ap.add_argument("--no-serial", action="store_true", help="skip the partitions-in-this-process row")
    args = ap.parse_args()
    print(f"{args.n:,} study-grant cases, {args.workers} workers, partitions of {args.partition_size}")
    print(f"{'store':>10} {'executor':>9} {'seconds':>8} {'cases/s':>9} {'vs local':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        cases = Path(tmp) / "cases.jsonl"
        write_cases(cases, args.n)
        stores = [("sqlite", None)] + ([("postgresql", args.postgres)] if args.postgres else [])
        for kind, url in stores:
            local_rate = None
            for executor in ("local", "dask"):
                if url:
                    reset_postgres(url)
                audit = url or str(Path(tmp) / f"audit-{executor}.db")
                out = Path(tmp) / f"out-{executor}{'' if executor == 'dask' else '.jsonl'}"
                cmd = [sys.executable, "-m", "vedtak.cli", "run", str(RULESET), str(cases), "--audit", audit,
                       "--out", str(out), "--workers", str(args.workers), "--executor", executor]
                if executor == "dask":
                    cmd += ["--partition-size", args.partition_size]
                start = time.perf_counter()
                p = subprocess.run(cmd, capture_output=True, text=True)
                seconds = time.perf_counter() - start
                if p.returncode != 0:
                    print(p.stdout, p.stderr, file=sys.stderr)
                    return 1
                rate = args.n / seconds
                local_rate = local_rate or rate
                v = subprocess.run([sys.executable, "-m", "vedtak.cli", "audit", "verify", audit],
                                   capture_output=True, text=True)
                files = sorted(out.glob("part-*.jsonl")) if out.is_dir() else [out]
                lines = sum(1 for f in files for _ in f.open())
                ok = "verified" if v.returncode == 0 and lines == args.n else "NOT VERIFIED"
                print(f"{kind:>10} {executor:>9} {seconds:8.1f} {rate:9,.0f} {rate / local_rate:8.2f}x   log {ok}",
                      flush=True)
            if not args.no_serial:
                if url:
                    reset_postgres(url)
                audit = url or str(Path(tmp) / "audit-serial.db")
                seconds = serial(cases, audit, Path(tmp) / "out-serial", args.partition_size)
                rate = args.n / seconds
                v = subprocess.run([sys.executable, "-m", "vedtak.cli", "audit", "verify", audit],
                                   capture_output=True, text=True)
                ok = "verified" if v.returncode == 0 else "NOT VERIFIED"
                print(f"{kind:>10} {'serial':>9} {seconds:8.1f} {rate:9,.0f} {rate / local_rate:8.2f}x   log {ok}",
                      flush=True)
    return 0


def serial(cases: Path, audit: str, out: Path, partition_size: str) -> float:
    """Seconds for a distributed run whose partitions run one after another in this process."""
    from vedtak.cli.batch import parse_size
    from vedtak.batch.distributed import DistributedRun

    class Serial(DistributedRun):
        def _execute(self, run_id, parts):
            out.mkdir(exist_ok=True)
            return {p.index: self.task(t) for p, t in zip(parts, self._tasks(run_id, parts))}, {}

    run = Serial(str(RULESET), [str(cases)], audit, out_dir=str(out), workers=1,
                 partition_bytes=parse_size(partition_size))
    start = time.perf_counter()
    run.run()
    return time.perf_counter() - start


if __name__ == "__main__":
    raise SystemExit(main())
