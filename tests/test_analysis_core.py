"""Tests of the generic gradient analysis (paper Sec. 3.5, App. A) on maps
whose answers are known analytically:

* ``Δw = −γ∇L`` for a non-quadratic L with a hand-written Hessian
  (and a two-layer network's squared loss): Q = −γ∇²L is symmetric;
* ``Δw = −γG⁻¹∇L`` with a known SPD G: Q is asymmetric but ĝ = G solves
  eq. 13 at every state;
* rotational fields ``Δw = Aw + β sin(Cw)``: Q = A + β diag(cos Cw) C and the
  circulation is π ε² vᵀ(Q−Qᵀ)u + O(ε⁴) (Stokes);
* a pure rotation ``Δw = Kw`` (K antisymmetric) has closed orbits, so no PD
  metric exists (App. A) and every solution of eq. 13 is traceless.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blursim.analysis import (
    AnalysisError,
    FunctionMap,
    MemoryBudgetError,
    UpdateMap,
    asymmetry_report,
    circulation_test,
    eq13_residual,
    eq13_system,
    jacobian,
    jacobian_complex,
    jacobian_fd,
    metric_search,
    restrict_map,
    stokes_prediction,
    sym_from_vector,
)
from blursim.errors import BlursimError

GAMMA = 0.3


# ---------------------------------------------------------------------------
# known-answer maps
# ---------------------------------------------------------------------------


class Quartic:
    """L(w) = Σ_k ¼(a_kᵀw)⁴ + Σ_k cos(b_kᵀw) + ½ wᵀSw (non-quadratic)."""

    def __init__(self, n: int, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.n = n
        self.A = rng.standard_normal((n + 3, n)) / np.sqrt(n)
        self.B = rng.standard_normal((6, n))
        S = rng.standard_normal((n, n))
        self.S = S @ S.T / n

    def grad(self, W):
        return ((W @ self.A.T) ** 3) @ self.A - np.sin(W @ self.B.T) @ self.B + W @ self.S

    def hess(self, w):
        return (
            self.A.T @ np.diag(3 * (self.A @ w) ** 2) @ self.A
            - self.B.T @ np.diag(np.cos(self.B @ w)) @ self.B
            + self.S
        )


def gradient_map(L: Quartic, G: np.ndarray | None = None) -> FunctionMap:
    Gi = None if G is None else np.linalg.inv(G)

    def f(W):
        g = -GAMMA * L.grad(W)
        return g if Gi is None else g @ Gi.T

    return FunctionMap(f, L.n, vectorized=True, supports_complex=True)


def spd(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    return M @ M.T + n * np.eye(n)


class TwoLayerNet(UpdateMap):
    """Δw = −γ∇L for L = 1/(2N) Σ ‖V tanh(W1 x) − t‖², gradient written by hand."""

    supports_complex = True

    def __init__(self, d=3, h=4, o=2, N=7, seed=2):
        rng = np.random.default_rng(seed)
        self.d, self.h, self.o = d, h, o
        self.X = rng.standard_normal((N, d))
        self.T = rng.standard_normal((N, o))
        self.n = h * d + o * h
        self.blocks = [("proj in->h", 0, h * d), ("proj h->out", h * d, self.n)]
        self.labels = [f"in->h pre={j} post={i}" for i in range(h) for j in range(d)] + [
            f"h->out pre={j} post={i}" for i in range(o) for j in range(h)
        ]
        self.calls: list[int] = []

    def __call__(self, w):
        return self.batch(w[None, :])[0]

    def batch(self, Wb):
        self.calls.append(Wb.shape[0])
        m = Wb.shape[0]
        W1 = Wb[:, : self.h * self.d].reshape(m, self.h, self.d)
        V = Wb[:, self.h * self.d :].reshape(m, self.o, self.h)
        H = np.tanh(np.einsum("nd,mhd->mnh", self.X, W1))
        R = np.einsum("mnh,moh->mno", H, V) - self.T
        N = self.X.shape[0]
        gV = np.einsum("mno,mnh->moh", R, H) / N
        back = np.einsum("mno,moh->mnh", R, V) * (1 - H**2)
        gW1 = np.einsum("mnh,nd->mhd", back, self.X) / N
        return -GAMMA * np.concatenate([gW1.reshape(m, -1), gV.reshape(m, -1)], axis=1)


def rotational_map(n: int, beta: float = 0.3, seed: int = 3):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n))
    C = rng.standard_normal((n, n))
    f = FunctionMap(lambda W: W @ A.T + beta * np.sin(W @ C.T), n, vectorized=True, supports_complex=True)
    return f, (lambda w: A + beta * np.diag(np.cos(C @ w)) @ C)


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


# ---------------------------------------------------------------------------
# Jacobians
# ---------------------------------------------------------------------------


def test_fd_jacobian_matches_analytic_hessian_within_its_error_estimate():
    L = Quartic(8)
    w = np.random.default_rng(5).standard_normal(8) * 0.7
    H = -GAMMA * L.hess(w)
    res = jacobian_fd(gradient_map(L), w)
    assert res.method == "fd"
    assert res.error_estimate.shape == (8, 8)
    true_err = np.abs(res.Q - H)
    # the estimate bounds the true error (Frobenius) and is not absurdly loose
    assert np.linalg.norm(true_err) <= res.error_fro
    assert res.error_fro < 1e-7 * np.linalg.norm(H)
    # the chosen step is interior to the ladder: truncation and rounding balanced
    assert 1e-7 <= res.step <= 1e-3


def test_fd_step_choice_follows_truncation_rounding_balance():
    # Δw = sin(w)·s with curvature scale s: truncation error ~ h²·|f'''|/6; larger
    # third derivative must push the chosen step down (known scaling, not a value).
    steps = [10.0 ** (-k / 2) for k in range(2, 18)]
    w = np.full(3, 0.4)
    chosen = []
    for freq in (1.0, 100.0):
        f = FunctionMap(lambda W, c=freq: np.sin(c * W) / c, 3, vectorized=True)
        r = jacobian_fd(f, w, steps=steps)
        np.testing.assert_allclose(np.diag(r.Q), np.cos(freq * w), atol=float(np.max(r.error_estimate)) + 1e-12)
        chosen.append(r.step)
    assert chosen[1] < chosen[0]


def test_complex_step_matches_analytic_hessian_to_rounding():
    L = Quartic(8)
    w = np.random.default_rng(6).standard_normal(8) * 0.7
    H = -GAMMA * L.hess(w)
    res = jacobian(gradient_map(L), w, method="auto")
    assert res.method == "complex"
    assert res.step == 1e-30
    assert rel(res.Q, H) < 1e-12
    assert np.linalg.norm(res.Q - H) <= res.error_fro


def test_fd_uses_one_batched_call_of_2n_points_per_step():
    net = TwoLayerNet()
    w = np.random.default_rng(0).standard_normal(net.n) * 0.5
    steps = [1e-2, 1e-3, 1e-4, 1e-5]
    res = jacobian_fd(net, w, steps=steps)
    assert net.calls == [2 * net.n] * len(steps)
    assert res.n_evaluations == 2 * net.n * len(steps)
    net.calls.clear()
    jacobian_complex(net, w)
    assert net.calls == [net.n]


def test_auto_falls_back_to_fd_when_complex_evaluation_drops_imaginary_part():
    # declares supports_complex but np.abs makes the output real
    f = FunctionMap(lambda W: np.abs(W) ** 2, 3, vectorized=True, supports_complex=True)
    w = np.array([0.5, -1.0, 2.0])
    res = jacobian(f, w, method="auto")
    assert res.method == "fd"
    assert any("fell back" in s for s in res.notes)
    np.testing.assert_allclose(res.Q, np.diag(2 * w), atol=res.error_fro + 1e-12)
    with pytest.raises(AnalysisError, match="imaginary part"):
        jacobian(f, w, method="complex")
    with pytest.raises(AnalysisError, match="supports_complex"):
        jacobian(FunctionMap(lambda W: W, 2, vectorized=True), np.zeros(2), method="complex")


def test_bad_inputs_raise_blursim_errors():
    f = FunctionMap(lambda W: np.log(W), 2, vectorized=True)
    with pytest.raises(BlursimError, match="non-finite"), np.errstate(invalid="ignore"):
        jacobian_fd(f, np.array([1e-3, 1.0]))
    with pytest.raises(BlursimError, match="shape"):
        jacobian_fd(FunctionMap(lambda W: W, 3, vectorized=True), np.zeros(4))
    with pytest.raises(BlursimError, match="unknown Jacobian method"):
        jacobian(FunctionMap(lambda W: W, 2, vectorized=True), np.zeros(2), method="bogus")


def test_restricted_map_jacobian_is_principal_subblock():
    net = TwoLayerNet()
    w = np.random.default_rng(1).standard_normal(net.n) * 0.5
    full = jacobian_complex(net, w).Q
    sub, w_sub = restrict_map(net, w, blocks=["proj h->out"])
    start, stop = net.blocks[1][1:]
    assert sub.n == stop - start
    assert sub.labels == net.labels[start:stop]
    r = jacobian_complex(sub, w_sub)
    np.testing.assert_allclose(r.Q, full[start:stop, start:stop], rtol=0, atol=1e-14)
    with pytest.raises(AnalysisError, match="unknown block"):
        restrict_map(net, w, blocks=["nope"])


# ---------------------------------------------------------------------------
# asymmetry (eq. 10)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["fd", "complex"])
def test_gradient_fields_are_symmetric(method):
    L = Quartic(8)
    w = np.random.default_rng(7).standard_normal(8) * 0.7
    rep = asymmetry_report(jacobian(gradient_map(L), w, method=method))
    assert rep.is_symmetric and rep.verdict.startswith("symmetric")
    assert rep.asym_fro <= rep.noise_factor * rep.noise_floor
    net = TwoLayerNet()
    wn = np.random.default_rng(8).standard_normal(net.n) * 0.5
    rep2 = asymmetry_report(jacobian(net, wn, method=method))
    assert rep2.is_symmetric, rep2.verdict
    json.dumps(rep2.to_dict(), allow_nan=False)


def test_noise_floor_separates_tiny_true_asymmetry_from_noise():
    # Δw = −γ∇L + δ K w, K antisymmetric: Q − Qᵀ = 2δK exactly.
    L = Quartic(6)
    rng = np.random.default_rng(9)
    K = rng.standard_normal((6, 6))
    K = K - K.T
    w = rng.standard_normal(6) * 0.7
    for delta, expect_sym in ((1e-5, False), (1e-14, True)):
        f = FunctionMap(lambda W, d=delta: -GAMMA * L.grad(W) + d * W @ K.T, 6, vectorized=True)
        res = jacobian_fd(f, w)
        rep = asymmetry_report(res)
        assert rep.is_symmetric is expect_sym, rep.verdict
        if not expect_sym:
            np.testing.assert_allclose(rep.asym_fro, 2 * delta * np.linalg.norm(K), rtol=1e-3)
            assert rep.margin > 100


def test_rotational_field_asymmetry_report_top_entries_and_labels():
    n = 6
    f, Qfun = rotational_map(n)
    w = np.random.default_rng(10).standard_normal(n)
    labels = [f"w{i}" for i in range(n)]
    Qt = Qfun(w)
    for method in ("fd", "complex"):
        rep = asymmetry_report(jacobian(f, w, method=method), labels=labels, top=4)
        assert not rep.is_symmetric
        assert rep.verdict.startswith("asymmetric: not a gradient of any loss (eq. 10 violated)")
        assert rep.margin > 1e5
        np.testing.assert_allclose(rep.rel_asymmetry, np.linalg.norm(Qt - Qt.T) / np.linalg.norm(Qt), rtol=1e-6)
        # the top entry is the largest |A_ij| of the analytic asymmetry
        A = np.abs(Qt - Qt.T)
        i, j = np.unravel_index(np.argmax(np.triu(A, 1)), A.shape)
        e = rep.top[0]
        assert (e.i, e.j) == (i, j) and (e.label_i, e.label_j) == (f"w{i}", f"w{j}")
        np.testing.assert_allclose(e.asymmetry, Qt[i, j] - Qt[j, i], rtol=1e-6)
        assert [abs(t.asymmetry) for t in rep.top] == sorted((abs(t.asymmetry) for t in rep.top), reverse=True)
        d = rep.to_dict()
        assert json.loads(json.dumps(d, allow_nan=False))["top"][0]["label_i"] == f"w{i}"


def test_noise_floor_formula_on_given_matrix():
    # Q = [[0, 3], [1, 0]]: ‖Q−Qᵀ‖_F = 2√2; with E = 0.5 everywhere the floor is
    # ‖(E+Eᵀ) off-diagonal‖_F = √2, so margin = 2.
    Q = np.array([[0.0, 3.0], [1.0, 0.0]])
    rep = asymmetry_report(Q, error_estimate=0.5, noise_factor=10)
    assert rep.noise_floor == pytest.approx(np.sqrt(2))
    assert rep.margin == pytest.approx(2.0)
    assert rep.is_symmetric
    rep2 = asymmetry_report(Q, error_estimate=0.5, noise_factor=1.5)
    assert not rep2.is_symmetric


# ---------------------------------------------------------------------------
# constant metric (eq. 13)
# ---------------------------------------------------------------------------


def test_eq13_system_matches_definition():
    rng = np.random.default_rng(11)
    n = 5
    Q = rng.standard_normal((n, n))
    x = rng.standard_normal(n * (n + 1) // 2)
    g = sym_from_vector(x, n)
    Z = g @ Q - (g @ Q).T
    a, b = np.triu_indices(n, 1)
    np.testing.assert_allclose(eq13_system(Q) @ x, Z[a, b], atol=1e-12)
    assert eq13_residual(g, Q) == pytest.approx(np.linalg.norm(Z))


@pytest.mark.parametrize("method", ["complex", "fd"])
def test_metric_search_recovers_known_metric(method):
    n = 7
    L = Quartic(n, seed=4)
    G = spd(n, 12)
    f = gradient_map(L, G)
    rng = np.random.default_rng(13)
    w0 = rng.standard_normal(n) * 0.7
    fit = jacobian(f, w0, method=method)
    assert not asymmetry_report(fit).is_symmetric  # not a Euclidean gradient
    vals = [jacobian(f, rng.standard_normal(n) * 0.7, method=method) for _ in range(25)]
    res = metric_search(fit, vals, null_rtol="auto" if method == "fd" else 1e-8)
    assert res.null_dim >= n  # a single Q leaves at least n directions
    assert res.surviving_dim == 1
    assert res.pd_found and res.pd_candidates == [0]
    assert np.all(res.surviving_residual <= 1.0)
    Gn = G * n / np.trace(G)
    assert rel(res.best_metric, Gn) < (1e-10 if method == "complex" else 1e-6)
    json.dumps(res.to_dict(), allow_nan=False)


def test_metric_search_on_gradient_field_finds_identity():
    n = 6
    L = Quartic(n, seed=5)
    f = gradient_map(L)
    rng = np.random.default_rng(14)
    fits = [jacobian_complex(f, rng.standard_normal(n)) for _ in range(2)]  # stacked fit
    vals = [jacobian_complex(f, rng.standard_normal(n)) for _ in range(10)]
    res = metric_search(fits, vals)
    assert res.n_fit == 2 and res.surviving_dim == 1 and res.pd_found
    assert rel(res.best_metric, np.eye(n)) < 1e-10


def test_pure_rotation_has_no_pd_metric():
    # Δw = Kw with K antisymmetric: closed circular orbits, so no PD metric (App. A).
    # Symmetric solutions of eq. 13 anticommute with K, hence are traceless.
    J = np.array([[0.0, 1.0], [-1.0, 0.0]])
    K = np.zeros((4, 4))
    K[:2, :2] = 1.0 * J
    K[2:, 2:] = 2.5 * J
    f = FunctionMap(lambda W: W @ K.T, 4, vectorized=True, supports_complex=True)
    rng = np.random.default_rng(15)
    jacs = [jacobian_complex(f, rng.standard_normal(4)) for _ in range(4)]
    res = metric_search(jacs[0], jacs[1:])
    assert res.surviving_dim >= 1
    assert not res.pd_found and res.best_metric is None and res.pd_candidates == []
    assert res.best_min_eig_ratio <= 1e-8
    for S in res.surviving:
        assert abs(np.trace(S)) < 1e-10
        assert eq13_residual(S, K) < 1e-12
    assert res.verdict.startswith("no positive-definite constant metric")


def test_metric_search_finds_pd_combination_not_in_basis():
    # Q = 0 ⇒ every symmetric g solves eq. 13: the basis vectors need not be PD, but
    # the span contains the identity, which the λ_min maximisation must find.
    res = metric_search(np.zeros((3, 3)), [np.zeros((3, 3))])
    assert res.null_dim == 6 and res.surviving_dim == 6
    assert res.pd_found and res.best_min_eig_ratio > 0.5


def test_pd_search_finds_combination_when_no_start_point_is_pd():
    # Candidates diag(x) for x in the plane ν⊥, ν ∝ (1, 0.5, −0.1): the plane meets the
    # positive orthant (e.g. x = (0.1, 0.1, 1.5)), but neither basis vector (±) nor
    # the projection of the identity is PD, so only the ascent can find it.
    from blursim.analysis.metric import _max_min_eig

    nu = np.array([1.0, 0.5, -0.1])
    nu /= np.linalg.norm(nu)
    b1 = np.array([0.5, -1.0, 0.0]) / np.linalg.norm([0.5, -1.0, 0.0])
    b2 = np.cross(nu, b1)
    basis = [(b1 + b2) / np.sqrt(2), (b1 - b2) / np.sqrt(2)]
    S = np.stack([np.diag(x) for x in basis])
    for x in basis:  # preconditions of the known answer
        assert np.min(x) < 0 < np.max(x)
    proj_one = sum(x.sum() * x for x in basis)
    assert np.min(proj_one) < 0
    c, lam = _max_min_eig(S, 400)
    assert lam > 0
    assert np.min(np.linalg.eigvalsh(np.tensordot(c, S, axes=1))) == pytest.approx(lam)


# ---------------------------------------------------------------------------
# circulation (Stokes)
# ---------------------------------------------------------------------------


def test_rotational_circulation_matches_stokes_and_scales_like_eps_squared():
    n = 6
    f, Qfun = rotational_map(n)
    w = np.random.default_rng(16).standard_normal(n)
    eps = [1e-1, 3e-2, 1e-2, 3e-3, 1e-3]
    res = circulation_test(f, w, eps=eps, n_planes=3, rng=1, jacobian=Qfun(w))
    assert not res.is_zero and res.verdict.startswith("non-zero circulation")
    np.testing.assert_allclose(res.slopes, 2.0, atol=0.02)
    # independent Stokes constant: π ε² vᵀ(Q−Qᵀ)u with analytic Q
    Qt = Qfun(w)
    expect = np.pi * np.einsum("pi,ij,pj->p", res.v, Qt - Qt.T, res.u)[:, None] * np.asarray(eps) ** 2
    # deviation is O(ε⁴): relative error O(ε²)
    relerr = np.abs(res.circulation - expect) / np.abs(expect)
    assert np.all(relerr[:, 2:] < 1e-3)
    assert np.all(relerr[:, -1] < 1e-5)
    np.testing.assert_allclose(res.predicted, expect, rtol=1e-12)
    json.dumps(res.to_dict(), allow_nan=False)


def test_linear_rotation_circulation_is_exact():
    # Δw = Kw: C(ε) = π ε² vᵀ(K − Kᵀ)u exactly for every ε; for u=e0, v=e1 and
    # K = [[0, 1], [−1, 0]] (clockwise field) that is −2π ε².
    K = np.array([[0.0, 1.0], [-1.0, 0.0]])
    f = FunctionMap(lambda W: W @ K.T, 2, vectorized=True)
    eps = [0.5, 0.1]
    res = circulation_test(f, np.array([0.3, -0.2]), eps=eps, planes=(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])))
    np.testing.assert_allclose(res.circulation[0], -2 * np.pi * np.asarray(eps) ** 2, rtol=1e-13)
    np.testing.assert_allclose(stokes_prediction(K, np.array([[1.0, 0]]), np.array([[0, 1.0]]), eps)[0], res.circulation[0], rtol=1e-13)


def test_gradient_field_circulation_vanishes():
    n = 6
    L = Quartic(n)
    w = np.random.default_rng(17).standard_normal(n) * 0.7
    grad_res = circulation_test(gradient_map(L), w, rng=2)
    rot, _ = rotational_map(n)
    rot_res = circulation_test(rot, w, rng=2)
    assert grad_res.is_zero and grad_res.verdict.startswith("circulation vanishes")
    assert np.all(np.abs(grad_res.circulation) <= grad_res.noise_floor)
    assert np.all(np.abs(grad_res.circulation) < 1e-8 * np.abs(rot_res.circulation))
    assert np.all(np.isnan(grad_res.slopes))


def test_metric_gradient_circulation_vanishes_with_its_metric():
    n = 6
    L = Quartic(n)
    G = spd(n, 18)
    f = gradient_map(L, G)
    w = np.random.default_rng(19).standard_normal(n) * 0.7
    assert not circulation_test(f, w, rng=3).is_zero  # G⁻¹∇L is not a Euclidean gradient
    res = circulation_test(f, w, rng=3, metric=G)
    assert res.is_zero and res.metric_used


def test_circulation_uses_one_batch_per_eps():
    net = TwoLayerNet()
    w = np.random.default_rng(20).standard_normal(net.n) * 0.5
    circulation_test(net, w, eps=[1e-2, 1e-3], n_points=16, n_planes=2)
    assert net.calls == [2 * 16 + 1] * 2


# ---------------------------------------------------------------------------
# memory guards
# ---------------------------------------------------------------------------


def test_memory_guards_raise_with_numbers():
    calls = []
    big = FunctionMap(lambda W: calls.append(1) or W, 5000, vectorized=True, supports_complex=True)
    with pytest.raises(MemoryBudgetError) as ei:
        jacobian(big, np.zeros(5000), method="fd")
    msg = str(ei.value)
    assert "n=5000" in msg and "bytes" in msg and "restrict_map" in msg
    assert ei.value.required_bytes > ei.value.budget_bytes == 1 << 30
    assert str(ei.value.required_bytes) in msg and str(1 << 30) in msg
    with pytest.raises(MemoryBudgetError, match="n=50 "):
        jacobian_complex(FunctionMap(lambda W: W, 50, vectorized=True, supports_complex=True), np.zeros(50), memory_budget=10_000)
    assert calls == []  # refused before evaluating anything
    with pytest.raises(MemoryBudgetError) as ei2:
        metric_search(np.zeros((150, 150)))
    msg2 = str(ei2.value)
    assert "n=150" in msg2 and "11175 rows × 11325 columns" in msg2 and "restrict" in msg2
    with pytest.raises(MemoryBudgetError, match="n=6 "):
        circulation_test(gradient_map(Quartic(6)), np.zeros(6), memory_budget=100)
    assert isinstance(ei2.value, BlursimError)


# ---------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n"


def test_log_abs_asymmetry_known_values():
    from blursim.analysis.plots import log_abs_asymmetry

    L, floor = log_abs_asymmetry(np.array([[0.0, 2.0], [0.0, 0.0]]), floor=1e-10)
    np.testing.assert_allclose(L, [[np.log(1e-10), np.log(2.0)], [np.log(2.0), np.log(1e-10)]])


def test_plots_write_png_without_display(tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    from blursim.analysis import plot_asymmetry_heatmap, plot_circulation

    net = TwoLayerNet()
    w = np.random.default_rng(21).standard_normal(net.n) * 0.5
    Jg = jacobian_complex(net, w)
    f, _ = rotational_map(net.n)
    Jr = jacobian_complex(f, w)
    p1 = plot_asymmetry_heatmap(Jr, path=tmp_path / "fig2.png", title="rotational")
    p2 = plot_asymmetry_heatmap(
        Jr, blocks=net.blocks, path=tmp_path / "pair.png", title="learned", compare=Jg, compare_title="backprop"
    )
    p3 = plot_circulation(circulation_test(f, w, n_planes=2, jacobian=Jr), tmp_path / "circ.png")
    for p in (p1, p2, p3):
        data = Path(p).read_bytes()
        assert data[:8] == PNG and len(data) > 1000
    assert sorted(os.listdir(tmp_path)) == ["circ.png", "fig2.png", "pair.png"]  # no temp files left
    with pytest.raises(AnalysisError, match="does not exist"):
        plot_asymmetry_heatmap(Jr, path=tmp_path / "missing" / "x.png")


def test_core_import_does_not_load_matplotlib():
    code = "import sys, blursim.analysis; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
