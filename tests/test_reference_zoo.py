"""The independent references of DESIGN §6 (tests/reference/zoo.py) checked against known answers.

- backprop in ``zoo.py`` equals ``backprop.py``'s SGD (itself checked by finite differences);
- feedback alignment with ``B_l = W_lᵀ`` is backprop; direct feedback alignment with one
  hidden layer and ``B_1 = W_2ᵀ`` is backprop (Nøkland 2016, Sec. 2);
- Kolen-Pollack: ``W_l − B_lᵀ`` shrinks by exactly ``(1 − λ)`` per step whatever the data
  (Akrout et al. 2019, eq. 9), and with ``λ = 0`` and ``B = Wᵀ`` it is backprop;
- Oja (1982): a linear neuron's weights converge to the unit principal eigenvector of the
  input covariance; plain Hebb on the same data grows without bound.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import backprop as bp
from reference import zoo

ACTS = ("tanh", "sigmoid", "softplus")


@st.composite
def chains(draw, min_hidden=1, max_hidden=3):
    """A layered net: sizes, hidden activations (identity outputs), weights, a batch."""
    n_hidden = draw(st.integers(min_hidden, max_hidden))
    sizes = [draw(st.integers(1, 4))] + [draw(st.integers(1, 5)) for _ in range(n_hidden)]
    sizes.append(draw(st.integers(2, 4)))
    acts = [draw(st.sampled_from(ACTS)) for _ in range(n_hidden)] + ["identity"]
    bias = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    W = [rng.normal(0, 0.8, (a + bias, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    B = draw(st.integers(1, 6))
    x = rng.normal(0, 1, (B, sizes[0]))
    y = rng.integers(0, sizes[-1], B)
    return sizes, acts, bias, W, x, y, rng


def _desc(sizes, acts, bias):
    pops = [{"name": "p0", "size": sizes[0], "role": "input"}]
    for l in range(1, len(sizes)):
        role = "output" if l == len(sizes) - 1 else "hidden"
        pops.append({"name": f"p{l}", "size": sizes[l], "role": role, "activation": acts[l - 1]})
    projs = [{"name": f"q{l}", "from": f"p{l - 1}", "to": f"p{l}", "bias": bias} for l in range(1, len(sizes))]
    return {"populations": pops, "projections": projs}


def _close(a, b, tol=1e-12):
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=tol, atol=tol * max(1.0, np.abs(v).max()))


@settings(max_examples=30)
@given(chains(), st.sampled_from(["sum", "mean"]))
def test_zoo_backprop_equals_the_sgd_reference(net, reduction):
    sizes, acts, bias, W, x, y, _ = net
    desc = _desc(sizes, acts, bias)
    names = [f"q{l}" for l in range(1, len(sizes))]
    sgd = bp.sgd(desc, dict(zip(names, W)), [({"p0": x}, {f"p{len(sizes) - 1}": y})], 0.3,
                 loss="softmax", reduction=reduction)[0]
    ours, _ = zoo.step("backprop", acts, W, [None] * (len(W) + 1), x, y, 0.3, bias=bias,
                       reduction=reduction)
    _close(ours, [sgd[n] for n in names])


@settings(max_examples=30)
@given(chains())
def test_feedback_alignment_with_transposed_weights_is_backprop(net):
    sizes, acts, bias, W, x, y, _ = net
    tied = [None] + [w[: w.shape[0] - bias] for w in W]  # B_l = W_lᵀ (stored like W_l, no bias row)
    fa, b_after = zoo.step("feedback_alignment", acts, W, tied, x, y, 0.2, bias=bias)
    bpw, _ = zoo.step("backprop", acts, W, [None] * (len(W) + 1), x, y, 0.2, bias=bias)
    _close(fa, bpw)
    _close(b_after[1:], tied[1:], tol=0)  # B never changes


@settings(max_examples=30)
@given(chains(min_hidden=1, max_hidden=1))
def test_direct_feedback_with_one_hidden_layer_and_transposed_output_weights_is_backprop(net):
    sizes, acts, bias, W, x, y, _ = net
    D = [None, W[1][: sizes[1]], None]  # B_1 = W_2ᵀ: the output error straight to the hidden layer
    dfa, _ = zoo.step("direct_feedback_alignment", acts, W, D, x, y, 0.2, bias=bias)
    bpw, _ = zoo.step("backprop", acts, W, [None] * 3, x, y, 0.2, bias=bias)
    _close(dfa, bpw)


@settings(max_examples=20)
@given(chains(min_hidden=2, max_hidden=3))
def test_direct_feedback_differs_from_backprop_with_two_hidden_layers(net):
    """Not a tautology: with two hidden layers DFA's first-layer update is not backprop's."""
    sizes, acts, bias, W, x, y, rng = net
    D = [None] + [rng.normal(0, 1, (n, sizes[-1])) for n in sizes[1:-1]] + [None]
    dfa, _ = zoo.step("direct_feedback_alignment", acts, W, D, x, y, 0.2, bias=bias)
    bpw, _ = zoo.step("backprop", acts, W, [None] * (len(W) + 1), x, y, 0.2, bias=bias)
    np.testing.assert_allclose(dfa[-1], bpw[-1], rtol=1e-12, atol=1e-12)  # the output layer is the same
    assert not np.allclose(dfa[0], bpw[0], rtol=1e-6, atol=1e-9)


@settings(max_examples=20)
@given(chains(), st.floats(0.01, 0.3), st.integers(1, 6))
def test_kolen_pollack_shrinks_w_minus_b_transposed_by_one_minus_lambda(net, lam, steps):
    sizes, acts, bias, W, x, y, rng = net
    Bk = [None] + [rng.normal(0, 1, w[: w.shape[0] - bias].shape) for w in W]
    gap0 = [w[: w.shape[0] - bias] - b for w, b in zip(W, Bk[1:])]
    for _ in range(steps):
        xb = rng.normal(0, 1, x.shape)
        W, Bk = zoo.step("kolen_pollack", acts, W, Bk, xb, y, 0.1, bias=bias, decay=lam)
    gap = [w[: w.shape[0] - bias] - b for w, b in zip(W, Bk[1:])]
    _close(gap, [(1 - lam) ** steps * g for g in gap0], tol=1e-10)


@settings(max_examples=20)
@given(chains())
def test_kolen_pollack_without_decay_from_transposed_weights_is_backprop(net):
    sizes, acts, bias, W, x, y, _ = net
    tied = [None] + [w[: w.shape[0] - bias].copy() for w in W]
    kp, b_after = zoo.step("kolen_pollack", acts, W, tied, x, y, 0.2, bias=bias)
    bpw, _ = zoo.step("backprop", acts, W, [None] * (len(W) + 1), x, y, 0.2, bias=bias)
    _close(kp, bpw)
    _close(b_after[1:], [w[: w.shape[0] - bias] for w in kp])  # still B = Wᵀ


def test_oja_converges_to_the_principal_eigenvector_and_hebb_diverges():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(4, 4))
    cov = A @ A.T + np.diag([3.0, 0.0, 0.0, 0.0])
    X = rng.multivariate_normal(np.zeros(4), cov, size=4000)
    evals, evecs = np.linalg.eigh(np.cov(X.T, bias=True))
    w = [rng.normal(0, 0.1, (4, 1))]
    h = [w[0].copy()]
    for t in range(400):
        xb = X[(t * 10) % 4000:(t * 10) % 4000 + 10]
        w = zoo.hebbian_step(["identity"], w, xb, 0.002, bias=False, oja=True)
        if t < 50:
            h = zoo.hebbian_step(["identity"], h, xb, 0.002, bias=False)
    v = w[0][:, 0]
    assert abs(np.linalg.norm(v) - 1.0) < 0.05
    assert abs(v @ evecs[:, -1]) > 0.98
    assert np.linalg.norm(h[0]) > 10.0  # Hebb: no bound


def test_hebbian_step_is_the_batch_sum_of_outer_products():
    rng = np.random.default_rng(1)
    W = [rng.normal(size=(3, 2))]
    x = rng.normal(size=(5, 2))
    new = zoo.hebbian_step(["tanh"], W, x, 0.1, bias=True)
    xin = np.concatenate([x, np.ones((5, 1))], axis=1)
    y = np.tanh(xin @ W[0])
    expect = W[0] + 0.1 * sum(np.outer(xin[b], y[b]) for b in range(5))
    np.testing.assert_allclose(new[0], expect, rtol=1e-13)


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError):
        zoo.step("sign_symmetry", ["tanh", "identity"], [np.ones((2, 2)), np.ones((2, 2))],
                 [None] * 3, np.ones((1, 2)), np.zeros(1, int), 0.1, bias=False)
