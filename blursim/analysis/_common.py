"""Shared helpers of :mod:`blursim.analysis`: errors, memory guard, JSON.

Nothing here depends on the BLUR simulator; see ``DESIGN.md`` §5.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from blursim.errors import BlursimError

#: Default memory budget (bytes) of one analysis call: 1 GiB.  Every public
#: function takes ``memory_budget=`` to override it.
DEFAULT_MEMORY_BUDGET: int = 1 << 30

#: Unit roundoff of float64.
EPS: float = float(np.finfo(np.float64).eps)

RESTRICT_HINT = (
    "Restrict the analysis to fewer variables, e.g. one projection: "
    "blursim.analysis.restrict_map(update_map, w, blocks=['<projection name>']) "
    "analyses only those synapses with all others held fixed (its Jacobian is the "
    "principal sub-block Q[S, S], so the symmetry condition eq. 10 stays a necessary "
    "condition; a metric search on it only covers metrics that do not couple the "
    "selection to the other synapses). "
    "Or pass a larger memory_budget= (bytes) if the machine has the memory."
)


class AnalysisError(BlursimError, ValueError):
    """Bad input to an analysis routine (wrong shapes, non-finite updates, ...)."""


class MemoryBudgetError(AnalysisError):
    """An analysis would need more memory than its budget allows.

    Attributes ``n``, ``required_bytes`` and ``budget_bytes`` carry the numbers
    that the message states in words.
    """

    def __init__(self, message: str, *, n: int, required_bytes: int, budget_bytes: int):
        self.n = int(n)
        self.required_bytes = int(required_bytes)
        self.budget_bytes = int(budget_bytes)
        super().__init__(message)


def format_bytes(nbytes: float) -> str:
    """Human-readable size, e.g. ``'1.50 GiB (1610612736 bytes)'``."""
    nbytes = float(nbytes)
    units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"]
    value = nbytes
    unit = units[0]
    for u in units[1:]:
        if value < 1024.0:
            break
        value /= 1024.0
        unit = u
    if unit == "bytes":
        return f"{int(nbytes)} bytes"
    return f"{value:.2f} {unit} ({int(nbytes)} bytes)"


def check_memory(what: str, n: int, parts: Mapping[str, float], budget: int | None) -> int:
    """Raise :class:`MemoryBudgetError` if the sum of ``parts`` exceeds ``budget``.

    ``parts`` maps a description of each large array to its size in bytes; the
    message lists them so the user sees what dominates.  Returns the total.
    """
    budget = DEFAULT_MEMORY_BUDGET if budget is None else int(budget)
    total = int(sum(parts.values()))
    if total > budget:
        detail = "; ".join(f"{k}: {format_bytes(v)}" for k, v in parts.items())
        msg = (
            f"{what} for n={n} coordinates would need about {format_bytes(total)} "
            f"({detail}), more than the memory budget of {format_bytes(budget)}. "
            + RESTRICT_HINT
        )
        raise MemoryBudgetError(msg, n=n, required_bytes=total, budget_bytes=budget)
    return total


def as_square_matrix(Q: Any, name: str = "Q") -> np.ndarray:
    """Validate a real square float64 matrix (or a ``JacobianResult``)."""
    Q = getattr(Q, "Q", Q)
    arr = np.asarray(Q)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise AnalysisError(f"{name} must be a square matrix, got shape {arr.shape}.")
    if np.iscomplexobj(arr):
        raise AnalysisError(f"{name} must be real, got dtype {arr.dtype}.")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise AnalysisError(f"{name} contains non-finite entries (NaN or inf).")
    return arr


def json_float(x: Any) -> float | None:
    """A JSON-safe float: non-finite values become ``None``."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def make_rng(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)
