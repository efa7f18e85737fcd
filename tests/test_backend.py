"""Backends: choosing one, the gemm primitive, threads, and parity between backends.

The NumPy backend with ``fast=False`` runs the generic code paths that the
CuPy backend runs (no direct BLAS calls, no worker threads, copies instead of
``out=`` views); it stands in for a GPU here. Tests marked ``gpu`` compare
CuPy against NumPy and skip cleanly without CuPy or a GPU.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np
import pytest
import threadpoolctl
from hypothesis import given, settings
from hypothesis import strategies as st

from blursim.backend import BACKENDS, NumpyBackend, _cblas, get_backend
from blursim.backend import threads as threads_mod
from blursim.errors import BackendError, SpecError
from blursim.genome import random_genome
from blursim.graph import compile_network
from blursim.sim import Simulator
from blursim.spec import load_network
from blursim.testing import trajectory

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.json"))


# -------------------------------------------------------------- selection


def test_backend_by_argument_and_environment(monkeypatch):
    monkeypatch.delenv("BLURSIM_BACKEND", raising=False)
    assert get_backend(None).name == "numpy"
    monkeypatch.setenv("BLURSIM_BACKEND", "numpy")
    monkeypatch.setenv("BLURSIM_DTYPE", "float64")
    b = get_backend(None)
    assert b.name == "numpy" and b.dtype == np.float64
    assert get_backend(b) is b
    with pytest.raises(SpecError) as e:
        get_backend("jax")
    assert "cupy" in str(e.value) and "numpy" in str(e.value)
    assert set(BACKENDS) == {"numpy", "cupy"}


def _gpu_available() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed")
def test_cupy_missing_is_a_clear_error(monkeypatch):
    with pytest.raises(BackendError) as e:
        get_backend("cupy")
    assert "pip install 'blursim[gpu]'" in str(e.value) and "--backend numpy" in str(e.value)
    monkeypatch.setenv("BLURSIM_BACKEND", "cupy")
    prog = compile_network(load_network(SPECS[0]))
    with pytest.raises(BackendError):
        Simulator(prog)


def test_cli_reports_missing_cupy(capsys):
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed")
    from blursim.cli.main import main

    spec = next(p for p in SPECS if p.name == "mlp_2d.json")
    rc = main(["run", str(spec), "--task", "xor", "--preset", "random", "--steps", "1", "--backend", "cupy"])
    assert rc == 2
    assert "CuPy is not installed" in capsys.readouterr().err


# ---------------------------------------------------------------- gemm


@st.composite
def gemm_cases(draw):
    dt = draw(st.sampled_from([np.float32, np.float64, np.complex128]))
    lead = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=3)))
    M, K, N = (draw(st.integers(1, 6)) for _ in range(3))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))

    def operand(r, c):
        bl = tuple(n if draw(st.booleans()) else 1 for n in lead)
        if draw(st.booleans()):  # transposed storage
            return (rng.standard_normal(bl + (c, r)).astype(dt)).swapaxes(-1, -2)
        if draw(st.booleans()):  # padded rows (leading dimension > columns)
            return rng.standard_normal(bl + (r, c + 2)).astype(dt)[..., :c]
        return rng.standard_normal(bl + (r, c)).astype(dt)

    A, B = operand(M, K), operand(K, N)
    C = rng.standard_normal(lead + (M, N)).astype(dt)
    if draw(st.booleans()):
        C = np.ascontiguousarray(C.swapaxes(-1, -2)).swapaxes(-1, -2)

    def coef():
        kind = draw(st.sampled_from(["one", "zero", "number", "scale"]))
        if kind == "scale":
            return rng.uniform(-2, 2, lead[:1] + (1,) * max(0, len(lead) - 1)) if lead else rng.uniform(-2, 2, ())
        return {"one": 1.0, "zero": 0.0, "number": float(rng.uniform(-2, 2))}[kind]

    return A, B, C, coef(), coef()


@settings(max_examples=200, deadline=None)
@given(gemm_cases(), st.booleans())
def test_gemm_matches_matmul(case, fast):
    A, B, C, alpha, beta = case
    be = NumpyBackend({np.float32: "float32", np.float64: "float64", np.complex128: "complex128"}[C.dtype.type],
                      fast=fast)
    a = be.scale(np.asarray(alpha)) if isinstance(alpha, np.ndarray) else alpha
    b = be.scale(np.asarray(beta)) if isinstance(beta, np.ndarray) else beta
    al = np.asarray(alpha).reshape(np.shape(alpha) + (1, 1)) if isinstance(alpha, np.ndarray) else alpha
    bl = np.asarray(beta).reshape(np.shape(beta) + (1, 1)) if isinstance(beta, np.ndarray) else beta
    want = np.broadcast_to(al * np.matmul(A, B) + (bl * C if not (np.isscalar(beta) and beta == 0) else 0),
                           C.shape)
    got = C.copy() if C.flags.c_contiguous else np.ascontiguousarray(C.swapaxes(-1, -2)).swapaxes(-1, -2)
    be.gemm(A, B, got, a, b)
    tol = 1e-4 if C.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_gemm_beta_zero_ignores_garbage():
    be = NumpyBackend("float64")
    A, B = np.ones((2, 3, 4)), np.ones((2, 4, 5))
    C = np.full((2, 3, 5), np.nan)
    be.gemm(A, B, C, 2.0, 0.0)
    assert (C == 8.0).all()


def _blas_count() -> int:
    """NumPy's BLAS thread count as threadpoolctl reads it (independent of blursim). NumPy's own
    library (under ``numpy.libs``) where threadpoolctl lists several: once SciPy is imported (by
    another test file of the same process) its OpenBLAS may come first, and blursim limits only
    the BLAS it calls, NumPy's."""
    info = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    if not info:
        pytest.skip("threadpoolctl finds no BLAS library to control")
    own = [i for i in info if "numpy" in str(i.get("filepath", "")).lower()]
    return (own or info)[0]["num_threads"]


@pytest.mark.parametrize("binding", [True, False])
def test_blas_threads_limited_and_restored(binding):
    """Through the direct binding or through threadpoolctl alone, a step's limit sets every BLAS
    library to one thread and the count comes back afterwards."""
    be = NumpyBackend("float32", blas_binding=binding)
    with threadpoolctl.threadpool_limits(3, user_api="blas"):
        with be.blas_threads(1):
            assert _blas_count() == 1
            with be.blas_threads(1):
                assert _blas_count() == 1
        assert _blas_count() == 3


def test_blas_limits_nest_across_threads():
    """Bodies in different threads: the count stays limited until the last one leaves, and the last
    one restores it even when another thread entered first (threadpoolctl lets only one thread set
    OpenBLAS's count unless told otherwise)."""
    T = threads_mod.from_threadpoolctl()  # threadpoolctl only, no direct calls
    if not T.libraries:
        pytest.skip("threadpoolctl finds no BLAS library to control")
    entered, leave_a, a_left = threading.Event(), threading.Event(), threading.Event()

    def a():
        with T.limit(1):
            entered.set()
            leave_a.wait(10)
        a_left.set()

    with threadpoolctl.threadpool_limits(3, user_api="blas"):
        ta = threading.Thread(target=a)
        ta.start()
        entered.wait(10)
        with T.limit(1):  # entered second, from this thread
            leave_a.set()
            a_left.wait(10)
            assert _blas_count() == 1  # thread a left, this body still limits
        ta.join()
        assert _blas_count() == 3 and T.limiters == 0


@pytest.fixture
def fresh_binding(monkeypatch):
    """Let :func:`_cblas.load` decide again in this test (the process's decision comes back after)."""
    monkeypatch.setattr(_cblas, "_LOADED", [])
    monkeypatch.delenv("BLURSIM_CBLAS", raising=False)


@pytest.mark.parametrize("unknown", ["numpy", "openblas", "no-openblas"])
def test_binding_switches_itself_off(unknown, fresh_binding, monkeypatch):
    """A NumPy or OpenBLAS version outside the tested range (simulated by moving the range), or a
    NumPy without a bundled OpenBLAS (as on MKL or Accelerate): the binding stays off and says why,
    the backend computes the same step through numpy.matmul, BLAS threads are still limited, and
    BLURSIM_CBLAS=force overrides a version check."""
    if unknown == "numpy":
        monkeypatch.setattr(_cblas, "TESTED_NUMPY", ((0, 1), (0, 2)))
        why = f"NumPy {np.__version__} is outside the tested versions 0.1-0.2"
    elif unknown == "openblas":
        monkeypatch.setattr(_cblas, "TESTED_OPENBLAS", ((9, 0, 0), (9, 9, 9)))
        why = "is outside the tested versions 9.0.0-9.9.9"
    else:
        monkeypatch.setattr(_cblas, "_candidates", lambda: [])
        why = "NumPy bundles no OpenBLAS"
    assert _cblas.load() is None and why in _cblas.status()
    be = NumpyBackend("float64")
    assert be._cblas is None and be.describe()["direct_blas"] is False
    with threadpoolctl.threadpool_limits(3, user_api="blas"):
        with be.blas_threads(1):
            assert _blas_count() == 1
        assert _blas_count() == 3
    prog = compile_network(load_network(next(p for p in SPECS if p.name == "toy_blur.json")))
    genome = random_genome(k=prog.k, groups=prog.groups, seed=1, scale=0.3)
    got = trajectory(Simulator(prog, backend=be), genome)
    monkeypatch.setattr(_cblas, "_LOADED", [])
    monkeypatch.setenv("BLURSIM_CBLAS", "force")
    if unknown == "no-openblas":
        assert _cblas.load() is None  # nothing to force
    else:
        assert _cblas.load() is not None and _cblas.status().startswith("on")
    want = trajectory(Simulator(prog, backend=NumpyBackend("float64")), genome)
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


def test_version_ranges():
    assert _cblas._version("0.3.23.dev") == (0, 3, 23) and _cblas._version("2.4.6") == (2, 4, 6)
    assert _cblas._version("unknown") is None and not _cblas._within(None, _cblas.TESTED_NUMPY)
    assert _cblas._within((2, 4, 6), ((1, 26), (2, 4))) and _cblas._within((1, 26, 4), ((1, 26), (2, 4)))
    assert not _cblas._within((2, 5, 0), ((1, 26), (2, 4))) and not _cblas._within((1, 25, 2), ((1, 26), (2, 4)))
    assert _cblas._within((0, 3, 31, 188, 0), ((0, 3, 23), (0, 3, 31)))
    assert not _cblas._within((0, 3, 32), ((0, 3, 23), (0, 3, 31)))


def test_batched_gemm_equals_single_calls(monkeypatch):
    """Slices on BLAS's threads (``?gemm_batch``) give the bits of one-thread ``?gemm`` calls: transposed
    and broadcast operands, per-slice alpha. Small products (where OpenBLAS's batch would take its
    crashing small-matrix path) run serially, and so does a call while another thread limits BLAS too."""
    from blursim.backend.base import Scale

    be = NumpyBackend("float32")
    cb = be._cblas
    if cb is None or not cb.batch:
        pytest.skip("this BLAS has no ?gemm_batch")
    calls = []
    batch = _cblas._batch

    def counted(*a):
        calls.append(batch(*a))
        return calls[-1]

    monkeypatch.setattr(_cblas, "_batch", counted)
    monkeypatch.setattr(_cblas, "_judge", lambda *a: None)
    monkeypatch.setattr(_cblas, "_PLANS", {})
    rng = np.random.default_rng(7)

    def case(M, N, K, n_a, transposed):
        A = rng.standard_normal((n_a, K, M) if transposed else (n_a, M, K)).astype(np.float32)
        A = A.swapaxes(-1, -2) if transposed else A
        B = rng.standard_normal((3, K, N)).astype(np.float32)
        C = rng.standard_normal((3, M, N)).astype(np.float32)
        return A, B, C, Scale(rng.uniform(0.5, 1.5, 3).astype(np.float32), be)

    for (M, N, K), n_a, transposed in (((128, 160, 100), 3, False), ((100, 120, 128), 1, True),
                                       ((64, 64, 64), 3, False)):
        A, B, C, alpha = case(M, N, K, n_a, transposed)
        want, got = C.copy(), C.copy()
        with be.parallel_gemm(None, 1):
            be.gemm(A, B, want, alpha, 0.75)
            be.gemm(A, B, want, alpha, 0.75)
        calls.clear()
        with be.parallel_gemm(None, 2):
            be.gemm(A, B, got, alpha, 0.75)  # the first call of a product is timed serially
            be.gemm(A, B, got, alpha, 0.75)
        np.testing.assert_array_equal(got, want)
        assert calls == ([True] if M * N * K >= _cblas.BATCH_MIN_MNK else [])

    A, B, C, alpha = case(128, 160, 100, 3, False)
    want, got = C.copy(), C.copy()
    with be.parallel_gemm(None, 1):
        be.gemm(A, B, want, alpha, 0.75)
    with be.parallel_gemm(None, 2):
        be.gemm(A, B, C.copy(), alpha, 0.75)  # times this product serially
    calls.clear()
    with be.blas_threads(1):  # as if another thread's run were limiting BLAS: no batch, same bits
        with be.parallel_gemm(None, 2):
            be.gemm(A, B, got, alpha, 0.75)
    assert calls == [False]
    np.testing.assert_array_equal(got, want)


def test_slow_batches_back_off(monkeypatch):
    """Batches slower than the serial product (BLAS's threads without CPUs of their own) are switched off
    for a while after two in a row -- the products run serially, with the same bits -- then tried again."""

    be = NumpyBackend("float32")
    cb = be._cblas
    if cb is None or not cb.batch:
        pytest.skip("this BLAS has no ?gemm_batch")
    clock = [100.0]
    monkeypatch.setattr(_cblas, "_now", lambda: clock[0])
    monkeypatch.setattr(_cblas, "_PLANS", {})
    batch = _cblas._batch
    log = []

    def slow_batch(*a):
        clock[0] += 1.0  # every batch "takes" a second, far more than the serial product (0 s here)
        log.append("batch")
        return batch(*a)

    monkeypatch.setattr(_cblas, "_batch", slow_batch)
    rng = np.random.default_rng(3)
    A = rng.standard_normal((2, 128, 100)).astype(np.float32)
    B = rng.standard_normal((2, 100, 160)).astype(np.float32)
    want, got = np.zeros((2, 128, 160), np.float32), np.zeros((2, 128, 160), np.float32)
    be.gemm(A, B, want, 1.0, 0.0)

    def step():
        with be.parallel_gemm(None, 2):
            be.gemm(A, B, got, 1.0, 0.0)
        np.testing.assert_array_equal(got, want)
        log.append("call")

    for _ in range(4):
        step()
    # serial timing, two slow batches, then off: serial
    assert log == ["call", "batch", "call", "batch", "call", "call"]
    clock[0] += _cblas.BATCH_BACKOFF + 0.5
    log.clear()
    step()
    assert log == ["batch", "call"]


# ------------------------------------------------------------- simulator


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_generic_paths_and_threads_match_fast_numpy(spec):
    """Every example spec: generic (GPU-like) code paths and worker threads give the fast path's numbers."""
    prog = compile_network(load_network(spec))
    genome = random_genome(k=prog.k, groups=prog.groups, seed=1, scale=0.3)
    want = trajectory(Simulator(prog, dtype="float64", threads=1), genome)
    for sim in (Simulator(prog, backend=NumpyBackend("float64", fast=False)),
                Simulator(prog, dtype="float64", threads=2),
                Simulator(prog, dtype="float64", threads=3, sparse="masked")):
        for a, b in zip(want, trajectory(sim, genome)):
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("binding", [True, False])
@pytest.mark.parametrize("S", [1, 5])
def test_results_do_not_depend_on_threads(S, binding):
    """Bit-identical float32 results for 1, 2 and 3 worker threads (a Dask worker equals the local run),
    with the direct BLAS binding and without it (numpy.matmul, BLAS limited through threadpoolctl)."""
    spec = {"k": 2, "populations": [
        {"name": "in", "size": 30, "role": "input"},
        {"name": "h", "size": 40, "role": "hidden", "forward_activation": "relu_tanh", "backward_activation": "relu_tanh"},
        {"name": "out", "size": 3, "role": "output"}],
        "projections": [{"from": "in", "to": "h"}, {"from": "h", "to": "out"}]}
    prog = compile_network(load_network(spec))
    genome = random_genome(k=2, seed=3)
    runs = [trajectory(Simulator(prog, backend=NumpyBackend("float32", threads=t, blas_binding=binding)),
                       genome, S=S, R=1, batch=64) for t in (1, 2, 3)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


RULE_VARIANTS = [
    {},
    {"shared_channels": True},
    {"tied": True, "oja": "weights"},
    {"oja": "activity", "batch_reduction": "mean", "saturation": True},
    {"shared_channels": True, "oja": "activity", "synapse_normalization": "stored"},
    {"synapse_normalization": "activations", "reset_neurons": False, "schedule": "synchronous"},
]


@pytest.mark.parametrize("split", ["blas", "pool"])
@pytest.mark.parametrize("rules", RULE_VARIANTS, ids=lambda r: ",".join(f"{k}={v}" for k, v in r.items()) or "default")
def test_one_genome_parallel_updates_are_bit_identical(rules, split, monkeypatch):
    """One genome and replica (a single chunk): the slices of large products go to BLAS's own threads
    (``?gemm_batch``, ``split="blas"``) or, without it, to ours, which then also run the synapse
    updates of different projections as parallel jobs; float32 results equal the one-thread run.
    The sizes (batch 128) make the split happen, which the test checks."""
    import blursim.backend.executor as execmod

    cb = NumpyBackend("float32")._cblas
    if cb is None:
        pytest.skip("no direct BLAS")
    if split == "pool":
        monkeypatch.setattr(cb, "batch", {})
    elif not cb.batch:
        pytest.skip("this BLAS has no ?gemm_batch")
    used = {"batch": 0, "submit": 0}
    batch = _cblas._batch

    def counted_batch(*a):
        done = batch(*a)
        used["batch"] += done
        return done

    class CountingPool:
        def __init__(self, pool):
            self.pool = pool

        def submit(self, *a):
            used["submit"] += 1
            return self.pool.submit(*a)

    pool = execmod.thread_pool
    monkeypatch.setattr(_cblas, "_batch", counted_batch)
    monkeypatch.setattr(_cblas, "_judge", lambda *a: None)  # batch whatever the timing (test_slow_batches_back_off)
    monkeypatch.setattr(_cblas, "_PLANS", {})
    monkeypatch.setattr(execmod, "thread_pool", lambda n: CountingPool(pool(n)))
    spec = {"k": 2, "populations": [
        {"name": "in", "size": 120, "role": "input"},
        {"name": "h", "size": 160, "role": "hidden", "forward_activation": "relu_tanh", "backward_activation": "relu_tanh"},
        {"name": "h2", "size": 80, "role": "hidden"},
        {"name": "out", "size": 3, "role": "output"}],
        "projections": [{"from": "in", "to": "h"}, {"from": "h", "to": "h2", "bias": True},
                        {"from": "in", "to": "h2"}, {"from": "h2", "to": "out"}, {"from": "h", "to": "out"}],
        "rules": rules}
    prog = compile_network(load_network(spec))
    genome = random_genome(k=2, seed=5, scale=0.3)
    runs = [trajectory(Simulator(prog, dtype="float32", threads=t), genome, S=1, R=1, steps=3, batch=128)
            for t in (1, 2)]
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    if split == "blas":
        assert used["batch"] > 0 and used["submit"] == 0
    else:
        assert used["batch"] == 0 and used["submit"] > 0


def test_float32_close_to_float64():
    spec = next(p for p in SPECS if p.name == "sparse_digits.json")
    prog = compile_network(load_network(spec))
    genome = random_genome(k=prog.k, groups=prog.groups, seed=1, scale=0.3)
    a64 = trajectory(Simulator(prog, dtype="float64"), genome)
    a32 = trajectory(Simulator(prog, dtype="float32"), genome)
    for a, b in zip(a64, a32):
        np.testing.assert_allclose(b, a, rtol=2e-3, atol=2e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_available(), reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_cupy_matches_numpy(spec):
    prog = compile_network(load_network(spec))
    genome = random_genome(k=prog.k, groups=prog.groups, seed=1, scale=0.3)
    want = trajectory(Simulator(prog, dtype="float64"), genome)
    got = trajectory(Simulator(prog, backend="cupy", dtype="float64"), genome)
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-11)
