"""Tables of data: aligned columns on a terminal, full tab-separated lines for a pipe or a file.

Ids, case ids and times are never cut short: on a terminal a long cell folds onto the next line;
piped (``| grep``, ``> file``), each row is one line of tab-separated values, with a header line,
so that what a person searches for is there in full.
"""

from __future__ import annotations

import click
from rich.table import Table

from .common import cell, console, safe_text


def print_table(headers: tuple[str, ...], rows: list[tuple]) -> None:
    """Print rows under headers; every value terminal-safe (see ``safe_text``), none truncated."""
    out = console()
    if not out.is_terminal:
        click.echo("\t".join(headers))
        for row in rows:
            click.echo("\t".join(safe_text("" if v is None else v) for v in row))
        return
    table = Table(box=None)
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(cell(v) for v in row))
    out.print(table)
