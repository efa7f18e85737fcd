"""The BLUR simulator: exactly one step of DESIGN §2 (paper eq. 5-8), batched and fast.

Arrays carry a species axis ``S`` (genomes side by side, e.g. an ES
population) and a replica axis ``R`` (independent synapse initialisations
sharing a genome). Internal layouts are channel-major: neuron states
``(S, R, k, B, n)``, synapses ``(S, R, kw, ...)`` (:mod:`blursim.sim.synapses`)
in the storage layout of their operator (:mod:`blursim.sim.operators`: dense
``(n_pre, n_post)`` or block tiles).

What the step is made of, elsewhere:

- the step itself -- phase order, schedules, every ``rules`` branch, in the
  paper's notation: :mod:`blursim.sim.step`, run here on
  :attr:`Simulator.kernels`;
- the primitives it calls, on this simulator's storage: the fast kernel set
  :mod:`blursim.sim.fast` (BLAS folding, block tiles, workspaces);
- the genome's numbers, folded once per chunk into gemm scales and ``k x k``
  matrices: :mod:`blursim.sim.coefficients`;
- the products, one operator per projection: :mod:`blursim.sim.operators`;
- initial synapses and FLOP counts, shared with every engine: :mod:`blursim.sim.oracle`;
- how the work runs -- chunks of species on threads, independent update
  jobs, per-thread buffers, BLAS threads: the backend's executor
  (:mod:`blursim.backend.executor`, :mod:`blursim.backend.numpy_backend`).

This module holds the public API (:meth:`Simulator.prepare`,
:meth:`~Simulator.init_synapses`, :meth:`~Simulator.train_step`,
:meth:`~Simulator.forward`, :meth:`~Simulator.evaluate`) and cuts a step into
chunks of species and replicas for the executor.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blursim.backend import Backend, get_backend
from blursim.backend.executor import Chunk
from blursim.genome.arrays import GenomeBatch, stack_genomes
from blursim.graph.compile import Program
from blursim.sim import step
from blursim.sim.coefficients import ChunkCoefficients, GenomeArrays, PreparedGenomes, fold
from blursim.sim.fast import FastKernels, StepRun
from blursim.sim.metrics import task_metrics
from blursim.sim.operators import make_operator
from blursim.sim.oracle import initial_draws, step_flops
from blursim.sim.synapses import Layout, SynapseState
from blursim.sim.targets import check_targets

# SeedSequence stream tags (DESIGN §2, Randomness); the initial synapses' is blursim.sim.synapses.TAG_INIT.
TAG_DATA = 0x64617461
TAG_QUERY = 0x71727279


class Simulator:
    """Runs a compiled :class:`~blursim.graph.compile.Program` on a backend.

    Parameters
    ----------
    program:
        The compiled network.
    backend:
        A :class:`~blursim.backend.Backend`, or a name (``"numpy"``/``"cupy"``);
        ``None`` reads ``BLURSIM_BACKEND``.
    dtype:
        ``"float32"`` (default), ``"float64"``, or ``"complex128"`` (complex-step
        derivatives in :mod:`blursim.analysis`).
    sparse:
        How masked projections are stored and run: ``"auto"`` (block tiles
        where the tiling's cost model predicts a speed-up, else masked dense),
        ``"blocks"`` (always block tiles) or ``"masked"`` (always masked dense).
        Results agree to rounding; only speed and memory differ.
    threads:
        Worker threads for independent species (NumPy backend; default: the
        backend's, i.e. ``BLURSIM_THREADS`` or the usable CPUs); the backend's
        executor decides how they are used (:mod:`blursim.backend.executor`).
    kernels:
        The kernel set the step runs on (default: :class:`~blursim.sim.fast.FastKernels` of this
        simulator); see :mod:`blursim.sim.kernels`.
    """

    def __init__(self, program: Program, backend: Backend | str | None = None, dtype: str | None = None,
                 *, sparse: str = "auto", threads: int | None = None, kernels=None):
        self.program = program
        if isinstance(backend, Backend) and dtype is not None and dtype != backend.dtype_name:
            backend = type(backend)(dtype)
        self.backend = get_backend(backend, dtype)
        self.xp = self.backend.xp
        self.k = program.k
        self.rules = program.rules
        self.kw = program.kw
        self.sparse = sparse
        tied = step.tied(program)
        self.ops = [make_operator(q, self.backend, sparse=sparse, tied=tied) for q in program.projs]
        self.vops = [None if tied else make_operator(q, self.backend, transposed=True, sparse=sparse)
                     for q in program.projs]
        self.layout = Layout(self.ops, self.vops, self.backend)
        #: How this step's chunks, jobs and buffers run (the backend's; blursim.backend.executor).
        self.executor = self.backend.executor(threads)
        #: The primitives the step (blursim.sim.step) runs on: the fast set, or one derived from it
        #: (``sim.kernels = sim.kernels.replace(name=fn)``; blursim.sim.kernels).
        self.kernels = FastKernels(self) if kernels is None else kernels

    # ------------------------------------------------------------------ genomes
    def prepare(self, genomes) -> PreparedGenomes:
        """Genome documents or a :class:`GenomeBatch` -> per-group arrays for the simulator."""
        if not isinstance(genomes, GenomeBatch):
            genomes = stack_genomes(genomes, k=self.k, groups=self.program.groups)
        elif genomes.k != self.k:
            genomes = stack_genomes([genomes.species(0)], k=self.k)  # raises the k error
        else:
            missing = [g for g in self.program.groups if g not in genomes.arrays]
            if missing:
                stack_genomes([genomes.species(0)], k=self.k, groups=self.program.groups)
        return PreparedGenomes({g: GenomeArrays(genomes.arrays[g]) for g in self.program.groups})

    def _coefs(self, genes, s0: int, s1: int, B: int) -> ChunkCoefficients:
        """The genomes folded for batches of ``B`` (:func:`~blursim.sim.coefficients.fold`, once per
        program and ``B``) as species ``s0:s1`` read them on this backend (cached on ``genes``)."""
        cache = getattr(genes, "coef_cache", None)
        if cache is None:
            cache = {}
        key = (id(self), s0, s1, B)
        c = cache.get(key)
        if c is None:
            if len(cache) > 256:
                cache.clear()
            fkey = ("fold", id(self.program), B)
            folded = cache.get(fkey)
            if folded is None:
                mean, channels = step.hebbian_form(self.program)
                folded = cache[fkey] = fold(genes, self.program, B, batch_mean=mean, channels=channels)
            c = cache[key] = ChunkCoefficients(self.backend, folded, s0, s1)
        return c

    # ----------------------------------------------------------------- synapses
    def init_synapses(self, genes: PreparedGenomes, replicas: int = 1, seed: int = 0) -> SynapseState:
        """Fresh synapses. Replica ``r`` depends only on ``seed`` and ``r`` (common to all species)."""
        draws = initial_draws(self.program, replicas, seed)  # DESIGN §2, Randomness (blursim.sim.oracle)
        Ws, bs, Vs = [], [], []
        for qi, q in enumerate(self.program.projs):
            scale = genes[q.group].init_scale
            W = self.ops[qi].from_dense(draws[qi][0], np)
            Ws.append(self._scaled(W, scale))
            if q.bias:
                bs.append(self._scaled(draws[qi][1], scale))
            else:
                bs.append(None)
            if self.vops[qi] is not None:
                V = self.vops[qi].from_dense(draws[qi][2], np)
                Vs.append(self._scaled(V, scale))
            else:
                Vs.append(None)
        return SynapseState(Ws, bs, Vs, layout=self.layout)

    def _scaled(self, X: np.ndarray, scale: np.ndarray):
        """``scale[s] * X`` for every species, computed in float64 then stored in the backend dtype."""
        out = self.xp.empty((len(scale),) + X.shape, dtype=self.backend.dtype)
        for s, f in enumerate(scale):
            out[s] = self.backend.asarray(X * f)
        return out

    # --------------------------------------------------------------- public API
    def train_step(self, st: SynapseState, genes: PreparedGenomes, x, y, monitor=None) -> SynapseState:
        """One BLUR training step on batch ``(x, y)`` (DESIGN §2); updates ``st`` in place.

        ``monitor``: a :class:`~blursim.sim.monitor.Monitor` that records what it was asked for
        when this step is one of its steps (nothing is copied otherwise)."""
        self.layout.adopt(st)
        S, R = st.shape_SR
        B = int(np.shape(x)[0])
        inputs = self._input_states(x)
        targets = {o: self._targets(y, self.program.pops[o]) for o in self.program.outputs}
        keep = self._ensure_persistent(st, S, R, B) if step.keeps_states(self.program) else None
        tap = None if monitor is None else monitor.begin_step(self, st, B)
        self.executor.run(S, R, self.genome_bytes(B), lambda ch: self._train_chunk(st, genes, ch, inputs, targets, B, keep, tap))
        st.steps += 1
        if tap is not None:
            monitor.end_step(self, st, y, tap)
        return st

    def forward(self, st: SynapseState, genes: PreparedGenomes, x) -> list[Any]:
        """Forward pass only (neurons reset); state 0 of every output, ``(S, R, B, n_out)`` each."""
        self.layout.adopt(st)
        S, R = st.shape_SR
        B = int(np.shape(x)[0])
        inputs = self._input_states(x)
        outs = {o: self.xp.empty((S, R, B, self.program.pops[o].size), dtype=self.backend.dtype)
                for o in self.program.outputs}
        self.executor.run(S, R, self.genome_bytes(B), lambda ch: self._forward_chunk(st, genes, ch, inputs, B, outs))
        return [outs[o] for o in self.program.outputs]

    def evaluate(self, st: SynapseState, genes, x, y) -> dict[str, np.ndarray]:
        """Metrics of state-0 predictions averaged over outputs, ``(S, R)`` each: accuracy and
        cross-entropy for class labels ``y`` ``(B,)``, ``mse`` for target vectors ``(B, n)``."""
        for o in self.program.outputs:
            check_targets(y, self.program.pops[o].size, self.program.pops[o].name)
        outs = [self.backend.to_numpy(o) for o in self.forward(st, genes, x)]
        return task_metrics(outs, np.asarray(y))

    def is_finite(self, st: SynapseState) -> np.ndarray:
        """``(S, R)`` bool: all synapses finite."""
        xp = self.xp
        S, R = st.shape_SR
        ok = xp.ones((S, R), dtype=bool)
        for arrs in (st.W, st.b, st.V):
            for a in arrs:
                if a is not None:
                    ok = ok & xp.isfinite(a).reshape(a.shape[0], a.shape[1], -1).all(axis=-1)
        return self.backend.to_numpy(ok)

    def flops(self, B: int, train: bool = True) -> dict[str, float]:
        """Minimal FLOPs of one step of one genome and replica (the benchmark's count).

        Forward ``2 B n_src n_dst k`` per projection (stored slots for tiles),
        backward only into populations the backward pass updates, Hebbian
        products for ``W`` and untied ``V``. Elementwise work is not counted.
        """
        return step_flops(self.program, B, train, [op.stored for op in self.ops],
                          [None if op is None else op.stored for op in self.vops])

    def synapse_bytes(self, st: SynapseState) -> int:
        """Bytes held by the stored synapses of ``st``."""
        return int(sum(a.nbytes for lst in (st.W, st.b, st.V) for a in lst if a is not None))

    def genome_bytes(self, B: int) -> int:
        """Bytes one genome and replica of a step touches at batch size ``B`` (synapses and states):
        what the executor sizes its chunks of species by."""
        it = np.dtype(self.backend.dtype).itemsize
        syn = sum(op.stored for op in self.ops) + sum(op.stored for op in self.vops if op is not None)
        neurons = sum(p.size for p in self.program.pops)
        return int(it * (self.kw * syn + 4 * self.k * B * neurons))

    # ------------------------------------------------------------------ driving
    def _input_states(self, x) -> dict[int, dict]:
        """Per input population: the data ``(1, 1, 1, B, n)`` (state 0; other states are 0)."""
        xp = self.xp
        x = self.backend.asarray(x)
        out = {}
        for i in self.program.inputs:
            p = self.program.pops[i]
            xi = xp.ascontiguousarray(x[:, p.in_slice])
            out[i] = {"x": xi[None, None, None], "tiled": None}
        return out

    def _targets(self, y, pop):
        """Coded and one-hot targets (B, n) of output ``pop`` (:func:`blursim.sim.step.targets`)."""
        return step.targets(self.program, y, pop, self.xp, self.backend.dtype)

    def _ensure_persistent(self, st: SynapseState, S: int, R: int, B: int) -> set[int]:
        """Arrays for neuron states kept between steps (reset_neurons off); returns the populations
        whose kept state is valid (the others start from zero, as after a reset)."""
        prog = self.program
        if st.a is None:
            st.a = [None] * len(prog.pops)
        valid = set()
        for p in prog.pops:
            if p.role == "input":
                continue
            shape = (S, R, self.k, B, p.size)
            cur = st.a[p.index]
            if cur is None or tuple(cur.shape) != shape:
                st.a[p.index] = self.xp.zeros(shape, dtype=self.backend.dtype)
            else:
                valid.add(p.index)
        return valid

    # -------------------------------------------------------------- one chunk
    def _run(self, st, genes, ch: Chunk, inputs, B: int, **kw) -> StepRun:
        return StepRun(self, st, self._coefs(genes, ch.s0, ch.s1, B), ch, inputs, B, **kw)

    def _train_chunk(self, st, genes, ch: Chunk, inputs, targets, B: int, kept: set[int] | None,
                     tap=None) -> None:
        """One training step of a chunk of species and replicas: the step of :mod:`blursim.sim.step`
        on the fast kernels; kept neuron states are written back."""
        run = self._run(st, genes, ch, inputs, B, targets=targets, kept=kept, tap=tap)
        step.train_step(self.kernels, run, self.program)
        if kept is not None:
            for p in self.program.pops:
                if p.role != "input":
                    st.a[p.index][ch.s0:ch.s1, ch.r0:ch.r1] = run.state(p.index)

    def _forward_chunk(self, st, genes, ch: Chunk, inputs, B: int, outs) -> None:
        run = self._run(st, genes, ch, inputs, B)
        step.evaluate(self.kernels, run, self.program)
        for o in self.program.outputs:
            outs[o][ch.s0:ch.s1, ch.r0:ch.r1] = run.state(o)[:, :, 0]
