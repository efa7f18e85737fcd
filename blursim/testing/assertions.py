"""Assertion helpers for property tests of BLUR update rules.

Each helper runs the simulator (float64, NumPy) and raises ``AssertionError``
with a message that says what was measured, the tolerance and where the
property broke; on success it returns what it measured, so a test can assert
more.

* :func:`assert_gradient_like` / :func:`assert_not_gradient_like` — the
  Jacobian ``Q = ∂Δw/∂w`` of one full-batch step is / is not symmetric
  (paper eq. 10) within tolerance, via :mod:`blursim.analysis`;
* :func:`assert_tied_stay_tied` — synapses that start tied stay tied:
  backward synapses equal to the transposed forward ones (``V = Wᵀ``), or all
  state channels of a synapse equal;
* :func:`assert_invariant` — a user predicate holds on the synapses before
  and after each of ``n`` training steps; it sees ``(state, program)`` or
  ``(initial, state, program)``.

For named laws (masked synapses stay zero, frozen plasticity, equivariance,
species/replica independence, backprop = SGD ...) see :mod:`blursim.testing.laws`.

Networks may be given as spec dicts, paths, ``NetworkSpec`` or compiled
``Program``; genomes as ``GenomeSpec``, dicts or paths.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import inspect

import numpy as np

from blursim.analysis import BlurUpdateMap, asymmetry_report, jacobian
from blursim.graph import as_program
from blursim.sim import Simulator
from blursim.spec import load_genome
from blursim.testing.report import label_arrays, where_of

__all__ = [
    "gradient_report",
    "assert_gradient_like",
    "assert_not_gradient_like",
    "assert_tied_stay_tied",
    "assert_invariant",
    "forward_synapses",
    "masked_entries_are_zero",
    "unchanged_since_start",
]


def _program(spec: Any):
    return as_program(spec)


def _genome(genome: Any):
    return load_genome(genome)


def gradient_report(
    spec: Any,
    genome: Any,
    x: Any,
    y: Any,
    *,
    variables: str | Sequence[str] = "forward",
    state: Any = None,
    seed: int = 0,
    method: str = "complex",
    noise_factor: float = 10.0,
):
    """``(AsymmetryReport, JacobianResult)`` of one full-batch step at ``state`` (default: seeded init)."""
    m = BlurUpdateMap(spec, genome, x, y, variables=variables, state=state, seed=seed)
    J = jacobian(m, m.w0, method=method)
    return asymmetry_report(J, noise_factor=noise_factor), J


def _describe(rep) -> str:
    lines = [
        f"‖Q−Qᵀ‖_F/‖Q‖_F = {rep.rel_asymmetry:.3g}, noise floor (relative) {rep.rel_noise_floor:.3g}, "
        f"margin {rep.margin:.3g} × noise floor, n = {rep.n}, ‖Q‖_F = {rep.q_fro:.3g} ({rep.method})"
    ]
    for e in rep.top[:3]:
        lines.append(
            f"  Q[{e.label_i}, {e.label_j}] = {e.q_ij:.6g} vs Q[{e.label_j}, {e.label_i}] = {e.q_ji:.6g}"
        )
    return "\n".join(lines)


def assert_gradient_like(
    spec: Any,
    genome: Any,
    x: Any,
    y: Any,
    *,
    variables: str | Sequence[str] = "forward",
    state: Any = None,
    seed: int = 0,
    rtol: float | None = None,
    noise_factor: float = 10.0,
    method: str = "complex",
):
    """Assert that one full-batch step is gradient-like: ``Q`` symmetric (eq. 10).

    Passes if ``‖Q − Qᵀ‖_F ≤ noise_factor × noise floor`` (the floor is the
    Jacobian's own error estimate), or, with ``rtol``, if
    ``‖Q − Qᵀ‖_F ≤ rtol·‖Q‖_F``.  Also fails if ``Q = 0`` (vacuous).
    Returns the :class:`~blursim.analysis.AsymmetryReport`.
    """
    rep, _ = gradient_report(spec, genome, x, y, variables=variables, state=state, seed=seed,
                             method=method, noise_factor=noise_factor)
    if rep.q_fro == 0:
        raise AssertionError("the update Jacobian Q is zero: the rule does not depend on the synapses "
                             "(nothing to test).")
    ok = rep.is_symmetric or (rtol is not None and rep.rel_asymmetry <= rtol)
    if not ok:
        tol = f"{noise_factor:g} × noise floor" + (f" or rtol={rtol:g}" if rtol is not None else "")
        raise AssertionError(
            "the update rule is not gradient-like: Q = ∂Δw/∂w is asymmetric beyond " + tol + "\n"
            + _describe(rep)
        )
    return rep


def assert_not_gradient_like(
    spec: Any,
    genome: Any,
    x: Any,
    y: Any,
    *,
    variables: str | Sequence[str] = "forward",
    state: Any = None,
    seed: int = 0,
    min_margin: float = 1e3,
    min_rel: float = 0.0,
    noise_factor: float = 10.0,
    method: str = "complex",
):
    """Assert that one full-batch step is NOT a gradient step: ``‖Q − Qᵀ‖_F`` is at least
    ``min_margin`` × the noise floor (and ``≥ min_rel·‖Q‖_F``).  Returns the report."""
    rep, _ = gradient_report(spec, genome, x, y, variables=variables, state=state, seed=seed,
                             method=method, noise_factor=noise_factor)
    if rep.is_symmetric or rep.margin < min_margin or rep.rel_asymmetry < min_rel:
        raise AssertionError(
            f"the update rule looks gradient-like: the asymmetry of Q is not above {min_margin:g} × "
            f"noise floor" + (f" and {min_rel:g}·‖Q‖_F" if min_rel else "") + "\n" + _describe(rep)
        )
    return rep


def cycle_batches(batches: Any, n_steps: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """One ``(x, y)`` batch or a list of them, cycled to ``n_steps`` (default: one step per batch)."""
    if isinstance(batches, tuple) and len(batches) == 2 and np.ndim(batches[0]) == 2:
        batches = [batches]
    batches = list(batches)
    if not batches:
        raise ValueError("batches must hold at least one (x, y) batch")
    n = len(batches) if n_steps is None else int(n_steps)
    return [batches[t % len(batches)] for t in range(n)]


def _setup(spec, genome, state, seed):
    prog = _program(spec)
    sim = Simulator(prog, backend="numpy", dtype="float64")
    genes = sim.prepare([_genome(genome)])
    st = sim.init_synapses(genes, replicas=1, seed=seed) if state is None else state.copy()
    return prog, sim, genes, st


def forward_synapses(state, program) -> dict[str, np.ndarray]:
    """Every projection's forward synapses in DESIGN §1's layout, keyed by projection name.

    ``{name: array (S, R, n_pre + bias, n_post, k)}``: species, replica, presynaptic neuron (the
    bias row last when the projection has a bias), postsynaptic neuron, state channel (with
    ``shared_channels`` the one stored value repeated over the ``k`` channels). Host NumPy copies:
    changing them does not change ``state``. For invariants, e.g.
    ``lambda st, prog: all(np.isfinite(w).all() for w in forward_synapses(st, prog).values())``.
    Backward synapses: ``state.backward_synapses(q, k)`` (``(S, R, n_post, n_pre, k)``, ``None``
    when tied)."""
    return {q.name: state.forward_synapses(i, program.k) for i, q in enumerate(program.projs)}


def masked_entries_are_zero(state, program) -> bool:
    """Invariant: every synapse outside its projection's connectivity mask is exactly 0.

    Returns a bool; :func:`masked_entries_report` says where it fails."""
    return masked_entries_report(state, program) is None


def masked_entries_report(state, program) -> str | None:
    """``None`` if every synapse outside its mask is 0, else where the largest one is (variable,
    projection, index, channel, species, replica) and its value."""
    worst = None
    for i, q in enumerate(program.projs):
        if q.mask is None:
            continue
        for which, off in (("W", ~np.asarray(q.mask, dtype=bool)), ("V", ~np.asarray(q.mask, dtype=bool).T)):
            a = state.get(i, which)
            if a is None:
                continue
            a = np.moveaxis(np.asarray(a), 2, -1)  # (S, R, n_a, n_b, kw)
            bad = np.where(off[None, None, :, :, None], np.abs(a), 0.0)
            bad = np.where(np.isnan(bad), np.inf, bad)
            if bad.size and bad.max() > 0 and (worst is None or bad.max() > worst[0]):
                idx = np.unravel_index(int(np.argmax(bad)), bad.shape)
                worst = (float(bad.max()), i, which, idx, float(a[idx]))
    if worst is None:
        return None
    _, i, which, idx, v = worst
    return f"{where_of(program, i, which, idx)} is {v:.6g}, outside the connectivity mask (must be 0)"


masked_entries_are_zero.explain = masked_entries_report


def unchanged_since_start(initial, state, program) -> bool:
    """Invariant (three arguments: initial state, current state, program): no synapse has changed.

    Returns a bool; ``unchanged_since_start.explain(initial, state, program)`` says which synapse
    changed first (the largest change)."""
    return _unchanged_report(initial, state, program) is None


def _unchanged_report(initial, state, program) -> str | None:
    before = {(q, w): a for q, w, a in label_arrays(initial, program)}
    worst = None
    for q, w, a in label_arrays(state, program):
        d = np.abs(a - before[(q, w)])
        d = np.where(np.isnan(d), np.inf, d)
        if d.size and d.max() > 0 and (worst is None or d.max() > worst[0]):
            idx = np.unravel_index(int(np.argmax(d)), d.shape)
            worst = (float(d.max()), q, w, idx, float(a[idx]), float(before[(q, w)][idx]))
    if worst is None:
        return None
    d, q, w, idx, v, v0 = worst
    return f"{where_of(program, q, w, idx)} changed from {v0:.6g} to {v:.6g} (by {d:.3g})"


unchanged_since_start.explain = _unchanged_report


def assert_tied_stay_tied(
    spec: Any,
    genome: Any,
    batches: Any,
    *,
    what: str = "backward",
    n_steps: int | None = None,
    seed: int = 0,
    atol: float = 1e-12,
    rtol: float = 1e-10,
):
    """Assert that synapses that start tied stay tied over ``n_steps`` training steps.

    ``what="backward"`` (untied networks): the backward synapses start as the
    transposed forward ones, ``V_q = W_qᵀ`` (bias row excluded), and must stay
    so.  ``what="channels"`` (networks without shared channels): all ``k``
    channels of every synapse start equal (channel 0's values) and must stay
    equal.  Tolerance: ``|a − b| ≤ atol + rtol·max|W|``.  Returns the largest
    deviation seen.
    """
    prog, sim, genes, st = _setup(spec, genome, None, seed)
    if what == "backward":
        if prog.rules.tied:
            raise ValueError("the network's synapses are tied by construction (rules.tied = true): V = Wᵀ "
                             "is not stored, so there is nothing to test; use an untied network")
        for i in range(len(prog.projs)):
            st.set(i, "V", np.swapaxes(np.asarray(st.get(i, "W")), -1, -2).copy())
    elif what == "channels":
        if prog.kw == 1:
            raise ValueError("channels are shared by construction (shared_channels or k = 1); nothing to test")
        for i in range(len(prog.projs)):
            for which in ("W", "b", "V"):
                a = st.get(i, which)
                if a is not None:
                    a = np.asarray(a)
                    st.set(i, which, np.repeat(a[:, :, :1], a.shape[2], axis=2))
    else:
        raise ValueError(f"what must be 'backward' or 'channels', got {what!r}")

    worst = 0.0
    for t, (x, y) in enumerate(cycle_batches(batches, n_steps)):
        sim.train_step(st, genes, x, y)
        for i, q in enumerate(prog.projs):
            W = np.asarray(st.get(i, "W"))
            scale = atol + rtol * max(float(np.max(np.abs(W))), 1.0)
            if what == "backward":
                D = np.abs(np.asarray(st.get(i, "V")) - np.swapaxes(W, -1, -2))
                where = "V - Wᵀ"
            else:
                arrays = [np.asarray(a) for a in (W, st.get(i, "b"), st.get(i, "V")) if a is not None]
                D = max(float(np.max(np.abs(a - a[:, :, :1]))) for a in arrays)  # axis 2: channels
                where = "channel c − channel 0"
            d = float(np.max(D))
            if not np.isfinite(d) or d > scale:
                raise AssertionError(
                    f"tied synapses came apart: max |{where}| = {d:.3g} > tolerance {scale:.3g} in "
                    f"projection {q.name!r} after step {t + 1}"
                )
            worst = max(worst, d)
    return worst


def invariant_arity(fn) -> int:
    """Positional parameters an invariant takes without defaults: 2 for ``(state, program)``, 3 for
    ``(initial, state, program)``."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)


def assert_invariant(
    spec: Any,
    genome: Any,
    batches: Any,
    invariant: Callable[..., Any],
    n_steps: int | None = None,
    *,
    state: Any = None,
    seed: int = 0,
    name: str | None = None,
):
    """Assert an invariant before and after each of ``n_steps`` training steps.

    ``invariant(state, program)`` — or, with three parameters, ``invariant(initial, state,
    program)``, where ``initial`` is a copy of the synapses before the first step — returns a
    truthy value when the property holds (or raises ``AssertionError`` itself). If it has an
    ``explain`` attribute (as :func:`masked_entries_are_zero` and :func:`unchanged_since_start`
    do), ``explain(...)`` with the same arguments says where it fails, and the message includes
    it. ``batches``: one ``(x, y)`` batch or a list, cycled for ``n_steps`` steps (default: one
    step per batch). ``state``: initial ``SynapseState`` (copied), default a seeded init. Returns
    the final state.
    """
    prog, sim, genes, st = _setup(spec, genome, state, seed)
    label = name or getattr(invariant, "__name__", "invariant")
    initial = st.copy()
    args = (lambda: (initial, st, prog)) if invariant_arity(invariant) >= 3 else (lambda: (st, prog))

    def check(t: int) -> None:
        try:
            ok = invariant(*args())
        except AssertionError as e:
            raise AssertionError(f"invariant {label!r} fails after {t} training step(s): {e}") from None
        if not ok:
            why = ""
            explain = getattr(invariant, "explain", None)
            if explain is not None:
                why = f": {explain(*args())}"
            raise AssertionError(f"invariant {label!r} fails after {t} training step(s) (returned {ok!r}){why}")

    check(0)
    for t, (x, y) in enumerate(cycle_batches(batches, n_steps)):
        sim.train_step(st, genes, x, y)
        check(t + 1)
    return st
