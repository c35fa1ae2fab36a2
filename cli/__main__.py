"""`python -m vedtak.cli` runs the command line."""

from .main import main

main()
