"""Independent checks of the exact meta-gradient (issue 11 item 4; DESIGN §4).

:class:`~blursim.meta.objective.MetaObjective` differentiates the meta-loss
through the unroll with JAX. The derivatives here come from the NumPy
:class:`~blursim.sim.Simulator` -- a different implementation of the step,
which no automatic differentiation touches:

- :func:`complex_step_gradient`: every genome entry moved by ``i h`` in its
  own species of one complex128 simulation; ``imag(L) / h`` is the derivative
  to rounding (no subtraction, so ``h = 1e-30`` is fine);
- :func:`central_difference_gradient`: the fourth-order central stencil
  ``(8 (L(x+h) - L(x-h)) - (L(x+2h) - L(x-2h))) / 12h`` in float64, again all
  entries as species of one simulation per offset;
- :func:`agreement`: both against the JAX gradient, relative to the largest
  gradient entry, plus the *mutant* check -- the JAX gradient at ``x`` with one
  entry moved by 1e-6 must disagree, so that agreement is not vacuous.

:func:`gradient_cases` draws tiny experiments (random DAGs, every rules option,
genome fields and groups, replicas, unroll lengths) for the property test
``tests/test_meta_gradient.py`` and ``tools/gradient_agreement.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

#: Agreement required of the JAX gradient in float64 (relative to the largest entry).
TOL = 1e-8
#: Below this largest gradient entry the gradient is "zero" (nothing to compare relatively).
FLOOR = 1e-12
#: The scale below which central differences are compared absolutely: their error is absolute,
#: about ``eps |L| / h`` (float64 rounding of the loss over the step), whatever the gradient's size.
FD_FLOOR = 1e-3


def simulator_losses(setup, X: np.ndarray, seeds: Sequence[int], proto, which: str = "train") -> np.ndarray:
    """The meta-loss of each genome row of ``X`` (``(P, dim)``; complex rows run in complex128)
    by the NumPy simulator (:func:`~blursim.meta.objective.simulator_meta_loss`): ``(P,)``,
    averaged over the tasks of ``which`` like :class:`~blursim.meta.objective.MetaObjective`."""
    from blursim.meta.objective import meta_loss_kind, simulator_meta_loss

    tasks = setup.train_tasks if which == "train" else setup.val_tasks
    batch = setup.layout.matrix_to_batch(X, setup.base_genome)
    dtype = "complex128" if np.iscomplexobj(X) else "float64"
    per = [simulator_meta_loss(setup.programs[t.network], batch, t.dataset, int(s), proto, kind=meta_loss_kind(setup),
                               dtype=dtype) for t, s in zip(tasks, seeds)]
    return np.mean(per, axis=0)


def complex_step_gradient(setup, x, seeds, proto, h: float = 1e-30, which: str = "train") -> np.ndarray:
    """``d L / d x`` by complex step of the NumPy simulator (one complex128 run, S = dim)."""
    x = np.asarray(x, dtype=np.float64)
    X = np.tile(x.astype(np.complex128), (x.size, 1)) + 1j * h * np.eye(x.size)
    return simulator_losses(setup, X, seeds, proto, which).imag / h


def central_difference_gradient(setup, x, seeds, proto, h: float = 1e-4, which: str = "train") -> np.ndarray:
    """``d L / d x`` by the fourth-order central difference of the float64 NumPy simulator,
    step ``h max(1, |x_j|)`` per entry."""
    x = np.asarray(x, dtype=np.float64)
    step = h * np.maximum(1.0, np.abs(x))
    L = {m: simulator_losses(setup, x[None, :] + m * np.diag(step), seeds, proto, which) for m in (-2, -1, 1, 2)}
    return (8 * (L[1] - L[-1]) - (L[2] - L[-2])) / (12 * step)


def rel(a, b, floor: float = FLOOR) -> float:
    """``max|a - b| / max(max|b|, floor)``: relative to the largest entry of ``b``."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b), initial=0.0)) / max(float(np.max(np.abs(b), initial=0.0)), floor)


def _rel_to(a, b, ref) -> float:
    """``max|a - b| / max(max|ref|, FD_FLOOR)``."""
    a, b, ref = np.asarray(a), np.asarray(b), np.asarray(ref)
    return float(np.max(np.abs(a - b), initial=0.0)) / max(float(np.max(np.abs(ref), initial=0.0)), FD_FLOOR)


def agreement(objective, x, seeds, proto, *, mutant_step: float = 1e-6) -> dict[str, Any]:
    """The JAX gradient of ``objective`` (a float64 :class:`MetaObjective`) against the complex
    step and the central differences of the NumPy simulator.

    Returns ``jax_vs_cs`` (:func:`rel`), ``jax_vs_fd`` and ``fd_vs_cs`` (``max|a - b|`` over the
    complex step's largest entry, floored at :data:`FD_FLOOR`: central differences carry an
    absolute error; one denominator for both, so that ``jax_vs_fd <= jax_vs_cs + fd_vs_cs`` holds
    -- with the differences' own largest entry as ``jax_vs_fd``'s, a non-smooth draw failed that
    bound although the gradient equalled the complex step), ``loss`` (JAX) and
    ``loss_sim`` (NumPy simulator), ``scale`` (largest gradient entry), ``trivial`` (every
    entry below :data:`FLOOR`: no relative comparison possible), and ``mutant``: the largest
    ``rel(JAX gradient, CS)`` when the JAX side's genome has one entry moved by ``mutant_step``
    (:func:`mutants`: base-genome scalars first, then the searched entries), tried until one
    exceeds ``1000 TOL`` (``mutant_entry`` names it): it must exceed :data:`TOL`, or the
    comparison could not tell a wrong genome from the right one.
    """
    setup = objective.setup
    x = np.asarray(x, dtype=np.float64)
    loss, g, metrics = objective.value_and_grad(x, seeds, proto)
    cs = complex_step_gradient(setup, x, seeds, proto, which=objective.which)
    fd = central_difference_gradient(setup, x, seeds, proto, which=objective.which)
    out = {"loss": loss, "loss_sim": float(simulator_losses(setup, x[None, :], seeds, proto, objective.which)[0]),
           "jax_vs_cs": rel(g, cs), "jax_vs_fd": _rel_to(g, fd, cs),
           "fd_vs_cs": rel(fd, cs, FD_FLOOR),
           "scale": float(np.max(np.abs(cs), initial=0.0)), "finite": metrics["finite"], "dim": x.size}
    out["trivial"] = out["scale"] < FLOOR
    out["mutant"], out["mutant_entry"] = 0.0, None
    if out["trivial"]:
        return out
    base = objective.base_genome
    try:
        for name, moved_x, moved_base in mutants(objective.layout, x, base, mutant_step):
            objective.base_genome = moved_base
            r = rel(objective.value_and_grad(moved_x, seeds, proto)[1], cs)
            if r > out["mutant"]:
                out["mutant"], out["mutant_entry"] = r, name
            if r > 1000 * TOL:
                break
    finally:
        objective.base_genome = base
    return out


def mutants(layout, x, base, step: float):
    """``(name, x, base)`` with one genome entry moved by ``step``: every scalar field of every
    group of ``base`` (``f_tilde`` and ``eta_tilde`` first; an entry the layout searches is moved
    in ``x``), then every searched entry of ``x``."""
    from blursim.spec.genome import SCALAR_FIELDS

    labels = layout.labels()
    order = ["f_tilde", "eta_tilde"] + [f for f in SCALAR_FIELDS if f not in ("f_tilde", "eta_tilde")]
    for field in order:
        for g in base.groups:
            name = f"{g}.{field}"
            if name in labels:
                moved = x.copy()
                moved[labels.index(name)] += step
                yield name, moved, base
            else:
                doc = base.model_copy(deep=True)
                setattr(doc.groups[g], field, getattr(doc.groups[g], field) + step)
                yield name, x, doc
    for j, name in enumerate(labels):
        moved = x.copy()
        moved[j] += step
        yield name, moved, base


# ------------------------------------------------------------------ drawn cases
#: Continuous activations (a step such as relu_derivative would make the loss piecewise constant
#: in some entries, where central differences and the complex step disagree by construction).
ACTS = ("tanh", "relu_tanh", "sigmoid", "identity", "leaky_relu", "softplus", "sin", "tanh_derivative",
        "sigmoid_derivative", "softplus_derivative", "one")
#: Tasks by the number of output neurons: 2-D inputs, two classes (one neuron: logistic) or five.
TASKS = {2: ("xor", "and", "two_moons"), 1: ("xor", "halfplane"), 5: ("blobs5",)}
GROUPS = ("default", "g1")


@st.composite
def gradient_cases(draw, max_steps: int = 3) -> dict:
    """A tiny experiment document (inline network, 1-2 toy tasks, 1-``max_steps`` unroll steps,
    1-2 replicas, 1-2 query batches), the genome vector ``x`` to differentiate at and the task
    seeds: ``{"experiment": dict, "x": None (the initial genome) , "seeds": [...]}``."""
    from blursim.genome import random_genome
    from blursim.spec.genome import ALL_FIELDS
    from blursim.testing.strategies import ALL_CONNECTIVITY, network_specs, rules

    k = draw(st.integers(2, 3))
    n_out = draw(st.sampled_from([2, 1, 5]))
    recurrent = draw(st.booleans())
    spec = draw(network_specs(
        k=k, n_features=2, n_classes=n_out, hidden=(1, 2), outputs=(1, 2), sizes=(1, 3),
        connectivity=tuple(c for c in ALL_CONNECTIVITY if c != "local2d"),
        recurrent_p=0.3 if recurrent else 0.0,
        rules=rules(recurrent=recurrent, output_size=n_out, max_sweeps=2)))
    spec["rules"]["synapse_init"]["distribution"] = draw(st.sampled_from(["normal", "uniform"]))
    for p in spec["populations"]:
        if p["role"] != "input":
            for side in ("forward_activation", "backward_activation"):
                p[side] = (draw(st.sampled_from(ACTS)) if draw(st.booleans())
                           else [draw(st.sampled_from(ACTS)) for _ in range(k)])
            p["normalization"] = draw(st.sampled_from(["none", "forward", "backward", "both"]))
            p["genome"] = draw(st.sampled_from(GROUPS))
    for q in spec["projections"]:
        q["genome"] = draw(st.sampled_from(GROUPS))
    used = sorted({p.get("genome", "default") for p in spec["populations"] if p["role"] != "input"}
                  | {q["genome"] for q in spec["projections"]})
    genome = random_genome(k=k, seed=draw(st.integers(0, 2**31 - 1)), groups=used,
                           scale=draw(st.sampled_from([0.3, 0.5]))).model_dump(mode="json", exclude_none=True)
    for params in genome["groups"].values():
        if draw(st.booleans()):
            params["eta_tilde"] = -params["eta_tilde"]
        for name, lo, hi in (("oja_alpha", 0.05, 1.0), ("saturation", 0.3, 3.0), ("rescale", 0.3, 2.0),
                             ("init_scale", 0.5, 1.5)):
            if draw(st.booleans()):
                params[name] = draw(st.floats(lo, hi)) * draw(st.sampled_from([1, -1] if name != "init_scale" else [1]))
        if draw(st.booleans()):
            params["norm_gain"] = [draw(st.floats(0.3, 2.0)) for _ in range(k)]
            params["norm_shift"] = [draw(st.floats(-1.0, 1.0)) for _ in range(k)]
    # a synapse gate or mixing matrix is always searched: the loss depends on them (f and eta alone
    # may hardly matter, e.g. with reset neurons and a multiplicative backward update)
    fields = [draw(st.sampled_from(["eta_tilde", "f_tilde", "nu", "mu", "nu_tilde", "mu_tilde"]))]
    fields += draw(st.lists(st.sampled_from([f for f in ALL_FIELDS if f not in fields]), max_size=5, unique=True))
    tasks = draw(st.lists(st.sampled_from(TASKS[n_out]), min_size=1, max_size=2, unique=True))
    exp = {
        "network": spec,
        "training_tasks": [{"name": t, "options": {"n_train": 64, "n_test": 64,
                                                   "seed": draw(st.integers(0, 99))}} for t in tasks],
        "inner": {"steps": draw(st.integers(1, max_steps)), "batch_size": draw(st.integers(1, 4)),
                  "query_batches": draw(st.integers(1, 2)), "query_batch_size": draw(st.integers(1, 4)),
                  "replicas": draw(st.integers(1, 2))},
        "genome": {"init": {"kind": "file", "path": "<inline>"}, "fields": fields,
                   "groups": draw(st.lists(st.sampled_from(used), min_size=1, unique=True))},
        "strategy": {"name": "cma_es", "sigma0": 0.1, "popsize": 4},
        "generations": 1,
    }
    return {"experiment": exp, "genome": genome, "seeds": [draw(st.integers(0, 2**32 - 1)) for _ in tasks]}


def prepare_case(case: dict, tmp_dir) -> Any:
    """The :class:`~blursim.meta.experiment.Setup` of a :func:`gradient_cases` case (its genome
    written to ``tmp_dir``, which the experiment's genome file path points at)."""
    import json
    from pathlib import Path

    from blursim.meta import prepare_experiment

    path = Path(tmp_dir) / "genome.json"
    path.write_text(json.dumps(case["genome"]))
    exp = json.loads(json.dumps(case["experiment"]))
    exp["genome"]["init"] = {"kind": "file", "path": str(path)}
    return prepare_experiment(exp)
