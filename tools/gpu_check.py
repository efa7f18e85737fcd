#!/usr/bin/env python
"""GPU check: CuPy against NumPy on every example spec, then the benchmark on the GPU.

    python tools/gpu_check.py [--json gpu_check.json] [--skip-bench] [--quick]

1. Parity. For every spec in ``specs/`` plus the benchmark's ``paper-es``
   and ``local-sparse`` networks (the latter with block tiles and masked
   dense): a random genome, 3 species x 2 replicas, 3 training steps and a
   forward pass, on NumPy and on CuPy; the largest difference of any
   synapse or output, relative to that array's largest magnitude.
   float64 must agree to 1e-9 (tight: same operations, different summation
   order); float32 to 2e-3 (float32 rounding compounds over the steps
   through tanh/relu nonlinearities; the float64 row is the strict check).
2. The benchmark (``blursim bench --backend cupy``, one round).

Finishes in well under 5 minutes on one GPU (most of it CuPy compiling its
kernels on first use). Prints a short table last; exits 1 if a parity check
fails, 2 if CuPy or a GPU is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TOL = {"float64": 1e-9, "float32": 2e-3}


def _cases():
    from blursim.cli.bench import PAPER_ES, local_sparse_spec

    cases = [(p.stem, json.loads(p.read_text()), "auto") for p in sorted((ROOT / "specs").glob("*.json"))]
    cases.append(("paper-es", PAPER_ES, "auto"))
    cases.append(("local-sparse (blocks)", local_sparse_spec(), "blocks"))
    cases.append(("local-sparse (masked)", local_sparse_spec(), "masked"))
    return cases


def _trajectory(sim, genome):
    """Every synapse and output of a short run (:func:`blursim.testing.trajectory`), as float64."""
    from blursim.testing import trajectory

    return [a.astype(np.float64) for a in trajectory(sim, genome, batch=8, query=6)]


def parity(log) -> list[dict]:
    from blursim.genome import random_genome
    from blursim.graph import compile_network
    from blursim.sim import Simulator
    from blursim.spec import load_network

    rows = []
    for name, spec, sparse in _cases():
        prog = compile_network(load_network(spec))
        genome = random_genome(k=prog.k, groups=prog.groups, seed=1, scale=0.3)
        for dtype in ("float64", "float32"):
            t0 = time.perf_counter()
            want = _trajectory(Simulator(prog, backend="numpy", dtype=dtype, sparse=sparse), genome)
            got = _trajectory(Simulator(prog, backend="cupy", dtype=dtype, sparse=sparse), genome)
            err = 0.0
            for a, b in zip(want, got):
                fa, fb = np.isfinite(a), np.isfinite(b)
                if (fa != fb).any():  # non-finite values in different places
                    err = float("inf")
                    continue
                if fa.any():
                    scale = max(1e-30, float(np.abs(a[fa]).max()))
                    err = max(err, float(np.abs(a[fa] - b[fa]).max()) / scale)
            ok = bool(err <= TOL[dtype])
            rows.append({"spec": name, "dtype": dtype, "max_rel_err": err, "tol": TOL[dtype], "ok": ok,
                         "seconds": time.perf_counter() - t0})
            log(f"# parity {name:<24} {dtype}: {err:.2e} (tol {TOL[dtype]:.0e}) {'ok' if ok else 'FAIL'}")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=None, help="write results as JSON")
    ap.add_argument("--skip-bench", action="store_true", help="parity only")
    ap.add_argument("--quick", action="store_true",
                    help="a short benchmark (S = 1, 2; fitness of 2 genomes; rough numbers): checks the flow")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from blursim.backend import get_backend
    from blursim.errors import BackendError

    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    try:
        be = get_backend("cupy", "float32")
    except BackendError as e:
        print(f"gpu_check: {e}")
        return 2
    log(f"# device: {be.describe()}")
    rows = parity(log)
    bench = None
    if not args.skip_bench:
        from blursim.cli.bench import format_table, run_benchmark

        if args.quick:
            bench = run_benchmark("cupy", species=(1, 2), quick=True, fitness_species=2, log=log)
        else:
            bench = run_benchmark("cupy", rounds=1, min_time=1.0, log=log)
    out = {"device": be.describe(), "parity": rows, "bench": bench, "seconds": time.perf_counter() - t0}
    if args.json:
        from blursim.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(out, indent=2) + "\n")
    print("\nCuPy vs NumPy parity (max relative difference over synapses and outputs)")
    print(f"{'spec':<26} {'float64':>10} {'float32':>10}  result")
    by = {}
    for r in rows:
        by.setdefault(r["spec"], {})[r["dtype"]] = r
    for name, d in by.items():
        ok = all(r["ok"] for r in d.values())
        print(f"{name:<26} {d['float64']['max_rel_err']:>10.1e} {d['float32']['max_rel_err']:>10.1e}  "
              f"{'ok' if ok else 'FAIL'}")
    print(f"tolerances: float64 {TOL['float64']:.0e}, float32 {TOL['float32']:.0e}")
    if bench is not None:
        print()
        print(format_table(bench))
    print(f"\ngpu_check finished in {time.perf_counter() - t0:.0f} s")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
