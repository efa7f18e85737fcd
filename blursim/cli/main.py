"""``blursim``: entry point, sub-command registry and error handling.

Every user error (a :class:`~blursim.errors.BlursimError`) is printed as one
paragraph on stderr and exits with code 2 -- never a traceback. Set
``BLURSIM_DEBUG=1`` to see the traceback anyway.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from blursim import __version__
from blursim.errors import BlursimError

#: Sub-command modules; each defines ``add_parser(subparsers)`` which sets ``func``.
COMMANDS = [
    "blursim.cli.basic",  # validate, schema, graph, list
    "blursim.cli.run",  # run
    "blursim.cli.analyze",  # analyze
    "blursim.cli.meta",  # meta-train, evaluate
    "blursim.cli.baseline",  # baseline (SGD / momentum / Adam)
    "blursim.cli.bench",  # bench
    "blursim.cli.replay",  # replay (law counterexamples, blursim.testing)
    "blursim.cli.genome",  # genome import / export (the paper authors' layout), diff
    "blursim.cli.runs",  # runs list / show / plot (meta-training run directories)
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blursim",
        description="Simulate and meta-learn BLUR networks (Bidirectional Learned Update Rules).",
    )
    parser.add_argument("--version", action="version", version=f"blursim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BlursimError as e:
        if os.environ.get("BLURSIM_DEBUG"):
            raise
        print(f"blursim: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("blursim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
