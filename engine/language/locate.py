"""Where things stand in a ruleset file: positions in the raw YAML, and the model's validation
errors as located diagnostics (unknown keys with a did-you-mean, one message per bad value)."""

from __future__ import annotations

import difflib

from pydantic import ValidationError

from ..errors import Diagnostic
from .model import RulesetModel
from .source import Pos, Refused, Source, YList, YMap

# -- positions in the raw YAML ---------------------------------------------------------

def pos_of(raw, *path, key: bool = False) -> Pos | None:
    """Where the value (or key) at ``path`` stands; falls back to the nearest enclosing node."""
    node, best = raw, getattr(raw, "pos", None)
    for i, step in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, YMap) and step not in node and isinstance(step, str):
            # pydantic names a key that is not a string (a date) by its repr in an error's path
            step = next((k for k in node if not isinstance(k, str) and repr(k) == step), step)
        if isinstance(node, YMap) and step in node:
            p = node.key_pos[step] if (last and key) else node.val_pos[step]
            best, node = p, node[step]
        elif isinstance(node, YList) and isinstance(step, int) and 0 <= step < len(node):
            best, node = node.item_pos[step], node[step]
        else:
            break
    return best


def model_errors(source: Source, raw, exc: ValidationError) -> list[Diagnostic]:
    """pydantic's validation errors as located diagnostics, one per problem, in the file's own terms."""
    out = []
    said: set = set()
    for err in exc.errors():
        if isinstance(err.get("input"), Refused):  # reported where it was read
            continue
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        loc = tuple(p for p in loc if p not in ("list[...]",))
        kind = err["type"]
        if len(loc) == 5 and loc[0] == "parameters" and loc[2] == "values" and loc[4] in _VALUE_TYPES:
            # one message for the value, not one per type of the union a value may have
            if loc[:4] not in said:
                said.add(loc[:4])
                day = _key_text(raw, loc[:3], loc[3])
                out.append(source.diag(pos_of(raw, *loc[:4]), "invalid_value",
                                       f'parameter "{loc[1]}" on {day}: {_describe_value(err.get("input"))} '
                                       "is not a parameter value",
                                       hint="a parameter value is one number, date, true/false or text, "
                                            "e.g. `2025-01-01: 13400`"))
            continue
        if loc[-1:] == ("[key]",):
            where = ".".join(str(_key_text(raw, loc[:i], p)) for i, p in enumerate(loc[:-2]))
            what = "a date" if loc[:1] == ("parameters",) else "a valid key"
            out.append(source.diag(pos_of(raw, *loc[:-1], key=True), "invalid_value",
                                   f"{where}: {_describe_value(err.get('input'))} is not {what}",
                                   hint="write a date as YYYY-MM-DD" if what == "a date" else None))
            continue
        if kind == "extra_forbidden":
            parent = loc[:-1]
            allowed = _allowed_keys(raw, parent)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1) if allowed else []
            out.append(source.diag(pos_of(raw, *loc, key=True), "unknown_key",
                                   f'unknown key "{loc[-1]}"', length=len(str(loc[-1])),
                                   hint=f'did you mean "{close[0]}"?' if close else None,
                                   symbol=str(loc[-1]), suggestion=close[0] if close else None))
        elif kind == "missing":
            where = _path_text(raw, loc[:-1]) or "the ruleset"
            out.append(source.diag(pos_of(raw, *loc[:-1], key=False), "missing_key",
                                   f'"{loc[-1]}" is required in {where}'))
        else:
            msg = err["msg"]
            msg = msg[len("Value error, "):] if msg.startswith("Value error, ") else msg
            where = _path_text(raw, loc)
            split = any(isinstance(p, str) and ("(" in p or ")" in p)
                        and not p.startswith(("datetime.", "Decimal(")) for p in loc)  # a key, not a repr
            out.append(source.diag(pos_of(raw, *loc), "invalid_value",
                                   f"{where}: {msg[0].lower() + msg[1:] if msg else msg}",
                                   hint="a comma inside {...} ends the value there: quote an expression with a "
                                        "comma, e.g. {top: \"bracket(S, income)\"}" if split else None))
    return out


_VALUE_TYPES = ("bool", "int", "decimal", "date", "str")


def _path_text(raw, loc: tuple) -> str:
    """A path as the file writes it: parameters.S.scale.2025-01-01[2].rate."""
    out = ""
    for i, p in enumerate(loc):
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + _key_text(raw, loc[:i], p)
    return out


def _key_text(raw, parent: tuple, step) -> str:
    """A path step as the file writes it: a date key as 2025-01-01, not datetime.date(2025, 1, 1)."""
    node = raw
    for p in parent:
        node = node.get(p) if isinstance(node, dict) else None
    if isinstance(node, dict) and step not in node:
        for k in node:
            if repr(k) == step:
                return str(k)
    return str(step)


def _describe_value(value) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "an empty value"
    text = str(value)
    return f'"{text if len(text) <= 40 else text[:30] + "..."}"'


def _allowed_keys(raw, parent: tuple) -> list[str]:
    from .model import Example, Expect, FieldSpec, Otherwise, Parameter, Rule, Window
    top = {"valid": Window, "otherwise": Otherwise}
    if not parent:
        return list(RulesetModel.model_fields)
    head = parent[0]
    if head in top and len(parent) == 1:
        return [f.alias or n for n, f in top[head].model_fields.items()]
    if head == "rules" and len(parent) == 2:
        return list(Rule.model_fields)
    if head == "case":
        return list(FieldSpec.model_fields)
    if head == "parameters" and len(parent) == 2:
        return list(Parameter.model_fields)
    if head == "examples":
        return list(Expect.model_fields) if parent[-1] == "expect" else list(Example.model_fields)
    return []
