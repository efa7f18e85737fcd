"""Metrics of state-0 predictions (DESIGN §2 step 7, §4): accuracy and cross-entropy for class
labels, the mean squared error for real-valued target vectors."""

from __future__ import annotations

import numpy as np


def logits_of(out: np.ndarray) -> np.ndarray:
    """Class logits from an output population's state 0 ``(..., B, n)``.

    A single output neuron predicts class 1 when its state is positive: its
    logits are ``[0, a]`` (softmax of which is ``sigmoid(a)``).
    """
    if out.shape[-1] == 1:
        return np.concatenate([np.zeros_like(out), out], axis=-1)
    return out


def accuracy_and_ce(outputs: list[np.ndarray], y: np.ndarray) -> dict[str, np.ndarray]:
    """Mean over output populations of accuracy and softmax cross-entropy, per (S, R).

    Non-finite predictions count as wrong and give infinite cross-entropy.
    """
    y = np.asarray(y, dtype=np.int64)
    accs, ces = [], []
    for out in outputs:
        z = logits_of(np.asarray(out, dtype=np.float64))
        finite = np.isfinite(z).all(axis=(-1, -2))
        pred = np.argmax(np.where(np.isfinite(z), z, -np.inf), axis=-1)
        acc = (pred == y).mean(axis=-1)
        zmax = np.max(np.where(np.isfinite(z), z, 0.0), axis=-1, keepdims=True)
        with np.errstate(all="ignore"):
            lse = np.log(np.exp(z - zmax).sum(axis=-1)) + zmax[..., 0]
            picked = np.take_along_axis(z, y.reshape((1,) * (z.ndim - 2) + (-1, 1)) * np.ones(z.shape[:-1] + (1,), dtype=np.int64), axis=-1)[..., 0]
            ce = (lse - picked).mean(axis=-1)
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
