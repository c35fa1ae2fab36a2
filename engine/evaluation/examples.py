"""Running a ruleset's examples: each example case is decided and compared with what it expects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from .compile import Plan
from .decision import Decision, json_value
from ..language.model import Example


@dataclass
class ExampleResult:
    """One example's outcome: the decision and each mismatch as (key, expected, actual)."""

    version: str
    file: str
    example: Example
    decision: Decision
    mismatches: list[tuple[str, object, object]]

    @property
    def passed(self) -> bool:
        return not self.mismatches


def _same(expected, actual) -> bool:
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(_same(expected[k], actual[k]) for k in expected)
    e, a = json_value(expected), json_value(actual)
    if isinstance(e, (str, int, Decimal)) and isinstance(a, (str, int, Decimal)) \
            and not isinstance(e, bool) and not isinstance(a, bool):
        try:
            return Decimal(str(e)) == Decimal(str(a))
        except InvalidOperation:
            pass
    return e == a


def run_examples(plan: Plan) -> list[ExampleResult]:
    """Decide every example of every version of the plan's ruleset."""
    results = []
    for vplan in plan.versions:
        version = vplan.version
        for ex in version.model.examples:
            decision = plan.decide(dict(ex.case))
            exp = ex.expect
            mismatches = []
            period = decision.period
            day = ex.case.get(version.model.decision_date)
            no_version = any(e.code == "no_version" for e in decision.errors)
            if isinstance(day, date) and not version.model.valid.holds(day) and not no_version:
                mismatches.append(("version", version.version,
                                   period.version.version if period is not None else None))
            actual = {"status": decision.status, "outcome": decision.outcome, "queue": decision.queue,
                      "rule": decision.rule, "reason": decision.referral_reason, "values": decision.values,
                      "errors": tuple(e.code for e in decision.errors)}
            for key in ("status", "outcome", "queue", "rule", "reason", "values", "errors"):
                want = getattr(exp, key)
                if want is None:
                    continue
                got = actual[key]
                if key == "errors":
                    want, got = list(want), list(got)
                if key == "values":  # only the values an example names are compared
                    got = {k: v for k, v in got.items() if k in want}
                if not _same(want, got):
                    mismatches.append((key, want, got))
            results.append(ExampleResult(version.version, version.source.path, ex, decision, mismatches))
    return results
