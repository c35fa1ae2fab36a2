"""What the commands share: exit codes, output, and loading a ruleset with its diagnostics printed."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

import vedtak
from vedtak.errors import RulesetError

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
EXIT_INCOMPLETE = 3  # a distributed run left partitions undone; --resume finishes it


def console(err: bool = False) -> Console:
    return Console(stderr=err, highlight=False, soft_wrap=True, emoji=False)


def say(text: str, style: str | None = None, err: bool = False) -> None:
    console(err).print(Text(text, style=style or ""))


def load_ruleset(path: str):
    """Load a ruleset or print its diagnostics; None when it does not load."""
    try:
        return vedtak.load(path)
    except RulesetError as exc:
        for d in exc.diagnostics:
            say(d.format(), err=True)
        n = len(exc.diagnostics)
        say(f"{path}: {n} problem{'s' if n != 1 else ''}; the ruleset was not loaded", style="bold red", err=True)
        return None
