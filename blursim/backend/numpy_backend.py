"""NumPy on the CPU: the default backend.

Two things make it fast (see ``docs/benchmarks.md``):

- :meth:`NumpyBackend.gemm` calls BLAS ``?gemm`` directly (through
  :mod:`blursim.backend._cblas`) so that ``alpha`` and ``beta`` fold the
  genome's scalars and the synapse keep gate into the product;
- :attr:`NumpyBackend.workers` threads run independent species side by side
  (NumPy and BLAS release the GIL), with BLAS itself limited to one thread
  meanwhile (:meth:`NumpyBackend.blas_threads`); a single genome's large
  products instead hand their slices to BLAS's own threads in one
  ``?gemm_batch`` call (:meth:`NumpyBackend.parallel_gemm`), every slice a
  single-threaded product, so the bits never depend on the thread count.

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

    @property
    def blas_splits_gemm(self) -> bool:
        """Whether :meth:`parallel_gemm` hands slices to BLAS's own threads (``?gemm_batch``)
        rather than to the caller's thread pool."""
        return self._cblas is not None and np.dtype(self.dtype) in self._cblas.batch

    @contextmanager
    def parallel_gemm(self, pool, n: int):
        """In the body, this thread's large gemms split their slices across ``n`` threads: BLAS's own
        (:attr:`blas_splits_gemm`) or else ``pool``'s, each slice a single-threaded BLAS call, so
        results do not depend on ``n``. ``n <= 1``: this thread's gemms run serially in the body."""
        if self._cblas is None:
            yield
            return
        old = getattr(self._tls, "par", None)
        with self.blas_threads(1):
            if n <= 1:
                self._tls.par = None
            else:
                self._tls.par = (_cblas.BLAS_THREADS if self.blas_splits_gemm else pool, n)
            try:
                yield
            finally:
                self._tls.par = old

    @contextmanager
    def blas_threads(self, n: int | None):
        """Limit BLAS to ``n`` threads in the body (restored afterwards; nests across threads)."""
        if n is None or self._cblas is None:
            yield
            return
        with self._cblas.limit(n):
            yield

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
