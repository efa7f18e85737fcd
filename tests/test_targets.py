"""Targets: real-valued target vectors, logistic one-neuron outputs, labels checked against
the output size (issue 14 item 2; DESIGN §2 step 4).

Correctness is anchored in the independent plain-NumPy backprop of tests/reference
(itself checked against finite differences) and in updates computed by hand.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_backprop_identity import sgd_distance

from blursim.errors import DataError
from blursim.genome import backprop_genome
from blursim.graph import compile_network
from blursim.sim import Simulator
from blursim.sim.metrics import mean_squared_error
from blursim.spec import load_network
from blursim.testing.strategies import BACKPROP_HIDDEN, backprop_rules, network_specs

N_FEATURES, STEPS, LR = 3, 12, 0.05


def _spec(n_out, feedback, reduction, data):
    spec = data.draw(network_specs(
        n_features=N_FEATURES, n_classes=n_out, hidden=(1, 3), outputs=(1, 2), inputs=(1, 2),
        hidden_activation=tuple(tuple(v) for v in BACKPROP_HIDDEN.values()),
        output_activation=["identity", "one"], backward_activation="identity",
        connectivity=("all_to_all",),
        rules=backprop_rules(feedback, reduction),
    ))
    for p in spec["populations"]:
        if isinstance(p.get("forward_activation"), tuple):
            p["forward_activation"] = list(p["forward_activation"])
    return spec


def _blur_vs_sgd(spec, loss, reduction, seed, draw_targets):
    """Max relative distance of BLUR's weights from the reference SGD's over STEPS steps."""
    err, moved = sgd_distance(spec, loss, reduction, seed, draw_targets, N_FEATURES, STEPS)
    assert moved > 1e-3, "SGD did not move the weights: the comparison would be vacuous"
    return err


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_one_output_neuron_error_softmax_is_sgd_on_logistic_loss(reduction, data):
    """error_softmax on one output neuron: the backprop genome is SGD on log(1 + e^a) - t a."""
    spec = _spec(1, "error_softmax", reduction, data)

    def labels(rng, B):
        y = rng.integers(0, 2, B)
        return y, y[:, None].astype(float)

    assert _blur_vs_sgd(spec, "logistic", reduction, data.draw(st.integers(0, 1000)), labels) <= 1e-10


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_target_vectors_with_error_mse_are_sgd_on_the_squared_error(reduction, data):
    """Real-valued target vectors replace the coded targets: the backprop genome with error_mse
    is SGD on 1/2 ||a^0 - T||^2 for the given T."""
    n_out = data.draw(st.integers(1, 3))
    spec = _spec(n_out, "error_mse", reduction, data)

    def vectors(rng, B):
        t = rng.normal(0.0, 2.0, (B, n_out))
        return t, t

    assert _blur_vs_sgd(spec, "mse", reduction, data.draw(st.integers(0, 1000)), vectors) <= 1e-10


def _one_layer(n_out, feedback):
    return {
        "k": 2,
        "populations": [
            {"name": "in", "size": 3, "role": "input"},
            {"name": "out", "size": n_out, "role": "output", "forward_activation": ["identity", "one"]},
        ],
        "projections": [{"from": "in", "to": "out"}],
        "rules": backprop_rules(feedback, "sum"),
    }


def test_target_feedback_writes_the_vectors_into_state_1():
    """By hand: with the backprop genome a one-layer step adds eta_tilde [x, 1]^T a^1 to W, and
    the target feedback's a^1 is the given target vectors T."""
    prog = compile_network(load_network(_one_layer(2, "target")))
    sim = Simulator(prog, dtype="float64")
    genes = sim.prepare([backprop_genome(lr=LR)])
    st_ = sim.init_synapses(genes, seed=1)
    before = st_.forward_synapses(0, 2)[0, 0].copy()  # (n_in + bias, n_out, k)
    x = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    T = np.array([[0.25, -1.5], [2.0, 0.75]])
    sim.train_step(st_, genes, x, T)
    after = st_.forward_synapses(0, 2)[0, 0]
    xb = np.hstack([x, np.ones((2, 1))])
    for c in range(2):
        np.testing.assert_allclose(after[..., c] - before[..., c], LR * xb.T @ T, rtol=0, atol=1e-15)


def test_mean_squared_error_by_hand():
    out = np.array([[[[1.0, 2.0], [0.0, -1.0]]]])  # (S=1, R=1, B=2, n=2)
    T = np.array([[0.0, 2.0], [1.0, 1.0]])
    assert mean_squared_error([out], T)[0, 0] == pytest.approx((1 + 0 + 1 + 4) / 4)
    bad = out.copy()
    bad[0, 0, 0, 0] = np.nan
    assert mean_squared_error([bad], T)[0, 0] == np.inf


def test_simulator_reports_mse_for_vectors_and_accuracy_for_labels():
    prog = compile_network(load_network(_one_layer(2, "error_mse")))
    sim = Simulator(prog, dtype="float64")
    genes = sim.prepare([backprop_genome(lr=LR)])
    st_ = sim.init_synapses(genes, seed=1)
    x = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    T = np.array([[0.25, -1.5], [2.0, 0.75]])
    m = sim.evaluate(st_, genes, x, T)
    W = st_.forward_synapses(0, 2)[0, 0, :, :, 0]
    pred = np.hstack([x, np.ones((2, 1))]) @ W  # identity output: state 0 is the net input
    assert set(m) == {"mse"} and m["mse"][0, 0] == pytest.approx(((pred - T) ** 2).mean(), rel=1e-12)
    assert set(sim.evaluate(st_, genes, x, np.array([0, 1]))) == {"accuracy", "cross_entropy"}


# ------------------------------------------------------------------ errors


def _sim(n_out, feedback="error_mse"):
    prog = compile_network(load_network(_one_layer(n_out, feedback)))
    sim = Simulator(prog, dtype="float64")
    genes = sim.prepare([backprop_genome(lr=LR)])
    return sim, genes, sim.init_synapses(genes, seed=0)


@pytest.mark.parametrize("n_out, y, words", [
    (2, np.array([0, 2]), ["label 2", "'out' (2 neurons)", "labels 0..1"]),
    (2, np.array([-1, 0]), ["label -1"]),
    (1, np.array([0, 2]), ["label 2", "labels 0 and 1"]),
    (2, np.array([0.0, 1.0]), ["integer class labels"]),
    (3, np.zeros((2, 2)), ["length 2", "3 neuron"]),
])
def test_targets_that_do_not_fit_the_output_are_clear_errors(n_out, y, words):
    sim, genes, st_ = _sim(n_out)
    x = np.zeros((2, 3))
    for call in (lambda: sim.train_step(st_, genes, x, y), lambda: sim.evaluate(st_, genes, x, y)):
        with pytest.raises(DataError) as err:  # not an IndexError inside the step
            call()
        assert all(w in str(err.value) for w in words), str(err.value)


def test_target_vectors_with_error_softmax_are_refused():
    sim, genes, st_ = _sim(2, "error_softmax")
    with pytest.raises(DataError, match="needs class labels"):
        sim.train_step(st_, genes, np.zeros((2, 3)), np.zeros((2, 2)))


def test_coded_targets_by_hand():
    from blursim.sim.targets import coded_targets

    coded, onehot = coded_targets(np.array([2, 0]), 3, "pm1")
    assert coded.tolist() == [[-1, -1, 1], [1, -1, -1]] and onehot.tolist() == [[0, 0, 1], [1, 0, 0]]
    coded, onehot = coded_targets(np.array([2, 0]), 3, "onehot")
    assert coded.tolist() == onehot.tolist() == [[0, 0, 1], [1, 0, 0]]
    coded, onehot = coded_targets(np.array([1, 0, 1]), 1, "pm1")  # one neuron: the logit of class 1
    assert coded.tolist() == [[1], [-1], [1]] and onehot.tolist() == [[1], [0], [1]]
    T = np.array([[0.5, -2.0]])
    coded, onehot = coded_targets(T, 2, "pm1", dtype=np.float32)
    assert coded.dtype == np.float32 and coded.tolist() == onehot.tolist() == [[0.5, -2.0]]
