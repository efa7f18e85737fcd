"""The meta-loss on one's own arrays (blursim.meta.loss.MetaLoss, issue 26 item 5) and
experiments whose output heads differ in size."""

import copy

import numpy as np
import pytest
from test_meta_train import TINY_NETWORK, tiny_experiment

from blursim.errors import SpecError
from blursim.meta import meta_train, prepare_experiment
from blursim.meta.evaluate import Protocol

TABLE1 = ["f", "eta", "f_tilde", "eta_tilde", "nu", "mu", "nu_tilde", "mu_tilde"]


def xor_setup():
    exp = tiny_experiment(validation_tasks=[],
                          training_tasks=[{"name": "xor", "options": {"n_train": 256, "n_test": 128}}])
    exp["genome"] = {"init": {"kind": "random", "seed": 0}, "fields": TABLE1}
    return prepare_experiment(exp)


def test_meta_loss_on_arrays_equals_the_experiments_objective_and_central_differences():
    pytest.importorskip("jax")
    from blursim.meta.loss import MetaLoss
    from blursim.meta.objective import MetaObjective, task_data

    setup = xor_setup()
    proto = Protocol(3, 16, 2, None, 2, "train")
    ml = MetaLoss(TINY_NETWORK, base=setup.base_genome, dtype="float64")
    assert ml.layout == setup.layout and ml.dim == 20
    x = setup.x0
    xs, ys, xq, yq = task_data(setup.train_tasks[0].dataset, 5, proto)  # plain arrays
    assert xs.shape == (3, 16, 2) and yq.shape == (2, 16)
    W0 = ml.initial_synapses(5, replicas=2)
    loss, grad, m = ml.value_and_grad(x, xs, ys, xq, yq, W0)
    assert m["finite"] and 0 < loss < 5 and grad.shape == (20,)
    # the experiment's objective with the same seed computes the same number and gradient
    l_exp, g_exp, _ = MetaObjective(setup, "train", dtype="float64").value_and_grad(x, [5], proto)
    assert loss == pytest.approx(l_exp, rel=1e-12) and np.allclose(grad, g_exp, rtol=1e-10, atol=1e-14)
    # central differences of the loss: three coordinates and a random direction
    def f(y):
        return ml.value_and_grad(y, xs, ys, xq, yq, W0)[0]  # one compiled function for the test

    h = 1e-5
    rng = np.random.default_rng(0)
    d = rng.standard_normal(20)
    for direction in [np.eye(20)[0], np.eye(20)[5], np.eye(20)[17], d / np.linalg.norm(d)]:
        fd = (f(x + h * direction) - f(x - h * direction)) / (2 * h)
        assert fd == pytest.approx(grad @ direction, rel=1e-5, abs=1e-9)
    # a few plain gradient steps from outside lower the loss (another optimizer can drive it)
    y = x.copy()
    for _ in range(5):
        _, g, _ = ml.value_and_grad(y, xs, ys, xq, yq, W0)
        y -= 0.05 * g / max(1.0, np.linalg.norm(g))
    assert f(y) < loss
    # the genome of a vector round-trips
    assert np.array_equal(ml.vector(ml.genome(y)), y)


def test_meta_loss_refuses_wrong_shapes():
    pytest.importorskip("jax")
    from blursim.meta.loss import MetaLoss

    ml = MetaLoss(TINY_NETWORK, fields=["f", "eta"])
    assert ml.dim == 2 and ml.labels() == ["default.f", "default.eta"]
    xs, ys = np.zeros((2, 4, 2)), np.zeros((2, 4), dtype=int)
    W0 = ml.initial_synapses(0)  # refused before anything is compiled:
    with pytest.raises(SpecError, match="genome vector of 2 values"):
        ml(np.zeros(3), xs, ys, xs, ys, W0)
    with pytest.raises(SpecError, match=r"projection 0 must have shape \(replicas, 3, 6, 2\)"):
        ml(np.zeros(2), xs, ys, xs, ys, [(np.zeros((1, 2, 6, 2)), W0[0][1]), W0[1]])
    with pytest.raises(SpecError, match="init_scale"):
        MetaLoss(TINY_NETWORK, fields=["init_scale"])
    with pytest.raises(SpecError, match="unknown genome field"):
        MetaLoss(TINY_NETWORK, fields=["nope"])


def two_heads(sizes):
    net = copy.deepcopy(TINY_NETWORK)
    out = net["populations"].pop()
    for i, n in enumerate(sizes):
        net["populations"].append({**out, "name": f"y{i + 1}", "size": n})
        net["projections"].append({"from": "hidden", "to": f"y{i + 1}"})
    net["projections"] = [p for p in net["projections"] if p["to"] != "out"]
    return net


def test_experiments_accept_output_heads_of_different_sizes():
    """A two-class task on heads of 2 and 3 neurons (the simulator's rule: a neuron per class,
    extra neurons never the target) meta-trains; a head smaller than the classes is refused."""
    exp = tiny_experiment(network=two_heads([2, 3]), generations=1)
    r = meta_train(exp)
    assert r.records[-1]["mean"]["train_mean"] is not None and r.end_validation["validation_mean"] is not None
    three = tiny_experiment(network=two_heads([2, 3]), generations=1,
                            training_tasks=[{"name": "blobs5", "options": {"n_train": 64, "n_test": 32}}])
    with pytest.raises(SpecError, match="'y1' has 2 neurons but task 'blobs5' has 5 classes"):
        prepare_experiment(three)


@pytest.mark.slow
def test_gradient_through_heads_of_different_sizes():
    """Slow: compiles the unroll of another network (about 10 s on 2 idle cores)."""
    pytest.importorskip("jax")
    from blursim.meta.objective import MetaObjective

    exp = tiny_experiment(network=two_heads([2, 3]), validation_tasks=[])
    setup = prepare_experiment(exp)
    loss, grad, m = MetaObjective(setup, "train").value_and_grad(setup.x0, [1, 2], setup.train_protocol(0))
    assert m["finite"] and np.isfinite(grad).all() and loss > 0


@pytest.mark.slow
def test_the_value_alone_equals_the_value_of_value_and_grad():
    """Slow: compiles the loss without its gradient (a second compilation)."""
    pytest.importorskip("jax")
    from blursim.meta.loss import MetaLoss
    from blursim.meta.objective import task_data

    setup = xor_setup()
    proto = Protocol(3, 16, 2, None, 2, "train")
    ml = MetaLoss(TINY_NETWORK, base=setup.base_genome, dtype="float64")
    data = task_data(setup.train_tasks[0].dataset, 5, proto)
    W0 = ml.initial_synapses(5, replicas=2)
    loss, _, m = ml.value_and_grad(setup.x0, *data, W0)
    value, m2 = ml.value(setup.x0, *data, W0)
    assert value == pytest.approx(loss, rel=1e-12) and m2 == m
