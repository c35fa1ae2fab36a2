"""Diagnostics: located, coded problems in a ruleset, reported all at once."""

from __future__ import annotations

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
        """The diagnostic as text: location, code, message, source line with a caret, hint."""
        out = [f"{self.location}: {self.code}: {self.message}"]
        if self.source_line is not None and self.line > 0:
            out.append("    " + self.source_line.rstrip("\n"))
            out.append("    " + " " * (self.column - 1) + "^" * max(1, self.length))
        if self.hint:
            out.append(f"    hint: {self.hint}")
        return "\n".join(out)


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
