#!/usr/bin/env python
"""Cheap routes for the JAX engine's step on a CPU (issue 25 items 1-2): XLA flags and JAX config,
each measured in its own process (XLA reads its flags once) with the benchmark's workloads.

    python tools/jax_routes.py [--json routes.json] [--species 1,80] [--unroll 10,50] [--pairs 3]
                               [--routes default] [--products xla,blas]

For every route, in a fresh process with that route's ``XLA_FLAGS`` / JAX config: the JAX
training step of ``paper-es`` against the fast NumPy engine's, back to back (``--pairs``
pairs per S), and the meta-gradient through ``--unroll`` steps against its forward unroll and
against the fast engine's ``T`` training steps (:mod:`blursim.bench.jax_rows`). Only ratios
of back-to-back pairs are reported: on a shared machine the absolute times drift, the ratios
less. The orchestrator and the kernels are unchanged; the routes change how XLA compiles them.

``best_ratio`` (with ``--products``): the same ratios from the fastest call of each timed thing
over all pairs -- on a machine shared with other work, the calls least slowed by it.

``--products xla,blas``: inside each route's process, the JAX rows are measured for every
product route of :mod:`blursim.sim.jax_blas` (XLA's dots, or NumPy's BLAS through a host
callback with an exact derivative), interleaved in every pair (fast, xla, blas, fast, ...):
the JSON then has one entry per product route under ``"products"``, with the XLA peak and,
for the BLAS route, the host memory its callbacks allocate (tracemalloc) during one call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: name -> (XLA_FLAGS added, JAX config updates)
ROUTES = {
    "default": ("", {}),
    "eigen single thread": ("--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1", {}),
    "xnnpack dots": ("--xla_cpu_use_xnnpack=true", {}),
    "onednn dots": ("--xla_cpu_use_onednn=true", {}),
    "fast math": ("--xla_cpu_enable_fast_math=true", {}),
    "matmul precision highest": ("", {"jax_default_matmul_precision": "highest"}),
}


def product_overhead(products, n: int = 50, reps: int = 20) -> dict:
    """Microseconds per product of a jitted chain of ``n`` tiny forward-drive products
    (``(1, 1, 4, 4, 2)`` operands) on each product route: the fixed cost of one product, which
    for the BLAS route is the host callback's (JAX's hand-off, the operands' transfer, the
    host side of :func:`blursim.sim.jax_blas.mm`). ``"callback floor"``: a ``jax.pure_callback``
    of the same two operands whose host function only returns one of them -- what JAX's callback
    costs whatever the callback does."""
    import time

    import jax
    import jax.numpy as jnp

    from blursim.sim.jax_blas import contract

    spec = "srijc,srbic->srbjc"
    a = jnp.full((1, 1, 4, 4, 2), 0.25, jnp.float32)
    import numpy as np

    shape = jax.ShapeDtypeStruct(a.shape, a.dtype)
    route = {"xla": lambda u, v: jnp.einsum(spec, u, v), "blas": lambda u, v: contract(spec, u, v),
             "callback floor": lambda u, v: jax.pure_callback(lambda x, y: np.asarray(y), shape, u, v,
                                                                vmap_method="expand_dims")}
    out = {}
    for p in tuple(products) + ("callback floor",):
        def chain(u, v, f=route[p]):
            for _ in range(n):
                v = f(u, v)
            return v
        fn = jax.jit(chain)
        fn(a, a).block_until_ready()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn(a, a).block_until_ready()
            ts.append(time.perf_counter() - t0)
        out[p] = {"median_us": 1e6 * statistics.median(ts) / n, "best_us": 1e6 * min(ts) / n}
    return out


def host_share(jw, calls: int = 3) -> dict:
    """Where one BLAS-route step of the workload ``jw`` (a :class:`~blursim.bench.jax_rows.JaxWorkload`
    with ``products="blas"``) spends its time: milliseconds per step in all, inside the host side
    of its products (:func:`blursim.sim.jax_blas._host_mm`: copies and ``gemm``), and the number of
    products per step. The rest is XLA's part of the step and JAX's callback hand-offs."""
    import time

    from blursim.sim import jax_blas

    inner, spent = jax_blas._host_mm, [0.0, 0]

    def timed(*args, **kw):
        t0 = time.perf_counter()
        try:
            return inner(*args, **kw)
        finally:
            spent[0] += time.perf_counter() - t0
            spent[1] += 1

    fn, _ = jw.step_fn(True)
    fn()
    jax_blas._host_mm = timed
    try:
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        total = time.perf_counter() - t0
    finally:
        jax_blas._host_mm = inner
    return {"step_ms": 1e3 * total / calls, "host_products_ms": 1e3 * spent[0] / calls,
            "products_per_step": spent[1] // calls}


def measure(species, unrolls, pairs: int, min_time: float, config: dict, products=("xla",)) -> dict:
    """The ratios of one route (run in the route's own process), for every product route
    (interleaved in each pair); the first product route's numbers also at the top level."""
    import jax

    for k, v in config.items():
        jax.config.update(k, v)
    from blursim.backend import get_backend
    from blursim.bench import jax_rows
    from blursim.bench.timing import time_fn
    from blursim.bench.workloads import PAPER_ES, Workload

    be = get_backend("numpy", "float32")
    best: dict = {}  # the fastest call of each timed thing, over every pair: least touched by other tenants

    def med(fn, reset=None, name=None, **kw):
        ts = time_fn(fn, be, min_time, reset=reset, **kw)
        if name is not None:
            best[name] = min(best.get(name, float("inf")), min(ts))
        return statistics.median(ts)

    res = {p: {"step_speed_ratio": {}, "step_pairs": {}, "step_ms": {}, "step_peak_bytes": {}, "unrolls": {},
               "best_ratio": {}} for p in products}
    for S in species:
        w = Workload(PAPER_ES, S, be)
        jws = {p: jax_rows.JaxWorkload(w, products=p) for p in products}
        r = {p: [] for p in products}
        ms = {p: [] for p in products}
        for _ in range(pairs):
            t_fast = med(*w.step_fn(True), name=("fast", S))
            for p in products:
                t_jax = med(*jws[p].step_fn(True), name=(p, S))
                r[p].append(t_fast / t_jax)
                ms[p].append((1e3 * t_fast, 1e3 * t_jax))
        for p in products:
            res[p]["step_speed_ratio"][str(S)] = statistics.median(r[p])
            res[p]["step_pairs"][str(S)] = r[p]
            res[p]["step_ms"][str(S)] = ms[p]
            res[p]["best_ratio"][f"step S={S}"] = best[("fast", S)] / best[(p, S)]
            if p == "blas":
                res[p].setdefault("host_share", {})[str(S)] = host_share(jws[p])
            res[p]["step_peak_bytes"][str(S)] = {"xla": jws[p].memory(True),
                                                 "host": jax_rows.host_peak_bytes(jws[p].step_fn(True)[0])}
        del jws
    w1 = Workload(PAPER_ES, 1, be)
    kw = dict(min_reps=3, max_reps=30)
    for T in unrolls:
        gs = {p: jax_rows.GradWorkload(PAPER_ES, T, products=p) for p in products}
        vf = {p: [] for p in products}
        vfast = {p: [] for p in products}
        ms = {p: [] for p in products}
        for _ in range(pairs):
            t_u = med(*jax_rows.fast_unroll(w1, T), reset_every=1, name=("fast", "T", T), **kw)
            for p in products:
                t_f, t_g = med(gs[p].fn(False), name=(p, "f", T), **kw), med(gs[p].fn(True), name=(p, "g", T), **kw)
                vf[p].append(t_g / t_f)
                vfast[p].append(t_g / t_u)
                ms[p].append((1e3 * t_u, 1e3 * t_f, 1e3 * t_g))
        for p in products:
            res[p]["best_ratio"][f"value_and_grad / forward T={T}"] = best[(p, "g", T)] / best[(p, "f", T)]
            res[p]["best_ratio"][f"value_and_grad / fast unroll T={T}"] = best[(p, "g", T)] / best[("fast", "T", T)]
            res[p]["unrolls"][str(T)] = {
                "grad_over_forward": statistics.median(vf[p]), "grad_over_fast_unroll": statistics.median(vfast[p]),
                "pairs_grad_over_forward": vf[p], "pairs_grad_over_fast_unroll": vfast[p],
                "ms_fast_forward_grad": ms[p],
                "peak_bytes": {"forward": jax_rows.xla_bytes(gs[p].forward), "grad": jax_rows.xla_bytes(gs[p].grad),
                               "grad_host": jax_rows.host_peak_bytes(gs[p].fn(True)),
                               "fast_unroll": w1.memory(True)}}
    first = res[products[0]]
    T0 = str(unrolls[0])
    out = {"step_speed_ratio": first["step_speed_ratio"], "step_ms": first["step_ms"], "unroll": unrolls[0],
           "grad_over_forward": first["unrolls"][T0]["grad_over_forward"],
           "grad_over_fast_unroll": first["unrolls"][T0]["grad_over_fast_unroll"],
           "grad_peak_bytes": first["unrolls"][T0]["peak_bytes"]["grad"]}
    if len(products) > 1 or products[0] != "xla":
        out["products"] = res
        out["product_overhead"] = product_overhead(products)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--species", default="1,80")
    ap.add_argument("--unroll", default="10", help="comma-separated unroll lengths T")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("--routes", default=",".join(ROUTES), help="comma-separated route names, in order (a name may repeat: A,B,A,B)")
    ap.add_argument("--products", default="xla", help="comma-separated product routes measured in each process "
                    "(xla, blas), interleaved")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    species = [int(s) for s in a.species.split(",")]
    unrolls = [int(t) for t in a.unroll.split(",")]
    products = tuple(p.strip() for p in a.products.split(",") if p.strip())
    if a.child is not None:
        print(json.dumps(measure(species, unrolls, a.pairs, a.min_time, ROUTES[a.child][1], products)))
        return 0
    res = {"load_average_before": os.getloadavg()[0], "cpus": os.cpu_count(), "routes": []}
    for name in [r.strip() for r in a.routes.split(",") if r.strip()]:
        flags, config = ROUTES[name]
        env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + flags).strip(),
                   JAX_ENABLE_COMPILATION_CACHE="false")
        argv_child = [sys.executable, __file__, "--child", name, "--species", a.species, "--unroll", a.unroll,
                      "--pairs", str(a.pairs), "--min-time", str(a.min_time), "--products", a.products]
        p = subprocess.run(argv_child, env=env, capture_output=True, text=True, cwd=ROOT)
        if p.returncode != 0:
            why = (p.stderr.strip().splitlines() or ["no output"])[-1]
            res["routes"].append({"route": name, "xla_flags": flags, "config": config, "error": why})
            print(f"{name:<26} failed: {why}", flush=True)
            continue
        r = json.loads(p.stdout.strip().splitlines()[-1])
        r.update(route=name, xla_flags=flags, config=config, load_average_after=os.getloadavg()[0])
        res["routes"].append(r)
        for p, pr in (r.get("products") or {"xla": None}).items():
            pr = pr or {"step_speed_ratio": r["step_speed_ratio"],
                        "unrolls": {str(r["unroll"]): {k: r[k] for k in ("grad_over_forward", "grad_over_fast_unroll")}}}
            steps = ", ".join(f"S = {S} {v:.2f}x" for S, v in pr["step_speed_ratio"].items())
            grads = "; ".join(f"T = {T}: value_and_grad / forward {u['grad_over_forward']:.2f}x, / fast engine's "
                              f"steps {u['grad_over_fast_unroll']:.2f}x" for T, u in pr["unrolls"].items())
            print(f"{name:<26} products {p}: JAX step / fast step speed {steps}; {grads} "
                  f"(load {r['load_average_after']:.1f})", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
