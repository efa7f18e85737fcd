"""What every engine agrees on, below both kernel sets: initial synapses, layouts, FLOP counts.

Pure functions of a compiled :class:`~blursim.graph.compile.Program` (and a
seed); nothing here builds a simulator or imports an engine, so the
reference step, the JAX engine, the baselines and the fast
:class:`~blursim.sim.Simulator` all start from the same numbers.

- :func:`initial_draws` -- DESIGN §2, Randomness: the synapses of replica
  ``r`` depend only on the seed and ``r`` (common to all species), float64,
  in the simulator's dense layout, before the genome's ``init_scale``;
- :func:`reference_draws` -- the same in the reference layout
  ``(1, R, n_pre + bias, n_post, k)`` (one species);
- :func:`forward_layout` / :func:`backward_layout` -- dense channel-major
  synapses ``(S, R, kw, n_src, n_dst)`` to DESIGN's ``(S, R, n_src (+ bias), n_dst, k)``;
- :func:`step_flops` -- the minimal FLOPs of one step (the benchmark's count).
"""

from __future__ import annotations

import numpy as np

from blursim.sim.step import learns_backward, tied
from blursim.sim.synapses import TAG_INIT, draw


def initial_draws(program, replicas: int, seed: int) -> list[tuple]:
    """Per projection ``(W, b, V)``: ``W (R, kw, n_pre, n_post)``, ``b (R, kw, n_post)`` or
    ``None``, ``V (R, kw, n_post, n_pre)`` or ``None`` (tied), float64, zero off the mask, drawn by
    ``rules.synapse_init`` (:func:`blursim.sim.synapses.draw`) from one stream per replica
    (``SeedSequence([seed, TAG_INIT, r])``), projections in order."""
    init = program.rules.synapse_init
    kw = program.kw
    untied = not tied(program)
    per_replica = []
    for r in range(replicas):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), TAG_INIT, r]))
        draws = []
        for q in program.projs:
            fan_w = q.n_pre + (1 if q.bias else 0)
            if q.pathway == "feedback":  # no forward synapses (DESIGN §6): zeros, never used
                W = np.zeros((kw, q.n_pre, q.n_post))
            else:
                W = draw(rng, (kw, q.n_pre, q.n_post), init, fan_w)
            b = None
            if q.bias:
                b = draw(rng, (kw, q.n_post), init, fan_w) if init.bias == "same" else np.zeros((kw, q.n_post))
            V = draw(rng, (kw, q.n_post, q.n_pre), init, q.n_post) if untied else None
            if q.mask is not None:
                W = W * q.mask
                if V is not None:
                    V = V * q.mask.T
            draws.append((W, b, V))
        per_replica.append(draws)
    out = []
    for qi, q in enumerate(program.projs):
        W = np.stack([d[qi][0] for d in per_replica])
        b = np.stack([d[qi][1] for d in per_replica]) if q.bias else None
        V = np.stack([d[qi][2] for d in per_replica]) if untied else None
        out.append((W, b, V))
    return out


def forward_layout(W, b, k: int) -> np.ndarray:
    """Dense ``W (S, R, kw, n_pre, n_post)`` and bias ``b (S, R, kw, n_post)`` (or ``None``) as
    DESIGN's ``(S, R, n_pre + bias, n_post, k)`` (a shared channel repeated ``k`` times)."""
    W = np.asarray(W)
    S, R, kw, n_pre, n_post = W.shape
    W = np.broadcast_to(W, (S, R, k, n_pre, n_post))
    if b is not None:
        b = np.broadcast_to(np.asarray(b), (S, R, k, n_post))
        W = np.concatenate([W, b[:, :, :, None, :]], axis=3)
    return np.array(np.moveaxis(W, 2, -1), order="C", copy=True)


def backward_layout(V, k: int) -> np.ndarray:
    """Dense ``V (S, R, kw, n_post, n_pre)`` as DESIGN's ``(S, R, n_post, n_pre, k)``."""
    V = np.asarray(V)
    S, R, kw, n_post, n_pre = V.shape
    return np.array(np.moveaxis(np.broadcast_to(V, (S, R, k, n_post, n_pre)), 2, -1), order="C", copy=True)


def reference_draws(program, replicas: int, seed: int):
    """:func:`initial_draws` in the reference layout, one species: ``(W, V)`` tuples of
    ``(1, R, n_pre + bias, n_post, k)`` and ``(1, R, n_post, n_pre, k)`` (or ``None``)."""
    k = program.k
    Ws, Vs = [], []
    for W, b, V in initial_draws(program, replicas, seed):
        Ws.append(forward_layout(W[None], None if b is None else b[None], k))
        Vs.append(None if V is None else backward_layout(V[None], k))
    return tuple(Ws), tuple(Vs)


def step_flops(program, B: int, train: bool = True, w_slots=None, v_slots=None) -> dict[str, float]:
    """Minimal FLOPs of one step of one genome and replica, eq. (5)-(7) as written (the benchmark's
    count; the fast kernels compute ``k`` products fewer per input projection whose ``W`` and ``V``
    share them, :meth:`blursim.sim.fast.FastKernels._shared_hebbian`).

    Forward ``2 B n_src n_dst k`` per projection, backward only into populations the backward
    pass updates (through ``V``, or ``W^T`` when tied), Hebbian products for ``W`` and an untied
    ``V`` that learns (``backward_synapses`` not frozen). Elementwise work is not counted. ``w_slots``/``v_slots``: the stored synapse slots per
    channel of each projection's ``W``/``V`` (block tiles store more than the mask; default: the
    dense count ``n_pre n_post``; ``V`` is ``None`` when tied).
    """
    k = program.k
    dense = [q.n_pre * q.n_post for q in program.projs]
    w = list(w_slots) if w_slots is not None else dense
    v = list(v_slots) if v_slots is not None else [None if tied(program) else d for d in dense]
    out = {"forward": sum(2.0 * B * n * k for n in w)}
    if train:
        upd = set(program.backward_order)
        bwd = sum(2.0 * B * (w[qi] if v[qi] is None else v[qi]) * k
                  for qi, q in enumerate(program.projs) if q.pre in upd)
        heb = sum(2.0 * B * n * k for n in w)
        if learns_backward(program):  # a frozen V has no Hebbian product
            heb += sum(2.0 * B * n * k for n in v if n is not None)
        out.update(backward=bwd, hebbian=heb)
    out["total"] = sum(out.values())
    return out
