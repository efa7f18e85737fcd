"""Derivatives of the registered activations, for hand-written backprop.

Each entry maps an activation name (as in :data:`blursim.vocab.activations.ACTIVATIONS`)
to ``d(x, y) -> f'(x)`` where ``x`` is the pre-activation and ``y = f(x)``
(already computed by the forward pass, so most derivatives reuse it). Where a
function has a kink (relu, hard_tanh, ...) we take the one-sided value that
matches the activation's own branch: the branch chosen by ``x > 0`` (or
``|x| < 1``) gets its slope, the other one its own.

An activation registered elsewhere without an entry here makes
:func:`derivative_of` raise a :class:`~blursim.errors.SpecError` that names it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from blursim.errors import SpecError

Derivative = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _sig(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _d_identity(x, y):
    return np.ones_like(x)


def _d_constant(x, y):
    return np.zeros_like(x)


def _d_tanh(x, y):
    return 1.0 - y * y


def _d_tanh_derivative(x, y):
    # y = 1 - t^2  ->  y' = -2 t (1 - t^2)
    t = np.tanh(x)
    return -2.0 * t * y


def _d_sigmoid(x, y):
    return y * (1.0 - y)


def _d_sigmoid_derivative(x, y):
    # y = s (1 - s)  ->  y' = s (1 - s) (1 - 2 s)
    s = _sig(x)
    return y * (1.0 - 2.0 * s)


def _d_relu(x, y):
    return (x > 0).astype(x.dtype)


def _d_relu_tanh(x, y):
    t = np.tanh(x)
    return np.where(x > 0, 1.0 - t * t, 0.0).astype(x.dtype)


def _d_leaky_relu(x, y):
    return np.where(x > 0, 1.0, 0.01).astype(x.dtype)


def _d_softplus(x, y):
    return _sig(x)


def _d_softplus_derivative(x, y):
    return y * (1.0 - y)


def _d_sin(x, y):
    return np.cos(x)


def _d_hard_tanh(x, y):
    return (np.abs(x) <= 1).astype(x.dtype)


#: activation name -> derivative ``d(x, y)``.
DERIVATIVES: dict[str, Derivative] = {
    "identity": _d_identity,
    "one": _d_constant,
    "zero": _d_constant,
    "tanh": _d_tanh,
    "tanh_derivative": _d_tanh_derivative,
    "sigmoid": _d_sigmoid,
    "sigmoid_derivative": _d_sigmoid_derivative,
    "relu": _d_relu,
    "relu_derivative": _d_constant,
    "relu_tanh": _d_relu_tanh,
    "leaky_relu": _d_leaky_relu,
    "softplus": _d_softplus,
    "softplus_derivative": _d_softplus_derivative,
    "sin": _d_sin,
    "hard_tanh": _d_hard_tanh,
}


def derivative_of(name: str, *, path: str | None = None) -> Derivative:
    """The derivative of activation ``name``, or a :class:`SpecError` naming it."""
    try:
        return DERIVATIVES[name]
    except KeyError:
        raise SpecError(
            f"the gradient baselines have no derivative for activation {name!r}",
            path=path, value=name, choices=DERIVATIVES,
            hint="Use one of the listed activations for the baseline network "
                 "(or add its derivative to blursim.baselines.derivatives.DERIVATIVES).",
        ) from None
