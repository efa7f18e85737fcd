"""Gradient-descent baselines (blursim.baselines): backprop, optimizers, runs, CLI."""

import json

import numpy as np
import pytest
from conftest import SPECS

from blursim.baselines import (
    DERIVATIVES,
    FeedForwardNet,
    adam,
    lr_sweep,
    make_optimizer,
    momentum,
    sgd,
    train_baseline,
)
from blursim.cli.main import main
from blursim.data import load_dataset
from blursim.errors import SpecError
from blursim.genome import backprop_genome
from blursim.graph import compile_network
from blursim.sim import Simulator, train_and_evaluate
from blursim.spec import load_network


def dag_spec(hidden_act="tanh"):
    """in -> h1 -> h2 -> out_a, skips in -> h2 and in -> out_b, h1 -> out_b, out_a -> out_b."""
    return {
        "format": "blursim.network/1",
        "k": 2,
        "seed": 5,
        "populations": [
            {"name": "in", "size": 3, "role": "input"},
            {"name": "h1", "size": 4, "role": "hidden", "forward_activation": hidden_act,
             "backward_activation": "identity"},
            {"name": "h2", "size": 3, "role": "hidden", "forward_activation": "sigmoid",
             "backward_activation": "identity"},
            {"name": "out_a", "size": 2, "role": "output", "forward_activation": "identity",
             "backward_activation": "identity"},
            {"name": "out_b", "size": 1, "role": "output", "forward_activation": "tanh",
             "backward_activation": "identity"},
        ],
        "projections": [
            {"from": "in", "to": "h1"},
            {"from": "h1", "to": "h2"},
            {"from": "in", "to": "h2", "name": "skip_in_h2", "bias": False,
             "connectivity": {"kind": "fixed_probability", "p": 0.6, "seed": 1}},
            {"from": "h2", "to": "out_a"},
            {"from": "h1", "to": "out_b"},
            {"from": "out_a", "to": "out_b", "name": "a_to_b", "bias": False},
            {"from": "in", "to": "out_b", "name": "skip_in_b", "bias": False},
        ],
    }


# ------------------------------------------------------------------ gradients
@pytest.mark.parametrize("act", sorted(DERIVATIVES))
def test_gradient_matches_finite_differences(act):
    prog = compile_network(load_network(dag_spec(act)))
    assert any(q.mask is not None for q in prog.projs)
    net = FeedForwardNet(prog, dtype="float64")
    rng = np.random.default_rng(0)
    R, B = 2, 5
    params = [rng.normal(size=(R, q.n_pre + q.bias, q.n_post)) for q in prog.projs]
    for w, q in zip(params, prog.projs):
        if q.mask is not None:
            w[:, :q.n_pre] *= q.mask
    x = rng.normal(size=(B, 3))
    y = rng.integers(0, 2, B)
    loss, grads = net.loss_and_grad(params, x, y)
    assert loss.shape == (R,)
    np.testing.assert_allclose(loss, net.loss(params, x, y), rtol=1e-14)
    h = 1e-6
    for qi, q in enumerate(prog.projs):
        fd = np.zeros_like(params[qi])
        for i in range(params[qi].shape[1]):
            for j in range(params[qi].shape[2]):
                plus = [w.copy() for w in params]
                minus = [w.copy() for w in params]
                plus[qi][:, i, j] += h
                minus[qi][:, i, j] -= h
                fd[:, i, j] = (net.loss(plus, x, y) - net.loss(minus, x, y)) / (2 * h)
        if q.mask is not None:  # entries outside the mask do not exist: zero gradient
            assert np.all(grads[qi][:, :q.n_pre][:, ~q.mask] == 0)
        np.testing.assert_allclose(grads[qi], fd, rtol=1e-5, atol=1e-8, err_msg=f"{act} {q.name}")


# ------------------------------------------------- cross-check against BLUR
@pytest.mark.parametrize("spec,task,lr", [("mlp_2d.json", "xor", 0.5), ("digits_backprop.json", "digits", 0.3)])
def test_sgd_equals_blur_backprop_genome(spec, task, lr):
    prog = compile_network(load_network(SPECS / spec))
    assert prog.rules.batch_reduction == "mean" and prog.rules.feedback == "error_softmax"
    ds = load_dataset(task, {})
    kw = dict(steps=10, batch_size=16, replicas=2, seed=7, eval_steps=[0, 10])
    base = train_baseline(prog, ds, "sgd", lr, dtype="float64", **kw)
    sim = Simulator(prog, backend="numpy", dtype="float64")
    blur = train_and_evaluate(sim, [backprop_genome(lr=lr)], ds, **kw)
    w0 = FeedForwardNet(prog).initial_weights(replicas=2, seed=7)
    for qi in range(len(prog.projs)):
        want = blur.state.forward_synapses(qi, prog.k)[0, ..., 0]
        assert np.abs(want - w0[qi]).max() > 1e-4  # the weights did move
        err = np.linalg.norm(base.weights[qi] - want) / np.linalg.norm(want)
        assert err < 1e-10, (qi, err)
    np.testing.assert_allclose(base.accuracy, blur.accuracy[0], atol=1e-12)
    np.testing.assert_allclose(base.cross_entropy, blur.cross_entropy[0], rtol=1e-9)


def test_initial_weights_are_blurs():
    prog = compile_network(load_network(SPECS / "dag_two_heads_digits.json"))
    sim = Simulator(prog, backend="numpy", dtype="float32")
    st = sim.init_synapses(sim.prepare([backprop_genome()]), replicas=3, seed=4)
    w = FeedForwardNet(prog, dtype="float32").initial_weights(replicas=3, seed=4)
    for qi, q in enumerate(prog.projs):
        assert w[qi].dtype == np.float32
        assert w[qi].shape == (3, q.n_pre + q.bias, q.n_post)
        np.testing.assert_array_equal(w[qi], st.forward_synapses(qi, 2)[0, ..., 0])


# ----------------------------------------------------------------- optimizers
W0 = [np.array([1.0, -2.0])]
G1 = [np.array([0.5, -1.0])]
G2 = [np.array([1.0, 2.0])]


def two_steps(update, **hyper):
    w1, s1 = update(W0, G1, None, 0.1, **hyper)
    w2, _ = update(w1, G2, s1, 0.1, **hyper)
    assert W0[0].tolist() == [1.0, -2.0] and G1[0].tolist() == [0.5, -1.0]  # inputs untouched
    return w2[0]


def test_sgd_two_steps():
    np.testing.assert_allclose(two_steps(sgd), [0.85, -2.1], rtol=1e-15)


def test_momentum_two_steps():
    # v1 = g1 = (0.5, -1); w1 = (0.95, -1.9); v2 = 0.9 v1 + g2 = (1.45, 1.1); w2 = w1 - 0.1 v2
    np.testing.assert_allclose(two_steps(momentum), [0.805, -2.01], rtol=1e-14)
    # Nesterov: steps g1 + 0.9 v1 = (0.95, -1.9), then g2 + 0.9 v2 = (2.305, 2.99)
    np.testing.assert_allclose(two_steps(momentum, nesterov=True), [0.6745, -2.109], rtol=1e-14)
    np.testing.assert_allclose(two_steps(momentum, beta=0.0), two_steps(sgd), rtol=1e-15)


def test_adam_two_steps():
    eps = 1e-8
    # t = 1: m = (0.05, -0.1), v = (0.00025, 0.001); m_hat = g1, v_hat = g1^2
    w1 = np.array([1.0 - 0.1 * 0.5 / (0.5 + eps), -2.0 + 0.1 * 1.0 / (1.0 + eps)])
    # t = 2: m = (0.145, 0.11), v = (0.00124975, 0.004999); corrections 0.19 and 0.001999
    w2 = w1 - 0.1 * np.array([
        (0.145 / 0.19) / (np.sqrt(0.00124975 / 0.001999) + eps),
        (0.11 / 0.19) / (np.sqrt(0.004999 / 0.001999) + eps),
    ])
    np.testing.assert_allclose(two_steps(adam), w2, rtol=1e-13)


def test_make_optimizer():
    assert make_optimizer("nesterov").label == "nesterov"
    assert make_optimizer("momentum", beta=0.5).hyper["beta"] == 0.5
    with pytest.raises(SpecError, match="rmsprop"):
        make_optimizer("rmsprop")
    with pytest.raises(SpecError, match="gamma"):
        make_optimizer("adam", gamma=1.0)


# ------------------------------------------------------------------ training
def test_lr_sweep_shapes():
    prog = compile_network(load_network(SPECS / "mlp_2d.json"))
    ds = load_dataset("xor", {"n_train": 128, "n_test": 64})
    t = lr_sweep(prog, ds, optimizers=["sgd", "adam"], lrs=[1e-3, 1e-2, 1e-1], steps=5, batch_size=8,
                 replicas=2, eval_steps=[0, 2, 5], n_query_batches=2, query_batch_size=16)
    assert t.optimizers == ["sgd", "adam"]
    assert t.accuracy.shape == t.cross_entropy.shape == (2, 3, 2, 3)
    assert t.diverged.shape == (2, 3, 2)
    assert t.steps.tolist() == [0, 2, 5]
    assert len(t.rows()) == 6 and {r["lr"] for r in t.rows()} == {1e-3, 1e-2, 1e-1}
    # same initial weights and query batches: every run agrees at step 0
    assert np.all(t.accuracy[..., 0] == t.accuracy[0, 0, :, 0])
    json.dumps(t.to_dict())


@pytest.mark.parametrize("spec,task,opt,lr,steps,floor", [
    ("mlp_2d.json", "xor", "momentum", 0.1, 300, 0.85),
    ("digits_backprop.json", "digits", "sgd", 0.5, 150, 0.7),
    ("digits_backprop.json", "digits", "adam", 0.01, 100, 0.8),
])
def test_learns_above_chance(spec, task, opt, lr, steps, floor):
    prog = compile_network(load_network(SPECS / spec))
    ds = load_dataset(task, {})
    r = train_baseline(prog, ds, opt, lr, steps=steps, batch_size=32, replicas=2, seed=0,
                       eval_steps="end", dtype="float32")
    assert r.weights[0].dtype == np.float32
    assert r.accuracy.shape == (2, 1) and not r.diverged.any()
    assert r.accuracy.mean() > floor
    assert r.train_loss.shape == (steps, 2)


def test_huge_lr_does_not_crash():
    prog = compile_network(load_network(SPECS / "mlp_2d.json"))
    ds = load_dataset("xor", {"n_train": 64, "n_test": 64})
    r = train_baseline(prog, ds, "sgd", 1e8, steps=20, batch_size=8, eval_steps="all")
    assert r.accuracy.shape == (1, 21) and np.all(np.isfinite(r.accuracy))


# -------------------------------------------------------------------- errors
def test_recurrent_spec_is_rejected():
    prog = compile_network(load_network(SPECS / "recurrent_2d.json"))
    with pytest.raises(SpecError, match=r"acyclic.*h1 -> h2 -> h1"):
        FeedForwardNet(prog)


def test_unsupported_activation_is_named(monkeypatch):
    monkeypatch.delitem(DERIVATIVES, "sin")
    prog = compile_network(load_network(dag_spec("sin")))
    with pytest.raises(SpecError, match=r"no derivative for activation 'sin'") as e:
        FeedForwardNet(prog)
    assert "populations[1].forward_activation" in str(e.value)


def test_bad_arguments():
    prog = compile_network(load_network(SPECS / "mlp_2d.json"))
    ds = load_dataset("xor", {"n_train": 32, "n_test": 32})
    with pytest.raises(SpecError, match="learning rate"):
        train_baseline(prog, ds, "sgd", 0.0, steps=1, batch_size=4)
    with pytest.raises(SpecError, match="2 input features|input features"):
        train_baseline(prog, load_dataset("digits", {}), "sgd", 0.1, steps=1, batch_size=4)


# ----------------------------------------------------------------------- CLI
def test_cli_baseline(capsys):
    argv = ["baseline", str(SPECS / "mlp_2d.json"), "--task", "xor", "--task-opt", "n_train=64",
            "--task-opt", "n_test=64", "--optimizer", "sgd", "momentum", "--lr", "0.01", "0.1",
            "--steps", "4", "--eval-every", "2", "--batch", "8"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "## sgd" in out and "## momentum" in out and "lr=0.1" in out
    assert main(argv + ["--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["steps"] == [0, 2, 4] and len(doc["curves"]) == 4
    assert main(["baseline", str(SPECS / "recurrent_2d.json"), "--task", "xor"]) == 2
    assert "recurrent_2d.json" in capsys.readouterr().err
