#!/usr/bin/env python
"""GPU check: CuPy and the JAX engine against NumPy on every example spec, the meta-gradient
against the CPU's, then the benchmark.

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
3. The gradient path (when JAX's default device is a GPU; ``--jax-cpu``: on its CPU too):
   the Sec. 3.3 meta-loss of ``paper-es`` (or the first ``--specs`` network) through a short
   unroll (T = 5; ``--quick``: 2) and its ``value_and_grad`` in the eight core genome fields,
   compiled and run on JAX's default device in float64 and float32, against the same
   ``value_and_grad`` on JAX's CPU in float64: the largest difference of the gradient relative
   to its largest entry (float64 to 1e-8, float32 to 1e-2: rounding compounds through the
   unroll and its reverse pass), and the median time of one call on each device. On a GPU
   whose float32 products run in TF32 (JAX's default precision there), a float32 failure
   that passes with ``JAX_DEFAULT_MATMUL_PRECISION=highest`` is that rounding, not a bug.
   The same meta-gradient on the NumPy engine (``blursim.sim.adjoint``, the host's CPUs; the
   default engine on one CPU device) in float64 and float32 joins the table: an independent
   implementation of the derivative against the same reference, and its time.
4. The benchmark, one round: ``blursim bench --backend cupy`` with the JAX
   engine's rows (step vs Simulator, meta-gradient vs forward unroll) when JAX
   is on the GPU too, or ``blursim bench --backend jax`` (JAX rows only) when
   only JAX sees a GPU.

Finishes in well under 5 minutes on one GPU (most of it compiling kernels on
first use). Prints a short table last; exits 1 if a parity or gradient check fails, 2 if
neither CuPy nor JAX has a GPU (without ``--jax-cpu``), naming what is missing;
a JAX without a GPU skips the gradient check with one line saying so.
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
GRAD_TOL = {"float64": 1e-8, "float32": 1e-2}


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


def _grad_workload(spec: dict, T: int, B: int, dtype: str, device):
    """:class:`blursim.bench.jax_rows.GradWorkload` of ``spec`` compiled for ``device``, on a
    stand-in task with as many classes as the network has outputs."""
    import jax

    from blursim.bench.jax_rows import GradWorkload
    from blursim.bench.workloads import synthetic_dataset
    from blursim.graph import compile_network
    from blursim.spec import load_network

    prog = compile_network(load_network(spec))
    ds = synthetic_dataset(prog.n_features, prog.pops[prog.outputs[0]].size)
    with jax.default_device(device):
        return GradWorkload(spec, T, dtype, B=B, dataset=ds)


def _value_and_grad(gw) -> tuple[float, np.ndarray]:
    (loss, _aux), grad = gw.grad(*gw.args)
    return float(loss), np.asarray(grad, dtype=np.float64)


def gradient(log, name: str, spec: dict, T: int, B: int, reps: int = 5) -> list[dict]:
    """The meta-gradient through ``T`` steps on JAX's default device (float64 and float32)
    against JAX's CPU in float64, and the time of one ``value_and_grad`` on each."""
    import statistics

    import jax

    from blursim.sim.jax_engine import precision

    def timed(gw) -> float:
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            jax.block_until_ready(gw.grad(*gw.args))
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    cpu, dev = jax.devices("cpu")[0], jax.devices()[0]
    with precision("float64"):
        ref = _grad_workload(spec, T, B, "float64", cpu)
        ref_loss, ref_grad = _value_and_grad(ref)
        cpu_s = timed(ref)
    scale = max(1e-30, float(np.abs(ref_grad).max()))
    rows = []
    for dtype in ("float64", "float32"):
        with precision(dtype):
            t0 = time.perf_counter()
            gw = _grad_workload(spec, T, B, dtype, dev)
            compile_s = time.perf_counter() - t0
            loss, grad = _value_and_grad(gw)
            dev_s = timed(gw)
        err = float(np.abs(grad - ref_grad).max()) / scale if np.isfinite(grad).all() else float("inf")
        ok = bool(err <= GRAD_TOL[dtype])
        rows.append({"spec": name, "dtype": dtype, "unroll": T, "batch": B, "device": str(dev),
                     "loss": loss, "loss_cpu_float64": ref_loss, "grad_max_rel_err": err, "tol": GRAD_TOL[dtype],
                     "ok": ok, "seconds_per_value_and_grad": dev_s, "cpu_float64_seconds": cpu_s,
                     "compile_seconds": compile_s, "grad_dim": int(grad.size)})
        log(f"# gradient {name} T={T} {dtype} on {dev}: {err:.2e} against CPU float64 (tol "
            f"{GRAD_TOL[dtype]:.0e}) {'ok' if ok else 'FAIL'}; {1e3 * dev_s:.1f} ms per value_and_grad "
            f"(CPU float64 {1e3 * cpu_s:.1f} ms)")
    rows.extend(numpy_engine(log, name, spec, T, B, ref_grad, cpu_s, reps))
    return rows


def numpy_engine(log, name: str, spec: dict, T: int, B: int, ref_grad: np.ndarray, cpu_s: float,
                 reps: int = 5) -> list[dict]:
    """The NumPy meta-gradient engine (``blursim.sim.adjoint``, the host's CPUs) on the same
    meta-loss, float64 and float32, against JAX's CPU float64 gradient ``ref_grad``: a second,
    independent implementation of the same derivative, and its time beside JAX's."""
    import statistics

    from blursim.bench.jax_rows import AdjointWorkload
    from blursim.bench.workloads import synthetic_dataset
    from blursim.graph import compile_network
    from blursim.spec import load_network

    prog = compile_network(load_network(spec))
    ds = synthetic_dataset(prog.n_features, prog.pops[prog.outputs[0]].size)
    scale = max(1e-30, float(np.abs(ref_grad).max()))
    rows = []
    for dtype in ("float64", "float32"):
        aw = AdjointWorkload(spec, T, dtype, B=B, dataset=ds)
        loss, grad = aw.value_and_grad()
        fn, ts = aw.fn(True), []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        sec = statistics.median(ts)
        err = float(np.abs(grad - ref_grad).max()) / scale if np.isfinite(grad).all() else float("inf")
        ok = bool(err <= GRAD_TOL[dtype])
        rows.append({"spec": name, "dtype": dtype, "unroll": T, "batch": B, "device": "numpy engine (host CPUs)",
                     "loss": loss, "grad_max_rel_err": err, "tol": GRAD_TOL[dtype], "ok": ok,
                     "seconds_per_value_and_grad": sec, "cpu_float64_seconds": cpu_s, "grad_dim": int(grad.size)})
        log(f"# gradient {name} T={T} {dtype} on the NumPy engine: {err:.2e} against JAX CPU float64 (tol "
            f"{GRAD_TOL[dtype]:.0e}) {'ok' if ok else 'FAIL'}; {1e3 * sec:.1f} ms per value_and_grad")
    return rows


def _grad_table(rows: list[dict]) -> list[str]:
    lines = [f"meta-gradient value_and_grad on {rows[0]['device']} and on the NumPy engine vs JAX CPU float64 "
             f"({rows[0]['spec']}, T = {rows[0]['unroll']}, batch {rows[0]['batch']}, {rows[0]['grad_dim']} meta-parameters)",
             f"{'engine':<7} {'dtype':<8} {'max rel err':>11} {'tol':>7} {'ms/call':>9} {'CPU f64 ms':>10}  result"]
    for r in rows:
        eng = "numpy" if r["device"].startswith("numpy") else "jax"
        lines.append(f"{eng:<7} {r['dtype']:<8} {r['grad_max_rel_err']:>11.1e} {r['tol']:>7.0e} "
                     f"{1e3 * r['seconds_per_value_and_grad']:>9.1f} {1e3 * r['cpu_float64_seconds']:>10.1f}  "
                     f"{'ok' if r['ok'] else 'FAIL'}")
    return lines


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
        grows = []
        if jax_on:
            gname, gspec, _ = _cases("jax", names[:1] if names else ["paper-es"])[0]
            grows = gradient(log, gname, gspec, 2 if args.quick else 5, 32 if args.quick else 128)
        else:
            print("gpu_check: gradient check skipped: "
                  + ("JAX is not installed (pip install -e \".[jax]\")" if jdev is None else
                     f"JAX has no GPU (its device: {jdev['device']}; --jax-cpu runs it there)"), flush=True)
    except BlursimError as e:
        print(f"gpu_check: {e}")
        return 2
    bench = None
    if not args.skip_bench:
        from blursim.cli.bench import run_benchmark

        kw = dict(species=(1, 2), quick=True, fitness_species=2) if args.quick else dict(rounds=1, min_time=1.0)
        bench = run_benchmark("cupy" if be is not None else "jax", jax=jax_on, log=log, **kw)
    out = {"device": None if be is None else be.describe(), "jax_device": jdev if jax_on else None,
           "parity": rows, "jax_parity": jrows, "gradient": grows, "bench": bench, "seconds": time.perf_counter() - t0}
    if args.json:
        from blursim.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(out, indent=2) + "\n")
    lines = []
    if be is not None:
        lines += ["", *_table("CuPy vs NumPy parity (max relative difference over synapses and outputs)", rows)]
    if jax_on:
        lines += ["", *_table(f"JAX ({jdev['device']}) vs NumPy parity (max relative difference over synapses "
                              "and outputs)", jrows)]
    if grows:
        lines += ["", *_grad_table(grows)]
    print("\n".join(lines[1:]))
    print(f"tolerances: float64 {TOL['float64']:.0e}, float32 {TOL['float32']:.0e}")
    if bench is not None:
        from blursim.cli.bench import format_table

        print()
        print(format_table(bench))
    print(f"\ngpu_check finished in {time.perf_counter() - t0:.0f} s")
    return 0 if all(r["ok"] for r in rows + jrows + grows) else 1


if __name__ == "__main__":
    sys.exit(main())
