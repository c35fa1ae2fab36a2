"""A second, independent evaluator: vedtak rulesets translated to durable-rules (a Rete engine).

Each version and parameter period becomes one durable-rules ruleset, named uniquely, with
one rule per vedtak rule at falling priority: an event is consumed by the first rule that
matches it, which is vedtak's first-match semantics. Derived values, and any operand that
is not a plain name or constant, are computed before posting by the reference interpreter
(durable-rules allows arithmetic on only one side of a comparison); the conditions
themselves — comparisons, and, or, not — are durable-rules' own.

Part 2 of the language: table lookups, scale functions, date parts, add_* and item functions
are such operands (computed by the reference interpreter, so a table or scale is never an event
field); an absent field with a default is posted as its default; a rule that reads a parameter
with no value in force in the period refers the case (``missing-parameter``) where the compiled
plan does. A value computed before posting that fails (``add_years(d, 1)`` with ``d`` absent)
may not be needed by its rule (``known(d) and ...``): such a case is decided by the reference.

Guards against durable-rules' failure modes: no bare existence tests (missing optional
fields are posted as explicit ``<field>__known`` flags), every event has a unique id and
session, exceptions caught inside actions are surfaced, and each call is bounded in time.
Numbers reach durable-rules as binary floats; a case holding a decimal that a float cannot
represent exactly is referred (``evaluation-error``) rather than compared inexactly.
"""

from __future__ import annotations

import ast
import itertools
import signal
import threading
import uuid
from datetime import date
from decimal import Decimal

from .compile import Period, Plan, because_parameters
from .decision import Decision
from ..errors import Diagnostic, RulesetError
from ..language.expr import literal_value
from ..language.load import CheckedRule, Ruleset
from .reference import Interpreter, _check_because, _describe_error, run, value_of_type
from .runtime import EVALUATION_ERRORS, ItemMissing, ParameterMissing

_NOT_POSTED = (*EVALUATION_ERRORS, ParameterMissing)  # a value computed before posting that failed

TIMEOUT_SECONDS = 5.0
_events = itertools.count(1)


class DurableError(RuntimeError):
    """durable-rules failed on a case (an exception inside an action, a timeout, no result)."""


class _Untranslatable(Exception):
    def __init__(self, node: ast.AST, message: str):
        self.node, self.message = node, message


class _Translator:
    """Turns one rule's checked condition into a durable-rules condition over event fields."""

    def __init__(self, period: Period, rule: CheckedRule, m, lifted: dict, compared: "_Comparisons"):
        self.period, self.rule, self.m, self.lifted, self.compared = period, rule, m, lifted, compared
        self.expr = rule.when
        self.scope = period.version.scope

    def operand(self, n: ast.AST):
        """A comparison operand: an event field (m.x) or a constant."""
        if isinstance(n, ast.Name):
            sym = self.scope[n.id]
            if sym.kind == "parameter" and self.period.parameters[n.id] is not None:
                return _post_value(self.period.parameters[n.id], n)
            if sym.kind == "parameter":  # no value in force: computing it fails, and the reference decides
                return getattr(self.m, self.lift(n))
            return getattr(self.m, n.id)
        if isinstance(n, ast.Constant) or (isinstance(n, ast.UnaryOp) and isinstance(n.operand, ast.Constant)) \
                or (isinstance(n, ast.Call) and id(n) in self.expr.constants):
            return _post_value(literal_value(self.expr, n), n)
        return getattr(self.m, self.lift(n))

    def lift(self, n: ast.AST) -> str:
        """Name a sub-expression to be computed before posting (arithmetic, calls, generators)."""
        name = f"vl{self.rule.index}_{len([k for k in self.lifted if k.startswith(f'vl{self.rule.index}_')])}"
        self.lifted[name] = (self.expr, n)
        return name

    def condition(self, n: ast.AST, negate: bool = False):
        m = self.m
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Not):
            return self.condition(n.operand, not negate)
        if isinstance(n, ast.BoolOp):
            parts = [self.condition(v, negate) for v in n.values]
            conj = isinstance(n.op, ast.And) != negate
            out = parts[0]
            for p in parts[1:]:
                out = (out & p) if conj else (out | p)
            return out
        if isinstance(n, ast.Constant) and isinstance(n.value, bool):
            return m.vedtak_event == (0 if n.value == negate else 1)
        if isinstance(n, ast.Call) and n.func.id == "known":  # type: ignore[attr-defined]
            return getattr(m, f"{n.args[0].id}__known") == (not negate)  # type: ignore[attr-defined]
        if isinstance(n, ast.Compare):
            pairs = []
            left = n.left
            for op, comp in zip(n.ops, n.comparators):
                pairs.append(self.compare(left, op, comp, negate))
                left = comp
            out = pairs[0]
            for p in pairs[1:]:
                out = (out | p) if negate else (out & p)
            return out
        if getattr(n, "vtype", None) is not None and n.vtype.kind == "bool":  # type: ignore[attr-defined]
            field = n.id if isinstance(n, ast.Name) and self.scope[n.id].kind != "parameter" else self.lift(n)
            return getattr(m, field) == (not negate)
        raise _Untranslatable(n, "this condition cannot be expressed in durable-rules")

    def compare(self, left: ast.AST, op: ast.cmpop, right: ast.AST, negate: bool):
        flip = {ast.Lt: ast.GtE, ast.LtE: ast.Gt, ast.Gt: ast.LtE, ast.GtE: ast.Lt, ast.Eq: ast.NotEq,
                ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In}
        kind = flip[type(op)] if negate else type(op)
        a = self.operand(left)
        if kind in (ast.In, ast.NotIn):
            values = [_post_value(literal_value(self.expr, e), e) for e in right.elts]  # type: ignore[attr-defined]
            for v in values:
                self.compared.note(a, v, self.rule.index)
            out = None
            for v in values:
                test = (a == v) if kind is ast.In else (a != v)
                out = test if out is None else ((out | test) if kind is ast.In else (out & test))
            if out is None:  # an empty list: `in []` never holds, `not in []` always does
                return self.m.vedtak_event == (1 if kind is ast.NotIn else 0)
            return out
        b = self.operand(right)
        self.compared.note(a, b, self.rule.index)
        if not _is_field(a):
            if not _is_field(b):
                raise _Untranslatable(left, "a comparison of two constants cannot be posted to durable-rules")
            a, b = b, a
            kind = {ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt, ast.GtE: ast.LtE, ast.Eq: ast.Eq,
                    ast.NotEq: ast.NotEq}[kind]
        return {ast.Lt: lambda: a < b, ast.LtE: lambda: a <= b, ast.Gt: lambda: a > b, ast.GtE: lambda: a >= b,
                ast.Eq: lambda: a == b, ast.NotEq: lambda: a != b}[kind]()


class _Comparisons:
    """What each posted field is compared with, to catch a comparison that binary floats would
    get wrong: a decimal that is not exact as a float, rounding onto the value it is compared with."""

    def __init__(self):
        self.constants: dict[str, set] = {}
        self.pairs: set[tuple[str, str]] = set()
        self.first_rule: dict[str, int] = {}
        self.names: set[str] = set()

    def note(self, a, b, index: int) -> None:
        names = [_field_name(x) for x in (a, b) if _is_field(x)]
        for n in names:
            self.names.add(n)
            self.first_rule[n] = min(index, self.first_rule.get(n, index))
        if len(names) == 2:
            self.pairs.add((names[0], names[1]))
        elif len(names) == 1:
            other = b if _is_field(a) else a
            if isinstance(other, float):
                self.constants.setdefault(names[0], set()).add(other)

    def inexact(self, exact: dict, event: dict) -> tuple[str, int] | None:
        """A field whose float form would compare wrongly, and the first rule that compares it."""
        for name, value in exact.items():
            if float(value) in self.constants.get(name, ()):
                return name, self.first_rule[name]
        for a, b in self.pairs:  # equal as floats, but one of them is not exactly its float
            if a in event and b in event and event[a] == event[b] and (a in exact or b in exact):
                return a, min(self.first_rule[a], self.first_rule[b])
        return None


def _field_name(value) -> str:
    return value._left  # durable.lang.value: alias in _name, field name in _left


def _is_field(value) -> bool:
    return type(value).__name__ == "value"  # durable.lang.value: a reference to an event field


def _post_value(value, node=None):
    """A value as durable-rules receives it: dates as ISO strings, decimals as exact floats."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    raise _Untranslatable(node, f"a {type(value).__name__} value cannot be posted to durable-rules")


class DurablePlan:
    """A :class:`Plan` whose rules are evaluated by durable-rules; same validation, same decisions.

    >>> plan = DurablePlan(vedtak.load("rulesets/dagpenger"))     # doctest: +SKIP
    >>> plan.decide(case).to_json() == vedtak.compile(...).decide(case).to_json()   # doctest: +SKIP
    True
    """

    def __init__(self, ruleset: Ruleset, *, timeout: float = TIMEOUT_SECONDS):
        try:
            from durable import lang
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise RuntimeError("the durable backend needs durable-rules: pip install 'vedtak[durable]'") from exc
        self._lang = lang
        self.plan = Plan(ruleset)
        self.ruleset = ruleset
        self.timeout = timeout
        self._names: dict[int, str] = {}
        self._lifted: dict[int, dict] = {}
        self._compared: dict[int, _Comparisons] = {}
        diags: list[Diagnostic] = []
        for vp in self.plan.versions:
            for period in vp.periods:
                self._build(period, diags)
        if diags:  # each parameter period is translated on its own: say each place once
            raise RulesetError(list({(d.file, d.line, d.column, d.code): d for d in diags}.values()))

    @property
    def id(self) -> str:
        return self.ruleset.id

    def _build(self, period: Period, diags: list[Diagnostic]) -> None:
        lang = self._lang
        version = period.version
        name = f"vedtak-{version.id}-{version.version}-{period.start.isoformat()}-{uuid.uuid4().hex[:12]}"
        lifted: dict = {}
        compared = _Comparisons()
        m = lang.m
        with lang.ruleset(name):
            for rule in version.rules:
                guards = [getattr(m, f"{f}__known") == False for f in rule.needs_optional]  # noqa: E712
                reads = sorted(n for n in rule.reads if version.scope[n].kind == "derived")
                guards += [getattr(m, f"{d}__error") == True for d in reads]  # noqa: E712
                if rule.when is None:
                    cond = m.vedtak_event == 1
                else:
                    try:
                        cond = _Translator(period, rule, m, lifted, compared).condition(rule.when.tree)
                    except _Untranslatable as exc:
                        diags.append(_located(version, rule, exc))
                        continue
                    lifted_here = [k for k in lifted if k.startswith(f"vl{rule.index}_")]
                    guards += [getattr(m, f"{k}__error") == True for k in lifted_here]  # noqa: E712
                if guards:
                    lang.when_all(lang.pri(2 * rule.index), _any(guards))(_action(rule.index, "guard"))
                lang.when_all(lang.pri(2 * rule.index + 1), cond)(_action(rule.index, "match"))
        self._names[id(period)] = name
        self._lifted[id(period)] = lifted
        self._compared[id(period)] = compared

    # -- evaluating ----------------------------------------------------------------------
    def validate(self, raw):
        return self.plan.validate(raw)

    def decide(self, raw) -> Decision:
        case, rejection = self.plan.validate(raw)
        return rejection if rejection is not None else self.evaluate(case)

    def decide_json(self, text) -> Decision:
        """As :meth:`Plan.decide_json`: text that is not JSON is a ``malformed_input`` rejection."""
        from .compile import parse_case_json
        from ..errors import CaseInputError
        try:
            raw = parse_case_json(text)
        except (CaseInputError, RecursionError) as exc:
            message = str(exc) if isinstance(exc, CaseInputError) else "the case is not valid JSON: nested too deeply"
            return self.plan._malformed(text, message)
        return self.decide(raw)

    def evaluate(self, case) -> Decision:
        """Decide a validated case through durable-rules: what :meth:`validate` returned, or its case."""
        from .compile import Validated
        if case.__class__ is Validated:
            if case.rejection is not None:
                return case.rejection
            case = case.case
        period = self.plan.period_for(case[self.plan._date_field])
        if period is None:
            return self.plan.evaluate(case)  # the no-version rejection, built by the plan
        event, exact, errors = self._event(period, case)
        wrong = self._compared[id(period)].inexact(exact, event)
        if wrong is not None:
            name, index = wrong
            return self._failed(period, case, index, f"durable-rules compares numbers as binary floats, and "
                                                     f"{name} = {exact.get(name)} would compare wrongly as one")
        state = self._post(self._names[id(period)], event)
        index, kind = state["rule"], state["kind"]
        rule = period.version.rules[index]
        if kind == "guard":
            missing = tuple(f for f in rule.needs_optional if case.get(f) is None)
            if missing:
                return Decision((period.missing[index], case, None, missing))
            # A value computed before posting failed, or needed a field a list item lacks. Whether
            # the rule needs that value depends on the rest of its condition (`x or any(...)`,
            # `known(d) and add_years(d, 1) > day`), which only evaluating the condition in order
            # can tell: the reference decides.
            return _reference_decision(period, case)
        if any(case.get(f) is None for f in rule.values_optional):
            missing = tuple(f for f in rule.values_optional if case.get(f) is None)
            return Decision((period.missing[index], case, None, missing))
        absent = because_parameters(period, period.version, rule)
        if absent:
            return Decision((period.missing_parameter[index], case, None, absent))
        values = None
        if rule.values:
            interp = Interpreter(period, case)
            try:
                values = {k: value_of_type(interp.eval(e), e) for k, e in rule.values.items()}
            except ItemMissing as exc:
                return Decision((period.missing[index], case, None, exc.paths))
            except ParameterMissing as exc:
                return Decision((period.missing_parameter[index], case, None, exc.names))
            except EVALUATION_ERRORS as exc:
                return self._failed(period, case, index, _describe_error(exc))
        try:
            _check_because(period, case, rule)
        except ItemMissing as exc:
            return Decision((period.missing[index], case, None, exc.paths))
        return Decision((period.outcomes[index], case, values, None))

    def _failed(self, period: Period, case: dict, index: int, message: str) -> Decision:
        return Decision((period.failed[index], case, None, message))

    def _event(self, period: Period, case: dict) -> tuple[dict, dict, list[str]]:
        """The event to post (the values the conditions read), the decimals a float cannot hold,
        and the errors met computing values."""
        version = period.version
        interp = Interpreter(period, case)
        compared = self._compared[id(period)]
        event: dict = {"vedtak_event": 1}
        inexact: dict = {}
        errors: list[str] = []

        def put(name, value):
            if value is None:
                return
            posted = _post_value(value)
            if isinstance(value, Decimal) and Decimal(posted) != value:
                inexact[name] = value
            event[name] = posted

        for name, spec in version.model.case.items():
            value = case.get(name)
            if spec.optional:
                event[f"{name}__known"] = value is not None
            if value is None and name in version.defaults:  # an absent field reads as its default
                value = version.defaults[name]
            if name in compared.names or spec.type == "bool":
                put(name, value)
        for name in version.derived:
            if name not in compared.names and version.scope[name].type.kind != "bool":
                continue
            try:
                put(name, interp.lookup(name))
            except _NOT_POSTED as exc:
                event[f"{name}__error"] = True
                errors.append(_describe_error(exc))
        for name, (expr, node) in self._lifted[id(period)].items():
            try:
                put(name, interp.eval_node(expr, node))
            except _NOT_POSTED as exc:
                event[f"{name}__error"] = True
                errors.append(_describe_error(exc))
        return event, inexact, errors

    def _post(self, name: str, event: dict) -> dict:
        lang = self._lang
        for _ in range(3):
            n = next(_events)
            event["id"], event["sid"] = f"e{n}", f"s{n}"
            try:
                state = _bounded(lambda: lang.post(name, event), self.timeout)
            finally:
                try:
                    lang.delete_state(name, event["sid"])
                except Exception:  # noqa: BLE001 - a session that was never created has no state
                    pass
            if state is not None:
                break
            # durable-rules sometimes drops an event without running any action (seen in the
            # differential tests, rarely and not reproducibly); post it again under a new id.
        else:
            raise DurableError(f"durable-rules dropped event {event['id']} three times")
        if state.get("exception"):
            raise DurableError(f"an action raised inside durable-rules: {state['exception']}")
        if state.get("event") != event["id"] or "rule" not in state:
            raise DurableError(f"durable-rules returned no result for event {event['id']}")
        return state


def _reference_decision(period: Period, case: dict) -> Decision:
    """The decision of the reference interpreter (which the compiled plan agrees with)."""
    result = run(period, case)
    if result.kind == "missing-data":
        return Decision((period.missing[result.index], case, None, result.missing))
    if result.kind == "missing-parameter":
        return Decision((period.missing_parameter[result.index], case, None, result.missing))
    if result.kind == "error":
        return Decision((period.failed[result.index], case, None, result.error))
    return Decision((period.outcomes[result.index], case, result.values, None))


def _any(conditions):
    out = conditions[0]
    for c in conditions[1:]:
        out = out | c
    return out


def _action(index: int, kind: str):
    def action(c):
        c.s.event = c.m.id
        c.s.rule = index
        c.s.kind = kind
    action.__name__ = f"r{index}_{kind}"
    return action


def _bounded(call, timeout: float):
    """Run ``call``; raise DurableError if it takes longer than ``timeout`` seconds."""
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        def expired(signum, frame):
            raise DurableError(f"durable-rules did not answer within {timeout} s")
        previous = signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            return call()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    result: list = []
    worker = threading.Thread(target=lambda: result.append(call()), daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive() or not result:
        raise DurableError(f"durable-rules did not answer within {timeout} s")
    return result[0]


def _located(version, rule: CheckedRule, exc: _Untranslatable) -> Diagnostic:
    from ..language.expr import _Checker
    checker = _Checker(version.source, rule.when.pos, rule.when.text, {}, [], "condition")
    pos, length = checker._node_pos(exc.node) if exc.node is not None else (rule.when.pos, 1)
    return version.source.diag(pos, "not_translatable", exc.message, length=length,
                               hint="use the default backend for this ruleset")
