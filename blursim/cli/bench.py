"""``blursim bench`` (also ``python tools/bench.py``): the command line of the benchmark,
:mod:`blursim.bench` (what each row measures is said there).

The benchmark's building blocks stay importable from here under their old names (``Workload``,
``PAPER_ES``, ``products_only``, ``_time``, ...), so that ``tools/bench_ab.py`` times this
checkout and older ones alike.
"""

from __future__ import annotations

import argparse
import json
import sys

from blursim.bench import jax_rows as bench_jax  # noqa: F401  (the old blursim.cli.bench_jax)
from blursim.bench.report import format_table
from blursim.bench.runner import run_benchmark
from blursim.bench.timing import Peak as _Peak  # noqa: F401
from blursim.bench.timing import Roofline, machine_info, roofline  # noqa: F401
from blursim.bench.timing import time_fn as _time  # noqa: F401
from blursim.bench.workloads import PAPER_ES, Workload, local_sparse_spec, products_only  # noqa: F401


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark BLUR steps against the machine's GEMM roofline")
    _arguments(p)
    p.set_defaults(func=cmd_bench)


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return n


def _species(text: str) -> tuple[int, ...]:
    """``"1,8,80"`` -> ``(1, 8, 80)``."""
    parts = [t.strip() for t in str(text).split(",") if t.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected species counts such as 1,8,80")
    return tuple(_positive(t) for t in parts)


def _arguments(p) -> None:
    p.add_argument("--backend", choices=["numpy", "cupy", "jax"], default=None,
                   help="array backend (default: $BLURSIM_BACKEND or numpy); jax: the JAX engine's rows only")
    p.add_argument("--species", type=_species, default=(1, 8, 80), metavar="S1,S2,...",
                   help="species counts of the paper-es rows (default 1,8,80)")
    p.add_argument("--fitness-species", type=_positive, default=80, metavar="N",
                   help="population of the fitness-evaluation row (default 80, as in Sec. 4.4)")
    p.add_argument("--rounds", type=_positive, default=2, help="interleaved rounds; the best is kept (default 2)")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of repeats per row and round")
    p.add_argument("--unrolls", type=_species, default=(10, 50), metavar="T1,T2,...",
                   help="unroll lengths of the meta-gradient rows (default 10,50; --quick: 2)")
    p.add_argument("--no-jax", action="store_true", help="leave out the JAX engine's rows")
    p.add_argument("--jax-products", default="xla,blas", metavar="R1,R2",
                   help="the JAX engine's product routes measured (xla always; blas: NumPy's BLAS through a "
                        "host callback, CPU only; default xla,blas)")
    p.add_argument("--quick", action="store_true", help="short run (smoke test; numbers are rough)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the results as JSON")


def cmd_bench(args) -> int:
    if args.no_jax and args.backend == "jax":
        from blursim.errors import BackendError

        raise BackendError("bench: --no-jax leaves out the JAX rows, --backend jax measures only them: "
                           "drop one of the two")
    res = run_benchmark(args.backend, species=args.species, rounds=args.rounds, min_time=args.min_time,
                        quick=args.quick, log=lambda s: print(s, file=sys.stderr, flush=True),
                        fitness_species=args.fitness_species, jax=False if args.no_jax else None,
                        unrolls=args.unrolls,
                        jax_products=tuple(p.strip() for p in args.jax_products.split(",") if p.strip()))
    if args.json:
        from blursim.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(res, indent=2) + "\n")
    print(format_table(res))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    _arguments(p)
    return cmd_bench(p.parse_args(argv))
