#!/usr/bin/env python
"""GPU check: CuPy and the JAX engine against NumPy on every example spec, then the benchmark.

    python tools/gpu_check.py [--json gpu_check.json] [--skip-bench] [--quick]
                              [--specs NAME,...] [--jax-cpu]

1. CuPy parity (when CuPy sees a CUDA GPU). For every spec in ``specs/`` plus
   the benchmark's ``paper-es`` and ``local-sparse`` networks (the latter with
   block tiles and masked dense): a random genome, 3 species x 2 replicas, 3
   training steps and a forward pass, on NumPy and on CuPy; the largest
   difference of any synapse or output, relative to that array's largest
   magnitude. float64 must agree to 1e-9 (tight: same operations, different
   summation order); float32 to 2e-3 (float32 rounding compounds over the
   steps through tanh/relu nonlinearities; the float64 row is the strict
   check).
2. JAX parity (when JAX's default device is a GPU; ``--jax-cpu``: on JAX's
   CPU too, the stand-in that runs without a GPU): the same runs on the JAX
   engine (``blursim.sim.jax_engine``, the reference step under ``jax.jit``)
   against the NumPy ``Simulator``, same tolerances. The JAX engine stores
   dense (masked) synapses, so the local-sparse network is checked once.
3. The benchmark, one round: ``blursim bench --backend cupy`` with the JAX
   engine's rows (step vs Simulator, meta-gradient vs forward unroll) when JAX
   is on the GPU too, or ``blursim bench --backend jax`` (JAX rows only) when
   only JAX sees a GPU.

Finishes in well under 5 minutes on one GPU (most of it compiling kernels on
first use). Prints a short table last; exits 1 if a parity check fails, 2 if
neither CuPy nor JAX has a GPU (without ``--jax-cpu``), naming what is missing.
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


def _cases(engine: str = "cupy", names=None):
    """``(name, spec, sparse)`` of every network checked (``names``: only those; an unknown name
    is a one-line error listing the known ones)."""
    from blursim.cli.bench import PAPER_ES, local_sparse_spec
    from blursim.errors import SpecError

    cases = [(p.stem, json.loads(p.read_text()), "auto") for p in sorted((ROOT / "specs").glob("*.json"))]
    cases.append(("paper-es", PAPER_ES, "auto"))
    if engine == "jax":  # dense synapses only: one local-sparse case
        cases.append(("local-sparse", local_sparse_spec(), "auto"))
    else:
        cases.append(("local-sparse (blocks)", local_sparse_spec(), "blocks"))
        cases.append(("local-sparse (masked)", local_sparse_spec(), "masked"))
    if names is not None:
        known = {c[0].split(" (")[0] for c in cases}
        unknown = sorted(set(names) - known)
        if unknown:
            raise SpecError(f"--specs: unknown network(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        cases = [c for c in cases if c[0].split(" (")[0] in names]
    return cases


def _trajectory(sim, genome):
    """Every synapse and output of a short run (:func:`blursim.testing.trajectory`), as float64."""
    from blursim.testing import trajectory

    return [a.astype(np.float64) for a in trajectory(sim, genome, batch=8, query=6)]


def parity(log, engine: str = "cupy", names=None) -> list[dict]:
    """Every case of :func:`_cases` on NumPy and on ``engine`` (``"cupy"`` or ``"jax"``)."""
    from blursim.genome import random_genome
    from blursim.graph import compile_network
    from blursim.sim import Simulator, make_simulator
    from blursim.spec import load_network

    rows = []
    for name, spec, sparse in _cases(engine, names):
        prog = compile_network(load_network(spec))
        genome = random_genome(k=prog.k, groups=prog.groups, seed=1, scale=0.3)
        for dtype in ("float64", "float32"):
            t0 = time.perf_counter()
            want = _trajectory(Simulator(prog, backend="numpy", dtype=dtype, sparse=sparse), genome)
            got = _trajectory(make_simulator(prog, engine, dtype, sparse=sparse), genome)
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
            log(f"# parity {engine} {name:<24} {dtype}: {err:.2e} (tol {TOL[dtype]:.0e}) {'ok' if ok else 'FAIL'}")
    return rows


def jax_device() -> dict | None:
    """JAX's default device (``{"jax", "device", "platform"}``), or ``None`` without the extra."""
    from blursim.cli.bench_jax import available, device_info

    return device_info() if available() else None


def _table(title: str, rows: list[dict]) -> list[str]:
    lines = [title, f"{'spec':<26} {'float64':>10} {'float32':>10}  result"]
    by: dict = {}
    for r in rows:
        by.setdefault(r["spec"], {})[r["dtype"]] = r
    for name, d in by.items():
        ok = all(r["ok"] for r in d.values())
        lines.append(f"{name:<26} {d['float64']['max_rel_err']:>10.1e} {d['float32']['max_rel_err']:>10.1e}  "
                     f"{'ok' if ok else 'FAIL'}")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=None, help="write results as JSON")
    ap.add_argument("--skip-bench", action="store_true", help="parity only")
    ap.add_argument("--quick", action="store_true",
                    help="a short benchmark (S = 1, 2; fitness of 2 genomes; rough numbers): checks the flow")
    ap.add_argument("--specs", default=None, metavar="NAME,...",
                    help="check only these networks (spec file stems, paper-es, local-sparse)")
    ap.add_argument("--jax-cpu", action="store_true",
                    help="run the JAX checks also when JAX has no GPU (on its CPU: a stand-in for the flow)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from blursim.backend import get_backend
    from blursim.errors import BackendError, BlursimError

    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    names = None if args.specs is None else [n.strip() for n in args.specs.split(",") if n.strip()]
    try:
        be = get_backend("cupy", "float32")
        cupy_why = None
    except BackendError as e:
        be, cupy_why = None, str(e)
    jdev = jax_device()
    jax_on = jdev is not None and (jdev["platform"] != "cpu" or args.jax_cpu)
    if be is None and not jax_on:
        print(f"gpu_check: {cupy_why}")
        print("gpu_check: JAX " + ("is not installed (pip install -e \".[jax]\")" if jdev is None else
                                   f"has no GPU (its device: {jdev['device']}; --jax-cpu runs its checks there)"))
        return 2
    if be is not None:
        log(f"# device: {be.describe()}")
    else:
        log(f"# CuPy skipped: {cupy_why}")
    if jdev is not None:
        log(f"# JAX device: {jdev['device']} (jax {jdev['jax']})" + ("" if jax_on else ": JAX checks skipped"))
    try:
        rows = parity(log, "cupy", names) if be is not None else []
        jrows = parity(log, "jax", names) if jax_on else []
    except BlursimError as e:
        print(f"gpu_check: {e}")
        return 2
    bench = None
    if not args.skip_bench:
        from blursim.cli.bench import run_benchmark

        kw = dict(species=(1, 2), quick=True, fitness_species=2) if args.quick else dict(rounds=1, min_time=1.0)
        bench = run_benchmark("cupy" if be is not None else "jax", jax=jax_on, log=log, **kw)
    out = {"device": None if be is None else be.describe(), "jax_device": jdev if jax_on else None,
           "parity": rows, "jax_parity": jrows, "bench": bench, "seconds": time.perf_counter() - t0}
    if args.json:
        from blursim.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(out, indent=2) + "\n")
    lines = []
    if be is not None:
        lines += ["", *_table("CuPy vs NumPy parity (max relative difference over synapses and outputs)", rows)]
    if jax_on:
        lines += ["", *_table(f"JAX ({jdev['device']}) vs NumPy parity (max relative difference over synapses "
                              "and outputs)", jrows)]
    print("\n".join(lines[1:]))
    print(f"tolerances: float64 {TOL['float64']:.0e}, float32 {TOL['float32']:.0e}")
    if bench is not None:
        from blursim.cli.bench import format_table

        print()
        print(format_table(bench))
    print(f"\ngpu_check finished in {time.perf_counter() - t0:.0f} s")
    return 0 if all(r["ok"] for r in rows + jrows) else 1


if __name__ == "__main__":
    sys.exit(main())
