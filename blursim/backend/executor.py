"""How a step's work runs on a backend: chunks of species, independent jobs, buffers.

The simulator says *what* one BLUR step computes (:mod:`blursim.sim.simulator`);
an executor decides *how* that work runs on its backend, as a Brian2 device
owns how code runs. The simulator hands it:

- the species x replicas of a step, as :class:`Chunk` s: :meth:`Executor.run`
  calls the step's function once per chunk (each chunk's species and replicas
  are independent networks);
- the independent synapse updates of a chunk, as jobs ``(cost, needs, fn)``:
  :meth:`Executor.run_jobs` runs them all (``needs``: what each job reads, so
  that jobs reading the same operands can be kept on one thread);
- requests for scratch buffers: :meth:`Executor.workspace` is the calling
  thread's :class:`Workspace`.

Two executors:

- :class:`Executor` (every backend; CuPy): one chunk, jobs in order, one
  workspace;
- :class:`ThreadedExecutor` (NumPy): species cut into chunks that run in
  worker threads with BLAS single-threaded meanwhile; a single chunk instead
  splits the slices of its large products across threads
  (:meth:`~blursim.backend.numpy_backend.NumpyBackend.parallel_gemm`) and, when
  those go to our own threads, its update jobs too. Every product is a
  single-threaded BLAS computation wherever it runs, so results are
  bit-identical for every thread count (docs/benchmarks.md).
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass


@dataclass
class Chunk:
    """Species ``s0:s1`` and replicas ``r0:r1`` of one step."""

    s0: int
    s1: int
    r0: int
    r1: int


class Workspace:
    """Reusable buffers of one thread, keyed by name and shape."""

    def __init__(self, xp, dtype) -> None:
        self.xp, self.dtype = xp, dtype
        self.bufs: dict = {}

    def get(self, name, shape, zero: bool = False):
        """The buffer ``name`` of this shape (uninitialised unless ``zero``)."""
        key = (name, shape)
        buf = self.bufs.get(key)
        if buf is None:
            if len(self.bufs) > 512:
                self.bufs.clear()
            buf = self.bufs[key] = self.xp.empty(shape, dtype=self.dtype)
        if zero:
            buf.fill(0)
        return buf


class Executor:
    """Runs a step on one thread: one chunk of all species and replicas, jobs in order."""

    def __init__(self, backend, workers: int = 1) -> None:
        self.backend = backend
        self.workers = max(1, int(workers))
        self._tls = threading.local()

    def chunks(self, S: int, R: int, genome_bytes: int) -> list[Chunk]:
        """How ``S`` species x ``R`` replicas are cut (``genome_bytes``: what one genome and replica
        of the step touches)."""
        return [Chunk(0, S, 0, R)]

    def run(self, S: int, R: int, genome_bytes: int, fn) -> None:
        """``fn(chunk)`` for every chunk of ``S`` species x ``R`` replicas."""
        chunks = self.chunks(S, R, genome_bytes)
        with self.backend.blas_threads(1):
            for ch in chunks:
                with self.backend.errstate():
                    fn(ch)

    def run_jobs(self, jobs) -> None:
        """Run independent ``(cost, needs, fn)`` jobs (here: in order)."""
        for _, _, fn in jobs:
            fn()

    def workspace(self) -> Workspace:
        """The calling thread's buffers."""
        ws = getattr(self._tls, "ws", None)
        if ws is None:
            ws = self._tls.ws = Workspace(self.backend.xp, self.backend.dtype)
        return ws


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def thread_pool(n: int) -> ThreadPoolExecutor:
    """The process's pool of ``n`` worker threads (made once, shared by every simulator)."""
    with _POOLS_LOCK:
        p = _POOLS.get(n)
        if p is None:
            p = _POOLS[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="blursim")
        return p


class ThreadedExecutor(Executor):
    """Runs a step on ``workers`` threads (see the module docstring)."""

    #: Working set per chunk: states, mixes and synapses of a chunk stay in cache (paper-es: 2 genomes).
    CHUNK_BYTES = 10 << 20

    def chunks(self, S: int, R: int, genome_bytes: int) -> list[Chunk]:
        """About :data:`CHUNK_BYTES` of species each, at least as many chunks as workers; replicas
        are cut instead when there is one species."""
        w = self.workers
        if w <= 1 or S * R == 1:
            return [Chunk(0, S, 0, R)]
        per = genome_bytes
        target = self.CHUNK_BYTES
        if S >= 2:
            cs = max(1, min(math.ceil(S / w), int(target // max(per * R, 1))))
            return [Chunk(s, min(S, s + cs), 0, R) for s in range(0, S, cs)]
        cs = max(1, min(math.ceil(R / w), int(target // max(per, 1))))
        return [Chunk(0, S, r, min(R, r + cs)) for r in range(0, R, cs)]

    def run(self, S: int, R: int, genome_bytes: int, fn) -> None:
        """``fn(chunk)`` for every chunk, chunks on the worker threads. BLAS is single-threaded
        throughout, so that every product is the same BLAS call whatever the number of threads."""
        chunks = self.chunks(S, R, genome_bytes)
        be = self.backend

        def one(ch):
            with be.errstate():
                fn(ch)

        if len(chunks) == 1:
            if self.workers > 1:  # one chunk: the slices of its large products go to the threads,
                pool = thread_pool(self.workers)  # and so do independent synapse updates (run_jobs) --
                # unless BLAS's own threads take the slices: then the updates run in order, as
                # handing them to our threads costs more than it saves (docs/benchmarks.md)
                self._tls.pool = None if be.blas_splits_gemm else (pool, self.workers)
                try:
                    with be.parallel_gemm(pool, self.workers):
                        one(chunks[0])
                finally:
                    self._tls.pool = None
            else:
                with be.blas_threads(1):
                    one(chunks[0])
            return
        n = min(self.workers, len(chunks))
        with be.blas_threads(1):
            for f in [thread_pool(n).submit(one, ch) for ch in chunks]:
                f.result()

    def run_jobs(self, jobs) -> None:
        """Run independent ``(cost, needs, fn)`` jobs: in order, or, when this step is the only chunk
        and worker threads are free (:meth:`run`), split across them. Each job makes the same BLAS
        calls either way, so results do not depend on the split.

        The split is greedy, longest job first, onto the least loaded thread -- or, among threads
        loaded within half the job's cost of the least, onto the one that already reads most of
        the operands in ``needs`` (so that an operand is computed by one thread, not two)."""
        par = getattr(self._tls, "pool", None)
        if par is None or len(jobs) < 2:
            for _, _, fn in jobs:
                fn()
            return
        pool, n = par
        groups: list[list] = [[] for _ in range(min(n, len(jobs)))]
        load = [0.0] * len(groups)
        reads: list[set] = [set() for _ in groups]
        for cost, needs, fn in sorted(jobs, key=lambda j: -j[0]):
            low = min(load)
            near = [w for w in range(len(groups)) if load[w] <= low + 0.5 * cost]
            w = max(near, key=lambda w: (len(reads[w] & needs), -load[w], -w))
            groups[w].append(fn)
            load[w] += cost
            reads[w] |= needs

        be = self.backend

        def work(group):
            with be.errstate():
                for fn in group:
                    fn()

        futs = [pool.submit(work, grp) for grp in groups[1:]]
        try:
            with be.parallel_gemm(None, 1):
                work(groups[0])
        finally:
            for f in futs:
                f.result()
