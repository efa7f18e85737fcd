"""Measuring: the machine (:func:`machine_info`) and its load (:func:`machine_load`), the
GEMM roofline (:class:`Roofline`), repeated timing of one call (:func:`time_fn`) and peak
memory (:class:`Peak`)."""

from __future__ import annotations

import os
import platform
import time
import tracemalloc
from typing import Any

import numpy as np

def machine_info(backend) -> dict[str, Any]:
    from blursim.machine import cpu_model, git_commit, usable_cpus

    commit = git_commit()["commit"]
    info = {"cpu": cpu_model(), "cpus": usable_cpus(), "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform(), "backend": backend.name,
            "commit": commit[:7] if commit else None}
    describe = getattr(backend, "describe", None)
    if describe is not None:
        info.update(describe())
    return info


class Roofline:
    """Best float32 square-GEMM rate (GFLOP/s) on a backend, in ``seconds`` of repeats per call.

    ``sizes``: the matrix orders tried (default 2048 and 3072 on the host, 4096 and 8192 on a
    GPU). The operands are made once and kept, so that repeated short measurements (before and
    after every benchmark row) cost their GEMMs, not the setup.
    """

    def __init__(self, backend, sizes: tuple[int, ...] | None = None) -> None:
        self.backend = backend
        self.sizes = tuple(sizes) if sizes else ((2048, 3072) if backend.on_host else (4096, 8192))
        self._ops: dict[int, tuple] = {}

    def _operands(self, n: int):
        ops = self._ops.get(n)
        if ops is None:
            rng = np.random.default_rng(n)
            a = self.backend.asarray(rng.standard_normal((n, n), dtype=np.float32), dtype=np.float32)
            b = self.backend.asarray(rng.standard_normal((n, n), dtype=np.float32), dtype=np.float32)
            ops = self._ops[n] = (a, b, self.backend.xp.matmul(a, b))
        return ops

    def __call__(self, seconds: float = 1.0, sizes: tuple[int, ...] | None = None) -> float:
        xp, best = self.backend.xp, 0.0
        sizes = tuple(sizes) if sizes else self.sizes
        for n in sizes:
            a, b, c = self._operands(n)
            self.backend.synchronize()
            t_end = time.perf_counter() + seconds / len(sizes)
            reps = 0
            while reps < 2 or time.perf_counter() < t_end:
                t0 = time.perf_counter()
                xp.matmul(a, b, out=c)
                self.backend.synchronize()
                best = max(best, 2.0 * n**3 / (time.perf_counter() - t0) / 1e9)
                reps += 1
        return best


def roofline(backend, seconds: float = 1.0, sizes: tuple[int, ...] | None = None) -> float:
    """Best float32 square-GEMM rate (GFLOP/s) on ``backend`` (see :class:`Roofline`)."""
    return Roofline(backend, sizes)(seconds)


def time_fn(fn, backend, min_time: float, min_reps: int = 5, max_reps: int = 200, reset=None,
            reset_every: int = 16) -> list[float]:
    """Seconds of repeated calls of ``fn`` (after one untimed call): at least ``min_reps`` and
    ``min_time`` seconds, at most ``max_reps``; ``reset()`` (untimed) every ``reset_every`` calls."""
    fn()
    backend.synchronize()
    ts: list[float] = []
    t_end = time.perf_counter() + min_time
    while (len(ts) < min_reps or time.perf_counter() < t_end) and len(ts) < max_reps:
        if reset is not None and len(ts) % reset_every == reset_every - 1:
            reset()
        t0 = time.perf_counter()
        fn()
        backend.synchronize()
        ts.append(time.perf_counter() - t0)
    return ts


class Peak:
    """Peak bytes allocated while the body runs (tracemalloc on the host, the memory pool on a GPU)."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.peak = 0

    def __enter__(self):
        if self.backend.on_host:
            tracemalloc.start()
            tracemalloc.reset_peak()
        else:
            pool = self.backend.xp.get_default_memory_pool()
            pool.free_all_blocks()
            self._base = pool.total_bytes()
        return self

    def __exit__(self, *exc):
        if self.backend.on_host:
            self.peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        else:
            self.peak = self.backend.xp.get_default_memory_pool().total_bytes() - self._base
        return False




def load_average() -> float | None:
    """The machine's 1-minute load average, or ``None`` where the platform has none."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


#: A machine counts as loaded when, before the run, its load average exceeded this share of its
#: CPUs, or when the rooflines measured around the rows varied by more than ``SPREAD_LOADED``.
LOAD_LOADED = 0.5
SPREAD_LOADED = 0.25


def machine_load(load_before: float | None, cpus: int, rooflines: list[float]) -> dict[str, Any]:
    """Whether other work shared the machine while the benchmark ran, and by how much.

    ``load_before``: the 1-minute load average just before the benchmark started (other work:
    the benchmark itself then ran nothing); ``rooflines``: the short roofline measurements
    around the rows. ``spread`` is ``1 - min / max`` of those: 0 on a quiet machine, where one
    GEMM rate is as fast as the next. Returns ``{"load_average", "cpus", "roofline_min",
    "roofline_max", "spread", "loaded", "reasons"}``.
    """
    lo, hi = (min(rooflines), max(rooflines)) if rooflines else (None, None)
    spread = 1.0 - lo / hi if rooflines and hi > 0 else None
    reasons = []
    if load_before is not None and load_before > LOAD_LOADED * cpus:
        reasons.append(f"load average {load_before:.1f} on {cpus} CPUs before the run")
    if spread is not None and spread > SPREAD_LOADED:
        reasons.append(f"the rooflines around the rows ranged {lo:.0f}-{hi:.0f} GFLOP/s "
                       f"({100 * spread:.0f} % apart)")
    return {"load_average": load_before, "cpus": cpus, "roofline_min": lo, "roofline_max": hi,
            "spread": spread, "loaded": bool(reasons), "reasons": reasons}
