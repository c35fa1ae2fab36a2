"""The part-2 benchmark workload: a family benefit with an income-reduction scale, rate tables
and per-child amounts (benchmarks/part2/), a deterministic case generator and the hand-written
Python if-chain of the same rules.

``python benchmarks/workload_part2.py 100000`` prints the distribution of outcomes.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from pathlib import Path

PART2 = Path(__file__).resolve().parent / "part2"
FORMS = PART2 / "forms.yaml"              # scale, tables, item functions, an item default
HANDWRITTEN = PART2 / "handwritten.yaml"  # the same rules in part-1 forms only

# forms.yaml's parameters; rates in percent so that the if-chain computes in exact integers
REDUCTION = ((300_000, 5), (500_000, 10), (800_000, 25))  # (from, rate %) above the 0 % bracket
RATE_UNDER_6, RATE_FROM_6, RATE_FROM_12 = 21_000, 18_000, 15_000
SUPPLEMENT = {"north": 6_000, "south": 0, "east": 1_200, "west": 2_400}
DISABILITY, SUPPORT_LIMIT, MAX_CHILDREN = 9_000, 60_000, 6

RULES = ("not-resident", "no-children", "high-support", "no-entitlement", "pay", "otherwise")


def generate(n: int, seed: int = 20250101) -> list[dict]:
    """``n`` cases dated in 2025 with 0-8 children; birthdays on both sides of the 6th, 12th and
    18th, incomes at and beside the reduction thresholds, support at and above its limit."""
    rng = random.Random(seed)
    pick, r = rng.choice, rng.random
    cases = []
    for i in range(n):
        month, dom = rng.randint(1, 12), rng.randint(1, 28)
        day = f"2025-{month:02d}-{dom:02d}"
        children = []
        for _ in range(pick((0, 1, 1, 2, 2, 2, 3, 3, 4, 5)) if r() > 0.02 else pick((7, 8))):
            if r() < 0.3:  # an exact birthday: the 6th, 12th or 18th on the decision day or the next
                years = pick((6, 12, 18))
                born = f"{2025 - years}-{month:02d}-{min(28, dom + pick((0, 1))):02d}"
            else:
                born = f"{rng.randint(2005, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            child = {"birth_date": born, "lives_with": r() > 0.1, "disabled": r() < 0.08}
            if r() < 0.6:  # absent support defaults to 0
                child["support"] = pick((0, 12_000, 30_000, SUPPORT_LIMIT, SUPPORT_LIMIT + 1)) \
                    if r() < 0.3 else rng.randrange(0, 50_000, 100)
            children.append(child)
        income = (pick((0, 300_000, 500_000, 800_000)) + pick((-100, 0, 100)) if r() < 0.2
                  else rng.randrange(0, 900_000, 100))
        cases.append({"case_id": i, "day": day, "resident": r() > 0.05, "region": pick(tuple(SUPPLEMENT)),
                      "income": max(0, income), "children": children})
    return cases


def _age(born: str, day: str) -> int:
    """years_between of two ISO dates: the year is complete on its anniversary."""
    return int(day[:4]) - int(born[:4]) - (day[5:] < born[5:])


def if_chain(c: dict) -> tuple[str, int]:
    """The hand-written Python if-chain of the same rules: (rule id, amount)."""
    if not c["resident"]:
        return ("not-resident", 0)
    day = c["day"]
    eligible = []
    for ch in c["children"]:
        if ch["lives_with"]:
            age = _age(ch["birth_date"], day)
            if age < 18:
                eligible.append((ch, age))
    if not eligible:
        return ("no-children", 0)
    if any(ch.get("support", 0) > SUPPORT_LIMIT for ch, _ in eligible):
        return ("high-support", 0)
    supplement = SUPPLEMENT[c["region"]]
    gross = 0
    for ch, age in eligible:
        gross += (RATE_UNDER_6 if age < 6 else RATE_FROM_6 if age < 12 else RATE_FROM_12) + supplement
        if ch["disabled"]:
            gross += DISABILITY
        gross -= ch.get("support", 0)
    income, reduction_pct = c["income"], 0
    for i, (lower, rate) in enumerate(REDUCTION):
        upper = REDUCTION[i + 1][0] if i + 1 < len(REDUCTION) else None
        if income > lower:
            reduction_pct += rate * ((income if upper is None else min(income, upper)) - lower)
    net_pct = gross * 100 - reduction_pct  # the net benefit in hundredths: exact
    if net_pct <= 0:
        return ("no-entitlement", 0)
    if len(eligible) <= MAX_CHILDREN:
        return ("pay", net_pct // 100)
    return ("otherwise", 0)


def vedtak_result(decision) -> tuple[str, int]:
    """A vedtak decision in the workload's terms (rule id, amount)."""
    return (decision.rule, int(decision.values.get("amount", 0)) if decision.status == "decided" else 0)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    counts = Counter(if_chain(c)[0] for c in generate(n))
    for rule, k in counts.most_common():
        print(f"{rule:16} {k:8} {100 * k / n:6.2f} %")
