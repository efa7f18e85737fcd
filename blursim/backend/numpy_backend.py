"""NumPy on the CPU: the default backend.

Two things make it fast (see ``docs/benchmarks.md``):

- :meth:`NumpyBackend.gemm` calls BLAS ``?gemm`` directly (through
  :mod:`blursim.backend._cblas`) so that ``alpha`` and ``beta`` fold the
  genome's scalars and the synapse keep gate into the product;
- :attr:`NumpyBackend.workers` threads run independent species side by side
  (NumPy and BLAS release the GIL), with BLAS itself limited to one thread
  meanwhile (:meth:`NumpyBackend.blas_threads`).

``NumpyBackend(dtype, fast=False)`` switches both off and runs the generic
code paths that the CuPy backend uses; the tests use it as a stand-in for a
GPU backend.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import numpy as np

from blursim.backend import _cblas
from blursim.backend.base import Backend
from blursim.machine import usable_cpus

_BLAS_LOCK = threading.Lock()
_BLAS_USERS = [0, None]  # active limiters, saved thread count


class NumpyBackend(Backend):
    """NumPy on the CPU.

    ``threads``: worker threads for independent species (default
    ``$BLURSIM_THREADS`` or the number of usable CPUs). ``fast=False``: use
    only the generic primitives (no direct BLAS calls, one thread).
    """

    name = "numpy"
    on_host = True

    def __init__(self, dtype: str = "float32", threads: int | None = None, fast: bool = True) -> None:
        super().__init__(dtype)
        self.xp = np
        self.fast = bool(fast)
        self._cblas = _cblas.load() if self.fast else None
        if threads is None:
            env = os.environ.get("BLURSIM_THREADS")
            threads = int(env) if env else usable_cpus()
        self.workers = max(1, int(threads)) if self.fast else 1
        self._tls = threading.local()

    def as_strided(self, x, shape, strides):
        return np.lib.stride_tricks.as_strided(x, shape=shape, strides=strides, writeable=False)

    def matmul_into(self, A, B, out) -> None:
        if self.fast:
            np.matmul(A, B, out=out)
        else:
            out[...] = np.matmul(A, B)

    def gemm(self, A, B, C, alpha=1.0, beta=0.0) -> None:
        if self._cblas is not None:
            par = getattr(self._tls, "par", None)
            pool, n = par if par is not None else (None, 1)
            if _cblas.call_gemm(self._cblas, A, B, C, alpha, beta, pool, n):
                return
        super().gemm(A, B, C, alpha, beta)

    @contextmanager
    def parallel_gemm(self, pool, n: int):
        """In the body, this thread's gemms split their slices across ``n`` threads of ``pool``
        (BLAS single-threaded meanwhile). Used when one chunk of species is all there is.
        ``n <= 1``: this thread's gemms run serially in the body (restored afterwards)."""
        if self._cblas is None:
            yield
            return
        old = getattr(self._tls, "par", None)
        with self.blas_threads(1):
            self._tls.par = (pool, n) if n > 1 else None
            try:
                yield
            finally:
                self._tls.par = old

    @contextmanager
    def blas_threads(self, n: int | None):
        """Limit BLAS to ``n`` threads in the body (restored afterwards; nests across threads)."""
        cb = self._cblas
        if n is None or cb is None or cb.get_threads() is None:
            yield
            return
        with _BLAS_LOCK:
            if _BLAS_USERS[0] == 0:
                _BLAS_USERS[1] = cb.get_threads()
                cb.set_threads(n)
            _BLAS_USERS[0] += 1
        try:
            yield
        finally:
            with _BLAS_LOCK:
                _BLAS_USERS[0] -= 1
                if _BLAS_USERS[0] == 0 and _BLAS_USERS[1] is not None:
                    cb.set_threads(_BLAS_USERS[1])

    def describe(self) -> dict:
        """BLAS and threading facts for benchmark reports."""
        cfg = {}
        try:
            deps = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
            cfg = {"blas": deps.get("name"), "blas_version": deps.get("version")}
        except Exception:  # pragma: no cover - old NumPy
            pass
        return {
            "numpy": np.__version__, **cfg, "direct_blas": self._cblas is not None,
            "blas_threads": None if self._cblas is None else self._cblas.get_threads(),
            "workers": self.workers,
        }
