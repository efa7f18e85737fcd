"""What an output population is told to predict (DESIGN §2 step 4; paper Sec. 3.3).

Targets are either integer class labels ``y`` of shape ``(B,)`` or real-valued
target vectors of shape ``(B, n)``. An output population of ``n >= 2``
neurons takes labels ``0 .. n - 1`` (one neuron per class); a single output
neuron takes the labels ``0`` and ``1`` (its state is the logit of class 1);
target vectors must have one entry per neuron. Anything else is a
:class:`~blursim.errors.DataError` naming the population, raised before the
step runs (instead of an ``IndexError`` deep inside it).

The coding -- :func:`coded_targets`, the one function every implementation of
the step uses -- turns them into what the feedback kinds read: ``coded``
(``target`` and ``error_mse``) and ``onehot`` (``error_softmax``), each
``(B, n)``. Label ``y`` is row ``y`` of the identity, its other entries ``-1``
(``target_coding: "pm1"``) or ``0`` (``"onehot"``); one output neuron codes
label 1 as ``[1]`` and label 0 as ``[-1]`` / ``[0]`` (one-hot ``[1]`` / ``[0]``).
Target vectors are both ``coded`` and ``onehot``: the values themselves.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blursim.errors import DataError

__all__ = ["check_targets", "coded_targets", "target_tables"]


def check_targets(y: Any, n_out: int, population: str, feedback: str | None = None) -> np.ndarray:
    """``y`` as an array, or a DataError if it does not fit an output of ``n_out`` neurons
    (or, with ``feedback`` given, the feedback kind: ``error_softmax`` needs class labels)."""
    y = np.asarray(y)
    where = f"output population {population!r} ({n_out} neuron{'s' if n_out != 1 else ''})"
    if y.ndim == 2:
        if feedback == "error_softmax":
            raise DataError(
                f"feedback 'error_softmax' of {where} needs class labels, not real-valued target "
                'vectors; use "error_mse" or "target" feedback for target vectors.'
            )
        if y.dtype.kind not in "iuf":
            raise DataError(f"target vectors for {where} have dtype {y.dtype}; give numbers.")
        if y.shape[1] != n_out:
            raise DataError(
                f"target vectors of length {y.shape[1]} do not fit {where}; the output needs "
                f"one target entry per neuron ({n_out})."
            )
        return y
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(
            f"targets for {where} must be integer class labels (B,) or real-valued target "
            f"vectors (B, {n_out}), got an array of dtype {y.dtype} and shape {y.shape}."
        )
    top = 1 if n_out == 1 else n_out - 1
    if y.size and (y.min() < 0 or y.max() > top):
        bad = int(y.min()) if y.min() < 0 else int(y.max())
        what = "labels 0 and 1 (its state is the logit of class 1)" if n_out == 1 else f"labels 0..{top}"
        raise DataError(
            f"label {bad} does not fit {where}, which takes {what}; give the output one neuron "
            "per class (or remap the labels)."
        )
    return y


def target_tables(n_out: int, coding: str) -> tuple[np.ndarray, np.ndarray]:
    """The coded and one-hot rows of each label, ``(rows, n_out)`` float64 each.

    ``n_out >= 2``: row ``y`` is the identity's row ``y`` (other entries ``-1`` for
    ``"pm1"``, ``0`` for ``"onehot"``); ``n_out == 1``: rows for labels 0 and 1.
    """
    low = -1.0 if coding == "pm1" else 0.0
    onehot = np.eye(2)[:, 1:] if n_out == 1 else np.eye(n_out)
    return np.where(onehot > 0, 1.0, low), onehot


def coded_targets(
    y: Any, n_out: int, coding: str, *, population: str = "out", feedback: str | None = None,
    xp: Any = np, dtype: Any = None,
) -> tuple[Any, Any]:
    """``(coded, onehot)``, each ``(B, n_out)`` arrays of ``xp`` (``dtype``), for the targets
    ``y`` of output ``population`` -- checked first (:func:`check_targets`)."""
    y = check_targets(y, n_out, population, feedback)
    dtype = dtype or np.float64
    if y.ndim == 2:
        t = xp.asarray(y, dtype=dtype)
        return t, t
    coded, onehot = target_tables(n_out, coding)
    idx = xp.asarray(y.astype(np.int64, copy=False))
    return xp.asarray(coded, dtype=dtype)[idx], xp.asarray(onehot, dtype=dtype)[idx]
