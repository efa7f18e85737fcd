"""Feedback into output populations (DESIGN §2 step 4; paper Sec. 3.3).

A feedback kind is a pure function ``fn(states, coded, onehot, xp)``:
``states`` is the list of the output population's ``k`` per-state arrays
``(..., B, n)`` (any leading axes: the simulator's channel-major layout and
the reference step's layout both call it), ``coded``/``onehot`` the targets
``(B, n)`` (:func:`blursim.sim.targets.coded_targets`). It returns the new
list of states; state 0 (the prediction) is never changed. Nothing is written
in place, so the same functions run on NumPy, CuPy and ``jax.numpy``.

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

Feedback = Callable[..., list]

FEEDBACK: Registry[Feedback] = Registry("feedback kind")


@FEEDBACK.register("target")
def target(states, coded, onehot, xp):
    """a^1 <- coded targets; a^c <- 0 for c >= 2 (Sec. 3.3)."""
    a1 = xp.broadcast_to(xp.asarray(coded, dtype=states[1].dtype), states[1].shape)
    return [states[0], a1] + [xp.zeros_like(s) for s in states[2:]]


@FEEDBACK.register("error_mse")
def error_mse(states, coded, onehot, xp):
    """a^1 <- (T - a^0) * a^1: minus the gradient of 1/2 ||a^0 - T||^2 w.r.t. the pre-activation."""
    return [states[0], (coded - states[0]) * states[1]] + list(states[2:])


@FEEDBACK.register("error_softmax")
def error_softmax(states, coded, onehot, xp):
    """a^1 <- onehot(y) - softmax(a^0): minus the gradient of softmax cross-entropy."""
    logits = states[0]
    if logits.shape[-1] == 1:  # logits [0, a]: softmax's class-1 entry is sigmoid(a) = (1 + tanh(a/2))/2
        return [states[0], onehot - 0.5 * (1.0 + xp.tanh(0.5 * logits))] + list(states[2:])
    z = logits - xp.max(xp.real(logits), axis=-1, keepdims=True)
    e = xp.exp(z)
    return [states[0], onehot - e / xp.sum(e, axis=-1, keepdims=True)] + list(states[2:])


def needs(name: str) -> dict[str, Any]:
    """Requirements a feedback kind puts on the network (checked by the validator)."""
    return {"min_k": 2}
