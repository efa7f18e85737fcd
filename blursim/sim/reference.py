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

==========================================  =====================================
eq. (5) forward drive ``z_j``                :func:`forward_drive`
eq. (5) ``a_j <- σ(N(f a_j + η z_j))``       :func:`neuron_update`
normalisation N (Sec. 3.4)                   :func:`normalize`
forward pass (schedules, DESIGN §2)          :func:`forward_pass`
feedback (Sec. 3.3)                          :func:`feedback`
eq. (6) backward drive ``y_i``               :func:`backward_drive`
eq. (6) three ``backward_update`` modes      :func:`backward_update`
backward pass                                :func:`backward_pass`
eq. (7) ``P``, ``Q``, Hebbian ``H``          :func:`presynaptic`, :func:`postsynaptic`, :func:`hebbian`
eq. (8) / App. B Oja term ``O``              :func:`oja_term`
eq. (7) + mask + saturation (Sec. 3.4)       :func:`synapse_update`
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

from blursim.sim.targets import coded_targets, target_tables
from blursim.vocab.activations import ACTIVATIONS
from blursim.vocab.feedback import FEEDBACK

__all__ = [
    "BlurState", "namespace", "genome_arrays", "from_simulator", "to_simulator", "zero_neurons",
    "mix", "with_bias", "normalize", "activate", "forward_drive", "neuron_update", "forward_pass",
    "feedback", "backward_drive", "backward_update", "backward_pass", "presynaptic", "postsynaptic",
    "hebbian", "oja_term", "saturate", "synapse_update", "synapse_normalize", "input_states",
    "train_step", "evaluate",
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


def _sign(xp, v):
    return xp.sign(xp.real(v))


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
def forward_drive(program, genome, W, a, j: int):
    """``z_j^c = Σ_{q: i→j} Σ_i W_q[i, j, c] (ν_q ā_i)^c`` (eq. 5; ``ā_i`` with the bias unit
    when the projection has one, so the bias contributes ``W_q[bias, j, c] Σ_d ν_q[c, d]``)."""
    xp = namespace(*W)
    z = 0
    for qi in program.pops[j].incoming:
        q = program.projs[qi]
        pre = with_bias(a[q.pre]) if q.bias else a[q.pre]
        z = z + xp.einsum("srijc,srbic->srbjc", W[qi], mix(genome[q.group]["nu"], pre))
    return z


def neuron_update(a, drive, f, eta, names, norm: tuple | None):
    """``σ(N(f a + η drive))``: eq. (5) with ``drive = z``, the additive eq. (6) with ``drive = y``.

    ``norm``: ``(gain, shift, eps)`` when N applies, else ``None``.
    """
    x = _col(f, 5) * a + _col(eta, 5) * drive
    if norm is not None:
        x = normalize(x, *norm)
    return activate(names, x)


def _norm(program, genome, p, on: bool):
    g = genome[p.group]
    return (g["norm_gain"], g["norm_shift"], program.rules.norm_eps) if on else None


def forward_pass(program, genome, W, a: list) -> list:
    """Eq. (5) for every non-input population: in topological order, or by synchronous sweeps."""
    a = list(a)

    def update(j):
        p = program.pops[j]
        g = genome[p.group]
        return neuron_update(a[j], forward_drive(program, genome, W, a, j), g["f"], g["eta"],
                             p.fwd_names, _norm(program, genome, p, p.norm_fwd))

    if program.rules.schedule == "topological":
        for j in program.forward_order:
            a[j] = update(j)
        return a
    for _ in range(program.rules.sweeps):
        new = {j: update(j) for j in program.forward_order}  # all from the previous sweep
        for j, v in new.items():
            a[j] = v
    return a


# ------------------------------------------------------------ feedback (3.3)
def targets(program, o: int, y, dtype, xp):
    """``(coded, onehot)`` ``(B, n_o)`` for output ``o`` (:func:`blursim.sim.targets.coded_targets`,
    the coding the Simulator uses: labels checked). Labels that are not a NumPy/CuPy array
    (traced by ``jax.jit``) cannot be checked: they index the same coding tables directly;
    real-valued target vectors ``(B, n_o)`` are their own coding."""
    p, rules = program.pops[o], program.rules
    if namespace(y) is not _jnp_or_none():  # host or CuPy labels: the checked coding
        y_host = y.get() if type(y).__module__.split(".")[0] == "cupy" else np.asarray(y)
        return coded_targets(y_host, p.size, rules.target_coding, population=p.name,
                             feedback=rules.feedback, xp=xp, dtype=dtype)
    if y.ndim == 2:
        t = xp.asarray(y, dtype=dtype)
        return t, t
    coded, onehot = target_tables(p.size, rules.target_coding)
    return xp.asarray(coded, dtype=dtype)[y], xp.asarray(onehot, dtype=dtype)[y]


def feedback(program, a: list, y) -> list:
    """Sec. 3.3: every output population's state 1 (and higher) from the targets ``y`` -- labels
    ``(B,)`` or target vectors ``(B, n)`` -- through the feedback kind ``rules.feedback``;
    state 0 is kept."""
    xp = namespace(*[v for v in a if v is not None])
    kind = FEEDBACK.get(program.rules.feedback)
    a = list(a)
    for o in program.outputs:
        coded, onehot = targets(program, o, y, a[o].dtype, xp)
        states = kind([a[o][..., c] for c in range(program.k)], coded, onehot, xp)
        a[o] = xp.stack(states, axis=-1)
    return a


# ----------------------------------------------------------- backward, eq. (6)
def backward_drive(program, genome, W, V, a, i: int):
    """``y_i^c = Σ_{q: i→j} Σ_j V_q[j, i, c] (μ_q a_j)^c`` (eq. 6), with ``V_q = W_q[:n_i]ᵀ``
    (bias row dropped) when synapses are tied."""
    xp = namespace(*W)
    y = 0
    for qi in program.pops[i].outgoing:
        q = program.projs[qi]
        m = mix(genome[q.group]["mu"], a[q.post])
        if V[qi] is None:
            y = y + xp.einsum("srijc,srbjc->srbic", W[qi][:, :, : q.n_pre], m)
        else:
            y = y + xp.einsum("srjic,srbjc->srbic", V[qi], m)
    return y


def backward_update(mode: str, a, y, f, eta, names, norm: tuple | None):
    """Eq. (6) by ``rules.backward_update``:

    - ``additive``: ``σ_bwd(N(f a + η y))``;
    - ``multiplicative``: ``σ_bwd(f · a ⊙ y)``;
    - ``multiplicative_second_state``: ``σ_bwd(f · [a^0, a^1 y^1, ..., a^{k-1} y^{k-1}])``.
    """
    if mode == "additive":
        return neuron_update(a, y, f, eta, names, norm)
    xp = namespace(a, y)
    if mode == "multiplicative":
        x = a * y
    else:
        x = xp.concatenate([a[..., :1], a[..., 1:] * y[..., 1:]], axis=-1)
    return activate(names, _col(f, 5) * x)


def backward_pass(program, genome, W, V, a: list) -> list:
    """Eq. (6) for the non-input populations with outgoing projections, in reverse topological
    order, or by synchronous sweeps."""
    a = list(a)
    mode = program.rules.backward_update

    def update(i):
        p = program.pops[i]
        g = genome[p.group]
        return backward_update(mode, a[i], backward_drive(program, genome, W, V, a, i), g["f"],
                               g["eta"], p.bwd_names, _norm(program, genome, p, p.norm_bwd))

    if program.rules.schedule == "topological":
        for i in program.backward_order:
            a[i] = update(i)
        return a
    for _ in range(program.rules.sweeps):
        new = {i: update(i) for i in program.backward_order}
        for i, v in new.items():
            a[i] = v
    return a


# ------------------------------------------------------ synapses, eq. (7)/(8)
def presynaptic(nu_tilde, a):
    """``P^c = Σ_e ν̃[e, c] a^e`` (eq. 7)."""
    return namespace(nu_tilde, a).einsum("sec,srbie->srbic", nu_tilde, a)


def postsynaptic(mu_tilde, a):
    """``Q^c = Σ_d μ̃[c, d] a^d`` (eq. 7)."""
    return mix(mu_tilde, a)


def hebbian(P, Q, reduction: str):
    """``H[i, j, c] = ρ_b P_b[i, c] Q_b[j, c]``, ``ρ`` the batch sum or mean (eq. 7)."""
    H = namespace(P, Q).einsum("srbic,srbjc->srijc", P, Q)
    return H / P.shape[2] if reduction == "mean" else H


def oja_term(mode: str, E, Q, alpha, eta_tilde, reduction: str):
    """The Oja-like term ``O`` (eq. 8 first term with a learnable multiplier / App. B).

    - ``weights``: ``-sign(η̃) |α| E[i, j, c] Σ_i' E[i', j, c]²`` (all rows, bias included);
    - ``activity``: ``-sign(η̃) |α| E[i, j, c] ρ_b Q_b[j, c]²``;
    - ``none``: 0.
    """
    if mode == "none":
        return 0
    xp = namespace(E, Q)
    if mode == "weights":
        n2 = xp.sum(E * E, axis=2, keepdims=True)
    else:
        n2 = xp.sum(Q * Q, axis=2)[:, :, None]
        if reduction == "mean":
            n2 = n2 / Q.shape[2]
    return -_col(_sign(xp, eta_tilde) * _abs(xp, alpha), E.ndim) * E * n2


def synapse_update(rules, g, E, pre, post, mask):
    """Eq. (7)/(8) for one synapse array ``E[i, j, c]`` from source states ``pre`` (with the bias
    unit for a forward ``W`` that has one) and destination states ``post``:

    ``E <- M ⊙ (f̃ E + η̃ (H + O))`` with ``H = ρ_b P_b Q_b``, ``P = ν̃ᵀ pre``, ``Q = μ̃ post``;
    shared channels take the mean of this over channels (``shared_update: "mean"``) or its
    channel 0 (``"channel0"``); then saturation (Sec. 3.4).
    ``mask``: ``(rows, cols)`` bool or ``None`` (all-to-all). ``g``: the projection's genome group.
    """
    xp = namespace(E)
    Q = postsynaptic(g["mu_tilde"], post)
    H = hebbian(presynaptic(g["nu_tilde"], pre), Q, rules.batch_reduction)
    O = oja_term(rules.oja, E, Q, g["oja_alpha"], g["eta_tilde"], rules.batch_reduction)
    new = _col(g["f_tilde"], E.ndim) * E + _col(g["eta_tilde"], E.ndim) * (H + O)
    if rules.shared_channels and rules.shared_update == "channel0":
        new = xp.broadcast_to(new[..., :1], new.shape)
    elif rules.shared_channels:
        new = xp.broadcast_to(xp.mean(new, axis=-1, keepdims=True), new.shape)
    if mask is not None:
        new = new * xp.asarray(mask, dtype=new.dtype)[..., None]
    if rules.saturation:
        new = saturate(new, g["saturation"])
    return new


def _forward_mask(q):
    """``M̄``: the mask with a row of ones for the bias (``None`` for all-to-all)."""
    if q.mask is None:
        return None
    return np.concatenate([q.mask, np.ones((1, q.n_post), bool)]) if q.bias else q.mask


# --------------------------------------------------------------- one step
def _effective(program, genome, W, V):
    """Synapses as the activations see them: normalised (App. C.6) or as stored."""
    eps = program.rules.synapse_norm_eps
    We = tuple(synapse_normalize(w, genome[q.group]["rescale"], eps) for q, w in zip(program.projs, W))
    Ve = tuple(None if v is None else synapse_normalize(v, genome[q.group]["rescale"], eps)
               for q, v in zip(program.projs, V))
    return We, Ve


def _start_states(program, state: BlurState, S, R, B, dtype, xp) -> list:
    """Reset states, or the kept ones (``reset_neurons: false``) where their shape still fits."""
    a = list(zero_neurons(program, S, R, B, dtype, xp))
    if not program.rules.reset_neurons and state.a is not None:
        for p, kept in enumerate(state.a):
            if kept is not None and tuple(kept.shape) == tuple(a[p].shape):
                a[p] = kept
    return a


def train_step(program, genome, state: BlurState, x, y) -> BlurState:
    """One BLUR training step (DESIGN §2) on the batch ``x (B, features)``, labels ``y (B,)``.

    1. reset (or keep) neuron states, 2. inputs, 3. forward pass (eq. 5),
    4. feedback (Sec. 3.3), 5. backward pass (eq. 6), 6. synapse update
    (eq. 7/8, mask, saturation) of every ``W`` and untied ``V``.
    """
    W, V = tuple(state.W), tuple(state.V)
    xp = namespace(*W, x)
    rules = program.rules
    S, R = W[0].shape[:2]
    B = x.shape[0]
    dtype = xp.result_type(W[0], x)
    if rules.synapse_normalization == "stored":  # App. C.6, written back at the start of the step
        W, V = _effective(program, genome, W, V)
    We, Ve = _effective(program, genome, W, V) if rules.synapse_normalization == "activations" else (W, V)

    a = _start_states(program, state, S, R, B, dtype, xp)
    for i, v in input_states(program, x, S, R, dtype).items():
        a[i] = v
    a = forward_pass(program, genome, We, a)
    a = feedback(program, a, y)
    a = backward_pass(program, genome, We, Ve, a)

    newW, newV = [], []
    for q, w, v in zip(program.projs, W, V):
        g = genome[q.group]
        pre = with_bias(a[q.pre]) if q.bias else a[q.pre]
        newW.append(synapse_update(rules, g, w, pre, a[q.post], _forward_mask(q)))
        # untied V: the roles swap (P from the postsynaptic side, Q from the presynaptic; no bias)
        newV.append(None if v is None else
                    synapse_update(rules, g, v, a[q.post], a[q.pre], None if q.mask is None else q.mask.T))
    kept = None if rules.reset_neurons else tuple(None if p.role == "input" else a[p.index]
                                                  for p in program.pops)
    return BlurState(tuple(newW), tuple(newV), kept)


def evaluate(program, genome, state: BlurState, x) -> list:
    """DESIGN §2 step 7: a forward pass from reset neurons on ``x``; state 0 of every output
    population, ``(S, R, B, n_out)`` each (the predictions and the meta-loss's logits)."""
    W, V = tuple(state.W), tuple(state.V)
    xp = namespace(*W, x)
    S, R = W[0].shape[:2]
    dtype = xp.result_type(W[0], x)
    if program.rules.synapse_normalization == "activations":
        W, _ = _effective(program, genome, W, V)
    a = list(zero_neurons(program, S, R, x.shape[0], dtype, xp))
    for i, v in input_states(program, x, S, R, dtype).items():
        a[i] = v
    a = forward_pass(program, genome, W, a)
    return [a[o][..., 0] for o in program.outputs]


# ---------------------------------------------------- simulator conversions
def from_simulator(st, program, xp=np, to_numpy=np.asarray) -> BlurState:
    """A :class:`~blursim.sim.simulator.SynapseState` in this module's layout (copies), through
    its public ``forward_synapses``/``backward_synapses``; kept neuron states
    ``(S, R, k, B, n)`` become ``(S, R, B, n, k)``."""
    k = program.k
    W = tuple(xp.asarray(st.forward_synapses(q, k, to_numpy)) for q in range(len(program.projs)))
    V = tuple(None if (v := st.backward_synapses(q, k, to_numpy)) is None else xp.asarray(v)
              for q in range(len(program.projs)))
    a = None
    if st.a is not None and not program.rules.reset_neurons:
        a = tuple(None if (p.role == "input" or st.a[p.index] is None)
                  else xp.asarray(np.array(np.moveaxis(to_numpy(st.a[p.index]), 2, -1))) for p in program.pops)
    return BlurState(W, V, a)


def to_simulator(state: BlurState, program):
    """A dense :class:`~blursim.sim.simulator.SynapseState` holding ``state`` (NumPy copies); a
    :class:`~blursim.sim.Simulator` adopts it into its own storage on first use. Shared
    channels keep channel 0 (all channels are equal)."""
    from blursim.sim.simulator import SynapseState

    kw = 1 if program.rules.shared_channels else program.k
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
