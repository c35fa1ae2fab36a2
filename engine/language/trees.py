"""Checked syntax trees with item functions applied: walking them (into the bodies applied, with
each body's parameter standing for the caller's loop variable), and preparing a body to apply."""

from __future__ import annotations

import ast
import copy
import itertools

from .scope import ItemFunction


def key_choices(node: ast.AST) -> tuple | None:
    """The values a table key can take, where they are known at load: a literal, a field (or list
    item field) with `one_of`, either branch of `x if c else y`, an item function giving those."""
    if isinstance(node, ast.Constant) and not isinstance(node.value, bool):
        return (node.value,)
    if isinstance(node, ast.IfExp):
        a, b = key_choices(node.body), key_choices(node.orelse)
        return tuple(dict.fromkeys(a + b)) if a and b else None
    inline = getattr(node, "inline", None)
    if inline is not None:
        return key_choices(inline)
    vtype = getattr(node, "vtype", None)
    return vtype.choices if vtype is not None and vtype.choices else None


_FRESH = itertools.count(1)


def walk_applied(node: ast.AST, alias: dict | None = None):
    """(node, names) for every node under ``node``, inside the bodies of the item functions it
    applies too; ``names`` maps the parameters of the item functions being applied there to the
    loop variables they stand for (``alias``: those already applied where ``node`` stands)."""
    stack: list = [(node, alias or {})]
    while stack:
        n, names = stack.pop()
        yield n, names
        inline = getattr(n, "inline", None)
        if inline is not None:
            arg = n.args[0].id  # type: ignore[attr-defined]
            stack.append((inline, {**names, n.param: names.get(arg, arg)}))  # type: ignore[attr-defined]
        stack.extend((c, names) for c in ast.iter_child_nodes(n))


def applications(node: ast.AST, alias: dict | None = None):
    """(call, the loop variable it is applied to) for every item function applied under ``node``,
    inside the bodies it applies too."""
    for n, names in walk_applied(node, alias):
        if getattr(n, "inline", None) is not None:
            yield n, names.get(n.args[0].id, n.args[0].id)  # type: ignore[attr-defined]


def reads_variable(node: ast.AST, var: str | None, alias: dict | None = None) -> bool:
    """Whether ``node`` reads the loop variable ``var`` (through the item functions it applies too)."""
    return any(isinstance(n, ast.Name) and names.get(n.id, n.id) == var for n, names in walk_applied(node, alias))


def fresh_body(fn: ItemFunction) -> ast.expr:
    """A copy of an item function's body with each generator's own variable renamed to a fresh
    name, so that it never meets a loop variable of an expression the body is applied in."""
    body = copy.deepcopy(fn.tree)
    for g in [n for n in ast.walk(body) if isinstance(n, ast.GeneratorExp)]:
        comp = g.generators[0]
        if not isinstance(comp.target, ast.Name):
            continue
        old = comp.target.id
        new = f"__{next(_FRESH)}_{old}"  # unique in the whole program; no author may write "__" names
        comp.target.fresh = True  # type: ignore[attr-defined]
        for part in (comp.target, *comp.ifs, g.elt):
            for n in ast.walk(part):
                if isinstance(n, ast.Name) and n.id == old:
                    n.id = new
    return body


def walk(node: ast.AST):
    """Every node under ``node``, including the bodies item functions were inlined with."""
    for n, _ in walk_applied(node):
        yield n
