"""Direct calls into the BLAS library that NumPy itself uses (``?gemm`` with ``alpha``/``beta``).

An accelerator, never a requirement: without it the NumPy backend computes the
same step with ``numpy.matmul`` and limits BLAS's threads through threadpoolctl
(:mod:`blursim.backend.threads`). What it buys is measured in every benchmark
run (``docs/benchmarks.md``, the ``no BLAS binding`` rows).

``numpy.matmul`` has no ``beta``: ``W <- f W + H`` costs a product into a
temporary and two more passes over ``W``. BLAS ``gemm`` does it in one go,
and ``ctypes`` releases the GIL during the call, so worker threads run
products in parallel. We look the ``cblas_?gemm`` symbols up in the OpenBLAS
that NumPy wheels bundle (``numpy.libs``). :func:`load` returns ``None`` --
the binding stays off, and :func:`status` says why -- when they are not there
(NumPy built against MKL, Accelerate or another BLAS), when NumPy or its
OpenBLAS is outside the versions the binding has been tested with
(:data:`TESTED_NUMPY`, :data:`TESTED_OPENBLAS`), or when the self-test fails.
``BLURSIM_CBLAS=0`` turns it off; ``BLURSIM_CBLAS=force`` turns it on outside
the tested versions (the self-tests still run).

One genome alone (a single chunk of species) leaves the second CPU idle
between products. Handing slices to our own Python threads costs 40-200 us
per hand-off on a VM whose idle vCPU halts, so when the library has
``cblas_?gemm_batch`` (OpenBLAS >= 0.3.29) the slices of a large product go to
BLAS's own threads, which spin between calls: each matrix of a batch is
computed by one thread through the same level-3 driver as a single-threaded
``cblas_?gemm`` call, so the bits do not change (checked at load,
:func:`_batch_self_test`).
"""

from __future__ import annotations

import ctypes
import glob
import os
import re
import time

import numpy as np

from blursim.backend.threads import blas_threads

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

#: NumPy (major.minor) and bundled OpenBLAS versions the binding has been tested with, inclusive:
#: the backend, block-sparse, backprop-identity and property tests pass with each NumPy wheel in
#: this range and the OpenBLAS it bundles (1.26.4/0.3.23, 2.0.2 and 2.1.3/0.3.27, 2.2.6/0.3.29,
#: 2.3.5/0.3.30, 2.4.6/0.3.31; docs/benchmarks.md). ``?gemm_batch`` exists from OpenBLAS 0.3.29.
TESTED_NUMPY = ((1, 26), (2, 4))
TESTED_OPENBLAS = ((0, 3, 23), (0, 3, 31))

# (symbol prefix, symbol suffix, integer type): OpenBLAS builds whose integer
# width is certain from the symbol names.
_VARIANTS = (
    ("scipy_", "64_", ctypes.c_int64),  # scipy-openblas64 (NumPy >= 2 wheels)
    ("", "64_", ctypes.c_int64),
    ("scipy_", "", ctypes.c_int32),  # scipy-openblas32
)


def _version(text: str | None) -> tuple[int, ...] | None:
    """``"2.4.6"`` -> ``(2, 4, 6)``; ``"0.3.23.dev"`` -> ``(0, 3, 23)``; ``None`` if no number leads."""
    m = re.match(r"\s*(\d+(?:\.\d+)*)", text or "")
    return tuple(int(x) for x in m.group(1).split(".")) if m else None


def _within(v: tuple[int, ...] | None, rng: tuple[tuple[int, ...], tuple[int, ...]]) -> bool:
    if v is None:
        return False
    lo, hi = rng
    return lo <= v[: len(lo)] and v[: len(hi)] <= hi


class CBlas:
    """``gemm`` for float32/float64/complex128 and OpenBLAS's thread count, called directly."""

    def __init__(self, lib: ctypes.CDLL, prefix: str, suffix: str, int_t, path: str) -> None:
        self.path = path
        P = ctypes.c_void_p
        E = ctypes.c_int
        self.gemm = {}
        for dt, letter, scal in ((np.float32, "s", ctypes.c_float), (np.float64, "d", ctypes.c_double),
                                 (np.complex128, "z", ctypes.c_void_p)):
            fn = getattr(lib, f"{prefix}cblas_{letter}gemm{suffix}")
            fn.argtypes = [E, E, E, int_t, int_t, int_t, scal, P, int_t, P, int_t, scal, P, int_t]
            fn.restype = None
            self.gemm[np.dtype(dt)] = fn
        self.int_t = int_t
        #: ``cblas_?gemm_batch`` per real dtype, kept only if :func:`_batch_self_test` passes.
        self.batch = {}
        for dt, letter, scal in ((np.float32, "s", ctypes.c_float), (np.float64, "d", ctypes.c_double)):
            fn = getattr(lib, f"{prefix}cblas_{letter}gemm_batch{suffix}", None)
            if fn is not None:
                fn.restype = None
                self.batch[np.dtype(dt)] = (fn, scal)
        #: ``cblas_?omatcopy`` (OpenBLAS's extension: ``B = alpha op(A)``) per real dtype, for
        #: :func:`call_transpose`.
        self.omatcopy = {}
        for dt, letter, scal in ((np.float32, "s", ctypes.c_float), (np.float64, "d", ctypes.c_double)):
            fn = getattr(lib, f"{prefix}cblas_{letter}omatcopy{suffix}", None)
            if fn is not None:
                fn.argtypes = [E, E, int_t, int_t, scal, P, int_t, P, int_t]
                fn.restype = None
                self.omatcopy[np.dtype(dt)] = fn
        self._set = self._get = None
        for name in (f"{prefix}openblas_set_num_threads{suffix}", "openblas_set_num_threads"):
            if hasattr(lib, name):
                self._set = getattr(lib, name)
                self._set.argtypes = [ctypes.c_int]
                self._set.restype = None
                break
        for name in (f"{prefix}openblas_get_num_threads{suffix}", "openblas_get_num_threads"):
            if hasattr(lib, name):
                self._get = getattr(lib, name)
                self._get.restype = ctypes.c_int
                break
        #: OpenBLAS's version from ``openblas_get_config`` (``"0.3.31.188.0"``), or ``None``.
        self.version = None
        cfg = getattr(lib, f"{prefix}openblas_get_config{suffix}", None)
        if cfg is not None:
            cfg.restype = ctypes.c_char_p
            m = re.search(r"OpenBLAS\s+(\S+)", (cfg() or b"").decode(errors="replace"))
            self.version = m.group(1) if m else None
        #: The process's BLAS thread limit (:mod:`blursim.backend.threads`), which :func:`load` points
        #: at this binding's direct calls; a ``?gemm_batch`` raises the count only while it is the
        #: one limit in force.
        self.threads = blas_threads()

    def get_threads(self) -> int | None:
        return int(self._get()) if self._get is not None else None

    def set_threads(self, n: int) -> None:
        if self._set is not None:
            self._set(int(n))


def _candidates() -> list[str]:
    base = os.path.dirname(np.__file__)
    pats = [os.path.join(base + ".libs", "*openblas*"), os.path.join(base, ".dylibs", "*openblas*"),
            os.path.join(base, "..", "numpy.libs", "*openblas*")]
    out: list[str] = []
    for p in pats:
        out.extend(sorted(glob.glob(p)))
    return out


def _self_test(cb: CBlas) -> bool:
    rng = np.random.default_rng(0)
    for dt in (np.float32, np.float64, np.complex128):
        A = rng.standard_normal((3, 5)).astype(dt)
        B = rng.standard_normal((5, 4)).astype(dt)
        C = rng.standard_normal((3, 4)).astype(dt)
        want = 0.5 * (A @ B) + 2.0 * C
        call_gemm(cb, A, B, C, 0.5, 2.0)
        if not np.allclose(C, want, rtol=1e-4, atol=1e-4):
            return False
    return True


def _batch_self_test(cb: CBlas) -> None:
    """Keep ``cb.batch`` only if a threaded batch gives the bits of single-threaded calls."""
    if not cb.batch or cb.get_threads() is None:
        cb.batch = {}
        return
    rng = np.random.default_rng(1)
    for dt in list(cb.batch):
        ok = True
        for (M, N, K), (ta, tb) in (((128, 160, 96), (False, False)), ((100, 130, 90), (True, False)),
                                    ((96, 128, 100), (False, True))):
            A = rng.standard_normal((3, K, M) if ta else (3, M, K)).astype(dt)
            B = rng.standard_normal((3, N, K) if tb else (3, K, N)).astype(dt)
            A, B = (A.swapaxes(-1, -2) if ta else A), (B.swapaxes(-1, -2) if tb else B)
            C0 = rng.standard_normal((3, M, N)).astype(dt)
            want, got = C0.copy(), C0.copy()
            p = _plan(cb, A, B, got)
            jobs = [(A.ctypes.data + oa, B.ctypes.data + ob, got.ctypes.data + oc, 0.7, 0.3) for oa, ob, oc in p.offs]
            with cb.threads.limit(1):
                call_gemm(cb, A, B, want, 0.7, 0.3)
                done = _batch(cb, p, jobs, 2)
            ok = ok and done and not p.swap and np.array_equal(want, got)
        if not ok:
            del cb.batch[dt]


_LOADED: list = []  # [(binding or None, why)]


def load() -> CBlas | None:
    """The BLAS binding, or ``None`` when it stays off (:func:`status` says why); decided once."""
    if not _LOADED:
        _LOADED.append(_load())
    return _LOADED[0][0]


def status() -> str:
    """Why the binding is on or off, in a few words (for benchmark reports)."""
    load()
    return _LOADED[0][1]


def _load() -> tuple[CBlas | None, str]:
    mode = os.environ.get("BLURSIM_CBLAS", "1").strip().lower()
    if mode == "0":
        return None, "off: BLURSIM_CBLAS=0"
    force = mode == "force"
    if not force and not _within(_version(np.__version__), TESTED_NUMPY):
        return None, (f"off: NumPy {np.__version__} is outside the tested versions "
                      f"{_fmt(TESTED_NUMPY)} (BLURSIM_CBLAS=force overrides)")
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix, int_t in _VARIANTS:
            if not hasattr(lib, f"{prefix}cblas_sgemm{suffix}"):
                continue
            try:
                cb = CBlas(lib, prefix, suffix, int_t, path)
            except (AttributeError, OSError):
                return None, f"off: {os.path.basename(path)} lacks a symbol the binding needs"
            if not force and not _within(_version(cb.version), TESTED_OPENBLAS):
                return None, (f"off: OpenBLAS {cb.version} is outside the tested versions "
                              f"{_fmt(TESTED_OPENBLAS)} (BLURSIM_CBLAS=force overrides)")
            if not _self_test(cb):
                return None, f"off: the self-test of {os.path.basename(path)} failed"
            if cb.get_threads() is not None:
                cb.threads.accelerate(path, cb.get_threads, cb.set_threads, version=cb.version)
            _batch_self_test(cb)
            return cb, (f"on: OpenBLAS {cb.version} ({os.path.basename(path)})"
                        + (", ?gemm_batch" if cb.batch else ""))
    return None, "off: NumPy bundles no OpenBLAS with cblas symbols (e.g. a build on MKL or Accelerate)"


def _fmt(rng) -> str:
    return "-".join(".".join(map(str, v)) for v in rng)


def _layout(strides, rows: int, cols: int, it: int):
    """``(trans, ld)`` of a 2-D operand with these strides, or ``None`` if BLAS cannot read it."""
    s0, s1 = strides
    if s0 < 0 or s1 < 0 or s0 % it or s1 % it:
        return None
    if cols == 1 or s1 == it:
        ld = s0 // it if rows > 1 else cols
        if ld >= max(1, cols):
            return NO_TRANS, ld
    if rows == 1 or s0 == it:
        ld = s1 // it if cols > 1 else rows
        if ld >= max(1, rows):
            return TRANS, ld
    return None


def _offsets(lead, strides) -> list[int]:
    """Byte offsets of every leading index (row-major order over ``lead``)."""
    offs = [0]
    for n, s in zip(lead, strides):
        offs = [o + i * s for o in offs for i in range(n)]
    return offs


def _lead_strides(X, lead):
    """Strides of ``X``'s leading axes broadcast against ``lead`` (0 where broadcast), or ``None``."""
    nd = len(lead)
    xl = X.shape[:-2]
    pad = nd - len(xl)
    if pad < 0:
        return None
    out = []
    for i, n in enumerate(lead):
        j = i - pad
        if j < 0 or xl[j] == 1:
            out.append(0)
        elif xl[j] == n:
            out.append(X.strides[j])
        else:
            return None
    return out


class _Plan:
    """Everything about one gemm call that depends only on shapes and strides (cached)."""

    __slots__ = ("fn", "dt", "swap", "ta", "tb", "lda", "ldb", "ldc", "M", "N", "K", "lead", "offs", "bconst",
                 "t_serial", "batch_off_until", "strikes")


_PLANS: dict = {}


def _plan(cb: CBlas, A, B, C):
    key = (C.dtype, A.dtype, B.dtype, A.shape, A.strides, B.shape, B.strides, C.shape, C.strides)
    p = _PLANS.get(key)
    if p is None:
        p = _make_plan(cb, A, B, C)
        if len(_PLANS) > 4096:
            _PLANS.clear()
        _PLANS[key] = p
    return p


def _make_plan(cb: CBlas, A, B, C, swap: bool = False):
    dt = C.dtype
    fn = cb.gemm.get(dt)
    if fn is None or A.dtype != dt or B.dtype != dt:
        return False
    M, N = C.shape[-2:]
    K = A.shape[-1]
    it = dt.itemsize
    lc = _layout(C.strides[-2:], M, N, it)
    if lc is None:
        return False
    if lc[0] == TRANS:  # C column-major: compute C^T = B^T A^T
        if swap:
            return False
        return _make_plan(cb, B.swapaxes(-1, -2), A.swapaxes(-1, -2), C.swapaxes(-1, -2), True)
    la = _layout(A.strides[-2:], M, K, it)
    lb = _layout(B.strides[-2:], K, N, it)
    if la is None or lb is None:
        return False
    lead = C.shape[:-2]
    sa, sb = _lead_strides(A, lead), _lead_strides(B, lead)
    if sa is None or sb is None:
        return False
    p = _Plan()
    p.fn, p.dt, p.swap, p.bconst = fn, dt, swap, None
    p.t_serial, p.batch_off_until, p.strikes = None, 0.0, 0  # see _judge
    (p.ta, p.lda), (p.tb, p.ldb), p.ldc = la, lb, lc[1]
    p.M, p.N, p.K, p.lead = M, N, K, lead
    p.offs = list(zip(_offsets(lead, sa), _offsets(lead, sb), _offsets(lead, C.strides[:-2])))
    return p


def _scalars(s, lead, n: int, complex_: bool, keep: list) -> list:
    """One BLAS scalar argument per slice (a pointer for complex dtypes)."""
    if not hasattr(s, "host"):
        vals = [s] * n
    elif s.const is not None:
        vals = [s.const] * n
    else:
        key = ("list", lead)
        vals = s.cache.get(key)
        if vals is None:
            vals = s.cache[key] = [float(v) if not isinstance(v, complex) else v
                                    for v in np.broadcast_to(s.host, lead).reshape(-1).tolist()]
    if complex_:
        return [_complex_ptr(v, keep) for v in vals]
    return vals


def _complex_ptr(v, keep: list):
    buf = (ctypes.c_double * 2)(complex(v).real, complex(v).imag)
    keep.append(buf)
    return ctypes.addressof(buf)


#: Below this many FLOPs a gemm is not worth splitting across threads.
PARALLEL_MIN_FLOPS = 4e6

#: ``pool`` argument of :func:`call_gemm`: split slices across BLAS's own threads (``?gemm_batch``).
BLAS_THREADS = "blas"

#: A batch waits for its slowest thread, so it is only fast while BLAS's workers have CPUs to
#: themselves: with one other busy process on a 2-vCPU machine a one-genome step took 5-24 ms
#: batched against 2.7-3.0 ms serial (1.5-1.6 ms batched when quiet). So each product is first
#: timed serially, and after BATCH_STRIKES consecutive batches of it slower than that, its batches
#: are off for BATCH_BACKOFF seconds (it runs serially), then tried again. Every schedule gives the
#: same bits, so this only changes speed.
BATCH_STRIKES = 2
BATCH_BACKOFF = 1.0
_now = time.perf_counter

#: OpenBLAS's batch interface sends matrices with ``M N K <= 100**3`` to its small-matrix kernels,
#: whose table lookup crashes in DYNAMIC_ARCH builds (a segfault with NumPy's OpenBLAS 0.3.31, for
#: 64 x 64 x 64); above it every matrix takes the ordinary level-3 driver. Only those are batched.
BATCH_MIN_MNK = 100**3 + 1


def call_transpose(cb: CBlas, X, out) -> bool:
    """``out[..., j, i] = X[..., i, j]`` with ``cblas_?omatcopy``, one call per leading index
    (a copy: the bits of ``X``); ``False`` (nothing written) without the symbol for this dtype or
    unless both arrays are C-contiguous with the same leading shape."""
    fn = cb.omatcopy.get(out.dtype)
    if (fn is None or X.dtype != out.dtype or X.shape[:-2] != out.shape[:-2] or X.shape[-2:] != out.shape[:-3:-1]
            or not (X.flags.c_contiguous and out.flags.c_contiguous)):
        return False
    m, n = X.shape[-2:]
    step = m * n * X.itemsize
    px, po = X.ctypes.data, out.ctypes.data
    for i in range(int(np.prod(X.shape[:-2], dtype=np.int64))):
        fn(ROW_MAJOR, TRANS, m, n, 1.0, px + i * step, n, po + i * step, m)
    return True


def call_gemm(cb: CBlas, A, B, C, alpha=1.0, beta=0.0, pool=None, workers: int = 1) -> bool:
    """Batched gemm on NumPy arrays through BLAS; ``False`` if the layout is not supported.

    ``C`` must not overlap ``A`` or ``B``. Leading axes of ``A``/``B`` of
    length 1 (or missing) broadcast against those of ``C``. With a thread
    ``pool`` and ``workers > 1``, the slices are split across threads, each
    calling single-threaded BLAS; with ``pool=BLAS_THREADS``, across
    ``workers`` of BLAS's own threads in one ``?gemm_batch`` call, when that
    is faster than serial (:func:`_judge`). Never inside a slice.
    """
    p = _plan(cb, A, B, C)
    if p is False:
        return False
    if p.swap:
        A, B = B, A
    pa, pb, pc = A.ctypes.data, B.ctypes.data, C.ctypes.data
    n = len(p.offs)
    keep: list = []
    cplx = C.dtype.kind == "c"
    al = _scalars(alpha, p.lead, n, cplx, keep)
    be = _scalars(beta, p.lead, n, cplx, keep)
    fn, ta, tb, M, N, K, lda, ldb, ldc = p.fn, p.ta, p.tb, p.M, p.N, p.K, p.lda, p.ldb, p.ldc
    # One BLAS call per slice, whoever makes it: results never depend on the number of threads.
    jobs = [(pa + oa, pb + ob, pc + oc, al[i], be[i]) for i, (oa, ob, oc) in enumerate(p.offs)]

    def run(group):
        for a, b, c, x, y in group:
            fn(ROW_MAJOR, ta, tb, M, N, K, x, a, lda, b, ldb, y, c, ldc)

    if pool is BLAS_THREADS:
        pool = None
        if n > 1 and workers > 1 and M * N * K >= BATCH_MIN_MNK:
            now = _now()
            if p.t_serial is None or now < p.batch_off_until:  # time the serial product: what a batch must beat
                run(jobs)
                t = _now() - now
                p.t_serial = t if p.t_serial is None else min(p.t_serial, t)
                return True
            if _batch(cb, p, jobs, workers):
                _judge(p, _now() - now)
                return True
    if pool is None or n < 2 or workers < 2 or 2.0 * M * N * K * n < PARALLEL_MIN_FLOPS:
        run(jobs)
        return True
    groups = [jobs[w::workers] for w in range(min(workers, n))]
    futs = [pool.submit(run, g) for g in groups[1:]]
    run(groups[0])
    for f in futs:
        f.result()
    return True


def _batch(cb: CBlas, p: _Plan, jobs: list, workers: int) -> bool:
    """The slices ``jobs`` (``(a, b, c, alpha, beta)`` of :func:`call_gemm`) of one planned product
    as one ``cblas_?gemm_batch`` call on ``workers`` BLAS threads (one group per slice, since
    ``alpha``/``beta`` may differ per slice). ``False``, with nothing done, when the dtype has no
    batch or another thread limits BLAS's threads too (raising them would change its products)."""
    bt = cb.batch.get(p.dt)
    if bt is None:
        return False
    fn, scal = bt
    n = len(p.offs)
    if p.bconst is None:
        I = cb.int_t
        p.bconst = ((ctypes.c_int * n)(*[p.ta] * n), (ctypes.c_int * n)(*[p.tb] * n),
                    (I * n)(*[p.M] * n), (I * n)(*[p.N] * n), (I * n)(*[p.K] * n),
                    (I * n)(*[p.lda] * n), (I * n)(*[p.ldb] * n), (I * n)(*[p.ldc] * n), I(n), (I * n)(*[1] * n))
    ta, tb, Ms, Ns, Ks, lda, ldb, ldc, groups, sizes = p.bconst
    As, Bs, Cs, al, be = zip(*jobs)
    P = ctypes.c_void_p * n
    As, Bs, Cs, alpha, beta = P(*As), P(*Bs), P(*Cs), (scal * n)(*al), (scal * n)(*be)
    with cb.threads.lock:
        if cb.threads.limiters != 1:
            return False
        old = cb.get_threads()
        cb.set_threads(workers)
        try:
            fn(ROW_MAJOR, ta, tb, Ms, Ns, Ks, alpha, As, lda, Bs, ldb, beta, Cs, ldc, groups, sizes)
        finally:
            cb.set_threads(old)
    return True


def _judge(p: _Plan, t: float) -> None:
    """Count a batch of ``p``'s product that took ``t`` s against its serial time; switch its batches
    off for :data:`BATCH_BACKOFF` s after :data:`BATCH_STRIKES` slower ones in a row. (Per product:
    one whose batch is slower even on a quiet machine, e.g. a small one, must not stop the others.)"""
    if t <= p.t_serial:
        p.strikes = 0
        return
    p.strikes += 1
    if p.strikes >= BATCH_STRIKES:
        p.strikes = 0
        p.batch_off_until = _now() + BATCH_BACKOFF
