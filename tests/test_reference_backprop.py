"""Checks of the independent NumPy backprop reference (tests/reference/backprop.py).

The reference is checked against central finite differences, a case worked
out by hand, and the closed-form gradient of linear least squares.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

try:  # rootdir on sys.path (python -m pytest, or tests/ made a package)
    from tests.reference import backprop as ref
except ImportError:  # pytest's default rootdir-less "prepend" import mode
    from reference import backprop as ref


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def pop(name, size, role, activation="identity"):
    return {"name": name, "size": size, "role": role, "activation": activation}


def proj(name, src, dst, bias=True, mask=None):
    return {"name": name, "from": src, "to": dst, "bias": bias, "mask": mask}


def sizes_of(desc):
    return {p["name"]: p["size"] for p in desc["populations"]}


def random_weights(desc, rng, scale=0.7):
    sizes = sizes_of(desc)
    weights = {}
    for p in desc["projections"]:
        rows = sizes[p["from"]] + (1 if p["bias"] else 0)
        weights[p["name"]] = scale * rng.standard_normal((rows, sizes[p["to"]]))
    return weights


def random_data(desc, rng, batch, loss):
    sizes = sizes_of(desc)
    inputs, targets = {}, {}
    for p in desc["populations"]:
        if p["role"] == "input":
            inputs[p["name"]] = rng.standard_normal((batch, p["size"]))
        elif p["role"] == "output":
            if loss == "mse":
                targets[p["name"]] = rng.standard_normal((batch, sizes[p["name"]]))
            elif loss == "logistic":
                targets[p["name"]] = rng.integers(0, 2, size=(batch, sizes[p["name"]])).astype(float)
            else:
                targets[p["name"]] = rng.integers(0, sizes[p["name"]], size=batch)
    return inputs, targets


def finite_difference_grads(desc, weights, inputs, targets, loss, reduction, step=1e-6):
    fd = {}
    for name, w in weights.items():
        g = np.zeros_like(w)
        for index in np.ndindex(w.shape):
            plus = {k: v.copy() for k, v in weights.items()}
            minus = {k: v.copy() for k, v in weights.items()}
            plus[name][index] += step
            minus[name][index] -= step
            l_plus = ref.loss_value(desc, plus, inputs, targets, loss, reduction)
            l_minus = ref.loss_value(desc, minus, inputs, targets, loss, reduction)
            g[index] = (l_plus - l_minus) / (2.0 * step)
        fd[name] = g
    return fd


def assert_grads_match_finite_differences(desc, weights, inputs, targets, loss, reduction):
    value, grads = ref.loss_and_grads(desc, weights, inputs, targets, loss, reduction)
    assert np.isfinite(value)
    assert value == pytest.approx(
        ref.loss_value(desc, weights, inputs, targets, loss, reduction), rel=1e-14
    )
    assert set(grads) == set(weights)
    fd = finite_difference_grads(desc, weights, inputs, targets, loss, reduction)
    analytic = np.concatenate([grads[k].ravel() for k in sorted(weights)])
    numeric = np.concatenate([fd[k].ravel() for k in sorted(weights)])
    for k in weights:
        assert grads[k].shape == weights[k].shape
    scale = max(np.linalg.norm(analytic), np.linalg.norm(numeric))
    error = np.linalg.norm(analytic - numeric)
    # Relative error of the whole gradient vector; a tiny absolute floor for
    # the (legitimate) case of an all-zero gradient.
    assert error <= 1e-6 * scale + 1e-9, (error, scale)
    # Masked entries are exactly zero in the gradient.
    sizes = sizes_of(desc)
    for p in desc["projections"]:
        if p.get("mask") is not None:
            n_from = sizes[p["from"]]
            masked_out = np.asarray(p["mask"]) == 0
            assert np.all(grads[p["name"]][:n_from][masked_out] == 0.0)
    return grads


# --------------------------------------------------------------------------
# Hand-written DAGs
# --------------------------------------------------------------------------


def chain_desc(bias=True):
    return {
        "populations": [
            pop("in", 3, "input"),
            pop("h1", 4, "hidden", "tanh"),
            pop("h2", 3, "hidden", "sigmoid"),
            pop("out", 2, "output", "identity"),
        ],
        "projections": [
            proj("p1", "in", "h1", bias),
            proj("p2", "h1", "h2", bias),
            proj("p3", "h2", "out", bias),
        ],
    }


def skip_desc(bias=True):
    # Listed out of topological order on purpose.
    return {
        "populations": [
            pop("out", 3, "output", "softplus"),
            pop("hid", 4, "hidden", "sigmoid"),
            pop("in", 2, "input"),
        ],
        "projections": [
            proj("skip", "in", "out", bias),
            proj("in_hid", "in", "hid", not bias),
            proj("hid_out", "hid", "out", bias),
        ],
    }


def two_in_two_out_desc(bias=True):
    return {
        "populations": [
            pop("a", 2, "input"),
            pop("b", 3, "input"),
            pop("h", 4, "hidden", "tanh"),
            pop("g", 2, "hidden", "softplus"),
            pop("y", 3, "output", "identity"),
            pop("z", 2, "output", "sigmoid"),
        ],
        "projections": [
            proj("a_h", "a", "h", bias),
            proj("b_h", "b", "h", False),
            proj("h_g", "h", "g", bias),
            proj("b_g", "b", "g", bias),
            proj("h_y", "h", "y", bias),
            proj("g_y", "g", "y", False),
            proj("g_z", "g", "z", bias),
            proj("a_z", "a", "z", bias),
        ],
    }


def masked_desc(bias=True):
    mask1 = np.array([[1, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 1]], dtype=float)
    mask2 = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=float)
    return {
        "populations": [
            pop("in", 3, "input"),
            pop("h", 4, "hidden", "tanh"),
            pop("out", 3, "output", "identity"),
        ],
        "projections": [
            proj("p1", "in", "h", bias, mask1),
            proj("p2", "h", "out", bias, mask2),
            proj("skip", "in", "out", False),
        ],
    }


HAND_DAGS = {
    "chain": chain_desc,
    "skip": skip_desc,
    "two_in_two_out": two_in_two_out_desc,
    "masked": masked_desc,
}


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("loss", ["mse", "softmax", "logistic"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dag", sorted(HAND_DAGS))
def test_hand_dags_match_finite_differences(dag, bias, loss, reduction):
    desc = HAND_DAGS[dag](bias)
    seed = [sorted(HAND_DAGS).index(dag), int(bias), ref.LOSSES.index(loss),
            ref.REDUCTIONS.index(reduction)]
    rng = np.random.default_rng(seed)
    weights = random_weights(desc, rng)
    inputs, targets = random_data(desc, rng, batch=5, loss=loss)
    assert_grads_match_finite_differences(desc, weights, inputs, targets, loss, reduction)


def test_mask_zeroes_effective_weight_and_gradient_sgd_keeps_masked_entries():
    desc = masked_desc()
    rng = np.random.default_rng(7)
    weights = random_weights(desc, rng)
    inputs, targets = random_data(desc, rng, batch=4, loss="mse")
    # Masked-out weight entries have no influence on the loss.
    changed = {k: v.copy() for k, v in weights.items()}
    mask1 = desc["projections"][0]["mask"]
    changed["p1"][:3][mask1 == 0] += 123.0
    assert ref.loss_value(desc, changed, inputs, targets) == ref.loss_value(
        desc, weights, inputs, targets
    )
    # ... and SGD never moves them.
    history = ref.sgd(desc, weights, [(inputs, targets)] * 3, lr=0.05)
    for step in history:
        assert np.array_equal(step["p1"][:3][mask1 == 0], weights["p1"][:3][mask1 == 0])
        assert not np.array_equal(step["p1"], weights["p1"])


def test_population_listing_order_does_not_matter():
    desc = two_in_two_out_desc()
    rng = np.random.default_rng(3)
    weights = random_weights(desc, rng)
    inputs, targets = random_data(desc, rng, batch=3, loss="mse")
    value, grads = ref.loss_and_grads(desc, weights, inputs, targets)
    shuffled = {
        "populations": list(reversed(desc["populations"])),
        "projections": list(reversed(desc["projections"])),
    }
    value2, grads2 = ref.loss_and_grads(shuffled, weights, inputs, targets)
    assert value2 == pytest.approx(value, rel=1e-14)
    for k in grads:
        np.testing.assert_allclose(grads2[k], grads[k], rtol=1e-13, atol=1e-15)
    order = ref.topological_order(shuffled)
    position = {name: i for i, name in enumerate(order)}
    for p in desc["projections"]:
        assert position[p["from"]] < position[p["to"]]


def test_cycle_and_bad_graphs_are_rejected():
    cyclic = {
        "populations": [
            pop("in", 1, "input"),
            pop("a", 1, "hidden", "tanh"),
            pop("b", 1, "hidden", "tanh"),
            pop("out", 1, "output"),
        ],
        "projections": [
            proj("in_a", "in", "a"),
            proj("a_b", "a", "b"),
            proj("b_a", "b", "a"),
            proj("b_out", "b", "out"),
        ],
    }
    with pytest.raises(ValueError, match="cycle"):
        ref.topological_order(cyclic)
    from_output = {
        "populations": [pop("in", 1, "input"), pop("out", 1, "output")],
        "projections": [proj("p", "in", "out"), proj("q", "out", "out")],
    }
    w = {"p": np.zeros((2, 1)), "q": np.zeros((2, 1))}
    with pytest.raises(ValueError):
        ref.loss_and_grads(from_output, w, {"in": np.zeros((1, 1))}, {"out": np.zeros((1, 1))})


# --------------------------------------------------------------------------
# Random DAGs (Hypothesis)
# --------------------------------------------------------------------------


@st.composite
def random_networks(draw):
    n_inputs = draw(st.integers(1, 2))
    n_hidden = draw(st.integers(1, 4))
    n_outputs = draw(st.integers(1, 2))
    acts = st.sampled_from(ref.ACTIVATIONS)
    size = st.integers(1, 5)
    pops = [pop(f"i{k}", draw(size), "input") for k in range(n_inputs)]
    pops += [pop(f"h{k}", draw(size), "hidden", draw(acts)) for k in range(n_hidden)]
    pops += [pop(f"o{k}", draw(size), "output", draw(acts)) for k in range(n_outputs)]
    # Linear order: inputs, hidden, outputs.  Edges only go forward, never
    # out of an output, never into an input.  Every non-input gets a
    # "backbone" edge from an earlier non-output population, plus random skips.
    edges = []
    for j, dst in enumerate(pops):
        if dst["role"] == "input":
            continue
        sources = [p for p in pops[:j] if p["role"] != "output"]
        backbone = draw(st.sampled_from(sources))
        for src in sources:
            if src is backbone or draw(st.booleans()):
                edges.append((src["name"], dst["name"]))
    projections = []
    for src, dst in edges:
        bias = draw(st.booleans())
        projections.append(proj(f"{src}->{dst}", src, dst, bias))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    for p in projections:
        if draw(st.booleans()) and draw(st.booleans()):  # mask 1 time in 4
            n_from = next(q["size"] for q in pops if q["name"] == p["from"])
            n_to = next(q["size"] for q in pops if q["name"] == p["to"])
            p["mask"] = (rng.random((n_from, n_to)) < 0.6).astype(float)
    listed = draw(st.permutations(pops))
    return {"populations": list(listed), "projections": projections}, seed


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    network=random_networks(),
    loss=st.sampled_from(ref.LOSSES),
    reduction=st.sampled_from(ref.REDUCTIONS),
    batch=st.integers(1, 4),
)
def test_random_dags_match_finite_differences(network, loss, reduction, batch):
    desc, seed = network
    rng = np.random.default_rng(seed + 1)
    weights = random_weights(desc, rng)
    inputs, targets = random_data(desc, rng, batch=batch, loss=loss)
    assert_grads_match_finite_differences(desc, weights, inputs, targets, loss, reduction)


# --------------------------------------------------------------------------
# Hand-computed tiny case
# --------------------------------------------------------------------------


def tiny_desc():
    return {
        "populations": [pop("x", 1, "input"), pop("y", 1, "output", "identity")],
        "projections": [proj("w", "x", "y", bias=True)],
    }


def test_hand_computed_single_example():
    # y = 3 * 2 + 1 = 7, target 4, loss = 1/2 (7 - 4)^2 = 4.5
    # dL/dw = (7 - 4) * 2 = 6, dL/db = (7 - 4) * 1 = 3
    weights = {"w": np.array([[3.0], [1.0]])}
    inputs = {"x": np.array([[2.0]])}
    targets = {"y": np.array([[4.0]])}
    value, grads = ref.loss_and_grads(tiny_desc(), weights, inputs, targets, "mse", "sum")
    assert value == 4.5
    np.testing.assert_array_equal(grads["w"], [[6.0], [3.0]])
    # One SGD step with lr 0.1: w = 3 - 0.6 = 2.4, b = 1 - 0.3 = 0.7
    (after,) = ref.sgd(tiny_desc(), weights, [(inputs, targets)], lr=0.1)
    np.testing.assert_allclose(after["w"], [[2.4], [0.7]], rtol=1e-15)
    np.testing.assert_array_equal(weights["w"], [[3.0], [1.0]])  # not mutated


def test_hand_computed_batch_of_two():
    # w = 0.5, b = -1.  Example 1: x = 2 -> y = 0, t = 1, error -1, loss 0.5.
    # Example 2: x = -4 -> y = -3, t = -1, error -2, loss 2.
    # sum:  L = 2.5, dL/dw = (-1)(2) + (-2)(-4) = 6, dL/db = -1 - 2 = -3
    # mean: L = 1.25, dL/dw = 3, dL/db = -1.5
    weights = {"w": np.array([[0.5], [-1.0]])}
    inputs = {"x": np.array([[2.0], [-4.0]])}
    targets = {"y": np.array([[1.0], [-1.0]])}
    value, grads = ref.loss_and_grads(tiny_desc(), weights, inputs, targets, "mse", "sum")
    assert value == 2.5
    np.testing.assert_array_equal(grads["w"], [[6.0], [-3.0]])
    value, grads = ref.loss_and_grads(tiny_desc(), weights, inputs, targets, "mse", "mean")
    assert value == 1.25
    np.testing.assert_array_equal(grads["w"], [[3.0], [-1.5]])


def test_hand_computed_softmax():
    # Two logits equal to [0, 0] with label 1: p = [1/2, 1/2],
    # loss = log 2, dL/dlogits = [1/2, -1/2].  With zero weights and input
    # x = 2 (no bias): dL/dW = x * [1/2, -1/2] = [1, -1].
    desc = {
        "populations": [pop("x", 1, "input"), pop("y", 2, "output", "identity")],
        "projections": [proj("w", "x", "y", bias=False)],
    }
    weights = {"w": np.zeros((1, 2))}
    value, grads = ref.loss_and_grads(
        desc, weights, {"x": np.array([[2.0]])}, {"y": np.array([1])}, "softmax", "sum"
    )
    assert value == pytest.approx(np.log(2.0), rel=1e-15)
    np.testing.assert_allclose(grads["w"], [[1.0, -1.0]], rtol=1e-15)


def test_hand_computed_logistic():
    # One logit h = 2 * 0.5 = 1 with target 1: loss = log(1 + e^-1),
    # dL/dh = sigmoid(1) - 1 = -1 / (1 + e), dL/dw = x * dL/dh = -2 / (1 + e).
    desc = {
        "populations": [pop("x", 1, "input"), pop("y", 1, "output", "identity")],
        "projections": [proj("w", "x", "y", bias=False)],
    }
    value, grads = ref.loss_and_grads(
        desc, {"w": np.array([[0.5]])}, {"x": np.array([[2.0]])}, {"y": np.array([[1.0]])},
        "logistic", "sum",
    )
    assert value == pytest.approx(np.log1p(np.exp(-1.0)), rel=1e-15)
    np.testing.assert_allclose(grads["w"], [[-2.0 / (1.0 + np.e)]], rtol=1e-14)


# --------------------------------------------------------------------------
# SGD on linear least squares
# --------------------------------------------------------------------------


def test_sgd_linear_regression_matches_closed_form_and_decreases_loss():
    rng = np.random.default_rng(11)
    n_in, n_out, batch = 3, 2, 20
    desc = {
        "populations": [pop("x", n_in, "input"), pop("y", n_out, "output", "identity")],
        "projections": [proj("w", "x", "y", bias=True)],
    }
    true_w = rng.standard_normal((n_in + 1, n_out))
    x = rng.standard_normal((batch, n_in))
    x1 = np.concatenate([x, np.ones((batch, 1))], axis=1)
    t = x1 @ true_w + 0.1 * rng.standard_normal((batch, n_out))
    w0 = {"w": np.zeros((n_in + 1, n_out))}
    # Step size 1 / lambda_max of the Hessian X1^T X1 / B: monotone descent.
    lr = 1.0 / np.linalg.eigvalsh(x1.T @ x1 / batch).max()
    steps = 60
    history = ref.sgd(desc, w0, [({"x": x}, {"y": t})] * steps, lr, "mse", "mean")
    assert len(history) == steps

    # Closed form: L = 1/(2B) ||X1 W - T||^2, grad = X1^T (X1 W - T) / B.
    w = w0["w"].copy()
    losses = [0.5 * np.sum((x1 @ w - t) ** 2) / batch]
    for step in history:
        w = w - lr * (x1.T @ (x1 @ w - t)) / batch
        np.testing.assert_allclose(step["w"], w, rtol=1e-12, atol=1e-14)
        losses.append(ref.loss_value(desc, step, {"x": x}, {"y": t}, "mse", "mean"))
    assert all(b < a for a, b in zip(losses, losses[1:]))
    assert losses[-1] < 0.05 * losses[0]
    # ... and converges to the least-squares solution.
    w_star, *_ = np.linalg.lstsq(x1, t, rcond=None)
    np.testing.assert_allclose(history[-1]["w"], w_star, atol=1e-6)


def test_sgd_uses_each_batch_in_turn():
    desc = tiny_desc()
    batches = [
        ({"x": np.array([[2.0]])}, {"y": np.array([[4.0]])}),
        ({"x": np.array([[-1.0]])}, {"y": np.array([[0.0]])}),
    ]
    history = ref.sgd(desc, {"w": np.array([[3.0], [1.0]])}, batches, lr=0.1)
    # Step 1 (hand, see above): w = 2.4, b = 0.7.
    # Step 2: y = -2.4 + 0.7 = -1.7, error -1.7; dL/dw = 1.7, dL/db = -1.7
    #         w = 2.4 - 0.17 = 2.23, b = 0.7 + 0.17 = 0.87
    np.testing.assert_allclose(history[0]["w"], [[2.4], [0.7]], rtol=1e-15)
    np.testing.assert_allclose(history[1]["w"], [[2.23], [0.87]], rtol=1e-14)
