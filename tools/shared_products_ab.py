#!/usr/bin/env python
"""The fast engine's shared input products on and off, timed in one process (issue 25 item 5).

A shared machine drifts by tens of percent between minutes, so the two ways of computing a
projection from an input's Hebbian terms (:attr:`blursim.sim.fast.FastKernels.share_input_products`:
``k`` products ``G^d = x^T a^d`` shared by ``W`` and ``V``, or one product per update as before)
are timed alternately on the same simulator, the same synapses and the same batch: rounds of
``--reps`` training steps, on / off / off / on ..., and the median of the rounds' ratios
``on / off`` per ``S`` (the benchmark's ``paper-es`` workload: 196 -> 512 -> 10, k = 2, batch 128,
float32). ``--fitness S`` also alternates whole Sec. 4.4 fitness evaluations (15 training
steps and 20 query batches of 128 for ``S`` genomes, the benchmark's ``fitness`` row).

    python tools/shared_products_ab.py --species 1,80 --rounds 8 --fitness 80 --out ab.json

``--fold-probe N`` first times what folding species into larger products would buy at these
shapes, single-threaded: the forward product ``x @ W`` of ``N`` slices (``128 x 196 @ 196 x 512``
each) as ``N`` BLAS calls, and as one ``128 x 196 @ 196 x (N 512)`` product on a copy of the
synapses in a folded layout; and a 1024^2 product for scale (GFLOP/s of each, median of repeats).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def _alternate(run, kernels_of, rounds: int) -> dict:
    """``run()`` timed with the shared products on and off, alternating which goes first."""
    t = {True: [], False: []}
    for i in range(rounds):
        for on in (True, False) if i % 2 == 0 else (False, True):
            for K in kernels_of():
                K.share_input_products = on
            t0 = time.perf_counter()
            run()
            t[on].append(time.perf_counter() - t0)
    ratios = [a / b for a, b in zip(t[True], t[False])]
    return {"on_s": t[True], "off_s": t[False], "on_over_off": statistics.median(ratios), "ratios": ratios}


def fold_probe(backend, n: int, repeats: int = 30) -> dict:
    """GFLOP/s of ``n`` per-slice products against one folded product, and of a 1024^2 GEMM."""
    import numpy as np

    rng = np.random.default_rng(0)
    B, n_in, n_h = 128, 196, 512
    x = rng.standard_normal((B, n_in), dtype=np.float32)
    W = rng.standard_normal((n, n_in, n_h), dtype=np.float32)
    Wf = np.ascontiguousarray(W.transpose(1, 0, 2)).reshape(n_in, n * n_h)  # the folded layout
    z, zf = np.empty((n, B, n_h), np.float32), np.empty((B, n * n_h), np.float32)
    A = rng.standard_normal((1024, 1024), dtype=np.float32)
    C = np.empty_like(A)

    def per_slice():
        for s in range(n):
            np.matmul(x, W[s], out=z[s])

    def rate(fn, flops):
        fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return flops / statistics.median(ts) / 1e9

    fl = 2.0 * B * n_in * n_h * n
    with backend.blas_threads(1):
        out = {"per_slice_gflops": rate(per_slice, fl),
               "folded_gflops": rate(lambda: np.matmul(x, Wf, out=zf), fl),
               "gemm_1024_gflops": rate(lambda: np.matmul(A, A, out=C), 2.0 * 1024 ** 3)}
    print(f"fold probe, {n} slices of 128 x 196 @ 196 x 512, one thread: per slice "
          f"{out['per_slice_gflops']:.1f} GFLOP/s, folded {out['folded_gflops']:.1f} GFLOP/s, "
          f"1024^2 GEMM {out['gemm_1024_gflops']:.1f} GFLOP/s", flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--species", default="1,80", help="comma-separated S of the training-step rows (default 1,80)")
    p.add_argument("--rounds", type=int, default=8, help="on/off rounds per row (default 8)")
    p.add_argument("--reps", type=int, default=0, help="steps per round (default: about 0.5 s of steps)")
    p.add_argument("--fitness", type=int, default=0, help="also alternate fitness evaluations of S genomes")
    p.add_argument("--fitness-rounds", type=int, default=3, help="on/off rounds of the fitness row (default 3)")
    p.add_argument("--fold-probe", type=int, default=0, metavar="N",
                   help="first time N per-slice products against one folded product")
    p.add_argument("--out", type=Path, help="write the samples and ratios as JSON")
    args = p.parse_args(argv)
    try:
        species = [int(s) for s in args.species.split(",") if s]
    except ValueError:
        p.error(f"--species: {args.species!r} is not a comma-separated list of integers")
    if args.rounds < 1 or args.reps < 0 or args.fitness < 0 or (species and min(species) < 1):
        p.error("--rounds and --species must be >= 1, --reps and --fitness >= 0")

    from blursim.backend import get_backend
    from blursim.bench.workloads import PAPER_ES, Workload, fitness_workload

    be = get_backend("numpy", "float32")
    res = {"rows": {}, "command": " ".join(sys.argv), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    if args.fold_probe:
        res["fold_probe"] = [fold_probe(be, args.fold_probe) for _ in range(3)]
    for S in species:
        w = Workload(PAPER_ES, S, be)
        fn, reset = w.step_fn(True)
        for _ in range(3):
            fn()
        reps = args.reps
        if not reps:
            t0 = time.perf_counter()
            fn()
            reps = max(1, int(0.5 / max(time.perf_counter() - t0, 1e-6)))

        def steps(fn=fn, reset=reset, reps=reps):
            reset()
            for _ in range(reps):
                fn()
        r = _alternate(steps, lambda w=w: [w.sim.kernels], args.rounds)
        r["reps"] = reps
        res["rows"][f"paper-es train S={S}"] = r
        print(f"paper-es train S={S}: {reps} steps per round, on {1e3 * statistics.median(r['on_s']) / reps:.2f} "
              f"ms/step, off {1e3 * statistics.median(r['off_s']) / reps:.2f} ms/step, on/off (median of "
              f"{args.rounds} rounds) {r['on_over_off']:.3f}", flush=True)
    if args.fitness:
        fn, _, w = fitness_workload(be, args.fitness)
        r = _alternate(fn, lambda: [w.sim.kernels], args.fitness_rounds)
        res["rows"][f"fitness S={args.fitness}"] = r
        on, off = statistics.median(r["on_s"]), statistics.median(r["off_s"])
        print(f"fitness S={args.fitness}: on {on:.2f} s ({args.fitness / on:.1f} genome-evaluations/s), off "
              f"{off:.2f} s ({args.fitness / off:.1f}), on/off (median of {args.fitness_rounds} rounds) "
              f"{r['on_over_off']:.3f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
