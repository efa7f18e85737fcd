"""What an output population is told to predict, checked against its size (DESIGN §2 step 4).

Targets are either integer class labels ``y`` of shape ``(B,)`` or real-valued
target vectors of shape ``(B, n)``. An output population of ``n >= 2``
neurons takes labels ``0 .. n - 1`` (one neuron per class); a single output
neuron takes the labels ``0`` and ``1`` (its state is the logit of class 1);
target vectors must have one entry per neuron. Anything else is a
:class:`~blursim.errors.DataError` naming the population, raised before the
step runs (instead of an ``IndexError`` deep inside it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blursim.errors import DataError

__all__ = ["check_targets"]


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
