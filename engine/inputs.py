"""Reading case files: JSON Lines, a JSON array, or CSV typed by the ruleset's case schema.

Each input yields ``Item(source, line, raw, error)``: either a raw case (a dict, as JSON
gives it) or the reason the line could not be read — never an exception for bad data, so
that one malformed line is reported and the rest of the batch is still decided.
"""

from __future__ import annotations

import csv
import io
import json
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


def _jsonl(source: str, stream) -> Iterator[Item]:
    for n, data in enumerate(stream, 1):
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


def _csv(source: str, stream, schema: dict[str, FieldSpec]) -> Iterator[Item]:
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="")
    reader = csv.reader(text)
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
            yield Item(source, reader.line_num + 1, error=f"not UTF-8 text (byte {exc.start + 1}); "
                                                          "the rest of this file was not read")
            return
        except csv.Error as exc:
            yield Item(source, reader.line_num, error=f"not CSV: {exc}")
            continue
        n = reader.line_num
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
