"""The BLUR simulator: exactly one step of DESIGN §2 (paper eq. 5-8), batched.

Arrays carry a species axis ``S`` (genomes side by side, e.g. an ES
population) and a replica axis ``R`` (independent synapse initialisations
sharing a genome). Internal layouts are channel-major (see
:mod:`blursim.sim.operators`); :meth:`SynapseState.forward_synapses` returns
DESIGN's layout ``(S, R, n_pre + bias, n_post, k)``.

The step, in the order of DESIGN §2:

1. reset neuron states (``rules.reset_neurons``);
2. write the input batch into state 0 of the input populations;
3. forward pass, eq. (5): ``a_j <- sigma_fwd(N(f a_j + eta z_j))`` with
   ``z_j^c = sum_q sum_i W_q[i, j, c] (nu a_i)^c``;
4. feedback into the outputs (Sec. 3.3, :mod:`blursim.sim.feedback`);
5. backward pass, eq. (6), by ``rules.backward_update``;
6. synapse update, eq. (7) with the optional Oja term of eq. (8) / App. B,
   synapse normalisation (App. C.6) and saturation (Sec. 3.4).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blursim.backend import Backend, get_backend
from blursim.genome.arrays import GenomeBatch, stack_genomes
from blursim.graph.compile import Program
from blursim.sim.feedback import FEEDBACK
from blursim.sim.operators import make_operator

# SeedSequence stream tags (DESIGN §2, Randomness).
TAG_INIT = 0x696E6974
TAG_DATA = 0x64617461
TAG_QUERY = 0x71727279


@dataclass
class SynapseState:
    """Synapses (and persistent neuron states) of ``S x R`` networks.

    ``W[q]``: ``(S, R, kw, n_pre, n_post)``; ``b[q]``: ``(S, R, kw, n_post)`` or
    ``None``; ``V[q]``: ``(S, R, kw, n_post, n_pre)`` or ``None`` when tied.
    ``a``: neuron states ``(S, R, k, B, n)`` kept between steps when
    ``reset_neurons`` is off. ``steps``: training steps taken.
    """

    W: list[Any]
    b: list[Any]
    V: list[Any]
    a: list[Any] | None = None
    steps: int = 0
    meta: dict = field(default_factory=dict)

    def copy(self) -> "SynapseState":
        c = lambda x: None if x is None else x.copy()  # noqa: E731
        return SynapseState(
            [c(w) for w in self.W], [c(x) for x in self.b], [c(v) for v in self.V],
            None if self.a is None else [c(x) for x in self.a], self.steps, dict(self.meta),
        )

    @property
    def shape_SR(self) -> tuple[int, int]:
        return int(self.W[0].shape[0]), int(self.W[0].shape[1])

    def get(self, q: int, which: str = "W"):
        """Dense internal-layout array of projection ``q``: ``which`` in ``W``, ``b``, ``V``.

        ``W``: ``(S, R, kw, n_pre, n_post)`` (zeros outside the mask), ``b``:
        ``(S, R, kw, n_post)`` or None, ``V``: ``(S, R, kw, n_post, n_pre)`` or None.
        Use this (and :meth:`set`) rather than the raw lists: storage may be
        block-sparse.
        """
        return {"W": self.W, "b": self.b, "V": self.V}[which][q]

    def set(self, q: int, which: str, value) -> None:
        """Replace projection ``q``'s ``W``/``b``/``V`` with a dense internal-layout array."""
        {"W": self.W, "b": self.b, "V": self.V}[which][q] = value

    def forward_synapses(self, q: int, k: int, to_numpy=np.asarray) -> np.ndarray:
        """Projection ``q``'s forward synapses in DESIGN's layout ``(S, R, n_pre + bias, n_post, k)``."""
        W = to_numpy(self.get(q, "W"))
        S, R, kw, n_pre, n_post = W.shape
        W = np.broadcast_to(W, (S, R, k, n_pre, n_post))
        if self.get(q, "b") is not None:
            b = np.broadcast_to(to_numpy(self.get(q, "b")), (S, R, k, n_post))
            W = np.concatenate([W, b[:, :, :, None, :]], axis=3)
        return np.ascontiguousarray(np.moveaxis(W, 2, -1))

    def backward_synapses(self, q: int, k: int, to_numpy=np.asarray) -> np.ndarray | None:
        """Projection ``q``'s backward synapses ``(S, R, n_post, n_pre, k)``; ``None`` when tied."""
        if self.get(q, "V") is None:
            return None
        V = to_numpy(self.get(q, "V"))
        S, R, kw, n_post, n_pre = V.shape
        return np.ascontiguousarray(np.moveaxis(np.broadcast_to(V, (S, R, k, n_post, n_pre)), 2, -1))


class _Gene:
    """One genome group on the device, pre-shaped for broadcasting against ``(S, R, k, B, n)``."""

    def __init__(self, arrays: dict[str, np.ndarray], backend: Backend) -> None:
        A = lambda x: backend.asarray(np.ascontiguousarray(x))  # noqa: E731
        S = arrays["f"].shape[0]
        col = lambda x: A(np.asarray(x).reshape(S, 1, 1, 1, 1))  # noqa: E731
        k = arrays["nu"].shape[-1]
        self.f = col(arrays["f"])
        self.eta = col(arrays["eta"])
        self.f_tilde = col(arrays["f_tilde"])
        self.eta_tilde = col(arrays["eta_tilde"])
        # (S, 1, k, k) matrices acting on the state axis by matmul.
        self.nu = A(arrays["nu"][:, None])
        self.mu = A(arrays["mu"][:, None])
        self.nu_tilde_t = A(np.swapaxes(arrays["nu_tilde"], 1, 2)[:, None])
        self.mu_tilde = A(arrays["mu_tilde"][:, None])
        # The bias unit's states are all 1: (nu 1)^c = row sums, (nu_tilde^T 1)^c = column sums.
        self.nu_bias = A(arrays["nu"].sum(axis=2).reshape(S, 1, k, 1, 1))
        self.nu_tilde_bias = A(arrays["nu_tilde"].sum(axis=1).reshape(S, 1, k, 1))
        self.gain = A(arrays["norm_gain"].reshape(S, 1, k, 1, 1))
        self.shift = A(arrays["norm_shift"].reshape(S, 1, k, 1, 1))
        self.oja = A((np.abs(arrays["oja_alpha"]) * np.sign(arrays["eta_tilde"])).reshape(S, 1, 1, 1, 1))
        self.saturation = col(np.maximum(np.abs(arrays["saturation"]), 1e-12))
        self.init_scale = arrays["init_scale"].astype(np.float64)  # host, (S,)
        self.rescale = col(arrays["rescale"])
        self.S = S


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
    """

    def __init__(self, program: Program, backend: Backend | str | None = None, dtype: str | None = None):
        self.program = program
        if isinstance(backend, Backend) and dtype is not None and dtype != backend.dtype_name:
            backend = type(backend)(dtype)
        self.backend = get_backend(backend, dtype)
        self.xp = self.backend.xp
        self.k = program.k
        self.rules = program.rules
        self.kw = 1 if self.rules.shared_channels else self.k
        self.ops = [make_operator(q, self.backend) for q in program.projs]
        self.feedback = FEEDBACK.get(self.rules.feedback)

    # ------------------------------------------------------------------ genomes
    def prepare(self, genomes) -> dict[str, _Gene]:
        """Genome documents or a :class:`GenomeBatch` -> per-group device arrays."""
        if not isinstance(genomes, GenomeBatch):
            genomes = stack_genomes(genomes, k=self.k, groups=self.program.groups)
        elif genomes.k != self.k:
            genomes = stack_genomes([genomes.species(0)], k=self.k)  # raises the k error
        else:
            missing = [g for g in self.program.groups if g not in genomes.arrays]
            if missing:
                stack_genomes([genomes.species(0)], k=self.k, groups=self.program.groups)
        return {g: _Gene(genomes.arrays[g], self.backend) for g in self.program.groups}

    # ----------------------------------------------------------------- synapses
    def init_synapses(self, genes: dict[str, _Gene], replicas: int = 1, seed: int = 0) -> SynapseState:
        """Fresh synapses. Replica ``r`` depends only on ``seed`` and ``r`` (common to all species)."""
        init = self.rules.synapse_init
        S = next(iter(genes.values())).S
        per_replica = []
        for r in range(replicas):
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), TAG_INIT, r]))
            draws = []
            for q in self.program.projs:
                fan_w = q.n_pre + (1 if q.bias else 0)
                W = self._draw(rng, (self.kw, q.n_pre, q.n_post), init, fan_w)
                b = None
                if q.bias:
                    b = (self._draw(rng, (self.kw, q.n_post), init, fan_w)
                         if init.bias == "same" else np.zeros((self.kw, q.n_post)))
                V = None
                if not self.rules.tied:
                    V = self._draw(rng, (self.kw, q.n_post, q.n_pre), init, q.n_post)
                if q.mask is not None:
                    W = W * q.mask
                    if V is not None:
                        V = V * q.mask.T
                draws.append((W, b, V))
            per_replica.append(draws)
        Ws, bs, Vs = [], [], []
        for qi, q in enumerate(self.program.projs):
            scale = genes[q.group].init_scale.reshape(S, 1, *([1] * 3))
            W = np.stack([d[qi][0] for d in per_replica])[None] * scale
            Ws.append(self.backend.asarray(W))
            if q.bias:
                b = np.stack([d[qi][1] for d in per_replica])[None] * scale[..., 0]
                bs.append(self.backend.asarray(b))
            else:
                bs.append(None)
            if not self.rules.tied:
                V = np.stack([d[qi][2] for d in per_replica])[None] * scale
                Vs.append(self.backend.asarray(V))
            else:
                Vs.append(None)
        return SynapseState(Ws, bs, Vs)

    @staticmethod
    def _draw(rng, shape, init, fan):
        s = init.scale / (np.sqrt(fan) if init.fan_in else 1.0)
        if init.distribution == "normal":
            return rng.standard_normal(shape) * s
        if init.distribution == "uniform":
            return rng.uniform(-1.0, 1.0, shape) * s
        return np.zeros(shape)

    # ------------------------------------------------------------ small kernels
    def _mix(self, M, a):
        """``(M a)^c = sum_d M[c, d] a^d`` on the state axis: ``M (S,1,k,k)``, ``a (S|1,R|1,k,B,n)``."""
        sh = a.shape
        out = self.xp.matmul(M, a.reshape(sh[0], sh[1], sh[2], sh[3] * sh[4]))
        return out.reshape(out.shape[:3] + (sh[3], sh[4]))

    def _normalize(self, x, gene: _Gene):
        """N of Sec. 3.4: per neuron and state over the batch, then gain/shift from the genome."""
        xp = self.xp
        m = xp.mean(x, axis=-2, keepdims=True)
        d = x - m
        var = xp.mean(d * d, axis=-2, keepdims=True)
        return gene.gain * d / xp.sqrt(var + self.rules.norm_eps) + gene.shift

    def _activate(self, fns, x):
        if all(fn is fns[0] for fn in fns):
            return fns[0](x, self.xp)
        return self.xp.stack([fn(x[:, :, c], self.xp) for c, fn in enumerate(fns)], axis=2)

    def _effective(self, st: SynapseState, genes):
        """Synapses used for activations (App. C.6 normalisation in ``activations`` mode)."""
        mode = self.rules.synapse_normalization
        if mode == "none":
            return st.W, st.b, st.V
        W_eff, b_eff, V_eff = [], [], []
        for qi, q in enumerate(self.program.projs):
            g = genes[q.group]
            W, b, V = st.W[qi], st.b[qi], st.V[qi]
            n2 = (W * W).sum(axis=-2)
            if b is not None:
                n2 = n2 + b * b
            inv = g.rescale[..., 0] / self.xp.sqrt(n2 + self.rules.synapse_norm_eps)
            W_eff.append(W * inv[..., None, :])
            b_eff.append(None if b is None else b * inv)
            if V is not None:
                nv = (V * V).sum(axis=-2)
                V_eff.append(V * (g.rescale[..., 0] / self.xp.sqrt(nv + self.rules.synapse_norm_eps))[..., None, :])
            else:
                V_eff.append(None)
        if mode == "stored":
            st.W, st.b, st.V = W_eff, b_eff, V_eff
        return W_eff, b_eff, V_eff

    # -------------------------------------------------------------------- passes
    def _input_states(self, x):
        """Input populations' states ``(1, 1, k, B, n)``: state 0 <- data, others 0."""
        xp = self.xp
        x = self.backend.asarray(x)
        B = x.shape[0]
        out = {}
        for i in self.program.inputs:
            p = self.program.pops[i]
            a = xp.zeros((1, 1, self.k, B, p.size), dtype=self.backend.dtype)
            a[0, 0, 0] = x[:, p.in_slice]
            out[i] = a
        return out

    def _forward(self, a, genes, W, b, S, R, B):
        """Eq. (5) over all non-input populations (topological or synchronous sweeps)."""
        prog = self.program
        sync = self.rules.schedule == "synchronous"
        for _ in range(self.rules.sweeps if sync else 1):
            new = {}
            for j in prog.forward_order:
                p = prog.pops[j]
                z = None
                for qi in p.incoming:
                    q = prog.projs[qi]
                    g = genes[q.group]
                    zq = self.ops[qi].forward(self._mix(g.nu, a[q.pre]), W[qi])
                    if q.bias:
                        zq = zq + g.nu_bias * b[qi][:, :, :, None, :]
                    z = zq if z is None else z + zq
                gp = genes[p.group]
                pre = gp.f * a[j] + gp.eta * z
                if p.norm_fwd:
                    pre = self._normalize(pre, gp)
                out = self._activate(p.fwd, pre)
                if out.shape != (S, R, self.k, B, p.size):
                    out = self.xp.broadcast_to(out, (S, R, self.k, B, p.size)).copy()
                if sync:
                    new[j] = out
                else:
                    a[j] = out
            a.update(new)

    def _backward(self, a, genes, W, V, S, R, B):
        """Eq. (6) over non-input populations with outgoing projections, reverse order."""
        prog = self.program
        mode = self.rules.backward_update
        sync = self.rules.schedule == "synchronous"
        for _ in range(self.rules.sweeps if sync else 1):
            new = {}
            for i in prog.backward_order:
                p = prog.pops[i]
                y = None
                for qi in p.outgoing:
                    q = prog.projs[qi]
                    g = genes[q.group]
                    m = self._mix(g.mu, a[q.post])
                    yq = self.ops[qi].backward(m, W=W[qi], V=V[qi])
                    y = yq if y is None else y + yq
                gp = genes[p.group]
                if mode == "additive":
                    pre = gp.f * a[i] + gp.eta * y
                    if p.norm_bwd:
                        pre = self._normalize(pre, gp)
                elif mode == "multiplicative":
                    pre = gp.f * (a[i] * y)
                else:  # multiplicative_second_state
                    t = a[i] * y
                    t[:, :, 0] = a[i][:, :, 0]
                    pre = gp.f * t
                out = self._activate(p.bwd, pre)
                if out.shape != (S, R, self.k, B, p.size):
                    out = self.xp.broadcast_to(out, (S, R, self.k, B, p.size)).copy()
                if sync:
                    new[i] = out
                else:
                    a[i] = out
            a.update(new)

    def _update(self, st: SynapseState, a, genes, B):
        """Eq. (7) (+ Oja, eq. 8 / App. B; saturation, Sec. 3.4) for every projection."""
        xp = self.xp
        rules = self.rules
        mean = rules.batch_reduction == "mean"
        for qi, q in enumerate(self.program.projs):
            g = genes[q.group]
            op = self.ops[qi]
            W, b = st.W[qi], st.b[qi]
            P = self._mix(g.nu_tilde_t, a[q.pre])
            Q = self._mix(g.mu_tilde, a[q.post])
            H = op.hebbian(P, Q)  # (S, R, k, n_pre, n_post)
            Qsum = Q.sum(axis=-2)  # (S, R, k, n_post)
            Hb = g.nu_tilde_bias * Qsum if q.bias else None
            if mean:
                H = H / B
                if Hb is not None:
                    Hb = Hb / B
            if rules.oja != "none":
                H, Hb = self._oja(H, Hb, W, b, Q, g, mean, B, q.bias, backward=False)
            if self.kw == 1:
                H = H.mean(axis=2, keepdims=True)
                if Hb is not None:
                    Hb = Hb.mean(axis=2, keepdims=True)
            W = g.f_tilde * W + g.eta_tilde * H
            if Hb is not None:
                b = g.f_tilde[..., 0] * b + g.eta_tilde[..., 0] * Hb
            if rules.saturation:
                s = g.saturation
                W = s * xp.tanh(W / s)
                if b is not None:
                    b = s[..., 0] * xp.tanh(b / s[..., 0])
            st.W[qi], st.b[qi] = W, b
            V = st.V[qi]
            if V is not None:
                Pv = self._mix(g.nu_tilde_t, a[q.post])
                Qv = self._mix(g.mu_tilde, a[q.pre])
                HV = op.hebbian_backward(Pv, Qv)  # (S, R, k, n_post, n_pre)
                if mean:
                    HV = HV / B
                if rules.oja != "none":
                    HV, _ = self._oja(HV, None, V, None, Qv, g, mean, B, False, backward=True)
                if self.kw == 1:
                    HV = HV.mean(axis=2, keepdims=True)
                V = g.f_tilde * V + g.eta_tilde * HV
                if rules.saturation:
                    V = g.saturation * xp.tanh(V / g.saturation)
                st.V[qi] = V

    def _oja(self, H, Hb, W, b, Q, g, mean, B, has_bias, backward):
        """Add the Oja-like term ``O`` (multiplied by sign(eta_tilde), so eta_tilde*O shrinks |W|)."""
        if self.rules.oja == "weights":
            n2 = (W * W).sum(axis=-2)  # over presynaptic rows, (S, R, kw, n_post)
            if b is not None:
                n2 = n2 + b * b
        else:  # activity: rho_b (Q_b[j, c])^2
            n2 = (Q * Q).sum(axis=-2)
            if mean:
                n2 = n2 / B
        H = H - g.oja * W * n2[..., None, :]
        if Hb is not None:
            Hb = Hb - g.oja[..., 0] * b * n2
        return H, Hb

    # --------------------------------------------------------------- public API
    def _states(self, st: SynapseState | None, S, R, B):
        xp = self.xp
        a = {}
        keep = st is not None and not self.rules.reset_neurons and st.a is not None
        for p in self.program.pops:
            if p.role == "input":
                continue
            if keep and st.a[p.index] is not None and st.a[p.index].shape[3] == B:
                a[p.index] = st.a[p.index]
            else:
                a[p.index] = xp.zeros((S, R, self.k, B, p.size), dtype=self.backend.dtype)
        return a

    def _targets(self, y, n_out):
        """Coded targets (B, n) for ``target``/``error_mse`` and one-hot (B, n)."""
        y = np.asarray(y, dtype=np.int64)
        B = y.shape[0]
        low = -1.0 if self.rules.target_coding == "pm1" else 0.0
        if n_out == 1:
            coded = np.where(y == 1, 1.0, low)[:, None]
            onehot = (y == 1).astype(np.float64)[:, None]
        else:
            onehot = np.zeros((B, n_out))
            onehot[np.arange(B), y] = 1.0
            coded = np.where(onehot > 0, 1.0, low)
        return self.backend.asarray(coded), self.backend.asarray(onehot)

    def _errstate(self):
        return np.errstate(all="ignore") if self.xp is np else nullcontext()

    def train_step(self, st: SynapseState, genes: dict[str, _Gene], x, y) -> SynapseState:
        """One BLUR training step on batch ``(x, y)`` (DESIGN §2); updates ``st`` in place."""
        S, R = st.shape_SR
        B = int(np.shape(x)[0])
        with self._errstate():
            W, b, V = self._effective(st, genes)
            a = self._states(st, S, R, B)
            a.update(self._input_states(x))
            self._forward(a, genes, W, b, S, R, B)
            for o in self.program.outputs:
                coded, onehot = self._targets(y, self.program.pops[o].size)
                self.feedback(a[o], coded, onehot, self.xp)
            self._backward(a, genes, W, V, S, R, B)
            self._update(st, a, genes, B)
        if not self.rules.reset_neurons:
            st.a = [a.get(i) for i in range(len(self.program.pops))]
        st.steps += 1
        return st

    def forward(self, st: SynapseState, genes: dict[str, _Gene], x) -> list[Any]:
        """Forward pass only (neurons reset); state 0 of every output, ``(S, R, B, n_out)`` each."""
        S, R = st.shape_SR
        B = int(np.shape(x)[0])
        with self._errstate():
            W, b, V = (st.W, st.b, st.V)
            if self.rules.synapse_normalization == "activations":
                W, b, V = self._effective(st, genes)
            a = self._states(None, S, R, B)
            a.update(self._input_states(x))
            self._forward(a, genes, W, b, S, R, B)
        return [a[o][:, :, 0] for o in self.program.outputs]

    def evaluate(self, st: SynapseState, genes, x, y) -> dict[str, np.ndarray]:
        """Accuracy and cross-entropy of state-0 predictions, averaged over outputs: ``(S, R)`` each."""
        from blursim.sim.metrics import accuracy_and_ce

        outs = [self.backend.to_numpy(o) for o in self.forward(st, genes, x)]
        return accuracy_and_ce(outs, np.asarray(y))

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
