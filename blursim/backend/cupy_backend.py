"""CuPy on a CUDA GPU (``pip install 'blursim[gpu]'``).

The simulator code is the same as on NumPy; this backend only says where
arrays live. Products go through the generic primitives of
:class:`~blursim.backend.base.Backend` (``cupy.matmul`` uses cuBLAS).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blursim.backend.base import Backend
from blursim.errors import BackendError


class CupyBackend(Backend):
    """CuPy on a CUDA GPU."""

    name = "cupy"
    on_host = False

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
        if not 0 <= device < n:
            raise BackendError(f"the cupy backend was asked for GPU {device}, but only {n} GPU(s) exist.")
        self.xp = cupy
        self.device = cupy.cuda.Device(device)
        self.device.use()

    def to_numpy(self, x: Any) -> np.ndarray:
        return self.xp.asnumpy(x) if isinstance(x, self.xp.ndarray) else np.asarray(x)

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()

    def describe(self) -> dict:
        cp = self.xp
        props = cp.cuda.runtime.getDeviceProperties(self.device.id)
        name = props.get("name", b"")
        return {
            "cupy": cp.__version__, "device": name.decode() if isinstance(name, bytes) else str(name),
            "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
        }
