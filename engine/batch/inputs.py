"""Reading case files: JSON Lines, a JSON array, or CSV typed by the ruleset's case schema.

Each input yields ``Item(source, line, raw, error)``: either a raw case (a dict, as JSON
gives it) or the reason the line could not be read — never an exception for bad data, so
that one malformed line is reported and the rest of the batch is still decided. What one
line may cost is bounded by :class:`~vedtak.batch.input_limits.Limits`.
"""

from __future__ import annotations

import csv
import difflib
import io
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from ..evaluation.cases import shown
from .input_limits import DEFAULT, Limits
from .json_text import (BOM, _SURROGATE_BYTES, _at, _big_int, _element, _parse, _skip_ws, parse_json,  # noqa: F401
                        problem, read_document)
from ..language.model import FieldSpec

FORMATS = ("jsonl", "json", "csv")


@dataclass
class Item:
    source: str
    line: int  # line number (JSONL, CSV) or item number (JSON array), 1-based
    raw: object = None
    error: str | None = None  # why the line could not be read
    text: str | None = None  # a JSON Lines case's line as received (without its line end), for the log


def detect_format(path: str, head: bytes) -> str:
    suffix = Path(path).suffix.lower()
    head = head.removeprefix(BOM)
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json" if head.lstrip()[:1] == b"[" else "jsonl"
    if suffix == ".csv":
        return "csv"
    first = head.lstrip()[:1]
    return "json" if first == b"[" else "jsonl" if first == b"{" else "csv"


def _open_binary(path: str):
    return sys.stdin.buffer if path == "-" else open(path, "rb")


def read(path: str, schema: dict[str, FieldSpec], fmt: str | None = None, limits: Limits = DEFAULT) -> Iterator[Item]:
    """The items of one input (``-`` for standard input), in order."""
    source = "<stdin>" if path == "-" else path
    stream = _open_binary(path)
    try:
        if not hasattr(stream, "peek"):  # a pipe or an in-memory stream: buffer it to look ahead
            stream = io.BufferedReader(stream)
        head = stream.peek(64)[:64]
        fmt = fmt or detect_format(path, head)
        if fmt == "jsonl":
            yield from _jsonl(source, stream, limits=limits)
        elif fmt == "json":
            yield from _json_array(source, stream, limits)
        else:
            yield from _csv(source, stream, schema, limits=limits)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


# -- JSON Lines and a JSON array -----------------------------------------------------------------

def _skip_line(readline, size: int) -> int:
    """Read past the rest of a line that is over the limit, without holding it; its length."""
    while (rest := readline(1 << 16)) and not rest.endswith(b"\n"):
        size += len(rest)
    return size + len(rest.removesuffix(b"\n"))


def _jsonl(source: str, stream, first_line: int = 1, limits: Limits = DEFAULT) -> Iterator[Item]:
    n = first_line - 1
    depth, walk_above = limits.depth, min(limits.string_chars, 2 * limits.list_items)
    limit, readline = limits.line_bytes, stream.readline
    while data := readline(limit + 1):
        n += 1
        if len(data) > limit and not data.endswith(b"\n"):
            size = _skip_line(readline, len(data))
            yield Item(source, n, error=f"the line is {size:,} bytes, over the limit line_bytes={limit}")
            continue
        if n == 1 and data.startswith(BOM):
            data = data[3:]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Item(source, n, error=f"not UTF-8 text (byte {exc.start + 1})")
            continue
        if not text.strip():
            continue  # blank lines are not cases
        raw, why = _parse(text, limits, depth, walk_above)
        if why is not None:
            yield Item(source, n, error=why)
        elif raw.__class__ is not dict:
            yield Item(source, n, error="a case is a JSON object")
        else:
            yield Item(source, n, raw, None, text[:-1] if text.endswith("\n") else text)


def _json_array(source: str, stream, limits: Limits = DEFAULT) -> Iterator[Item]:
    """The cases of a JSON array file, read element by element: an element that cannot be read (too
    deep, a lone surrogate, a byte that is not UTF-8, a duplicate key) rejects that item only; a
    syntax error that leaves the rest unreadable rejects the items from there on, in one problem."""
    text = stream.read().removeprefix(BOM).decode("utf-8", "surrogateescape")
    depth, walk_above = limits.depth, min(limits.string_chars, 2 * limits.list_items)
    pos = _skip_ws(text, 0)
    if text[pos:pos + 1] != "[":
        yield Item(source, 1, error="a JSON file of cases holds an array of objects")
        return
    pos, n = _skip_ws(text, pos + 1), 0
    if text[pos:pos + 1] == "]":
        pos = _skip_ws(text, pos + 1)
    else:
        while True:
            n += 1
            raw, why, end = _element(text, pos, limits, depth, walk_above)
            if end is None:
                yield Item(source, n, error=f"item {n}: {why}; the items from {n} on were not read")
                return
            if why is not None:
                yield Item(source, n, error=f"item {n}: {why}")
            elif raw.__class__ is not dict:
                yield Item(source, n, error=f"item {n} is not a JSON object")
            else:
                yield Item(source, n, raw)
            pos = _skip_ws(text, end)
            sep = text[pos:pos + 1]
            if sep == "]":
                pos = _skip_ws(text, pos + 1)
                break
            if sep != ",":
                got = "the end of the file" if not sep else f"{shown(sep)!r}"
                yield Item(source, n + 1, error=f"item {n + 1}: not JSON: expected ',' or ']' after item {n}, got "
                                                f"{got}, at {_at(text, pos)}; the items from {n + 1} on were not read")
                return
            pos = _skip_ws(text, pos + 1)
    if pos < len(text):
        yield Item(source, n + 1, error=f"not JSON: text after the array's closing ']', at {_at(text, pos)}")


# -- CSV -----------------------------------------------------------------------------------------

_TOO_LONG = "\udfff"  # stands in for a line over the limit (no decoding yields this surrogate)


class _Lines:
    """The lines of a decoded CSV stream as csv.reader takes them, each at most ``limit`` characters
    (a longer line is replaced by a marker row without being held in memory). The lines of the
    record being read are kept with their numbers, so that a record whose quoted field is never
    closed — the file ends inside it, or it runs past ``limit`` characters — can be rejected at the
    line where it starts and the file read on from the next line."""

    def __init__(self, text, limit: int):
        self._readline, self._limit = text.readline, limit
        self.n = 0  # the number of the last line read from the stream
        self.again: list[tuple[int, str]] = []  # lines to give again (reversed), after an unclosed quote
        self.held: list[tuple[int, str]] = []  # the lines of the record being read
        self.size = 0
        self.unclosed = ""  # why the record being read ended inside a quoted field, if it did
        self.bad = False  # whether a line of the record holds bytes that are not UTF-8

    def start(self) -> None:
        """A new record begins."""
        self.held, self.size, self.unclosed, self.bad = [], 0, "", False

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.held and (self.unclosed or self.size > self._limit):  # inside a quoted field, over the limit
            self.unclosed = self.unclosed or f"not closed within line_bytes={self._limit} characters"
            raise StopIteration
        if self.again:
            n, line = self.again.pop()
        else:
            line = self._readline(self._limit + 1)
            if not line:
                if self.held:  # csv asks for more of a record: the file ends inside a quoted field
                    self.unclosed = "never closed"
                raise StopIteration
            self.n = n = self.n + 1
            if len(line) > self._limit and not line.endswith(("\n", "\r")):
                while (rest := self._readline(1 << 16)) and not rest.endswith(("\n", "\r")):
                    pass
                line = _TOO_LONG + "\n"
        if not line.isascii() and _SURROGATE_BYTES.search(line):
            self.bad = True
        self.held.append((n, line))
        self.size += len(line)
        return line

    def reread(self) -> None:
        """Read the lines of the record being read again, from its second one."""
        self.again.extend(reversed(self.held[1:]))


def _not_utf8(row: list[str]) -> str:
    for i, cell in enumerate(row, 1):
        m = _SURROGATE_BYTES.search(cell)
        if m:
            at = len(cell[:m.start()].encode("utf-8", "surrogateescape")) + 1
            return f"not UTF-8 text (column {i}, byte {at} of the cell); only this row was not read"
    return "not UTF-8 text; only this row was not read"


def _csv(source: str, stream, schema: dict[str, FieldSpec], header: list[str] | None = None,
         first_line: int = 1, limits: Limits = DEFAULT) -> Iterator[Item]:
    """CSV rows as typed cases; ``header`` and ``first_line`` are given when reading a row range
    (a partition) of a file whose header was read before. Each row is decoded on its own: a byte
    that is not UTF-8 rejects that row only; a quoted field never closed rejects the record where
    it opens, and the rows after it are still read."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig" if first_line == 1 else "utf-8",
                            errors="surrogateescape", newline="")
    lines = _Lines(text, limits.line_bytes)
    reader = csv.reader(lines)
    shift = first_line - 1
    if header is None:
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Item(source, 1, error=f"not CSV: {exc}; no case in this file was read")
            return
        if lines.bad or lines.unclosed or header == [_TOO_LONG]:
            why = ("not UTF-8 text" if lines.bad else f"a quoted field {lines.unclosed}" if lines.unclosed
                   else f"over the limit line_bytes={limits.line_bytes}")
            yield Item(source, 1, error=f"the header is {why}; no case in this file was read")
            return
        header = [h.strip() for h in header]
    while True:
        lines.start()
        try:
            row = next(reader)
            error = None
        except StopIteration:
            if not lines.unclosed:
                return
            row, error = None, ""
        except csv.Error as exc:
            row, error = None, f"not CSV: {exc}"
        if lines.unclosed:  # reject where the quote opens; read on from the line after
            n = shift + lines.held[0][0]
            yield Item(source, n, error=f"a quoted field opened here is {lines.unclosed}")
            lines.reread()
            reader = csv.reader(lines)
            continue
        if not lines.held:  # pragma: no cover - csv reads a line for every record
            return
        n = shift + lines.held[-1][0]
        if error is not None:
            yield Item(source, n, error=error)
            reader = csv.reader(lines)
            continue
        if row == [_TOO_LONG]:
            yield Item(source, n, error=f"the line is over the limit line_bytes={limits.line_bytes} (characters)")
            continue
        if lines.bad:
            yield Item(source, n, error=_not_utf8(row))
            continue
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            yield Item(source, n, error=f"{len(row)} columns where the header has {len(header)}")
            continue
        if max(map(len, row)) > limits.string_chars:
            yield Item(source, n, error=f"a cell of more than {limits.string_chars} characters, over the limit "
                                        f"string_chars={limits.string_chars}")
            continue
        yield Item(source, n, {name: _typed(schema.get(name), cell) for name, cell in zip(header, row)
                               if cell.strip() != "" or schema.get(name) is None})


def _typed(spec: FieldSpec | None, cell: str):
    """A CSV cell as the case schema types it; a cell that does not parse stays text, so that
    validation reports it with its field."""
    text = cell.strip()
    if spec is None:
        return cell
    try:
        if spec.type == "int" and text.isascii() and text.lstrip("-").isdigit():
            return _big_int(text)
        if spec.type in ("decimal", "money") and text.isascii():  # Decimal reads other scripts' digits too
            return Decimal(text)
        if spec.type == "bool" and text.lower() in ("true", "false"):
            return text.lower() == "true"
    except (InvalidOperation, ValueError):
        pass
    return text


def header_problems(paths: list[str], schema: dict[str, FieldSpec], fmt: str | None = None) -> list[str]:
    """What is wrong with the header of each CSV input (``-`` is not looked at): a column naming no
    field (with a did-you-mean), a required field without a column, a column named twice. Checked
    before anything is decided, so that a run whose every row would be rejected never starts."""
    out = []
    for path in paths:
        if path == "-":
            continue
        with open(path, "rb") as f:
            if (fmt or detect_format(path, f.read(64))) != "csv":
                continue
            f.seek(0)
            text = io.TextIOWrapper(f, encoding="utf-8-sig", errors="surrogateescape", newline="")
            try:
                header = next(csv.reader([text.readline(DEFAULT.line_bytes)]), None)
            except csv.Error as exc:
                out.append(f"{path}:1: the header is not CSV: {exc}")
                continue
        if not header:
            continue  # an empty file: nothing to decide
        names = [h.strip() for h in header]
        seen: set[str] = set()
        for name in names:
            if name in seen:
                out.append(f'{path}:1: the column "{shown(name)}" is named twice')
            seen.add(name)
            if name not in schema:
                close = difflib.get_close_matches(name, [n for n in schema if n not in names], n=1)
                out.append(f'{path}:1: the column "{shown(name)}" is not a field of this ruleset\'s cases'
                           + (f'; did you mean "{close[0]}"?' if close else ""))
        for name, spec in schema.items():
            if not spec.optional and name not in seen:
                out.append(f'{path}:1: no column "{name}", a field every case must give')
    return out


# -- partitions: byte ranges of a file that a distributed run's workers read themselves ------------

@dataclass(frozen=True)
class Partition:
    """Part of one input file: the bytes [start, end) of a JSON Lines or CSV file (cut only where a
    line, or a CSV record, ends), or a whole JSON array file. ``first_line`` numbers the line at
    ``start``, so that problems are still reported by file and line."""

    index: int
    source: str  # the file as the operator named it (for reports)
    path: str  # the file as workers open it
    fmt: str
    start: int
    end: int
    first_line: int
    header: tuple[str, ...] | None = None  # a CSV file's header, read once by the driver

    def to_dict(self) -> dict:
        return {"index": self.index, "source": self.source, "path": self.path, "format": self.fmt,
                "start": self.start, "end": self.end, "first_line": self.first_line,
                "header": None if self.header is None else list(self.header)}

    @classmethod
    def from_dict(cls, d: dict) -> "Partition":
        return cls(d["index"], d["source"], d["path"], d["format"], d["start"], d["end"], d["first_line"],
                   None if d.get("header") is None else tuple(d["header"]))


_BLOCK = 1 << 24


def partitions(paths: list[str], fmt: str | None, target_bytes: int) -> list[Partition]:
    """Cut input files into partitions of about ``target_bytes`` each. The driver only looks for
    line ends here (and CSV quotes); it parses no case — the workers read their own ranges."""
    out: list[Partition] = []
    for path in paths:
        full = os.path.abspath(path)
        size = os.path.getsize(full)
        with open(full, "rb") as f:
            kind = fmt or detect_format(path, f.read(64))
        if kind == "json" or size == 0:
            bounds, header = [(0, 1)], None
        elif kind == "csv":
            bounds, header = _csv_bounds(full, target_bytes)
        else:
            bounds, header = _line_bounds(full, target_bytes, size), None
        ends = [b for b, _ in bounds[1:]] + [size]
        for (start, line), end in zip(bounds, ends):
            if end > start or kind == "json":
                out.append(Partition(len(out), path, full, kind, start, end, line, header))
    return out


def _line_bounds(path: str, target: int, size: int) -> list[tuple[int, int]]:
    """(offset, line number) where each partition of a JSON Lines file starts: at a line start
    at least ``target`` bytes after the previous one."""
    bounds = [(0, 1)]
    pos, line, want = 0, 1, target
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            i = 0
            while want < pos + len(block):
                j = block.find(b"\n", max(want - pos, i))
                if j < 0:
                    break  # the line goes on into the next block
                line += block.count(b"\n", i, j + 1)
                i = j + 1
                if pos + i < size:
                    bounds.append((pos + i, line))
                want = pos + i + target
            line += block.count(b"\n", i)
            pos += len(block)
    return bounds


def _csv_bounds(path: str, target: int) -> tuple[list[tuple[int, int]], tuple[str, ...] | None]:
    """Partition starts of a CSV file — only where a record ends outside quotes — and its header."""
    bounds: list[tuple[int, int]] = []
    header = None
    pos, line, quoted, start = 0, 1, False, 0
    with open(path, "rb") as f:
        for raw in f:
            pos += len(raw)
            line += 1
            quoted ^= raw.count(b'"') & 1 == 1
            if quoted:
                continue
            if header is None:
                header = _csv_header(path, pos)
                if header is None:
                    return [(0, 1)], None  # read whole, so that the worker reports the problem
                bounds.append((pos, line))
                start = pos
            elif pos - start >= target:
                bounds.append((pos, line))
                start = pos
    if not bounds:
        return [(0, 1)], None
    return bounds, header


def _csv_header(path: str, end: int) -> tuple[str, ...] | None:
    with open(path, "rb") as f:
        data = f.read(end)
    try:
        cells = next(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")), [])
    except (UnicodeDecodeError, csv.Error):
        return None
    return tuple(h.strip() for h in cells)


class _Range(io.RawIOBase):
    """The bytes [start, end) of a file, as a stream."""

    def __init__(self, path: str, start: int, end: int):
        self._f = open(path, "rb")
        self._f.seek(start)
        self._left = end - start

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._left <= 0:
            return 0
        n = self._f.readinto(memoryview(buffer)[:min(len(buffer), self._left)])
        self._left -= n or 0
        return n or 0

    def close(self) -> None:
        self._f.close()
        super().close()


def read_partition(part: Partition, schema: dict[str, FieldSpec], limits: Limits = DEFAULT) -> Iterator[Item]:
    """The items of one partition, numbered by their lines in the whole file."""
    if part.fmt == "json":
        for item in read(part.path, schema, "json", limits):
            yield Item(part.source, item.line, item.raw, item.error)
        return
    stream = io.BufferedReader(_Range(part.path, part.start, part.end), 1 << 20)
    try:
        if part.fmt == "csv":
            yield from _csv(part.source, stream, schema, list(part.header) if part.header is not None else None,
                            part.first_line, limits)
        else:
            yield from _jsonl(part.source, stream, part.first_line, limits)
    finally:
        stream.close()
