"""Code generation: a checked expression becomes Python source over local names.

Case fields are locals ``f_<name>``, derived values locals ``d_<name>`` computed at first
use and memoised, parameters globals ``P_<name>`` fixed per period, exact literals
globals ``K<n>``. Decimal arithmetic goes through the fixed context of ``runtime``.
"""

from __future__ import annotations

import ast
import math
import re
from decimal import Decimal

from ..language.expr import DECIMAL, INT, CheckedExpr, Symbol, literal_value
from ..language.trees import applications, reads_variable, walk, walk_applied
from ..language.limits import DIGITS
from .runtime import TooLarge


class Emitter:
    """Turns checked expressions of one ruleset version into Python expression source."""

    def __init__(self, scope: dict[str, Symbol], derived: dict[str, CheckedExpr], absent=frozenset()):
        self.scope = scope
        self.derived = derived
        self.absent = absent  # parameters with no value in force in the period being compiled
        self.constants: dict[str, object] = {}
        self._const_ids: dict[tuple, str] = {}
        self._expr: CheckedExpr | None = None
        # Generators over items that may lack a field become nested item functions (see
        # runtime.each); their definitions go to the top of the generated function using them.
        self._defs: list[list[str]] = [[]]
        self._loops: dict[str, str] = {}  # loop variable -> the list it runs over
        self._helpers = 0
        self._may_miss: dict[str, bool] = {}
        self._memo: set[tuple[str, str]] = set()  # (item function, loop variable) computed once per item
        self._alias: dict[str, str] = {}  # an applied item function's parameter -> the loop variable it stands for
        self._helper_memo: dict = {}

    def const(self, value) -> str:
        key = (type(value).__name__, repr(value))
        name = self._const_ids.get(key)
        if name is None:
            name = f"K{len(self._const_ids)}"
            self._const_ids[key] = name
            self.constants[name] = value
        return name

    def emit(self, expr: CheckedExpr) -> str:
        outer, self._expr = self._expr, expr
        try:
            return self.node(expr.tree)
        finally:
            self._expr = outer

    def derived_ref(self, name: str) -> str:
        # memoised: computed the first time a rule needs it, then reused
        return f"(d_{name} if d_{name} is not _U else (d_{name} := {self.emit(self.derived[name])}))"

    def node(self, n: ast.AST) -> str:
        return getattr(self, "n_" + type(n).__name__)(n)

    def n_Constant(self, n: ast.Constant) -> str:
        assert self._expr is not None
        if id(n) in self._expr.constants:
            return self.const(self._expr.constants[id(n)])
        if isinstance(n.value, str):
            return repr(n.value)
        return repr(n.value)

    def n_Name(self, n: ast.Name) -> str:
        sym = self.scope.get(n.id)
        if sym is None:  # a generator's loop variable (the checker forbids shadowing)
            return f"v_{self._alias.get(n.id, n.id)}"
        if sym.kind == "field":
            return f"f_{n.id}"
        if sym.kind == "parameter":
            return self.param_ref(n.id)
        return self.derived_ref(n.id)

    def param_ref(self, name: str) -> str:
        """A parameter, fixed in the period; one with no value in force raises where it is read."""
        return f"_absent({name!r})" if name in self.absent else f"P_{name}"

    def n_Attribute(self, n: ast.Attribute) -> str:
        inner = getattr(n.value, "vtype", None)
        if inner is not None and inner.kind == "date":  # .year, .month, .day
            return f"{self.node(n.value)}.{n.attr}"
        var = self._alias.get(n.value.id, n.value.id)  # type: ignore[attr-defined]
        if _optional_item_field(n):  # only inside an item function, which knows the item's index
            return f"_item(v_{var}, {n.attr!r}, {self._loops[var]!r}, _i_{var})"
        if inner is not None and inner.defaults:
            default = dict(inner.defaults)
            if n.attr in default:  # an absent optional item field with a default reads as the default
                return f"_or(v_{var}[{n.attr!r}], {self.const(default[n.attr])})"
        return f"v_{var}[{n.attr!r}]"

    def n_Subscript(self, n: ast.Subscript) -> str:
        return f"{self.param_ref(n.value.id)}[{self.node(n.slice)}]"  # type: ignore[attr-defined]

    def n_UnaryOp(self, n: ast.UnaryOp) -> str:
        a = self.node(n.operand)
        if isinstance(n.op, ast.Not):
            return f"(not {a})"
        if isinstance(n.op, ast.UAdd):
            return a
        return f"(-{a})" if n.operand.vtype == INT else f"_neg({a})"  # type: ignore[attr-defined]

    def n_BinOp(self, n: ast.BinOp) -> str:
        a, b = self.node(n.left), self.node(n.right)
        if isinstance(n.op, ast.Div):
            return f"_div({a}, {b})"
        op = {ast.Add: ("+", "_add"), ast.Sub: ("-", "_sub"), ast.Mult: ("*", "_mul")}[type(n.op)]
        if n.vtype == INT:  # type: ignore[attr-defined]
            # a product of whole numbers can outgrow what a decision may hold: checked (see int_checked)
            return f"_imul({a}, {b})" if op[0] == "*" else f"({a} {op[0]} {b})"
        return f"{op[1]}({a}, {b})"

    def n_BoolOp(self, n: ast.BoolOp) -> str:
        word = " and " if isinstance(n.op, ast.And) else " or "
        return "(" + word.join(self.node(v) for v in n.values) + ")"

    def n_Compare(self, n: ast.Compare) -> str:
        parts = [self.node(n.left)]
        ops = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
               ast.In: "in", ast.NotIn: "not in"}
        for op, comp in zip(n.ops, n.comparators):
            if isinstance(op, (ast.In, ast.NotIn)):
                assert self._expr is not None
                items = frozenset(literal_value(self._expr, e) for e in comp.elts)  # type: ignore[attr-defined]
                parts += [ops[type(op)], self.const(items)]
            else:
                parts += [ops[type(op)], self.node(comp)]
        return "(" + " ".join(parts) + ")"

    def n_IfExp(self, n: ast.IfExp) -> str:
        return f"({self.node(n.body)} if {self.node(n.test)} else {self.node(n.orelse)})"

    def take_defs(self) -> list[str]:
        """The item functions the expressions emitted since the last call need, as source lines
        (unindented) to put at the top of the generated function that uses them."""
        defs, self._defs = self._defs[0], [[]]
        return defs

    def may_miss(self, node: ast.AST) -> bool:
        """Whether evaluating ``node`` may need an optional field that a list item lacks."""
        for n in walk(node):
            if isinstance(n, ast.Attribute) and _optional_item_field(n):
                return True
            if isinstance(n, ast.Name) and n.id in self.derived:
                if n.id not in self._may_miss:
                    self._may_miss[n.id] = False  # the checker rules out cycles
                    self._may_miss[n.id] = self.may_miss(self.derived[n.id].tree)
                if self._may_miss[n.id]:
                    return True
        return False

    def aggregate(self, fn: str, g: ast.GeneratorExp) -> str:
        """An aggregate over a generator. Every item is evaluated (no short-circuit), so which
        item comes first never changes a result or an error; over items that may lack a field,
        each item is evaluated alone and the runtime applies three-valued logic."""
        kind = getattr(g.elt, "vtype", None)
        if not self._needs_helper(g):
            # a plain comprehension: no value kept per item here (a `:=` inside it would bind in the
            # enclosing function, shared by every item), and never a generator as another
            # comprehension's iterable, where Python forbids the `:=` of a derived value
            outer_memo, self._memo = self._memo, set()
            try:
                body, loop = self._gen_parts(g)
            finally:
                self._memo = outer_memo
            if fn in ("any", "all"):
                return f"{fn}([{body} for {loop}])"
            if fn == "count":
                if kind is not None and kind.kind == "bool":  # the true items: `if` after the filters
                    return f"len([1 for {loop} if {body}])"
                return f"len([{body} for {loop}])"
            return {"sum": "sum" if kind == INT else "_dsum", "min": "_kmin", "max": "_kmax"}[fn] \
                + f"({body} for {loop})"
        memo = self._repeated(g)
        comp = g.generators[0]
        var, lst = comp.target.id, comp.iter.id  # type: ignore[attr-defined]
        name = f"_g{self._helpers}"
        self._helpers += 1
        outer = self._loops.get(var)  # a derived value's generator may reuse a loop name
        self._loops[var] = lst
        self._defs.append([])
        outer_memo, self._memo = self._memo, {(f, var) for f in memo}
        try:
            ifs = [self.node(c) for c in comp.ifs]
            elt = self.node(g.elt)
        finally:
            inner = self._defs.pop()
            self._memo = outer_memo
            if outer is None:
                del self._loops[var]
            else:
                self._loops[var] = outer
        body = [f"def {name}(_i_{var}, v_{var}):"]
        if memo:  # an item function applied more than once to the item: computed once per item
            body.append("    " + " = ".join(f"_m_{f}_{var}" for f in sorted(memo)) + " = _U")
        refs = sorted(set(re.findall(r"\bd_\w+", "\n".join([*inner, *ifs, elt]))))
        if refs:  # memoised derived values live in the generated function, not in the item function
            body.append("    nonlocal " + ", ".join(refs))
        body += ["    " + line for line in inner]
        body += [f"    if not {c}: return _SKIP" for c in ifs]
        body.append(f"    return {elt}")
        self._defs[-1].extend(body)
        items = f"f_{lst}"
        if fn in ("any", "all"):
            return f"_k_{fn}({items}, {name})"
        each = f"_each({items}, {name})"
        if fn == "count":
            return f"sum(1 for _x in {each} if _x)" if kind is not None and kind.kind == "bool" else f"len({each})"
        return {"sum": "sum" if kind == INT else "_dsum", "min": "_kmin", "max": "_kmax"}[fn] + f"({each})"

    def _needs_helper(self, g: ast.GeneratorExp, alias: dict | None = None) -> bool:
        """Whether a generator is evaluated item by item in a helper function: over items that may
        lack a field, where an item function is kept per item, or where a generator inside it
        needs a helper and reads this generator's item (the helper is then defined inside this
        one's, where the item is in scope). ``alias``: the parameters of the item functions being
        applied where ``g`` stands, and the loop variables they stand for."""
        alias = self._alias if alias is None else alias
        key = (id(g), tuple(sorted(alias.items())))
        if key not in self._helper_memo:  # nested generators ask about their own: once each
            self._helper_memo[key] = self._find_helper(g, alias)
        return self._helper_memo[key]

    def _find_helper(self, g: ast.GeneratorExp, alias: dict) -> bool:
        if self.may_miss(g) or self._repeated(g, alias):
            return True
        comp = g.generators[0]
        var = comp.target.id if isinstance(comp.target, ast.Name) else None
        return any(isinstance(n, ast.GeneratorExp) and self._needs_helper(n, names) and reads_variable(n, var, names)
                   for part in (g.elt, *comp.ifs) for n, names in walk_applied(part, alias))

    def _repeated(self, g: ast.GeneratorExp, alias: dict | None = None) -> set[str]:
        """The item functions a generator applies more than once to its own item (directly or
        inside other item functions): worth computing once per item."""
        comp = g.generators[0]
        var = comp.target.id if isinstance(comp.target, ast.Name) else None
        counts: dict[str, int] = {}
        costly: set[str] = set()
        for n, arg in applications(g, self._alias if alias is None else alias):
            if arg == var:
                counts[n.func.id] = counts.get(n.func.id, 0) + 1  # type: ignore[attr-defined]
                # keeping a value per item costs a call per item (about 0.2 µs): it pays only for a
                # body that calls a function or looks up a table, not for arithmetic on fields
                if any(isinstance(m, (ast.Call, ast.Subscript)) for m in walk(n.inline)):  # type: ignore[attr-defined]
                    costly.add(n.func.id)  # type: ignore[attr-defined]
        return {f for f, k in counts.items() if k > 1 and f in costly}

    def _gen_parts(self, g: ast.GeneratorExp) -> tuple[str, str]:
        """A generator's element and its loop (`v_c in f_children if ...`), as source."""
        comp = g.generators[0]
        var = f"v_{comp.target.id}"  # type: ignore[attr-defined]
        ifs = "".join(f" if {self.node(c)}" for c in comp.ifs)
        return self.node(g.elt), f"{var} in {self.node(comp.iter)}{ifs}"

    def n_Call(self, n: ast.Call) -> str:
        inline = getattr(n, "inline", None)
        if inline is not None:  # an item function, applied: its body, inlined for this item
            arg = self._alias.get(n.args[0].id, n.args[0].id)  # type: ignore[attr-defined]
            outer, self._alias = self._alias, {**self._alias, n.param: arg}  # type: ignore[attr-defined]
            try:
                body = self.node(inline)
            finally:
                self._alias = outer
            key = (n.func.id, arg)  # type: ignore[attr-defined]
            if key in self._memo:
                m = f"_m_{key[0]}_{key[1]}"
                return f"({m} if {m} is not _U else ({m} := {body}))"
            return body
        fn = n.func.id  # type: ignore[attr-defined]
        args = n.args
        t = n.vtype  # type: ignore[attr-defined]
        if fn in ("marginal", "bracket"):
            return f"_{fn}({self.param_ref(args[0].id)}, {self.node(args[1])})"  # type: ignore[attr-defined]
        if fn in ("add_days", "add_months", "add_years"):
            return f"_{fn}({self.node(args[0])}, {self.node(args[1])})"
        if fn in ("min", "max"):
            if len(args) == 1 and isinstance(args[0], ast.GeneratorExp):
                return self.aggregate(fn, args[0])
            return f"{fn}(" + ", ".join(self.node(a) for a in args) + ")"
        if fn == "abs":
            return f"abs({self.node(args[0])})" if t == INT else f"_dabs({self.node(args[0])})"
        if fn in ("floor", "ceil"):
            return f"_{fn}({self.node(args[0])})"
        if fn == "round":
            places = args[1].value if len(args) > 1 else 0  # type: ignore[attr-defined]
            mode = args[2].value if len(args) > 2 else "half_up"  # type: ignore[attr-defined]
            return f"_round({self.node(args[0])}, {places}, {mode!r})"
        if fn == "sum":
            return self.aggregate(fn, args[0])
        if fn == "count":
            if isinstance(args[0], ast.GeneratorExp):
                # count() counts the items a generator yields; a bool item counts only when true
                return self.aggregate(fn, args[0])
            return f"len({self.node(args[0])})"
        if fn in ("any", "all"):
            return self.aggregate(fn, args[0])
        if fn in ("years_between", "months_between", "days_between"):
            return f"_{fn}({self.node(args[0])}, {self.node(args[1])})"
        if fn == "date":
            assert self._expr is not None
            if id(n) in self._expr.constants:
                return self.const(self._expr.constants[id(n)])
            return "_make_date(" + ", ".join(self.node(a) for a in args) + ")"
        if fn == "known":
            if isinstance(args[0], ast.Attribute):
                var = self._alias.get(args[0].value.id, args[0].value.id)  # type: ignore[attr-defined]
                return f"(v_{var}[{args[0].attr!r}] is not None)"
            return f"(f_{args[0].id} is not None)"  # type: ignore[attr-defined]
        raise AssertionError(fn)  # pragma: no cover - the checker admits no other function

    def value(self, expr: CheckedExpr) -> str:
        """Source for a rule's output value: decimals are always Decimal, even when exact ints."""
        code = self.emit(expr)
        return f"_to_dec({code})" if expr.type == DECIMAL else code


def _optional_item_field(n: ast.Attribute) -> bool:
    item = getattr(n.value, "vtype", None)
    return item is not None and n.attr in item.optional


def to_dec(x) -> Decimal:
    return x if x.__class__ is Decimal else Decimal(x)


_INT_LIMIT = 10 ** DIGITS


def int_checked(x: int) -> int:
    """A whole number a decision may hold: below 10^34, as every literal and parameter is. Beyond, an
    TooLarge, an OverflowError (an evaluation error: the case is referred), never a number too long to print."""
    if -_INT_LIMIT < x < _INT_LIMIT:
        return x
    raise TooLarge(f"a whole number of more than {DIGITS} digits")


def imul(a: int, b: int) -> int:
    return int_checked(a * b)


def _whole(x, fn) -> int:
    if x.__class__ is Decimal and x.is_finite() and x.adjusted() >= DIGITS:  # before making a huge int
        raise TooLarge(f"a whole number of more than {DIGITS} digits")
    return int_checked(fn(x))


def floor(x) -> int:
    """floor() of a number whose result a decision may hold (see int_checked)."""
    return _whole(x, math.floor)


def ceil(x) -> int:
    """ceil() of a number whose result a decision may hold (see int_checked)."""
    return _whole(x, math.ceil)
