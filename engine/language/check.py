"""Lint: findings about a ruleset that loads but is probably wrong (unreachable rules, unused names).

The unreachable-rule analysis covers conditions built with and/or/not from comparisons
of one field (or derived value) with constants, and bool fields: a rule is reported when
some earlier rule's condition holds for every case the rule's own condition holds for.
"""

from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass

from ..errors import Diagnostic
from .expr import CheckedExpr, literal_value
from .trees import walk
from .load import CheckedRule, CheckedVersion, Ruleset, pos_of

_MAX_TERMS = 64
_FLIP = {ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt, ast.GtE: ast.LtE, ast.Eq: ast.Eq, ast.NotEq: ast.NotEq}
_NEGATE = {ast.Lt: ast.GtE, ast.LtE: ast.Gt, ast.Gt: ast.LtE, ast.GtE: ast.Lt, ast.Eq: ast.NotEq,
           ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In}

INF = object()


@dataclass(frozen=True)
class Domain:
    """The values one variable may take: an interval, optionally a finite set, minus excluded values."""

    lo: object = None
    lo_open: bool = False
    hi: object = None
    hi_open: bool = False
    only: frozenset | None = None
    excluded: frozenset = frozenset()

    def holds(self, v) -> bool:
        if self.only is not None and v not in self.only:
            return False
        if v in self.excluded:
            return False
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            return False
        if self.hi is not None and (v > self.hi or (self.hi_open and v == self.hi)):
            return False
        return True

    def empty(self) -> bool:
        if self.only is not None:
            return not any(self.holds(v) for v in self.only)
        if self.lo is not None and self.hi is not None:
            if self.lo > self.hi or (self.lo == self.hi and (self.lo_open or self.hi_open or self.lo in self.excluded)):
                return True
        return False

    def within(self, other: "Domain") -> bool:
        """Whether every value in this domain is also in ``other``."""
        if self.empty():
            return True
        if self.only is not None:
            return all(other.holds(v) for v in self.only if self.holds(v))
        if other.only is not None:
            return False
        if other.lo is not None:
            if self.lo is None or self.lo < other.lo or (self.lo == other.lo and other.lo_open and not self.lo_open):
                return False
        if other.hi is not None:
            if self.hi is None or self.hi > other.hi or (self.hi == other.hi and other.hi_open and not self.hi_open):
                return False
        return all(not self.holds(x) for x in other.excluded)

    def meet(self, other: "Domain") -> "Domain":
        lo, lo_open = self.lo, self.lo_open
        if other.lo is not None and (lo is None or other.lo > lo or (other.lo == lo and other.lo_open)):
            lo, lo_open = other.lo, other.lo_open
        hi, hi_open = self.hi, self.hi_open
        if other.hi is not None and (hi is None or other.hi < hi or (other.hi == hi and other.hi_open)):
            hi, hi_open = other.hi, other.hi_open
        only = self.only if other.only is None else (other.only if self.only is None else self.only & other.only)
        return Domain(lo, lo_open, hi, hi_open, only, self.excluded | other.excluded)


def _atom(name: str, op: type, value, integer: bool) -> Domain:
    if integer and op in (ast.Lt, ast.Gt) and isinstance(value, int):
        op, value = (ast.LtE, value - 1) if op is ast.Lt else (ast.GtE, value + 1)
    return {
        ast.Lt: lambda: Domain(hi=value, hi_open=True), ast.LtE: lambda: Domain(hi=value),
        ast.Gt: lambda: Domain(lo=value, lo_open=True), ast.GtE: lambda: Domain(lo=value),
        ast.Eq: lambda: Domain(only=frozenset([value])), ast.NotEq: lambda: Domain(excluded=frozenset([value])),
        ast.In: lambda: Domain(only=frozenset(value)), ast.NotIn: lambda: Domain(excluded=frozenset(value)),
    }[op]()


class _Analyser:
    """Turns a condition into disjunctive normal form over per-variable domains, where it can."""

    def __init__(self, version: CheckedVersion, expr: CheckedExpr, *, strict: bool = False):
        # strict, for an earlier rule: a conjunct that cannot be analysed may exclude cases, so
        # it makes the whole conjunction unusable; otherwise (a rule's own condition) dropping
        # it only widens the condition, which is safe
        self.version, self.expr, self.strict = version, expr, strict

    def constant(self, node):
        if isinstance(node, ast.Constant) or (isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant)) \
                or (isinstance(node, ast.Call) and id(node) in self.expr.constants):
            return literal_value(self.expr, node)
        if isinstance(node, ast.Name):
            sym = self.version.scope.get(node.id)
            table = self.version.parameters.get(node.id)
            if sym is not None and sym.kind == "parameter" and table is not None and len(table.values) == 1:
                return table.values[0][1]
        return INF

    def variable(self, node) -> str | None:
        if isinstance(node, ast.Name):
            sym = self.version.scope.get(node.id)
            if sym is not None and sym.kind in ("field", "derived"):
                return node.id
        return None

    def dnf(self, node, negate: bool = False):
        """A list of conjunctions (dict var -> Domain); None for a part that cannot be analysed."""
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return self.dnf(node.operand, not negate)
        if isinstance(node, ast.BoolOp):
            is_and = isinstance(node.op, ast.And) != negate
            parts = [self.dnf(v, negate) for v in node.values]
            if is_and:
                out = [{}]
                for p in parts:
                    if p is None:
                        if self.strict:
                            return None
                        continue  # an unknown conjunct only narrows: dropping it is safe here
                    out = [_merge(a, b) for a, b in itertools.product(out, p)]
                    if len(out) > _MAX_TERMS:
                        return None
                return out
            if any(p is None for p in parts):
                return None
            return [t for p in parts for t in p]
        var = self.variable(node)
        if var is not None and getattr(node, "vtype", None) is not None and node.vtype.kind == "bool":
            return [{var: Domain(only=frozenset([not negate]))}]
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            op, left, right = type(node.ops[0]), node.left, node.comparators[0]
            if op in (ast.In, ast.NotIn):
                var = self.variable(left)
                values = [self.constant(e) for e in right.elts] if var else [INF]
                if var is None or INF in values:
                    return None
                return [{var: _atom(var, _NEGATE[op] if negate else op, values, False)}]
            var, value = self.variable(left), self.constant(right)
            if var is None or value is INF:
                var, value, op = self.variable(right), self.constant(left), _FLIP.get(op)
            if var is None or value is INF or op is None:
                return None
            if negate:
                op = _NEGATE[op]
            integer = self.version.scope[var].type.kind == "int"
            return [{var: _atom(var, op, value, integer)}]
        return None


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, d in b.items():
        out[k] = out[k].meet(d) if k in out else d
    return out


def _implies(term: dict, earlier: dict) -> bool:
    return all(k in term and term[k].within(d) for k, d in earlier.items()) or any(
        d.empty() for d in term.values())


def lint_version(version: CheckedVersion) -> list[Diagnostic]:
    """Warnings for one version: unreachable rules, unused parameters and derived values, gaps."""
    src, raw, model = version.source, version.raw, version.model
    out: list[Diagnostic] = []
    forms: list[tuple[CheckedRule, list | None]] = []
    for rule in version.rules:
        if rule.when is None:
            continue
        analyser = _Analyser(version, rule.when)
        own = analyser.dnf(rule.when.tree)
        if own is not None:
            rpos = pos_of(raw, "rules", rule.index, "when")
            if all(any(d.empty() for d in t.values()) for t in own) and own:
                out.append(src.diag(rpos, "unreachable_rule", f'rule "{rule.id}" can never fire: its condition '
                                    "can never hold", severity="warning", length=len(rule.when.text)))
            else:
                for earlier, eform in forms:
                    if eform is not None and all(any(_implies(t, e) for e in eform) for t in own):
                        out.append(src.diag(rpos, "unreachable_rule",
                                            f'rule "{rule.id}" can never fire: rule "{earlier.id}" before it '
                                            "matches every case it matches", severity="warning",
                                            length=len(rule.when.text),
                                            hint="reorder the rules, or narrow the earlier condition"))
                        break
        forms.append((rule, _Analyser(version, rule.when, strict=True).dnf(rule.when.tree)))
    used: set[str] = set()
    for expr in version.derived.values():
        used |= expr.names
    for rule in version.rules:
        if rule.when is not None:
            used |= rule.when.names
        for e in rule.values.values():
            used |= e.names
        used |= set(rule.because.names)
    for name in model.parameters:
        if name not in used:
            out.append(src.diag(pos_of(raw, "parameters", name, key=True), "unused_parameter",
                                f'parameter "{name}" is not used by any rule or derived value',
                                severity="warning", length=len(name)))
    for key in model.derive:
        fn = version.item_functions.get(key.split("(")[0].strip()) if "(" in key else None
        if fn is not None:
            if fn.uses == 0:
                out.append(src.diag(pos_of(raw, "derive", key, key=True), "unused_item_function",
                                    f'item function "{fn.name}" is not applied to a list item anywhere',
                                    severity="warning", length=len(key),
                                    hint=f"use it in a generator, e.g. `count(c for c in ... if {fn.name}(c))`, "
                                         "or remove it"))
        elif key not in used and "(" not in key:
            out.append(src.diag(pos_of(raw, "derive", key, key=True), "unused_derived",
                                f'derived value "{key}" is not used by any rule', severity="warning",
                                length=len(key)))
    out += _unused_table_keys(version)
    start = model.valid.from_
    for name, table in version.parameters.items():
        if table.at(start) is None:
            before = [day for day, _ in table.values if day <= start]
            why = (f"its value ended on {before[-1]}" if before else f"its first value is from {table.values[0][0]}")
            out.append(src.diag(pos_of(raw, "parameters", name, table.kind), "missing_parameter",
                                f'parameter "{name}" has no value on {start}, the first day of this version '
                                f"({why})", severity="warning",
                                hint=f"add a value dated {start} or earlier"))
    return out


def _lookups(version: CheckedVersion):
    """Every table lookup (``T[key]``) in the version's checked expressions, item function
    bodies included where they are applied."""
    exprs = list(version.derived.values())
    for rule in version.rules:
        exprs += ([rule.when] if rule.when is not None else []) + list(rule.values.values())
    for expr in exprs:
        for node in walk(expr.tree):
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                    and node.value.id in version.parameters:
                yield node.value.id, node.slice


def _unused_table_keys(version: CheckedVersion) -> list[Diagnostic]:
    """A table's keys that no lookup can use, where every lookup's key has known values (a
    literal, or a field or item field with `one_of`); nothing where some key could be anything."""
    reachable: dict[str, set | None] = {}
    for name, key in _lookups(version):
        if reachable.get(name, set()) is None:
            continue
        if isinstance(key, ast.Constant) and not isinstance(key.value, bool):
            values = {key.value}
        else:
            choices = getattr(getattr(key, "vtype", None), "choices", ())
            values = set(choices) if choices else None
        reachable[name] = None if values is None else reachable.get(name, set()) | values
    out = []
    for name, keys in reachable.items():
        table = version.parameters[name]
        if keys is None or table.kind != "table":
            continue
        unused = sorted({k for _, tab in table.values if tab is not None for k in tab} - keys,
                        key=lambda k: (str(type(k)), k))
        if unused:
            used = sorted(keys, key=lambda k: (str(type(k)), k))
            out.append(version.source.diag(
                pos_of(version.raw, "parameters", name, key=True), "unused_table_keys",
                f'table "{name}" has keys no lookup can use: ' + ", ".join(_key(k) for k in unused),
                severity="warning", length=len(name),
                hint="its lookups can use only " + ", ".join(_key(k) for k in used) + "; remove the other "
                     "keys, or allow them in the key field's one_of"))
    return out


def _key(k) -> str:
    return f'"{k}"' if isinstance(k, str) else str(k)


def lint(ruleset: Ruleset) -> list[Diagnostic]:
    """Every lint finding of every version, sorted by location."""
    from .overlay import lint_overlay  # an overlay that changes nothing in its base
    return sorted([d for v in ruleset.versions for d in lint_version(v)] + lint_overlay(ruleset))


__all__ = ["lint", "lint_version", "Domain"]
