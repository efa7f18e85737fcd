"""The ``blursim`` command line. Each sub-command lives in its own module."""


def main(argv=None) -> int:
    """Entry point of the ``blursim`` console script (imports lazily)."""
    from blursim.cli.main import main as _main

    return _main(argv)


__all__ = ["main"]
