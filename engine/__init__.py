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

import os as _os
import signal as _signal
import sys as _sys


def _quit_while_starting(signum, frame) -> None:
    """Ctrl-C while the `vedtak` command imports its modules: a quiet exit 130, not an import traceback."""
    _os.write(2, b"interrupted\n")
    _os._exit(130)


def _starting_the_command() -> bool:
    """Whether this import is the `vedtak` console script starting (a script named vedtak beside this
    Python), not a library caller: only then is Ctrl-C taken over until the command group runs."""
    script = getattr(_sys.modules.get("__main__"), "__file__", None) or ""
    return (_os.path.basename(script).removesuffix(".exe") in ("vedtak", "vedtak-script.py")
            and _os.path.dirname(_os.path.abspath(script)) == _os.path.dirname(_os.path.abspath(_sys.executable))
            and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler)


if _starting_the_command():  # the command group puts Python's own handler back when it starts
    _signal.signal(_signal.SIGINT, _quit_while_starting)

from .evaluation.cases import CaseError  # noqa: E402 - after the handler: these imports are the slow part
from .evaluation.compile import Plan, Validated, compile
from .evaluation.decision import ENGINE_VERSION, Decision, canonical_json
from .errors import CaseInputError, Diagnostic, RulesetError
from .language.load import Ruleset, load, load_text

__version__ = ENGINE_VERSION


def decide(ruleset, case) -> Decision:
    """Decide one case (a dict, or JSON text) under a ruleset (a path, a Ruleset or a Plan)."""
    plan = ruleset if isinstance(ruleset, Plan) else compile(ruleset)
    if isinstance(case, (str, bytes)):
        return plan.decide_json(case)
    return plan.decide(case)


__all__ = ["CaseError", "CaseInputError", "Decision", "Diagnostic", "Plan", "Ruleset", "RulesetError",
           "Validated", "canonical_json", "compile", "decide", "load", "load_text", "__version__"]
