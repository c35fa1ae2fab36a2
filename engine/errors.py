"""Diagnostics: located, coded problems in a ruleset, reported all at once."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_DIAGNOSTICS = 100


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem found in a ruleset, with a fixed ``code`` and a 1-based location.

    >>> Diagnostic("r.yaml", 3, 7, "unknown_name", '"x" is not defined').format()
    'r.yaml:3:7: unknown_name: "x" is not defined'
    """

    file: str
    line: int
    column: int
    code: str
    message: str
    length: int = 1
    hint: str | None = None
    severity: str = "error"  # "error" stops loading; "warning" is a lint finding
    source_line: str | None = field(default=None, compare=False)
    symbol: str | None = field(default=None, compare=False)
    suggestion: str | None = field(default=None, compare=False)

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    def format(self) -> str:
        """The diagnostic as text: location, code, message, source line with a caret, hint.

        Control characters from the file (an ANSI escape in a name) are shown escaped, never sent
        to the terminal; in the quoted source line each becomes one "?", so the caret stays aligned.
        """
        out = [f"{_escaped(self.location)}: {self.code}: {_escaped(self.message)}"]
        if self.source_line is not None and self.line > 0:
            line, col, length = _CONTROL.sub("?", self.source_line.rstrip("\n")), self.column, max(1, self.length)
            if len(line) > _SHOWN:  # a very long line: show a window around the column, not megabytes
                start = max(0, min(col - 1 - _SHOWN // 3, len(line) - _SHOWN))
                line = ("..." if start else "") + line[start:start + _SHOWN] + ("..." if start + _SHOWN < len(line) else "")
                col = col - start + (3 if start else 0)
            length = max(1, min(length, len(line) - col + 1))
            out.append("    " + line)
            out.append("    " + " " * (col - 1) + "^" * length)
        if self.hint:
            out.append(f"    hint: {_escaped(self.hint)}")
        return "\n".join(out)


_SHOWN = 160  # characters of a quoted source line
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escaped(text: str) -> str:
    """Text with control, bidirectional-override and lone-surrogate characters written as escapes."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", text)


class RulesetError(Exception):
    """A ruleset could not be loaded; ``diagnostics`` holds every problem, sorted by location."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = sorted(diagnostics)
        super().__init__(self.format())

    def format(self) -> str:
        shown = self.diagnostics[:MAX_DIAGNOSTICS]
        text = "\n".join(d.format() for d in shown)
        if len(self.diagnostics) > len(shown):
            text += f"\n... and {len(self.diagnostics) - len(shown)} more problems"
        return text


class CaseInputError(ValueError):
    """Case input text that is not a JSON object (the library's ``decide_json``)."""
