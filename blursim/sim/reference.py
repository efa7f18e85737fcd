r"""One BLUR training step written as the paper's mathematics: the reference implementation.

Read this page beside Sandler et al., *Meta-Learning Bidirectional Update
Rules* (ICML 2021) and DESIGN §2. It computes what
:class:`blursim.sim.Simulator` computes, without any of its speed tricks: one
function per equation, state in, state out, nothing written in place. The
parity test ``tests/test_reference_step.py`` checks that the two agree to
1e-12 (relative) on randomly drawn networks, rules and genomes, so this module
is the oracle for every backend (a JAX engine jits and differentiates this
very code).

Symbols (paper Table 1, eq. 5-8; DESIGN §1)
-------------------------------------------

=====================  ===============================================================
``a[p]``               neuron states of population ``p``, shape ``(S, R, B, n_p, k)``
``ā``                  ``a`` with the bias unit appended as a last neuron whose states are all 1
``W[q]``               forward synapses of projection ``q: i -> j``, ``(S, R, n_i + β_q, n_j, k)``
                       (bias row last, ``β_q`` = 1 with a bias)
``V[q]``               backward synapses ``(S, R, n_j, n_i, k)``; ``None`` when ``tied`` (then
                       ``V = W[:n_i]ᵀ``)
``f, η``               neuron keep / update gates (the *population's* genome group)
``f̃, η̃``               synapse keep / update gates (the *projection's* group)
``ν, μ``               ``k x k`` forward / backward neuron mixing, ``(ν a)^c = Σ_d ν[c, d] a^d``
``ν̃, μ̃``               pre- / postsynaptic mixing of eq. (7): ``P^c = Σ_e ν̃[e, c] a^e``,
                       ``Q^c = Σ_d μ̃[c, d] a^d``
``s r b i j c d e``    species, replica, batch, presynaptic and postsynaptic neuron, states
                       (the letters of every ``einsum`` below)
=====================  ===============================================================

The genome is a dict ``{group: {field: array (S, ...)}}`` (the fields of
:mod:`blursim.spec.genome`; :func:`genome_arrays` builds it), in the same
array namespace as the synapses so that it can be differentiated.

Paper -> function
-----------------

The step itself -- phase order, schedules, every ``rules`` branch -- is
:mod:`blursim.sim.step`, written once over the primitives of
:mod:`blursim.sim.kernels`; this module is its reference kernel set
(:class:`ReferenceKernels`) and the functions those primitives are made of:

==========================================  =====================================
eq. (5) forward drive ``z_j``                :func:`forward_drive`
normalisation N (Sec. 3.4)                   :func:`normalize`
forward pass (schedules, DESIGN §2)          :func:`forward_pass`
feedback (Sec. 3.3)                          :func:`feedback`
eq. (6) backward drive ``y_i``               :func:`backward_drive`
backward pass (three ``backward_update``)    :func:`backward_pass`
eq. (7) ``P``, ``Q``, Hebbian ``H``          :func:`presynaptic`, :func:`postsynaptic`, :func:`hebbian`
eq. (8) / App. B Oja keep factor ``D``       :meth:`ReferenceKernels.oja_keep`
eq. (7) + mask + saturation (Sec. 3.4)       :meth:`ReferenceKernels.hebbian_update`, :func:`saturate`
synapse normalisation (App. C.6)             :func:`synapse_normalize`
one training step (DESIGN §2)                :func:`train_step`
evaluation forward pass (DESIGN §2 step 7)   :func:`evaluate`
==========================================  =====================================

Decisions it shares with the simulator (docs/design.md)
-------------------------------------------------------

- Input populations hold the data in state 0 and zeros in the other states.
- Targets: class labels ``(B,)`` coded by
  :func:`blursim.sim.targets.coded_targets` (the Simulator's coding: ``±1`` or
  one-hot rows; one output neuron takes the labels 0 and 1), or real-valued
  target vectors ``(B, n)``, which are their own coding. Every output
  population receives the same targets.
- Shared channels (``rules.shared_channels``): this module keeps all ``k``
  channels of a synapse in storage, equal to each other; eq. (7) is computed
  per channel and the stored update is its *mean over channels*
  (``shared_update: "mean"``) or channel 0's (``"channel0"``), written to
  every channel (the simulator stores one channel; :func:`to_simulator`
  keeps channel 0).
- The bias row's ``P`` is ``Σ_e ν̃[e, c]`` (the bias unit's states are 1);
  the Oja ``weights`` sum and the synapse normalisation include the bias row.
- ``O`` is multiplied by ``sign(η̃)`` and uses ``|α|``, so ``η̃ O`` shrinks
  ``|W|`` whatever the sign of ``η̃``; saturation uses
  ``s = max(|saturation|, 1e-12)``.
- ``synapse_normalization``: ``activations`` normalises copies used by the
  forward and backward passes (and by evaluation); ``stored`` normalises the
  stored synapses at the start of every training step (evaluation then uses
  the stored synapses as they are).
- ``reset_neurons: false``: the states after the backward pass are kept
  (:attr:`BlurState.a`) and the next step starts from them, per population,
  while their shape ``(S, R, B, n, k)`` is unchanged (a new batch size starts
  that population from 0). Evaluation always starts from reset states.
- ``synchronous`` schedule: ``sweeps`` forward sweeps, each updating every
  non-input population from the previous sweep's states, then the feedback
  once, then ``sweeps`` backward sweeps likewise.
- N is applied on the backward pass only in the ``additive`` mode.

Array namespace
---------------

The code takes its array module from its inputs (:func:`namespace`): NumPy
(float32, float64, complex128 -- complex-step safe: comparisons use real
parts, ``|x|`` of genome entries is ``x sign(Re x)``), ``jax.numpy`` (jit-able:
only the :class:`~blursim.graph.compile.Program` and its rules drive Python
control flow, shapes are static) or CuPy. Activations are resolved by name
(``PopPlan.fwd_names``/``bwd_names``) through the
:data:`~blursim.sim.activations.ACTIVATIONS` registry.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from blursim.sim import step
from blursim.sim.kernels import KernelSet
from blursim.sim.synapses import SynapseState
from blursim.vocab.activations import ACTIVATIONS

__all__ = [
    "BlurState", "namespace", "forward_mask", "genome_arrays", "from_simulator", "to_simulator", "zero_neurons",
    "mix", "with_bias", "normalize", "activate", "forward_drive", "forward_pass", "feedback",
    "backward_drive", "backward_pass", "presynaptic", "postsynaptic", "hebbian", "saturate",
    "synapse_normalize", "input_states", "train_step", "evaluate", "ReferenceKernels", "KERNELS", "Run",
]


class BlurState(NamedTuple):
    """Everything a training step changes, as an immutable pytree (JAX can ``scan`` over it).

    ``W``: per projection, ``(S, R, n_i + β, n_j, k)``, bias row last;
    ``V``: per projection, ``(S, R, n_j, n_i, k)``, or ``None`` when tied;
    ``a``: persistent neuron states (``reset_neurons: false``), per population
    ``(S, R, B, n_p, k)`` with ``None`` for inputs -- or ``None`` (every step
    starts from reset states; also the start of a run without reset).
    """

    W: tuple
    V: tuple
    a: tuple | None = None


# ------------------------------------------------------------------ namespace
def namespace(*arrays):
    """The array module of the inputs (``None`` entries skipped): ``jax.numpy`` if any is a JAX
    array (or tracer), else ``cupy`` if any is a CuPy array, else ``numpy``."""
    mods = {type(a).__module__.split(".")[0] for a in arrays if a is not None}
    if mods & {"jax", "jaxlib"}:
        import jax.numpy as jnp

        return jnp
    if "cupy" in mods:
        import cupy

        return cupy
    return np


def _jnp_or_none():
    """``jax.numpy`` if JAX is imported already (only then can an array be a JAX array)."""
    import sys

    return sys.modules.get("jax.numpy")


def _col(v, ndim: int):
    """A per-species array ``(S, *rest)`` shaped to broadcast against ``(S, R, ...)`` arrays of
    ``ndim`` axes: scalars ``(S,)`` -> ``(S, 1, ..., 1)``, per-state vectors ``(S, k)`` ->
    ``(S, 1, ..., 1, k)``."""
    rest = v.shape[1:]
    return v.reshape((v.shape[0],) + (1,) * (ndim - 1 - len(rest)) + rest)


def _abs(xp, v):
    """``|v|`` for a real genome entry, ``v sign(Re v)`` (complex-step safe; equal for real ``v``)."""
    return v * xp.sign(xp.real(v))


# -------------------------------------------------------------------- genomes
def genome_arrays(genomes, program, xp=np) -> dict[str, dict[str, Any]]:
    """``{group: {field: (S, ...)}}`` in namespace ``xp`` from a
    :class:`~blursim.genome.GenomeBatch`, a genome document or a list of them.
    Optional fields that a genome leaves out take their neutral values."""
    from blursim.genome.arrays import GenomeBatch, stack_genomes

    if not isinstance(genomes, GenomeBatch):
        genomes = stack_genomes(genomes, k=program.k, groups=program.groups)
    return {g: {f: xp.asarray(v) for f, v in genomes.arrays[g].items()} for g in program.groups}


# ----------------------------------------------------------- small operations
def mix(M, a):
    """``(M a)^c = Σ_d M[c, d] a^d`` for every neuron: ``M (S, k, k)``, ``a (S, R, B, n, k)``."""
    xp = namespace(M, a)
    return xp.einsum("scd,srbnd->srbnc", M, a)


def with_bias(a):
    """``ā``: ``a`` with the bias unit appended as neuron ``n`` (every state 1)."""
    xp = namespace(a)
    return xp.concatenate([a, xp.ones(a.shape[:3] + (1,) + a.shape[4:], dtype=a.dtype)], axis=3)


def normalize(x, gain, shift, eps: float):
    """N (Sec. 3.4): per neuron and state over the batch, ``gain[c] x̂ + shift[c]``.

    ``x̂ = (x - mean_b x) / sqrt(var_b x + eps)``; ``gain``, ``shift``: ``(S, k)``.
    """
    xp = namespace(x, gain)
    centred = x - xp.mean(x, axis=2, keepdims=True)
    var = xp.mean(centred * centred, axis=2, keepdims=True)
    return _col(gain, 5) * centred / xp.sqrt(var + eps) + _col(shift, 5)


def activate(names, x):
    """σ per state (the generalised φ of eq. 4): ``names[c]`` applied to ``x[..., c]``."""
    xp = namespace(x)
    if all(n == names[0] for n in names):
        return ACTIVATIONS.get(names[0])(x, xp)
    return xp.stack([ACTIVATIONS.get(n)(x[..., c], xp) for c, n in enumerate(names)], axis=-1)


def saturate(E, saturation):
    """Synapse saturation (Sec. 3.4): ``s tanh(E / s)``, ``s = max(|saturation|, 1e-12)`` per species."""
    xp = namespace(E, saturation)
    a = _abs(xp, saturation)
    s = _col(xp.where(xp.real(a) > 1e-12, a, 1e-12), E.ndim)
    return s * xp.tanh(E / s)


def synapse_normalize(E, rescale, eps: float):
    """App. C.6: ``rescale · E / sqrt(Σ_rows E² + eps)``, summing over axis 2.

    For ``W (S, R, n_i + β, n_j, k)`` the rows are the presynaptic neurons and
    the bias (one norm per postsynaptic neuron and channel); for
    ``V (S, R, n_j, n_i, k)`` the rows are the forward direction's
    postsynaptic neurons (one norm per presynaptic neuron).
    """
    xp = namespace(E, rescale)
    return _col(rescale, E.ndim) * E / xp.sqrt(xp.sum(E * E, axis=2, keepdims=True) + eps)


# -------------------------------------------------------------- neuron states
def zero_neurons(program, S: int, R: int, B: int, dtype, xp=np) -> tuple:
    """Reset states (DESIGN §2 step 1): zeros ``(S, R, B, n_p, k)`` for every non-input population."""
    return tuple(None if p.role == "input" else xp.zeros((S, R, B, p.size, program.k), dtype=dtype)
                 for p in program.pops)


def input_states(program, x, S: int, R: int, dtype) -> dict[int, Any]:
    """DESIGN §2 step 2: each input population's slice of ``x (B, features)`` in state 0, zeros
    in states ``1..k-1``, the same for every species and replica."""
    xp = namespace(x)
    out = {}
    for i in program.inputs:
        p = program.pops[i]
        xi = xp.asarray(x[:, p.in_slice], dtype=dtype)[..., None]
        a = xp.concatenate([xi, xp.zeros(xi.shape[:-1] + (program.k - 1,), dtype=dtype)], axis=-1)
        out[i] = xp.broadcast_to(a, (S, R) + a.shape)
    return out


# ------------------------------------------------------------ forward, eq. (5)
def _einsum(spec, a, b):
    """``einsum(spec, a, b)`` in the operands' namespace: the default ``contract`` of the products."""
    return namespace(a, b).einsum(spec, a, b)


def forward_drive(program, genome, W, a, j: int, contract=_einsum):
    """``z_j^c = Σ_{q: i→j} Σ_i W_q[i, j, c] (ν_q ā_i)^c`` (eq. 5; ``ā_i`` with the bias unit
    when the projection has one, so the bias contributes ``W_q[bias, j, c] Σ_d ν_q[c, d]``).
    ``contract(spec, a, b)`` computes the product (``einsum``; the kernel set's :meth:`~ReferenceKernels.contract`)."""
    z = 0
    for qi in program.pops[j].incoming:
        q = program.projs[qi]
        pre = with_bias(a[q.pre]) if q.bias else a[q.pre]
        z = z + contract("srijc,srbic->srbjc", W[qi], mix(genome[q.group]["nu"], pre))
    return z


# ----------------------------------------------------------- backward, eq. (6)
def backward_drive(program, genome, W, V, a, i: int, contract=_einsum):
    """``y_i^c = Σ_{q: i→j} Σ_j V_q[j, i, c] (μ_q a_j)^c`` (eq. 6), with ``V_q = W_q[:n_i]ᵀ``
    (bias row dropped) when synapses are tied; ``contract`` as in :func:`forward_drive`."""
    y = 0
    for qi in program.pops[i].outgoing:
        q = program.projs[qi]
        m = mix(genome[q.group]["mu"], a[q.post])
        if V[qi] is None:
            y = y + contract("srijc,srbjc->srbic", W[qi][:, :, : q.n_pre], m)
        else:
            y = y + contract("srjic,srbjc->srbic", V[qi], m)
    return y


# ------------------------------------------------------------ feedback (3.3)
def targets(program, o: int, y, dtype, xp):
    """``(coded, onehot)`` ``(B, n_o)`` for output ``o`` (:func:`blursim.sim.step.targets`, the
    coding the Simulator uses: labels checked). Labels that are not a NumPy/CuPy array (traced by
    ``jax.jit``) cannot be checked: they index the same coding tables directly; real-valued
    target vectors ``(B, n_o)`` are their own coding."""
    p = program.pops[o]
    if namespace(y) is not _jnp_or_none():  # host or CuPy labels: the checked coding
        y_host = y.get() if type(y).__module__.split(".")[0] == "cupy" else np.asarray(y)
        return step.targets(program, y_host, p, xp, dtype)
    if y.ndim == 2:
        t = xp.asarray(y, dtype=dtype)
        return t, t
    coded, onehot = step.target_codes(program, p)
    return xp.asarray(coded, dtype=dtype)[y], xp.asarray(onehot, dtype=dtype)[y]


# ------------------------------------------------------ synapses, eq. (7)/(8)
def presynaptic(nu_tilde, a):
    """``P^c = Σ_e ν̃[e, c] a^e`` (eq. 7)."""
    return namespace(nu_tilde, a).einsum("sec,srbie->srbic", nu_tilde, a)


def postsynaptic(mu_tilde, a):
    """``Q^c = Σ_d μ̃[c, d] a^d`` (eq. 7)."""
    return mix(mu_tilde, a)


def hebbian(P, Q, reduction: str, contract=_einsum):
    """``H[i, j, c] = ρ_b P_b[i, c] Q_b[j, c]``, ``ρ`` the batch sum or mean (eq. 7); ``contract`` as in
    :func:`forward_drive`."""
    H = contract("srbic,srbjc->srijc", P, Q)
    return H / P.shape[2] if reduction == "mean" else H


def forward_mask(q):
    """``M̄``: the mask with a row of ones for the bias (``None`` for all-to-all)."""
    if q.mask is None:
        return None
    return np.concatenate([q.mask, np.ones((1, q.n_post), bool)]) if q.bias else q.mask


# ------------------------------------------------------------ the kernel set
class Run:
    """One step's arrays for :class:`ReferenceKernels`: the synapses ``state``, the neuron states
    ``a`` (a list, replaced entry by entry), the batch ``x, y``, the updated synapses ``newW``,
    ``newV``, and what a monitor asked for (``record``: phases -> states, ``hebbian``: ``H``)."""

    def __init__(self, program, genome, state: BlurState, x, y=None, a=None, record=None) -> None:
        self.program, self.genome, self.state, self.x, self.y = program, genome, state, x, y
        W = tuple(state.W)
        self.xp = namespace(*W, x)
        if W:
            self.S, self.R = W[0].shape[:2]
            self.dtype = self.xp.result_type(W[0], x) if x is not None else W[0].dtype
        self.a = None if a is None else list(a)
        self.newW, self.newV = list(W), list(state.V)
        self.record = record  # None, or {"phases": set, "hebbian": set of (q, which)}
        self.recorded: dict = {}


class ReferenceKernels(KernelSet):
    """The primitives of :mod:`blursim.sim.kernels` as pure array-API functions (the paper's
    layout: states ``(S, R, B, n, k)``, synapses ``(S, R, n_src (+ bias), n_dst, k)``)."""

    name = "reference"

    def contract(self, spec, a, b):
        """The products of eq. (5)-(7) (``einsum(spec, a, b)``); :class:`blursim.sim.jax_blas.BlasKernels`
        routes them to NumPy's BLAS."""
        return _einsum(spec, a, b)

    def synapses(self, run):
        return tuple(run.state.W), tuple(run.state.V)

    def normalize_synapses(self, run, syn, eps, copy):
        """App. C.6 on every ``W`` (bias row included) and ``V`` (new arrays; without ``copy`` they
        replace the stored synapses)."""
        genome = run.genome
        W, V = syn
        We = tuple(synapse_normalize(w, genome[q.group]["rescale"], eps) for q, w in zip(run.program.projs, W))
        Ve = tuple(None if v is None else synapse_normalize(v, genome[q.group]["rescale"], eps)
                   for q, v in zip(run.program.projs, V))
        if not copy:  # written back: what the step stores, updated or not
            run.newW, run.newV = list(We), list(Ve)
        return We, Ve

    def start(self, run, keep):
        """Reset states, or the kept ones (``keep``) where their shape still fits; inputs written."""
        program, xp = run.program, run.xp
        B = run.x.shape[0]
        a = list(zero_neurons(program, run.S, run.R, B, run.dtype, xp))
        if keep and run.state.a is not None:
            for p, kept in enumerate(run.state.a):
                if kept is not None and tuple(kept.shape) == tuple(a[p].shape):
                    a[p] = kept
        for i, v in input_states(program, run.x, run.S, run.R, run.dtype).items():
            a[i] = v
        run.a = a

    def drive(self, run, p, syn, direction, keep, rate, buffer):
        """``keep a_p + rate z_p`` (forward, eq. 5) or ``keep a_p + rate y_p`` (backward, eq. 6)."""
        W, V = syn
        g = run.genome[run.program.pops[p].group]
        if direction == "forward":
            d = forward_drive(run.program, run.genome, W, run.a, p, self.contract)
        else:
            d = backward_drive(run.program, run.genome, W, V, run.a, p, self.contract)
        x = _col(g[rate], 5) * d
        return x if keep is None else _col(g[keep], 5) * run.a[p] + x

    def gate(self, run, p, y, first, keep, buffer):
        """``[keep a^0 .. a^{first-1}, a^first y^first, ...]``."""
        a = run.a[p]
        if first == 0:
            return a * y
        g = run.genome[run.program.pops[p].group]
        xp = namespace(a, y)
        return xp.concatenate([_col(g[keep], 5) * a[..., :first], a[..., first:] * y[..., first:]], axis=-1)

    def normalize(self, run, x, p, eps):
        g = run.genome[run.program.pops[p].group]
        return normalize(x, g["norm_gain"], g["norm_shift"], eps)

    def activate(self, run, x, names):
        return activate(names, x)

    def set_state(self, run, p, x):
        run.a[p] = x

    def feedback(self, run, o, kind):
        """Sec. 3.3: the feedback kind on output ``o``'s states (state 0 kept by every kind)."""
        xp = namespace(*[v for v in run.a if v is not None])
        coded, onehot = targets(run.program, o, run.y, run.a[o].dtype, xp)
        states = kind([run.a[o][..., c] for c in range(run.program.k)], coded, onehot, xp)
        run.a[o] = xp.stack(states, axis=-1)

    def record(self, run, phase):
        if run.record is not None and phase in run.record["phases"]:
            run.recorded[phase] = tuple(run.a)

    def run_jobs(self, run, jobs, fn):
        for job in jobs:
            fn(job)
        return tuple(run.newW), tuple(run.newV)

    # ------------------------------------------------------------ eq. (7)-(8)
    @staticmethod
    def _stored(syn, job):
        """The job's synapses as the step stores them (after App. C.6's ``stored`` normalisation)."""
        return (syn[0] if job.which == "W" else syn[1])[job.q]

    def column_sq(self, run, job, syn):
        """``Σ_src E²`` per destination neuron and channel (bias row included): ``(S, R, 1, n_dst, k)``."""
        E = self._stored(syn, job)
        return namespace(E).sum(E * E, axis=2, keepdims=True)

    def activity_sq(self, run, job):
        """``ρ_b Q_b²``, ``Q = μ̃ a_dst``: ``(S, R, 1, n_dst, k)``."""
        Q = postsynaptic(run.genome[job.group]["mu_tilde"], run.a[job.dst])
        n2 = namespace(Q).sum(Q * Q, axis=2)[:, :, None]
        return n2 / Q.shape[2] if job.batch_mean else n2

    def oja_keep(self, run, job, n2):
        """``D = f̃ - |η̃| |α| n2`` (eq. 8: ``η̃ O = -|η̃| |α| E n2``, since ``O`` carries ``sign(η̃)``)."""
        g = run.genome[job.group]
        xp = namespace(n2)
        return _col(g["f_tilde"], 5) - _col(_abs(xp, g["eta_tilde"]) * _abs(xp, g["oja_alpha"]), 5) * n2

    def _hebbian(self, run, job):
        """``H = ρ_b P_b Q_b`` per channel (or a variant's kernel, :data:`blursim.sim.step.HEBBIAN_KERNELS`)."""
        g = run.genome[job.group]
        src = with_bias(run.a[job.src]) if job.bias else run.a[job.src]
        fn = step.HEBBIAN_KERNELS[job.hebbian]
        if fn is None:
            return hebbian(presynaptic(g["nu_tilde"], src), postsynaptic(g["mu_tilde"], run.a[job.dst]),
                           "mean" if job.batch_mean else "sum", self.contract)
        H = fn(g, src, run.a[job.dst])
        return H / src.shape[2] if job.batch_mean else H

    @staticmethod
    def _channels(job, E):
        """A shared synapse's stored value from eq. (7)'s per-channel ``E``: the mean or channel 0."""
        xp = namespace(E)
        if job.channels == "first":
            return xp.broadcast_to(E[..., :1], E.shape)
        if job.channels == "mean":
            return xp.broadcast_to(xp.mean(E, axis=-1, keepdims=True), E.shape)
        return E

    def hebbian_update(self, run, job, syn, keep):
        """``E <- M ⊙ (D E + η̃ H)`` (``D = f̃`` without Oja), the channel reduction of shared
        channels, the mask (with the bias row's ones)."""
        g = run.genome[job.group]
        E = self._stored(syn, job)
        D = _col(g["f_tilde"], E.ndim) if keep is None else keep
        new = self._channels(job, D * E + _col(g["eta_tilde"], E.ndim) * self._hebbian(run, job))
        (run.newW if job.which == "W" else run.newV)[job.q] = self._masked(run, job, new)

    @staticmethod
    def _masked(run, job, E):
        """``M ⊙ E`` with the job's mask (``W``'s with the bias row's ones, ``V``'s transposed)."""
        q = run.program.projs[job.q]
        mask = forward_mask(q) if job.which == "W" else (None if q.mask is None else q.mask.T)
        return E if mask is None else E * namespace(E).asarray(mask, dtype=E.dtype)[..., None]

    def saturate(self, run, job, syn):
        new = run.newW if job.which == "W" else run.newV
        new[job.q] = saturate(new[job.q], run.genome[job.group]["saturation"])

    def record_hebbian(self, run, job):
        if run.record is not None and (job.q, job.which) in run.record["hebbian"]:
            run.recorded[f"H:{job.q}:{job.which}"] = self._masked(run, job, self._channels(job, self._hebbian(run, job)))


#: The reference kernel set (stateless: one instance serves every step).
KERNELS = ReferenceKernels()


# --------------------------------------------------------------- one step
def forward_pass(program, genome, W, a: list, kernels=KERNELS) -> list:
    """Eq. (5) for every non-input population (:func:`blursim.sim.step.forward_pass`), from the
    states ``a`` with the synapses ``W`` (bias row last)."""
    run = Run(program, genome, BlurState(tuple(W), (None,) * len(W)), None, a=a)
    step.forward_pass(kernels, run, program, (tuple(W), (None,) * len(W)))
    return run.a


def feedback(program, a: list, y, kernels=KERNELS) -> list:
    """Sec. 3.3: every output population's states from the targets ``y`` -- labels ``(B,)`` or
    target vectors ``(B, n)`` (:func:`blursim.sim.step.apply_feedback`); state 0 is kept."""
    run = Run(program, None, BlurState((), ()), None, y, a=a)
    step.apply_feedback(kernels, run, program)
    return run.a


def backward_pass(program, genome, W, V, a: list, kernels=KERNELS) -> list:
    """Eq. (6) for the non-input populations with outgoing projections
    (:func:`blursim.sim.step.backward_pass`)."""
    run = Run(program, genome, BlurState(tuple(W), tuple(V)), None, a=a)
    step.backward_pass(kernels, run, program, (tuple(W), tuple(V)))
    return run.a


def train_step(program, genome, state: BlurState, x, y, kernels=KERNELS, record=None) -> BlurState:
    """One BLUR training step (DESIGN §2) on the batch ``x (B, features)``, labels ``y (B,)``:
    :func:`blursim.sim.step.train_step` on the reference kernels.

    ``record``: ``{"phases": {...}, "hebbian": {(q, which), ...}}`` to also return what a monitor
    asked for: then the result is ``(state, recorded)`` with ``recorded[phase]`` the states after
    that phase and ``recorded[f"H:{q}:{which}"]`` the Hebbian terms (pure: JAX can trace it).
    """
    run = Run(program, genome, state, x, y, record=record)
    newW, newV = step.train_step(kernels, run, program)
    kept = None
    if step.keeps_states(program):
        kept = tuple(None if p.role == "input" else run.a[p.index] for p in program.pops)
    out = BlurState(tuple(newW), tuple(newV), kept)
    return out if record is None else (out, run.recorded)


def evaluate(program, genome, state: BlurState, x, kernels=KERNELS) -> list:
    """DESIGN §2 step 7: a forward pass from reset neurons on ``x``; state 0 of every output
    population, ``(S, R, B, n_out)`` each (the predictions and the meta-loss's logits)."""
    run = Run(program, genome, state, x)
    step.evaluate(kernels, run, program)
    return [run.a[o][..., 0] for o in program.outputs]


# ---------------------------------------------------- simulator conversions
def from_simulator(st, program, xp=np, to_numpy=np.asarray) -> BlurState:
    """A :class:`~blursim.sim.synapses.SynapseState` in this module's layout (copies), through
    its public ``forward_synapses``/``backward_synapses``; kept neuron states
    ``(S, R, k, B, n)`` become ``(S, R, B, n, k)``."""
    k = program.k
    W = tuple(xp.asarray(st.forward_synapses(q, k, to_numpy)) for q in range(len(program.projs)))
    V = tuple(None if (v := st.backward_synapses(q, k, to_numpy)) is None else xp.asarray(v)
              for q in range(len(program.projs)))
    a = None
    if st.a is not None and step.keeps_states(program):
        a = tuple(None if (p.role == "input" or st.a[p.index] is None)
                  else xp.asarray(np.array(np.moveaxis(to_numpy(st.a[p.index]), 2, -1))) for p in program.pops)
    return BlurState(W, V, a)


def to_simulator(state: BlurState, program):
    """A dense :class:`~blursim.sim.synapses.SynapseState` holding ``state`` (NumPy copies); a
    :class:`~blursim.sim.Simulator` adopts it into its own storage on first use. Shared
    channels keep channel 0 (all channels are equal)."""
    kw = program.kw
    Ws, bs, Vs = [], [], []
    for q, w, v in zip(program.projs, state.W, state.V):
        w = np.moveaxis(np.asarray(w), -1, 2)[:, :, :kw]  # (S, R, kw, n_i + β, n_j)
        Ws.append(np.ascontiguousarray(w[:, :, :, : q.n_pre]))
        bs.append(np.ascontiguousarray(w[:, :, :, q.n_pre]) if q.bias else None)
        Vs.append(None if v is None else np.ascontiguousarray(np.moveaxis(np.asarray(v), -1, 2)[:, :, :kw]))
    a = None
    if state.a is not None:
        a = [None if x is None else np.ascontiguousarray(np.moveaxis(np.asarray(x), -1, 2)) for x in state.a]
    return SynapseState(Ws, bs, Vs, a)
