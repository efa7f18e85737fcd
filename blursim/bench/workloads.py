"""What ``blursim bench`` times: the ``paper-es`` and ``local-sparse`` networks with a population
of genomes and a batch (:class:`Workload`), the step's products alone (:func:`products_only`),
and the Sec. 4.4 fitness evaluation (:func:`fitness_workload`)."""

from __future__ import annotations

import numpy as np

from blursim.bench.timing import Peak

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
        with Peak(self.backend) as pk:
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
    states. What the step would cost if everything but its products were free: a ceiling. A
    projection whose ``W`` and ``V`` share their Hebbian products in the fast kernels
    (:meth:`blursim.sim.fast.FastKernels.shared_projections`) makes those: ``G^d = x^T a^d``, its
    transpose and one ``K = k`` product into each of ``W`` and ``V``."""
    from blursim.sim.step import synapse_jobs

    sim, prog, be = w.sim, w.prog, w.backend
    shared = getattr(sim.kernels, "shared_projections", lambda jobs: frozenset())(synapse_jobs(prog))
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
            if qi in shared:
                jobs.append((2 * sim.ops[qi].stored, set(), lambda qi=qi, q=q: _shared_products(
                    sim, A[q.pre], A[q.post], W[qi], V[qi])))
                continue
            jobs.append((sim.ops[qi].stored, set(), lambda qi=qi, q=q: sim.ops[qi].hebbian_update(
                A[q.pre], A[q.post], W[qi], 1e-3, 0.999)))
            if V[qi] is not None:
                jobs.append((sim.vops[qi].stored, set(), lambda qi=qi, q=q: sim.vops[qi].hebbian_update(
                    A[q.post], A[q.pre], V[qi], 1e-3, 0.999)))
        sim.executor.run_jobs(jobs)

    def fn():
        sim.executor.run(S, 1, sim.genome_bytes(B), chunk)
    return fn, None


def _shared_products(sim, x, a, W, V) -> None:
    """The products of a shared input Hebbian update (:func:`products_only`): ``G = x^T a``, ``G^T``,
    ``W <- 0.999 W + M G`` and ``V <- 0.999 V + M G^T`` over the states."""
    be, ws = sim.backend, sim.executor.workspace()
    c, R, k = W.shape[:3]
    G = ws.get(("bench-xh",), W.shape)
    GT = ws.get(("bench-hx",), V.shape)
    be.gemm(x.swapaxes(-1, -2), a, G)
    be.transpose_into(G, GT)
    M = be.asarray(np.full((c, 1, k, k), 1e-3))
    flat = (c, R, k, -1)
    be.gemm(M, G.reshape(flat), W.reshape(flat), 1.0, 0.999)
    be.gemm(M, GT.reshape(flat), V.reshape(flat), 1.0, 0.999)


def synthetic_dataset(n_features: int = 196, n_classes: int = 10, seed: int = 1):
    """The benchmark's stand-in task (normal inputs, uniform labels), as the fitness row's."""
    from blursim.data.base import Dataset

    rng = np.random.default_rng(seed)
    return Dataset(name=f"synthetic-{n_features}", x_train=rng.standard_normal((4096, n_features)),
                   y_train=rng.integers(0, n_classes, 4096), x_test=rng.standard_normal((2048, n_features)),
                   y_test=rng.integers(0, n_classes, 2048), n_classes=n_classes, meta={"source": "bench"})


def fitness_workload(backend, S: int, steps: int = 15, queries: int = 20, B: int = 128):
    """``(fn, peak, workload)``: one Sec. 4.4 fitness evaluation of ``S`` genomes (``steps``
    training steps, then ``queries`` query batches of ``B``) on the stand-in task, and the peak
    memory of one whole evaluation, fresh synapses included."""
    from blursim.sim import train_and_evaluate

    w = Workload(PAPER_ES, S, backend)
    ds = synthetic_dataset(196, 10)

    def fn():
        train_and_evaluate(w.sim, w.genomes, ds, steps=steps, batch_size=B, eval_steps="end",
                           n_query_batches=queries, query_batch_size=B)

    with Peak(backend) as pk:
        fn()
    return fn, pk.peak, w
