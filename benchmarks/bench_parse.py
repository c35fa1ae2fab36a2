"""Parse benchmark: the fast path (msgspec, falling back to the standard library) against the standard
library's path alone, on study-grant lines and on mutated lines, in one run.

Usage: python benchmarks/bench_parse.py [N] [--mutated M] [--repeat R]

Parses N generated study-grant lines (default 100 000, as ``vedtak run`` reads them: ``json.dumps`` of
a case and a newline) and M mutated lines (default 200 000: a workload line with characters inserted,
deleted or replaced, cut short, or a piece copied elsewhere) with both paths, checks that they agree
on every line (the same value with the same types, or the same reason), prints the counts, and the
microseconds per line of each path (best of R rounds, the paths taking turns) with their ratio.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from vedtak.batch import json_text  # noqa: E402
from vedtak.batch.input_limits import DEFAULT  # noqa: E402
from workload import generate  # noqa: E402

_CHARS = list('{}[]:,"\\u d8e0E-+.1N\x00\x1f\ufeff٢é\t') + ["\\ud800", "NaN", "1e400", "9" * 40, '"a": 1, ']


def mutate(rng: random.Random, line: str) -> str:
    """``line`` with one to three random edits, as a damaged or hostile file might hold it."""
    text = line.rstrip("\n")
    for _ in range(rng.randint(1, 3)):
        i = rng.randint(0, len(text))
        j = min(len(text), i + rng.randint(0, 12))
        op = rng.randint(0, 4)
        if op == 0:
            text = text[:i] + rng.choice(_CHARS) + text[i:]
        elif op == 1:
            text = text[:i] + text[j:]
        elif op == 2:
            text = text[:i] + rng.choice(_CHARS) + text[i + 1:]
        elif op == 3:
            text = text[:i]
        else:
            k = rng.randint(0, len(text))
            text = text[:k] + text[i:j] + text[k:]
    return text + "\n"


def same(a, b) -> bool:
    """Equal values of identical types at every level (Decimal digits and exponent, key order too)."""
    stack = [(a, b)]
    while stack:  # without recursion: a text may nest as deep as the decoders allow
        a, b = stack.pop()
        if type(a) is not type(b):
            return False
        if type(a) is dict:
            if list(a) != list(b):
                return False
            stack.extend((a[k], b[k]) for k in a)
        elif type(a) is list:
            if len(a) != len(b):
                return False
            stack.extend(zip(a, b))
        elif type(a) is Decimal:
            if a.as_tuple() != b.as_tuple():
                return False
        elif type(a) is float:
            if repr(a) != repr(b):
                return False
        elif a != b:
            return False
    return True


def timed(parses: list, lines: list[str], repeat: int) -> list[float]:
    """Best microseconds per line of each of ``parses`` over ``lines``; the parses take turns in each
    round, so that a busy machine slows them alike."""
    depth, walk_above = DEFAULT.depth, min(DEFAULT.string_chars, 2 * DEFAULT.list_items)
    best = [float("inf")] * len(parses)
    for _ in range(repeat):
        for i, parse in enumerate(parses):
            t0 = time.perf_counter()
            for text in lines:
                parse(text, DEFAULT, depth, walk_above)
            best[i] = min(best[i], time.perf_counter() - t0)
    return [b / len(lines) * 1e6 for b in best]


def compare(name: str, lines: list[str]) -> bool:
    """Parse every line both ways; print how many agree, and how many the fast path answered alone."""
    depth, walk_above = DEFAULT.depth, min(DEFAULT.string_chars, 2 * DEFAULT.list_items)
    fast = [json_text._parse(t, DEFAULT, depth, walk_above) for t in lines]
    ref = [json_text._parse_reference(t, DEFAULT, depth, walk_above) for t in lines]
    agree = sum(f[1] == r[1] and same(f[0], r[0]) for f, r in zip(fast, ref))
    fallbacks = [0]
    original = json_text._parse_reference

    def counting(*args):
        fallbacks[0] += 1
        return original(*args)

    json_text._parse_reference = counting
    try:
        for t in lines:
            json_text._parse(t, DEFAULT, depth, walk_above)
    finally:
        json_text._parse_reference = original
    read = sum(r[1] is None for r in ref)
    print(f"{name}: {len(lines):,} lines, {agree:,} agree, {len(lines) - agree:,} differ; "
          f"{read:,} read, {len(lines) - read:,} refused; {len(lines) - fallbacks[0]:,} answered by msgspec alone, "
          f"{fallbacks[0]:,} by the standard library")
    return agree == len(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=100_000)
    ap.add_argument("--mutated", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    lines = [json.dumps(c) + "\n" for c in generate(args.n)]
    rng = random.Random(14)
    mutated = [mutate(rng, lines[rng.randrange(len(lines))]) for _ in range(args.mutated)]
    ok = compare("workload", lines) & compare("mutated", mutated)
    for name, batch in (("workload", lines), ("mutated", mutated)):
        ref, fast = timed([json_text._parse_reference, json_text._parse], batch, args.repeat)
        print(f"{name}: standard library {ref:.2f} us/line, fast path {fast:.2f} us/line, {ref / fast:.1f}x")
    bare, = timed([lambda text, *_: json_text._fast_decode(text)], lines, args.repeat)
    print(f"workload: msgspec decode alone (no checks, no fallback) {bare:.2f} us/line")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
