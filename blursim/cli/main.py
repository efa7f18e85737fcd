"""``blursim``: entry point, sub-command registry and error handling.

Every user error (a :class:`~blursim.errors.BlursimError`) is printed as one
line on stderr (control characters escaped) and exits with code 2 -- never a traceback; so
does an allocation that fails (``MemoryError``). Set
``BLURSIM_DEBUG=1`` to see the traceback anyway.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings

from blursim import __version__
from blursim.errors import BlursimError, one_line

#: Sub-command modules; each defines ``add_parser(subparsers)`` which sets ``func``.
COMMANDS = [
    "blursim.cli.basic",  # validate, schema, graph, list
    "blursim.cli.run",  # run
    "blursim.cli.analyze",  # analyze
    "blursim.cli.meta",  # meta-train, evaluate
    "blursim.cli.baseline",  # baseline (SGD / momentum / Adam)
    "blursim.cli.bench",  # bench
    "blursim.cli.replay",  # replay (law counterexamples, blursim.testing)
    "blursim.cli.genome",  # genome import / export (the paper authors' layout)
    "blursim.cli.compare",  # compare (genomes, zoo presets, optimizers x tasks x horizons)
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


@contextlib.contextmanager
def _counted_runtime_warnings():
    """NumPy's and JAX's floating-point RuntimeWarnings (a genome that overflows, on any backend)
    are counted, not printed line by line with source code; one line on stderr says how many
    there were. Diverged replicas are reported by the commands themselves."""
    counts: dict[str, int] = {}
    show = warnings.showwarning

    def count(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, RuntimeWarning):
            key = str(message).split(" encountered")[0][:60]
            counts[key] = counts.get(key, 0) + 1
        else:
            show(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", RuntimeWarning)
        warnings.showwarning = count
        try:
            yield
        finally:
            if counts:
                what = ", ".join(f"{k} ({n})" for k, n in sorted(counts.items())[:5])
                print(f"blursim: note: {sum(counts.values())} floating-point warning(s) suppressed: "
                      f"{one_line(what, 300)} (values overflowed to Inf/NaN)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with _counted_runtime_warnings():
            return int(args.func(args) or 0)
    except BlursimError as e:
        if os.environ.get("BLURSIM_DEBUG"):
            raise
        print(f"blursim: error: {one_line(e)}", file=sys.stderr)
        return 2
    except MemoryError:  # an allocation the up-front memory checks did not foresee
        if os.environ.get("BLURSIM_DEBUG"):
            raise
        print("blursim: error: out of memory: an allocation failed (the process's address-space limit, "
              "a cgroup or the machine's memory was reached); use a smaller network, batch or "
              "population, or set $BLURSIM_MAX_MEMORY so that blursim refuses such runs up front.",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("blursim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
