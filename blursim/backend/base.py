"""The backend base class: an array module, a dtype, and the few primitives the simulator needs.

Everything here is written against ``self.xp`` only, so it runs unchanged on
NumPy and CuPy; a backend may override a primitive with a faster one (the
NumPy backend calls BLAS directly, see :mod:`blursim.backend._cblas`).

Primitives
----------
``gemm(A, B, C, alpha, beta)``
    Batched ``C[l] <- alpha[l] * A[l] @ B[l] + beta[l] * C[l]`` over the
    leading axes ``l`` of ``C`` (``A`` and ``B`` broadcast), with ``beta = 0``
    meaning "overwrite". ``alpha``/``beta`` are numbers or :class:`Scale`
    objects (one scalar per leading index). Folding the genome's scalar
    factors into ``alpha`` and the synapse keep gate into ``beta`` is what
    makes one BLUR step cost little more than its matrix products.
``matmul_into(A, B, out)``
    ``out[...] = A @ B`` where ``out`` may be a strided view.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np

from blursim.backend.executor import Executor
from blursim.errors import SpecError

DTYPES = {"float32": np.float32, "float64": np.float64, "complex128": np.complex128}


class Scale:
    """One scalar per leading index of a batched product, on the host and on the device.

    ``host`` is a NumPy array whose shape broadcasts against the leading axes
    ``lead`` of the product; ``const`` is a Python number when every entry is
    the same (so ``1`` and ``0`` can be special-cased), else ``None``.
    :meth:`b` returns the device array reshaped to broadcast against an
    array with ``ndim`` axes whose leading axes are ``lead``.
    """

    __slots__ = ("host", "const", "cache", "_dev", "_backend")

    def __init__(self, host: np.ndarray, backend: "Backend") -> None:
        self.host = host
        flat = host.reshape(-1)
        self.const = flat[0].item() if flat.size and bool(np.all(flat == flat[0])) else None
        self._backend = backend
        self._dev = None
        #: Values derived from this scale by its consumers (device reshapes by ``ndim``, BLAS argument
        #: lists, masks times the scale), computed once per scale.
        self.cache: dict[Any, Any] = {}

    def b(self, ndim: int):
        """Device array shaped ``host.shape + (1,) * (ndim - host.ndim)``."""
        d = self.cache.get(ndim)
        if d is None:
            if self._dev is None:
                self._dev = self._backend.asarray(self.host)
            d = self._dev.reshape(self.host.shape + (1,) * (ndim - self.host.ndim))
            self.cache[ndim] = d
        return d

    def __repr__(self) -> str:
        return f"Scale(shape={self.host.shape}, const={self.const})"


def const_value(s) -> Any:
    """The number ``s`` stands for when it is a number or a constant :class:`Scale`, else ``None``."""
    return s.const if isinstance(s, Scale) else s


def scale_inplace(X, s, ndim: int) -> None:
    """``X *= s`` in place (``s`` a number or a :class:`Scale`)."""
    c = const_value(s)
    if c == 1:
        return
    X *= (c if c is not None else s.b(ndim))


def combine(xp, O, T, alpha, beta) -> None:
    """``O <- alpha * T + beta * O`` in place (``beta = 0``: overwrite); ``T`` may broadcast against ``O``."""
    a, b = const_value(alpha), const_value(beta)
    if b == 0:
        if a is None:
            xp.multiply(T, alpha.b(O.ndim), out=O)
        else:
            O[...] = T if a == 1 else T * a
        return
    scale_inplace(O, beta, O.ndim)
    if a == 1:
        O += T
    elif a is not None:
        O += T * a
    else:
        O += T * alpha.b(O.ndim)


class Backend:
    """Base class: an array module ``xp``, a dtype, host transfers and the simulator's primitives."""

    name = "base"
    #: True when the backend's arrays live on the host (NumPy).
    on_host = True

    def __init__(self, dtype: str = "float32") -> None:
        if dtype not in DTYPES:
            raise SpecError("unknown dtype", value=dtype, choices=DTYPES, path="dtype")
        self.dtype_name = dtype
        self.dtype = DTYPES[dtype]

    xp: Any = None

    # ----------------------------------------------------------------- arrays
    def asarray(self, x: Any, dtype: Any = None) -> Any:
        """Host or device data -> a backend array of this backend's dtype (or ``dtype``)."""
        return self.xp.asarray(x, dtype=dtype or self.dtype)

    def to_numpy(self, x: Any) -> np.ndarray:
        """A backend array -> a NumPy array on the host."""
        return np.asarray(x)

    def index(self, idx: np.ndarray) -> Any:
        """A host integer index array -> a backend index array."""
        return self.xp.asarray(idx)

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on the CPU)."""

    def scale(self, host) -> Scale:
        """Per-slice scalars (see :class:`Scale`)."""
        return Scale(np.ascontiguousarray(host), self)

    def as_strided(self, x, shape, strides):
        return self.xp.lib.stride_tricks.as_strided(x, shape=shape, strides=strides)

    # ------------------------------------------------------------- parallelism
    #: Worker threads the simulator may use for independent species (1 = none).
    workers = 1

    def executor(self, workers: int | None = None):
        """How a step's chunks, jobs and buffers run on this backend
        (:class:`~blursim.backend.executor.Executor`: one chunk, jobs in order)."""
        return Executor(self)

    def errstate(self):
        """A context in which floating-point overflow and invalid values pass silently (a genome
        that diverges is a result, checked by :meth:`~blursim.sim.Simulator.is_finite`)."""
        return nullcontext()
    #: Whether :meth:`parallel_gemm` splits products on the library's own threads (not ``pool``).
    blas_splits_gemm = False

    @contextmanager
    def parallel_gemm(self, pool, n: int):
        """Let this thread's products use ``n`` threads of ``pool`` (no-op where unsupported)."""
        yield

    @contextmanager
    def blas_threads(self, n: int | None):
        """Run the body with the BLAS library limited to ``n`` threads (no-op where unsupported)."""
        yield

    # -------------------------------------------------------------- primitives
    def matmul_into(self, A, B, out) -> None:
        """``out[...] = A @ B`` (``out`` may be a strided view)."""
        out[...] = self.xp.matmul(A, B)

    def gemm(self, A, B, C, alpha=1.0, beta=0.0) -> None:
        """Batched ``C <- alpha * A @ B + beta * C`` (``beta = 0``: overwrite, even NaN)."""
        lead = tuple(np.broadcast_shapes(A.shape[:-2], B.shape[:-2]))
        b = const_value(beta)
        if b == 0 and lead == C.shape[:-2]:
            self.matmul_into(A, B, C)
            scale_inplace(C, alpha, C.ndim)
            return
        combine(self.xp, C, self.xp.matmul(A, B), alpha, beta)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dtype={self.dtype_name})"
