"""Peer benchmark: the study-grant workload through vedtak and the engines a user would otherwise pick.

Usage: python benchmarks/bench_peers.py [N] [--repeat R]   (needs: pip install -e '.[bench]')

In one run: checks that the hand-written if-chain, vedtak's compiled evaluator, vedtak's
durable-rules backend, durable-rules used directly (one ruleset, one session) and zen-engine
(ZenEngine.evaluate on a graph compiled once, held by a static loader) agree on every one of
N generated cases (outcome, reason, amount), then measures each in a forked process of its
own: cases/s (median of R passes), the ratio to the if-chain, single-call latency (median and
p99 of 2 000 calls) and the memory the engine adds: the process's peak RSS above its RSS when
the measurement began (the cases are already in memory, inherited from the parent). Every
engine is built before its timed loop. The last row is zen-engine with a loader callback
returning the graph's text, which zen-engine calls, parses and compiles on every evaluate
(the loader calls per evaluate are counted and printed): shown to explain earlier, wrong,
figures, not as zen-engine's speed.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import vedtak  # noqa: E402
from peers import make_durable, make_zen, make_zen_reloading  # noqa: E402
from vedtak.evaluation.durable import DurablePlan  # noqa: E402
from workload import generate, if_chain, vedtak_result  # noqa: E402

RULESET = HERE.parent / "rulesets" / "study-grant"


def _vedtak_compiled():
    plan = vedtak.compile(vedtak.load(RULESET))
    return lambda c: vedtak_result(plan.decide(c))


def _vedtak_durable():
    plan = DurablePlan(vedtak.load(RULESET))
    return lambda c: vedtak_result(plan.decide(c))


RELOADING = "zen-engine, loader callback (misuse)"


def engines() -> dict:
    """Each engine's name and the function that builds it (called once, before its timed loop)."""
    return {
        "hand-written if-chain": lambda: if_chain,
        "vedtak compiled (validate + evaluate)": _vedtak_compiled,
        "vedtak durable backend": _vedtak_durable,
        "durable-rules post() directly": make_durable,
        "zen-engine evaluate, compiled once": make_zen,
        RELOADING: make_zen_reloading,
    }


def _status(key: str) -> int:
    """A VmRSS/VmHWM figure of this process, in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _measure(name: str, cases: list, repeat: int, out) -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset this process's peak RSS to its current RSS
    base_rss = _status("VmRSS")
    fn = engines()[name]()
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        for c in cases:
            fn(c)
        rates.append(len(cases) / (time.perf_counter() - start))
    lat = []
    for c in cases[:2000]:
        t = time.perf_counter_ns()
        fn(c)
        lat.append(time.perf_counter_ns() - t)
    lat.sort()
    out.put((name, statistics.median(rates), lat[len(lat) // 2] / 1000, lat[int(len(lat) * 0.99)] / 1000,
             (_status("VmHWM") - base_rss) / 1024))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cases = generate(args.n)
    made = {name: make() for name, make in engines().items()}
    expected = [if_chain(c) for c in cases]
    for name, fn in made.items():
        wrong = [(c["case_id"], e, fn(c)) for c, e in zip(cases, expected) if fn(c) != e]
        if wrong:
            print(f"{name} disagrees with the if-chain on {len(wrong)} cases, e.g. {wrong[:3]}", file=sys.stderr)
            return 1
    print(f"all {len(made)} engines agree on all {len(cases):,} cases (outcome, reason, amount)")
    dropped = made["durable-rules post() directly"].dropped
    loads = made[RELOADING].loads / len(cases)  # each case was decided once above
    del made
    ctx = mp.get_context("fork")
    rows = []
    for name in engines():
        q = ctx.Queue()
        p = ctx.Process(target=_measure, args=(name, cases, args.repeat, q))
        p.start()
        rows.append(q.get())
        p.join()
    chain = rows[0][1]
    print(f"{'engine':40} {'cases/s':>10} {'ratio':>8} {'median µs':>10} {'p99 µs':>8} {'peak MB':>8}")
    for name, rate, med, p99, mem in rows:
        print(f"{name:40} {rate:10,.0f} {rate / chain:7.3f}x {med:10.1f} {p99:8.1f} {mem:8.1f}")
    print(f"(durable-rules dropped {dropped} of {len(cases):,} events in the agreement pass; each was posted again)")
    print(f"(zen-engine's loader callback ran {loads:.2f} times per evaluate; the static loader's graph is "
          "compiled once)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
