"""Limits on one case as read from a file, so that no single line can stall or break a batch.

The defaults are far beyond any real case; a line over a limit is rejected as
``malformed_input`` (the message names the limit), and the rest of the batch is still decided.
``vedtak run`` and ``vedtak decide`` change them with ``--limit NAME=VALUE``.

>>> Limits.parse(["depth=16", "line_bytes=65536"]).depth
16
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from ..evaluation.cases import shown

# What each limit bounds, for --help and for the README.
DESCRIPTIONS = {
    "line_bytes": "bytes in one line of a JSON Lines file, characters in one line of a CSV file, bytes "
                  "in the case file given to decide (a JSON array file is read whole)",
    "string_chars": "characters in one string of a case (a value or a key)",
    "depth": "nesting of objects and lists in a case (the case object itself is depth 1)",
    "list_items": "items in one list of a case",
}


@dataclass(frozen=True)
class Limits:
    """Bounds on one case as read; each can be changed with ``--limit NAME=VALUE``."""

    line_bytes: int = 1 << 20  # 1 MiB
    string_chars: int = 65_536
    depth: int = 32
    list_items: int = 10_000

    @classmethod
    def parse(cls, specs: list[str] | tuple[str, ...]) -> "Limits":
        """Limits from ``NAME=VALUE`` strings; ValueError saying what is wrong if one is not valid."""
        names = [f.name for f in fields(cls)]
        changes: dict[str, int] = {}
        for spec in specs:
            name, sep, value = spec.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in names:
                import difflib
                close = difflib.get_close_matches(name, names, n=1)
                raise ValueError(f"{spec!r} is not NAME=VALUE with NAME one of {', '.join(names)}"
                                 + (f'; did you mean "{close[0]}"?' if close else ""))
            value = value.strip().replace("_", "")
            if not (value.isascii() and value.isdigit()) or int(value) < 1:
                raise ValueError(f"the limit {name} must be a whole number of at least 1, not {shown(value)!r}")
            if int(value) > MAX_VALUE:
                raise ValueError(f"the limit {name} is too large: it can be at most {MAX_VALUE:,}, not {shown(value)}")
            if name == "depth" and int(value) > MAX_DEPTH:
                raise ValueError(f"the limit depth can be at most {MAX_DEPTH} (deeper cases could not be carried to workers or logged)")
            changes[name] = int(value)
        return replace(cls(), **changes)

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict | None) -> "Limits":
        return cls(**data) if data else cls()


# The decoder, pickling to workers and to dask, the canonical JSON of the log and replay each recurse
# once or more per level of a case: at this depth every one of them still has room on the stack.
MAX_DEPTH = 200
MAX_VALUE = 10 ** 12 - 1  # any larger limit is no bound at all
DEFAULT = Limits()
# reading again what was read once within a run's limits (a log's stored input): no limit refuses it
WIDEST = Limits(MAX_VALUE, MAX_VALUE, MAX_DEPTH, MAX_VALUE)


def help_text() -> str:
    """The --limit option's help: each limit, its default and what it bounds."""
    return ("Change an input limit, NAME=VALUE (repeatable); a case over a limit is rejected as "
            "malformed_input. " + "; ".join(f"{name} (default {getattr(DEFAULT, name)}): {what}"
                                             for name, what in DESCRIPTIONS.items()) + ".")
