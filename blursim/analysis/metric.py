"""Constant-metric search of App. A, eq. (11)-(13).

A generalised gradient descent ``Δw = −γ ĝ⁻¹ ∂L/∂w`` (eq. 11) with a
Riemannian metric ``ĝ`` implies ``d(ĝΔw) = 0`` (eq. 12).  For a *constant*
``ĝ`` this is the linear condition (eq. 13)

    Z[ĝ, Q] := ĝQ − (ĝQ)ᵀ = 0          for every Jacobian Q(w) at every state w,

and ``ĝ`` must be symmetric positive definite.  Following App. A:

1. **Null space.**  ``ĝ`` is parametrised by its upper triangle
   (``n(n+1)/2`` unknowns ``x``).  ``Z`` is antisymmetric, so its independent
   equations are the ``n(n−1)/2`` entries ``Z_ab``, ``a < b``, per Jacobian:
   ``Z_ab = Σ_k ĝ_ak Q_kb − Σ_k ĝ_bk Q_ka``.  The systems of the *fit*
   Jacobians (one or several; each divided by ``‖Q‖_F``) are stacked and their
   null space is taken from the SVD: right singular vectors with singular
   value ``≤ null_rtol · σ_max`` (paper footnote 1: ``1e-8``), plus the
   directions beyond the number of rows (a single Q always leaves ``≥ n``).
2. **Validation at other states.**  A candidate with ``‖ĝ‖_F = 1`` passes
   state ``v`` if ``‖Z[ĝ, Q_v]‖_F ≤ thr_v`` with
   ``thr_v = max(val_rtol·‖Q_v‖_F, noise_factor·2·‖E_v‖_F)``; the second term
   covers Jacobian error ``E_v`` since ``‖Z[ĝ, δQ]‖_F ≤ 2‖ĝ‖_2‖δQ‖_F``.
   Two counts are reported: ``basis_survivors``, the number of individual
   null-space basis vectors passing *every* state (what App. A counts: "4 of
   265"), and the basis-independent ``surviving_dim``: the dimension of the
   subspace of the null space on which ``Σ_v (‖Z[ĝ,Q_v]‖_F / thr_v)² ≤ 1``
   (right singular vectors of the stacked, scaled validation system with
   singular value ``≤ 1``).
3. **Positive definiteness.**  Each surviving basis matrix is checked by its
   eigenvalues (up to sign: ``ĝ`` and ``−ĝ`` solve eq. 13 alike).  Because a
   PD metric may be a *combination* of surviving basis matrices, the concave
   function ``λ_min(Σ_k c_k S_k)`` is also maximised over the unit ball
   ``‖c‖ ≤ 1`` by projected subgradient ascent; a positive maximum proves a PD
   solution exists in the surviving span.  The best metric is returned
   normalised to ``trace = n`` (so plain gradient descent gives ``ĝ = I``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._common import AnalysisError, as_square_matrix, check_memory, json_float

PAPER_NULL_RTOL: float = 1e-8
DEFAULT_VAL_RTOL: float = 1e-6
DEFAULT_NOISE_FACTOR: float = 10.0
DEFAULT_PD_RTOL: float = 1e-8


@dataclass
class MetricSearchResult:
    """Result of :func:`metric_search`.

    Attributes
    ----------
    n, n_fit, n_validate:
        Dimension and numbers of fit / validation Jacobians.
    null_rtol:
        Relative singular-value threshold used for the null space.
    null_dim:
        Dimension of the null space of the stacked fit system (eq. 13).
    singular_values:
        Singular values of the stacked fit system, descending (missing ones,
        beyond the number of rows, are not listed).
    basis_survivors:
        How many null-space basis vectors pass every validation state
        individually (App. A's count).
    surviving_dim:
        Dimension of the subspace of solutions passing all validation states.
    surviving:
        ``(surviving_dim, n, n)`` symmetric candidates, orthonormal in the
        Frobenius inner product.
    surviving_residual:
        Per candidate, the worst ``‖Z[ĝ, Q_v]‖_F / thr_v`` over validation
        states (``≤ 1`` passes; empty without validation states).
    candidate_eigs:
        Per candidate, ``(λ_min, λ_max)`` after choosing the sign with
        ``λ_max ≥ |λ_min|``.
    pd_candidates:
        Indices of candidates that are (up to sign) positive definite:
        ``λ_min > pd_rtol · λ_max``.
    best_metric:
        The best PD metric found, normalised to trace ``n``; ``None`` if none.
    best_min_eig_ratio:
        ``λ_min / λ_max`` of the best combination found (positive ⇒ PD).
    pd_found, verdict:
        Decision and sentence.
    """

    n: int
    n_fit: int
    n_validate: int
    null_rtol: float
    val_rtol: float
    null_dim: int
    singular_values: np.ndarray
    basis_survivors: int
    surviving_dim: int
    surviving: np.ndarray
    surviving_residual: np.ndarray
    candidate_eigs: list[tuple[float, float]]
    pd_candidates: list[int]
    best_metric: np.ndarray | None
    best_min_eig_ratio: float | None
    pd_found: bool
    verdict: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "n_fit": self.n_fit,
            "n_validate": self.n_validate,
            "null_rtol": json_float(self.null_rtol),
            "val_rtol": json_float(self.val_rtol),
            "null_dim": self.null_dim,
            "basis_survivors": self.basis_survivors,
            "surviving_dim": self.surviving_dim,
            "surviving_residual": [json_float(x) for x in self.surviving_residual],
            "candidate_eigs": [[json_float(a), json_float(b)] for a, b in self.candidate_eigs],
            "pd_candidates": list(self.pd_candidates),
            "best_min_eig_ratio": json_float(self.best_min_eig_ratio),
            "best_metric": None if self.best_metric is None else [
                [json_float(x) for x in row] for row in self.best_metric
            ],
            "pd_found": bool(self.pd_found),
            "verdict": self.verdict,
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------
# the linear system of eq. (13)
# ---------------------------------------------------------------------------


def _sym_index(n: int) -> np.ndarray:
    """``idx[p, q]`` = column of unknown ``g_{min(p,q), max(p,q)}``."""
    iu, ju = np.triu_indices(n)
    idx = np.empty((n, n), dtype=np.intp)
    idx[iu, ju] = np.arange(iu.size)
    idx[ju, iu] = np.arange(iu.size)
    return idx


def sym_from_vector(x: np.ndarray, n: int) -> np.ndarray:
    """Symmetric matrix whose upper triangle (row-major) is ``x``."""
    iu, ju = np.triu_indices(n)
    g = np.zeros((n, n), dtype=np.float64)
    g[iu, ju] = x
    g[ju, iu] = x
    return g


def eq13_system(Q: np.ndarray) -> np.ndarray:
    """Matrix ``M`` with ``M @ x = [Z_ab]_{a<b}`` for ``ĝ = sym_from_vector(x)``.

    Rows are the pairs ``a < b`` in ``np.triu_indices(n, 1)`` order, columns
    the unknowns ``g_pq, p ≤ q`` in ``np.triu_indices(n)`` order; shape
    ``(n(n−1)/2, n(n+1)/2)``.
    """
    Q = np.asarray(Q, dtype=np.float64)
    n = Q.shape[0]
    a, b = np.triu_indices(n, k=1)
    R = a.size
    C = n * (n + 1) // 2
    idx = _sym_index(n)
    r = np.arange(R)[:, None]
    # Z_ab = Σ_k g_ak Q_kb − Σ_k g_bk Q_ka
    flat1 = (r * C + idx[a, :]).ravel()
    val1 = Q[:, b].T.ravel()
    flat2 = (r * C + idx[b, :]).ravel()
    val2 = -Q[:, a].T.ravel()
    M = np.bincount(
        np.concatenate([flat1, flat2]), weights=np.concatenate([val1, val2]), minlength=R * C
    )
    return M.reshape(R, C)


def eq13_residual(g: np.ndarray, Q: np.ndarray) -> float:
    """``‖ĝQ − (ĝQ)ᵀ‖_F`` (eq. 13)."""
    gQ = np.asarray(g) @ np.asarray(Q)
    return float(np.linalg.norm(gQ - gQ.T))


# ---------------------------------------------------------------------------


def _as_list(items: Any) -> list[Any]:
    if items is None:
        return []
    if isinstance(items, np.ndarray):
        if items.ndim == 2:
            return [items]
        if items.ndim == 3:
            return list(items)
        raise AnalysisError(f"Jacobians must be (n, n) or (m, n, n) arrays, got shape {items.shape}.")
    if hasattr(items, "Q"):
        return [items]
    return list(items)


def _q_and_err(item: Any, n: int | None, what: str) -> tuple[np.ndarray, float]:
    Q = as_square_matrix(item, what)
    if n is not None and Q.shape[0] != n:
        raise AnalysisError(f"{what} has dimension {Q.shape[0]}, expected {n}.")
    E = getattr(item, "error_estimate", None)
    err = float(np.linalg.norm(E)) if E is not None else 0.0
    return Q, err


def _memory(n: int, m_fit: int, m_val: int, budget: int | None) -> None:
    R = n * (n - 1) // 2
    C = n * (n + 1) // 2
    rows = m_fit * R
    check_memory(
        f"The eq. 13 metric search ({m_fit} fit Jacobian(s): {rows} rows × {C} columns)",
        n,
        {
            f"system matrix {rows}×{C} float64": 8 * rows * C,
            "SVD factors": 8 * (rows * min(rows, C) + C * C),
            "null-space basis matrices (worst case n(n+1)/2 of n×n)": 8 * C * n * n,
            f"validation system ({m_val} states, worst case)": 8 * m_val * R * C,
        },
        budget,
    )


def _max_min_eig(S: np.ndarray, iters: int) -> tuple[np.ndarray, float]:
    """Maximise ``λ_min(Σ c_k S_k)`` over ``‖c‖ ≤ 1`` (concave; projected subgradient)."""
    s = S.shape[0]

    def lam(c):
        g = np.tensordot(c, S, axes=1)
        vals, vecs = np.linalg.eigh(0.5 * (g + g.T))
        return vals[0], vecs[:, 0]

    starts = []
    for k in range(s):
        for sign in (1.0, -1.0):
            c = np.zeros(s)
            c[k] = sign
            starts.append(c)
    tr = np.trace(S, axis1=1, axis2=2)
    if np.linalg.norm(tr) > 0:
        starts.append(tr / np.linalg.norm(tr))
    best_c, best_val = None, -np.inf
    for c in starts:
        v, _ = lam(c)
        if v > best_val:
            best_c, best_val = c, v
    c = best_c.copy()
    for t in range(iters if s > 1 else 0):
        _, vec = lam(c)
        grad = np.einsum("i,kij,j->k", vec, S, vec)
        c = c + (0.3 / np.sqrt(t + 1.0)) * grad
        nc = np.linalg.norm(c)
        if nc > 1:
            c /= nc
        v, _ = lam(c)
        if v > best_val:
            best_c, best_val = c.copy(), v
    return best_c, float(best_val)


def metric_search(
    fit: Any,
    validate: Sequence[Any] | None = None,
    *,
    null_rtol: float | str = PAPER_NULL_RTOL,
    val_rtol: float = DEFAULT_VAL_RTOL,
    noise_factor: float = DEFAULT_NOISE_FACTOR,
    pd_rtol: float = DEFAULT_PD_RTOL,
    pd_iters: int = 400,
    memory_budget: int | None = None,
) -> MetricSearchResult:
    """Search a constant metric ``ĝ`` with ``ĝQ − (ĝQ)ᵀ = 0`` (App. A, eq. 13).

    Parameters
    ----------
    fit:
        One Jacobian (``JacobianResult`` or ``(n, n)`` array) or several
        (list, or ``(m, n, n)`` array) whose stacked eq. 13 system gives the
        null space.
    validate:
        Jacobians at other states to check the candidates against.
    null_rtol:
        Singular values ``≤ null_rtol·σ_max`` count as zero (paper: ``1e-8``).
        ``"auto"`` uses ``max(1e-8, 10·max_v ‖E_v‖_F/‖Q_v‖_F)`` over the fit
        Jacobians' error estimates (needed for finite-difference Jacobians).
    val_rtol, noise_factor:
        Validation tolerance ``thr_v`` (see module doc).
    pd_rtol:
        A candidate is PD if ``λ_min > pd_rtol·λ_max``.
    pd_iters:
        Subgradient iterations of the PD search over the surviving span.
    memory_budget:
        Bytes; raises :class:`~blursim.analysis.MemoryBudgetError` beyond it.
    """
    fit_items = _as_list(fit)
    val_items = _as_list(validate)
    if not fit_items:
        raise AnalysisError("metric_search needs at least one fit Jacobian.")
    Q0, _ = _q_and_err(fit_items[0], None, "fit Jacobian 0")
    n = Q0.shape[0]
    _memory(n, len(fit_items), len(val_items), memory_budget)
    fits = [_q_and_err(it, n, f"fit Jacobian {k}") for k, it in enumerate(fit_items)]
    vals = [_q_and_err(it, n, f"validation Jacobian {k}") for k, it in enumerate(val_items)]
    notes: list[str] = []

    if isinstance(null_rtol, str):
        if null_rtol != "auto":
            raise AnalysisError(f"null_rtol must be a number or 'auto', got {null_rtol!r}.")
        rel_errs = [e / np.linalg.norm(Q) for Q, e in fits if np.linalg.norm(Q) > 0]
        null_rtol_f = max(PAPER_NULL_RTOL, 10.0 * max(rel_errs, default=0.0))
        notes.append(f"null_rtol 'auto' = {null_rtol_f:.3g}")
    else:
        null_rtol_f = float(null_rtol)
    if not 0 < null_rtol_f < 1:
        raise AnalysisError(f"null_rtol must lie in (0, 1), got {null_rtol_f}.")

    C = n * (n + 1) // 2
    # 1. null space of the stacked fit system (each block scaled by 1/‖Q‖_F)
    blocks = []
    for Q, _ in fits:
        qn = np.linalg.norm(Q)
        blocks.append(eq13_system(Q) / (qn if qn > 0 else 1.0))
    M = np.vstack(blocks)
    del blocks
    rows = M.shape[0]
    if rows == 0:  # n == 1: every scalar g works
        sv = np.zeros(0)
        null_x = np.eye(C)
    else:
        _, sv, Vt = np.linalg.svd(M, full_matrices=rows < C)
        smax = sv[0] if sv.size else 0.0
        rank = int(np.sum(sv > null_rtol_f * smax)) if smax > 0 else 0
        null_x = Vt[rank:]
    del M
    null_dim = int(null_x.shape[0])
    iu, ju = np.triu_indices(n)

    def to_mats(X: np.ndarray) -> np.ndarray:
        G = np.zeros((X.shape[0], n, n))
        G[:, iu, ju] = X
        G[:, ju, iu] = X
        return G

    if null_dim == 0:
        return MetricSearchResult(
            n=n, n_fit=len(fits), n_validate=len(vals), null_rtol=null_rtol_f, val_rtol=val_rtol,
            null_dim=0, singular_values=sv, basis_survivors=0, surviving_dim=0,
            surviving=np.zeros((0, n, n)), surviving_residual=np.zeros(0), candidate_eigs=[],
            pd_candidates=[], best_metric=None, best_min_eig_ratio=None, pd_found=False,
            verdict="no constant metric: the eq. 13 system of the fit Jacobian(s) has a trivial null space",
            notes=notes,
        )

    G_x = to_mats(null_x)  # basis as returned by the SVD (App. A's basis vectors)
    # orthonormalise in the Frobenius inner product: vec(G_x) = Qr @ Rr
    Qr, Rr = np.linalg.qr(G_x.reshape(null_dim, n * n).T)
    G_o = Qr.T.reshape(null_dim, n, n)
    G_o = 0.5 * (G_o + np.transpose(G_o, (0, 2, 1)))

    # 2. validation
    a, b = np.triu_indices(n, k=1)
    if vals:
        K_blocks = []
        for Qv, ev in vals:
            thr = max(val_rtol * np.linalg.norm(Qv), noise_factor * 2.0 * ev)
            if thr <= 0:
                thr = np.finfo(np.float64).tiny
            Z = G_o @ Qv
            Z = Z - np.transpose(Z, (0, 2, 1))
            K_blocks.append((np.sqrt(2.0) * Z[:, a, b] / thr).T)  # (R, null_dim)
        K = np.stack(K_blocks)  # (m_val, R, null_dim)
        del K_blocks
        # paper-style count: each SVD basis vector individually, unit ‖g‖_F
        per = np.linalg.norm(np.einsum("vrl,lk->vrk", K, Rr), axis=1) / np.linalg.norm(Rr, axis=0)
        basis_survivors = int(np.sum(np.max(per, axis=0) <= 1.0))
        Kf = K.reshape(-1, null_dim)
        _, ks, kVt = np.linalg.svd(Kf, full_matrices=Kf.shape[0] < null_dim)
        ks_full = np.zeros(null_dim)
        ks_full[: ks.size] = ks
        keep = ks_full <= 1.0
        coeffs = kVt[keep]
        surviving = np.tensordot(coeffs, G_o, axes=1)
        surv_res = np.max(np.linalg.norm(np.einsum("vrl,kl->vrk", K, coeffs), axis=1), axis=0) if coeffs.shape[0] else np.zeros(0)
    else:
        basis_survivors = null_dim
        surviving = G_o
        surv_res = np.zeros(0)
        notes.append("no validation Jacobians: every null-space vector counts as surviving")
    surviving = 0.5 * (surviving + np.transpose(surviving, (0, 2, 1)))
    s = int(surviving.shape[0])

    # 3. positive definiteness
    cand_eigs: list[tuple[float, float]] = []
    pd_idx: list[int] = []
    for k in range(s):
        ev = np.linalg.eigvalsh(surviving[k])
        if ev[-1] < abs(ev[0]):
            ev = -ev[::-1]
            surviving[k] = -surviving[k]
        cand_eigs.append((float(ev[0]), float(ev[-1])))
        if ev[-1] > 0 and ev[0] > pd_rtol * ev[-1]:
            pd_idx.append(k)
    best_metric = None
    best_ratio = None
    if s:
        c, _ = _max_min_eig(surviving, pd_iters)
        g = np.tensordot(c, surviving, axes=1)
        g = 0.5 * (g + g.T)
        ev = np.linalg.eigvalsh(g)
        best_ratio = float(ev[0] / ev[-1]) if ev[-1] > 0 else float(ev[0] / max(abs(ev[0]), 1e-300))
        if ev[-1] > 0 and ev[0] > pd_rtol * ev[-1]:
            best_metric = g * (n / np.trace(g))
    pd_found = best_metric is not None

    where = f"at all {len(vals)} validation states" if vals else "for the fit Jacobian(s) only"
    if s == 0:
        verdict = f"no constant metric: no symmetric ĝ satisfies eq. 13 {where}"
    elif pd_found and s == 1:
        verdict = f"constant PD metric found, unique up to scale: eq. 13 holds {where}"
    elif pd_found:
        verdict = f"constant PD metric found in a {s}-dimensional family of solutions of eq. 13 {where}"
    else:
        verdict = (
            f"no positive-definite constant metric: {s} candidate(s) solve eq. 13 {where} but none "
            f"is positive definite (best λ_min/λ_max over the candidate span: {best_ratio:.3g})"
        )
    return MetricSearchResult(
        n=n,
        n_fit=len(fits),
        n_validate=len(vals),
        null_rtol=null_rtol_f,
        val_rtol=float(val_rtol),
        null_dim=null_dim,
        singular_values=sv,
        basis_survivors=basis_survivors,
        surviving_dim=s,
        surviving=surviving,
        surviving_residual=np.asarray(surv_res, dtype=np.float64),
        candidate_eigs=cand_eigs,
        pd_candidates=pd_idx,
        best_metric=best_metric,
        best_min_eig_ratio=best_ratio,
        pd_found=pd_found,
        verdict=verdict,
        notes=notes,
    )
