"""vedtak: rule-based case decisions that are explained, audited and replayable.

Load a ruleset, compile it, decide cases::

    import vedtak
    plan = vedtak.compile(vedtak.load("rulesets/study-grant"))
    decision = plan.decide({"case_id": 1, "age": 20, ...})
    print(decision.explain())

Validate once, evaluate later: ``checked = plan.validate(raw)``, then ``plan.evaluate(checked)``
(the rejection itself when the case was invalid). Nothing a case contains raises: invalid input,
JSON text that is not JSON included, is a rejection.
"""

from .cases import CaseError
from .compile import Plan, Validated, compile
from .decision import ENGINE_VERSION, Decision, canonical_json
from .errors import CaseInputError, Diagnostic, RulesetError
from .load import Ruleset, load, load_text

__version__ = ENGINE_VERSION


def decide(ruleset, case) -> Decision:
    """Decide one case (a dict, or JSON text) under a ruleset (a path, a Ruleset or a Plan)."""
    plan = ruleset if isinstance(ruleset, Plan) else compile(ruleset)
    if isinstance(case, (str, bytes)):
        return plan.decide_json(case)
    return plan.decide(case)


__all__ = ["CaseError", "CaseInputError", "Decision", "Diagnostic", "Plan", "Ruleset", "RulesetError",
           "Validated", "canonical_json", "compile", "decide", "load", "load_text", "__version__"]
