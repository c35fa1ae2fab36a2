"""Core benchmark: vedtak against the hand-written if-chain on the study-grant workload.

Usage: python benchmarks/bench_core.py [N] [--repeat R]

Decides N generated cases (default 100 000) in process, without an audit log: checks that
vedtak and the if-chain agree on every case, then times (a) evaluating already-validated
cases and (b) validating and evaluating raw dicts, and prints cases/s and the ratio to the
if-chain measured in the same run (median of R runs). Targets: (a) >= 0.25x, (b) >= 0.10x.
It then prints the CPU time per case (least of R runs) of deciding, of writing the decision
JSON (checked byte-identical to the generic canonical JSON on every case) and of both.

Part 2 (the forms of "Ruleset language, part 2"): the family benefit of workload_part2.py,
written once with a scale, rate tables and item functions (benchmarks/part2/forms.yaml) and once
in part-1 forms only (handwritten.yaml). After checking that both rulesets and the hand-written
Python if-chain agree on every case, it prints the same two figures as above for both rulesets
(targets for the part-2 ruleset as for part 1: (a) >= 0.25x, (b) >= 0.10x) and the CPU time per
case of the part-2 ruleset against the part-1 one (the new forms should cost no more).
``--part2-only`` skips the study-grant part; ``python benchmarks/bench_core.py 2000 --part2-only``
is a quick run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import vedtak  # noqa: E402
from vedtak.evaluation.decision import Decision  # noqa: E402
import workload_part2  # noqa: E402
from workload import generate, if_chain, vedtak_result  # noqa: E402

RULESET = HERE.parent / "rulesets" / "study-grant"


def timed(fn, items, repeat: int) -> float:
    """Median cases/s of ``fn`` over ``items``."""
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            fn(item)
        rates.append(len(items) / (time.perf_counter() - start))
    return statistics.median(rates)


def cpu_us(fn, items, repeat: int) -> float:
    """Least CPU time per item of ``fn`` over ``items`` in R runs, in µs (process time: a busy
    machine's other processes do not count)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for item in items:
            fn(item)
        best = min(best, time.process_time() - start)
    return best / len(items) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--part2-only", action="store_true", help="skip the study-grant part")
    args = ap.parse_args()
    if not args.part2_only:
        status = part1(args)
        if status:
            return status
    return part2(args)


def part1(args) -> int:
    """The study-grant workload against its hand-written if-chain (the part-1 figures)."""
    plan = vedtak.compile(vedtak.load(RULESET))
    cases = generate(args.n)
    validated = []
    for c in cases:
        case, rejection = plan.validate(c)
        assert rejection is None, rejection.to_json()
        validated.append(case)
    disagreements = [(c, if_chain(c), vedtak_result(plan.evaluate(v)))
                     for c, v in zip(cases, validated) if if_chain(c) != vedtak_result(plan.evaluate(v))]
    if disagreements:
        for c, a, b in disagreements[:5]:
            print(f"DISAGREE case {c['case_id']}: if-chain {a}, vedtak {b}", file=sys.stderr)
        print(f"{len(disagreements)} of {len(cases)} cases disagree; not timing.", file=sys.stderr)
        return 1
    print(f"all {len(cases):,} cases agree (outcome, reason, amount)")

    base = timed(if_chain, cases, args.repeat)
    evaluate = timed(plan.evaluate, validated, args.repeat)
    decide = timed(plan.decide, cases, args.repeat)
    rows = [("hand-written if-chain", base, None),
            ("vedtak (a) evaluate validated cases", evaluate, 0.25),
            ("vedtak (b) validate + evaluate raw dicts", decide, 0.10)]
    print(f"{'':42} {'cases/s':>12} {'ratio':>8} {'target':>8}")
    for name, rate, target in rows:
        ratio = rate / base
        mark = "" if target is None else (f">= {target:.2f}" + (" ok" if ratio >= target else " MISSED"))
        print(f"{name:42} {rate:12,.0f} {ratio:7.3f}x {mark:>8}")

    decisions = [plan.decide(c) for c in cases]
    differ = sum(d.to_json() != d.to_json_generic() for d in decisions)
    if differ:
        print(f"{differ} decisions' fast JSON differs from the generic JSON.", file=sys.stderr)
        return 1
    steps = [("plan.decide(raw)", cpu_us(plan.decide, cases, args.repeat)),
             ("decision.to_json()", cpu_us(Decision.to_json, decisions, args.repeat)),
             ("plan.decide(raw).to_json()", cpu_us(lambda c: plan.decide(c).to_json(), cases, args.repeat))]
    print(f"\n{'CPU per case, least of R runs':42} {'us':>12}")
    for name, us in steps:
        print(f"{name:42} {us:12.2f}")
    print("(every decision's to_json() equals its to_json_generic(), checked above)")
    return 0


def part2(args) -> int:
    """The family benefit in part-2 forms and in part-1 forms, against the Python if-chain."""
    w = workload_part2
    forms = vedtak.compile(vedtak.load(w.FORMS))
    hand = vedtak.compile(vedtak.load(w.HANDWRITTEN))
    cases = w.generate(args.n)
    checked = {}
    for name, plan in (("forms", forms), ("hand", hand)):
        checked[name] = [plan.validate(c) for c in cases]
        bad = [v.rejection.to_json() for v in checked[name] if v.rejection is not None]
        assert not bad, bad[0]
    disagreements = []
    for c, vf, vh in zip(cases, checked["forms"], checked["hand"]):
        wanted = w.if_chain(c)
        got = (w.vedtak_result(forms.evaluate(vf)), w.vedtak_result(hand.evaluate(vh)))
        if got != (wanted, wanted):
            disagreements.append((c, wanted, got))
    if disagreements:
        for c, a, (f, h) in disagreements[:5]:
            print(f"DISAGREE case {c['case_id']}: if-chain {a}, part-2 forms {f}, part-1 forms {h}", file=sys.stderr)
        print(f"{len(disagreements)} of {len(cases)} part-2 cases disagree; not timing.", file=sys.stderr)
        return 1
    print(f"\npart 2: all {len(cases):,} family-benefit cases agree (rule, amount): "
          "part-2 forms, part-1 forms, Python if-chain")

    validated = {name: [v.case for v in vs] for name, vs in checked.items()}
    base = timed(w.if_chain, cases, args.repeat)
    rows = [("hand-written if-chain", base, None),
            ("part-2 forms (a) evaluate validated", timed(forms.evaluate, validated["forms"], args.repeat), 0.25),
            ("part-2 forms (b) validate + evaluate", timed(forms.decide, cases, args.repeat), 0.10),
            ("part-1 forms (a) evaluate validated", timed(hand.evaluate, validated["hand"], args.repeat), None),
            ("part-1 forms (b) validate + evaluate", timed(hand.decide, cases, args.repeat), None)]
    print(f"{'':42} {'cases/s':>12} {'ratio':>8} {'target':>8}")
    for name, rate, target in rows:
        ratio = rate / base
        mark = "" if target is None else (f">= {target:.2f}" + (" ok" if ratio >= target else " MISSED"))
        print(f"{name:42} {rate:12,.0f} {ratio:7.3f}x {mark:>8}")

    steps = [("evaluate validated", forms.evaluate, validated["forms"], hand.evaluate, validated["hand"]),
             ("validate + evaluate", forms.decide, cases, hand.decide, cases)]
    print(f"\n{'CPU per case, least of R runs':42} {'part-2 us':>12} {'part-1 us':>10} {'part-2/part-1':>14}")
    for name, f_fn, f_items, h_fn, h_items in steps:
        f_us, h_us = cpu_us(f_fn, f_items, args.repeat), cpu_us(h_fn, h_items, args.repeat)
        print(f"{name:42} {f_us:12.2f} {h_us:10.2f} {f_us / h_us:13.3f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
