"""Derived values and item functions: ordered by what they read (cycles refused), each derived value
checked in that order, each item function parsed and kept to be checked where it is applied."""

from __future__ import annotations

import ast
import keyword
import re
from dataclasses import dataclass, field

from ..errors import Diagnostic
from .expr import FUNCTIONS, CheckedExpr, ItemFunction, Symbol, Type, check_expr, parse_expr
from .limits import measure
from .locate import pos_of
from .model import RulesetModel
from .source import Source, YMap

_ITEM_FN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*")


def valid_name(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_")


@dataclass
class Derived:
    """What `derive` gives a version: its checked derived values (in dependency order), what each
    reads, its item functions, and where an expression failed its checks."""

    values: dict[str, CheckedExpr] = field(default_factory=dict)
    fields: dict[str, frozenset[str]] = field(default_factory=dict)  # case fields each needs (known() aside)
    loads: dict[str, frozenset[str]] = field(default_factory=dict)  # every case field each may read
    deps: dict[str, frozenset[str]] = field(default_factory=dict)  # derived values each reads, transitively
    measured: dict[str, tuple[int, int]] = field(default_factory=dict)  # (depth, size), inlined where used
    item_functions: dict[str, ItemFunction] = field(default_factory=dict)
    unchecked: list = field(default_factory=list)


def check_derive(model: RulesetModel, source: Source, raw: YMap, scope: dict[str, Symbol],
                 diags: list[Diagnostic]) -> Derived:
    """Check `derive`, adding each name to ``scope`` (broken where it failed, reported here)."""
    # Derived values: find each one's references first, so that they can be checked in dependency order.
    # A key `name(item)` is an item function: a derived value of one list item.
    keys: dict[str, str] = {}  # bare name -> its key in `derive`
    params: dict[str, str] = {}  # item function -> its parameter
    bare = {(_ITEM_FN.fullmatch(k).group(1) if _ITEM_FN.fullmatch(k) else k) for k in model.derive}  # type: ignore[union-attr]
    for key in model.derive:
        m = _ITEM_FN.fullmatch(key)
        name = m.group(1) if m else key
        if m:
            params[name] = m.group(2)
        dpos = pos_of(raw, "derive", key, key=True)
        if "(" in key and not m:
            diags.append(source.diag(dpos, "bad_name", f'"{key}" is neither a name nor an item function',
                                     hint="write an item function as `name(item): expression`"))
            continue
        if name in keys:
            diags.append(source.diag(dpos, "duplicate_name", f'"{name}" is defined twice in derive'))
            continue
        if name in scope:
            diags.append(source.diag(dpos, "duplicate_name", f'derived value "{name}" has the name of a '
                                     f"{scope[name].kind}"))
            continue
        if name in FUNCTIONS:
            diags.append(source.diag(dpos, "bad_name", f'"{name}" is a function of the library',
                                     hint="give the derived value or item function another name"))
            scope[name] = Symbol("broken", Type("broken"))
            continue
        if not valid_name(name) or (m and not valid_name(m.group(2))):
            diags.append(source.diag(dpos, "bad_name", f'"{key}" cannot be used in expressions'))
        if m and (m.group(2) in scope or m.group(2) in bare):
            kind = scope[m.group(2)].kind if m.group(2) in scope else "derived value or item function"
            diags.append(source.diag(dpos, "shadowed_name", f'the item function\'s parameter "{m.group(2)}" hides '
                                     f"a {kind} of that name", hint="pick another name for the item"))
            scope[name] = Symbol("broken", Type("broken"))  # reported here, not again where it is applied
            continue
        keys[name] = key
    refs: dict[str, set[str]] = {}
    for name, key in keys.items():
        text = model.derive[key]
        try:
            tree = ast.parse(text.strip(), mode="eval")
            refs[name] = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} & set(keys)
        except (SyntaxError, ValueError, MemoryError, RecursionError):  # check_expr reports it
            refs[name] = set()
    order, state = [], {}

    def visit(n: str, stack: list[str]) -> None:
        if state.get(n) == "done":
            return
        if state.get(n) == "active":
            cycle = stack[stack.index(n):] + [n]
            diags.append(source.diag(pos_of(raw, "derive", keys[n]), "derived_cycle",
                                     f'item function "{n}" applies itself' if cycle == [n, n] and n in params else
                                     "derived values depend on each other in a cycle: " + " -> ".join(cycle)))
            state[n] = "cyclic"
            return
        if state.get(n) == "cyclic":
            return
        state[n] = "active"
        for m in sorted(refs.get(n, ())):
            visit(m, stack + [n])
        if state[n] == "active":
            state[n] = "done"
            order.append(n)

    for n in refs:
        visit(n, [])
    for n, st in state.items():
        if st == "cyclic":
            scope[n] = Symbol("broken", Type("broken"))
    out = Derived()
    derived, derived_fields, derived_loads, derived_deps = out.values, out.fields, out.loads, out.deps
    measured, item_functions, unchecked = out.measured, out.item_functions, out.unchecked
    for name in order:
        if name in params:  # checked where it is applied, against that list's items
            fpos = pos_of(raw, "derive", keys[name])
            fsrc = fpos.src if fpos is not None and fpos.src is not None else source
            parsed = parse_expr(fsrc, fpos, model.derive[keys[name]], diags, what=f'item function "{name}"')
            if parsed is None:
                scope[name] = Symbol("broken", Type("broken"))
                continue
            tree, text, fpos = parsed
            inner = [g.generators[0].target for g in ast.walk(tree.body) if isinstance(g, ast.GeneratorExp)
                     and isinstance(g.generators[0].target, ast.Name) and g.generators[0].target.id == params[name]]
            if inner:
                diags.append(source.diag(fpos, "shadowed_name", f'the loop variable "{params[name]}" hides the item '
                                         f"function's parameter", hint="pick another name for the loop variable"))
                scope[name] = Symbol("broken", Type("broken"))
                continue
            depth, size, _ = measure(tree.body, measured)
            fn = ItemFunction(name, params[name], text, tree.body, fpos, fsrc, depth, size)
            item_functions[name] = fn
            measured[name] = (depth, size)
            scope[name] = Symbol("itemfn", Type("itemfn"), data=fn)
            continue
        expr = check_expr(source, pos_of(raw, "derive", keys[name]), model.derive[keys[name]], scope, diags,
                          what=f'derived value "{name}"', derived=measured)
        if expr is None:
            unchecked.append(pos_of(raw, "derive", keys[name]))
            scope[name] = Symbol("broken", Type("broken"))
            continue
        derived[name] = expr
        measured[name] = (expr.depth, expr.size)
        direct = {n for n in expr.names if n in derived}
        deps = set(direct)
        for n in direct:
            deps |= derived_deps[n]
        derived_deps[name] = frozenset(deps)
        fields = {n for n in expr.names if scope.get(n) and scope[n].kind == "field"}
        loads, needs = set(fields), set(fields)
        for n in direct:
            loads |= derived_loads[n]
            needs |= derived_fields[n]
        derived_loads[name] = frozenset(loads)
        derived_fields[name] = frozenset(needs - expr.known)  # known(x) in the expression handles x itself
        scope[name] = Symbol("derived", expr.type)
    return out
