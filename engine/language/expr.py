"""The expression language: parse with ``ast``, allow only a small whitelist, resolve names, type-check.

An expression that passes :func:`check_expr` is a :class:`CheckedExpr`: its syntax tree
carries a ``vtype`` on every node, and it records which case fields, parameters and
derived values it reads. Only checked expressions are ever compiled or interpreted.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from ..errors import Diagnostic
from .functions import DATE_PARTS, FUNCTIONS, FunctionChecks, describe
from .limits import DIGITS, MAX_DEPTH, MAX_SIZE, clip as _clip, measure, number_in_range
from .scope import BOOL, DATE, DECIMAL, INT, SCALARS, STRING, ItemFunction, Symbol, Type
from .source import Pos, Source
from .trees import key_choices


_COMPARE_OPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
                ast.In: "in", ast.NotIn: "not in"}
_ARITH_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


@dataclass
class CheckedExpr:
    """A parsed, resolved and type-checked expression."""

    text: str
    tree: ast.expr
    type: Type
    pos: Pos
    names: frozenset[str] = frozenset()  # top-level names read: fields, parameters, derived
    known: frozenset[str] = frozenset()  # optional fields tested with known()
    constants: dict = field(default_factory=dict)  # node id -> exact literal value
    depth: int = 0  # nesting depth, derived values counted where they are used (MAX_DEPTH)
    size: int = 0  # syntax-tree nodes, derived values counted where they are used (MAX_SIZE)


class _Checker(FunctionChecks):
    def __init__(self, source: Source, pos: Pos, text: str, scope: dict[str, Symbol],
                 diags: list[Diagnostic], what: str):
        self.source, self.pos, self.text, self.scope, self.diags = source, pos, text, scope, diags
        self.what = what
        self.names: set[str] = set()
        self.known: set[str] = set()
        self.constants: dict = {}
        self.loops: dict[str, Type] = {}
        self.lists: dict[str, str] = {}  # loop variable -> the list it runs over
        self.inlining = 0  # item functions being applied, one inside another
        self.ok = True
        self._lines = text.split("\n")

    # -- locations ---------------------------------------------------------------------
    def _node_pos(self, node: ast.AST) -> tuple[Pos, int]:
        lineno = getattr(node, "lineno", 1)
        line_text = self._lines[lineno - 1] if lineno - 1 < len(self._lines) else ""
        raw = line_text.encode("utf-8")
        col = len(raw[: getattr(node, "col_offset", 0)].decode("utf-8", "replace"))
        end = getattr(node, "end_col_offset", None)
        end_line = getattr(node, "end_lineno", lineno)
        if end is not None and end_line == lineno:
            length = len(raw[:end].decode("utf-8", "replace")) - col
        else:
            length = max(1, len(line_text) - col)
        if lineno == 1:
            return Pos(self.pos.line, self.pos.column + col, src=self.pos.src), length
        indent = self.pos.block_indent if self.pos.block_indent is not None else self.pos.column - 1
        return Pos(self.pos.line + lineno - 1, indent + col + 1, src=self.pos.src), length

    def error(self, node: ast.AST, code: str, message: str, hint: str | None = None,
              symbol: str | None = None, suggestion: str | None = None) -> None:
        pos, length = self._node_pos(node)
        self.diags.append(self.source.diag(pos, code, message, length=length, hint=hint,
                                           symbol=symbol, suggestion=suggestion))
        self.ok = False

    def _segment(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.text, node) or ""

    # -- checking ----------------------------------------------------------------------
    def visit(self, node: ast.AST) -> Type | None:
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            self.error(node, "unsupported_syntax", f"{describe(node)} is not part of the expression language",
                       hint="use literals, names, arithmetic (+ - * /), comparisons, and/or/not, "
                            "`x if c else y`, `in [...]` and the function library")
            return None
        t = method(node)
        node.vtype = t  # type: ignore[attr-defined]
        return t

    def visit_Constant(self, node: ast.Constant) -> Type | None:
        v = node.value
        if isinstance(v, bool):
            return BOOL
        if isinstance(v, int):
            return INT if self._in_range(node, Decimal(v) if v.bit_length() < 256 else None) else None
        if isinstance(v, float):
            try:
                value = Decimal(self._segment(node).replace("_", ""))
            except InvalidOperation:
                self.error(node, "bad_literal", f"{_clip(self._segment(node))} is not an exact decimal")
                return None
            if not self._in_range(node, value):
                return None
            self.constants[id(node)] = value
            return DECIMAL
        if isinstance(v, str):
            return STRING
        self.error(node, "unsupported_syntax", f"the literal {self._segment(node)} is not supported")
        return None

    def _in_range(self, node: ast.AST, value: Decimal | None) -> bool:
        """Whether a literal is a number the engine holds exactly, and whose floor() it can print."""
        if value is not None and number_in_range(value):
            return True
        self.error(node, "out_of_range", f"the number {_clip(self._segment(node))} is out of range",
                   hint=f"a number literal has at most {DIGITS} significant digits and is below 10^{DIGITS}")
        return False

    def visit_Name(self, node: ast.Name) -> Type | None:
        name = node.id
        if name in self.loops:
            return self.loops[name]
        sym = self.scope.get(name)
        if sym is None:
            candidates = list(self.scope) + list(self.loops)
            close = difflib.get_close_matches(name, candidates, n=1)
            self.error(node, "unknown_name", f'"{name}" is not a case field, parameter or derived value',
                       hint=f'did you mean "{close[0]}"?' if close else None, symbol=name,
                       suggestion=close[0] if close else None)
            return None
        if sym.kind == "broken":  # already reported where it is defined
            self.ok = False
            return None
        if sym.kind == "itemfn":
            self.error(node, "wrong_arguments", f'"{name}" is an item function: apply it to a list item, '
                       f"e.g. `{name}(c)` in a generator `for c in ...`")
            return None
        if sym.type.kind == "table":
            self.error(node, "type_mismatch", f'"{name}" is a table: read one value by its key, e.g. {name}["key"]')
            return None
        if sym.type.kind == "scale":
            self.error(node, "type_mismatch", f'"{name}" is a scale: use marginal({name}, x) or bracket({name}, x)')
            return None
        self.names.add(name)
        return sym.type

    def _container(self, node: ast.AST, kind: str, fn: str) -> Symbol | None:
        """The table or scale parameter ``node`` names (read as a whole, by a lookup or a scale function)."""
        sym = self.scope.get(node.id) if isinstance(node, ast.Name) else None  # type: ignore[attr-defined]
        if sym is None or sym.kind == "broken" or sym.type.kind != kind:
            if sym is not None and sym.kind == "broken":
                self.ok = False
                return None
            what = "a table parameter" if kind == "table" else "a scale parameter"
            if isinstance(node, ast.Name) and sym is None and node.id not in self.loops:
                self.visit(node)  # unknown_name, with a suggestion
                return None
            self.error(node, "type_mismatch", f"{fn} needs {what} here, not {_clip(self._segment(node))}")
            return None
        self.names.add(node.id)  # type: ignore[attr-defined]
        node.vtype = sym.type  # type: ignore[attr-defined]
        return sym

    def visit_Subscript(self, node: ast.Subscript) -> Type | None:
        target = node.value
        sym = self.scope.get(target.id) if isinstance(target, ast.Name) else None
        if sym is not None and sym.kind == "broken":  # reported where it is defined
            self.ok = False
            return None
        if sym is None or sym.type.kind != "table":
            hint = ("list items are read in a generator, e.g. `any(k.age > 1 for k in kids)`"
                    if sym is not None and sym.type.kind == "list" or isinstance(target, ast.Name) and target.id in self.loops
                    else None)
            self.error(node, "unsupported_syntax", "indexing is allowed only on a table parameter, "
                       'e.g. rate["under_6"]', hint=hint)
            return None
        if self._container(target, "table", "indexing") is None:
            return None
        key = self.visit(node.slice)
        if key is None:
            return None
        want = sym.type.field("key")
        if key != want:
            self.error(node.slice, "type_mismatch", f'table "{target.id}" has {want} keys, not {key}',
                       hint="write a text key in quotes" if want == STRING else None)
            return None
        choices = key_choices(node.slice) or ()
        table = sym.data
        if choices and table is not None:
            for day, tab in table.values:
                absent = [c for c in choices if tab is not None and c not in tab]
                if absent:
                    self.error(node.slice, "table_incomplete", f'table "{target.id}" on {day} has no value for '
                               + ", ".join(f'"{c}"' if isinstance(c, str) else str(c) for c in absent)
                               + (", which the key can be" if len(choices) > 1 else ""),
                               hint="give the table every key this lookup can use, in every dated value")
                    return None
        return sym.type.field("value")

    def visit_Attribute(self, node: ast.Attribute) -> Type | None:
        if not (isinstance(node.value, ast.Name) and node.value.id in self.loops):
            inner = self.visit(node.value) if isinstance(node.value, (ast.Name, ast.Attribute, ast.Call,
                                                                        ast.Subscript)) else None
            if inner == DATE:
                if node.attr in DATE_PARTS:
                    return INT
                self.error(node, "unknown_name", f'a date has no part "{node.attr}"',
                           hint="a date has .year, .month and .day")
                return None
            if inner is None and not self.ok:
                return None
            self.error(node, "unsupported_syntax", "attribute access is allowed only on a list item "
                       "in a generator, e.g. `c.birth_date for c in children`, and on a date (.year, .month, .day)")
            return None
        item = self.loops[node.value.id]
        node.value.vtype = item  # type: ignore[attr-defined]
        t = item.field(node.attr)
        if t is None:
            names = [n for n, _ in item.fields]
            close = difflib.get_close_matches(node.attr, names, n=1)
            self.error(node, "unknown_name", f'list items have no field "{node.attr}"',
                       hint=f'did you mean "{close[0]}"?' if close else f"item fields: {', '.join(names)}",
                       symbol=node.attr, suggestion=close[0] if close else None)
        return t

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Type | None:
        t = self.visit(node.operand)
        if t is None:
            return None
        if isinstance(node.op, ast.Not):
            if t != BOOL:
                self.error(node.operand, "type_mismatch", f"`not` needs a bool, not {t}")
                return None
            return BOOL
        if isinstance(node.op, (ast.USub, ast.UAdd)):
            if not t.numeric:
                self.error(node.operand, "type_mismatch", f"unary minus needs a number, not {t}")
                return None
            return t
        return self.visit_generic_unsupported(node)

    def visit_generic_unsupported(self, node: ast.AST) -> None:
        self.error(node, "unsupported_syntax", f"{describe(node)} is not part of the expression language")
        return None

    def visit_BinOp(self, node: ast.BinOp) -> Type | None:
        op = _ARITH_OPS.get(type(node.op))
        if op is None:
            return self.visit_generic_unsupported(node)
        left, right = self.visit(node.left), self.visit(node.right)
        if left is None or right is None:
            return None
        for side, t in ((node.left, left), (node.right, right)):
            if not t.numeric:
                self.error(side, "type_mismatch", f"`{op}` needs numbers, not {t}",
                           hint="use days_between() for dates" if t == DATE else None)
                return None
        if op == "/" or DECIMAL in (left, right):
            return DECIMAL
        return INT

    def visit_BoolOp(self, node: ast.BoolOp) -> Type | None:
        ok = True
        word = "and" if isinstance(node.op, ast.And) else "or"
        for value in node.values:
            t = self.visit(value)
            if t is not None and t != BOOL:
                self.error(value, "type_mismatch", f"`{word}` needs bool operands, not {t}",
                           hint="compare explicitly, e.g. `x > 0`")
                ok = False
            ok = ok and t is not None
        return BOOL if ok else None

    def visit_Compare(self, node: ast.Compare) -> Type | None:
        left = self.visit(node.left)
        ok = left is not None
        prev_node = node.left
        for op, comp in zip(node.ops, node.comparators):
            sym = _COMPARE_OPS.get(type(op))
            if sym is None:
                self.error(node, "unsupported_syntax", "`is` comparisons are not supported; use == or known()")
                return None
            if sym in ("in", "not in"):
                if not isinstance(comp, (ast.List, ast.Tuple, ast.Set)):
                    self.error(comp, "unsupported_syntax", f"`{sym}` needs a literal list, e.g. `x in [1, 2]`")
                    return None
                elems = [self.visit(e) for e in comp.elts]
                for e, t in zip(comp.elts, elems):
                    if not isinstance(e, ast.Constant) and not (isinstance(e, ast.UnaryOp) and isinstance(e.operand, ast.Constant)):
                        self.error(e, "unsupported_syntax", "list items after `in` must be literals")
                        ok = False
                    elif t is not None and left is not None and not _comparable(left, t):
                        self.error(e, "type_mismatch", f"cannot test a {left} against a {t} list item")
                        ok = False
                comp.vtype = left  # type: ignore[attr-defined]
                ok = ok and None not in elems
                prev_node = comp
                continue
            right = self.visit(comp)
            if left is not None and right is not None:
                if not _comparable(left, right):
                    self.error(comp, "type_mismatch", f"cannot compare {left} with {right}",
                               hint=_compare_hint(left, right, comp))
                    ok = False
                elif sym not in ("==", "!=") and left.kind in ("bool", "list", "record"):
                    self.error(prev_node, "type_mismatch", f"`{sym}` does not order {left} values")
                    ok = False
            ok = ok and right is not None
            left, prev_node = right, comp
        return BOOL if ok else None

    def visit_IfExp(self, node: ast.IfExp) -> Type | None:
        cond = self.visit(node.test)
        if cond is not None and cond != BOOL:
            self.error(node.test, "type_mismatch", f"the condition of `if` must be bool, not {cond}")
            return None
        a, b = self.visit(node.body), self.visit(node.orelse)
        if a is None or b is None or cond is None:
            return None
        if a == b:
            return a
        if a.numeric and b.numeric:
            return DECIMAL
        self.error(node.orelse, "type_mismatch", f"both branches must have one type: {a} and {b}")
        return None

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> Type | None:
        self.error(node, "unsupported_syntax", "a generator is allowed only as the argument of "
                   "count, sum, any, all, min or max")
        return None

    def _generator(self, node: ast.GeneratorExp) -> Type | None:
        if len(node.generators) != 1:
            self.error(node, "unsupported_syntax", "use one `for` per generator")
            return None
        gen = node.generators[0]
        if gen.is_async or not isinstance(gen.target, ast.Name):
            self.error(gen.target, "unsupported_syntax", "the loop variable must be a plain name")
            return None
        if not isinstance(gen.iter, ast.Name):
            self.error(gen.iter, "unsupported_syntax", "a generator loops over a list field of the case")
            return None
        lt = self.visit(gen.iter)
        if lt is None:
            return None
        if lt.kind != "list":
            self.error(gen.iter, "type_mismatch", f'"{gen.iter.id}" is a {lt}, not a list')
            return None
        var = gen.target.id
        if var.startswith("__") and not getattr(gen.target, "fresh", False):
            self.error(gen.target, "bad_name", f'the loop variable "{var}" starts with "__", which is reserved',
                       hint="pick a name that starts with a letter")
            return None
        if var in self.scope or var in self.loops:
            self.error(gen.target, "shadowed_name", f'the loop variable "{var}" hides another name',
                       hint="pick a name that is not a field, parameter or derived value")
            return None
        item = Type("record", lt.fields, lt.optional, defaults=lt.defaults)
        self.loops[var] = item
        self.lists[var] = gen.iter.id
        gen.target.vtype = item  # type: ignore[attr-defined]
        try:
            ok = True
            for cond in gen.ifs:
                t = self.visit(cond)
                if t is not None and t != BOOL:
                    self.error(cond, "type_mismatch", f"a generator's `if` must be bool, not {t}")
                    ok = False
                ok = ok and t is not None
            elt = self.visit(node.elt)
        finally:
            del self.loops[var]
        node.vtype = elt  # type: ignore[attr-defined]
        return elt if ok else None

def _comparable(a: Type, b: Type) -> bool:
    return (a.numeric and b.numeric) or a == b


def _compare_hint(a: Type, b: Type, node: ast.AST) -> str | None:
    if a == DATE and b == STRING:
        return 'write a date as date("YYYY-MM-DD")'
    if a.numeric and b == STRING:
        return "numbers are written without quotes"
    return None


def parse_expr(source: Source, pos: Pos, text: str, diags: list[Diagnostic],
               what: str = "expression") -> tuple[ast.Expression, str, Pos] | None:
    """Parse ``text`` (syntax only): (tree, stripped text, position of its first character), or
    None after appending a located diagnostic."""
    stripped = text.strip()
    if not stripped:
        diags.append(source.diag(pos, "syntax_error", f"the {what} is empty"))
        return None
    lead = len(text) - len(text.lstrip())
    if lead and "\n" not in text[:lead]:
        pos = Pos(pos.line, pos.column + lead, pos.block_indent, pos.src)
    try:
        tree = ast.parse(stripped, mode="eval")
    except (ValueError, MemoryError, RecursionError) as exc:  # a NUL character; a parser stack overflow
        if isinstance(exc, ValueError) and not isinstance(exc, SyntaxError):
            diags.append(source.diag(pos, "syntax_error", f"the {what} contains a NUL character"))
        else:
            diags.append(source.diag(pos, "too_deep", f"the {what} is nested too deeply to be read",
                                     hint=f"expressions may nest at most {MAX_DEPTH} levels; "
                                          "split it into derived values"))
        return None
    except SyntaxError as exc:
        lines = stripped.split("\n")
        lineno = exc.lineno or 1
        col = (exc.offset or 1)
        if lineno == 1:
            epos = Pos(pos.line, pos.column + col - 1)
        else:
            indent = pos.block_indent if pos.block_indent is not None else pos.column - 1
            epos = Pos(pos.line + lineno - 1, indent + col)
        msg = (exc.msg or "invalid syntax").lower()
        if lineno - 1 < len(lines) and "=" in lines[lineno - 1] and "==" not in lines[lineno - 1] and "invalid syntax" in msg:
            hint = "use == to compare"
        else:
            hint = None
        if "too many nested parentheses" in msg:
            diags.append(source.diag(epos, "too_deep", f"the {what} nests more than {MAX_DEPTH} levels deep",
                                     hint="split it into derived values"))
        elif "exceeds the limit" in msg and "digits" in msg:  # an int literal of 4 300+ digits
            diags.append(source.diag(epos, "out_of_range", "a number literal has too many digits",
                                     hint=f"a number literal has at most {DIGITS} significant digits "
                                          f"and is below 10^{DIGITS}"))
        else:
            diags.append(source.diag(epos, "syntax_error", msg, hint=hint))
        return None
    return tree, stripped, pos


def check_expr(source: Source, pos: Pos, text: str, scope: dict[str, Symbol], diags: list[Diagnostic],
               *, expect: Type | None = None, what: str = "expression",
               derived: dict[str, tuple[int, int]] | None = None) -> CheckedExpr | None:
    """Parse and check ``text``; on failure append diagnostics and return None.

    ``derived`` gives each derived value's (depth, size), which count where the expression uses it.
    """
    if pos is not None and pos.src is not None:  # in an overlay: the file this expression was written in
        source = pos.src
    parsed = parse_expr(source, pos, text, diags, what)
    if parsed is None:
        return None
    tree, stripped, pos = parsed
    checker = _Checker(source, pos, stripped, scope, diags, what)
    depth, size, deepest = measure(tree.body, derived)
    if deepest is not None or size > MAX_SIZE:
        inlined = " with the derived values it uses" if derived and any(
            isinstance(n, ast.Name) and n.id in derived for n in ast.walk(tree.body)) else ""
        if deepest is not None:
            checker.error(deepest, "too_deep", f"the {what} nests {depth} levels deep{inlined}; "
                          f"the limit is {MAX_DEPTH}", hint="a derived value counts where it is used: make the "
                          "chain of derived values shorter" if inlined else "split it into derived values, or "
                          "write a long sum as a sum of parts")
        else:
            checker.error(tree.body, "too_large", f"the {what} has {size} parts{inlined}; the limit is "
                          f"{MAX_SIZE}", hint="derived values are copied where they are used: "
                          "use fewer of them in one expression")
        return None
    t = checker.visit(tree.body)
    if t is None or not checker.ok:
        return None
    if expect is not None and t != expect and not (expect == DECIMAL and t.numeric):
        checker.error(tree.body, "type_mismatch", f"the {what} must be {expect}, not {t}",
                      hint="compare it, e.g. `x > 0`" if expect == BOOL else None)
        return None
    if t.kind in ("list", "record"):
        checker.error(tree.body, "type_mismatch", f"the {what} must be a single value, not a {t}")
        return None
    return CheckedExpr(stripped, tree.body, t, pos, frozenset(checker.names), frozenset(checker.known),
                       checker.constants, depth, size)


def literal_value(expr: CheckedExpr, node: ast.AST):
    """The exact value of a literal node (decimal literals are kept exact, never float)."""
    if id(node) in expr.constants:
        return expr.constants[id(node)]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        v = literal_value(expr, node.operand)
        return -v
    return node.value  # type: ignore[attr-defined]


__all__ = ["BOOL", "DATE", "DECIMAL", "DATE_PARTS", "FUNCTIONS", "INT", "SCALARS", "STRING", "CheckedExpr",
           "ItemFunction", "Symbol", "Type", "check_expr", "literal_value", "parse_expr"]
