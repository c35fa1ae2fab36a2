"""The `vedtak` command line: a thin click shell over the library."""

from .main import main

__all__ = ["main"]
