"""One factory for every simulation engine: the NumPy/CuPy :class:`~blursim.sim.Simulator` and
the JAX engine (:class:`~blursim.sim.jax_engine.JaxSimulator`).

Call sites that let a user choose where a BLUR step runs (``--backend`` of ``blursim run``,
``evaluate``, ``bench``; ``execution.backend`` of an experiment) build their simulator with
:func:`make_simulator`, so that ``"jax"`` is one more choice beside ``"numpy"`` and ``"cupy"``.
"""

from __future__ import annotations

import os
from typing import Any

#: Every engine a backend name can choose (``--backend``, ``execution.backend``).
ENGINES = ("numpy", "cupy", "jax")


def engine_name(backend: Any = None) -> str | None:
    """The engine a ``backend`` argument names: a name, ``None`` (``$BLURSIM_BACKEND``, default
    ``numpy``), or ``None`` for a :class:`~blursim.backend.Backend` object (NumPy or CuPy)."""
    if backend is None:
        return os.environ.get("BLURSIM_BACKEND", "numpy")
    return backend if isinstance(backend, str) else None


def make_simulator(program: Any, backend: Any = None, dtype: str | None = None, **kw: Any) -> Any:
    """A simulator of ``program``: the JAX engine for ``backend="jax"`` (the optional extra;
    its absence is a one-line :class:`~blursim.errors.BackendError` with the install command),
    else :class:`~blursim.sim.Simulator` on the NumPy or CuPy backend. ``kw``: ``sparse``,
    ``threads`` (accepted by both)."""
    if engine_name(backend) == "jax":
        from blursim.sim.jax_engine import JaxSimulator

        return JaxSimulator(program, dtype, **kw)
    from blursim.sim.simulator import Simulator

    return Simulator(program, backend=backend, dtype=dtype, **kw)
