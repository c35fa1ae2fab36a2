"""Batch benchmark: `vedtak run` end to end (JSONL in, decisions out, SQLite audit) and its memory.

Usage: python benchmarks/bench_batch.py [N ...] [--workers 1 2]

For each N (default 100 000 and 1 000 000) writes N generated study-grant cases as JSON
Lines, then runs the real command line — `vedtak run RULESET cases.jsonl --audit DB --out
decisions.jsonl --workers W` — in a child process for each W, and prints wall time,
cases/s and the run's peak RSS (the command's process and its workers, as the kernel
reports it for waited-for children). Every log is verified afterwards.

In the same run, for each N, zen-engine's evaluate alone decides the same cases in this
process (the graph compiled once, as in `peers.py`; each line's text handed to evaluate, its
fastest input form here), and each `vedtak run` figure is printed as a ratio to it (the
target: 2 workers at least 1.5x). zen-engine's results are checked against the workload's
if-chain outside the clock. Without zen-engine installed (pip install -e '.[bench]'), or
with --no-zen, that figure is skipped and a line says so.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from workload import generate, if_chain  # noqa: E402

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


def zen_evaluate(path: Path) -> tuple[int, float]:
    """zen-engine's evaluate alone over the cases in a JSON Lines file, in this process: (cases, seconds).

    Lines are read 100 000 at a time outside the clock; the clock covers only evaluate on each
    line's text. Raises ValueError naming a case where zen-engine disagrees with the if-chain.
    """
    from peers import ZEN_KEY, zen_engine, zen_terms
    evaluate = zen_engine().evaluate
    n, seconds = 0, 0.0
    with path.open() as f:
        while lines := list(itertools.islice(f, 100_000)):
            start = time.perf_counter()
            results = [evaluate(ZEN_KEY, line) for line in lines]
            seconds += time.perf_counter() - start
            n += len(lines)
            for line, r in zip(lines, results):
                case = json.loads(line)
                if zen_terms(r) != if_chain(case):
                    raise ValueError(f"zen-engine disagrees on case {case['case_id']}: {zen_terms(r)}")
    return n, seconds


def _has_zen() -> bool:
    return importlib.util.find_spec("zen") is not None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sizes", nargs="*", type=int, default=[100_000, 1_000_000])
    ap.add_argument("--workers", nargs="*", type=int, default=[1, 2])
    ap.add_argument("--no-zen", action="store_true", help="skip zen-engine's evaluate-only figure")
    args = ap.parse_args()
    with_zen = not args.no_zen and _has_zen()
    if not with_zen:
        why = "--no-zen" if args.no_zen else "zen-engine is not installed (pip install -e '.[bench]')"
        print(f"zen-engine's evaluate-only figure skipped: {why}")
    print(f"{'cases':>10} {'workers':>7} {'seconds':>8} {'cases/s':>9} {'peak RSS MB':>12} {'vs zen':>7} "
          f"{'B/record':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            cases = Path(tmp) / f"cases-{n}.jsonl"
            write_cases(cases, n)
            zen_rate = None
            if with_zen:
                try:
                    done, zen_seconds = zen_evaluate(cases)
                except ValueError as exc:
                    print(exc, file=sys.stderr)
                    return 1
                zen_rate = done / zen_seconds
                print(f"{n:>10,} {'zen':>7} {zen_seconds:8.1f} {zen_rate:9,.0f} {'-':>12} {1:6.2f}x {'-':>9}   "
                      "zen-engine evaluate alone, in process, graph compiled once")
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
                ratio = f"{n / seconds / zen_rate:6.2f}x" if zen_rate else f"{'-':>7}"
                con = sqlite3.connect(db)  # the log on disk: the file once its write-ahead log is checkpointed
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                con.close()
                size = db.stat().st_size / n
                print(f"{n:>10,} {w:>7} {seconds:8.1f} {n / seconds:9,.0f} {peak:12.1f} {ratio} {size:9,.0f}   "
                      f"log {ok}")
                os.remove(db)
                os.remove(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
