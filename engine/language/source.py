"""YAML source with positions: every mapping key, value and list item knows its line and column."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import yaml

from ..errors import Diagnostic

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
    # the file this position is in, where a checked version is merged from two (an overlay and its
    # base): Source.diag then locates a problem in that file, whichever Source reports it
    src: "Source | None" = field(default=None, compare=False, repr=False)


class Refused(str):
    """The text of a scalar that could not be read (2025-02-30, .nan): already reported, so a later
    check that finds it of the wrong type says nothing more about it."""


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

    def _refuse(self, node, code: str, message: str):
        """Record a located problem with a scalar and keep its text, so that loading goes on."""
        self.problems.append((_value_pos(node), code, message, min(len(str(node.value)), 80)))
        return Refused(node.value)

    def construct_yaml_float(self, node):  # exact: 0.05 is Decimal("0.05"), never a float
        text = str(self.construct_scalar(node)).replace("_", "")
        try:
            value = Decimal(text)
        except Exception:  # .nan, .inf, -.Inf: YAML floats that are no number at all
            return self._refuse(node, "out_of_range", f"{_short(text)} is not an exact number")
        return value

    def construct_yaml_int(self, node):
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # more than Python's 4 300 digits for int(str)
            return self._refuse(node, "out_of_range", f"the number {_short(node.value)} has too many digits")

    def construct_yaml_timestamp(self, node):
        try:
            value = super().construct_yaml_timestamp(node)
        except (ValueError, OverflowError) as exc:  # 2025-02-30, 2025-13-01: no such day
            return self._refuse(node, "bad_date", f"{_short(node.value)} is not a date: {exc}")
        if isinstance(value, datetime):  # a ruleset knows dates, not times of day
            return self._refuse(node, "bad_date", f"{_short(node.value)} has a time of day; a ruleset "
                                "holds dates (YYYY-MM-DD), or quote it as text")
        return value

    def construct_unsupported(self, node):
        """!!binary, !!set, !!omap, !!pairs: YAML types that no ruleset value (nor JSON case) can be."""
        self.problems.append((_value_pos(node), "invalid_value",
                              f"the YAML type {node.tag.replace('tag:yaml.org,2002:', '!!')} is not supported "
                              "in a ruleset"))
        return Refused(node.tag)

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
                self.problems.append((kp, "duplicate_key", f'key "{key}" appears twice in this mapping', len(str(key))))
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
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)
for _tag in ("binary", "set", "omap", "pairs"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _Loader.construct_unsupported)


def _short(text: str, limit: int = 40) -> str:
    """Some text as a message quotes it: never more than ``limit`` characters."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit // 2]}...{text[-8:]} ({len(text)} characters)"


# Bounds on a ruleset document, far above any real ruleset (the shipped ones: 12 kB, under 2 000
# nodes, nesting 8): they keep a hostile file, such as an alias bomb, from exhausting memory or time.
MAX_SOURCE_BYTES = 2_000_000
MAX_NODES = 100_000  # YAML nodes, every alias counted as a copy of what it names
MAX_NESTING = 50  # mappings and lists inside one another


def _check_bounds(root: yaml.Node) -> tuple[Pos, str, str] | None:
    """The first bound the node graph breaks, as (position, code, message); None within bounds.

    Aliases share nodes, so sizes are counted once per node and summed per reference: linear in
    the document, however many copies its aliases would make. An alias that contains itself is
    refused too (it would be an endless document).
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    stack: list = [(root, False)]
    active: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if isinstance(node, yaml.ScalarNode):
            size[key], depth[key] = 1, 0
            continue
        children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value
        if not done:
            if key in size:
                continue
            if key in active:
                return _value_pos(node), "alias_loop", "an alias refers to a node that contains it"
            active.add(key)
            stack.append((node, True))
            for child in children:
                if id(child) in active:
                    return _value_pos(child), "alias_loop", "an alias refers to a node that contains it"
                if id(child) not in size:
                    stack.append((child, False))
            continue
        active.discard(key)
        size[key] = 1 + sum(size[id(c)] for c in children)
        depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
        if size[key] > MAX_NODES:
            return (_value_pos(node), "too_large",
                    f"this part of the document expands to more than {MAX_NODES} YAML nodes "
                    "(aliases counted as copies)")
        if depth[key] > MAX_NESTING:
            return (_value_pos(node), "too_deep",
                    f"mappings and lists are nested more than {MAX_NESTING} deep here")
    return None


class TooLarge(OSError):
    """A ruleset file above MAX_SOURCE_BYTES, refused before it is read."""


class Source:
    """The text of one ruleset file, for diagnostics that quote the offending line."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.text = text
        self.lines = text.splitlines()

    @classmethod
    def read(cls, path: str | Path) -> "Source":
        if not Path(path).is_file():  # a FIFO or a device would block or never end
            raise OSError("not a regular file")
        size = Path(path).stat().st_size
        if size > MAX_SOURCE_BYTES:  # refused unread: a ruleset is never this large
            raise TooLarge(f"the file has {size} bytes; a ruleset file may have at most {MAX_SOURCE_BYTES}")
        return cls(str(path), Path(path).read_text(encoding="utf-8"))

    def diag(self, pos: Pos | None, code: str, message: str, *, length: int = 1,
             hint: str | None = None, severity: str = "error", symbol: str | None = None,
             suggestion: str | None = None) -> Diagnostic:
        if pos is not None and pos.src is not None and pos.src is not self:
            return pos.src.diag(pos, code, message, length=length, hint=hint, severity=severity, symbol=symbol,
                                suggestion=suggestion)
        line, col = (pos.line, pos.column) if pos else (1, 1)
        src = self.lines[line - 1] if 0 < line <= len(self.lines) else None
        return Diagnostic(self.path, line, col, code, message, length=length, hint=hint,
                          severity=severity, source_line=src, symbol=symbol, suggestion=suggestion)

    def parse_yaml(self) -> tuple[object, list[Diagnostic]]:
        """Parse the text; returns the data (YMap/YList/scalars) and any diagnostics."""
        problems: list = []
        size = len(self.text.encode("utf-8", "surrogatepass"))
        if size > MAX_SOURCE_BYTES:
            return None, [self.diag(None, "too_large", f"the file has {size} bytes; a ruleset file may have "
                                    f"at most {MAX_SOURCE_BYTES}")]
        try:
            loader = _Loader(self.text, problems)
            try:
                node = loader.get_single_node()
                if node is None:
                    return None, []
                bound = _check_bounds(node)
                if bound is not None:
                    return None, [self.diag(*bound)]
                data = loader.construct_document(node)
            finally:
                loader.dispose()
        except (RecursionError, MemoryError):  # pragma: no cover - the bounds above come first
            return None, [self.diag(None, "too_large", "the document is too large or nested too deeply")]
        except UnicodeError as exc:  # a lone surrogate in text handed to load_text
            return None, [self.diag(None, "unreadable", f"the text is not valid Unicode: {exc.reason}")]
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            pos = Pos(mark.line + 1, mark.column + 1) if mark else None
            msg = (exc.problem or exc.context or "invalid YAML").strip()
            hint = "check indentation and quoting"
            line = self.text.split("\n")[mark.line] if mark and mark.line < self.text.count("\n") + 1 else ""
            value = line.split(":", 1)[1].strip() if ":" in line else ""
            end = value.find(value[0], 1) if value[:1] in ('"', "'") else -1
            if end > 0 and value[end + 1:].strip() and not value[end + 1:].lstrip().startswith(("#", ",", "}", "]")):
                # `x: "a" if c else "b"`: YAML reads a quoted scalar, then finds more on the line
                hint = ("an expression that starts with quoted text must be quoted as a whole, "
                        f"e.g. '{value.replace(chr(39), chr(39) * 2)}'")
            return None, [self.diag(pos, "yaml_syntax", msg, hint=hint)]
        except yaml.reader.ReaderError as exc:  # a control character: located by its offset in the text
            before = self.text[: exc.position] if isinstance(exc.position, int) else ""
            pos = Pos(before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1)
            what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
            return None, [self.diag(pos, "yaml_syntax", f"the character {what} is not allowed here: {exc.reason}",
                                    hint="write it as an escape inside a double-quoted string")]
        except yaml.YAMLError as exc:
            return None, [self.diag(None, "yaml_syntax", str(exc))]
        return data, [self.diag(p, c, m, length=n) for p, c, m, *rest in problems for n in [rest[0] if rest else 1]]
