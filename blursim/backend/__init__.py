"""Array backends: where arrays live and which array module computes on them.

The simulator never imports ``numpy`` for its array work; it asks its backend
(``backend.xp`` is ``numpy`` or ``cupy``, and the backend owns the dtype).
Choose one by API argument, the ``--backend`` CLI flag or the
``BLURSIM_BACKEND`` environment variable (``numpy`` by default).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from blursim.errors import BackendError, SpecError

_DTYPES = {"float32": np.float32, "float64": np.float64, "complex128": np.complex128}


class Backend:
    """Base class: an array module ``xp``, a dtype, and host transfers."""

    name = "base"

    def __init__(self, dtype: str = "float32") -> None:
        if dtype not in _DTYPES:
            raise SpecError("unknown dtype", value=dtype, choices=_DTYPES, path="dtype")
        self.dtype_name = dtype
        self.dtype = _DTYPES[dtype]

    xp: Any = None

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        """Host or device data -> a backend array of this backend's dtype (or ``dtype``)."""
        return self.xp.asarray(x, dtype=dtype or self.dtype)

    def to_numpy(self, x: Any) -> np.ndarray:
        """A backend array -> a NumPy array on the host."""
        return np.asarray(x)

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on the CPU)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dtype={self.dtype_name})"


class NumpyBackend(Backend):
    """NumPy on the CPU."""

    name = "numpy"

    def __init__(self, dtype: str = "float32") -> None:
        super().__init__(dtype)
        self.xp = np


class CupyBackend(Backend):
    """CuPy on a CUDA GPU (``pip install blursim[gpu]``)."""

    name = "cupy"

    def __init__(self, dtype: str = "float32", device: int = 0) -> None:
        super().__init__(dtype)
        try:
            import cupy
        except ImportError as e:
            raise BackendError(
                "the cupy backend was requested but CuPy is not installed "
                f"({e}). Install it with: pip install 'blursim[gpu]' (needs a CUDA GPU), "
                "or use --backend numpy."
            ) from None
        try:
            n = cupy.cuda.runtime.getDeviceCount()
        except Exception as e:  # CUDA driver missing or broken
            raise BackendError(
                f"the cupy backend was requested but no CUDA GPU is usable ({e}). "
                "Use --backend numpy, or run on a machine with an NVIDIA GPU and driver."
            ) from None
        if n < 1:
            raise BackendError("the cupy backend was requested but no CUDA GPU was found; use --backend numpy.")
        self.xp = cupy
        self.device = cupy.cuda.Device(device)
        self.device.use()

    def to_numpy(self, x: Any) -> np.ndarray:
        return self.xp.asnumpy(x) if isinstance(x, self.xp.ndarray) else np.asarray(x)

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()


BACKENDS = {"numpy": NumpyBackend, "cupy": CupyBackend}


def get_backend(name: str | Backend | None = None, dtype: str | None = None) -> Backend:
    """A backend by name; ``None`` reads ``BLURSIM_BACKEND`` (default ``numpy``)."""
    if isinstance(name, Backend):
        return name
    name = name or os.environ.get("BLURSIM_BACKEND", "numpy")
    if name not in BACKENDS:
        raise SpecError("unknown backend", value=name, choices=BACKENDS, path="backend")
    return BACKENDS[name](dtype or os.environ.get("BLURSIM_DTYPE", "float32"))
