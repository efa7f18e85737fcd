"""``blursim bench`` (also ``python tools/bench.py``): how fast one BLUR step is, honestly.

One run measures, on the chosen backend:

- ``roofline``: the machine's float32 matrix-product rate (square GEMM, best
  of several sizes and repeats), measured in this run;
- ``paper-es``: populations (196, 512, 10), k = 2, batch 128, the paper's
  default rules (additive backward update, untied multi-channel synapses,
  relu∘tanh hidden, tanh output), float32, R = 1, for S species: the full
  training step and the forward-only step, as genome-steps/s, GFLOP/s
  counted with the *minimal* FLOPs (:meth:`Simulator.flops`) and % of the
  roofline;
- ``paper-es train no BLAS binding``: the same training step on a NumPy
  backend without the direct BLAS binding (``numpy.matmul`` products, BLAS
  threads limited through threadpoolctl: what NumPy on MKL or Accelerate
  gets), measured back to back with the ``train`` row in every round; the
  binding's speed-up is the median of those pairs' ratios (NumPy backend with
  the binding only);
- ``paper-es products only``: the same training step's matrix products
  alone, scheduled as the simulator schedules them (same operators, species
  chunks, threads and update jobs) on fixed states: the ceiling this BLAS
  sets at these shapes, so that the table separates what the products cost
  from what everything else in the step costs;
- ``fitness``: the Sec. 4.4 evaluation of a population of 80 (15 training
  steps, then 20 query batches of 128), in genome-evaluations/s;
- ``local-sparse``: 28x28 -> 28x28 (local2d, radius 2) -> 10, run with
  block tiles and, in the same run, as masked dense; the speed ratio and the
  block density;
- with the ``jax`` extra (:mod:`blursim.cli.bench_jax`; ``--no-jax`` leaves them
  out, ``--backend jax`` runs only them): ``paper-es train jax``, the JAX
  engine's training step back to back with the Simulator's at every S, and
  ``meta-gradient forward / value_and_grad``, the Sec. 3.3 meta-loss through
  T-step unrolls (``--unrolls``) and its exact gradient, back to back;
- peak memory of every row (NumPy: ``tracemalloc`` peak of one step from
  fresh synapses; CuPy: memory-pool bytes; JAX: XLA's buffer assignment).

Times are the median of repeated steps (the best is reported too); every
row is measured ``--rounds`` times interleaved with the others and the best
round is kept, so that a busy shared machine disturbs the result less.
Prints a table and writes it as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import tracemalloc
from typing import Any

import numpy as np

PAPER_ES = {
    "name": "paper-es",
    "description": "Sec. 4.4 workload: 196 -> 512 -> 10, paper default rules",
    "k": 2,
    "seed": 0,
    "populations": [
        {"name": "in", "size": 196, "role": "input"},
        {"name": "hidden", "size": 512, "role": "hidden", "forward_activation": "relu_tanh",
         "backward_activation": "relu_tanh"},
        {"name": "out", "size": 10, "role": "output", "forward_activation": "tanh",
         "backward_activation": "tanh"},
    ],
    "projections": [{"from": "in", "to": "hidden"}, {"from": "hidden", "to": "out"}],
    "rules": {"backward_update": "additive", "tied": False, "shared_channels": False, "feedback": "target"},
}


def local_sparse_spec(radius: float = 2.0) -> dict:
    """28x28 -> 28x28 (local2d receptive fields) -> 10, paper default rules."""
    return {
        "name": "local-sparse",
        "k": 2,
        "seed": 0,
        "populations": [
            {"name": "in", "size": 784, "role": "input", "grid": [28, 28]},
            {"name": "hidden", "size": 784, "role": "hidden", "grid": [28, 28],
             "forward_activation": "relu_tanh", "backward_activation": "relu_tanh"},
            {"name": "out", "size": 10, "role": "output", "forward_activation": "tanh",
             "backward_activation": "tanh"},
        ],
        "projections": [
            {"from": "in", "to": "hidden", "connectivity": {"kind": "local2d", "radius": radius}},
            {"from": "hidden", "to": "out"},
        ],
        "rules": {"backward_update": "additive", "tied": False, "shared_channels": False, "feedback": "target"},
    }


# ----------------------------------------------------------------- machine
def machine_info(backend) -> dict[str, Any]:
    from blursim.machine import cpu_model, git_commit, usable_cpus

    commit = git_commit()["commit"]
    info = {"cpu": cpu_model(), "cpus": usable_cpus(), "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform(), "backend": backend.name,
            "commit": commit[:7] if commit else None}
    describe = getattr(backend, "describe", None)
    if describe is not None:
        info.update(describe())
    return info


class Roofline:
    """Best float32 square-GEMM rate (GFLOP/s) on a backend, in ``seconds`` of repeats per call.

    ``sizes``: the matrix orders tried (default 2048 and 3072 on the host, 4096 and 8192 on a
    GPU). The operands are made once and kept, so that repeated short measurements (before and
    after every benchmark row) cost their GEMMs, not the setup.
    """

    def __init__(self, backend, sizes: tuple[int, ...] | None = None) -> None:
        self.backend = backend
        self.sizes = tuple(sizes) if sizes else ((2048, 3072) if backend.on_host else (4096, 8192))
        self._ops: dict[int, tuple] = {}

    def _operands(self, n: int):
        ops = self._ops.get(n)
        if ops is None:
            rng = np.random.default_rng(n)
            a = self.backend.asarray(rng.standard_normal((n, n), dtype=np.float32), dtype=np.float32)
            b = self.backend.asarray(rng.standard_normal((n, n), dtype=np.float32), dtype=np.float32)
            ops = self._ops[n] = (a, b, self.backend.xp.matmul(a, b))
        return ops

    def __call__(self, seconds: float = 1.0, sizes: tuple[int, ...] | None = None) -> float:
        xp, best = self.backend.xp, 0.0
        sizes = tuple(sizes) if sizes else self.sizes
        for n in sizes:
            a, b, c = self._operands(n)
            self.backend.synchronize()
            t_end = time.perf_counter() + seconds / len(sizes)
            reps = 0
            while reps < 2 or time.perf_counter() < t_end:
                t0 = time.perf_counter()
                xp.matmul(a, b, out=c)
                self.backend.synchronize()
                best = max(best, 2.0 * n**3 / (time.perf_counter() - t0) / 1e9)
                reps += 1
        return best


def roofline(backend, seconds: float = 1.0, sizes: tuple[int, ...] | None = None) -> float:
    """Best float32 square-GEMM rate (GFLOP/s) on ``backend`` (see :class:`Roofline`)."""
    return Roofline(backend, sizes)(seconds)


# ------------------------------------------------------------------ timing
def _time(fn, backend, min_time: float, min_reps: int = 5, max_reps: int = 200, reset=None,
          reset_every: int = 16) -> list[float]:
    fn()
    backend.synchronize()
    ts: list[float] = []
    t_end = time.perf_counter() + min_time
    while (len(ts) < min_reps or time.perf_counter() < t_end) and len(ts) < max_reps:
        if reset is not None and len(ts) % reset_every == reset_every - 1:
            reset()
        t0 = time.perf_counter()
        fn()
        backend.synchronize()
        ts.append(time.perf_counter() - t0)
    return ts


class _Peak:
    """Peak bytes allocated while the body runs (tracemalloc on the host, the memory pool on a GPU)."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.peak = 0

    def __enter__(self):
        if self.backend.on_host:
            tracemalloc.start()
            tracemalloc.reset_peak()
        else:
            pool = self.backend.xp.get_default_memory_pool()
            pool.free_all_blocks()
            self._base = pool.total_bytes()
        return self

    def __exit__(self, *exc):
        if self.backend.on_host:
            self.peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        else:
            self.peak = self.backend.xp.get_default_memory_pool().total_bytes() - self._base
        return False


class Workload:
    """A network, a population of genomes and a batch, ready to time."""

    def __init__(self, spec: dict, S: int, backend, *, sparse: str = "auto", B: int = 128, seed: int = 0):
        from blursim.genome import make_preset
        from blursim.genome.arrays import stack_genomes
        from blursim.graph import compile_network
        from blursim.sim import Simulator
        from blursim.spec import load_network

        self.backend = backend
        self.prog = compile_network(load_network(spec))
        self.sim = Simulator(self.prog, backend=backend, sparse=sparse)
        gs = [make_preset("random", k=self.prog.k, groups=self.prog.groups, seed=seed + s, lr=0.01)
              for s in range(S)]
        self.genomes = stack_genomes(gs, k=self.prog.k, groups=self.prog.groups)
        self.S, self.B = S, B
        rng = np.random.default_rng(seed)
        nf = self.prog.n_features
        n_out = self.prog.pops[self.prog.outputs[0]].size
        self.x = rng.standard_normal((B, nf))
        self.y = rng.integers(0, n_out, B)
        self.xd = backend.asarray(self.x)

    def fresh(self):
        genes = self.sim.prepare(self.genomes)
        return genes, self.sim.init_synapses(genes, replicas=1, seed=0)

    def memory(self, train: bool) -> int:
        """Bytes of the synapses plus the peak of what one step allocates (buffers included)."""
        genes, st = self.fresh()
        with _Peak(self.backend) as pk:
            if train:
                self.sim.train_step(st, genes, self.xd, self.y)
            else:
                self.sim.forward(st, genes, self.xd)
            self.backend.synchronize()
        return pk.peak + self.sim.synapse_bytes(st)

    def step_fn(self, train: bool, monitor=None):
        """``(step, reset)``: one timed step (with ``monitor`` passed to the training step), and an
        untimed restart from the initial synapses."""
        genes, st = self.fresh()
        st0 = st.copy()
        sim, xd, y = self.sim, self.xd, self.y
        if train:
            def fn():
                sim.train_step(st, genes, xd, y, monitor=monitor)
        else:
            def fn():
                sim.forward(st, genes, xd)

        def reset():  # keep values in the range of a real run however long we time
            for dst, src in zip(st.W + st.b + st.V, st0.W + st0.b + st0.V):
                if dst is not None:
                    dst[...] = src
        return fn, reset


def products_only(w: Workload):
    """``(fn, None)``: only the matrix products of one training step of ``w``, scheduled as the simulator
    schedules them (the same operators, species chunks and threads, update jobs), on fixed random
    states. What the step would cost if everything but its products were free: a ceiling."""
    sim, prog, be = w.sim, w.prog, w.backend
    _, st = w.fresh()
    S, B, k = w.S, w.B, sim.k
    rng = np.random.default_rng(2)
    a = {}
    for p in prog.pops:
        shape = (1, 1, 1, B, p.size) if p.role == "input" else (S, 1, k, B, p.size)
        a[p.index] = be.asarray(0.1 * rng.standard_normal(shape))
    z = {j: be.xp.empty_like(v) for j, v in a.items() if prog.pops[j].role != "input"}
    upd = set(prog.backward_order)

    def chunk(ch):
        sl = slice(ch.s0, ch.s1)
        A = {j: v if prog.pops[j].role == "input" else v[sl] for j, v in a.items()}
        Z = {j: v[sl] for j, v in z.items()}
        W = [x[sl] for x in st.W]
        V = [None if x is None else x[sl] for x in st.V]
        for qi, q in enumerate(prog.projs):  # forward
            sim.ops[qi].apply(A[q.pre], W[qi], Z[q.post], 0.5, 0.0)
        for qi, q in enumerate(prog.projs):  # backward, into populations the backward pass updates
            if q.pre in upd:
                if V[qi] is None:
                    sim.ops[qi].apply_t(A[q.post], W[qi], Z[q.pre], 0.5, 1.0)
                else:
                    sim.vops[qi].apply(A[q.post], V[qi], Z[q.pre], 0.5, 1.0)
        jobs = []
        for qi, q in enumerate(prog.projs):  # Hebbian products, as independent jobs like the step's
            jobs.append((sim.ops[qi].stored, set(), lambda qi=qi, q=q: sim.ops[qi].hebbian_update(
                A[q.pre], A[q.post], W[qi], 1e-3, 0.999)))
            if V[qi] is not None:
                jobs.append((sim.vops[qi].stored, set(), lambda qi=qi, q=q: sim.vops[qi].hebbian_update(
                    A[q.post], A[q.pre], V[qi], 1e-3, 0.999)))
        sim.executor.run_jobs(jobs)

    def fn():
        sim.executor.run(S, 1, sim.genome_bytes(B), chunk)
    return fn, None


def _row(name, S, sample, flops_per_genome, roof, peak, extra=None) -> dict:
    ts, adj = sample
    med, best = statistics.median(ts), min(ts)
    r = {"row": name, "S": S, "median_s": med, "best_s": best, "reps": len(ts),
         "genome_steps_per_s": S / med, "peak_bytes": peak, "adjacent_roofline": adj}
    if flops_per_genome is not None:
        r["gflops"] = S * flops_per_genome / med / 1e9
        r["gflops_best"] = S * flops_per_genome / best / 1e9
        r["pct_roofline"] = 100.0 * r["gflops"] / adj if adj else None
        r["pct_best_roofline"] = 100.0 * r["gflops"] / roof if roof else None
    if extra:
        r.update(extra)
    return r


def _fitness(backend, S: int, steps: int = 15, queries: int = 20, B: int = 128):
    from blursim.data.base import Dataset
    from blursim.sim import train_and_evaluate

    w = Workload(PAPER_ES, S, backend)
    rng = np.random.default_rng(1)
    ds = Dataset(name="synthetic-196", x_train=rng.standard_normal((4096, 196)),
                 y_train=rng.integers(0, 10, 4096), x_test=rng.standard_normal((2048, 196)),
                 y_test=rng.integers(0, 10, 2048), n_classes=10, meta={"source": "bench"})

    def fn():
        train_and_evaluate(w.sim, w.genomes, ds, steps=steps, batch_size=B, eval_steps="end",
                           n_query_batches=queries, query_batch_size=B)

    with _Peak(backend) as pk:
        fn()
    return fn, pk.peak, w  # peak of one whole evaluation, fresh synapses included


def run_benchmark(backend_name: str | None = None, species=(1, 8, 80), rounds: int = 2,
                  min_time: float = 1.0, quick: bool = False, log=print, fitness_species: int = 80,
                  jax: bool | None = None, unrolls=(10, 50)) -> dict:
    """Measure every row; returns ``{"machine": ..., "roofline_gflops": ..., "rows": [...]}``.

    Each timed row is bracketed by two short roofline measurements; its
    ``pct_roofline`` is relative to their mean (the machine as it was during
    that row: on a shared machine other work slows both alike), and
    ``pct_best_roofline`` to the best roofline of the whole run.

    ``jax``: also measure the JAX engine's rows (:mod:`blursim.cli.bench_jax`; default: when
    the JAX extra is installed), with meta-gradient unrolls of ``unrolls`` steps (``--quick``:
    2). ``backend_name="jax"``: the JAX rows only (the roofline and the flop counts from the
    NumPy backend).
    """
    from blursim.backend import get_backend
    from blursim.cli import bench_jax
    from blursim.sim.engines import engine_name

    only_jax = engine_name(backend_name) == "jax"
    if only_jax:
        from blursim.sim.jax_engine import require_jax

        require_jax()  # a one-line error naming the install command
        backend_name, jax = "numpy", True
    if jax is None:
        jax = bench_jax.available()
    backend = get_backend(backend_name, "float32")
    info = machine_info(backend)
    if quick:
        min_time, rounds = 0.3, 1
        unrolls = (2,)
    log(f"# blursim bench on {info.get('cpu')} ({info.get('cpus')} CPUs), backend {backend.name}")
    roof_gemm = Roofline(backend, (1024,) if quick else None)
    adjacent = (roof_gemm.sizes[0],)  # the smaller size only, before and after every row
    roofs = [roof_gemm(1.0 if not quick else 0.3)]
    log(f"# roofline (float32 GEMM): {roofs[0]:.1f} GFLOP/s")

    wl: dict[tuple, Workload] = {}
    for S in species:
        wl[("paper-es", S)] = Workload(PAPER_ES, S, backend)
    # the same step without the direct BLAS binding, where the binding is on (NumPy backend)
    unbound = None
    if getattr(backend, "_cblas", None) is not None:
        from blursim.backend import NumpyBackend

        unbound = NumpyBackend("float32", blas_binding=False)
        for S in species:
            wl[("paper-es no binding", S)] = Workload(PAPER_ES, S, unbound)
    jwl: dict = {}  # the JAX engine's workloads: paper-es by S, meta-gradients by T
    if jax:
        log(f"# JAX engine on {bench_jax.device_info()['device']}: compiling its rows")
        for S in species:
            jwl[S] = bench_jax.JaxWorkload(wl[("paper-es", S)])
        for T in unrolls:
            jwl[("grad", T)] = bench_jax.GradWorkload(PAPER_ES, T)
    S_loc = 8
    wl[("local-sparse", "blocks")] = Workload(local_sparse_spec(), S_loc, backend, sparse="blocks")
    wl[("local-sparse", "masked")] = Workload(local_sparse_spec(), S_loc, backend, sparse="masked")

    best: dict[str, tuple] = {}  # key -> (times, adjacent roofline)
    peaks: dict[str, int] = {}
    short = 0.25 if not quick else 0.1

    def measure(key, fn, reset, t, **kw):
        r0 = roof_gemm(short, adjacent)
        ts = _time(fn, backend, t, reset=reset, **kw)
        r1 = roof_gemm(short, adjacent)
        roofs.extend([r0, r1])
        if key not in best or statistics.median(ts) < statistics.median(best[key][0]):
            best[key] = (ts, 0.5 * (r0 + r1))
        return ts

    fit = None
    binding_pairs: dict[int, list[float]] = {S: [] for S in species}  # without / with, back to back
    monitor_pairs: dict[int, list[float]] = {S: [] for S in species}  # with an empty monitor / without
    pair_ratios: list[float] = []  # masked / blocks time of each back-to-back pair
    jax_pairs: dict[int, list[float]] = {S: [] for S in species}  # Simulator / JAX time, back to back
    grad_pairs: dict[int, list[float]] = {T: [] for T in unrolls}  # value_and_grad / forward time
    for rnd in range(rounds):
        for S in species:
            w = wl[("paper-es", S)]
            if only_jax:
                _jax_step(jwl[S], S, None, measure, peaks, min_time, jax_pairs, log, rnd)
                continue
            for train in (True, False):
                key = f"paper-es {'train' if train else 'forward'} S={S}"
                if key not in peaks:
                    peaks[key] = w.memory(train)
                ts = measure(key, *w.step_fn(train), min_time)
                log(f"#   round {rnd + 1}: {key}: {1e3 * statistics.median(ts):.2f} ms/step")
                if train and jax:  # the JAX engine's step, right after
                    _jax_step(jwl[S], S, ts, measure, peaks, min_time, jax_pairs, log, rnd)
                if train:  # the same step with a monitor that records nothing at it, right after
                    from blursim.sim import Monitor

                    key_mon = f"paper-es train empty monitor S={S}"
                    ts_mon = measure(key_mon, *w.step_fn(True, monitor=Monitor(w.sim, "loss", steps=[])),
                                     min_time)
                    monitor_pairs[S].append(statistics.median(ts_mon) / statistics.median(ts))
                    log(f"#   round {rnd + 1}: {key_mon}: {1e3 * statistics.median(ts_mon):.2f} ms/step")
                if train and unbound is not None:
                    key_off = f"paper-es train no BLAS binding S={S}"
                    wo = wl[("paper-es no binding", S)]
                    if key_off not in peaks:
                        peaks[key_off] = wo.memory(True)
                    ts_off = measure(key_off, *wo.step_fn(True), min_time)
                    binding_pairs[S].append(statistics.median(ts_off) / statistics.median(ts))
                    log(f"#   round {rnd + 1}: {key_off}: {1e3 * statistics.median(ts_off):.2f} ms/step")
            key = f"paper-es products only S={S}"
            ts = measure(key, *products_only(w), min_time / 2)
            log(f"#   round {rnd + 1}: {key}: {1e3 * statistics.median(ts):.2f} ms/step")
        for T in unrolls if jax else ():  # the meta-gradient and its forward unroll, back to back
            g = jwl[("grad", T)]
            med = {}
            for kind in ("forward", "value_and_grad"):
                key = f"meta-gradient {kind} T={T}"
                if key not in peaks:
                    peaks[key] = bench_jax.xla_bytes(g.grad if kind != "forward" else g.forward)
                ts = measure(key, g.fn(kind != "forward"), None, min_time, min_reps=3, max_reps=50)
                med[kind] = statistics.median(ts)
                log(f"#   round {rnd + 1}: {key}: {1e3 * med[kind]:.1f} ms")
            grad_pairs[T].append(med["value_and_grad"] / med["forward"])
        if only_jax:
            continue
        for i in range(3):  # blocks and masked dense back to back, three pairs, alternating which goes first
            pair = {}
            for mode in ("blocks", "masked") if i % 2 == 0 else ("masked", "blocks"):
                w = wl[("local-sparse", mode)]
                key = f"local-sparse train {mode} S={S_loc}"
                if key not in peaks:
                    peaks[key] = w.memory(True)
                ts = measure(key, *w.step_fn(True), min_time / 3)
                pair[mode] = statistics.median(ts)
                log(f"#   round {rnd + 1}: {key}: {1e3 * pair[mode]:.2f} ms/step")
            pair_ratios.append(pair["masked"] / pair["blocks"])
        if fit is None:
            fit = _fitness(backend, fitness_species)
        fn, pk, _ = fit
        key = f"fitness S={fitness_species}"
        peaks[key] = pk
        ts = measure(key, fn, None, min_time, min_reps=2 if not quick else 1, max_reps=10)
        log(f"#   round {rnd + 1}: {key}: {statistics.median(ts):.3f} s/evaluation")
    roof = max(roofs)

    rows = []
    jax_res = None
    jax_rows = {}
    if jax:
        dev = bench_jax.device_info()
        for S in species:
            w = wl[("paper-es", S)]
            key = f"paper-es train jax S={S}"
            fl = w.sim.flops(w.B, train=True)["total"]
            jax_rows[S] = _row(key, S, best[key], fl, roof, peaks[key], {
                "flops_per_genome_step": fl, "device": dev["device"],
                "note": "the JAX engine's jitted reference step, float32; peak: XLA buffer assignment"})
        grows, summary = bench_jax.grad_rows(best, peaks, grad_pairs, unrolls)
        jax_res = {"device": dev, "meta_gradient": summary,
                   "speed_ratio": None if only_jax else {str(S): statistics.median(r) for S, r in jax_pairs.items()},
                   "pair_ratios": None if only_jax else {str(S): r for S, r in jax_pairs.items()}}
    if only_jax:
        rows.extend(list(jax_rows.values()) + grows)
        return {"machine": info, "roofline_gflops": roof, "roofline_samples": roofs, "rows": rows, "jax": jax_res,
                "command": " ".join(sys.argv), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    for S in species:
        w = wl[("paper-es", S)]
        for train in (True, False):
            key = f"paper-es {'train' if train else 'forward'} S={S}"
            fl = w.sim.flops(w.B, train=train)["total"]
            rows.append(_row(key, S, best[key], fl, roof, peaks[key], {"flops_per_genome_step": fl}))
            if train and jax:
                rows.append(jax_rows[S])
            if train:
                key = f"paper-es train empty monitor S={S}"
                rows.append(_row(key, S, best[key], fl, roof, None, {
                    "flops_per_genome_step": fl, "note": "train_step(monitor=a Monitor recording no step)"}))
            if train and unbound is not None:
                key = f"paper-es train no BLAS binding S={S}"
                rows.append(_row(key, S, best[key], fl, roof, peaks[key], {
                    "flops_per_genome_step": fl, "note": "numpy.matmul products, BLAS threads via threadpoolctl"}))
        key = f"paper-es products only S={S}"
        fl = w.sim.flops(w.B, train=True)["total"]
        rows.append(_row(key, S, best[key], fl, roof, None, {
            "flops_per_genome_step": fl,
            "note": "only the training step's matrix products, same operators and threads: a ceiling"}))
    loc = {}
    for mode in ("blocks", "masked"):
        w = wl[("local-sparse", mode)]
        key = f"local-sparse train {mode} S={S_loc}"
        fl = w.sim.flops(w.B, train=True)["total"]
        op = w.sim.ops[0]
        extra = {"flops_per_genome_step": fl, "stored_slots": op.stored,
                 "synapse_bytes": w.sim.synapse_bytes(w.fresh()[1])}
        if mode == "blocks":
            extra.update(block_density=op.plan.density, tiling=op.plan.describe(),
                         mask_density=float(w.prog.projs[0].mask.mean()))
        rows.append(_row(key, S_loc, best[key], fl, roof, peaks[key], extra))
        loc[mode] = rows[-1]
    # the ratio of each back-to-back pair (both measured within about a second, so that the machine's
    # drift cancels), summarised by the median; not the ratio of two rows' best rounds
    ratio = statistics.median(pair_ratios)
    dens = loc["blocks"]["block_density"]
    fkey = f"fitness S={fitness_species}"
    fts, froof = best[fkey]
    med = statistics.median(fts)
    rows.append({"row": fkey, "S": fitness_species, "median_s": med, "best_s": min(fts), "reps": len(fts),
                 "genome_evaluations_per_s": fitness_species / med, "peak_bytes": peaks[fkey], "adjacent_roofline": froof,
                 "evaluation": "15 training steps + 20 query batches of 128"})
    if jax:
        rows.extend(grows)
    binding = None
    if unbound is not None:
        binding = {"status": info.get("blas_binding"),
                   "speed_ratio": {str(S): statistics.median(r) for S, r in binding_pairs.items()},
                   "pair_ratios": {str(S): r for S, r in binding_pairs.items()}}
    return {
        "machine": info, "roofline_gflops": roof, "roofline_samples": roofs, "rows": rows,
        "blas_binding": binding,
        "monitor": {"time_ratio": {str(S): statistics.median(r) for S, r in monitor_pairs.items()},
                    "pair_ratios": {str(S): r for S, r in monitor_pairs.items()}},
        "local_sparse": {"speed_ratio": ratio, "pair_ratios": pair_ratios, "block_density": dens,
                         "target_ratio": 0.5 / dens, "met": ratio >= 0.5 / dens},
        "jax": jax_res,
        "command": " ".join(sys.argv), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _jax_step(jw, S, ts_sim, measure, peaks, min_time, pairs, log, rnd) -> None:
    """The JAX engine's training step of ``paper-es`` at ``S`` (after the Simulator's, whose times
    are ``ts_sim``: their ratio is one back-to-back pair)."""
    key = f"paper-es train jax S={S}"
    if key not in peaks:
        peaks[key] = jw.memory(True)
    ts = measure(key, *jw.step_fn(True), min_time)
    if ts_sim is not None:
        pairs[S].append(statistics.median(ts_sim) / statistics.median(ts))
    log(f"#   round {rnd + 1}: {key}: {1e3 * statistics.median(ts):.2f} ms/step")


def format_table(res: dict) -> str:
    m = res["machine"]
    lines = [
        f"machine: {m.get('cpu')}, {m.get('cpus')} CPUs, numpy {m.get('numpy')}"
        + (f", BLAS {m['blas']} {m.get('blas_version', '')}" if m.get("blas") else "")
        + f", backend {m.get('backend')}"
        + (f", device {m['device']} (CuPy {m.get('cupy')})" if m.get("device") else "")
        + (f", commit {m['commit']}" if m.get("commit") else ""),
        f"roofline (float32 GEMM, this run): best {res['roofline_gflops']:.1f} GFLOP/s; "
        "'% roof' is against the roofline measured right before and after each row",
        "",
        f"{'row':<37} {'S':>3} {'ms/step':>9} {'genome-steps/s':>14} {'GFLOP/s':>8} {'roof':>6} "
        f"{'% roof':>7} {'% best':>7} {'peak MiB':>9}",
    ]
    for r in res["rows"]:
        if "unroll" in r:  # a meta-loss (and gradient) through the unroll: time per evaluation
            peak = f"{r['peak_bytes'] / 2**20:>9.1f}" if r.get("peak_bytes") is not None else f"{'':>9}"
            lines.append(f"{r['row']:<37} {r['S']:>3} {1e3 * r['median_s']:>9.1f} "
                         f"{r['unroll_steps_per_s']:>8.1f} st/s {'':>8} {r['adjacent_roofline']:>6.0f} "
                         f"{'':>7} {'':>7} {peak}")
            continue
        if "genome_evaluations_per_s" in r:
            lines.append(f"{r['row']:<37} {r['S']:>3} {1e3 * r['median_s']:>9.1f} "
                         f"{r['genome_evaluations_per_s']:>9.2f} ev/s {'':>8} {r['adjacent_roofline']:>6.0f} "
                         f"{'':>7} {'':>7} {r['peak_bytes'] / 2**20:>9.1f}")
            continue
        lines.append(
            f"{r['row']:<37} {r['S']:>3} {1e3 * r['median_s']:>9.2f} {r['genome_steps_per_s']:>14.1f} "
            f"{r.get('gflops', 0):>8.1f} {r['adjacent_roofline']:>6.0f} {r.get('pct_roofline', 0):>6.1f}% "
            f"{r.get('pct_best_roofline', 0):>6.1f}% "
            + (f"{r['peak_bytes'] / 2**20:>9.1f}" if r.get("peak_bytes") is not None else f"{'':>9}"))
    def pairs(title, ratio, pair_ratios, digits):
        ratios = ", ".join(f"S = {S} {v:.{digits}f}x" for S, v in ratio.items())
        n = min(len(v) for v in pair_ratios.values())
        lines.extend(["", f"{title}, {ratios} (median of {n} back-to-back pairs per S)"])

    bb = res.get("blas_binding")
    if bb:
        pairs(f"BLAS binding ({bb['status']}): training step with it vs without", bb["speed_ratio"],
              bb["pair_ratios"], 2)
    mon = res.get("monitor")
    if mon:
        pairs("empty monitor: training step time with / without it", mon["time_ratio"], mon["pair_ratios"], 3)
    ls = res.get("local_sparse")
    if ls:
        lines.append("")
        pr = ls.get("pair_ratios") or [ls["speed_ratio"]]
        lines.append(f"local-sparse: block density {ls['block_density']:.3f}, blocks vs masked dense speed ratio "
                     f"{ls['speed_ratio']:.2f}x (median of {len(pr)} back-to-back pairs, "
                     f"{min(pr):.2f}-{max(pr):.2f}x; target >= {ls['target_ratio']:.2f}x: "
                     f"{'met' if ls['met'] else 'NOT met'})")
    from blursim.cli.bench_jax import format_lines

    lines.extend(format_lines(res))
    return "\n".join(lines)


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
                        unrolls=args.unrolls)
    if args.json:
        from blursim.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(res, indent=2) + "\n")
    print(format_table(res))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    _arguments(p)
    return cmd_bench(p.parse_args(argv))
