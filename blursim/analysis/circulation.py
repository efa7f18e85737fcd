"""Circulation test: ∮ Δw·dw around small loops (Sec. 3.5; App. A).

If ``Δw = −γ∇L`` (eq. 9), the line integral of ``Δw`` around any closed loop
vanishes: ``∮ Δw·dw = −γ ∮ dL = 0``.  App. A makes the same argument with a
closed *integral curve*: along it ``∮ dL`` would have to be both zero and
strictly negative.  More generally, for a constant metric ``ĝ`` (eq. 11)
``ĝΔw = −γ dL`` is exact and ``∮ (ĝΔw)·dw = 0``; pass ``metric=ĝ`` to test
that case (default ``ĝ = I``, i.e. eq. 9).

Loops
-----
``γ(θ) = w0 + ε (cos θ·u + sin θ·v)``, ``θ ∈ [0, 2π)``, for random orthonormal
``u, v`` (QR of a Gaussian ``n×2`` matrix).  The integral

    C(ε) = ∫_0^{2π} F(γ(θ))·γ'(θ) dθ,   F = ĝΔw,   γ' = ε(−sin θ·u + cos θ·v)

is computed by the trapezoid rule on ``N`` equispaced points, which is exact
for trigonometric polynomials of degree ``< N`` and spectrally accurate for
smooth periodic integrands.  ``F(w0)`` is subtracted first (``∮ const·dw = 0``
exactly) to avoid a needless rounding term.  All ``n_planes·N`` loop points
of one ``ε`` (plus ``w0``) are evaluated in one batched call.

Stokes prediction
-----------------
With ``F(w0 + δ) = F(w0) + J δ + O(δ²)``, ``J = ĝQ``, and ``δ = ε(c u + s v)``
(``c = cos θ``, ``s = sin θ``)::

    ∮ (Jδ)·dδ = ε² ∫ (c u + s v)ᵀ Jᵀ (−s u + c v) dθ
              = ε² (π uᵀJᵀv − π vᵀJᵀu)            (∫c² = ∫s² = π, ∫cs = 0)
              = π ε² vᵀ (J − Jᵀ) u.

This is Stokes' theorem: the curl ``∂F_v/∂x_u − ∂F_u/∂x_v = vᵀ(J − Jᵀ)u`` in
the (u, v) plane times the disc area ``πε²``, with the loop run
counter-clockwise from ``u`` towards ``v``.  The quadratic Taylor term gives
odd trigonometric products that integrate to zero, so
``C(ε) = π ε² vᵀ(J − Jᵀ)u + O(ε⁴)``: a log-log slope of 2 for a non-gradient
field, while a gradient field has ``C ≡ 0`` (only rounding remains).

Rounding floor
--------------
Per plane and ``ε`` the floor is ``16·ε_mach·(2π/N)·Σ_k Σ_i |F_i(γ_k) γ'_i(θ_k)|``
(the condition number of the quadrature sum, with a factor 16 for rounding in
the map itself).  It grows like ``ε`` (slope 1).  The verdict is
"non-zero circulation" when some ``|C| > noise_factor·floor``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._common import EPS, AnalysisError, as_square_matrix, check_memory, json_float, make_rng
from .jacobian import checked_map_point
from .maps import evaluate_batch

DEFAULT_EPS: tuple[float, ...] = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3)
DEFAULT_NOISE_FACTOR: float = 10.0
ROUNDING_FACTOR: float = 16.0

VERDICT_ZERO = "circulation vanishes within rounding: consistent with a gradient field"
VERDICT_NONZERO = "non-zero circulation: not a gradient field (∮ Δw·dw ≠ 0, eq. 9 impossible)"
VERDICT_ZERO_METRIC = (
    "circulation of ĝΔw vanishes within rounding: consistent with gradient descent in the metric ĝ"
)
VERDICT_NONZERO_METRIC = (
    "non-zero circulation of ĝΔw: not gradient descent in this metric ĝ (eq. 11 impossible)"
)


@dataclass
class CirculationResult:
    """Result of :func:`circulation_test`.

    Arrays indexed ``[plane, eps]``: ``circulation`` (signed ``C``),
    ``noise_floor``, ``predicted`` (``π ε² vᵀ(J−Jᵀ)u`` from a Jacobian,
    ``None`` without one).  ``slopes[p]`` is the least-squares slope of
    ``log|C|`` against ``log ε`` over the points above
    ``noise_factor·noise_floor`` (``nan`` if fewer than two).
    """

    eps: np.ndarray
    u: np.ndarray
    v: np.ndarray
    n_points: int
    circulation: np.ndarray
    noise_floor: np.ndarray
    predicted: np.ndarray | None
    slopes: np.ndarray
    slope: float
    noise_factor: float
    is_zero: bool
    verdict: str
    metric_used: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def lst(a):
            return None if a is None else [[json_float(x) for x in row] for row in np.atleast_2d(a)]

        return {
            "eps": [json_float(e) for e in self.eps],
            "n_planes": int(self.u.shape[0]),
            "n_points": int(self.n_points),
            "circulation": lst(self.circulation),
            "noise_floor": lst(self.noise_floor),
            "predicted": lst(self.predicted),
            "slopes": [json_float(s) for s in self.slopes],
            "slope": json_float(self.slope),
            "noise_factor": json_float(self.noise_factor),
            "is_zero": bool(self.is_zero),
            "verdict": self.verdict,
            "metric_used": bool(self.metric_used),
            "notes": list(self.notes),
        }


def random_planes(n: int, n_planes: int, rng: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """``n_planes`` random orthonormal pairs ``(u, v)``; arrays of shape ``(n_planes, n)``."""
    if n < 2:
        raise AnalysisError(f"the circulation test needs n ≥ 2 coordinates, got n={n}.")
    gen = make_rng(rng)
    U = np.empty((n_planes, n))
    V = np.empty((n_planes, n))
    for p in range(n_planes):
        q, _ = np.linalg.qr(gen.standard_normal((n, 2)))
        U[p], V[p] = q[:, 0], q[:, 1]
    return U, V


def stokes_prediction(J: np.ndarray, u: np.ndarray, v: np.ndarray, eps: Sequence[float]) -> np.ndarray:
    """``π ε² vᵀ(J − Jᵀ)u`` for each plane ``(u[p], v[p])`` and each ``ε``."""
    A = J - J.T
    curl = np.einsum("pi,ij,pj->p", np.atleast_2d(v), A, np.atleast_2d(u))
    return np.pi * curl[:, None] * np.asarray(eps, dtype=np.float64)[None, :] ** 2


def circulation_test(
    update_map: Any,
    w0: Any,
    *,
    eps: Sequence[float] = DEFAULT_EPS,
    n_points: int = 64,
    n_planes: int = 3,
    planes: tuple[np.ndarray, np.ndarray] | None = None,
    rng: Any = 0,
    jacobian: Any = None,
    metric: np.ndarray | None = None,
    noise_factor: float = DEFAULT_NOISE_FACTOR,
    memory_budget: int | None = None,
) -> CirculationResult:
    """Circulation ``∮ (ĝΔw)·dw`` around circles of radius ``ε`` at ``w0``.

    Parameters
    ----------
    update_map, w0:
        The map and the loop centre.
    eps:
        Radii (ladder).
    n_points:
        Trapezoid points per loop.
    n_planes, planes, rng:
        Random planes (seeded by ``rng``) or explicit ``(U, V)`` arrays of
        shape ``(n_planes, n)`` with orthonormal rows ``u_p ⊥ v_p``.
    jacobian:
        Optional Jacobian ``Q`` at ``w0`` (array or ``JacobianResult``) for the
        Stokes prediction ``π ε² vᵀ(ĝQ − (ĝQ)ᵀ)u``.
    metric:
        Optional constant metric ``ĝ`` (default identity).
    """
    m, w0 = checked_map_point(update_map, w0)
    n = m.n
    eps_arr = np.asarray(eps, dtype=np.float64).ravel()
    if eps_arr.size == 0 or np.any(~np.isfinite(eps_arr)) or np.any(eps_arr <= 0):
        raise AnalysisError(f"eps must be positive finite radii, got {eps_arr.tolist()}.")
    n_points = int(n_points)
    if n_points < 3:
        raise AnalysisError(f"n_points must be ≥ 3, got {n_points}.")
    if planes is None:
        U, V = random_planes(n, int(n_planes), rng)
    else:
        U = np.atleast_2d(np.asarray(planes[0], dtype=np.float64))
        V = np.atleast_2d(np.asarray(planes[1], dtype=np.float64))
        if U.shape != V.shape or U.shape[1] != n:
            raise AnalysisError(f"planes must be two (n_planes, {n}) arrays, got {U.shape} and {V.shape}.")
        gram = np.stack([np.einsum("pi,pi->p", U, U), np.einsum("pi,pi->p", V, V), np.einsum("pi,pi->p", U, V)])
        if not np.allclose(gram, [[1.0], [1.0], [0.0]], atol=1e-10):
            raise AnalysisError("each plane (u, v) must be orthonormal.")
    P = U.shape[0]
    g = None
    if metric is not None:
        g = as_square_matrix(metric, "metric")
        if g.shape[0] != n:
            raise AnalysisError(f"metric must be {n}×{n}, got {g.shape}.")
    check_memory(
        "The circulation test",
        n,
        {f"batched evaluation of {P * n_points + 1} points, input and output": 16 * (P * n_points + 1) * n},
        memory_budget,
    )

    theta = 2.0 * np.pi * np.arange(n_points) / n_points
    c, s = np.cos(theta), np.sin(theta)
    # directions (P, N, n)
    dirs = c[None, :, None] * U[:, None, :] + s[None, :, None] * V[:, None, :]
    tang = -s[None, :, None] * U[:, None, :] + c[None, :, None] * V[:, None, :]
    circ = np.empty((P, eps_arr.size))
    floor = np.empty((P, eps_arr.size))
    weight = 2.0 * np.pi / n_points
    for e_i, e in enumerate(eps_arr):
        pts = w0[None, None, :] + e * dirs
        W = np.concatenate([w0[None, :], pts.reshape(P * n_points, n)])
        F = evaluate_batch(m, W)
        if g is not None:
            F = F @ g.T
        F0 = F[0]
        Fl = F[1:].reshape(P, n_points, n)
        t = e * tang
        circ[:, e_i] = weight * np.einsum("pki,pki->p", Fl - F0, t)
        floor[:, e_i] = ROUNDING_FACTOR * EPS * weight * np.einsum("pki,pki->p", np.abs(Fl), np.abs(t))

    predicted = None
    if jacobian is not None:
        Q = as_square_matrix(jacobian, "jacobian")
        if Q.shape[0] != n:
            raise AnalysisError(f"jacobian must be {n}×{n}, got {Q.shape}.")
        J = Q if g is None else g @ Q
        predicted = stokes_prediction(J, U, V, eps_arr)

    above = np.abs(circ) > noise_factor * floor
    slopes = np.full(P, np.nan)
    for p in range(P):
        sel = above[p]
        if np.sum(sel) >= 2 and np.unique(eps_arr[sel]).size >= 2:
            x = np.log(eps_arr[sel])
            y = np.log(np.abs(circ[p, sel]))
            slopes[p] = np.polyfit(x, y, 1)[0]
    finite = slopes[np.isfinite(slopes)]
    slope = float(np.median(finite)) if finite.size else float("nan")
    is_zero = not bool(np.any(above))
    if is_zero:
        verdict = VERDICT_ZERO if g is None else VERDICT_ZERO_METRIC
    else:
        ratio = float(np.max(np.abs(circ) / np.where(floor > 0, floor, np.finfo(float).tiny)))
        verdict = (VERDICT_NONZERO if g is None else VERDICT_NONZERO_METRIC) + (
            f" (max |C|/floor = {ratio:.3g}, log-log slope {slope:.3g}; 2 expected)"
        )
    return CirculationResult(
        eps=eps_arr,
        u=U,
        v=V,
        n_points=n_points,
        circulation=circ,
        noise_floor=floor,
        predicted=predicted,
        slopes=slopes,
        slope=slope,
        noise_factor=float(noise_factor),
        is_zero=is_zero,
        verdict=verdict,
        metric_used=g is not None,
    )
