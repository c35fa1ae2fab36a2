"""Helpers for tests that invoke the command line in process and check it never shows a traceback."""

from __future__ import annotations

from click.testing import CliRunner

from vedtak.cli.main import main

USAGE = 2


def run(*args, input=None):
    """Invoke the CLI; an exception other than SystemExit is a traceback a user would see."""
    r = CliRunner().invoke(main, [str(a) for a in args], input=input)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise AssertionError(f"vedtak {' '.join(map(str, args))} raised {r.exception!r}\n{r.output}") \
            from r.exception
    assert "Traceback" not in r.output
    return r


def error_line(r) -> str:
    """The last line of a usage error: `Error: ...`."""
    return r.output.strip().splitlines()[-1]
