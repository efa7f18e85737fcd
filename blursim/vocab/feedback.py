"""Feedback into output populations (DESIGN §2 step 4; paper Sec. 3.3).

A feedback function receives the output population's states in the
simulator's internal layout ``(S, R, k, B, n)`` and overwrites them in place.
State 0 (the prediction) is never changed.

- ``target`` (paper default): state 1 <- coded targets (+1 true class, -1 or 0
  otherwise), states >= 2 <- 0.
- ``error_mse``: state 1 <- (T - a^0) * a^1, the negative gradient of
  1/2 ||a^0 - T||^2 through the per-state activation.
- ``error_softmax``: state 1 <- onehot(y) - softmax(a^0) over the neurons; for a
  single output neuron, whose logits are ``[0, a^0]`` (the evaluation's
  convention), this is logistic cross-entropy: state 1 <- t - sigmoid(a^0) with
  ``t = 1`` for label 1 and ``0`` otherwise.

With real-valued target vectors (a regression task) ``coded`` *is* the given
vectors, so ``target`` writes them and ``error_mse`` pulls state 0 towards them;
``error_softmax`` needs class labels (checked before the step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from blursim.registry import Registry

Feedback = Callable[..., None]

FEEDBACK: Registry[Feedback] = Registry("feedback kind")


@FEEDBACK.register("target")
def target(a, coded, onehot, xp):
    """a^1 <- coded targets; a^c <- 0 for c >= 2 (Sec. 3.3)."""
    a[:, :, 1] = coded
    if a.shape[2] > 2:
        a[:, :, 2:] = 0


@FEEDBACK.register("error_mse")
def error_mse(a, coded, onehot, xp):
    """a^1 <- (T - a^0) * a^1: minus the gradient of 1/2 ||a^0 - T||^2 w.r.t. the pre-activation."""
    a[:, :, 1] = (coded - a[:, :, 0]) * a[:, :, 1]


@FEEDBACK.register("error_softmax")
def error_softmax(a, coded, onehot, xp):
    """a^1 <- onehot(y) - softmax(a^0): minus the gradient of softmax cross-entropy."""
    logits = a[:, :, 0]
    if logits.shape[-1] == 1:  # logits [0, a]: softmax's class-1 entry is sigmoid(a) = (1 + tanh(a/2))/2
        a[:, :, 1] = onehot - 0.5 * (1.0 + xp.tanh(0.5 * logits))
        return
    z = logits - xp.max(xp.real(logits), axis=-1, keepdims=True)
    e = xp.exp(z)
    a[:, :, 1] = onehot - e / xp.sum(e, axis=-1, keepdims=True)


def needs(name: str) -> dict[str, Any]:
    """Requirements a feedback kind puts on the network (checked by the validator)."""
    return {"min_k": 2}
