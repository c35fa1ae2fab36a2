"""Batch benchmark: `vedtak run` end to end (JSONL in, decisions out, SQLite audit) and its memory.

Usage: python benchmarks/bench_batch.py [N ...] [--workers 1 2]

For each N (default 100 000 and 1 000 000) writes N generated study-grant cases as JSON
Lines, then runs the real command line — `vedtak run RULESET cases.jsonl --audit DB --out
decisions.jsonl --workers W` — in a child process for each W, and prints wall time,
cases/s and the run's peak RSS (the command's process and its workers, as the kernel
reports it for waited-for children). Every log is verified afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from workload import generate  # noqa: E402

RULESET = HERE.parent / "rulesets" / "study-grant"

_PEAK = """
import resource, subprocess, sys
p = subprocess.run(sys.argv[1:])
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"PEAK {peak}", file=sys.stderr)
sys.exit(p.returncode)
"""


def write_cases(path: Path, n: int) -> None:
    with path.open("w") as f:
        for start in range(0, n, 100_000):
            for c in generate(min(100_000, n - start), seed=start + 1):
                c["case_id"] = start + c["case_id"]
                f.write(json.dumps(c) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sizes", nargs="*", type=int, default=[100_000, 1_000_000])
    ap.add_argument("--workers", nargs="*", type=int, default=[1, 2])
    args = ap.parse_args()
    print(f"{'cases':>10} {'workers':>7} {'seconds':>8} {'cases/s':>9} {'peak RSS MB':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            cases = Path(tmp) / f"cases-{n}.jsonl"
            write_cases(cases, n)
            for w in args.workers:
                db, out = Path(tmp) / f"audit-{n}-{w}.db", Path(tmp) / f"out-{n}-{w}.jsonl"
                cmd = [sys.executable, "-c", _PEAK, sys.executable, "-m", "vedtak.cli", "run", str(RULESET),
                       str(cases), "--audit", str(db), "--out", str(out), "--workers", str(w)]
                start = time.perf_counter()
                p = subprocess.run(cmd, capture_output=True, text=True)
                seconds = time.perf_counter() - start
                if p.returncode != 0:
                    print(p.stderr, file=sys.stderr)
                    return 1
                peak = int(p.stderr.rsplit("PEAK ", 1)[1].split()[0]) / 1024
                v = subprocess.run([sys.executable, "-m", "vedtak.cli", "audit", "verify", str(db)],
                                   capture_output=True, text=True)
                lines = sum(1 for _ in out.open())
                ok = "verified" if v.returncode == 0 and lines == n else "NOT VERIFIED"
                print(f"{n:>10,} {w:>7} {seconds:8.1f} {n / seconds:9,.0f} {peak:12.1f}   log {ok}")
                os.remove(db)
                os.remove(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
