#!/usr/bin/env python
"""Cheap routes for the JAX engine's step on a CPU (issue 25 items 1-2): XLA flags and JAX config,
each measured in its own process (XLA reads its flags once) with the benchmark's workloads.

    python tools/jax_routes.py [--json routes.json] [--species 1,80] [--unroll 10] [--pairs 3]

For every route, in a fresh process with that route's ``XLA_FLAGS`` / JAX config: the JAX
training step of ``paper-es`` against the fast NumPy engine's, back to back (``--pairs``
pairs per S), and the meta-gradient through ``--unroll`` steps against its forward unroll and
against the fast engine's ``T`` training steps (:mod:`blursim.bench.jax_rows`). Only ratios
of back-to-back pairs are reported: on a shared machine the absolute times drift, the ratios
less. The orchestrator and the kernels are unchanged; the routes change how XLA compiles them.
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


def measure(species, T: int, pairs: int, min_time: float, config: dict) -> dict:
    """The ratios of one route (run in the route's own process)."""
    import jax

    for k, v in config.items():
        jax.config.update(k, v)
    from blursim.backend import get_backend
    from blursim.bench import jax_rows
    from blursim.bench.timing import time_fn
    from blursim.bench.workloads import PAPER_ES, Workload

    be = get_backend("numpy", "float32")
    med = lambda fn, reset=None, **kw: statistics.median(time_fn(fn, be, min_time, reset=reset, **kw))  # noqa: E731
    out = {"step_speed_ratio": {}, "step_ms": {}}
    for S in species:
        w = Workload(PAPER_ES, S, be)
        jw = jax_rows.JaxWorkload(w)
        r, ms = [], []
        for _ in range(pairs):
            t_fast, t_jax = med(*w.step_fn(True)), med(*jw.step_fn(True))
            r.append(t_fast / t_jax)
            ms.append((1e3 * t_fast, 1e3 * t_jax))
        out["step_speed_ratio"][str(S)] = statistics.median(r)
        out["step_ms"][str(S)] = ms
    g = jax_rows.GradWorkload(PAPER_ES, T)
    w1 = Workload(PAPER_ES, 1, be)
    vf, vfast = [], []
    for _ in range(pairs):
        kw = dict(min_reps=3, max_reps=30)
        t_f, t_g = med(g.fn(False), **kw), med(g.fn(True), **kw)
        t_u = med(*jax_rows.fast_unroll(w1, T), reset_every=1, **kw)
        vf.append(t_g / t_f)
        vfast.append(t_g / t_u)
    out.update(unroll=T, grad_over_forward=statistics.median(vf), grad_over_fast_unroll=statistics.median(vfast),
               grad_peak_bytes=jax_rows.xla_bytes(g.grad))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--species", default="1,80")
    ap.add_argument("--unroll", type=int, default=10)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("--routes", default=",".join(ROUTES), help="comma-separated route names, in order (a name may repeat: A,B,A,B)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    species = [int(s) for s in a.species.split(",")]
    if a.child is not None:
        print(json.dumps(measure(species, a.unroll, a.pairs, a.min_time, ROUTES[a.child][1])))
        return 0
    res = {"load_average_before": os.getloadavg()[0], "cpus": os.cpu_count(), "routes": []}
    for name in [r.strip() for r in a.routes.split(",") if r.strip()]:
        flags, config = ROUTES[name]
        env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + flags).strip(),
                   JAX_ENABLE_COMPILATION_CACHE="false")
        argv_child = [sys.executable, __file__, "--child", name, "--species", a.species, "--unroll", str(a.unroll),
                      "--pairs", str(a.pairs), "--min-time", str(a.min_time)]
        p = subprocess.run(argv_child, env=env, capture_output=True, text=True, cwd=ROOT)
        if p.returncode != 0:
            why = (p.stderr.strip().splitlines() or ["no output"])[-1]
            res["routes"].append({"route": name, "xla_flags": flags, "config": config, "error": why})
            print(f"{name:<26} failed: {why}", flush=True)
            continue
        r = json.loads(p.stdout.strip().splitlines()[-1])
        r.update(route=name, xla_flags=flags, config=config, load_average_after=os.getloadavg()[0])
        res["routes"].append(r)
        steps = ", ".join(f"S = {S} {v:.2f}x" for S, v in r["step_speed_ratio"].items())
        print(f"{name:<26} JAX step / fast step speed {steps}; T = {r['unroll']}: value_and_grad / forward "
              f"{r['grad_over_forward']:.2f}x, / fast engine's steps {r['grad_over_fast_unroll']:.2f}x "
              f"(load {r['load_average_after']:.1f})", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
