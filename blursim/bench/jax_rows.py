"""The JAX engine's benchmark rows (``blursim bench``; issue 11 item 6).

Measured in the same run as the NumPy rows (:func:`blursim.bench.runner.run_benchmark`), on
JAX's default device (the CPU here; a GPU where JAX has one):

- ``paper-es train jax S=...``: the JAX engine's training step (the reference step under
  ``jax.jit``, float32) on the ``paper-es`` workload -- the same network, genomes and batch as
  the ``paper-es train`` row -- measured back to back with it in every round; the speed ratio
  is the median over those pairs of ``Simulator time / JAX time``;
- ``meta-gradient forward T=...`` / ``meta-gradient value_and_grad T=...``: the meta-loss of
  ``paper-es`` (one genome, the eight core fields of eq. 5-7 searched, batch 128, one replica,
  one query batch of 128) through a ``T``-step unroll, and its value and gradient
  (:mod:`blursim.meta.objective`: ``lax.scan`` with the step under ``jax.checkpoint``),
  back to back; the ratio ``value_and_grad / forward`` (reverse mode should cost at most
  about 4x the unroll) and each compiled program's peak memory;
- ``paper-es train unroll T=...``: the fast NumPy engine's ``T`` training steps of the same
  network at S = 1 (batch 128, float32; :func:`fast_unroll`), right after the meta-gradient:
  the ratio ``value_and_grad / fast unroll`` (issue 25 item 1: target <= 3x at T = 10 and 50)
  is the median over those back-to-back pairs.

Peak memory of a JAX row is XLA's buffer assignment for the compiled program
(``memory_analysis()``: arguments + outputs + temporaries - aliased), the memory the program
needs whatever the allocator does; every program is compiled once, ahead of time, before it
is timed (compilation is never timed).
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np

#: The genome fields of the meta-gradient rows: the eight core meta-parameters of eq. (5)-(7).
CORE = ("f", "eta", "f_tilde", "eta_tilde", "nu", "mu", "nu_tilde", "mu_tilde")


def available() -> bool:
    """Whether the JAX extra is installed."""
    from blursim.errors import BackendError
    from blursim.sim.jax_engine import require_jax

    try:
        require_jax()
    except BackendError:
        return False
    return True


def device_info() -> dict[str, Any]:
    import jax

    d = jax.devices()[0]
    return {"jax": jax.__version__, "device": str(d), "platform": d.platform}


def xla_bytes(compiled) -> int | None:
    """Peak bytes of a compiled program by XLA's buffer assignment, or ``None`` if unknown."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every platform reports it
        return None
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)


class Sync:
    """What :func:`blursim.bench.timing.time_fn` asks of a backend (JAX calls below block themselves)."""

    def synchronize(self) -> None:
        pass


class JaxWorkload:
    """A :class:`~blursim.bench.workloads.Workload`'s network, genomes and batch on the JAX engine:
    its training step and forward pass, compiled ahead of time."""

    def __init__(self, w, dtype: str = "float32", products: str = "xla") -> None:
        import jax.numpy as jnp

        from blursim.sim.jax_engine import JaxSimulator, kept_states, precision

        self.w, self.dtype = w, dtype
        self.sim = JaxSimulator(w.prog, dtype, products=products)
        self.genes = self.sim.prepare(w.genomes)
        with precision(dtype):
            self.x, self.y = self.sim.device_data(w.x), self.sim.device_labels(w.y)
            # the carry's structure of every later step (kept neuron states where the rules keep them)
            self.state0 = kept_states(w.prog, self.sim.init_synapses(self.genes, 1, 0).blur, w.B, jnp)
        self._compiled: dict[bool, Any] = {}

    def compiled(self, train: bool):
        from blursim.sim.jax_engine import precision

        c = self._compiled.get(train)
        if c is None:
            args = (self.genes.arrays, self.state0, self.x) + ((self.y,) if train else ())
            with precision(self.dtype):
                c = self._compiled[train] = self.sim.jitted("step" if train else "forward").lower(*args).compile()
        return c

    def memory(self, train: bool) -> int | None:
        return xla_bytes(self.compiled(train))

    def step_fn(self, train: bool):
        """``(step, reset)`` as :meth:`Workload.step_fn`: one timed step (waiting for its result),
        and an untimed restart from the initial synapses."""
        import jax

        c, G, x, y = self.compiled(train), self.genes.arrays, self.x, self.y
        box = [self.state0]
        if train:
            def fn():
                box[0] = jax.block_until_ready(c(G, box[0], x, y))
        else:
            def fn():
                jax.block_until_ready(c(G, box[0], x))

        def reset():
            box[0] = self.state0
        return fn, reset


class GradWorkload:
    """The meta-loss of ``spec`` through a ``T``-step unroll and its gradient in the core genome
    fields (one genome, one replica, batch ``B``, one query batch of ``B``), compiled ahead of
    time: :attr:`forward` (the value) and :attr:`grad` (value and gradient); ``products``: the
    unroll's product route (:mod:`blursim.sim.jax_blas`)."""

    def __init__(self, spec: dict, T: int, dtype: str = "float32", B: int = 128, dataset=None,
                 products: str = "xla") -> None:
        from blursim.genome import GenomeLayout, make_preset
        from blursim.graph import compile_network
        from blursim.meta.evaluate import Protocol
        from blursim.meta.objective import loss_arguments, loss_function, task_data
        from blursim.bench.workloads import synthetic_dataset
        from blursim.sim.jax_engine import precision, unit_draws
        from blursim.spec import load_network

        prog = compile_network(load_network(spec))
        layout = GenomeLayout(prog.k, tuple(prog.groups), CORE)
        genome = make_preset("random", k=prog.k, groups=prog.groups, seed=0, lr=0.01)
        x = layout.to_vector(genome)
        proto = Protocol(T, B, 1, B, 1, "train")
        ds = dataset if dataset is not None else synthetic_dataset(prog.n_features)
        data = task_data(ds, 0, proto)
        self.T, self.dim, self.dtype = T, layout.size, dtype
        with precision(dtype):
            self.args = loss_arguments(prog, layout.matrix_to_batch(x[None], genome), x, data,
                                       unit_draws(prog, 1, 0), np.dtype(dtype), "cross_entropy", False)
            self.forward = loss_function(prog, layout, "cross_entropy", False, False, products).lower(*self.args).compile()
            self.grad = loss_function(prog, layout, "cross_entropy", True, False, products).lower(*self.args).compile()

    def fn(self, grad: bool):
        import jax

        c, args = (self.grad if grad else self.forward), self.args

        def run():
            jax.block_until_ready(c(*args))
        return run


class AdjointWorkload:
    """:class:`GradWorkload`'s meta-loss and gradient (the same network, genome, fields, data and
    initial synapses) on the NumPy reverse pass (:mod:`blursim.sim.adjoint`, the meta-gradient
    engine ``"numpy"``): :meth:`fn` as :meth:`GradWorkload.fn`, :meth:`peak` its host memory."""

    def __init__(self, spec: dict, T: int, dtype: str = "float32", B: int = 128, dataset=None) -> None:
        from blursim.genome import GenomeLayout, make_preset
        from blursim.graph import compile_network
        from blursim.meta.evaluate import Protocol
        from blursim.meta.objective import task_data
        from blursim.bench.workloads import synthetic_dataset
        from blursim.sim.jax_engine import scale_draws, unit_draws
        from blursim.spec import load_network

        self.prog = prog = compile_network(load_network(spec))
        layout = GenomeLayout(prog.k, tuple(prog.groups), CORE)
        genome = make_preset("random", k=prog.k, groups=prog.groups, seed=0, lr=0.01)
        x = layout.to_vector(genome)
        batch = layout.matrix_to_batch(x[None], genome)
        proto = Protocol(T, B, 1, B, 1, "train")
        ds = dataset if dataset is not None else synthetic_dataset(prog.n_features)
        xs, ys, xq, yq = task_data(ds, 0, proto)
        dt = np.dtype(dtype)
        self.T, self.dtype, self.layout = T, dtype, layout
        self.genome = {g: {f: np.asarray(v[0]) for f, v in batch.arrays[g].items()} for g in prog.groups}
        self.s0 = scale_draws(prog, unit_draws(prog, 1, 0), {g: batch.arrays[g]["init_scale"] for g in prog.groups}, dt)
        self.data = (xs.astype(dt), ys, xq.astype(dt), yq)

    def fn(self, grad: bool):
        from blursim.sim.adjoint import meta_loss_and_grad

        prog, genome, s0, (xs, ys, xq, yq), dt = self.prog, self.genome, self.s0, self.data, self.dtype

        def run():
            meta_loss_and_grad(prog, genome, s0, xs, ys, xq, yq, dtype=dt, grad=grad)
        return run

    def value_and_grad(self) -> tuple[float, np.ndarray]:
        """``(loss, gradient)``, the gradient in :class:`GradWorkload`'s order (the layout's)."""
        from blursim.meta.objective import layout_vector
        from blursim.sim.adjoint import meta_loss_and_grad

        xs, ys, xq, yq = self.data
        loss, grads, _ = meta_loss_and_grad(self.prog, self.genome, self.s0, xs, ys, xq, yq, dtype=self.dtype)
        return float(loss), layout_vector(self.layout, grads)

    def peak(self, grad: bool) -> int:
        """Peak bytes NumPy allocated during one call (tracemalloc; the tape of every step)."""
        return host_peak_bytes(self.fn(grad))


def fast_unroll(w, T: int):
    """``(fn, reset)``: ``T`` training steps of the fast engine on the workload ``w`` (from the
    initial synapses: ``reset``, untimed, before every call), what a meta-gradient through ``T``
    steps is compared with."""
    fn1, reset = w.step_fn(True)

    def fn():
        for _ in range(T):
            fn1()
    return fn, reset


def grad_rows(best: dict, peaks: dict, pairs: dict, unrolls, fast_pairs: dict | None = None,
              products: str = "xla") -> tuple[list[dict], dict]:
    """The meta-gradient rows and their summary from what :func:`blursim.bench.runner.run_benchmark`
    measured: ``best[key] = (times, roofline)``, ``pairs[T]`` the back-to-back time ratios
    ``value_and_grad / forward`` and ``fast_pairs[T]`` those of ``value_and_grad / fast unroll``.
    ``products``: the product route of the rows (another than ``"xla"``: keys named after it,
    and no fast-engine row of its own, which XLA's rows have)."""
    rows = []
    fast_pairs = fast_pairs or {}
    name = "" if products == "xla" else f" {products}"  # a product route's, or the "numpy" engine's
    for T in unrolls:
        for kind in ("forward", "value_and_grad", "fast"):
            if kind == "fast" and (T not in fast_pairs or name):
                continue
            key = f"paper-es train unroll T={T}" if kind == "fast" else f"meta-gradient {kind}{name} T={T}"
            ts, roof = best[key]
            rows.append({"row": key, "S": 1, "median_s": statistics.median(ts), "best_s": min(ts),
                         "reps": len(ts), "unroll": T, "peak_bytes": peaks[key], "adjacent_roofline": roof,
                         "unroll_steps_per_s": T / statistics.median(ts),
                         **({"note": "the fast NumPy engine's T training steps, S = 1, float32"}
                            if kind == "fast" else {})})
    summary = {"time_ratio": {str(T): statistics.median(r) for T, r in pairs.items()},
               "pair_ratios": {str(T): r for T, r in pairs.items()},
               "peak_bytes": {str(T): {"forward": peaks[f"meta-gradient forward{name} T={T}"],
                                       "value_and_grad": peaks[f"meta-gradient value_and_grad{name} T={T}"]}
                              for T in unrolls},
               "fast_unroll_ratio": {str(T): statistics.median(r) for T, r in fast_pairs.items()},
               "fast_pair_ratios": {str(T): r for T, r in fast_pairs.items()},
               "fast_unroll_peak_bytes": {str(T): peaks.get(f"paper-es train unroll T={T}") for T in fast_pairs},
               "fields": list(CORE), "batch": 128, "query_batch": 128, "replicas": 1, "products": products}
    if name:
        summary["note"] = ("fast_unroll_ratio: value_and_grad over the fast engine's T steps measured right before "
                           "(XLA's meta-gradient rows' paper-es train unroll); peaks: XLA buffer assignment + host "
                           "memory of the callbacks")
    return rows, summary


def extra_products(products) -> list[str]:
    """The product routes besides XLA's (always measured) that ``products`` asks for and JAX's
    default device runs (:func:`blursim.sim.jax_blas.resolve_products`: ``"blas"`` on a CPU)."""
    from blursim.sim.jax_blas import resolve_products

    out = []
    for p in products or ():
        p = resolve_products(p, "jax_products")
        if p != "xla" and p not in out:
            out.append(p)
    return out


def route_bytes(compiled, fn) -> int | None:
    """Peak memory of a product route's program: XLA's buffer assignment plus what its host
    callbacks allocate during one call (:func:`host_peak_bytes`)."""
    x = xla_bytes(compiled)
    return None if x is None else x + host_peak_bytes(fn)


def host_peak_bytes(fn) -> int:
    """Peak bytes that NumPy allocated on the host during one call of ``fn`` (tracemalloc): what
    the BLAS route's callbacks (:mod:`blursim.sim.jax_blas`) add to XLA's own buffers; about 0
    for the XLA route."""
    import tracemalloc

    fn()  # compiled and warm: the peak of a call, not of the first
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return int(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()
