"""Gradient-descent optimizers as small pure functions with explicit state.

Every optimizer is ``update(params, grads, state, lr, **hyper) -> (params, state)``:
``params`` and ``grads`` are lists of arrays, ``state`` is whatever the
optimizer carries between steps (``None`` before the first step). Inputs are
never modified; new arrays are returned.

- :func:`sgd`: ``w <- w - lr g`` (no state).
- :func:`momentum`: heavy ball, ``v <- beta v + g``, ``w <- w - lr v``
  (``beta`` 0.9); with ``nesterov=True`` the step is ``g + beta v`` (the
  look-ahead form used by PyTorch / Sutskever et al. 2013).
- :func:`adam`: Kingma & Ba (2015) with bias correction:
  ``m <- b1 m + (1-b1) g``, ``v <- b2 v + (1-b2) g^2``,
  ``w <- w - lr m_hat / (sqrt(v_hat) + eps)``, ``m_hat = m / (1-b1^t)``,
  ``v_hat = v / (1-b2^t)``.

:func:`adam_step` is the one NumPy Adam of blursim: :func:`adam` (the baselines) maps it over
the parameter arrays and OpenAI-ES (:mod:`blursim.meta.strategies.openai_es`) applies it to its
mean; the JAX world's Adam is optax's (:mod:`blursim.meta.strategies.gradient`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blursim.errors import SpecError

Params = list[np.ndarray]


def sgd(params: Params, grads: Params, state: Any, lr: float) -> tuple[Params, None]:
    """Plain stochastic gradient descent."""
    return [w - lr * g for w, g in zip(params, grads)], None


def momentum(
    params: Params, grads: Params, state: Params | None, lr: float, beta: float = 0.9,
    nesterov: bool = False,
) -> tuple[Params, Params]:
    """Heavy-ball momentum; ``state`` is the velocity list."""
    vel = state if state is not None else [np.zeros_like(g) for g in grads]
    new_vel = [beta * v + g for v, g in zip(vel, grads)]
    if nesterov:
        steps = [g + beta * v for g, v in zip(grads, new_vel)]
    else:
        steps = new_vel
    return [w - lr * s for w, s in zip(params, steps)], new_vel


@dataclass(frozen=True)
class AdamState:
    """Step count and first / second moment estimates."""

    t: int
    m: Params
    v: Params


def adam_step(
    grad: np.ndarray, m: np.ndarray, v: np.ndarray, t: int, lr: float, beta1: float = 0.9,
    beta2: float = 0.999, eps: float = 1e-8, *, eps_hat: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One Adam step (Kingma & Ba 2015, Algorithm 1) of one array: ``(step, m, v)``, where the
    caller's new value is ``w - step`` and ``t`` (1-based) is this step's count.

    ``m <- b1 m + (1-b1) g`` and ``v <- b2 v + (1-b2) g^2``; the step is
    ``lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)`` (Algorithm 1), or with ``eps_hat`` the
    paper's "more efficient order of computation" (end of its Sec. 2),
    ``lr_t m / (sqrt(v) + eps)`` with ``lr_t = lr sqrt(1-b2^t) / (1-b1^t)``: the same step
    but for where ``eps`` acts (it is then the paper's epsilon-hat). Pure: the inputs are never
    modified.
    """
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    if eps_hat:
        lr_t = lr * np.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
        return lr_t * m / (np.sqrt(v) + eps), m, v
    c1 = 1 - beta1**t
    c2 = 1 - beta2**t
    return lr * (m / c1) / (np.sqrt(v / c2) + eps), m, v


def adam(
    params: Params, grads: Params, state: AdamState | None, lr: float, beta1: float = 0.9,
    beta2: float = 0.999, eps: float = 1e-8,
) -> tuple[Params, AdamState]:
    """Adam with bias-corrected moments (:func:`adam_step` on every parameter array)."""
    if state is None:
        state = AdamState(0, [np.zeros_like(g) for g in grads], [np.zeros_like(g) for g in grads])
    t = state.t + 1
    new, m, v = [], [], []
    for w, g, mi, vi in zip(params, grads, state.m, state.v, strict=True):
        step, mi, vi = adam_step(g, mi, vi, t, lr, beta1, beta2, eps)
        new.append(w - step)
        m.append(mi)
        v.append(vi)
    return new, AdamState(t, m, v)


@dataclass(frozen=True)
class Optimizer:
    """A named optimizer with its hyper-parameters bound (learning rate excluded)."""

    name: str
    update: Callable[..., tuple[Params, Any]]
    hyper: dict = field(default_factory=dict)

    def __call__(self, params: Params, grads: Params, state: Any, lr: float) -> tuple[Params, Any]:
        return self.update(params, grads, state, lr, **self.hyper)

    @property
    def label(self) -> str:
        if self.name == "momentum" and self.hyper.get("nesterov"):
            return "nesterov"
        return self.name


#: optimizer name -> (update function, default hyper-parameters).
OPTIMIZERS: dict[str, tuple[Callable[..., Any], dict]] = {
    "sgd": (sgd, {}),
    "momentum": (momentum, {"beta": 0.9, "nesterov": False}),
    "nesterov": (momentum, {"beta": 0.9, "nesterov": True}),
    "adam": (adam, {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}),
}


def make_optimizer(spec: str | Optimizer, **hyper: Any) -> Optimizer:
    """An :class:`Optimizer` from a name (``sgd``, ``momentum``, ``nesterov``, ``adam``) and options."""
    if isinstance(spec, Optimizer):
        return spec if not hyper else Optimizer(spec.name, spec.update, {**spec.hyper, **hyper})
    if spec not in OPTIMIZERS:
        raise SpecError("unknown optimizer", value=spec, path="optimizer", choices=OPTIMIZERS)
    fn, defaults = OPTIMIZERS[spec]
    unknown = sorted(set(hyper) - set(defaults))
    if unknown:
        raise SpecError(f"optimizer {spec!r} has no option {unknown[0]!r}", path="optimizer",
                        value=unknown[0], choices=defaults)
    name = "momentum" if spec == "nesterov" else spec
    return Optimizer(name, fn, {**defaults, **hyper})


def check_lr(lr: float, path: str = "lr") -> float:
    """A learning rate must be a positive finite number."""
    try:
        v = float(lr)
    except (TypeError, ValueError):
        raise SpecError("the learning rate must be a number", value=lr, path=path) from None
    if not math.isfinite(v) or v <= 0:
        raise SpecError("the learning rate must be positive and finite", value=lr, path=path)
    return v
