"""Code generation: a checked expression becomes Python source over local names.

Case fields are locals ``f_<name>``, derived values locals ``d_<name>`` computed at first
use and memoised, parameters globals ``P_<name>`` fixed per period, exact literals
globals ``K<n>``. Decimal arithmetic goes through the fixed context of ``runtime``.
"""

from __future__ import annotations

import ast
from decimal import Decimal

from .expr import DECIMAL, INT, CheckedExpr, Symbol, literal_value


class Emitter:
    """Turns checked expressions of one ruleset version into Python expression source."""

    def __init__(self, scope: dict[str, Symbol], derived: dict[str, CheckedExpr]):
        self.scope = scope
        self.derived = derived
        self.constants: dict[str, object] = {}
        self._const_ids: dict[tuple, str] = {}
        self._expr: CheckedExpr | None = None

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
            return f"v_{n.id}"
        if sym.kind == "field":
            return f"f_{n.id}"
        if sym.kind == "parameter":
            return f"P_{n.id}"
        return self.derived_ref(n.id)

    def n_Attribute(self, n: ast.Attribute) -> str:
        return f"v_{n.value.id}[{n.attr!r}]"  # type: ignore[attr-defined]

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
            return f"({a} {op[0]} {b})"
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

    def generator(self, g: ast.GeneratorExp, elt: str | None = None) -> str:
        comp = g.generators[0]
        var = f"v_{comp.target.id}"  # type: ignore[attr-defined]
        ifs = "".join(f" if {self.node(c)}" for c in comp.ifs)
        body = self.node(g.elt) if elt is None else elt
        return f"({body} for {var} in {self.node(comp.iter)}{ifs})"

    def n_Call(self, n: ast.Call) -> str:
        fn = n.func.id  # type: ignore[attr-defined]
        args = n.args
        t = n.vtype  # type: ignore[attr-defined]
        if fn in ("min", "max"):
            if len(args) == 1 and isinstance(args[0], ast.GeneratorExp):
                return f"{fn}{self.generator(args[0])}"
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
            return ("sum" if t == INT else "_dsum") + self.generator(args[0])
        if fn == "count":
            if isinstance(args[0], ast.GeneratorExp):
                g = args[0]
                # count() counts the items a generator yields; a bool item counts only when true
                if getattr(g.elt, "vtype", None) is not None and g.elt.vtype.kind == "bool":  # type: ignore
                    return f"sum(1 for _x in {self.generator(g)} if _x)"
                return f"sum(1 for _x in {self.generator(g)})"
            return f"len({self.node(args[0])})"
        if fn in ("any", "all"):
            return f"{fn}{self.generator(args[0])}"
        if fn in ("years_between", "months_between", "days_between"):
            return f"_{fn}({self.node(args[0])}, {self.node(args[1])})"
        if fn == "date":
            assert self._expr is not None
            if id(n) in self._expr.constants:
                return self.const(self._expr.constants[id(n)])
            return "_make_date(" + ", ".join(self.node(a) for a in args) + ")"
        if fn == "known":
            return f"(f_{args[0].id} is not None)"  # type: ignore[attr-defined]
        raise AssertionError(fn)  # pragma: no cover - the checker admits no other function

    def value(self, expr: CheckedExpr) -> str:
        """Source for a rule's output value: decimals are always Decimal, even when exact ints."""
        code = self.emit(expr)
        return f"_to_dec({code})" if expr.type == DECIMAL else code


def to_dec(x) -> Decimal:
    return x if x.__class__ is Decimal else Decimal(x)
