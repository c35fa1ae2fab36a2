"""Compiling: a checked ruleset becomes a Plan, one generated Python function per parameter period.

Within a period every parameter is constant, so the generated function reads them as
globals fixed at compile time; it tests the rules in order, first match wins, exactly as a
hand-written if-chain would. Nothing here evaluates unchecked text: the source is produced
from checked syntax trees only.
"""

from __future__ import annotations

import ast
import builtins
from bisect import bisect_right
from datetime import date
from decimal import Decimal
from pathlib import Path

from . import runtime
from .cases import CaseError, build_validator
from .decision import Decision, Outcome, json_text, reason_json, reason_value
from . import emit
from .emit import Emitter, to_dec
from ..errors import CaseInputError, Diagnostic, RulesetError
from ..language.expr import DECIMAL, INT
from ..language.load import _SHOWN_INT, CheckedRule, CheckedVersion, Ruleset, format_value, load

_U = object()  # "not computed yet" marker for memoised derived values


class Period:
    """One version of a ruleset over a span of dates in which no parameter changes."""

    def __init__(self, version: CheckedVersion, start: date, parameters: dict, plan: "VersionPlan"):
        self.version = version
        self.start = start
        self.parameters = parameters
        self.vplan = plan
        self.decide = None  # the generated function: case -> rule index | (index, values) | (index, None)
        self.outcomes: list[Outcome] = []
        self.source = ""


class VersionPlan:
    """The compiled form of one version: its validator and its periods."""

    def __init__(self, version: CheckedVersion):
        self.version = version
        self.validate = build_validator(version.model.case)
        self.periods = [Period(version, start, params, self) for start, params in version.segments]
        for period in self.periods:
            _compile_period(period)


def _runtime_globals() -> dict:
    return {
        "_U": _U, "_add": runtime.add, "_sub": runtime.sub, "_mul": runtime.mul, "_div": runtime.div,
        "_neg": runtime.neg, "_dabs": runtime.dabs, "_floor": emit.floor, "_ceil": emit.ceil, "_imul": emit.imul,
        "_round": runtime.round_to, "_dsum": runtime.dsum, "_years_between": runtime.years_between,
        "_months_between": runtime.months_between, "_days_between": runtime.days_between,
        "_make_date": runtime.make_date, "_to_dec": to_dec, "_fmt": reason_value, "_jfmt": reason_json,
        "_kmin": runtime.kmin, "_kmax": runtime.kmax, "_item": runtime.item_field, "_each": runtime.each,
        "_k_any": runtime.k_any, "_k_all": runtime.k_all, "_SKIP": runtime.SKIP,
        "_ItemMissing": runtime.ItemMissing, "_EvaluationErrors": runtime.EVALUATION_ERRORS,
        "_RuleFailed": runtime.RuleFailed, "_marginal": runtime.marginal, "_bracket": runtime.bracket,
        "_add_days": runtime.add_days, "_add_months": runtime.add_months, "_add_years": runtime.add_years,
        "_or": runtime.or_default, "_absent": runtime.absent,
        "__builtins__": {"min": min, "max": max, "abs": abs, "sum": sum, "len": len, "any": any, "all": all},
    }


def _field_loads(version: CheckedVersion, names, loaded: set[str], indent: str, em: Emitter) -> list[str]:
    out = []
    for f in sorted(version.fields_read(names, loads=True)):
        if f not in loaded:
            loaded.add(f)
            out.append(f"{indent}f_{f} = c[{f!r}]")
            if f in version.defaults:  # an absent field with a default reads as its default
                out.append(f"{indent}if f_{f} is None: f_{f} = {em.const(version.defaults[f])}")
    return out


def _missing_check(fields, index: int, indent: str) -> list[str]:
    if not fields:
        return []
    cond = " or ".join(f"f_{f} is None" for f in fields)
    return [f"{indent}if {cond}:", f"{indent}    return ({index}, None)"]


def _uses_derived(version: CheckedVersion, rule: CheckedRule) -> bool:
    """Whether a rule's reason text reads a derived value."""
    return any(n in version.derived for n in rule.because.names)


def because_parameters(period: "Period", version: CheckedVersion, rule: CheckedRule) -> tuple[str, ...]:
    """The parameters without a value in this period that the rule's reason text names: the rule
    then refers the case (missing-parameter) when it applies. (A condition or value that reads such a
    parameter refers the case where it reads it: runtime.ParameterMissing.)"""
    names = {n for n in rule.because.names if n in version.scope and n not in rule.values}
    return tuple(sorted(p for p in version.parameters_read(names) if period.parameters.get(p) is None))


def _rule_result(period: "Period", version: CheckedVersion, em: Emitter, rule: CheckedRule, loaded: set[str],
                 indent: str) -> list[str]:
    # a reason text that reads derived values is handed the ones the rule has computed (the
    # decision keeps them), so rendering it does not compute them again
    keep = ""
    if _uses_derived(version, rule):
        keep = ", (" + "".join(f"d_{d}, " for d in version.derived) + ")"
    lines = []
    vnames = set().union(*(e.names for e in rule.values.values())) if rule.values else set()
    lines += _field_loads(version, vnames, loaded, indent, em)
    lines += _missing_check([f for f in rule.values_optional
                             if f in version.fields_read(vnames)], rule.index, indent)
    if because_parameters(period, version, rule):  # known when compiling: fixed per period
        return lines + [f"{indent}return ({rule.index}, False)"]
    # a derived value in the reason text that may need a field a list item lacks is computed
    # here, after the values, so that such a case is referred (missing-data) as the reference does
    forced = [n for n in rule.because.names if n in version.derived and em.may_miss(ast.Name(n))]
    if rule.values:
        items = ", ".join(f"{k!r}: {em.value(e)}" for k, e in rule.values.items())
        if forced:
            lines.append(f"{indent}_vals = {{{items}}}")
            lines += _field_loads(version, forced, loaded, indent, em)
            lines += _forced(em, forced, indent)
            lines.append(f"{indent}return ({rule.index}, _vals{keep})")
        else:
            lines.append(f"{indent}return ({rule.index}, {{{items}}}{keep})")
    else:
        lines += _field_loads(version, forced, loaded, indent, em)
        lines += _forced(em, forced, indent)
        lines.append(f"{indent}return ({rule.index}, None{keep})" if keep else f"{indent}return {rule.index}")
    return lines


def _forced(em: Emitter, names: list[str], indent: str) -> list[str]:
    """Compute derived values of a reason text: a missing item field refers the case; any other
    error leaves the decision standing (its text then says it could not be rendered)."""
    lines = []
    for n in names:
        lines += [f"{indent}try:", f"{indent}    {em.derived_ref(n)}", f"{indent}except _ItemMissing:",
                  f"{indent}    raise", f"{indent}except _EvaluationErrors:", f"{indent}    pass"]
    return lines


def _compile_period(period: Period) -> None:
    version = period.version
    em = Emitter(version.scope, version.derived,
                 frozenset(n for n, v in period.parameters.items() if v is None))
    derived = list(version.derived)
    lines = ["def decide(c):"]
    if derived:
        lines.append("    " + " = ".join(f"d_{d}" for d in derived) + " = _U")
    top = len(lines)  # the item functions the rules need are defined here (see Emitter.aggregate)
    loaded: set[str] = set()
    # _k is the rule being evaluated: an error in its condition or values names it (RuleFailed)
    lines += ["    _k = 0", "    try:"]
    for rule in version.rules:
        lines.append(f"        _k = {rule.index}")
        if rule.when is None:  # otherwise
            lines += _rule_result(period, version, em, rule, loaded, "        ")
            break
        lines += _field_loads(version, rule.when.names, loaded, "        ", em)
        lines += _missing_check(rule.needs_optional, rule.index, "        ")
        lines.append(f"        if {em.emit(rule.when)}:")
        body_loaded = set(loaded)
        lines += _rule_result(period, version, em, rule, body_loaded, "            ")
    lines += ["    except _ItemMissing:", "        raise",
              "    except _EvaluationErrors as _e:", "        raise _RuleFailed(_k, _e) from None"]
    lines[top:top] = ["    " + line for line in em.take_defs()]
    # reason texts: one small function per rule, sharing the same memoised derived values
    # (because_json<n>: the same text as a JSON string, each piece escaped as it is written)
    for rule, json in ((rule, json) for rule in version.rules for json in (False, True)):
        lines.append("")
        lines.append(f"def because{'_json' if json else ''}{rule.index}(c, vals, _d=None):")
        names = [n for n in rule.because.names if n in version.scope]
        if any(version.scope[n].kind == "derived" for n in names):
            # _d: the derived values the decision kept (see _rule_result); _U where not computed
            lines.append("    " + "".join(f"d_{d}, " for d in derived) + "= _d if _d is not None else _UD")
        lines += _field_loads(version, names, set(), "    ", em)
        steps, text = _template_code(rule, version, em, period.parameters, json)
        lines += ["    " + line for line in em.take_defs()]
        lines += ["    " + line for line in steps]
        lines.append("    return " + text)
    source = "\n".join(lines) + "\n"
    env = _runtime_globals()
    env["_UD"] = (_U,) * len(derived)
    env["_SI"], env["_int"], env["_str"], env["_Dec"] = _SHOWN_INT, int, str, Decimal
    env.update(em.constants)
    for name, value in period.parameters.items():
        env[f"P_{name}"] = value
    try:
        code = builtins.compile(source, f"<vedtak {version.id} {version.version} from {period.start}>", "exec")
        exec(code, env)
    except (SyntaxError, RecursionError, MemoryError, ValueError) as exc:  # never a checked ruleset's fault
        raise RulesetError([Diagnostic(version.source.path, 1, 1, "internal_error",
                                       f"version {version.version} (from {period.start}) could not be compiled: "
                                       f"a fault in vedtak, please report it with this ruleset ({type(exc).__name__})")]) from None
    period.decide = env["decide"]
    period.source = source
    model = version.model
    automate = set(model.automate)
    for rule in version.rules:
        because = env[f"because{rule.index}"], env[f"because_json{rule.index}"]
        if rule.refer is not None:
            o = Outcome(rule.index, rule, "referred", rule.decide, rule.refer, "rule", period, *because)
        elif rule.decide in automate:
            o = Outcome(rule.index, rule, "decided", rule.decide, None, None, period, *because)
        else:
            o = Outcome(rule.index, rule, "referred", rule.decide, model.review_queue, "automation-policy",
                        period, *because)
        period.outcomes.append(o)
    period.missing = [Outcome(r.index, r, "referred", None, model.review_queue, "missing-data", period)
                      for r in version.rules]
    period.missing_parameter = [Outcome(r.index, r, "referred", None, model.review_queue, "missing-parameter", period)
                                for r in version.rules]
    period.failed = [Outcome(r.index, r, "referred", None, model.review_queue, "evaluation-error", period)
                     for r in version.rules]
    period.rejected = Outcome(-1, None, "rejected", None, None, None, period)


def _template_code(rule: CheckedRule, version: CheckedVersion, em: Emitter,
                   parameters: dict, json: bool = False) -> tuple[list[str], str]:
    """A `because` text as statements that format each value, in the text's order, and one
    f-string (adjacent literals, which Python joins in one step) that joins them.

    A parameter is constant within the period, so it is formatted here, into the literal text.
    A whole number is written by str() when it is a plain int the reason writes in full.
    With ``json``, the text as a JSON string: literal text escaped here, each value as it is
    formatted (JSON escapes character by character, so the pieces join to the whole text's).
    """
    fmt = "_jfmt" if json else "_fmt"
    from ..language.load import _PLACEHOLDER
    text, parts, steps, pos = rule.because.text, [], [], 0
    literal = ""  # literal text not yet written out (merged with formatted parameters)
    for m in _PLACEHOLDER.finditer(text):
        literal += text[pos:m.start()]
        n = m.group(1).strip()
        code = None
        if n in rule.values:
            code, vtype = f"vals.get({n!r})", rule.values[n].type
        else:
            sym = version.scope[n]
            vtype = sym.type
            if sym.kind == "parameter":
                try:
                    literal += format_value(parameters[n])
                except Exception:  # noqa: BLE001 - then it fails when rendered, as it always did
                    code = f"P_{n}"
            else:
                code = f"f_{n}" if sym.kind == "field" else em.derived_ref(n)
        if code is not None:
            if literal:
                parts.append(repr(json_text(literal)[1:-1] if json else literal))
                literal = ""
            x = f"_x{len(parts)}"
            if vtype == INT:
                steps += [f"{x} = {code}",
                          f"{x} = _str({x}) if {x}.__class__ is _int and -_SI < {x} < _SI else {fmt}({x})"]
            elif json and vtype == DECIMAL:  # a decimal's text needs no escape
                steps += [f"{x} = {code}", f"{x} = _fmt({x}) if {x}.__class__ is _Dec else _jfmt({x})"]
            else:
                steps.append(f"{x} = {fmt}({code})")
            parts.append(f"f'{{{x}}}'")
        pos = m.end()
    literal += text[pos:]
    if literal or not parts:
        parts.append(repr(json_text(literal)[1:-1] if json else literal))
    if json:
        parts = ["'\"'", *parts, "'\"'"]
    return steps, " ".join(parts)


class Validated(tuple):
    """What :meth:`Plan.validate` returns: ``(case, None)`` for a valid case, ``(None, rejection)``
    otherwise. A plain pair (it unpacks), and :meth:`Plan.evaluate` takes it as it is::

        checked = plan.validate(raw)
        decision = plan.evaluate(checked)     # the rejection itself when the case is invalid
    """

    __slots__ = ()

    @property
    def case(self) -> dict | None:
        """The validated case, or None when the case was rejected."""
        return tuple.__getitem__(self, 0)

    @property
    def rejection(self) -> Decision | None:
        """The rejection (a :class:`Decision` with status ``rejected``), or None when the case is valid."""
        return tuple.__getitem__(self, 1)

    @property
    def ok(self) -> bool:
        return tuple.__getitem__(self, 1) is None

    def __repr__(self) -> str:
        return f"Validated(case={self.case!r}, rejection={self.rejection!r})"


def _validated(pair: tuple) -> Validated:
    return tuple.__new__(Validated, pair)


class Plan:
    """A compiled ruleset: validates and decides cases. Build one with :func:`compile`.

    >>> plan = vedtak.compile(vedtak.load("rulesets/study-grant"))   # doctest: +SKIP
    >>> plan.decide({"case_id": 1, ...}).outcome                     # doctest: +SKIP
    'grant'
    """

    def __init__(self, ruleset: Ruleset):
        self.ruleset = ruleset
        self.versions = [VersionPlan(v) for v in ruleset.versions]
        self._periods = [p for vp in self.versions for p in vp.periods]
        self._starts = [p.start for p in self._periods]
        last = ruleset.versions[-1].model.valid
        self._end = last.to if last.to is not None else date.max
        first = ruleset.versions[0].model
        self._date_field = first.decision_date
        self._id_field = first.case_id
        self._single = self.versions[0] if len(self.versions) == 1 else None

    @property
    def id(self) -> str:
        return self.ruleset.id

    def period_for(self, day: date) -> Period | None:
        """The version and parameter period that govern decisions dated ``day``."""
        i = bisect_right(self._starts, day) - 1
        if i < 0 or day > self._end:
            return None
        return self._periods[i]

    def evaluate(self, case: "dict | Validated") -> Decision:
        """Decide a validated case: what :meth:`validate` returned, or its ``case``.

        Given a :class:`Validated` rejection, the rejection is returned, so
        ``plan.evaluate(plan.validate(raw))`` is always ``plan.decide(raw)``.
        """
        if case.__class__ is Validated:
            if case[1] is not None:
                return case[1]
            case = case[0]
        day = case[self._date_field]
        i = bisect_right(self._starts, day) - 1
        if i < 0 or day > self._end:
            return self._no_version(case, day)
        return self._evaluate_in(self._periods[i], case)

    def _evaluate_in(self, period: Period, case: dict) -> Decision:
        try:
            r = period.decide(case)
        except runtime.ItemMissing:
            return self._item_missing(period, case)
        except runtime.ParameterMissing:
            return self._parameter_missing(period, case)
        except runtime.RuleFailed as exc:
            return self._failed(period, case, exc)
        if r.__class__ is int:
            return Decision((period.outcomes[r], case, None, None))
        return self._result(period, case, r)

    def _result(self, period: Period, case: dict, r: tuple) -> Decision:
        if len(r) == 3:  # (index, values or None, the derived values its reason text reads)
            return Decision((period.outcomes[r[0]], case, r[1], r[2]))
        index, values = r
        if values is None:
            return self._missing(period, case, index)
        if values is False:
            return self._missing_parameter(period, case, index)
        return Decision((period.outcomes[index], case, values, None))

    def validate(self, raw) -> "Validated":
        """Validate a raw case; returns a :class:`Validated`, ``(case, None)`` or ``(None, rejection)``,
        which :meth:`evaluate` takes as it is (or unpack it: ``case, rejection = plan.validate(raw)``)."""
        return _validated(self._validate(raw))

    def _validate(self, raw, checked: tuple | None = None) -> tuple:
        """``(case, None)`` or ``(None, rejection)``; ``checked``: what the validator of the only
        version returned for ``raw``, when the caller has it already."""
        if type(raw) is not dict:
            period = self._periods[-1]
            err = CaseError("", "wrong_type", "a case is a JSON object")
            return None, Decision((period.rejected, raw, None, (err,)))
        day = raw.get(self._date_field)
        if day.__class__ is not date:
            day = _parse_day(day)
        period = self.period_for(day) if day is not None else None
        vplan = period.vplan if period is not None else self.versions[-1]
        case, errors = checked if checked is not None and vplan is self._single else vplan.validate(raw)
        if errors:
            return None, Decision(((period or vplan.periods[-1]).rejected, raw, None, tuple(errors)))
        if period is None:
            return None, self._no_version(raw, day)
        return case, None

    def decide(self, raw) -> Decision:
        """Validate and decide one case given as a dict (as JSON gives it)."""
        vplan = self._single
        checked = None
        if vplan is not None:
            # one version: a valid case dated inside it is evaluated at once; anything else
            # (a rejection, a date outside every period) takes the general path below
            checked = case, errors = vplan.validate(raw)
            if not errors:
                day = case[self._date_field]
                i = bisect_right(self._starts, day) - 1
                if i >= 0 and day <= self._end:
                    return self._evaluate_in(self._periods[i], case)
        case, rejection = self._validate(raw, checked)
        if rejection is not None:
            return rejection
        return self.evaluate(case)

    def decide_json(self, text: str | bytes) -> Decision:
        """Decide one case given as JSON text; numbers with a fraction are read as exact decimals.

        Text that is not JSON is a rejection (``malformed_input``), never an exception.
        """
        try:
            raw = parse_case_json(text)
        except (CaseInputError, RecursionError) as exc:
            message = str(exc) if isinstance(exc, CaseInputError) else "the case is not valid JSON: nested too deeply"
            return self._malformed(text, message)
        return self.decide(raw)

    # -- the unusual outcomes ------------------------------------------------------------
    def _malformed(self, text: str | bytes, message: str) -> Decision:
        if not isinstance(text, str):
            text = bytes(text).decode("utf-8", "replace")
        err = CaseError("", "malformed_input", message)
        return Decision((self._periods[-1].rejected, text, None, (err,)))

    def _no_version(self, case: dict, day: date) -> Decision:
        rs = self.ruleset
        windows = ", ".join(f"{v.version}: {v.model.valid.from_} to {v.model.valid.to or 'open'}"
                            for v in rs.versions)
        err = CaseError(self._date_field, "no_version",
                        f"no version of {rs.id} governs decisions dated {day} (versions: {windows})")
        period = self._periods[0] if day < self._starts[0] else self._periods[-1]
        return Decision((period.rejected, case, None, (err,)))

    def _missing(self, period: Period, case: dict, index: int) -> Decision:
        rule = period.version.rules[index]
        missing = tuple(f for f in (*rule.needs_optional, *rule.values_optional) if case.get(f) is None)
        return Decision((period.missing[index], case, None, tuple(dict.fromkeys(missing))))

    def _missing_parameter(self, period: Period, case: dict, index: int) -> Decision:
        rule = period.version.rules[index]
        return Decision((period.missing_parameter[index], case, None, because_parameters(period, period.version, rule)))

    def _parameter_missing(self, period: Period, case: dict) -> Decision:
        """A rule read a parameter with no value in force: the reference interpreter finds which
        rule and which parameters (it evaluates in the same order)."""
        from .reference import run
        result = run(period, case)
        if result.kind == "missing-parameter":
            return Decision((period.missing_parameter[result.index], case, None, result.missing))
        return Decision((period.failed[result.index], case, None,  # pragma: no cover - the two agree
                         result.error or "the evaluators disagree on a missing parameter"))

    def _item_missing(self, period: Period, case: dict) -> Decision:
        """A rule needed a field that a list item lacks: the reference interpreter finds which
        rule and every item path it needed (it is evaluated item by item as the plan is)."""
        from .reference import run
        result = run(period, case)
        if result.kind == "missing-data":
            return Decision((period.missing[result.index], case, None, result.missing))
        return Decision((period.failed[result.index], case, None,  # pragma: no cover - the two agree
                         result.error or "the evaluators disagree on missing data"))

    def _failed(self, period: Period, case: dict, exc: runtime.RuleFailed) -> Decision:
        """Rule ``exc.index`` could not be evaluated; the reference interpreter, re-run, words
        the reason (both evaluators fail in the same rule, with the same error)."""
        from .reference import failing_rule
        index, message = failing_rule(period, case, exc)
        return Decision((period.failed[index], case, None, message))


def parse_case_json(text: str | bytes):
    """A case from JSON text, numbers with a fraction as exact decimals; CaseInputError saying why if
    it cannot be read (not JSON or not UTF-8, nested too deeply, a lone surrogate, over an input
    limit: see :mod:`vedtak.batch.input_limits`). A number no Decimal holds is left for validation."""
    from ..batch.inputs import parse_json, read_document
    raw, why = parse_json(text) if isinstance(text, str) else read_document(bytes(text))
    if why is not None:
        raise CaseInputError("the case is not valid JSON: " + why.removeprefix("not JSON: "))
    return raw


def _parse_day(value) -> date | None:
    if isinstance(value, str) and len(value) == 10 and value[4] == "-" == value[7]:
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def compile(ruleset: Ruleset | str | Path) -> Plan:  # noqa: A001 - the pipeline's verb
    """Compile a loaded ruleset (or load and compile a path) into a :class:`Plan`."""
    if not isinstance(ruleset, Ruleset):
        ruleset = load(ruleset)
    return Plan(ruleset)


__all__ = ["Plan", "Period", "Validated", "compile", "parse_case_json"]
