"""Metrics of state-0 predictions (DESIGN §2 step 7, §4): accuracy and cross-entropy for class
labels, the mean squared error for real-valued target vectors."""

from __future__ import annotations

import numpy as np


def logits_of(out, xp=np):
    """Class logits from an output population's state 0 ``(..., B, n)``.

    A single output neuron predicts class 1 when its state is positive: its
    logits are ``[0, a]`` (softmax of which is ``sigmoid(a)``). ``xp``: the
    array module (NumPy, ``jax.numpy``).
    """
    if out.shape[-1] == 1:
        return xp.concatenate([xp.zeros_like(out), out], axis=-1)
    return out


def softmax_cross_entropy(z, y, xp=np):
    """Per-example softmax cross-entropy ``logsumexp(z) - z_y`` of logits ``z (..., B, C)`` for
    labels ``y (B,)``: the paper's meta-loss (Sec. 3.3) before averaging.

    Written once for every array module: NumPy (float and complex128), ``jax.numpy`` (traced
    and differentiated by :mod:`blursim.meta.objective`). Complex-step safe: the shift that
    keeps ``exp`` in range is the largest *real part* (a constant; the result does not depend on
    it), so a complex ``z`` gives the analytic continuation. Non-finite logits give a
    non-finite result (callers mask them).
    """
    r = xp.real(z)
    zmax = xp.max(xp.where(xp.isfinite(r), r, 0.0), axis=-1, keepdims=True)
    lse = xp.log(xp.exp(z - zmax).sum(axis=-1)) + zmax[..., 0]
    idx = xp.broadcast_to(xp.reshape(y, (1,) * (z.ndim - 2) + (-1, 1)), z.shape[:-1] + (1,))
    return lse - xp.take_along_axis(z, idx, axis=-1)[..., 0]


def predicted_class(z, xp=np):
    """Argmax over classes of logits ``z (..., B, C)``; non-finite logits never win."""
    r = xp.real(z)
    return xp.argmax(xp.where(xp.isfinite(r), r, -xp.inf), axis=-1)


def accuracy_and_ce(outputs: list[np.ndarray], y: np.ndarray) -> dict[str, np.ndarray]:
    """Mean over output populations of accuracy and softmax cross-entropy, per (S, R).

    Non-finite predictions count as wrong and give infinite cross-entropy.
    """
    y = np.asarray(y, dtype=np.int64)
    accs, ces = [], []
    for out in outputs:
        z = logits_of(np.asarray(out, dtype=np.float64))
        finite = np.isfinite(z).all(axis=(-1, -2))
        acc = (predicted_class(z) == y).mean(axis=-1)
        with np.errstate(all="ignore"):
            ce = softmax_cross_entropy(z, y).mean(axis=-1)
        accs.append(np.where(finite, acc, 0.0))
        ces.append(np.where(finite & np.isfinite(ce), ce, np.inf))
    return {"accuracy": np.mean(accs, axis=0), "cross_entropy": np.mean(ces, axis=0)}


def mean_squared_error(outputs: list[np.ndarray], targets: np.ndarray) -> np.ndarray:
    """Mean over output populations of the mean squared error of state 0, per (S, R).

    ``targets`` are real-valued target vectors ``(B, n)``; the error of one
    output population is the mean over the batch and its ``n`` neurons of
    ``(a^0 - T)^2``. Non-finite predictions give an infinite error.
    """
    t = np.asarray(targets, dtype=np.float64)
    errs = []
    for out in outputs:
        a = np.asarray(out, dtype=np.float64)
        with np.errstate(all="ignore"):
            e = ((a - t) ** 2).mean(axis=(-1, -2))
        errs.append(np.where(np.isfinite(e), e, np.inf))
    return np.mean(errs, axis=0)


def task_metrics(outputs: list[np.ndarray], y: np.ndarray) -> dict[str, np.ndarray]:
    """The metrics of a batch, per (S, R): ``accuracy`` and ``cross_entropy`` for class
    labels ``y`` ``(B,)``, ``mse`` for real-valued target vectors ``y`` ``(B, n)``."""
    y = np.asarray(y)
    if y.ndim == 2:
        return {"mse": mean_squared_error(outputs, y)}
    return accuracy_and_ce(outputs, y)
