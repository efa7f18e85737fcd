"""Array backends: where arrays live and which array module computes on them.

The simulator never imports ``numpy`` for its array work; it asks its backend
(``backend.xp`` is ``numpy`` or ``cupy``, and the backend owns the dtype and
the few primitives of :mod:`blursim.backend.base`). Choose one by API
argument (``Simulator(program, backend="cupy")``), the ``--backend`` CLI flag
or the ``BLURSIM_BACKEND`` environment variable (``numpy`` by default); the
dtype likewise by argument, ``--dtype`` or ``BLURSIM_DTYPE``.
"""

from __future__ import annotations

import os

from blursim.backend.base import DTYPES, Backend, Scale
from blursim.backend.cupy_backend import CupyBackend
from blursim.backend.numpy_backend import NumpyBackend
from blursim.errors import SpecError

_DTYPES = DTYPES

BACKENDS = {"numpy": NumpyBackend, "cupy": CupyBackend}

__all__ = ["BACKENDS", "Backend", "CupyBackend", "NumpyBackend", "Scale", "get_backend"]


def get_backend(name: str | Backend | None = None, dtype: str | None = None) -> Backend:
    """A backend by name; ``None`` reads ``BLURSIM_BACKEND`` (default ``numpy``).

    Asking for ``cupy`` without CuPy or without a GPU raises
    :class:`~blursim.errors.BackendError` with what to do about it.
    """
    if isinstance(name, Backend):
        return name
    name = name or os.environ.get("BLURSIM_BACKEND", "numpy")
    if name not in BACKENDS:
        raise SpecError("unknown backend", value=name, choices=BACKENDS, path="backend")
    return BACKENDS[name](dtype or os.environ.get("BLURSIM_DTYPE", "float32"))
