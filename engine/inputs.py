"""Reading case files: JSON Lines, a JSON array, or CSV typed by the ruleset's case schema.

Each input yields ``Item(source, line, raw, error)``: either a raw case (a dict, as JSON
gives it) or the reason the line could not be read — never an exception for bad data, so
that one malformed line is reported and the rest of the batch is still decided.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from .model import FieldSpec

FORMATS = ("jsonl", "json", "csv")


@dataclass
class Item:
    source: str
    line: int  # line number (JSONL, CSV) or item number (JSON array), 1-based
    raw: object = None
    error: str | None = None  # why the line could not be read


def detect_format(path: str, head: bytes) -> str:
    suffix = Path(path).suffix.lower()
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


def read(path: str, schema: dict[str, FieldSpec], fmt: str | None = None) -> Iterator[Item]:
    """The items of one input (``-`` for standard input), in order."""
    source = "<stdin>" if path == "-" else path
    stream = _open_binary(path)
    try:
        if not hasattr(stream, "peek"):  # a pipe or an in-memory stream: buffer it to look ahead
            stream = io.BufferedReader(stream)
        head = stream.peek(64)[:64]
        fmt = fmt or detect_format(path, head)
        if fmt == "jsonl":
            yield from _jsonl(source, stream)
        elif fmt == "json":
            yield from _json_array(source, stream)
        else:
            yield from _csv(source, stream, schema)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _jsonl(source: str, stream, first_line: int = 1) -> Iterator[Item]:
    for n, data in enumerate(stream, first_line):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Item(source, n, error=f"not UTF-8 text (byte {exc.start + 1})")
            continue
        if not text.strip():
            continue  # blank lines are not cases
        try:
            raw = json.loads(text, parse_float=Decimal)
        except ValueError as exc:
            yield Item(source, n, error=f"not JSON: {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(raw, dict):
            yield Item(source, n, error="a case is a JSON object")
            continue
        yield Item(source, n, raw)


def _json_array(source: str, stream) -> Iterator[Item]:
    data = stream.read()
    try:
        items = json.loads(data.decode("utf-8"), parse_float=Decimal)
    except UnicodeDecodeError as exc:
        yield Item(source, 1, error=f"not UTF-8 text (byte {exc.start + 1}); no case in this file was read")
        return
    except ValueError as exc:
        yield Item(source, exc.lineno, error=f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}; "
                                             "no case in this file was read")
        return
    if not isinstance(items, list):
        yield Item(source, 1, error="a JSON file of cases holds an array of objects")
        return
    for n, raw in enumerate(items, 1):
        if isinstance(raw, dict):
            yield Item(source, n, raw)
        else:
            yield Item(source, n, error=f"item {n} is not a JSON object")


def _csv(source: str, stream, schema: dict[str, FieldSpec], header: list[str] | None = None,
         first_line: int = 1) -> Iterator[Item]:
    """CSV rows as typed cases; ``header`` and ``first_line`` are given when reading a row range
    (a partition) of a file whose header was read before."""
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="")
    reader = csv.reader(text)
    shift = first_line - 1
    if header is None:
        try:
            header = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            yield Item(source, 1, error=f"not UTF-8 text (byte {exc.start + 1}); no case in this file was read")
            return
        header = [h.strip() for h in header]
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            yield Item(source, shift + reader.line_num + 1, error=f"not UTF-8 text (byte {exc.start + 1}); "
                                                                  "the rest of this file was not read")
            return
        except csv.Error as exc:
            yield Item(source, shift + reader.line_num, error=f"not CSV: {exc}")
            continue
        n = shift + reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            yield Item(source, n, error=f"{len(row)} columns where the header has {len(header)}")
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
        if spec.type == "int" and text.lstrip("-").isdigit():
            return int(text)
        if spec.type in ("decimal", "money"):
            return Decimal(text)
        if spec.type == "bool" and text.lower() in ("true", "false"):
            return text.lower() == "true"
    except InvalidOperation:
        pass
    return text


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
        cells = next(csv.reader(io.StringIO(data.decode("utf-8"), newline="")), [])
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


def read_partition(part: Partition, schema: dict[str, FieldSpec]) -> Iterator[Item]:
    """The items of one partition, numbered by their lines in the whole file."""
    if part.fmt == "json":
        for item in read(part.path, schema, "json"):
            yield Item(part.source, item.line, item.raw, item.error)
        return
    stream = io.BufferedReader(_Range(part.path, part.start, part.end), 1 << 20)
    try:
        if part.fmt == "csv":
            yield from _csv(part.source, stream, schema, list(part.header) if part.header is not None else None,
                            part.first_line)
        else:
            yield from _jsonl(part.source, stream, part.first_line)
    finally:
        stream.close()
