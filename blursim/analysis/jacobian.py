"""Jacobian ``Q_ij = ∂Δw_i/∂w_j`` of an update map (paper Sec. 3.5, App. A).

Eq. (10) of the paper states that ``Q`` must be symmetric if ``Δw = −γ∇L``
(eq. 9); eq. (13) uses ``Q`` at many states to search for a constant metric.
Both need ``Q`` *with an error estimate*, so that an asymmetry can be told
apart from numerical noise (the paper's Fig. 2 caption estimates its
numerical error to be below ``e^-4``).  Two methods:

``"fd"`` — central finite differences on a ladder of steps
    For each base step ``h`` of the ladder (default ``1e-2, 1e-3, …, 1e-8``)
    coordinate ``j`` is perturbed by ``h_j = h·max(1, |w_j|)`` and

        D(h)[i, j] = (Δw_i(w + h_j e_j) − Δw_i(w − h_j e_j)) / (2 h_j)

    where ``2 h_j`` is taken as the exactly representable difference of the two
    perturbed floats.  All ``2n`` perturbed points of one step are evaluated in
    one batched call.  The error of ``D(h_k)`` is estimated elementwise
    (Richardson-style) by comparing with the next smaller step,

        E_k[i, j] = max(s·|D(h_k) − D(h_{k+1})|[i, j],  ε·(|Δw_i(w+h_j e_j)| + |Δw_i(w−h_j e_j)|) / (2 h_j))

    (ε = float64 unit roundoff, safety factor ``s = FD_SAFETY = 2``).  While
    truncation ``O(h²)`` dominates, ``D(h_{k+1})`` is ``(h_k/h_{k+1})² = 100×``
    more accurate so the difference is the truncation error of ``D(h_k)``
    times ``1 − (h_{k+1}/h_k)²`` (slightly below it: hence ``s``, which also
    covers partial cancellation between the truncation of ``D(h_k)`` and the
    rounding of ``D(h_{k+1})`` near the optimal step); once rounding
    ``O(ε/h)`` dominates, the first term is inflated by the rounding of the
    smaller step, so the estimate errs on the large side.  The second term is
    the rounding floor of the difference quotient itself.  The step with the smallest
    ``‖E_k‖_F`` is chosen (the last step only serves as reference).

``"complex"`` — complex-step differentiation
    ``Q[:, j] = Im Δw(w + i·h·e_j) / h`` with ``h = 1e-30`` (one batched call of
    ``n`` complex points).  For a real-analytic map there is no subtractive
    cancellation and the truncation error is ``O(h²) ≈ 1e-60``: the result is
    exact to rounding.  The stated error model is
    ``E[i, j] = 64·ε·max|Q|`` — a generous multiple of unit roundoff at the
    scale of ``Q`` (the map's internal rounding is invisible to this code).

``JacobianResult.error_estimate`` is always *elementwise* (an ``n×n`` array of
estimated ``|Q_est − Q_true|``); ``error_fro`` is its Frobenius norm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._common import EPS, AnalysisError, MemoryBudgetError, check_memory, json_float
from .maps import UpdateMap, as_update_map, evaluate_batch

DEFAULT_FD_STEPS: tuple[float, ...] = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)
COMPLEX_STEP: float = 1e-30
COMPLEX_ERROR_FACTOR: float = 64.0
#: Safety factor on the step-difference error estimate of the FD ladder (module doc).
FD_SAFETY: float = 2.0

METHODS = ("auto", "fd", "complex")


@dataclass
class JacobianResult:
    """Jacobian ``Q[i, j] = ∂Δw_i/∂w_j`` at ``w`` with its error estimate.

    Attributes
    ----------
    Q:
        ``(n, n)`` float64 Jacobian.
    method:
        ``"fd"`` (central finite differences) or ``"complex"`` (complex step).
    step:
        Base step used (chosen FD step, or ``1e-30`` for complex step).
    error_estimate:
        ``(n, n)`` elementwise estimate of ``|Q − Q_true|`` (see module doc).
    w:
        The state the Jacobian was taken at.
    labels, blocks:
        Coordinate names and projection ranges copied from the map.
    n_evaluations:
        Number of map evaluations (points) used.
    ladder:
        For FD: one ``{"step", "error_fro"}`` entry per step that has a
        smaller reference step.
    notes:
        Human-readable remarks (e.g. a fallback from complex step to FD).
    """

    Q: np.ndarray
    method: str
    step: float
    error_estimate: np.ndarray
    w: np.ndarray
    labels: list[str] | None = None
    blocks: list[tuple[str, int, int]] | None = None
    n_evaluations: int = 0
    ladder: list[dict[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.Q.shape[0])

    @property
    def error_fro(self) -> float:
        """Frobenius norm of the elementwise error estimate."""
        return float(np.linalg.norm(self.error_estimate))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (without the ``n×n`` arrays)."""
        return {
            "n": self.n,
            "method": self.method,
            "step": json_float(self.step),
            "error_fro": json_float(self.error_fro),
            "q_fro": json_float(np.linalg.norm(self.Q)),
            "n_evaluations": int(self.n_evaluations),
            "ladder": [{k: json_float(v) for k, v in d.items()} for d in self.ladder],
            "notes": list(self.notes),
        }


def checked_map_point(update_map: Any, w: Any) -> tuple[UpdateMap, np.ndarray]:
    """``update_map`` as an :class:`UpdateMap` and ``w`` as a real, finite float64 point of its
    dimension; an :class:`AnalysisError` saying what is wrong otherwise."""
    w_arr = np.asarray(w)
    if w_arr.ndim != 1:
        raise AnalysisError(f"w must be a 1-D vector, got shape {w_arr.shape}.")
    m = as_update_map(update_map, n=w_arr.size)
    if w_arr.shape != (m.n,):
        raise AnalysisError(f"w must have shape ({m.n},) to match the map, got {w_arr.shape}.")
    if np.iscomplexobj(w_arr):
        raise AnalysisError("w must be real.")
    w_arr = w_arr.astype(np.float64)
    if not np.all(np.isfinite(w_arr)):
        raise AnalysisError("w contains non-finite entries.")
    return m, w_arr


def _fd_memory(n: int, budget: int | None) -> None:
    b = 8 * n * n
    check_memory(
        "Finite-difference Jacobian",
        n,
        {
            f"batched evaluation of 2n={2 * n} points, input and output": 4 * b,
            "Jacobian, reference and error arrays (6 n×n float64)": 6 * b,
        },
        budget,
    )


def _complex_memory(n: int, budget: int | None) -> None:
    b = 8 * n * n
    check_memory(
        "Complex-step Jacobian",
        n,
        {
            f"batched complex evaluation of n={n} points, input and output": 4 * b,
            "Jacobian and error arrays (2 n×n float64)": 2 * b,
        },
        budget,
    )


def jacobian_fd(
    update_map: Any,
    w: Any,
    *,
    steps: Sequence[float] | None = None,
    memory_budget: int | None = None,
) -> JacobianResult:
    """Central-difference Jacobian with a step chosen from a ladder (see module doc)."""
    m, w = checked_map_point(update_map, w)
    n = m.n
    _fd_memory(n, memory_budget)
    steps_arr = np.asarray(DEFAULT_FD_STEPS if steps is None else steps, dtype=np.float64)
    if steps_arr.ndim != 1 or steps_arr.size < 2 or np.any(~np.isfinite(steps_arr)) or np.any(steps_arr <= 0):
        raise AnalysisError(
            f"steps must be at least two positive finite numbers, got {steps_arr.tolist()}."
        )
    steps_arr = np.sort(steps_arr)[::-1]
    scale = np.maximum(1.0, np.abs(w))
    idx = np.arange(n)

    prev: tuple[np.ndarray, np.ndarray] | None = None
    best: tuple[float, float, np.ndarray, np.ndarray] | None = None  # (err, step, D, E)
    ladder: list[dict[str, float]] = []
    n_eval = 0
    for k, h in enumerate(steps_arr):
        hv = h * scale
        wp = w + hv
        wm = w - hv
        denom = wp - wm  # exactly representable step width
        if np.any(denom <= 0):
            raise AnalysisError(
                f"finite-difference step {h:g} is below float64 resolution at |w|≈{np.max(np.abs(w)):g}; "
                "use larger steps."
            )
        W = np.empty((2 * n, n), dtype=np.float64)
        W[:n] = w
        W[n:] = w
        W[idx, idx] = wp
        W[n + idx, idx] = wm
        F = evaluate_batch(m, W)
        n_eval += 2 * n
        del W
        # D[i, j] = (f_i(w + h e_j) − f_i(w − h e_j)) / denom_j
        D = (F[:n] - F[n:]).T / denom[None, :]
        R = EPS * (np.abs(F[:n]) + np.abs(F[n:])).T / denom[None, :]
        del F
        if prev is not None:
            D_prev, R_prev = prev
            E_prev = np.maximum(FD_SAFETY * np.abs(D_prev - D), R_prev)
            err = float(np.linalg.norm(E_prev))
            ladder.append({"step": float(steps_arr[k - 1]), "error_fro": err})
            if best is None or err < best[0]:
                best = (err, float(steps_arr[k - 1]), D_prev, E_prev)
        prev = (D, R)

    assert best is not None
    _, h_best, Q, E = best
    return JacobianResult(
        Q=Q,
        method="fd",
        step=h_best,
        error_estimate=E,
        w=w,
        labels=list(m.labels) if getattr(m, "labels", None) else None,
        blocks=list(m.blocks) if getattr(m, "blocks", None) else None,
        n_evaluations=n_eval,
        ladder=ladder,
    )


def jacobian_complex(
    update_map: Any,
    w: Any,
    *,
    h: float = COMPLEX_STEP,
    memory_budget: int | None = None,
) -> JacobianResult:
    """Complex-step Jacobian ``Im Δw(w + i h e_j)/h`` (exact to rounding)."""
    m, w = checked_map_point(update_map, w)
    n = m.n
    if not getattr(m, "supports_complex", False):
        raise AnalysisError(
            "complex-step differentiation needs a map with supports_complex=True "
            "(real-analytic and evaluable at complex128 inputs); use method='fd'."
        )
    _complex_memory(n, memory_budget)
    W = np.empty((n, n), dtype=np.complex128)
    W[:] = w
    idx = np.arange(n)
    W[idx, idx] += 1j * h
    F = evaluate_batch(m, W)
    del W
    Q = np.ascontiguousarray(F.imag.T / h)
    scale = float(np.max(np.abs(Q))) if Q.size else 0.0
    E = np.full((n, n), COMPLEX_ERROR_FACTOR * EPS * scale)
    return JacobianResult(
        Q=Q,
        method="complex",
        step=float(h),
        error_estimate=E,
        w=w,
        labels=list(m.labels) if getattr(m, "labels", None) else None,
        blocks=list(m.blocks) if getattr(m, "blocks", None) else None,
        n_evaluations=n,
    )


def jacobian(
    update_map: Any,
    w: Any,
    *,
    method: str = "auto",
    steps: Sequence[float] | None = None,
    memory_budget: int | None = None,
) -> JacobianResult:
    """Jacobian of ``update_map`` at ``w``.

    ``method="auto"`` uses the complex step when the map declares
    ``supports_complex`` (falling back to finite differences, with a note, if
    the complex evaluation fails), else finite differences.  The method used
    is recorded in ``JacobianResult.method``.
    """
    if method not in METHODS:
        raise AnalysisError(f"unknown Jacobian method {method!r}; valid choices: {', '.join(METHODS)}.")
    if method == "fd":
        return jacobian_fd(update_map, w, steps=steps, memory_budget=memory_budget)
    if method == "complex":
        return jacobian_complex(update_map, w, memory_budget=memory_budget)
    m, _ = checked_map_point(update_map, w)
    if getattr(m, "supports_complex", False):
        try:
            return jacobian_complex(m, w, memory_budget=memory_budget)
        except (TypeError, AnalysisError) as exc:
            if isinstance(exc, MemoryBudgetError):
                raise
            res = jacobian_fd(m, w, steps=steps, memory_budget=memory_budget)
            res.notes.append(f"complex step failed ({exc}); fell back to finite differences")
            return res
    return jacobian_fd(m, w, steps=steps, memory_budget=memory_budget)
