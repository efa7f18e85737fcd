"""The JAX engine's products on NumPy's BLAS (blursim.sim.jax_blas; issue 25 items 1-2).

Anchored outside the code under test: the products against ``numpy.einsum`` and their
derivatives against JAX's own autodiff of ``jnp.einsum``; the step against the NumPy
:class:`Simulator` (a different implementation) and the XLA route; the meta-gradient against
the complex step and central differences of the NumPy simulator
(:func:`blursim.testing.gradients.agreement`). Tiny networks, float64 (float32 once).
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
import test_meta_gradient  # noqa: E402  (its EXPERIMENT)

from blursim.errors import SpecError  # noqa: E402
from blursim.genome import random_genome  # noqa: E402
from blursim.graph import compile_network  # noqa: E402
from blursim.meta import prepare_experiment  # noqa: E402
from blursim.meta.objective import MetaObjective  # noqa: E402
from blursim.sim import Simulator  # noqa: E402
from blursim.sim import jax_blas  # noqa: E402
from blursim.sim.jax_blas import CONTRACTIONS, contract, resolve_products  # noqa: E402
from blursim.sim.jax_engine import JaxSimulator, precision  # noqa: E402
from blursim.spec import load_network  # noqa: E402
from blursim.testing.gradients import (  # noqa: E402
    TOL, agreement, central_difference_gradient, complex_step_gradient, simulator_losses)

#: Letter sizes of the contractions' operands (all different, so a swapped axis cannot fit).
SIZES = {"s": 2, "r": 1, "b": 5, "i": 3, "j": 4, "c": 2}


def operands(spec, rng, dtype):
    ins = spec.split("->")[0].split(",")
    return [rng.standard_normal([SIZES[ch] for ch in s]).astype(dtype) for s in ins]


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max()) / max(float(np.abs(b).max()), 1e-3)


@pytest.fixture(params=["primitive", "pure_callback"])
def callback(request, monkeypatch):
    """Both ways a product reaches the host: the module's own primitive (XLA's host callback
    directly) and the ``jax.pure_callback`` fallback (JAX without the internals it uses)."""
    if request.param == "pure_callback":
        monkeypatch.setattr(jax_blas, "_PRIM", [None])
    else:
        assert jax_blas._primitive() is not None  # JAX 0.10 has the internals
    return request.param


@pytest.mark.parametrize("spec", sorted(CONTRACTIONS))
def test_each_product_and_its_derivative_equal_einsum(spec, callback):
    rng = np.random.default_rng(len(spec))
    out = spec.split("->")[1]
    with precision("float64"):
        a, b = (jnp.asarray(v) for v in operands(spec, rng, np.float64))
        G = jnp.asarray(rng.standard_normal([SIZES[ch] for ch in out]))
        C = jax.jit(lambda a, b: contract(spec, a, b))(a, b)
        assert C.dtype == jnp.float64
        assert rel(C, np.einsum(spec, np.asarray(a), np.asarray(b))) <= 1e-14
        # reverse mode: the custom VJP's BLAS products against JAX's derivative of einsum
        grad = jax.jit(jax.grad(lambda a, b: jnp.sum(contract(spec, a, b) * G), argnums=(0, 1)))
        want = jax.grad(lambda a, b: jnp.sum(jnp.einsum(spec, a, b) * G), argnums=(0, 1))(a, b)
        for got, w in zip(grad(a, b), want):
            assert got.shape == w.shape and rel(got, w) <= 1e-14
        # vmap (the sharded meta-gradient maps the loss over genomes): one operand mapped
        A = jnp.stack([a, 2 * a, -a])
        got = jax.vmap(lambda a: contract(spec, a, b))(A)
        assert rel(got, np.stack([np.einsum(spec, np.asarray(x), np.asarray(b)) for x in A])) <= 1e-14
    a32, b32 = operands(spec, rng, np.float32)
    C32 = jax.jit(lambda a, b: contract(spec, a, b))(a32, b32)
    assert C32.dtype == jnp.float32 and rel(C32, np.einsum(spec, a32.astype(float), b32.astype(float))) <= 1e-5


def network(tied: bool):
    return {"k": 2, "seed": 1,
            "populations": [{"name": "in", "size": 3, "role": "input"},
                            {"name": "h", "size": 4, "role": "hidden", "forward_activation": "tanh",
                             "normalization": "both"},
                            {"name": "out", "size": 2, "role": "output"}],
            "projections": [{"from": "in", "to": "h"}, {"from": "h", "to": "out", "genome": "g1"},
                            {"from": "in", "to": "out", "bias": False}],
            "rules": {"oja": "weights", "saturation": True, "tied": tied}}


@pytest.mark.parametrize("tied", [False, True])
def test_step_on_blas_products_equals_the_simulator_and_the_xla_route(tied):
    prog = compile_network(load_network(network(tied)))
    gens = [random_genome(k=2, seed=s, groups=["default", "g1"]) for s in (1, 2)]
    for g in gens:
        g.groups["g1"].oja_alpha = 0.2
    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(5, 3)), rng.integers(0, 2, 5)) for _ in range(3)]
    sim = Simulator(prog, backend="numpy", dtype="float64")
    xla, blas = JaxSimulator(prog, "float64"), JaxSimulator(prog, "float64", products="blas")
    assert (xla.products, blas.products) == ("xla", "blas")
    g_np, g_x, g_b = sim.prepare(gens), xla.prepare(gens), blas.prepare(gens)
    s_np, s_x, s_b = sim.init_synapses(g_np, 2, 5), xla.init_synapses(g_x, 2, 5), blas.init_synapses(g_b, 2, 5)
    for x, y in batches:
        sim.train_step(s_np, g_np, x, y)
        xla.train_step(s_x, g_x, x, y)
        blas.train_step(s_b, g_b, x, y)
    for q in range(len(prog.projs)):
        for w in "WbV":
            want = s_np.get(q, w)
            if want is not None:
                assert rel(s_b.get(q, w), want) <= 1e-12, f"{w}[{q}] vs the simulator"
                assert rel(s_b.get(q, w), s_x.get(q, w)) <= 1e-12, f"{w}[{q}] vs the XLA route"
    xq = rng.normal(size=(6, 3))
    for a, b in zip(blas.forward(s_b, g_b, xq), sim.forward(s_np, g_np, xq)):
        assert rel(a, b) <= 1e-12


#: The tiny experiment of tests/test_meta_gradient.py (Oja, saturation, init_scale, two groups,
#: a one-neuron output): untied synapses, every product of the step in the unroll; one training
#: task here (one compiled unroll).
EXPERIMENT = {**test_meta_gradient.EXPERIMENT,
              "training_tasks": [{"name": "xor", "options": {"n_train": 64, "n_test": 64}}]}


def test_meta_gradient_on_blas_products_is_exact():
    """The BLAS route's meta-gradient against the XLA route's, the complex step and the central
    differences of the NumPy simulator; and the comparison is sensitive: the complex step at a
    genome moved by 1e-3 in one entry is far from it."""
    setup = prepare_experiment(EXPERIMENT)
    proto, seeds, x = setup.train_protocol(0), [11], setup.x0
    blas = MetaObjective(setup, dtype="float64", products="blas")
    assert blas.products == "blas"
    l_b, g_b, m_b = blas.value_and_grad(x, seeds, proto)
    l_x, g_x, _ = MetaObjective(setup, dtype="float64").value_and_grad(x, seeds, proto)
    assert m_b["finite"] and abs(l_b - l_x) <= 1e-13 * abs(l_x) and rel(g_b, g_x) <= 1e-12
    assert abs(l_b - simulator_losses(setup, x[None, :], seeds, proto)[0]) <= 1e-12 * abs(l_b)
    cs = complex_step_gradient(setup, x, seeds, proto)
    assert np.abs(cs).max() > 1e-3  # not a trivial gradient
    assert rel(g_b, cs) <= TOL, f"vs complex step: {rel(g_b, cs):.3g}"
    fd = central_difference_gradient(setup, x, seeds, proto)
    assert rel(g_b, fd) <= TOL, f"vs central differences: {rel(g_b, fd):.3g}"
    moved = x.copy()
    moved[np.argmax(np.abs(cs))] += 1e-3
    assert rel(g_b, complex_step_gradient(setup, moved, seeds, proto)) > TOL


@pytest.mark.slow
def test_meta_gradient_on_blas_products_passes_the_gradient_agreement_check():
    """The full check of tests/test_meta_gradient.py (complex step, central differences, mutants
    of every searched field) with the BLAS route."""
    setup = prepare_experiment(EXPERIMENT)
    res = agreement(MetaObjective(setup, dtype="float64", products="blas"), setup.x0, [11], setup.train_protocol(0))
    assert res["jax_vs_cs"] <= TOL and res["jax_vs_fd"] <= TOL, res
    assert not res["trivial"] and res["mutant"] > TOL


def test_product_route_from_the_environment_and_bad_routes(monkeypatch):
    prog = compile_network(load_network(network(False)))
    with pytest.raises(SpecError, match="products") as e:
        JaxSimulator(prog, products="mkl")
    assert "\n" not in str(e.value)
    cpu = jax.devices()[0].platform == "cpu"
    monkeypatch.delenv("BLURSIM_JAX_PRODUCTS", raising=False)
    assert resolve_products(None) == "xla" and JaxSimulator(prog).products == "xla"
    assert resolve_products("blas") == ("blas" if cpu else "xla")
    monkeypatch.setenv("BLURSIM_JAX_PRODUCTS", "blas")  # what a gradient meta-training run reads
    assert JaxSimulator(prog).products == ("blas" if cpu else "xla")
    assert JaxSimulator(prog, products="xla").products == "xla"
    from blursim.meta.gradient_step import default_objective

    assert default_objective(prepare_experiment(EXPERIMENT)).products == ("blas" if cpu else "xla")
    monkeypatch.setenv("BLURSIM_JAX_PRODUCTS", "gpu")
    with pytest.raises(SpecError, match="BLURSIM_JAX_PRODUCTS"):
        JaxSimulator(prog)
