"""The BLUR simulator: exactly one step of DESIGN §2 (paper eq. 5-8), batched.

Arrays carry a species axis ``S`` (genomes side by side, e.g. an ES
population) and a replica axis ``R`` (independent synapse initialisations
sharing a genome). Internal layouts are channel-major: neuron states
``(S, R, k, B, n)``, synapses ``(S, R, kw, ...)`` (:mod:`blursim.sim.synapses`)
in the storage layout of their operator (:mod:`blursim.sim.operators`: dense
``(n_pre, n_post)`` or block tiles).

The step, in the order of DESIGN §2, one section of :class:`Simulator` each:

1. reset neuron states (``rules.reset_neurons``);
2. write the input batch into state 0 of the input populations;
3. eq. (5), the forward pass: ``a_j <- sigma_fwd(N(f a_j + eta z_j))``,
   ``z_j^c = sum_q sum_r W_q[r, j, c] (nu a_i[r])^c``       (:meth:`Simulator._forward`);
4. feedback into the outputs (Sec. 3.3, :mod:`blursim.vocab.feedback`);
5. eq. (6), the backward pass, by ``rules.backward_update``  (:meth:`Simulator._backward`);
6. eq. (7), the synapse update ``W <- f~ W + eta~ (H + O)`` with Oja's term
   (eq. 8 / App. B) and saturation (Sec. 3.4)                 (:meth:`Simulator._synapse_update`),
   after synapse normalisation (App. C.6, :meth:`Simulator._normalized`).

What the step is made of, elsewhere:

- the genome's numbers, folded once per chunk into gemm scales and ``k x k``
  matrices: :mod:`blursim.sim.coefficients`;
- the products, one operator per projection: :mod:`blursim.sim.operators`;
- activation functions and feedback kinds by name: :mod:`blursim.vocab`;
- how the work runs -- chunks of species on threads, independent update
  jobs, per-thread buffers, BLAS threads: the backend's executor
  (:mod:`blursim.backend.executor`, :mod:`blursim.backend.numpy_backend`).

How it is made fast without changing what it computes (docs/benchmarks.md):
every scalar of the genome is folded into the ``alpha``/``beta`` of a matrix
product or into a ``k x k`` mixing matrix, never applied as a pass over a
large array (``eta z`` is ``alpha = eta``, ``f~ W + eta~ H`` is one ``gemm``
with ``beta = f~``, ``f a + eta y`` one ``gemm`` into ``a``); input
populations hold only state 0 (the data), shared by every species, so their
mixed states ``(nu x)^c = nu[c, 0] x`` are never materialised; activations run
in place for real dtypes (complex128 uses the registered, complex-step-safe
functions).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blursim.backend import Backend, get_backend
from blursim.backend.executor import Chunk
from blursim.genome.arrays import GenomeBatch, stack_genomes
from blursim.graph.compile import Program
from blursim.sim.coefficients import Coefficients, GenomeArrays, PreparedGenomes, floor_real, genome_abs
from blursim.sim.metrics import task_metrics
from blursim.sim.operators import make_operator
from blursim.sim.synapses import TAG_INIT, Layout, SynapseState, draw
from blursim.sim.targets import check_targets, coded_targets
from blursim.vocab import ACTIVATIONS, FEEDBACK
from blursim.vocab.activations import INPLACE

# SeedSequence stream tags (DESIGN §2, Randomness); TAG_INIT is the initial synapses'.
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
    """

    def __init__(self, program: Program, backend: Backend | str | None = None, dtype: str | None = None,
                 *, sparse: str = "auto", threads: int | None = None):
        self.program = program
        if isinstance(backend, Backend) and dtype is not None and dtype != backend.dtype_name:
            backend = type(backend)(dtype)
        self.backend = get_backend(backend, dtype)
        self.xp = self.backend.xp
        self.k = program.k
        self.rules = program.rules
        self.kw = program.kw
        self.sparse = sparse
        tied = self.rules.tied
        self.ops = [make_operator(q, self.backend, sparse=sparse, tied=tied) for q in program.projs]
        self.vops = [None if tied else make_operator(q, self.backend, transposed=True, sparse=sparse)
                     for q in program.projs]
        self.layout = Layout(self.ops, self.vops, self.backend)
        self.feedback = FEEDBACK.get(self.rules.feedback)
        # the program names each population's activations; resolved here (blursim.vocab)
        self._fwd = [[ACTIVATIONS.get(n) for n in p.fwd_names] for p in program.pops]
        self._bwd = [[ACTIVATIONS.get(n) for n in p.bwd_names] for p in program.pops]
        #: How this step's chunks, jobs and buffers run (the backend's; blursim.backend.executor).
        self.executor = self.backend.executor(threads)
        self._real = np.dtype(self.backend.dtype).kind != "c"
        # inputs feeding each projection (pre population is an input)
        self._is_input = [p.role == "input" for p in program.pops]
        # shared channels store channel 0's update instead of the channel mean (rules.shared_update)
        self._channel0 = program.shared and self.rules.shared_update == "channel0"

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

    def _coefs(self, genes, s0: int, s1: int, B: int) -> Coefficients:
        cache = getattr(genes, "coef_cache", None)
        if cache is None:
            return Coefficients(self.backend, self.k, genes, s0, s1, B)
        key = (id(self), s0, s1, B)
        c = cache.get(key)
        if c is None:
            if len(cache) > 256:
                cache.clear()
            c = cache[key] = Coefficients(self.backend, self.k, genes, s0, s1, B)
        return c

    # ----------------------------------------------------------------- synapses
    def init_synapses(self, genes: PreparedGenomes, replicas: int = 1, seed: int = 0) -> SynapseState:
        """Fresh synapses. Replica ``r`` depends only on ``seed`` and ``r`` (common to all species)."""
        init = self.rules.synapse_init
        per_replica = []
        for r in range(replicas):
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), TAG_INIT, r]))
            draws = []
            for q in self.program.projs:
                fan_w = q.n_pre + (1 if q.bias else 0)
                W = draw(rng, (self.kw, q.n_pre, q.n_post), init, fan_w)
                b = None
                if q.bias:
                    b = (draw(rng, (self.kw, q.n_post), init, fan_w)
                         if init.bias == "same" else np.zeros((self.kw, q.n_post)))
                V = None
                if not self.rules.tied:
                    V = draw(rng, (self.kw, q.n_post, q.n_pre), init, q.n_post)
                if q.mask is not None:
                    W = W * q.mask
                    if V is not None:
                        V = V * q.mask.T
                draws.append((W, b, V))
            per_replica.append(draws)
        Ws, bs, Vs = [], [], []
        for qi, q in enumerate(self.program.projs):
            scale = genes[q.group].init_scale
            W = self.ops[qi].from_dense(np.stack([d[qi][0] for d in per_replica]), np)
            Ws.append(self._scaled(W, scale))
            if q.bias:
                bs.append(self._scaled(np.stack([d[qi][1] for d in per_replica]), scale))
            else:
                bs.append(None)
            if not self.rules.tied:
                V = self.vops[qi].from_dense(np.stack([d[qi][2] for d in per_replica]), np)
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
        keep = None if self.rules.reset_neurons else self._ensure_persistent(st, S, R, B)
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
        k, prog = self.k, self.program
        fwd = sum(2.0 * B * op.stored * k for op in self.ops)
        out = {"forward": fwd}
        if train:
            upd = set(prog.backward_order)
            bwd = 0.0
            for qi, q in enumerate(prog.projs):
                if q.pre in upd:
                    op = self.ops[qi] if self.vops[qi] is None else self.vops[qi]
                    bwd += 2.0 * B * op.stored * k
            heb = sum(2.0 * B * op.stored * k for op in self.ops)
            heb += sum(2.0 * B * op.stored * k for op in self.vops if op is not None)
            out.update(backward=bwd, hebbian=heb)
        out["total"] = sum(out.values())
        return out

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

    def _tiled(self, inp: dict):
        """Input data repeated over the ``k`` channels along the batch: ``(1, 1, 1, k B, n)``."""
        if inp["tiled"] is None:
            x = inp["x"]
            inp["tiled"] = self.xp.ascontiguousarray(
                self.xp.broadcast_to(x, (1, 1, self.k) + x.shape[-2:]).reshape((1, 1, 1, -1, x.shape[-1])))
        return inp["tiled"]

    def _targets(self, y, pop):
        """Coded and one-hot targets (B, n) of output ``pop`` (:func:`blursim.sim.targets.coded_targets`)."""
        return coded_targets(y, pop.size, self.rules.target_coding, population=pop.name,
                             feedback=self.rules.feedback, xp=self.xp, dtype=self.backend.dtype)

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
    def _views(self, st: SynapseState, ch: Chunk, effective: bool, genes, cf: Coefficients):
        sl = (slice(ch.s0, ch.s1), slice(ch.r0, ch.r1))
        W = [w[sl] for w in st.W]
        b = [None if x is None else x[sl] for x in st.b]
        V = [None if v is None else v[sl] for v in st.V]
        mode = self.rules.synapse_normalization
        if mode == "none" or not effective:
            return W, b, V, W, b, V
        We, be, Ve = self._normalized(W, b, V, cf, copy=(mode == "activations"))
        if mode == "stored":
            return W, b, V, W, b, V  # normalised in place
        return W, b, V, We, be, Ve

    def _normalized(self, W, b, V, cf: Coefficients, copy: bool):
        """App. C.6: ``W' = rescale * W / sqrt(sum_i W^2 (+ b^2) + eps)`` per postsynaptic neuron and channel."""
        xp, eps = self.xp, self.rules.synapse_norm_eps
        We, be, Ve = [], [], []
        for qi, q in enumerate(self.program.projs):
            resc = cf.scalar(q.group, "rescale").b(4)
            n2 = self.ops[qi].colsq(W[qi])
            if b[qi] is not None:
                n2 = n2 + b[qi] * b[qi]
            inv = resc / xp.sqrt(n2 + eps)
            w = W[qi].copy() if copy else W[qi]
            self.ops[qi].scale_dst(w, inv)
            We.append(w)
            if b[qi] is None:
                be.append(None)
            else:
                bb = b[qi].copy() if copy else b[qi]
                bb *= inv
                be.append(bb)
            if V[qi] is None:
                Ve.append(None)
            else:
                nv = self.vops[qi].colsq(V[qi])
                v = V[qi].copy() if copy else V[qi]
                self.vops[qi].scale_dst(v, resc / xp.sqrt(nv + eps))
                Ve.append(v)
        return We, be, Ve

    def _train_chunk(self, st, genes, ch: Chunk, inputs, targets, B: int, keep: set[int] | None,
                     tap=None) -> None:
        cf = self._coefs(genes, ch.s0, ch.s1, B)
        W, b, V, We, be, Ve = self._views(st, ch, True, genes, cf)
        run = _StepState(self, cf, ch, inputs, B)
        run.tap = tap
        for p in keep or ():
            buf = run.ws.get(("a0", p), run.shape(p))
            buf[...] = st.a[p][ch.s0:ch.s1, ch.r0:ch.r1]
            run.a[p] = buf
        self._forward(run, We, be)
        if tap is not None:
            tap.states("forward", ch.s0, ch.r0, run.state)
        for o in self.program.outputs:
            coded, onehot = targets[o]
            a = run.state(o)
            old = [a[:, :, c] for c in range(self.k)]
            new = self.feedback(old, coded, onehot, self.xp)
            for c in range(1, self.k):  # state 0 is never changed
                if new[c] is not old[c]:
                    a[:, :, c] = new[c]
        if tap is not None:
            tap.states("feedback", ch.s0, ch.r0, run.state)
        self._backward(run, We, Ve)
        if tap is not None:
            tap.states("backward", ch.s0, ch.r0, run.state)
        self._update(run, W, b, V)
        if keep is not None:
            for p in self.program.pops:
                if p.role != "input":
                    st.a[p.index][ch.s0:ch.s1, ch.r0:ch.r1] = run.state(p.index)

    def _forward_chunk(self, st, genes, ch: Chunk, inputs, B: int, outs) -> None:
        cf = self._coefs(genes, ch.s0, ch.s1, B)
        _, _, _, We, be, _ = self._views(st, ch, self.rules.synapse_normalization == "activations",
                                         genes, cf)
        run = _StepState(self, cf, ch, inputs, B)
        self._forward(run, We, be)
        for o in self.program.outputs:
            outs[o][ch.s0:ch.s1, ch.r0:ch.r1] = run.state(o)[:, :, 0]

    # ============================================================ eq. (5): forward pass
    def _forward(self, run: "_StepState", W, b) -> None:
        """Eq. (5), every non-input population ``j`` in topological order (or ``sweeps`` synchronous
        sweeps, each from the previous sweep's states)::

            z_j^c = sum_{q: i -> j} sum_r W_q[r, j, c] (nu_q abar_i[r])^c     (abar: a plus the bias unit, all 1)
            a_j  <- sigma_fwd( N( f a_j + eta z_j ) )

        ``f``, ``eta`` from ``j``'s genome group, ``nu_q`` from ``q``'s; ``N`` (Sec. 3.4) only if the
        population normalises its forward pass. ``eta`` is folded into each product's ``alpha``; the
        mixed states ``nu a_i`` are computed once per population (:meth:`_StepState.mix`); an input
        holds only state 0, so its ``(nu x)^c = nu[c, 0] x`` goes into ``alpha`` instead.
        """
        prog, cf = self.program, run.cf
        sync = self.rules.schedule == "synchronous"
        for sweep in range(self.rules.sweeps if sync else 1):
            new = {}
            for j in prog.forward_order:
                p = prog.pops[j]
                z = run.ws.get(("z", j, sweep % 2 if sync else 0), run.shape(j))
                eta = cf.scalar(p.group, "eta")
                beta = 0
                for qi in p.incoming:  # eta z_j, eta folded into each product's alpha
                    q = prog.projs[qi]
                    X, alpha = self._fwd_operand(run, q, eta)
                    if X is None:  # presynaptic states are all zero
                        continue
                    self.ops[qi].apply(X, W[qi], z, alpha, beta)
                    beta = 1
                bias = self._bias_total(run, j, b, eta)
                if bias is not None:
                    if beta:
                        z += bias
                    else:
                        z[...] = bias
                    beta = 1
                if j in run.a:  # + f a_j (zero after a reset: skipped)
                    fa = run.a[j] * cf.scalar(p.group, "f").b(5)
                    if beta:
                        z += fa
                    else:
                        z[...] = fa
                    beta = 1
                if beta == 0:
                    z.fill(0)
                if p.norm_fwd:
                    self._normalize(z, cf, p.group)
                self._activate(p.fwd_names, self._fwd[j], z)
                if sync:
                    new[j] = z
                else:
                    run.set(j, z)
            for j, z in new.items():
                run.set(j, z)

    def _fwd_operand(self, run, q, eta):
        """Presynaptic operand of eq. (5) and its gemm ``alpha``: ``(nu a_i)`` with ``eta`` folded in."""
        cf = run.cf
        if self._is_input[q.pre]:  # (nu a)^c = nu[c, 0] x: scale the product, not x
            g, pg = q.group, self.program.pops[q.post].group
            alpha = cf.scale(("fin", q.index, pg),
                             lambda: (cf.h[pg]["eta"][:, None] * cf.h[g]["nu"][:, :, 0])[:, None, :])
            return run.inputs[q.pre]["x"], alpha
        if q.pre not in run.a:
            return None, None
        return run.mix(q.pre, q.group, "nu"), eta

    def _bias_total(self, run, j, b, eta):
        """``eta sum_q (nu 1)^c b_q`` for population ``j``: ``(c, R, k, 1, n)`` or ``None``."""
        cf, total = run.cf, None
        pg = self.program.pops[j].group
        for qi in self.program.pops[j].incoming:
            q = self.program.projs[qi]
            if not q.bias:
                continue
            coef = cf.dev(("fbias", qi, pg), lambda q=q: (
                cf.h[pg]["eta"][:, None] * cf.h[q.group]["nu"].sum(axis=2)).reshape(cf.c, 1, self.k, 1, 1))
            t = coef * b[qi][:, :, :, None, :]
            total = t if total is None else total + t
        return total

    # =========================================================== eq. (6): backward pass
    def _backward(self, run: "_StepState", W, V) -> None:
        """Eq. (6), every non-input population ``i`` with outgoing projections, in reverse order (or
        ``sweeps`` synchronous sweeps)::

            y_i^c = sum_{q: i -> j} sum_{j'} V_q[j', i, c] (mu_q a_j[j'])^c     (V_q = W_q^T when tied)

            additive:                     a_i <- sigma_bwd( N( f a_i + eta y_i ) )
            multiplicative:               a_i <- sigma_bwd( f a_i * y_i )
            multiplicative_second_state:  a_i <- sigma_bwd( f [a_i^0, a_i^1 y_i^1, ..., a_i^{k-1} y_i^{k-1}] )

        ``f a_i + eta y_i`` is one gemm per projection into ``a_i`` (``beta = f``, ``alpha = eta``);
        the multiplicative modes fold ``f`` into ``y``.
        """
        prog, xp, cf = self.program, self.xp, run.cf
        mode = self.rules.backward_update
        sync = self.rules.schedule == "synchronous"
        for sweep in range(self.rules.sweeps if sync else 1):
            new = {}
            for i in prog.backward_order:
                p = prog.pops[i]
                f = cf.scalar(p.group, "f")
                old = run.state(i)
                C = run.ws.get(("b", i, sweep % 2), run.shape(i)) if sync else old
                if mode == "additive":
                    beta = f
                    if sync:
                        xp.multiply(old, f.b(5), out=C)
                        beta = 1
                    self._backward_products(run, i, W, V, C, cf.scalar(p.group, "eta"), beta)
                    if p.norm_bwd:
                        self._normalize(C, cf, p.group)
                else:
                    Y = run.ws.get(("y", i), run.shape(i))
                    self._backward_products(run, i, W, V, Y, f, 0)
                    if mode == "multiplicative":  # f * (a ⊙ y), f folded into y
                        xp.multiply(old, Y, out=C)
                    else:  # multiplicative_second_state: a^0 kept, a^c ⊙ y^c for c >= 1, then x f
                        xp.multiply(old[:, :, 1:], Y[:, :, 1:], out=C[:, :, 1:])
                        xp.multiply(old[:, :, 0], f.b(4), out=C[:, :, 0])
                self._activate(p.bwd_names, self._bwd[i], C)
                if sync:
                    new[i] = C
                else:
                    run.set(i, C)
            for i, C in new.items():
                run.set(i, C)

    def _backward_products(self, run, i, W, V, C, alpha, beta) -> None:
        """``C <- beta C + alpha y_i`` with ``y_i = sum_q (V_q or W_q^T)(mu a_j)``."""
        prog = self.program
        for qi in prog.pops[i].outgoing:
            q = prog.projs[qi]
            if q.post not in run.a:
                continue
            m = run.mix(q.post, q.group, "mu")
            if V[qi] is None:
                self.ops[qi].apply_t(m, W[qi], C, alpha, beta)
            else:
                self.vops[qi].apply(m, V[qi], C, alpha, beta)
            beta = 1
        if beta == 0:
            C.fill(0)

    # ================================================ eq. (7)-(8): synapse update
    def _update(self, run: "_StepState", W, b, V) -> None:
        """Eq. (7) for every projection's ``W`` (with its bias row) and untied ``V``
        (:meth:`_synapse_update`). They only read neuron states, so they are independent jobs that
        the executor may run side by side; each prepares its own operands (mixed states are cached
        per workspace, i.e. per thread)."""
        if self.program.shared:
            for i in self.program.inputs:  # shared cache, filled before any job runs
                self._tiled(run.inputs[i])
        jobs = []
        for qi, q in enumerate(self.program.projs):
            g, i, j = q.group, q.pre, q.post
            inp = self._is_input[i]
            # the mixed states each job reads (jobs sharing them are best run by one thread)
            needs = {(j, g, "mu_tilde")} | (set() if inp else {(i, g, "nu_tilde_t")})
            jobs.append((self.ops[qi].stored, needs,
                         lambda qi=qi: self._synapse_update(run, qi, "W", W[qi], b[qi])))
            if self.vops[qi] is not None:
                needs = {(j, g, "nu_tilde_t")} | (set() if inp else {(i, g, "mu_tilde")})
                jobs.append((self.vops[qi].stored, needs,
                             lambda qi=qi: self._synapse_update(run, qi, "V", V[qi], None)))
        self.executor.run_jobs(jobs)

    def _synapse_update(self, run: "_StepState", qi: int, which: str, E, bq) -> None:
        """Eq. (7), with the Oja term of eq. (8) / App. B and saturation (Sec. 3.4), for the synapses
        ``E`` of projection ``q``: its forward synapses (``which = "W"``: ``src = pre``,
        ``dst = post``, with the bias row ``bq``) or its untied backward synapses (``"V"``:
        ``src = post``, ``dst = pre``, no bias)::

            P^c = sum_e nu~[e, c] a_src^e              Q^c = sum_d mu~[c, d] a_dst^d
            H   = rho_b P_b^T Q_b                       rho: sum over the batch (1/B sum with "mean")
            O   = -sign(eta~) |alpha| E n2              n2 = sum_r E[r]^2 ("weights") or rho_b Q_b^2 ("activity")
            E  <- f~ E + eta~ (H + O)       =  D E + eta~ H,   D = f~ - |eta~| |alpha| n2
            E  <- s tanh(E / s)                         s = |saturation| (with rules.saturation)

        ``f~, eta~, nu~, mu~, alpha, s`` from ``q``'s genome group. ``D E + eta~ H`` is one gemm into
        ``E`` (``beta = f~`` without Oja, else ``E`` is scaled by ``D`` first). The bias row's
        presynaptic unit has all states 1, so its ``P^c = sum_e nu~[e, c]``. Shared channels
        (``kw = 1``) store the mean over channels of the ``k`` per-channel updates (all channels
        batched into one product, ``1/k`` in ``alpha``), or channel 0's (``shared_update``).
        """
        q, cf, B = self.program.projs[qi], run.cf, run.B
        g = q.group
        src, dst = (q.pre, q.post) if which == "W" else (q.post, q.pre)
        h = cf.h[g]
        shared = self.program.shared
        op = self.ops[qi] if which == "W" else self.vops[qi]
        # eta~ rho (1/k for the channel mean): the gemm's alpha, per species or per (species, channel)
        base = self._hebbian_base(cf, g, B)
        key = ("h" + which, qi, B)
        per_species = lambda base: base.reshape(-1, 1, 1)  # noqa: E731  (the gemm alpha of a base)

        # -- P = nu~^T a_src, Q = mu~ a_dst
        if self._is_input[q.pre]:  # input states: x in state 0, zeros elsewhere (only a pre can be an input)
            x = run.inputs[q.pre]
            if shared:
                mixed = run.mix(q.post, g, "mu_tilde_in" if which == "W" else "nu_tilde_t_in")
                if self._channel0:
                    mixed, xs = mixed[:, :, 0:1], x["x"]
                else:
                    mixed, xs = run.flat(mixed), x["tiled"]
                P, Q = (xs, mixed) if which == "W" else (mixed, xs)
            elif which == "W":  # (nu~^T x)^c = nu~[0, c] x
                P, Q = x["x"], run.mix(q.post, g, "mu_tilde")
                per_species = lambda base: (base[:, None] * h["nu_tilde"][:, 0, :])[:, None, :]  # noqa: E731
            else:  # (mu~ x)^c = mu~[c, 0] x
                P, Q = run.mix(q.post, g, "nu_tilde_t"), x["x"]
                per_species = lambda base: (base[:, None] * h["mu_tilde"][:, :, 0])[:, None, :]  # noqa: E731
        else:
            P, Q = run.mix(src, g, "nu_tilde_t"), run.mix(dst, g, "mu_tilde")
            if self._channel0:
                P, Q = P[:, :, 0:1], Q[:, :, 0:1]
            elif shared:
                P, Q = run.flat(P), run.flat(Q)
        alpha = cf.scale(key, lambda: per_species(base))
        if run.tap is not None and run.tap.wants_hebbian(qi, which):  # a monitor records H, same operands
            unit = self._hebbian_base(cf, g, B, eta=False)
            H = self.xp.zeros_like(E)
            op.hebbian_update(P, Q, H, cf.scale(key + ("H",), lambda: per_species(unit)), 0)
            Hb = None if bq is None else self.xp.matmul(
                cf.dev(("hbmH", q.index), lambda: self._bias_matrix(cf, g, unit)), run.asum(q.post))
            run.tap.hebbian(qi, which, run.ch.s0, run.ch.r0, op.to_dense(H), Hb)
        q_sq = self._q_sq(run, dst, g) if self.rules.oja == "activity" else None
        bsum = run.asum(q.post) if bq is not None else None  # rho_b a_post, for the bias row

        # -- keep factor D = f~ - |eta~| |alpha| n2 of eq. (8) (``None``: D = f~, folded into the gemm)
        D = None
        if self.rules.oja != "none":
            if self.rules.oja == "weights":
                n2 = op.colsq(E)
                if bq is not None:
                    n2 = n2 + bq * bq
            else:
                n2 = q_sq
                if self.rules.batch_reduction == "mean":
                    n2 = n2 / run.B
                if self.kw == 1:
                    n2 = n2[:, :, 0:1] if self._channel0 else n2.mean(axis=2, keepdims=True)
            ft = cf.dev(("ft4", g), lambda: cf.h[g]["f_tilde"].reshape(-1, 1, 1, 1))
            oc = cf.dev(("oja4", g), lambda: (genome_abs(cf.h[g]["oja_alpha"]) * genome_abs(cf.h[g]["eta_tilde"])).reshape(-1, 1, 1, 1))
            D = ft - oc * n2  # (c, R, kw, n_dst)
            op.scale_dst(E, D)

        # -- E <- D E + eta~ H: one gemm
        op.hebbian_update(P, Q, E, alpha, cf.scalar(g, "f_tilde") if D is None else 1)

        # -- the bias row: b <- D b + eta~ rho_b (nu~^T 1)^c Q_b, with rho_b Q_b = mu~ (rho_b a_post)
        if bq is not None:
            Hb = self.xp.matmul(cf.dev(("hbm", q.index), lambda: self._bias_matrix(cf, g, base)), bsum)
            bq *= cf.scalar(g, "f_tilde").b(4) if D is None else D
            bq += Hb

        # -- saturation: E <- s tanh(E / s), and the bias row likewise
        if self.rules.saturation:
            self._saturate(E, cf, g)
            if bq is not None:
                self._saturate(bq, cf, g)

    def _saturate(self, E, cf, g: str) -> None:
        """``E <- s tanh(E / s)`` in place, ``s = |saturation|`` of genome group ``g`` (Sec. 3.4)."""
        s = cf.scale(("sat", g), lambda: floor_real(genome_abs(cf.h[g]["saturation"]), 1e-12).reshape(-1, 1, 1))
        E /= s.b(E.ndim)
        self.xp.tanh(E, out=E)
        E *= s.b(E.ndim)

    def _hebbian_base(self, cf, g: str, B: int, eta: bool = True):
        """``eta~`` per species (``eta=False``: 1), x 1/B for the mean reduction, x 1/k for the
        channel mean of shared channels."""
        k, mean, shared = self.k, self.rules.batch_reduction == "mean", self.program.shared
        shared = shared and not self._channel0
        gain = (lambda: cf.h[g]["eta_tilde"]) if eta else (lambda: np.ones(cf.c))
        return cf.cached(("base", g, eta), lambda: gain() * (1.0 / B if mean else 1.0) / (k if shared else 1))

    def _q_sq(self, run, p: int, g: str):
        """``rho_b (Q_b)^2`` with ``Q = mu~ a_p`` (Oja activity mode): ``(c, R|1, k, n)``."""
        cf = run.cf
        if self._is_input[p]:  # Q^c = mu~[c, 0] x
            x = run.inputs[p]["x"][0, 0, 0]
            xsq = (x * x).sum(axis=0)
            m0 = cf.dev(("mu0sq", g), lambda: (cf.h[g]["mu_tilde"][:, :, 0] ** 2).reshape(cf.c, 1, self.k, 1))
            n2 = m0 * xsq
        else:
            Q = run.mix(p, g, "mu_tilde")
            n2 = (Q * Q).sum(axis=-2)
        return n2

    def _bias_matrix(self, cf, g: str, base):
        """``base (nu~^T 1)^c mu~[c, :]`` as ``(c, 1, kw, k)``: times ``rho_b a_b`` it is the bias
        row's Hebbian term (the channel mean, or channel 0, of shared channels)."""
        h, k = cf.h[g], self.k
        scale = base * (k if self.program.shared and not self._channel0 else 1)  # undo base's 1/k
        M = (scale[:, None] * h["nu_tilde"].sum(axis=1))[:, :, None] * h["mu_tilde"]  # (c, k, k)
        if self.program.shared:  # (c, 1, k): channel 0, or the channel mean
            M = M[:, 0:1] if self._channel0 else M.mean(axis=1, keepdims=True)
        return M[:, None]

    # ------------------------------------------------------------ small kernels
    def _normalize(self, x, cf: Coefficients, g: str) -> None:
        """N of Sec. 3.4 in place: per neuron and state over the batch, then gain/shift from the genome."""
        xp = self.xp
        gain = cf.dev(("gain", g), lambda: cf.h[g]["norm_gain"].reshape(cf.c, 1, self.k, 1, 1))
        shift = cf.dev(("shift", g), lambda: cf.h[g]["norm_shift"].reshape(cf.c, 1, self.k, 1, 1))
        x -= xp.mean(x, axis=-2, keepdims=True)
        var = xp.mean(x * x, axis=-2, keepdims=True)
        x *= gain / xp.sqrt(var + self.rules.norm_eps)
        x += shift

    def _activate(self, names, fns, x) -> None:
        """Apply the per-state activations (``names``, resolved to ``fns``) to ``x (c, R, k, B, n)`` in place."""
        xp = self.xp
        if all(n == names[0] for n in names):
            fast = INPLACE.get(names[0]) if self._real else None
            if fast is not None:
                fast(x, xp)
            else:
                x[...] = fns[0](x, xp)
            return
        for c, fn in enumerate(fns):
            xc = x[:, :, c]
            fast = INPLACE.get(names[c]) if self._real else None
            if fast is not None:
                fast(xc, xp)
            else:
                xc[...] = fn(xc, xp)


class _StepState:
    """Neuron states of one chunk during one step, with cached mixed states.

    ``a[p]``: the state of population ``p`` (absent while it is known to be
    zero, e.g. right after a reset). ``mix(p, g, name)`` returns ``M a_p``
    for the genome group's ``k x k`` matrix ``name`` and caches it until
    ``a_p`` changes. Mixes and batch sums are computed and cached per
    workspace (the executor gives each thread its own), so that the
    independent synapse updates of :meth:`Simulator._update` may run side by
    side; states only change between those phases, in the thread that drives
    the step.
    """

    def __init__(self, sim: Simulator, cf: Coefficients, ch: Chunk, inputs, B: int) -> None:
        self.sim, self.cf, self.ch, self.inputs, self.B = sim, cf, ch, inputs, B
        self.ws = sim.executor.workspace()
        self.c, self.R = ch.s1 - ch.s0, ch.r1 - ch.r0
        self.a: dict[int, Any] = {}
        self._mix: dict = {}
        self._asum: dict = {}
        self.tap = None  # a monitor's hooks for this step (Simulator.train_step), or None

    def shape(self, p: int) -> tuple:
        return (self.c, self.R, self.sim.k, self.B, self.sim.program.pops[p].size)

    def state(self, p: int):
        if p not in self.a:
            self.a[p] = self.ws.get(("zero", p), self.shape(p), zero=True)
        return self.a[p]

    def set(self, p: int, value) -> None:
        self.a[p] = value
        for cache in (self._mix, self._asum):
            for key in [k for k in cache if k[0] == p]:
                del cache[key]

    def mix(self, p: int, g: str, name: str):
        ws = self.sim.executor.workspace()  # this thread's: update jobs may run side by side
        key = (p, g, name, id(ws))
        out = self._mix.get(key)
        if out is None:
            a = self.state(p)
            sh = a.shape
            out = ws.get(("mix", p, g, name), sh)
            self.sim.backend.matmul_into(self.cf.mat(g, name), a.reshape(sh[:3] + (sh[3] * sh[4],)),
                                         out.reshape(sh[:3] + (sh[3] * sh[4],)))
            self._mix[key] = out
        return out

    def flat(self, X):
        """``(c, R, k, B, n)`` -> ``(c, R, 1, k B, n)``: all channels as one batch (shared-channel Hebbians)."""
        s = X.shape
        return X.reshape(s[0], s[1], 1, s[2] * s[3], s[4])

    def asum(self, p: int):
        """``sum_b a_p``: ``(c, R, k, n)``."""
        key = (p, id(self.sim.executor.workspace()))
        s = self._asum.get(key)
        if s is None:
            s = self._asum[key] = self.state(p).sum(axis=-2)
        return s
