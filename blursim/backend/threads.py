"""How many threads BLAS may use: one process-wide limit, for any BLAS that threadpoolctl knows.

The NumPy backend runs independent species in worker threads, each making
single-threaded BLAS calls; while they run, BLAS's own thread pool must not
compete with them for the cores (docs/benchmarks.md: with both at once a step
took up to 1.8 times as long). So the simulator limits BLAS to one thread for
the duration of a step (:meth:`BlasThreads.limit`). The limit is
process-wide, like BLAS's thread count: bodies may nest and run in several
threads at once (two simulators in two threads, a Dask worker); the first to
enter saves the count and sets it, the last to leave restores it.

The count is read and set through `threadpoolctl
<https://github.com/joblib/threadpoolctl>`_, so this works with every BLAS it
knows (OpenBLAS, MKL, BLIS, FlexiBLAS); with a BLAS it does not know (e.g.
Apple's Accelerate, which has no thread control) the limit does nothing. When
the direct BLAS binding of :mod:`blursim.backend._cblas` is loaded it makes the
same library calls without threadpoolctl's Python layers
(:meth:`BlasThreads.accelerate`): only faster, the same effect.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import threadpoolctl


@dataclass
class BlasLibrary:
    """One loaded BLAS library: its file, kind and version, and how to read and set its thread count."""

    path: str
    api: str  # "openblas", "mkl", "blis", "flexiblas", ...
    version: str | None
    get: Callable[[], int | None]
    set: Callable[[int], None]
    via: str = "threadpoolctl"


class BlasThreads:
    """The thread count of every BLAS library in the process, limited by nested bodies.

    ``lock`` guards the count; ``limiters`` is the number of :meth:`limit`
    bodies running now (a caller that changes the count for a moment, such as
    a ``?gemm_batch`` call, checks that it is the only one).
    """

    def __init__(self, libraries: list[BlasLibrary]) -> None:
        self.libraries = list(libraries)
        self.lock = threading.Lock()
        self.limiters = 0
        self._saved: list[int | None] | None = None

    def get(self) -> int | None:
        """The thread count of the first library (``None`` without one)."""
        return self.libraries[0].get() if self.libraries else None

    def _set_all(self, counts) -> None:
        for lib, n in zip(self.libraries, counts):
            if n is not None:
                lib.set(int(n))

    @contextmanager
    def limit(self, n: int):
        """Every BLAS library limited to ``n`` threads in the body (restored afterwards)."""
        if not self.libraries:
            yield
            return
        with self.lock:
            if self.limiters == 0:
                self._saved = [lib.get() for lib in self.libraries]
                self._set_all([n] * len(self.libraries))
            self.limiters += 1
        try:
            yield
        finally:
            with self.lock:
                self.limiters -= 1
                if self.limiters == 0 and self._saved is not None:
                    self._set_all(self._saved)
                    self._saved = None

    def accelerate(self, path: str, getter: Callable[[], int | None], setter: Callable[[int], None],
                   api: str = "openblas", version: str | None = None) -> None:
        """Read and set the library at ``path`` through ``getter``/``setter`` (direct calls into the
        same library functions); a library threadpoolctl did not find is added."""
        with self.lock:
            for lib in self.libraries:
                if _same_file(lib.path, path):
                    lib.get, lib.set, lib.via = getter, setter, "direct"
                    return
            self.libraries.append(BlasLibrary(path, api, version, getter, setter, via="direct"))

    def describe(self) -> list[dict]:
        """Each library: file, kind, version, thread count, and how it is controlled."""
        return [{"library": lib.path, "api": lib.api, "version": lib.version, "threads": lib.get(),
                 "control": lib.via} for lib in self.libraries]


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _through_threadpoolctl(lc) -> BlasLibrary:
    """A library controller of threadpoolctl as a :class:`BlasLibrary`. threadpoolctl lets only one
    Python thread set OpenBLAS's process-wide count (the first that did, until it lets go); we set it
    from whichever thread enters the first limit, always under :attr:`BlasThreads.lock`, so that
    thread takes control first."""
    release = getattr(type(lc), "clear_controlling_thread", None)

    def set_(n: int) -> None:
        if release is not None:
            release(force=True)
        lc.set_num_threads(n)

    return BlasLibrary(path=lc.filepath, api=lc.internal_api, version=lc.version, get=lc.get_num_threads,
                       set=set_)


def from_threadpoolctl() -> BlasThreads:
    """A :class:`BlasThreads` over every BLAS library threadpoolctl finds loaded now."""
    ctl = threadpoolctl.ThreadpoolController().select(user_api="blas")
    return BlasThreads([_through_threadpoolctl(lc) for lc in ctl.lib_controllers])


_PROCESS: list[BlasThreads] = []
_PROCESS_LOCK = threading.Lock()


def blas_threads() -> BlasThreads:
    """The process's :class:`BlasThreads` (NumPy's BLAS among its libraries, since NumPy is
    imported), made once: every limit in the process goes through it."""
    with _PROCESS_LOCK:
        if not _PROCESS:
            _PROCESS.append(from_threadpoolctl())
        return _PROCESS[0]
