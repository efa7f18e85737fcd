"""Accuracy and cross-entropy of state-0 predictions (DESIGN §2 step 7, §4)."""

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
