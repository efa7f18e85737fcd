"""The ``blursim`` command line. Each sub-command lives in its own module."""

from blursim.cli.main import main

__all__ = ["main"]
