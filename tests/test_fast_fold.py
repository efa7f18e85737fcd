"""The fast kernels' shared input products (issue 25 item 5; docs/benchmarks.md, "Larger products").

For a projection from an input whose ``W`` and ``V`` both learn by eq. (7) with one update per
channel, :class:`blursim.sim.fast.FastKernels` computes ``G^d = x^T a_post^d`` once per state and
mixes both Hebbian terms from it (``k`` products instead of ``2k``). Checked here on tiny networks
with S > 1 species and R > 1 replicas against the reference kernels (``blursim.sim.reference``,
the step written over plain array functions), step by step, under the rules that change the
update around the product (bias row, both Oja modes, mean reduction, saturation, synapse
normalisation, persistent states, k = 3); that the shared path is the one taken there and not
where it does not apply; and that its bits do not depend on the number of threads.
"""

from __future__ import annotations

import numpy as np
import pytest

from blursim.genome import random_genome
from blursim.graph import compile_network
from blursim.sim import Simulator
from blursim.sim import reference as ref
from blursim.sim.fast import FastKernels
from blursim.spec import load_network

TOL = 1e-12


@pytest.fixture(autouse=True)
def shared_on(monkeypatch):
    """The shared products are off by default (bit-identity with the results page's runs); every
    test here turns them on, as ``BLURSIM_SHARED_PRODUCTS=1`` does."""
    monkeypatch.setattr(FastKernels, "share_input_products", True)


def test_off_by_default_and_the_variable_turns_them_on(monkeypatch):
    from blursim.sim import fast

    for value, on in (("1", True), ("on", True), ("0", False), ("", False)):
        monkeypatch.setenv(fast.SHARED_PRODUCTS_ENV, value)
        assert fast.shared_products_default() is on
    monkeypatch.delenv(fast.SHARED_PRODUCTS_ENV)
    assert fast.shared_products_default() is False


def spec(k=2, bias=False, connectivity=None, **rules) -> dict:
    """input(5) -> hidden(7) -> out(3), the paper's default rules with ``rules`` on top."""
    q0 = {"from": "in", "to": "h", "bias": bias}
    if connectivity is not None:
        q0["connectivity"] = connectivity
    base = {"backward_update": "additive", "tied": False, "shared_channels": False, "feedback": "target"}
    return {"name": "fold", "k": k, "seed": 0,
            "populations": [{"name": "in", "size": 5, "role": "input"},
                            {"name": "h", "size": 7, "role": "hidden", "forward_activation": "relu_tanh",
                             "backward_activation": "tanh"},
                            {"name": "out", "size": 3, "role": "output", "forward_activation": "tanh",
                             "backward_activation": "tanh"}],
            "projections": [q0, {"from": "h", "to": "out"}],
            "rules": {**base, **rules}}


def genomes(k: int, S: int):
    gs = [random_genome(k=k, seed=11 + s, groups=("default",)) for s in range(S)]
    for g in gs:  # every optional field of eq. (7)-(8) away from neutral
        p = g.groups["default"]
        p.oja_alpha, p.saturation, p.rescale = 0.3, 1.5, 0.8
    return gs


class Spy:
    """Counts the shared-product updates of a kernel set (wraps its ``_shared_hebbian``)."""

    def __init__(self, K: FastKernels) -> None:
        self.calls: list[tuple[int, str]] = []
        inner = K._shared_hebbian

        def wrapped(run, job, E, keep):
            done = inner(run, job, E, keep)
            if done:
                self.calls.append((job.q, job.which))
            return done
        K._shared_hebbian = wrapped


def run_steps(sp: dict, S=3, R=2, steps=3, threads=None, dtype="float64", backend="numpy"):
    """The Simulator's states before and after each step, the reference's step from each
    'before', and the spy's record."""
    prog = compile_network(load_network(sp))
    sim = Simulator(prog, backend=backend, dtype=dtype, threads=threads)
    spy = Spy(sim.kernels)
    gs = genomes(prog.k, S)
    genes = sim.prepare(gs)
    st = sim.init_synapses(genes, replicas=R, seed=3)
    G = ref.genome_arrays(gs, prog)
    rng = np.random.default_rng(5)
    pairs = []
    for _ in range(steps):
        x, y = rng.normal(size=(6, 5)), rng.integers(0, 3, 6)
        before = ref.from_simulator(st, prog)
        sim.train_step(st, genes, x, y)
        pairs.append((ref.from_simulator(st, prog), before, x, y))
    return prog, G, pairs, spy, st


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(b))), 1e-3)


RULES = {
    "default": {},
    "bias": {"bias": True},
    "oja-weights": {"oja": "weights"},
    "oja-activity": {"oja": "activity", "bias": True},
    "mean": {"batch_reduction": "mean"},
    "saturation": {"saturation": True},
    "normalised-stored": {"synapse_normalization": "stored", "bias": True},
    "normalised-activations": {"synapse_normalization": "activations"},
    "persistent": {"reset_neurons": False},
    "k3": {"k": 3},
}


@pytest.mark.parametrize("name", sorted(RULES))
def test_shared_products_equal_reference_step(name):
    opts = dict(RULES[name])
    sp = spec(k=opts.pop("k", 2), bias=opts.pop("bias", False), **opts)
    prog, G, pairs, spy, _ = run_steps(sp)
    for got, before, x, y in pairs:
        want = ref.train_step(prog, G, before, x, y)
        for a, b in zip(got.W + got.V, want.W + want.V):
            if b is not None:
                assert rel(a, b) <= TOL
        if want.a is not None:
            for a, b in zip(got.a, want.a):
                if b is not None:
                    assert rel(a, b) <= TOL
    # the input projection's W and V took the shared products, in every step and chunk
    assert {c for c in spy.calls} == {(0, "W"), (0, "V")}
    assert len(spy.calls) % (2 * len(pairs)) == 0


def test_a_wrong_mixing_matrix_is_caught():
    """The parity above can fail: a planted error in the shared product's mixing matrix (nu~
    read untransposed for V) breaks it."""
    sp = spec()
    prog = compile_network(load_network(sp))
    sim = Simulator(prog, backend="numpy", dtype="float64")
    K = sim.kernels
    inner = K._shared_mat

    def wrong(run, job):
        M, f = inner(run, job)
        return (M.swapaxes(-1, -2).copy(), f) if job.which == "V" else (M, f)
    K._shared_mat = wrong
    gs = genomes(2, 2)
    genes = sim.prepare(gs)
    st = sim.init_synapses(genes, replicas=2, seed=3)
    x, y = np.random.default_rng(1).normal(size=(6, 5)), np.array([0, 1, 2, 0, 1, 2])
    before = ref.from_simulator(st, prog)
    sim.train_step(st, genes, x, y)
    want = ref.train_step(prog, ref.genome_arrays(gs, prog), before, x, y)
    assert rel(ref.from_simulator(st, prog).V[0], want.V[0]) > 1e-6


@pytest.mark.parametrize("sp", [
    spec(tied=True),                                  # no V
    spec(shared_channels=True),                       # one stored channel: the channel mean
    spec(backward_synapses="mirror"),                 # V by a variant's Hebbian kernel
    spec(backward_synapses="frozen"),                 # V does not learn
    spec(connectivity={"kind": "fixed_probability", "p": 0.5, "seed": 1}),  # masked or block storage
], ids=["tied", "shared-channels", "mirror", "frozen", "masked"])
def test_shared_products_only_where_they_apply(sp):
    prog, G, pairs, spy, _ = run_steps(sp, steps=1)
    assert spy.calls == []
    got, before, x, y = pairs[0]
    want = ref.train_step(prog, G, before, x, y)
    for a, b in zip(got.W + got.V, want.W + want.V):
        if b is not None:
            assert rel(a, b) <= TOL


def test_no_shared_products_without_a_blas_transpose():
    """A backend that cannot transpose with BLAS (no direct binding) keeps a product per update;
    the numbers agree to rounding."""
    from blursim.backend.numpy_backend import NumpyBackend

    sp = spec(bias=True)
    a = run_steps(sp, backend=NumpyBackend("float64", blas_binding=False))
    b = run_steps(sp)
    assert a[3].calls == [] and b[3].calls
    for x, y in zip(a[4].W + a[4].V, b[4].W + b[4].V):
        if x is not None:
            assert rel(x, y) <= 1e-12


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_shared_products_do_not_depend_on_threads(dtype):
    sp = spec(bias=True)
    states = [run_steps(sp, S=4, R=2, threads=t, dtype=dtype)[4] for t in (1, 2, 3)]
    for st in states[1:]:
        for x, y in zip(states[0].W + states[0].b + states[0].V, st.W + st.b + st.V):
            if x is not None:
                assert np.array_equal(np.asarray(x), np.asarray(y))


def test_float32_shared_products_near_float64_reference():
    """float32 (the benchmark's dtype) against the float64 reference: float32's rounding only."""
    prog, G, pairs, spy, _ = run_steps(spec(bias=True), dtype="float32")
    assert spy.calls
    for got, before, x, y in pairs:
        want = ref.train_step(prog, G, before, x, y)
        for a, b in zip(got.W + got.V, want.W + want.V):
            if b is not None:
                assert rel(a, b) <= 1e-5
