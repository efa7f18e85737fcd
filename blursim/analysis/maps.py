"""Update maps ``Δw(w): R^n -> R^n`` analysed in Sec. 3.5 and App. A.

For a full batch, one training step of a BLUR genome is a deterministic map
from the flattened synapses ``w`` to the update ``Δw`` (paper eq. 9).  The
analyses of this package (Jacobian, symmetry test eq. 10, metric search
eq. 13, circulation) work on *any* such map, given as an :class:`UpdateMap`.

Every algorithm here evaluates maps through :func:`evaluate_batch`, i.e. the
batched form ``batch(W: (m, n)) -> (m, n)``, because the simulator evaluates
many weight vectors at once along its "species" axis.  The default
:meth:`UpdateMap.batch` just loops over rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._common import AnalysisError

Block = tuple[str, int, int]


class UpdateMap:
    """Base class of an update map ``Δw(w)`` on ``R^n``.

    Subclasses set :attr:`n` and implement :meth:`__call__`; they may override
    :meth:`batch` with a vectorised evaluation.

    Attributes
    ----------
    n:
        Number of coordinates (all synapses flattened).
    supports_complex:
        ``True`` if the map accepts complex128 inputs and is real-analytic
        (no ``abs``, ``max``, comparisons or casts to float on the data path),
        so that complex-step derivatives are exact to rounding.
    labels:
        Optional name per coordinate, e.g. ``"proj h->out pre=3 post=0 ch=1"``.
    blocks:
        Optional list of ``(name, start, stop)`` coordinate ranges, one per
        projection (used for plot boundaries and :func:`restrict_map`).
    """

    n: int
    supports_complex: bool = False
    labels: list[str] | None = None
    blocks: list[Block] | None = None

    def __call__(self, w: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def batch(self, W: np.ndarray) -> np.ndarray:
        """Evaluate the map on each row of ``W`` (shape ``(m, n)``)."""
        W = np.asarray(W)
        if W.shape[0] == 0:
            return np.zeros((0, self.n), dtype=W.dtype)
        return np.stack([np.asarray(self(W[k])) for k in range(W.shape[0])])


def _validate_labels_blocks(n: int, labels: Sequence[str] | None, blocks: Sequence[Any] | None):
    if labels is not None:
        labels = [str(x) for x in labels]
        if len(labels) != n:
            raise AnalysisError(f"labels must have one entry per coordinate (n={n}), got {len(labels)}.")
    if blocks is not None:
        out = []
        for b in blocks:
            try:
                name, start, stop = b
                start, stop = int(start), int(stop)
            except (TypeError, ValueError):
                raise AnalysisError(f"each block must be (name, start, stop), got {b!r}.") from None
            if not (0 <= start < stop <= n):
                raise AnalysisError(
                    f"block {name!r} has range [{start}, {stop}) outside [0, {n}) or empty."
                )
            out.append((str(name), start, stop))
        out.sort(key=lambda t: t[1])
        for (n1, _, e1), (n2, s2, _) in zip(out, out[1:]):
            if s2 < e1:
                raise AnalysisError(f"blocks {n1!r} and {n2!r} overlap.")
        blocks = out
    return labels, blocks


class FunctionMap(UpdateMap):
    """Wrap a plain callable as an :class:`UpdateMap`.

    Parameters
    ----------
    fn:
        ``fn(w: (n,)) -> (n,)``.
    n:
        Dimension.
    batch_fn:
        Optional vectorised ``batch_fn(W: (m, n)) -> (m, n)``.
    vectorized:
        If ``True``, ``fn`` itself accepts ``(m, n)`` arrays (rows are points)
        and is used as ``batch_fn``.
    supports_complex, labels, blocks:
        See :class:`UpdateMap`.
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        n: int,
        *,
        batch_fn: Callable[[np.ndarray], np.ndarray] | None = None,
        vectorized: bool = False,
        supports_complex: bool = False,
        labels: Sequence[str] | None = None,
        blocks: Sequence[Any] | None = None,
    ) -> None:
        if not callable(fn):
            raise AnalysisError(f"fn must be callable, got {type(fn).__name__}.")
        n = int(n)
        if n < 1:
            raise AnalysisError(f"n must be a positive integer, got {n}.")
        self.fn = fn
        self.n = n
        self._batch_fn = fn if (vectorized and batch_fn is None) else batch_fn
        self.supports_complex = bool(supports_complex)
        self.labels, self.blocks = _validate_labels_blocks(n, labels, blocks)

    def __call__(self, w: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(w))

    def batch(self, W: np.ndarray) -> np.ndarray:
        if self._batch_fn is not None:
            return np.asarray(self._batch_fn(W))
        return super().batch(W)


def as_update_map(obj: Any, n: int | None = None) -> UpdateMap:
    """Return ``obj`` if it is an :class:`UpdateMap`; wrap a callable given ``n``."""
    if isinstance(obj, UpdateMap):
        return obj
    if hasattr(obj, "n") and hasattr(obj, "batch") and callable(obj):
        return obj  # duck-typed map (protocol)
    if callable(obj):
        if n is None:
            raise AnalysisError(
                "a plain callable needs its dimension: wrap it as FunctionMap(fn, n) "
                "or pass n=."
            )
        return FunctionMap(obj, n)
    raise AnalysisError(f"expected an UpdateMap or a callable, got {type(obj).__name__}.")


def evaluate_batch(update_map: UpdateMap, W: np.ndarray) -> np.ndarray:
    """Evaluate ``update_map.batch(W)`` and check the result.

    Real input gives float64 output; complex input must give complex output
    (a map that silently drops the imaginary part would make complex-step
    derivatives zero).  Non-finite updates raise :class:`AnalysisError`.
    """
    W = np.asarray(W)
    complex_in = np.iscomplexobj(W)
    out = np.asarray(update_map.batch(W))
    m, n = W.shape
    if out.shape != (m, n):
        raise AnalysisError(
            f"update map batch() returned shape {out.shape} for input shape {W.shape}; "
            f"expected {(m, n)}."
        )
    if complex_in:
        if not np.iscomplexobj(out):
            raise AnalysisError(
                "update map declares supports_complex but returned a real array for complex "
                "input (the imaginary part was dropped); set supports_complex=False or use "
                "method='fd'."
            )
        out = out.astype(np.complex128, copy=False)
    else:
        if np.iscomplexobj(out):
            raise AnalysisError("update map returned a complex array for real input.")
        out = out.astype(np.float64, copy=False)
    if not np.all(np.isfinite(out)):
        bad = np.argwhere(~np.isfinite(out))[0]
        raise AnalysisError(
            f"update map returned a non-finite update (first at point {bad[0]}, coordinate "
            f"{bad[1]}); the analysed states or steps leave the map's domain. Use smaller "
            "steps/radii or another state."
        )
    return out


class RestrictedMap(UpdateMap):
    """The map restricted to a subset of coordinates, the others held fixed.

    ``Δw_S(w_S) = Δw(w_full with w_S inserted)[S]``.  Its Jacobian is the
    principal sub-block ``Q[S, S]`` of the full Jacobian, so symmetry (eq. 10)
    remains a necessary condition on it.  Eq. 13 on the sub-block only tests
    metrics that are block-diagonal with respect to ``S`` (a metric coupling
    ``S`` to the other synapses mixes in ``Q[S̄, S]``), so a negative metric
    result for a restricted map does not rule out a metric for the full map.
    """

    def __init__(self, base: UpdateMap, w_full: np.ndarray, indices: np.ndarray) -> None:
        self.base = base
        self.w_full = np.asarray(w_full, dtype=np.float64).copy()
        self.indices = np.asarray(indices, dtype=np.intp)
        self.n = int(self.indices.size)
        self.supports_complex = bool(getattr(base, "supports_complex", False))
        base_labels = getattr(base, "labels", None)
        self.labels = [base_labels[i] for i in self.indices] if base_labels else None
        self.blocks = self._sub_blocks(getattr(base, "blocks", None))

    def _sub_blocks(self, blocks):
        if not blocks:
            return None
        pos = {int(i): k for k, i in enumerate(self.indices)}
        out = []
        for name, start, stop in blocks:
            ks = [pos[i] for i in range(start, stop) if i in pos]
            if ks and ks == list(range(ks[0], ks[-1] + 1)):
                out.append((name, ks[0], ks[-1] + 1))
        return out or None

    def full_point(self, W: np.ndarray) -> np.ndarray:
        W = np.atleast_2d(W)
        dtype = np.result_type(W.dtype, np.float64)
        full = np.broadcast_to(self.w_full, (W.shape[0], self.w_full.size)).astype(dtype)
        full[:, self.indices] = W
        return full

    def __call__(self, w: np.ndarray) -> np.ndarray:
        return self.batch(np.asarray(w)[None, :])[0]

    def batch(self, W: np.ndarray) -> np.ndarray:
        out = np.asarray(self.base.batch(self.full_point(W)))
        return out[:, self.indices]


def restrict_map(
    update_map: UpdateMap,
    w: np.ndarray,
    *,
    indices: Sequence[int] | None = None,
    blocks: Sequence[str] | None = None,
) -> tuple[RestrictedMap, np.ndarray]:
    """Restrict ``update_map`` to some coordinates (by index or block name).

    Returns ``(restricted_map, w_sub)`` where ``w_sub = w[indices]`` is the
    state to analyse the restricted map at.
    """
    w = np.asarray(w, dtype=np.float64)
    n = update_map.n
    if w.shape != (n,):
        raise AnalysisError(f"w must have shape ({n},), got {w.shape}.")
    idx: list[int] = []
    if blocks is not None:
        known = {b[0]: b for b in (getattr(update_map, "blocks", None) or [])}
        for name in blocks:
            if name not in known:
                raise AnalysisError(
                    f"unknown block {name!r}; the map's blocks are: "
                    + (", ".join(sorted(known)) or "(none defined)")
                    + "."
                )
            _, start, stop = known[name]
            idx.extend(range(start, stop))
    if indices is not None:
        idx.extend(int(i) for i in indices)
    if not idx:
        raise AnalysisError("restrict_map needs indices= or blocks= selecting at least one coordinate.")
    arr = np.unique(np.asarray(idx, dtype=np.intp))
    if arr[0] < 0 or arr[-1] >= n:
        raise AnalysisError(f"indices must lie in [0, {n}), got range [{arr[0]}, {arr[-1]}].")
    rm = RestrictedMap(update_map, w, arr)
    return rm, w[arr].copy()
