"""The "study grant" benchmark workload: a deterministic case generator and the hand-written if-chain.

``python benchmarks/workload.py 100000`` prints the distribution of outcomes.
"""

from __future__ import annotations

import random
import sys
from collections import Counter

MIN_AGE, MAX_AGE, PARENTAL_AGE = 18, 30, 25
SCHEME_START, LATE_DEADLINE = "2024-01-01", "2025-12-31"
STUDY_LOAD_MIN, STUDY_LOAD_FULL, STUDY_LOAD_MAX = 40, 50, 100
MAX_MONTHS = 12
INCOME_LIMIT, WEALTH_LIMIT, PARENTS_INCOME_LIMIT = 200_000, 500_000, 600_000
WEALTH_INCOME_RATE = REDUCTION_RATE = 0.05
BASE_MONTHLY = 13_000

RULE_REASONS = {
    "not-resident": "NOT_RESIDENT", "before-scheme-start": "BEFORE_SCHEME_START",
    "age-out-of-range": "AGE_OUT_OF_RANGE", "not-enrolled": "NOT_ENROLLED",
    "prior-default": "PRIOR_DEFAULT", "study-load-too-low": "STUDY_LOAD_TOO_LOW",
    "study-load-borderline": "STUDY_LOAD_BORDERLINE", "wealth-over-limit": "WEALTH_OVER_LIMIT",
    "parental-income-over-limit": "PARENTAL_INCOME_OVER_LIMIT", "late-application": "LATE_APPLICATION",
    "no-entitlement": "NO_ENTITLEMENT", "grant": "GRANT", "otherwise": "NO_RULE_MATCHED",
}


def generate(n: int, seed: int = 20240101) -> list[dict]:
    """``n`` cases mixing ordinary values with exact boundary values; every rule fires."""
    rng = random.Random(seed)
    pick = rng.choice
    cases = []
    for i in range(n):
        r = rng.random
        age = pick((17, 18, 24, 25, 30, 31)) if r() < 0.25 else rng.randint(18, 32)
        date = (pick(("2023-12-31", "2024-01-01", "2025-12-31", "2026-01-01")) if r() < 0.12
                else f"{rng.randint(2024, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}")
        load = pick((39, 40, 49, 50, 100, 101)) if r() < 0.2 else pick((20, 50, 60, 75, 80, 100, 100))
        months = pick((0, 13)) if r() < 0.03 else rng.randint(1, 12)
        wealth = (pick((WEALTH_LIMIT, WEALTH_LIMIT + 100)) if r() < 0.05
                  else rng.randrange(0, 400_000, 100))
        parents = (pick((PARENTS_INCOME_LIMIT, PARENTS_INCOME_LIMIT + 100)) if r() < 0.1
                   else rng.randrange(100_000, 1_200_000, 100))
        income = rng.randrange(0, 450_000, 100)
        k = r()
        if k < 0.08:  # total income exactly at the limit, +-5
            income = max(0, INCOME_LIMIT - wealth // 20 + pick((-5, 0, 5)))
        elif k < 0.14:  # the reduction wipes the grant out exactly (+-5)
            # monthly = BASE*load/100 - 0.05*(income + wealth/20 - LIMIT) == 0
            excess = BASE_MONTHLY * load // 100 * 20
            income = max(0, INCOME_LIMIT + excess - wealth // 20 + pick((-5, 0, 5)))
        cases.append({
            "case_id": i, "age": age, "resident": r() > 0.06, "enrolled": r() > 0.05,
            "study_load_pct": load, "income": income, "wealth": wealth, "parents_income": parents,
            "lives_with_parents": r() < 0.4, "months_enrolled": months,
            "has_prior_default": r() < 0.035, "application_date": date,
        })
    return cases


def if_chain(c: dict) -> tuple[str, str, int]:
    """The hand-written Python if-chain of the same rules: the ceiling for per-case Python."""
    if not c["resident"]:
        return ("deny", "NOT_RESIDENT", 0)
    d = c["application_date"]
    if d < SCHEME_START:
        return ("deny", "BEFORE_SCHEME_START", 0)
    age = c["age"]
    if age < MIN_AGE or age > MAX_AGE:
        return ("deny", "AGE_OUT_OF_RANGE", 0)
    months = c["months_enrolled"]
    if not c["enrolled"] or months <= 0:
        return ("deny", "NOT_ENROLLED", 0)
    if c["has_prior_default"]:
        return ("refer", "PRIOR_DEFAULT", 0)
    load = c["study_load_pct"]
    if load < STUDY_LOAD_MIN:
        return ("deny", "STUDY_LOAD_TOO_LOW", 0)
    if load < STUDY_LOAD_FULL:
        return ("refer", "STUDY_LOAD_BORDERLINE", 0)
    wealth = c["wealth"]
    if wealth > WEALTH_LIMIT:
        return ("deny", "WEALTH_OVER_LIMIT", 0)
    if c["lives_with_parents"] and age < PARENTAL_AGE and c["parents_income"] > PARENTS_INCOME_LIMIT:
        return ("deny", "PARENTAL_INCOME_OVER_LIMIT", 0)
    if d > LATE_DEADLINE:
        return ("refer", "LATE_APPLICATION", 0)
    total = c["income"] + wealth * WEALTH_INCOME_RATE
    excess = max(0, total - INCOME_LIMIT)
    monthly = max(0, BASE_MONTHLY * load / 100 - REDUCTION_RATE * excess)
    if monthly == 0:
        return ("deny", "NO_ENTITLEMENT", 0)
    if load <= STUDY_LOAD_MAX and months <= MAX_MONTHS:
        return ("grant", "GRANT", int(monthly * months // 1))
    return ("refer", "NO_RULE_MATCHED", 0)


def vedtak_result(decision) -> tuple[str, str, int]:
    """A vedtak decision in the workload's terms (outcome, reason, amount)."""
    reason = RULE_REASONS[decision.rule]
    if decision.status == "referred" and decision.referral_reason == "rule":
        return ("refer", reason, 0)
    amount = decision.values.get("amount", 0)
    return (decision.outcome, reason, int(amount))


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    counts = Counter(if_chain(c)[1] for c in generate(n))
    for reason, k in counts.most_common():
        print(f"{reason:28} {k:8} {100 * k / n:6.2f} %")
