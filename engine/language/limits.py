"""Limits on what a ruleset may hold, so that whatever loads also compiles, runs and prints.

Each limit is far above what a real ruleset needs, and each is reported as a located
diagnostic (``too_deep``, ``too_large``, ``out_of_range``) when a ruleset breaks it.
"""

from __future__ import annotations

import ast
from decimal import Decimal

# Limits on one expression, so that whatever passes the checks also compiles: Python's parser
# takes at most 200 nested brackets, and the generated code nests about one bracket per level.
MAX_DEPTH = 150  # levels of the syntax tree, a derived value counting as its own depth + 2 where used
MAX_SIZE = 20_000  # syntax-tree nodes, a derived value counting as its own size where used
MAX_VERSIONS = 200  # .yaml files in one ruleset directory
MAX_PERIODS = 1_000  # spans of one version in which no parameter changes: each is compiled on its own
MAX_COMPILED = 500_000  # syntax-tree nodes the compiler emits for one version: rules x periods (about
# 1 KB of memory each while Python compiles the generated code: 1.2 million took 1.3 GB and 10 s)
DIGITS = 34  # a number literal's significant digits and integer digits (the decimal context's precision)


def number_in_range(value: Decimal) -> bool:
    """Whether a number is held exactly by the engine's decimal context and is below 10^34: at most
    34 significant digits (trailing zeros aside), and no exponent the context cannot reach."""
    if not value.is_finite():
        return False
    if value.is_zero():
        return True
    digits = value.as_tuple().digits
    significant = len(digits)
    while significant > 1 and digits[significant - 1] == 0:
        significant -= 1
    adjusted = value.adjusted()
    return significant <= DIGITS and -999_999 <= adjusted < DIGITS


def clip(text: str, limit: int = 40) -> str:
    """Text as a message quotes it: a long literal shortened, with its length."""
    return text if len(text) <= limit else f"{text[:limit // 2]}...{text[-8:]} ({len(text)} characters)"


def measure(tree: ast.AST, derived: dict[str, tuple[int, int]] | None = None) -> tuple[int, int, ast.AST | None]:
    """(depth, size, first node deeper than MAX_DEPTH) of a syntax tree, without recursion.

    ``derived`` maps a derived value's name to its own (depth, size): the generated code inlines
    a derived value where it is used, so it counts there (its depth plus 2, for the memo around it).
    """
    derived = derived or {}
    depth = size = 0
    deepest = None
    stack: list = [(tree, 1)]
    while stack:
        node, level = stack.pop()
        size += 1
        reach = level
        if isinstance(node, ast.Name) and node.id in derived:
            d_depth, d_size = derived[node.id]
            reach, size = level + 2 + d_depth, size + d_size
        if reach > depth:
            depth = reach
            if deepest is None and reach > MAX_DEPTH:
                deepest = node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.expr, ast.comprehension, ast.keyword)):
                stack.append((child, level + 1))
    return depth, size, deepest
