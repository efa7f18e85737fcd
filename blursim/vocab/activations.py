"""Activation functions, resolved by name (``blursim list activations``).

Every function maps an array to an array of the same shape through the
backend's array module ``xp``. They are written to be *complex-step safe*:
branches compare the real part only, so evaluating the simulator at
``w + i h v`` gives exact directional derivatives wherever the activation is
analytic (used by :mod:`blursim.analysis`).

Per-state pairs such as ``("sigmoid", "sigmoid_derivative")`` realise the
generalised activation phi of eq. (4): state 0 carries sigma(x), state 1
carries sigma'(x).

:data:`INPLACE` holds in-place versions of the common ones for real dtypes
(the same operations, so the same results, without a new array), which the
simulator uses; complex dtypes always use the registered functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from blursim.errors import SpecError
from blursim.registry import Registry

Activation = Callable[[Any, Any], Any]

ACTIVATIONS: Registry[Activation] = Registry("activation")


def _pos(x, xp):
    return xp.real(x) > 0


@ACTIVATIONS.register("identity")
def identity(x, xp):
    """x."""
    return x


@ACTIVATIONS.register("one")
def one(x, xp):
    """The constant 1 (the derivative of identity)."""
    return xp.ones_like(x)


@ACTIVATIONS.register("zero")
def zero(x, xp):
    """The constant 0."""
    return xp.zeros_like(x)


@ACTIVATIONS.register("tanh")
def tanh(x, xp):
    """tanh(x)."""
    return xp.tanh(x)


@ACTIVATIONS.register("tanh_derivative")
def tanh_derivative(x, xp):
    """1 - tanh(x)^2."""
    t = xp.tanh(x)
    return 1 - t * t


@ACTIVATIONS.register("sigmoid")
def sigmoid(x, xp):
    """1 / (1 + exp(-x))."""
    return 0.5 * (1 + xp.tanh(0.5 * x))


@ACTIVATIONS.register("sigmoid_derivative")
def sigmoid_derivative(x, xp):
    """sigmoid(x) * (1 - sigmoid(x))."""
    s = 0.5 * (1 + xp.tanh(0.5 * x))
    return s * (1 - s)


@ACTIVATIONS.register("relu")
def relu(x, xp):
    """max(x, 0)."""
    return xp.where(_pos(x, xp), x, 0)


@ACTIVATIONS.register("relu_derivative")
def relu_derivative(x, xp):
    """1 where x > 0, else 0 (the step function)."""
    return xp.where(_pos(x, xp), 1, 0).astype(x.dtype)


@ACTIVATIONS.register("relu_tanh")
def relu_tanh(x, xp):
    """relu(tanh(x)): the paper's default hidden non-linearity (relu o tanh)."""
    return xp.where(_pos(x, xp), xp.tanh(x), 0)


@ACTIVATIONS.register("leaky_relu")
def leaky_relu(x, xp):
    """x for x > 0, 0.01 x otherwise."""
    return xp.where(_pos(x, xp), x, 0.01 * x)


@ACTIVATIONS.register("softplus")
def softplus(x, xp):
    """log(1 + exp(x)), computed stably."""
    r = xp.real(x)
    # log(1 + e^x) = max(x, 0) + log(1 + e^-|x|), with |x| taken on the real part.
    return xp.where(r > 0, x, 0) + xp.log1p(xp.exp(xp.where(r > 0, -x, x)))


@ACTIVATIONS.register("softplus_derivative")
def softplus_derivative(x, xp):
    """sigmoid(x)."""
    return 0.5 * (1 + xp.tanh(0.5 * x))


@ACTIVATIONS.register("sin")
def sin(x, xp):
    """sin(x)."""
    return xp.sin(x)


@ACTIVATIONS.register("hard_tanh")
def hard_tanh(x, xp):
    """x clipped to [-1, 1]."""
    r = xp.real(x)
    return xp.where(r > 1, 1, xp.where(r < -1, -1, x)).astype(x.dtype)


def resolve(spec: str | list[str], k: int, *, path: str) -> list[Activation]:
    """A list of ``k`` activation functions from a spec field (one name or ``k`` names)."""
    if isinstance(spec, str):
        return [ACTIVATIONS.get(spec, path=path)] * k
    if len(spec) != k:
        raise SpecError(
            f"a per-state activation list needs one name per state (k={k}), got {len(spec)}",
            path=path,
            value=spec,
        )
    return [ACTIVATIONS.get(name, path=f"{path}[{c}]") for c, name in enumerate(spec)]


# ------------------------------------------------------------- in place (real dtypes)
_ZEROS: dict = {}


def _zeros(x, xp):
    """A read-only array of zeros shaped like ``x`` (NumPy's ``fmax`` runs twice as fast against an
    array as against a broadcast scalar); the scalar 0 elsewhere."""
    if xp is not np:
        return 0
    key = (x.shape, x.dtype)
    z = _ZEROS.get(key)
    if z is None:
        if len(_ZEROS) > 64:
            _ZEROS.clear()
        z = np.zeros(x.shape, x.dtype)
        z.flags.writeable = False
        _ZEROS[key] = z
    return z


def _tanh_derivative_inplace(x, xp):
    xp.tanh(x, out=x)
    xp.multiply(x, x, out=x)
    xp.subtract(1, x, out=x)


def _sigmoid_inplace(x, xp):
    x *= 0.5
    xp.tanh(x, out=x)
    x += 1
    x *= 0.5


def _relu_inplace(x, xp):
    xp.fmax(x, _zeros(x, xp), out=x)  # NaN -> 0, as where(x > 0, x, 0)


def _relu_tanh_inplace(x, xp):
    _relu_inplace(x, xp)
    xp.tanh(x, out=x)


#: ``name -> f(x, xp)`` overwriting a real array ``x`` with the activation ``name`` of it.
INPLACE: dict[str, Callable[[Any, Any], None]] = {
    "identity": lambda x, xp: None,
    "tanh": lambda x, xp: xp.tanh(x, out=x),
    "tanh_derivative": _tanh_derivative_inplace,
    "sigmoid": _sigmoid_inplace,
    "relu": _relu_inplace,
    "relu_tanh": _relu_tanh_inplace,
    "relu_derivative": lambda x, xp: xp.greater(x, _zeros(x, xp), out=x),
    "one": lambda x, xp: x.fill(1),
    "zero": lambda x, xp: x.fill(0),
    "sin": lambda x, xp: xp.sin(x, out=x),
}
