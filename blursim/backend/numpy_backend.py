"""NumPy on the CPU: the default backend.

Two things make it fast (see ``docs/benchmarks.md``):

- :attr:`NumpyBackend.workers` threads run independent species side by side
  (NumPy and BLAS release the GIL), with BLAS itself limited to one thread
  meanwhile (:meth:`NumpyBackend.blas_threads`, through threadpoolctl for any
  BLAS: :mod:`blursim.backend.threads`), so every product is a
  single-threaded BLAS computation and the bits never depend on the thread
  count;
- where NumPy bundles a tested OpenBLAS, the direct binding of
  :mod:`blursim.backend._cblas` accelerates it: :meth:`NumpyBackend.gemm`
  calls ``?gemm`` with ``alpha`` and ``beta`` folding the genome's scalars and
  the synapse keep gate into the product, and a single genome's large
  products hand their slices to BLAS's own threads in one ``?gemm_batch``
  call (:meth:`NumpyBackend.parallel_gemm`), each slice a single-threaded
  product. Without it (``blas_binding=False``, ``BLURSIM_CBLAS=0``, or another
  BLAS) products go through ``numpy.matmul``.

``NumpyBackend(dtype, fast=False)`` runs only the generic code paths that the
CuPy backend uses (no direct BLAS calls, one worker thread); the tests use it
as a stand-in for a GPU backend.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import numpy as np

from blursim.backend import _cblas
from blursim.backend.base import Backend
from blursim.backend.executor import ThreadedExecutor
from blursim.backend.threads import blas_threads
from blursim.machine import usable_cpus


class NumpyBackend(Backend):
    """NumPy on the CPU.

    ``threads``: worker threads for independent species (default
    ``$BLURSIM_THREADS`` or the number of usable CPUs). ``fast=False``: use
    only the generic primitives (no direct BLAS calls, one thread).
    ``blas_binding=False``: products through ``numpy.matmul`` even where the
    direct BLAS binding is available (what a NumPy on MKL or Accelerate gets;
    the benchmark compares both).
    """

    name = "numpy"
    on_host = True

    def __init__(self, dtype: str = "float32", threads: int | None = None, fast: bool = True,
                 blas_binding: bool = True) -> None:
        super().__init__(dtype)
        self.xp = np
        self.fast = bool(fast)
        self._cblas = _cblas.load() if self.fast and blas_binding else None
        #: The process's BLAS thread limit (shared by every backend: BLAS's thread count is global).
        self.threads = blas_threads()
        if threads is None:
            env = os.environ.get("BLURSIM_THREADS")
            threads = int(env) if env else usable_cpus()
        self.workers = max(1, int(threads)) if self.fast else 1
        self._tls = threading.local()

    def as_strided(self, x, shape, strides):
        return np.lib.stride_tricks.as_strided(x, shape=shape, strides=strides, writeable=False)

    def executor(self, workers: int | None = None) -> ThreadedExecutor:
        """Species chunks on ``workers`` threads (default :attr:`workers`;
        :class:`~blursim.backend.executor.ThreadedExecutor`)."""
        return ThreadedExecutor(self, self.workers if workers is None else workers)

    def errstate(self):
        return np.errstate(all="ignore")

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
    def fast_transpose(self) -> bool:
        """Whether :meth:`transpose_into` is a BLAS copy (``?omatcopy`` of the direct binding)."""
        return self._cblas is not None and np.dtype(self.dtype) in self._cblas.omatcopy

    def transpose_into(self, X, out) -> None:
        """``out[..., j, i] = X[..., i, j]`` (C-contiguous arrays): ``?omatcopy`` where
        :attr:`fast_transpose`, else NumPy's strided copy (the same bits)."""
        if not (self.fast_transpose and _cblas.call_transpose(self._cblas, X, out)):
            out[...] = X.swapaxes(-1, -2)

    @property
    def blas_splits_gemm(self) -> bool:
        """Whether :meth:`parallel_gemm` hands slices to BLAS's own threads (``?gemm_batch``)
        rather than to the caller's thread pool."""
        return self._cblas is not None and np.dtype(self.dtype) in self._cblas.batch

    @contextmanager
    def parallel_gemm(self, pool, n: int):
        """In the body, BLAS is single-threaded and this thread's large gemms split their slices across
        ``n`` threads: BLAS's own (:attr:`blas_splits_gemm`) or else ``pool``'s, each slice a
        single-threaded BLAS call, so results do not depend on ``n``. ``n <= 1``, or without the
        direct binding: this thread's gemms run serially in the body."""
        old = getattr(self._tls, "par", None)
        with self.blas_threads(1):
            if n <= 1 or self._cblas is None:
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
        if n is None:
            yield
            return
        with self.threads.limit(n):
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
            "blas_binding": _cblas.status() if self.fast else "off: fast=False",
            "blas_threads": self.threads.get(), "blas_libraries": self.threads.describe(),
            "workers": self.workers,
        }
