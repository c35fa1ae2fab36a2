"""YAML source with positions: every mapping key, value and list item knows its line and column."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import yaml

from .errors import Diagnostic

try:  # the C parser is several times faster; the pure one behaves the same
    _BaseLoader = yaml.CSafeLoader  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover
    _BaseLoader = yaml.SafeLoader


@dataclass(frozen=True)
class Pos:
    """A 1-based line and column in a source file; ``block`` marks a multi-line block scalar."""

    line: int
    column: int
    block_indent: int | None = None  # set for | and > scalars: content starts on the next line


class YMap(dict):
    """A mapping from YAML that remembers where each key and value stood."""

    key_pos: dict
    val_pos: dict
    pos: Pos


class YList(list):
    """A sequence from YAML that remembers where each item stood."""

    item_pos: list
    pos: Pos


def _value_pos(node: yaml.Node) -> Pos:
    mark = node.start_mark
    line, col = mark.line + 1, mark.column + 1
    style = getattr(node, "style", None)
    if style in ('"', "'"):
        return Pos(line, col + 1)
    if style in ("|", ">"):
        # content begins on the following line, at the block's indentation
        text = mark.buffer or ""
        lines = text.split("\n") if text else []
        indent = 0
        if line < len(lines):
            nxt = lines[line]
            indent = len(nxt) - len(nxt.lstrip(" "))
        return Pos(line + 1, indent + 1, block_indent=indent)
    return Pos(line, col)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """A safe loader that keeps positions, reads decimals exactly and reports duplicate keys."""

    def __init__(self, stream, problems: list):
        super().__init__(stream)
        self.problems = problems

    def construct_yaml_float(self, node):  # exact: 0.05 is Decimal("0.05"), never a float
        text = str(self.construct_scalar(node)).replace("_", "")
        try:
            return Decimal(text)
        except Exception:
            return float(text)  # .inf/.nan: rejected later by the model checks

    def construct_ymap(self, node):
        data = YMap()
        data.key_pos, data.val_pos = {}, {}
        data.pos = _value_pos(node)
        yield data
        explicit = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
        seen: set = set()
        self.flatten_mapping(node)  # merged (<<) keys come first; explicit keys override them
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, bool) or key is None:  # YAML 1.1 reads on/off/yes/no as bools
                key = key_node.value
            elif not isinstance(key, (str, int, Decimal, date)):
                key = str(key)
            if id(key_node) in explicit and key in seen:
                kp = _value_pos(key_node)
                self.problems.append((kp, "duplicate_key", f'key "{key}" appears twice in this mapping'))
            data[key] = self.construct_object(value_node, deep=True)
            data.key_pos[key] = _value_pos(key_node)
            if id(key_node) in explicit:
                seen.add(key)
            data.val_pos[key] = _value_pos(value_node)

    def construct_ylist(self, node):
        data = YList()
        data.pos = _value_pos(node)
        data.item_pos = [_value_pos(n) for n in node.value]
        yield data
        data.extend(self.construct_object(n, deep=True) for n in node.value)


# YAML 1.2 booleans only: `decide: no` is the outcome "no", not False (the "Norway problem").
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
for _first in "tTfF":
    _Loader.yaml_implicit_resolvers.setdefault(_first, []).insert(
        0, ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")))
_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_ymap)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_ylist)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_yaml_float)


class Source:
    """The text of one ruleset file, for diagnostics that quote the offending line."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.text = text
        self.lines = text.splitlines()

    @classmethod
    def read(cls, path: str | Path) -> "Source":
        return cls(str(path), Path(path).read_text(encoding="utf-8"))

    def diag(self, pos: Pos | None, code: str, message: str, *, length: int = 1,
             hint: str | None = None, severity: str = "error", symbol: str | None = None,
             suggestion: str | None = None) -> Diagnostic:
        line, col = (pos.line, pos.column) if pos else (1, 1)
        src = self.lines[line - 1] if 0 < line <= len(self.lines) else None
        return Diagnostic(self.path, line, col, code, message, length=length, hint=hint,
                          severity=severity, source_line=src, symbol=symbol, suggestion=suggestion)

    def parse_yaml(self) -> tuple[object, list[Diagnostic]]:
        """Parse the text; returns the data (YMap/YList/scalars) and any diagnostics."""
        problems: list = []
        try:
            loader = _Loader(self.text, problems)
            try:
                data = loader.get_single_data()
            finally:
                loader.dispose()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            pos = Pos(mark.line + 1, mark.column + 1) if mark else None
            msg = (exc.problem or exc.context or "invalid YAML").strip()
            return None, [self.diag(pos, "yaml_syntax", msg, hint="check indentation and quoting")]
        except yaml.YAMLError as exc:
            return None, [self.diag(None, "yaml_syntax", str(exc))]
        return data, [self.diag(p, c, m) for p, c, m in problems]
