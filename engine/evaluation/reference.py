"""The reference interpreter: walks the checked syntax tree directly, and records a trace.

It is the plain, slow statement of vedtak's semantics. Decisions use it for their trace
and explanation; the tests check the compiled evaluator against it on generated cases.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, localcontext

from ..language.expr import INT, CheckedExpr, literal_value
from ..language.load import format_value
from . import emit, runtime
from .runtime import CONTEXT, EVALUATION_ERRORS, EvaluationError, ItemMissing, ParameterMissing, describe_error


class _Missing(Exception):
    pass


@dataclass
class RuleTrace:
    id: str
    when: str | None
    result: str  # "true", "false", "missing-data", "missing-parameter", "error"
    seen: dict = field(default_factory=dict)


@dataclass
class DerivedTrace:
    name: str
    expression: str
    value: object
    inputs: dict


@dataclass
class ScaleTrace:
    """One use of a scale: the amount it was applied to and each bracket's part."""

    scale: str
    function: str  # "marginal" or "bracket"
    x: object
    value: object
    parts: list  # (from, to or None, rate or amount, part of x inside, amount of that part)


@dataclass
class Trace:
    """Rules tried in order with the values their conditions saw; derived values with their inputs;
    the scales applied, bracket by bracket; and the case fields read as their defaults."""

    rules: list[RuleTrace]
    derived: list[DerivedTrace]
    parameters: dict
    scales: list[ScaleTrace] = field(default_factory=list)
    defaults: dict = field(default_factory=dict)  # field or item path -> the default used

    def lines(self) -> list[str]:
        out = []
        for r in self.rules:
            seen = ", ".join(f"{k} = {format_value(v)}" for k, v in r.seen.items())
            cond = f"when {r.when}" if r.when is not None else "otherwise"
            out.append(f"{r.id}: {cond} -> {r.result}" + (f"  [{seen}]" if seen else ""))
        if self.derived:
            out.append("derived values:")
            for d in self.derived:
                ins = ", ".join(f"{k} = {format_value(v)}" for k, v in d.inputs.items())
                out.append(f"  {d.name} = {d.expression} = {format_value(d.value)}" + (f"  [{ins}]" if ins else ""))
        for s in self.scales:
            if s.function == "marginal":
                out.append(f"scale {s.scale} applied to {format_value(s.x)} = {format_value(s.value)}:")
                if not s.parts:
                    out.append("  below the first bracket: nothing")
                for lower, upper, rate, inside, amount in s.parts:
                    span = f"{format_value(lower)} to {format_value(upper)}" if upper is not None \
                        else f"above {format_value(lower)}"
                    out.append(f"  {span}: {format_value(inside)} at {format_value(rate)} = {format_value(amount)}")
            else:
                out.append(f"scale {s.scale}: {format_value(s.x)} falls in the bracket from "
                           f"{format_value(s.parts[0][0])}: {format_value(s.value)}" if s.parts else
                           f"scale {s.scale}: {format_value(s.x)} is below its first bracket")
        if self.defaults:
            out.append("defaults used (not given in the case):")
            out += [f"  {k} = {format_value(v)}" for k, v in self.defaults.items()]
        if self.parameters:
            out.append("parameters in force:")
            out += [f"  {k} = {format_value(v)}" if v is not None else f"  {k}: no value in force"
                    for k, v in self.parameters.items()]
        return out

    def to_dict(self) -> dict:
        out = {
            "rules": [{"id": r.id, "when": r.when, "result": r.result, "seen": r.seen} for r in self.rules],
            "derived": [{"name": d.name, "expression": d.expression, "value": d.value, "inputs": d.inputs}
                        for d in self.derived],
        }
        if self.scales:
            out["scales"] = [{"scale": s.scale, "function": s.function, "x": s.x, "value": s.value,
                              "brackets": [{"from": a, "to": b, "value": r, "part": p, "amount": m}
                                           for a, b, r, p, m in s.parts]} for s in self.scales]
        if self.defaults:
            out["defaults"] = dict(self.defaults)
        return out


def _years(start: date, end: date) -> int:
    if end < start:
        return -_years(end, start)
    years = end.year - start.year
    try:
        anniversary = start.replace(year=end.year)
    except ValueError:  # 29 February in a year without one: the year completes on 1 March
        anniversary = date(end.year, 3, 1)
    return years - 1 if end < anniversary else years


def _months(start: date, end: date) -> int:
    if end < start:
        return -_months(end, start)
    months = (end.year - start.year) * 12 + (end.month - start.month)
    y, m = divmod(start.month - 1 + months, 12)
    try:
        anniversary = date(start.year + y, m + 1, start.day)
    except ValueError:  # no such day in that month: the month completes on the 1st of the next
        ny, nm = divmod(m + 1, 12)
        anniversary = date(start.year + y + ny, nm + 1, 1)
    return months - 1 if end < anniversary else months


class Interpreter:
    """Evaluates one case under one period of a ruleset version, recording what it reads."""

    def __init__(self, period, case: dict):
        self.version = period.version
        self.params = period.parameters
        self.case = case
        self.memo: dict[str, object] = {}
        self.order: list[str] = []
        self.reads: dict[str, object] = {}  # names read directly by the expression being evaluated
        self.inputs: dict[str, dict] = {}  # derived value -> the names its expression read
        self.scales: list[ScaleTrace] = []

    def lookup(self, name: str):
        sym = self.version.scope[name]
        if sym.kind == "field":
            value = self.case.get(name)
            if value is None and name in self.version.defaults:
                value = self.version.defaults[name]
        elif sym.kind == "parameter":
            value = self.params[name]
            if value is None:
                raise ParameterMissing((name,))
        else:
            if name not in self.memo:
                outer, self.reads = self.reads, {}
                try:
                    self.memo[name] = self.eval(self.version.derived[name])
                    self.inputs[name] = self.reads
                finally:
                    self.reads = outer
                self.order.append(name)
            value = self.memo[name]
        self.reads[name] = _with_defaults(value, sym.type.defaults) if sym.type.defaults else value
        return value

    def eval(self, expr: CheckedExpr, loops: dict | None = None):
        with localcontext(CONTEXT):
            return self._node(expr, expr.tree, loops or {})

    def eval_node(self, expr: CheckedExpr, node: ast.AST):
        """Evaluate one sub-expression of ``expr`` (the durable backend posts such values)."""
        with localcontext(CONTEXT):
            return self._node(expr, node, {})

    def _node(self, expr: CheckedExpr, n: ast.AST, loops: dict):
        ev = lambda x: self._node(expr, x, loops)  # noqa: E731
        if isinstance(n, ast.Constant) or (isinstance(n, ast.Call) and id(n) in expr.constants):
            return literal_value(expr, n)
        if isinstance(n, ast.Name):
            return loops[n.id] if n.id in loops else self.lookup(n.id)
        if isinstance(n, ast.Attribute):
            inner = getattr(n.value, "vtype", None)
            if inner is not None and inner.kind == "date":
                return getattr(ev(n.value), n.attr)
            value = loops[n.value.id][n.attr]  # type: ignore[attr-defined]
            if value is None and inner is not None and inner.defaults:
                value = dict(inner.defaults).get(n.attr)
            if value is None:  # an optional field this item lacks
                raise ItemMissing((f"{loops['#' + n.value.id]}.{n.attr}",))  # type: ignore[attr-defined]
            return value
        if isinstance(n, ast.Subscript):
            name = n.value.id  # type: ignore[attr-defined]
            table, key = self.lookup(name), ev(n.slice)
            if key not in table:
                raise runtime.table_missing(name, key)
            return table[key]
        if isinstance(n, ast.UnaryOp):
            v = ev(n.operand)
            if isinstance(n.op, ast.Not):
                return not v
            if isinstance(n.op, ast.USub):  # a decimal (even a whole one) in 34 digits, as compiled
                return -v if n.operand.vtype == INT else -Decimal(v)  # type: ignore[attr-defined]
            return v
        if isinstance(n, ast.BinOp):
            a, b = ev(n.left), ev(n.right)
            if n.vtype != INT:  # type: ignore[attr-defined]  # decimal arithmetic, rounded to 34 digits
                a, b = Decimal(a), Decimal(b)
            if isinstance(n.op, ast.Add):
                return a + b
            if isinstance(n.op, ast.Sub):
                return a - b
            if isinstance(n.op, ast.Mult):  # a product typed whole is checked, as compiled (emit.imul)
                return emit.imul(a, b) if n.vtype == INT else a * b  # type: ignore[attr-defined]
            return Decimal(a) / Decimal(b)
        if isinstance(n, ast.BoolOp):
            if isinstance(n.op, ast.And):
                return all(ev(v) for v in n.values)
            return any(ev(v) for v in n.values)
        if isinstance(n, ast.Compare):
            left = ev(n.left)
            for op, comp in zip(n.ops, n.comparators):
                if isinstance(op, (ast.In, ast.NotIn)):
                    inside = any(left == literal_value(expr, e) for e in comp.elts)  # type: ignore[attr-defined]
                    ok, right = inside if isinstance(op, ast.In) else not inside, left
                else:
                    right = ev(comp)
                    ok = {ast.Eq: left == right, ast.NotEq: left != right}.get(type(op))
                    if ok is None:
                        ok = {ast.Lt: lambda: left < right, ast.LtE: lambda: left <= right,
                              ast.Gt: lambda: left > right, ast.GtE: lambda: left >= right}[type(op)]()
                if not ok:
                    return False
                left = right
            return True
        if isinstance(n, ast.IfExp):
            return ev(n.body) if ev(n.test) else ev(n.orelse)
        if isinstance(n, ast.Call):
            return self._call(expr, n, loops)
        raise AssertionError(type(n).__name__)  # pragma: no cover

    def _scale(self, fn: str, name: str, x):
        """marginal() by its definition, bracket by bracket (the compiled form adds precomputed
        sums of the same terms in the same order); bracket() by a walk over the brackets."""
        scale = self.lookup(name)
        if fn == "marginal":
            parts = scale.parts(x)
            total = Decimal(0) if not parts else 0
            for part in parts:
                total = runtime.add(total, part[4])
            self.scales.append(ScaleTrace(name, fn, x, total, parts))
            return total
        found = None
        for i, lower in enumerate(scale.froms):
            if lower <= x:
                upper = scale.froms[i + 1] if i + 1 < len(scale.froms) else None
                found = (lower, upper, scale.values[i], None, None)
        if found is None:
            self.scales.append(ScaleTrace(name, fn, x, None, []))
            return runtime.bracket(scale, x)  # raises: x is below the first bracket
        self.scales.append(ScaleTrace(name, fn, x, found[2], [found]))
        return found[2]

    def _items(self, expr: CheckedExpr, g: ast.GeneratorExp, loops: dict, *, unknown: bool = False):
        """The values a generator yields, every item evaluated. An item that needs a field it
        lacks is unknown: ItemMissing names every such item, unless ``unknown`` asks for
        ``(values, paths)`` (any and all may be settled by the known items alone)."""
        comp = g.generators[0]
        var, lst = comp.target.id, comp.iter.id  # type: ignore[attr-defined]
        out, missing = [], []
        for i, item in enumerate(self._node(expr, comp.iter, loops)):
            inner = dict(loops)
            inner[var] = item
            inner["#" + var] = f"{lst}[{i}]"
            try:
                if all(self._node(expr, c, inner) for c in comp.ifs):
                    out.append(self._node(expr, g.elt, inner))
            except ItemMissing as exc:
                missing += [p for p in exc.paths if p not in missing]
        if unknown:
            return out, tuple(missing)
        if missing:
            raise ItemMissing(tuple(missing))
        return out

    def _call(self, expr: CheckedExpr, n: ast.Call, loops: dict):
        inline = getattr(n, "inline", None)
        if inline is not None:  # an item function applied to a list item: its body, for that item
            arg, param = n.args[0].id, n.param  # type: ignore[attr-defined]
            inner = dict(loops)
            inner[param], inner["#" + param] = loops[arg], loops["#" + arg]
            return self._node(expr, inline, inner)
        fn = n.func.id  # type: ignore[attr-defined]
        args = n.args
        ev = lambda x: self._node(expr, x, loops)  # noqa: E731
        if fn in ("marginal", "bracket"):
            return self._scale(fn, args[0].id, ev(args[1]))  # type: ignore[attr-defined]
        if fn in ("add_days", "add_months", "add_years"):
            return getattr(runtime, fn)(ev(args[0]), ev(args[1]))
        gen = args[0] if args and isinstance(args[0], ast.GeneratorExp) else None
        if fn in ("min", "max"):
            values = self._items(expr, gen, loops) if gen is not None else [ev(a) for a in args]
            if not values:
                raise EvaluationError(f"{fn}() of no items")
            if gen is not None:  # of equal items, the first in value-then-text order: never list order
                values = sorted(values, key=lambda v: (v, str(v), type(v).__name__))
            best = values[0]
            for v in values[1:]:
                if (v < best) if fn == "min" else (v > best):
                    best = v
            return best
        if fn == "abs":
            v = ev(args[0])
            if n.vtype != INT:  # type: ignore[attr-defined]
                v = Decimal(v)
            return -v if v < 0 else +v
        if fn == "floor":  # a whole number a decision may hold (see emit.int_checked)
            return emit.floor(ev(args[0]))
        if fn == "ceil":
            return emit.ceil(ev(args[0]))
        if fn == "round":
            places = args[1].value if len(args) > 1 else 0  # type: ignore[attr-defined]
            mode = args[2].value if len(args) > 2 else "half_up"  # type: ignore[attr-defined]
            return runtime.round_to(ev(args[0]), places, mode)
        if fn == "sum":
            total = 0  # added in value order, so that a rounded sum never depends on list order
            whole = getattr(gen.elt, "vtype", None) == INT
            for v in sorted(self._items(expr, gen, loops), key=lambda v: (v, str(v), type(v).__name__)):
                total = total + (v if whole else Decimal(v))
            return total
        if fn == "count":
            if gen is None:
                return len(ev(args[0]))
            items = self._items(expr, gen, loops)
            if getattr(gen.elt, "vtype", None) is not None and gen.elt.vtype.kind == "bool":  # type: ignore
                return len([x for x in items if x])
            return len(items)
        if fn in ("any", "all"):  # three-valued: settled by the known items, else unknown
            items, missing = self._items(expr, gen, loops, unknown=True)
            settled = any(items) if fn == "any" else not all(items)
            if settled or not missing:
                return any(items) if fn == "any" else all(items)
            raise ItemMissing(missing)
        if fn == "years_between":
            return _years(ev(args[0]), ev(args[1]))
        if fn == "months_between":
            return _months(ev(args[0]), ev(args[1]))
        if fn == "days_between":
            return (ev(args[1]) - ev(args[0])).days
        if fn == "date":
            return runtime.make_date(ev(args[0]), ev(args[1]), ev(args[2]))
        if fn == "known":
            if isinstance(args[0], ast.Attribute):
                return loops[args[0].value.id][args[0].attr] is not None  # type: ignore[attr-defined]
            return self.case.get(args[0].id) is not None  # type: ignore[attr-defined]
        raise AssertionError(fn)  # pragma: no cover


@dataclass
class Result:
    """What the reference interpreter decided: rule index, and values or what went wrong."""

    index: int
    kind: str  # "match", "missing-data", "missing-parameter" or "error"
    values: dict | None
    trace: Trace
    error: str | None = None
    missing: tuple[str, ...] = ()  # for missing-data: the fields, or item paths, the case lacks


def value_of_type(value, expr: CheckedExpr):
    """A rule's output value as its type says: a decimal is a Decimal even when it came out whole."""
    return Decimal(value) if expr.type.kind == "decimal" and not isinstance(value, Decimal) else value


def _with_defaults(items, defaults) -> object:
    """A list as a trace shows it: each item's absent fields that have a default, as read."""
    if not isinstance(items, list):
        return items
    return [{**item, **{f: d for f, d in defaults if item.get(f) is None}} if isinstance(item, dict) else item
            for item in items]


def defaulted(version, case: dict) -> dict:
    """Every field (or list item field, by its path) the case lacks and that reads as its default."""
    out = {}
    for name, spec in version.model.case.items():
        if name in version.defaults and case.get(name) is None:
            out[name] = version.defaults[name]
        item_defaults = dict(version.scope[name].type.defaults) if spec.type == "list" else {}
        if item_defaults and isinstance(case.get(name), list):
            for i, item in enumerate(case[name]):
                for field_name, value in item_defaults.items():
                    if isinstance(item, dict) and item.get(field_name) is None:
                        out[f"{name}[{i}].{field_name}"] = value
    return out


def because_parameters(period, version, rule) -> tuple[str, ...]:
    from .compile import because_parameters as absent
    return absent(period, version, rule)


def run(period, case: dict) -> Result:
    """Evaluate ``case`` by walking the rules and syntax trees; never raises for a valid case."""
    version = period.version
    interp = Interpreter(period, case)
    tried: list[RuleTrace] = []

    def finish(index, kind, values=None, error=None, missing=()) -> Result:
        derived = []
        for name in interp.order:
            expr = version.derived[name]
            derived.append(DerivedTrace(name, expr.text, interp.memo[name], interp.inputs[name]))
        return Result(index, kind, values, Trace(tried, derived, dict(period.parameters), interp.scales,
                                                 defaulted(version, case)), error, missing)

    for rule in version.rules:
        rt = RuleTrace(rule.id, rule.when.text if rule.when else None, "true")
        tried.append(rt)
        absent = tuple(f for f in rule.needs_optional if case.get(f) is None)
        if absent:
            rt.result = "missing-data"
            return finish(rule.index, "missing-data", missing=absent)
        try:
            if rule.when is not None:
                interp.reads = {}
                ok = interp.eval(rule.when)
                rt.seen = {k: v for k, v in interp.reads.items()}
                if not ok:
                    rt.result = "false"
                    continue
            absent = tuple(f for f in rule.values_optional if case.get(f) is None)
            if absent:
                rt.result = "missing-data"
                return finish(rule.index, "missing-data", missing=absent)
            absent = because_parameters(period, version, rule)
            if absent:
                rt.result = "missing-parameter"
                return finish(rule.index, "missing-parameter", missing=absent)
            values = None
            if rule.values:
                values = {k: value_of_type(interp.eval(e), e) for k, e in rule.values.items()}
            _check_because(period, case, rule)
            return finish(rule.index, "match", values)
        except ItemMissing as exc:
            rt.result = "missing-data"
            return finish(rule.index, "missing-data", missing=exc.paths)
        except ParameterMissing as exc:
            rt.result = "missing-parameter"
            return finish(rule.index, "missing-parameter", missing=exc.names)
        except EVALUATION_ERRORS as exc:
            rt.result = "error"
            return finish(rule.index, "error", error=_describe_error(exc))
    raise AssertionError("`otherwise` always matches")  # pragma: no cover


def _check_because(period, case: dict, rule) -> None:
    """ItemMissing if the reason text needs a field that a list item lacks. Any other error in
    the text leaves the decision standing (the text says it could not be rendered). A separate
    interpreter keeps the trace to what the rules themselves computed."""
    names = [n for n in rule.because.names if n in period.version.derived]
    if not names:
        return
    interp = Interpreter(period, case)
    for name in names:
        try:
            interp.lookup(name)
        except ItemMissing:
            raise
        except EVALUATION_ERRORS:
            pass


_describe_error = describe_error  # durable's name for it


def trace(period, case: dict) -> Trace:
    return run(period, case).trace


def failing_rule(period, case: dict, exc: Exception) -> tuple[int, str]:
    """The rule the compiled evaluator failed in (``exc`` a RuleFailed) and why, worded by the
    reference interpreter (the same words, from runtime.describe_error)."""
    result = run(period, case)
    index = getattr(exc, "index", None)
    if result.kind == "error" and index in (None, result.index):
        return result.index, result.error or describe_error(exc)
    if index is None:  # pragma: no cover - a compiled error always names its rule
        index = result.index
    return index, describe_error(exc)  # pragma: no cover - the two agree


__all__ = ["Interpreter", "Result", "Trace", "run", "trace", "failing_rule"]
