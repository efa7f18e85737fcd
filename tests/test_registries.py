"""Registry contracts: every registered activation, connectivity kind and feedback kind.

Parametrised over the registries' names, so a newly registered entry is
exercised automatically: it must run in a small network and give finite
outputs for a moderate genome. Activations are also checked against
textbook formulas written here, and for complex-step safety.
"""

from __future__ import annotations

import cmath
import copy
import math

import numpy as np
import pytest

from conftest import all_synapses, chain_spec

from blursim.errors import SpecError
from blursim.genome import PRESETS, random_genome
from blursim.graph import compile_network
from blursim.graph.connectivity import CONNECTIVITY
from blursim.registry import Registry
from blursim.sim import ACTIVATIONS, FEEDBACK, Simulator
from blursim.spec import SCHEMAS, load_network
from blursim.vocab.activations import INPLACE

GENERAL = {"tied": False, "shared_channels": False, "feedback": "target",
           "backward_update": "additive"}


def simulator(spec_dict, dtype="float64"):
    prog = compile_network(load_network(copy.deepcopy(spec_dict)))
    return prog, Simulator(prog, backend="numpy", dtype=dtype)




# ---------------------------------------------------------- every entry runs


def _contract_net(hidden_act="tanh", output_act="tanh", feedback="target", conn=None, grids=None,
                  sizes=(4, 4, 3)):
    spec = chain_spec(*sizes, 2, dict(GENERAL, feedback=feedback), conn1=conn, conn2=conn,
                      forward_activation=hidden_act, backward_activation=hidden_act)
    spec["populations"][2]["forward_activation"] = output_act
    if grids:
        for p, g in zip(spec["populations"], grids):
            p["grid"] = list(g)
    return spec


def _runs(spec, n_in, n_out):
    prog, sim = simulator(spec)
    genes = sim.prepare([random_genome(k=2, seed=2, scale=0.3, lr=0.01)])
    state = sim.init_synapses(genes, replicas=2, seed=0)
    before = [w.copy() for w in all_synapses(sim, state)]
    rng = np.random.default_rng(1)
    for _ in range(3):
        sim.train_step(state, genes, rng.normal(size=(5, n_in)), rng.integers(0, n_out, 5))
    out = sim.forward(state, genes, rng.normal(size=(7, n_in)))
    assert out[0].shape == (1, 2, 7, n_out)
    assert np.isfinite(out[0]).all()
    assert all(np.isfinite(w).all() for w in all_synapses(sim, state))
    return before, all_synapses(sim, state)


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_every_activation_runs(name):
    before, after = _runs(_contract_net(hidden_act=name, output_act=name), 4, 3)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, after))


CONNECTIVITY_EXAMPLES = {
    "all_to_all": ({"kind": "all_to_all"}, None),
    "one_to_one": ({"kind": "one_to_one"}, None),
    "fixed_probability": ({"kind": "fixed_probability", "p": 0.5}, None),
    "from_list": ({"kind": "from_list", "edges": [[0, 1], [1, 0], [3, 2], [2, 3]]}, None),
    "local2d": ({"kind": "local2d", "radius": 1.5}, [(2, 2), (2, 2), (2, 2)]),
    "block_random": ({"kind": "block_random", "block": [2, 2], "p": 0.7, "seed": 4}, None),
}


@pytest.mark.parametrize("name", CONNECTIVITY.names())
def test_every_connectivity_kind_runs(name):
    if name not in CONNECTIVITY_EXAMPLES:
        pytest.fail(f"connectivity kind {name!r} has no example in CONNECTIVITY_EXAMPLES; add one")
    conn, grids = CONNECTIVITY_EXAMPLES[name]
    before, after = _runs(_contract_net(conn=conn, grids=grids, sizes=(4, 4, 4)), 4, 4)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, after))


@pytest.mark.parametrize("name", FEEDBACK.names())
def test_every_feedback_kind_runs(name):
    before, after = _runs(_contract_net(feedback=name), 4, 3)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, after))


def _sig(x):
    return 1.0 / (1.0 + math.exp(-x))


#: Textbook formulas, written independently of blursim.vocab.activations.
FORMULAS = {
    "identity": lambda x: x,
    "one": lambda x: 1.0,
    "zero": lambda x: 0.0,
    "tanh": math.tanh,
    "tanh_derivative": lambda x: 1.0 / math.cosh(x) ** 2,
    "sigmoid": _sig,
    "sigmoid_derivative": lambda x: _sig(x) * (1 - _sig(x)),
    "relu": lambda x: max(x, 0.0),
    "relu_derivative": lambda x: 1.0 if x > 0 else 0.0,
    "relu_tanh": lambda x: max(math.tanh(x), 0.0),
    "leaky_relu": lambda x: x if x > 0 else 0.01 * x,
    "softplus": lambda x: math.log(1.0 + math.exp(x)),
    "softplus_derivative": _sig,
    "sin": math.sin,
    "hard_tanh": lambda x: min(max(x, -1.0), 1.0),
}

POINTS = [-3.0, -1.3, -0.4, 0.25, 0.9, 2.2, 4.0]


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_activation_matches_formula(name):
    fn = ACTIVATIONS.get(name)
    x = np.array(POINTS)
    got = fn(x, np)
    want = np.array([FORMULAS[name](v) for v in POINTS])
    np.testing.assert_allclose(np.broadcast_to(got, x.shape), want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(INPLACE))
def test_inplace_activation_matches_formula_and_registered(name, dtype):
    """The simulator's in-place kernels (real dtypes): the textbook formula, the registered function's
    values, and the same zero for NaN inputs of relu and its derivative."""
    assert name in ACTIVATIONS
    x = np.array(POINTS + [0.0], dtype=dtype).reshape(2, 4)
    got = x.copy()
    INPLACE[name](got, np)
    want = np.array([FORMULAS[name](float(v)) for v in x.ravel()]).reshape(x.shape)
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-7)
    np.testing.assert_array_equal(got, np.broadcast_to(ACTIVATIONS.get(name)(x, np), x.shape))
    if name in ("relu", "relu_derivative", "relu_tanh"):
        nan = np.full(3, np.nan, dtype)
        INPLACE[name](nan, np)
        np.testing.assert_array_equal(nan, 0)


def test_every_activation_has_a_reference_formula():
    missing = sorted(set(ACTIVATIONS.names()) - set(FORMULAS))
    assert not missing, f"add the formula of {missing} to FORMULAS in this file"


def A(name, v):
    """Activation ``name`` at the point ``v``."""
    return float(np.broadcast_to(ACTIVATIONS.get(name)(np.array([v]), np), (1,))[0])


def test_activation_anchor_values():
    assert A("sigmoid", 0.0) == 0.5
    assert A("tanh_derivative", 0.0) == 1.0
    assert A("sigmoid_derivative", 0.0) == 0.25
    assert A("relu_tanh", -1.0) == 0.0
    assert A("relu_tanh", 1.0) == pytest.approx(math.tanh(1.0), rel=1e-15)
    assert A("softplus", 0.0) == pytest.approx(math.log(2.0), rel=1e-15)
    assert A("softplus", 800.0) == pytest.approx(800.0)  # no overflow
    assert A("softplus", -800.0) == pytest.approx(0.0, abs=1e-300)
    assert A("hard_tanh", 5.0) == 1.0 and A("hard_tanh", -5.0) == -1.0
    assert A("leaky_relu", -2.0) == pytest.approx(-0.02)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_activation_complex_step(name):
    """Im f(x + ih)/h equals the numerical derivative (points away from kinks)."""
    fn = ACTIVATIONS.get(name)
    h = 1e-20
    for x in POINTS:
        z = np.array([complex(x, h)])
        got = np.broadcast_to(fn(z, np), (1,))[0]
        assert abs(np.real(got) - FORMULAS[name](x)) <= 1e-12 * max(1.0, abs(FORMULAS[name](x)))
        dstep = np.imag(got) / h
        e = 1e-6
        dnum = (FORMULAS[name](x + e) - FORMULAS[name](x - e)) / (2 * e)
        assert dstep == pytest.approx(dnum, rel=1e-6, abs=1e-8), (name, x)
    assert cmath.isfinite(complex(np.broadcast_to(fn(np.array([0.3 + 1e-20j]), np), (1,))[0]))


# ------------------------------------------------------- registry behaviour


@pytest.mark.parametrize("registry", [ACTIVATIONS, CONNECTIVITY, FEEDBACK, PRESETS, SCHEMAS],
                         ids=lambda r: r.kind)
def test_unknown_name_lists_sorted_choices(registry):
    with pytest.raises(SpecError) as info:
        registry.get("definitely_not_registered", path="$.somewhere")
    msg = str(info.value)
    assert msg.startswith("at $.somewhere: unknown ")
    listed = msg.split("Valid choices: ")[1].rstrip(".").split(", ")
    assert listed == sorted(registry.names())


@pytest.mark.parametrize("registry", [ACTIVATIONS, CONNECTIVITY, FEEDBACK, PRESETS, SCHEMAS],
                         ids=lambda r: r.kind)
def test_every_entry_is_documented(registry):
    docs = registry.describe()
    assert list(docs) == registry.names() and len(registry) > 0
    for name, doc in docs.items():
        assert doc.strip(), f"{registry.kind} {name!r} has no documentation line"


def test_registry_semantics():
    reg = Registry("widget")
    reg.register("a", 1, doc="The a widget.\nMore text.")

    @reg.register("b")
    def b():
        """The b widget."""

    assert reg.names() == ["a", "b"] and "a" in reg and "c" not in reg and len(reg) == 2
    assert reg.get("a") == 1 and reg.get("b") is b
    assert reg.describe() == {"a": "The a widget.", "b": "The b widget."}
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 2)
    assert reg.get("a") == 1


def test_known_entries_are_registered():
    """The names the paper, DESIGN and the example specs rely on."""
    assert {"identity", "one", "tanh", "tanh_derivative", "sigmoid", "sigmoid_derivative",
            "relu_tanh", "softplus", "softplus_derivative"} <= set(ACTIVATIONS.names())
    assert {"all_to_all", "one_to_one", "fixed_probability", "from_list", "local2d",
            "block_random"} <= set(CONNECTIVITY.names())
    assert {"target", "error_mse", "error_softmax"} <= set(FEEDBACK.names())
    assert {"backprop", "random"} <= set(PRESETS.names())
    assert {"network", "genome"} <= set(SCHEMAS.names())
