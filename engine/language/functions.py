"""The function library's checks (min, max, round, sum, count, any, all, date functions, scales,
known) and the application of item functions: the call-checking half of the expression checker."""

from __future__ import annotations

import ast
import dataclasses
import difflib
from datetime import date

from ..errors import Diagnostic
from ..evaluation.runtime import ROUNDING_MODES
from .scope import BOOL, DATE, DECIMAL, INT, STRING, ItemFunction, Type
from .trees import fresh_body

FUNCTIONS = ("min", "max", "abs", "round", "floor", "ceil", "sum", "count", "any", "all",
             "years_between", "months_between", "days_between", "date", "known",
             "marginal", "bracket", "add_days", "add_months", "add_years")
DATE_PARTS = ("year", "month", "day")


class FunctionChecks:
    """Mixed into the expression checker: ``visit_Call`` and one ``_fn_<name>`` per function."""

    def visit_Call(self, node: ast.Call) -> Type | None:
        if not isinstance(node.func, ast.Name):
            self.error(node.func, "unsupported_syntax", f"{describe(node.func)} cannot be called: "
                       "only the function library can")
            return None
        sym = self.scope.get(node.func.id)
        if sym is not None and sym.kind == "itemfn":
            return self._apply(node, sym.data)  # type: ignore[arg-type]
        if sym is not None and sym.kind == "broken":
            self.ok = False
            return None
        if node.func.id not in FUNCTIONS:
            name = node.func.id
            close = difflib.get_close_matches(name, FUNCTIONS, n=1)
            self.error(node.func, "unknown_function", f'"{name}" is not in the function library',
                       hint=f'did you mean "{close[0]}"?' if close else "functions: " + ", ".join(FUNCTIONS),
                       symbol=name, suggestion=close[0] if close else None)
            return None
        if node.keywords:
            self.error(node.keywords[0].value, "wrong_arguments", "keyword arguments are not supported")
            return None
        fn = node.func.id
        return getattr(self, "_fn_" + fn)(node, node.args)

    def _arity(self, node, args, low, high=None) -> bool:
        high = low if high is None else high
        if not (low <= len(args) <= high):
            want = str(low) if low == high else f"{low} to {high}"
            self.error(node, "wrong_arguments", f"{node.func.id}() takes {want} arguments, got {len(args)}")
            return False
        return True

    def _numeric_arg(self, node, arg) -> Type | None:
        t = self.visit(arg)
        if t is not None and not t.numeric:
            self.error(arg, "type_mismatch", f"{node.func.id}() needs a number, not {t}")
            return None
        return t

    def _fn_min(self, node, args):
        if len(args) == 1 and isinstance(args[0], ast.GeneratorExp):
            t = self._generator(args[0])
            types = [t]
        elif len(args) >= 2:
            types = [self.visit(a) for a in args]
        else:
            self.error(node, "wrong_arguments", f"{node.func.id}() takes two or more values or one generator")
            return None
        if None in types:
            return None
        if all(t.numeric for t in types):
            return DECIMAL if DECIMAL in types else INT
        if all(t == DATE for t in types):
            return DATE
        self.error(node, "type_mismatch", f"{node.func.id}() needs numbers or dates of one kind, not "
                   + ", ".join(sorted({str(t) for t in types})))
        return None

    _fn_max = _fn_min

    def _fn_abs(self, node, args):
        return self._numeric_arg(node, args[0]) if self._arity(node, args, 1) else None

    def _fn_floor(self, node, args):
        return INT if self._arity(node, args, 1) and self._numeric_arg(node, args[0]) else None

    _fn_ceil = _fn_floor

    def _fn_round(self, node, args):
        if not self._arity(node, args, 1, 3) or not self._numeric_arg(node, args[0]):
            return None
        if len(args) >= 2:
            places = args[1]
            if not (isinstance(places, ast.Constant) and type(places.value) is int and 0 <= places.value <= 12):
                self.error(places, "wrong_arguments", "round()'s places must be a whole-number literal from 0 to 12")
                return None
            places.vtype = INT  # type: ignore[attr-defined]
        if len(args) == 3:
            mode = args[2]
            if not (isinstance(mode, ast.Constant) and mode.value in ROUNDING_MODES):
                self.error(mode, "wrong_arguments", "round()'s mode must be one of "
                           + ", ".join(f'"{m}"' for m in ROUNDING_MODES))
                return None
            mode.vtype = STRING  # type: ignore[attr-defined]
        return DECIMAL

    def _fn_sum(self, node, args):
        if not self._arity(node, args, 1):
            return None
        if not isinstance(args[0], ast.GeneratorExp):
            self.error(args[0], "wrong_arguments", "sum() takes a generator, e.g. `sum(c.amount for c in items)`")
            return None
        t = self._generator(args[0])
        if t is not None and not t.numeric:
            self.error(args[0].elt, "type_mismatch", f"sum() adds numbers, not {t}")
            return None
        return t

    def _fn_count(self, node, args):
        if not self._arity(node, args, 1):
            return None
        if isinstance(args[0], ast.GeneratorExp):
            return INT if self._generator(args[0]) is not None else None
        t = self.visit(args[0])
        if t is not None and t.kind != "list":
            self.error(args[0], "type_mismatch", f"count() counts a list or a generator, not {t}")
            return None
        return INT if t is not None else None

    def _fn_any(self, node, args):
        if not self._arity(node, args, 1):
            return None
        if not isinstance(args[0], ast.GeneratorExp):
            self.error(args[0], "wrong_arguments", f"{node.func.id}() takes a generator of conditions")
            return None
        t = self._generator(args[0])
        if t is not None and t != BOOL:
            self.error(args[0].elt, "type_mismatch", f"{node.func.id}() needs bool items, not {t}")
            return None
        return BOOL if t is not None else None

    _fn_all = _fn_any

    def _fn_years_between(self, node, args):
        if not self._arity(node, args, 2):
            return None
        types = [self.visit(a) for a in args]
        for a, t in zip(args, types):
            if t is not None and t != DATE:
                self.error(a, "type_mismatch", f"{node.func.id}() needs dates, not {t}")
                return None
        return INT if None not in types else None

    _fn_months_between = _fn_years_between
    _fn_days_between = _fn_years_between

    def _fn_date(self, node, args):
        if len(args) == 1 and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
            try:
                self.constants[id(node)] = date.fromisoformat(args[0].value)
            except ValueError:
                self.error(args[0], "bad_literal", f'"{args[0].value}" is not a date', hint="write YYYY-MM-DD")
                return None
            return DATE
        if len(args) == 3:
            types = [self.visit(a) for a in args]
            for a, t in zip(args, types):
                if t is not None and t != INT:
                    self.error(a, "type_mismatch", f"date() needs whole numbers, not {t}")
                    return None
            if None not in types and all(isinstance(a, ast.Constant) for a in args):  # date(2025, 2, 30)
                try:
                    date(*(a.value for a in args))  # type: ignore[attr-defined]
                except (ValueError, OverflowError) as exc:
                    self.error(node, "bad_literal", f"date({', '.join(self._segment(a) for a in args)}) is "
                               f"not a date: {exc}")
                    return None
            return DATE if None not in types else None
        self.error(node, "wrong_arguments", 'date() takes "YYYY-MM-DD" or year, month, day')
        return None

    def _apply(self, node: ast.Call, fn: ItemFunction) -> Type | None:
        """``fn(c)``: the item function's body, checked against the items of the list ``c`` runs
        over, and kept on the call (``node.inline``) for the evaluators."""
        args = node.args
        if len(args) != 1 or node.keywords or not (isinstance(args[0], ast.Name) and args[0].id in self.loops):
            self.error(node, "wrong_arguments", f'{fn.name}() takes one list item: the variable of a generator, '
                       f"e.g. `{fn.name}(c) for c in ...`")
            return None
        var = args[0].id
        item = self.loops[var]
        args[0].vtype = item  # type: ignore[attr-defined]
        if self.inlining > 64:
            self.error(node, "too_deep", "item functions apply one another more than 64 levels deep")
            return None
        if item not in fn.checked:  # first applied to items of this type: check the body once, keep it
            body = fresh_body(fn)
            diags: list[Diagnostic] = []
            sub = type(self)(fn.source, fn.pos, fn.text, self.scope, diags, f'item function "{fn.name}"')
            sub.loops, sub.lists, sub.inlining = {fn.param: item}, {fn.param: self.lists.get(var, "")}, self.inlining + 1
            t = sub.visit(body)
            if t is not None and sub.ok and t.kind in ("list", "record", "table", "scale"):
                sub.error(body, "type_mismatch", f"an item function gives a single value, not a {t}")
            if t is None or not sub.ok:
                if diags and self.lists.get(var) and diags[0].code != "table_incomplete" \
                        and "(applied to items of" not in diags[0].message:
                    diags[0] = dataclasses.replace(diags[0], message=diags[0].message
                                                   + f' (applied to items of "{self.lists[var]}")')
                self.diags.extend(diags)  # reported once for each kind of item it fails on
                if not diags:  # every failure says why; never a silent one
                    self.error(node, "internal_error", f'item function "{fn.name}" failed a check that gave '
                               "no reason: a fault in vedtak, please report it with this ruleset")
                fn.checked[item] = None
            else:
                fn.checked[item] = (t, body, frozenset(sub.names), frozenset(sub.known), dict(sub.constants))
        if fn.checked[item] is None:
            self.ok = False
            return None
        found, template, names, known, constants = fn.checked[item]
        fn.uses += 1
        self.names |= names
        self.known |= known
        self.constants.update(constants)
        # the checked body is shared by every application to items of this type: the evaluators
        # bind the item function's parameter to the argument (``node.param``) while evaluating it
        node.inline = template  # type: ignore[attr-defined]
        node.param = fn.param  # type: ignore[attr-defined]
        node.func.vtype = found  # type: ignore[attr-defined]
        return found

    def _scale_fn(self, node, args, rates: bool):
        if not self._arity(node, args, 2):
            return None
        sym = self._container(args[0], "scale", f"{node.func.id}()")
        x = self._numeric_arg(node, args[1])
        if sym is None or x is None:
            return None
        if rates and sym.type.fields[0][0] != "rate":
            self.error(args[0], "type_mismatch", f'marginal() needs a scale of rates; "{args[0].id}" has amounts',
                       hint=f"bracket({args[0].id}, x) gives the amount of the bracket x falls in")
            return None
        return DECIMAL

    def _fn_marginal(self, node, args):
        return self._scale_fn(node, args, True)

    def _fn_bracket(self, node, args):
        return self._scale_fn(node, args, False)

    def _fn_add_days(self, node, args):
        if not self._arity(node, args, 2):
            return None
        day, n = self.visit(args[0]), self.visit(args[1])
        if day is not None and day != DATE:
            self.error(args[0], "type_mismatch", f"{node.func.id}() needs a date first, not {day}")
            return None
        if n is not None and n != INT:
            self.error(args[1], "type_mismatch", f"{node.func.id}() adds a whole number, not {n}",
                       hint="round it first, e.g. floor(x)" if n == DECIMAL else None)
            return None
        return DATE if day is not None and n is not None else None

    _fn_add_months = _fn_add_days
    _fn_add_years = _fn_add_days

    def _fn_known(self, node, args):
        if not self._arity(node, args, 1):
            return None
        arg = args[0]
        if isinstance(arg, ast.Attribute) and isinstance(arg.value, ast.Name) and arg.value.id in self.loops:
            t = self.visit(arg)
            if t is None:
                return None
            if arg.attr not in self.loops[arg.value.id].optional:
                dflt = arg.attr in dict(self.loops[arg.value.id].defaults)
                self.error(arg, "not_optional", f'list items\' field "{arg.attr}" ' + (
                           "has a default" if dflt else "is not optional") + ", so it is always known")
                return None
            return BOOL
        if not isinstance(arg, ast.Name):
            self.error(arg, "wrong_arguments", "known() takes the name of an optional case field "
                       "or of an optional field of a list item, e.g. known(p.salary)")
            return None
        t = self.visit(arg)
        if t is None:
            return None
        sym = self.scope.get(arg.id)
        if sym is not None and sym.kind == "field" and sym.data is not None:
            self.error(arg, "not_optional", f'"{arg.id}" has a default, so it is always known',
                       hint="remove the default to test whether the case gives it")
            return None
        if sym is None or sym.kind != "field" or not sym.optional:
            self.error(arg, "not_optional", f'"{arg.id}" is not an optional case field, so it is always known')
            return None
        self.known.add(arg.id)
        return BOOL


def describe(node: ast.AST) -> str:
    names = {"Lambda": "a lambda", "Attribute": "an attribute", "Subscript": "indexing", "ListComp": "a list comprehension",
             "DictComp": "a dict comprehension", "SetComp": "a set comprehension", "Dict": "a dict literal",
             "List": "a list literal outside `in`", "Tuple": "a tuple", "Set": "a set literal",
             "JoinedStr": "an f-string", "NamedExpr": "an assignment", "Await": "await", "Yield": "yield",
             "Starred": "unpacking", "Slice": "a slice", "BinOp": "this operator", "UnaryOp": "this operator"}
    return names.get(type(node).__name__, f"`{type(node).__name__}`")
