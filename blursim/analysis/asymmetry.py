"""Symmetry test of the update Jacobian: paper Sec. 3.5, eq. (9)-(10), Fig. 2.

If ``Δw = −γ ∂L/∂w`` (eq. 9) then ``Q = ∂Δw/∂w = −γ ∇²L`` is symmetric
(eq. 10).  A Jacobian with ``Q ≠ Qᵀ`` beyond numerical noise therefore proves
that *no* loss has ``Δw`` as its (Euclidean) gradient step.

Noise floor
-----------
Given the elementwise error estimate ``E`` of the Jacobian
(:class:`~blursim.analysis.jacobian.JacobianResult.error_estimate`), the
computed asymmetry ``A = Q − Qᵀ`` differs from the true one by
``δA_ij = δQ_ij − δQ_ji`` with ``|δA_ij| ≤ E_ij + E_ji`` (and ``δA_ii = 0``).
The noise floor is the Frobenius norm of that elementwise bound,

    noise_floor = ‖(E + Eᵀ) with zero diagonal‖_F,

an upper estimate of ‖δA‖_F.  The verdict is "symmetric" when
``‖A‖_F ≤ noise_factor · noise_floor`` (default ``noise_factor = 10``, so an
asymmetry is only claimed when it is an order of magnitude above the
estimated error), otherwise "asymmetric" with ``margin = ‖A‖_F / noise_floor``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._common import AnalysisError, as_square_matrix, json_float

DEFAULT_NOISE_FACTOR: float = 10.0

VERDICT_SYMMETRIC = "symmetric (asymmetry indistinguishable from numerical noise)"
VERDICT_ASYMMETRIC = "asymmetric: not a gradient of any loss (eq. 10 violated)"


@dataclass
class AsymmetryEntry:
    """One entry ``(i, j)``, ``i < j``, of ``|Q − Qᵀ|``."""

    i: int
    j: int
    asymmetry: float  # Q[i, j] − Q[j, i]
    q_ij: float
    q_ji: float
    noise: float  # E[i, j] + E[j, i]
    label_i: str | None = None
    label_j: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "i": self.i,
            "j": self.j,
            "asymmetry": json_float(self.asymmetry),
            "abs_asymmetry": json_float(abs(self.asymmetry)),
            "q_ij": json_float(self.q_ij),
            "q_ji": json_float(self.q_ji),
            "noise": json_float(self.noise),
            "label_i": self.label_i,
            "label_j": self.label_j,
        }


@dataclass
class AsymmetryReport:
    """Result of :func:`asymmetry_report` (see the module doc for the maths).

    Attributes
    ----------
    n:
        Dimension.
    method:
        Jacobian method (``"fd"``, ``"complex"`` or ``"given"``).
    q_fro, asym_fro:
        ``‖Q‖_F`` and ``‖Q − Qᵀ‖_F``.
    rel_asymmetry:
        ``‖Q − Qᵀ‖_F / ‖Q‖_F`` (0 when ``Q = 0``).
    noise_floor:
        ``‖E + Eᵀ‖_F`` (zero diagonal): estimated size of the asymmetry that
        numerical error alone could produce.
    rel_noise_floor:
        ``noise_floor / ‖Q‖_F``.
    noise_factor:
        Multiple of the noise floor below which the verdict is "symmetric".
    margin:
        ``‖Q − Qᵀ‖_F / noise_floor`` (``inf`` if the floor is 0 and the
        asymmetry is not; ``to_dict`` writes ``None`` then).
    is_symmetric, verdict:
        The decision and its sentence.
    top:
        Largest entries of ``|Q − Qᵀ|`` (upper triangle), largest first.
    """

    n: int
    method: str
    q_fro: float
    asym_fro: float
    rel_asymmetry: float
    noise_floor: float
    rel_noise_floor: float
    noise_factor: float
    margin: float
    is_symmetric: bool
    verdict: str
    top: list[AsymmetryEntry] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "method": self.method,
            "q_fro": json_float(self.q_fro),
            "asym_fro": json_float(self.asym_fro),
            "rel_asymmetry": json_float(self.rel_asymmetry),
            "noise_floor": json_float(self.noise_floor),
            "rel_noise_floor": json_float(self.rel_noise_floor),
            "noise_factor": json_float(self.noise_factor),
            "margin": json_float(self.margin),
            "is_symmetric": bool(self.is_symmetric),
            "verdict": self.verdict,
            "top": [e.to_dict() for e in self.top],
        }


def asymmetry_noise_floor(error_estimate: np.ndarray) -> float:
    """``‖E + Eᵀ‖_F`` with the diagonal removed (see module doc)."""
    E = np.abs(np.asarray(error_estimate, dtype=np.float64))
    S = E + E.T
    np.fill_diagonal(S, 0.0)
    return float(np.linalg.norm(S))


def asymmetry_report(
    jac_result: Any,
    labels: list[str] | None = None,
    top: int = 10,
    *,
    error_estimate: np.ndarray | None = None,
    noise_factor: float = DEFAULT_NOISE_FACTOR,
) -> AsymmetryReport:
    """Quantify ``Q − Qᵀ`` and decide whether it exceeds numerical noise (eq. 10).

    ``jac_result`` is a :class:`~blursim.analysis.jacobian.JacobianResult` or a
    plain ``(n, n)`` array; for a plain array pass ``error_estimate=`` (an
    elementwise array or a scalar applied to every entry), else the noise
    floor is 0 and any nonzero asymmetry is reported as such.
    """
    Q = as_square_matrix(jac_result, "Q")
    n = Q.shape[0]
    if error_estimate is None:
        error_estimate = getattr(jac_result, "error_estimate", None)
    if error_estimate is None:
        E = np.zeros_like(Q)
    else:
        E = np.broadcast_to(np.abs(np.asarray(error_estimate, dtype=np.float64)), Q.shape)
    if labels is None:
        labels = getattr(jac_result, "labels", None)
    if labels is not None and len(labels) != n:
        raise AnalysisError(f"labels must have {n} entries, got {len(labels)}.")
    if not noise_factor > 0:
        raise AnalysisError(f"noise_factor must be positive, got {noise_factor}.")
    method = getattr(jac_result, "method", "given")

    A = Q - Q.T
    q_fro = float(np.linalg.norm(Q))
    asym_fro = float(np.linalg.norm(A))
    rel = asym_fro / q_fro if q_fro > 0 else 0.0
    floor = asymmetry_noise_floor(E)
    if floor > 0:
        margin = asym_fro / floor
    else:
        margin = 0.0 if asym_fro == 0 else float("inf")
    is_sym = asym_fro <= noise_factor * floor
    if is_sym:
        verdict = VERDICT_SYMMETRIC + f" (‖Q−Qᵀ‖_F = {margin:.3g} × noise floor ≤ {noise_factor:g})"
    else:
        verdict = VERDICT_ASYMMETRIC + (
            f" (margin: ‖Q−Qᵀ‖_F = {margin:.3g} × noise floor)"
            if np.isfinite(margin)
            else " (noise floor is zero)"
        )

    entries: list[AsymmetryEntry] = []
    if top > 0 and n > 1:
        iu, ju = np.triu_indices(n, k=1)
        vals = np.abs(A[iu, ju])
        k = min(int(top), vals.size)
        order = np.argsort(-vals, kind="stable")[:k]
        for o in order:
            i, j = int(iu[o]), int(ju[o])
            entries.append(
                AsymmetryEntry(
                    i=i,
                    j=j,
                    asymmetry=float(A[i, j]),
                    q_ij=float(Q[i, j]),
                    q_ji=float(Q[j, i]),
                    noise=float(E[i, j] + E[j, i]),
                    label_i=labels[i] if labels else None,
                    label_j=labels[j] if labels else None,
                )
            )
    return AsymmetryReport(
        n=n,
        method=str(method),
        q_fro=q_fro,
        asym_fro=asym_fro,
        rel_asymmetry=rel,
        noise_floor=floor,
        rel_noise_floor=floor / q_fro if q_fro > 0 else 0.0,
        noise_factor=float(noise_factor),
        margin=margin,
        is_symmetric=bool(is_sym),
        verdict=verdict,
        top=entries,
    )
