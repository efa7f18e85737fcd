"""Exact meta-gradients (blursim.meta.objective.MetaObjective), checked by derivatives that no
automatic differentiation computed: the complex step and central differences of the NumPy
Simulator (blursim.testing.gradients), to 1e-8 relative in float64.

Every check also shows it can fail: the JAX gradient with one genome entry moved by 1e-6 must
disagree with the complex step by more than the tolerance (``mutant``). Hypothesis draws tiny
experiments here (JAX compiles each network: few examples); ``tools/gradient_agreement.py`` runs
the same check on many more and reports the largest differences.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, note, settings

pytest.importorskip("jax")

from blursim.errors import SpecError  # noqa: E402
from blursim.meta import prepare_experiment  # noqa: E402
from blursim.meta.evaluate import Protocol, evaluate_chunk, make_job  # noqa: E402
from blursim.meta.objective import MetaObjective  # noqa: E402
from blursim.testing.gradients import TOL, agreement, gradient_cases, prepare_case  # noqa: E402

#: A tiny experiment whose genome search touches every complex-step hazard of the Simulator:
#: |oja_alpha| |eta_tilde| (Oja), max(|saturation|, 1e-12), init_scale (the initial synapses),
#: two genome groups, normalisation, a one-neuron (logistic) output beside a two-class one.
EXPERIMENT = {
    "network": {"k": 2, "populations": [
        {"name": "in", "size": 2, "role": "input"},
        {"name": "h", "size": 3, "role": "hidden", "forward_activation": "tanh", "normalization": "forward"},
        {"name": "out", "size": 2, "role": "output", "forward_activation": "tanh"},
        {"name": "logit", "size": 1, "role": "output", "genome": "g1"}],
        "projections": [{"from": "in", "to": "h"}, {"from": "h", "to": "out", "genome": "g1"},
                        {"from": "h", "to": "logit", "genome": "g1"}],
        "rules": {"oja": "weights", "saturation": True}},
    "training_tasks": [{"name": "xor", "options": {"n_train": 64, "n_test": 64}},
                       {"name": "and", "options": {"n_train": 64, "n_test": 64}}],
    "inner": {"steps": 3, "batch_size": 4, "query_batches": 2, "replicas": 2},
    "genome": {"init": {"kind": "random", "seed": 3},
               "set": {"oja_alpha": 0.3, "saturation": -2.0, "init_scale": 0.8},
               "fields": ["eta_tilde", "f_tilde", "nu_tilde", "mu_tilde", "oja_alpha", "saturation", "init_scale"]},
    "strategy": {"name": "cma_es", "sigma0": 0.1, "popsize": 4},
    "generations": 1,
    "execution": {"dtype": "float64"},
}
SEEDS = [11, 12]


@pytest.fixture(scope="module")
def setup():
    return prepare_experiment(EXPERIMENT)


@pytest.fixture(scope="module")
def objective(setup):
    return MetaObjective(setup, dtype="float64")


def check(res, drawn: bool = False) -> None:
    if drawn:
        note(str(res))
    assert res["jax_vs_cs"] <= TOL, f"JAX vs complex step: {res['jax_vs_cs']:.3g}"
    # central differences carry their own truncation error (a drawn kink, e.g. relu_tanh, gave 8.3e-7
    # against the complex step while JAX matched the complex step to 9e-16): JAX may be no farther
    # from them than the exact complex step is, plus TOL
    assert res["jax_vs_fd"] <= TOL + res["fd_vs_cs"], (
        f"JAX vs central differences: {res['jax_vs_fd']:.3g} (complex step vs them: {res['fd_vs_cs']:.3g})")
    assert abs(res["loss"] - res["loss_sim"]) <= 1e-12 * max(1.0, abs(res["loss_sim"]))
    if not res["trivial"]:
        assert res["mutant"] > TOL, (
            f"a genome entry moved by 1e-6 changed the comparison only to {res['mutant']:.3g}")


def test_gradient_agrees_with_complex_step_and_differences(objective, setup):
    res = agreement(objective, setup.x0, SEEDS, setup.train_protocol(0))
    check(res)
    assert not res["trivial"] and res["finite"] and res["dim"] == 2 * 13


@settings(max_examples=2)
@given(case=gradient_cases())
def test_gradient_agrees_on_drawn_experiments(case, tmp_path_factory):
    setup = prepare_case(case, tmp_path_factory.mktemp("g"))
    check(agreement(MetaObjective(setup, dtype="float64"), setup.x0, case["seeds"], setup.train_protocol(0)),
          drawn=True)


def test_value_is_the_population_evaluation(objective, setup):
    """The meta-loss and accuracies are those of the ES evaluation (NumPy simulator, its own
    metric code) of the same genome, seeds and protocol."""
    x = setup.x0 + 0.05 * np.random.default_rng(1).standard_normal(setup.layout.size)
    proto = Protocol(3, 4, 2, None, 2, "test")  # the shapes of train_protocol(0): compiled already
    loss, m = objective.value(x, SEEDS, proto)
    ev = evaluate_chunk(make_job(setup), x[None], "train", SEEDS, proto)
    ce = ev["cross_entropy"][0].mean(axis=1)  # (tasks,) over replicas
    assert np.allclose(m["cross_entropy"], ce, rtol=1e-12, atol=0)
    assert np.allclose(m["accuracy"], ev["accuracy"][0].mean(axis=1), rtol=1e-14, atol=0)
    assert loss == pytest.approx(ce.mean(), rel=1e-12) and m["finite"]
    assert np.allclose(objective.value_and_grad(x, SEEDS, proto)[0], loss, rtol=1e-13)


@pytest.mark.slow
def test_float32_gradient_is_the_float64_one_rounded(objective, setup):
    proto = setup.train_protocol(0)
    l64, g64, _ = objective.value_and_grad(setup.x0, SEEDS, proto)
    l32, g32, m32 = MetaObjective(setup).value_and_grad(setup.x0, SEEDS, proto)
    assert g32.dtype == np.float64 and g32.shape == g64.shape
    assert abs(l32 - l64) <= 1e-5 and np.abs(g32 - g64).max() <= 1e-4 * np.abs(g64).max()
    assert set(m32) >= {"accuracy", "cross_entropy", "finite", "loss"} and m32["accuracy"].shape == (2,)


def test_a_non_finite_unroll_is_reported_not_raised(objective, setup):
    x = setup.x0.copy()
    x[setup.layout.labels().index("default.eta_tilde")] = np.nan  # every synapse of the group: NaN
    loss, grad, m = objective.value_and_grad(x, SEEDS, setup.train_protocol(0))
    assert not m["finite"] and not m["finite_tasks"].any() and not np.isfinite(loss)


def test_bad_arguments_are_one_line_errors(objective, setup):
    with pytest.raises(SpecError, match="genome vector of 26 values"):
        objective.value(np.zeros(3), SEEDS, setup.train_protocol(0))
    with pytest.raises(SpecError, match=r"one seed per train task \(2\)"):
        objective.value(setup.x0, [1], setup.train_protocol(0))


# ------------------------------------------- issue 15: the Oja multiplier, normalisation gain and shift
def oja_norm_experiment(oja: str, normalization: str) -> dict:
    """A tiny experiment that searches *only* ``oja_alpha``, ``norm_gain`` and ``norm_shift``
    (Sec. 3.4's learnable mean and deviation of N, eq. 8's Oja multiplier), the network
    normalised on the given passes and with the given Oja mode; unroll 3 so the Oja term (which
    acts from the second step on, once synapses have moved) shapes the loss."""
    return {
        "network": {"k": 2, "populations": [
            {"name": "in", "size": 2, "role": "input"},
            {"name": "h", "size": 4, "role": "hidden", "forward_activation": "tanh",
             "backward_activation": "tanh", "normalization": normalization},
            {"name": "out", "size": 2, "role": "output", "forward_activation": "tanh"}],
            "projections": [{"from": "in", "to": "h"}, {"from": "h", "to": "out"}],
            "rules": {"oja": oja}},
        "training_tasks": [{"name": "two_moons", "options": {"n_train": 64, "n_test": 64}}],
        "inner": {"steps": 3, "batch_size": 8, "query_batches": 2, "replicas": 2},
        "genome": {"init": {"kind": "random", "seed": 5},
                   "set": {"oja_alpha": 0.4, "norm_gain": [1.3, 0.7], "norm_shift": [0.2, -0.3]},
                   "fields": ["oja_alpha", "norm_gain", "norm_shift"]},
        "strategy": {"name": "gradient"},
        "generations": 1,
        "execution": {"dtype": "float64"},
    }


@pytest.mark.parametrize("oja,normalization", [("weights", "both"), ("activity", "forward")])
def test_gradient_in_oja_alpha_norm_gain_and_shift(oja, normalization):
    """The meta-gradient with respect to exactly the Oja multiplier and the normalisation gain and
    shift (issue 15: searchable by gradient) agrees with the complex step and the central
    differences of the NumPy simulator; every searched entry matters (a non-zero derivative,
    so the agreement is not a comparison of zeros), and the mutant check must fail."""
    setup = prepare_experiment(oja_norm_experiment(oja, normalization))
    obj = MetaObjective(setup, dtype="float64")
    labels = setup.layout.labels()
    assert labels == ["default.oja_alpha", "default.norm_gain[0]", "default.norm_gain[1]",
                      "default.norm_shift[0]", "default.norm_shift[1]"]
    res = agreement(obj, setup.x0, [21], setup.train_protocol(0))
    check(res)
    _, g, _ = obj.value_and_grad(setup.x0, [21], setup.train_protocol(0))
    # backward-pass normalisation (the 'both' case) also makes the state-1 gain and shift matter;
    # 'forward' normalises state 0 and 1 of the forward pass alike (one entry per state)
    assert np.all(np.abs(g) > 1e-6 * np.abs(g).max()), dict(zip(labels, g))
