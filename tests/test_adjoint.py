"""The NumPy meta-gradient (blursim.sim.adjoint, engine "numpy") against references it does not share.

- the loss and gradient of :func:`blursim.sim.adjoint.meta_loss_and_grad` against JAX's autodiff of
  the reference step (:func:`blursim.meta.objective._loss`, float64, 1e-10 relative), on tiny
  networks under many rule sets. JAX runs here with ``jax.disable_jit()``: op by op, so that each
  rule set costs no XLA compilation of its own (the primitives' kernels are cached by shape and
  shared by every case on one topology);
- :class:`MetaObjective` with ``engine="numpy"`` against the complex step and the central
  differences of the NumPy Simulator (:func:`blursim.testing.gradients.agreement`);
- a planted error (a wrong activation derivative) must be caught;
- float32 against JAX float32; engine resolution; ``value_and_grad_many``; a short gradient
  meta-training run on either engine.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings

from blursim.errors import SpecError
from blursim.genome import GenomeLayout, random_genome
from blursim.graph import compile_network
from blursim.sim import adjoint
from blursim.sim.jax_engine import scale_draws, unit_draws
from blursim.spec import load_network
from blursim.spec.genome import ALL_FIELDS, field_shape
from blursim.testing.gradients import gradient_cases

#: float64 agreement required of the adjoint with JAX (relative to the largest gradient entry).
TOL64 = 1e-10


# ------------------------------------------------------------------ networks
def chain(rules=None, *, hidden=None, out=None, k=2, sizes=(4, 5, 3)) -> dict:
    """in -> h -> out (the topology most rule sets run on; tanh somewhere on both passes)."""
    h = {"name": "h", "size": sizes[1], "role": "hidden", "forward_activation": "tanh",
         "backward_activation": "relu_tanh", **(hidden or {})}
    o = {"name": "out", "size": sizes[2], "role": "output", "forward_activation": "tanh",
         "backward_activation": "sigmoid", **(out or {})}
    return {"name": "chain", "k": k, "seed": 0,
            "populations": [{"name": "in", "size": sizes[0], "role": "input"}, h, o],
            "projections": [{"from": "in", "to": "h"}, {"from": "h", "to": "out"}],
            "rules": dict(rules or {})}


def dag(rules=None, *, k=3, recurrent=False) -> dict:
    """Two inputs, two outputs (one of them one neuron: logistic), two genome groups, a masked
    projection (fixed_probability), one without bias, a skip connection input -> output."""
    spec = {"name": "dag", "k": k, "seed": 1,
            "populations": [
                {"name": "in1", "size": 4, "role": "input"},
                {"name": "in2", "size": 4, "role": "input"},
                {"name": "h", "size": 4, "role": "hidden", "forward_activation": "tanh",
                 "backward_activation": ["tanh", "sin", "leaky_relu"][:k] + ["softplus"] * (k - 3),
                 "normalization": "backward"},
                {"name": "out", "size": 4, "role": "output", "forward_activation": "sigmoid",
                 "backward_activation": "identity", "genome": "g1"},
                {"name": "logit", "size": 1, "role": "output", "forward_activation": "identity",
                 "backward_activation": "tanh"}],
            "projections": [
                {"from": "in1", "to": "h", "connectivity": {"kind": "fixed_probability", "p": 0.6, "seed": 4}},
                {"from": "in2", "to": "h", "bias": False, "genome": "g1"},
                {"from": "h", "to": "out"},
                {"from": "h", "to": "logit", "genome": "g1"},
                {"from": "in2", "to": "logit"}],
            "rules": dict(rules or {})}
    if recurrent:  # and pathways: a direct feedback out -> h (backward pass only), in2 -> logit forward only
        spec["projections"] += [{"from": "h", "to": "h", "genome": "g1"},
                                {"from": "out", "to": "h", "pathway": "feedback"}]
        spec["projections"][4]["pathway"] = "forward"
    return spec


# ------------------------------------------------------------------ the two computations
def case_inputs(spec, *, kind="cross_entropy", T=2, R=2, Q=2, B=5, seed=0, fields=ALL_FIELDS):
    """A program, a genome (random, every searched field moved off its default), the layout, the
    vector ``x``, the data ``(xs, ys, xq, yq)`` and the unit draws of one tiny case."""
    prog = compile_network(load_network(copy.deepcopy(spec)))
    layout = GenomeLayout(prog.k, tuple(prog.groups), tuple(fields))
    base = random_genome(k=prog.k, seed=seed, groups=prog.groups, lr=0.05)
    rng = np.random.default_rng(seed + 100)
    x = layout.to_vector(base)
    x = x + 0.1 * rng.standard_normal(x.shape)
    F = prog.n_features
    xs, xq = rng.standard_normal((T, B, F)), rng.standard_normal((Q, B, F))
    if kind == "mse":
        n = prog.pops[prog.outputs[0]].size
        ys, yq = rng.uniform(-1, 1, (T, B, n)), rng.uniform(-1, 1, (Q, B, n))
    else:
        classes = min(max(2, prog.pops[o].size) for o in prog.outputs)
        ys, yq = rng.integers(0, classes, (T, B)), rng.integers(0, classes, (Q, B))
    return prog, layout, base, x, (xs, ys, xq, yq), unit_draws(prog, R, seed)


def jax_loss_and_grad(prog, layout, base, x, data, draws, *, kind="cross_entropy", dtype="float64", jit=False):
    """``(loss, accuracy, finite, gradient vector)`` by JAX's autodiff of the reference step
    (the JAX engine's meta-loss, :func:`blursim.meta.objective._loss`): op by op, or with
    ``jit`` the engine's compiled :func:`~blursim.meta.objective.loss_function` (one XLA
    compilation: cheaper than op by op for a single case)."""
    jax = pytest.importorskip("jax")
    from blursim.meta.objective import _loss, loss_arguments, loss_function
    from blursim.sim import jax_engine as je

    searched = "init_scale" in layout.fields
    batch = layout.matrix_to_batch(x[None], base)
    with je.precision(dtype):
        args = loss_arguments(prog, batch, x, data, draws, np.dtype(dtype), kind, searched)
        if jit:
            (loss, (acc, _, ok)), g = loss_function(prog, layout, kind, True, searched)(*args)
        else:
            with jax.disable_jit():
                (loss, (acc, _, ok)), g = jax.value_and_grad(_loss(prog, layout, kind, searched), has_aux=True)(*args)
    return float(loss), float(acc), bool(ok), np.asarray(g, dtype=np.float64)


def numpy_loss_and_grad(prog, layout, base, x, data, draws, *, kind="cross_entropy", dtype="float64",
                        remat=None):
    """The same by :func:`blursim.sim.adjoint.meta_loss_and_grad`; the per-field gradients laid
    out here (group, field, row-major) as :class:`GenomeLayout` orders the vector."""
    batch = layout.matrix_to_batch(x[None], base)
    searched = "init_scale" in layout.fields
    genome = {g: {f: np.asarray(v[0]) for f, v in batch.arrays[g].items()} for g in prog.groups}
    s0 = scale_draws(prog, draws, {g: batch.arrays[g]["init_scale"] for g in prog.groups}, np.dtype(dtype))
    xs, ys, xq, yq = data
    cast = (lambda a: np.asarray(a, dtype=dtype)) if kind == "mse" else np.asarray
    loss, grads, (acc, metric, ok) = adjoint.meta_loss_and_grad(
        prog, genome, s0, np.asarray(xs, dtype=dtype), cast(ys), np.asarray(xq, dtype=dtype), cast(yq),
        kind=kind, dtype=dtype, draws=draws if searched else None, remat=remat)
    assert metric == loss
    parts = []
    for g in layout.groups:
        for f in layout.fields:
            n = int(np.prod(field_shape(f, layout.k)))
            parts.append(np.asarray(grads[g][f], dtype=np.float64).reshape(-1) if g in grads else np.zeros(n))
    return float(loss), float(acc), bool(ok), np.concatenate(parts)


def rel(a, b) -> float:
    """``max|a - b| / max|b|``."""
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def compare(spec, **kw):
    """``(numpy result, jax result, case inputs)`` of one case."""
    kind, dtype = kw.pop("kind", "cross_entropy"), kw.pop("dtype", "float64")
    inputs = case_inputs(spec, kind=kind, **kw)
    got = numpy_loss_and_grad(*inputs, kind=kind, dtype=dtype)
    want = jax_loss_and_grad(*inputs, kind=kind, dtype=dtype)
    return got, want, inputs


# ------------------------------------------------------------------ 1. against JAX, float64
#: Rule sets on the chain (one topology: JAX's op kernels are shared by all of them).
CHAIN_RULES = {
    "default": {},
    "tied": {"tied": True},
    "frozen": {"backward_synapses": "frozen"},
    "oja_weights": {"oja": "weights"},
    "oja_activity_batch_mean": {"oja": "activity", "batch_reduction": "mean"},
    "saturation": {"saturation": True},
    "synapse_norm_activations": {"synapse_normalization": "activations"},
    "synapse_norm_stored": {"synapse_normalization": "stored"},
    "persistent_states": {"reset_neurons": False},
    "multiplicative": {"backward_update": "multiplicative"},
    "multiplicative_second_state": {"backward_update": "multiplicative_second_state"},
    "error_mse": {"feedback": "error_mse"},
    "error_softmax": {"feedback": "error_softmax"},
    "onehot_targets": {"target_coding": "onehot"},
    "shared_mean": {"shared_channels": True},
    "shared_channel0_tied": {"shared_channels": True, "shared_update": "channel0", "tied": True},
    "synchronous_2_sweeps": {"schedule": "synchronous", "sweeps": 2},
    "tied_oja_saturation_stored": {"tied": True, "oja": "weights", "saturation": True,
                                   "synapse_normalization": "stored", "reset_neurons": False},
    "mirror": {"backward_synapses": "mirror"},
    "mirror_oja_saturation_mean": {"backward_synapses": "mirror", "oja": "weights", "saturation": True,
                                   "batch_reduction": "mean"},
}
#: Population changes on the chain: the normalisation N on both passes, per-state activation lists.
CHAIN_POPS = {
    "normalization_both": ({"normalization": "both"}, {"normalization": "forward"}),
    "activation_lists": ({"forward_activation": ["sigmoid", "tanh_derivative", "relu_tanh"],
                          "backward_activation": ["softplus", "hard_tanh", "one"]},
                         {"forward_activation": ["sin", "softplus_derivative", "identity"],
                          "backward_activation": ["sigmoid_derivative", "relu", "leaky_relu"]}),
}
#: Every chain case: three states, equal tiny sizes (JAX's op kernels, cached by shape, serve more
#: cases; a mixed-up axis still shows, as wrong values rather than a shape error).
CHAIN = {"k": 3, "sizes": (4, 4, 4)}
CASE = {"T": 2, "R": 2, "Q": 2, "B": 4}


def assert_agrees(got, want, tol=TOL64):
    (l1, a1, ok1, g1), (l2, a2, ok2, g2) = got, want
    assert ok1 and ok2
    assert abs(l1 - l2) <= tol * abs(l2), (l1, l2)
    if not np.isnan(a2):
        assert abs(a1 - a2) <= 1e-12, (a1, a2)
    assert np.abs(g2).max() > 1e-2  # a gradient to compare, not zeros
    assert g1.shape == g2.shape and rel(g1, g2) <= tol, f"gradient off by {rel(g1, g2):.3g} relative"


_JAX_DEFAULT = {}


def default_case():
    """The chain's default rules: the inputs and JAX's result (computed once, kept)."""
    if not _JAX_DEFAULT:
        inputs = case_inputs(chain(**CHAIN), **CASE)
        _JAX_DEFAULT["inputs"], _JAX_DEFAULT["jax"] = inputs, jax_loss_and_grad(*inputs)
    return _JAX_DEFAULT["inputs"], _JAX_DEFAULT["jax"]


@pytest.mark.parametrize("name", list(CHAIN_RULES))
def test_chain_rules_equal_jax(name):
    if name == "default":
        inputs, want = default_case()
        assert_agrees(numpy_loss_and_grad(*inputs), want)
        return
    got, want, _ = compare(chain(CHAIN_RULES[name], **CHAIN), **CASE)
    assert_agrees(got, want)


@pytest.mark.parametrize("name", list(CHAIN_POPS))
def test_chain_populations_equal_jax(name):
    hidden, out = CHAIN_POPS[name]
    got, want, _ = compare(chain(hidden=hidden, out=out, **CHAIN), **CASE)
    assert_agrees(got, want)


def test_mse_with_target_vectors_equals_jax():
    got, want, _ = compare(chain({"feedback": "error_mse"}, **CHAIN), kind="mse", **CASE)
    assert np.isnan(got[1]) and np.isnan(want[1])
    assert_agrees(got, want)


#: The DAG's rule sets (its genome vector leaves init_scale out: no draws given to the adjoint).
DAG_RULES = {
    "default": {},
    "tied_error_softmax": {"tied": True, "feedback": "error_softmax"},
}
DAG_FIELDS = ("f", "eta", "f_tilde", "eta_tilde", "nu", "mu", "nu_tilde", "mu_tilde", "norm_gain", "norm_shift",
              "oja_alpha", "saturation")


@pytest.mark.parametrize("name", list(DAG_RULES))
def test_dag_equals_jax(name):
    got, want, _ = compare(dag(DAG_RULES[name]), fields=DAG_FIELDS, **CASE)
    assert_agrees(got, want)


def test_recurrent_synchronous_persistent_equals_jax():
    """The DAG with a recurrent projection h -> h, a feedback-only and a forward-only pathway, two
    synchronous sweeps, states kept from step to step, error feedback, the activity form of Oja's
    term and saturation."""
    rules = {"schedule": "synchronous", "sweeps": 2, "reset_neurons": False, "feedback": "error_mse",
             "oja": "activity", "saturation": True}
    got, want, _ = compare(dag(rules, recurrent=True), fields=DAG_FIELDS, **CASE)
    assert_agrees(got, want)


# ------------------------------------------------------------------ 3. a planted error is caught
def test_a_wrong_activation_derivative_is_caught(monkeypatch):
    """tanh' replaced by a wrong function (``1 - |y|``): the loss is unchanged (the forward pass
    does not read derivatives), the gradient must disagree with JAX's by far more than TOL64."""
    inputs, want = default_case()
    # the table of derivatives (the in-place form, which tanh uses first, taken away) ...
    monkeypatch.delitem(adjoint.IN_PLACE_DERIVATIVES, "tanh")
    monkeypatch.setitem(adjoint.ACTIVATION_DERIVATIVES, "tanh", lambda x, y: 1 - np.abs(y))
    got = numpy_loss_and_grad(*inputs)
    assert abs(got[0] - want[0]) <= TOL64 * abs(want[0])
    assert rel(got[3], want[3]) > 1e3 * TOL64
    monkeypatch.undo()
    # ... and the in-place form itself
    monkeypatch.setitem(adjoint.IN_PLACE_DERIVATIVES, "tanh", lambda y, d: d * (1 - np.abs(y)))
    got = numpy_loss_and_grad(*inputs)
    assert abs(got[0] - want[0]) <= TOL64 * abs(want[0])
    assert rel(got[3], want[3]) > 1e3 * TOL64


# ------------------------------------------------------------------ 4. float32
def test_float32_is_the_exact_gradient_rounded():
    """The adjoint in float32 against JAX in float32 and against the float64 gradient: within
    float32 rounding (1e-4 relative), and not the float64 computation (it differs from it)."""
    inputs, want64 = default_case()
    got = numpy_loss_and_grad(*inputs, dtype="float32")
    want = jax_loss_and_grad(*inputs, dtype="float32", jit=True)
    for ref in (want, want64):
        assert abs(got[0] - ref[0]) <= 1e-5 * abs(ref[0])
        assert rel(got[3], ref[3]) <= 1e-4, rel(got[3], ref[3])
    assert got[0] != want64[0] and rel(got[3], want64[3]) > 1e-12  # float32 rounding happened


# ------------------------------------------------------------------ MetaObjective(engine="numpy")
@pytest.fixture(scope="module")
def experiment():
    """test_meta_gradient's EXPERIMENT (Oja, saturation, init_scale, two groups, a logistic output)."""
    pytest.importorskip("jax")
    import test_meta_gradient

    return test_meta_gradient


@pytest.fixture(scope="module")
def setup(experiment):
    from blursim.meta import prepare_experiment

    return prepare_experiment(experiment.EXPERIMENT)


def test_numpy_objective_agrees_with_complex_step_and_differences(experiment, setup):
    """:func:`agreement` (complex step and central differences of the NumPy Simulator, the
    mutant check) on the numpy engine, through test_meta_gradient's own ``check``."""
    from blursim.meta.objective import MetaObjective
    from blursim.testing.gradients import agreement

    obj = MetaObjective(setup, dtype="float64", engine="numpy")
    assert obj.engine == "numpy"
    res = agreement(obj, setup.x0, experiment.SEEDS, setup.train_protocol(0))
    experiment.check(res)
    assert not res["trivial"] and res["finite"] and res["dim"] == 2 * 13


@settings(max_examples=4)
@given(case=gradient_cases())
def test_numpy_objective_agrees_on_drawn_experiments(case, experiment, tmp_path_factory):
    """The same on drawn tiny experiments (random DAGs, rules, activations, genome fields and
    groups, replicas; :func:`blursim.testing.gradients.gradient_cases`) the adjoint supports."""
    from blursim.meta.objective import MetaObjective
    from blursim.testing.gradients import agreement, prepare_case

    setup = prepare_case(case, tmp_path_factory.mktemp("g"))
    assume(all(adjoint.unsupported(p) is None for p in setup.programs))
    obj = MetaObjective(setup, dtype="float64", engine="numpy")
    res = agreement(obj, setup.x0, case["seeds"], setup.train_protocol(0))
    # a (nearly) vanishing gradient has nothing to compare relatively: its entries are rounding
    # noise of the loss (e.g. 3e-18 against an exact 0 on a loss of 0.69; JAX's is the same noise)
    assume(res["scale"] > 1e-6)
    experiment.check(res, drawn=True)


def test_value_and_grad_many_is_each_value_and_grad(setup):
    """Several genomes and seeds at once equal one at a time (in another objective, another
    order): nothing of one evaluation leaks into the next (draw caches, kept arrays)."""
    from blursim.meta.objective import MetaObjective

    rng = np.random.default_rng(3)
    xs = [setup.x0 + 0.05 * rng.standard_normal(setup.layout.size) for _ in range(3)]
    seeds = [[11, 12], [11, 12], [5, 6]]
    proto = setup.train_protocol(0)
    many = MetaObjective(setup, dtype="float64", engine="numpy").value_and_grad_many(xs, seeds, proto)
    one = MetaObjective(setup, dtype="float64", engine="numpy")
    each = [one.value_and_grad(x, s, proto) for x, s in reversed(list(zip(xs, seeds)))][::-1]
    assert len(many) == 3
    for (l1, g1, m1), (l2, g2, m2) in zip(many, each):
        assert l1 == l2 and np.array_equal(g1, g2) and np.array_equal(m1["accuracy"], m2["accuracy"])
    assert many[0][0] != many[1][0] and not np.array_equal(many[0][1], many[2][1])


# ------------------------------------------------------------------ 5. engine resolution
def _user_activation(x, xp):
    """A user's activation: the reverse pass has no derivative of it."""
    return xp.tanh(x) * 0.5


@pytest.fixture
def user_activation(monkeypatch):
    """``my_act`` registered for the test only (the registry's own dict, restored afterwards)."""
    from blursim.vocab.activations import ACTIVATIONS

    monkeypatch.setitem(ACTIVATIONS._items, "my_act", _user_activation)
    monkeypatch.setitem(ACTIVATIONS._docs, "my_act", "a test's activation")
    return "my_act"


def user_setup(experiment, name):
    from blursim.meta import prepare_experiment

    exp = copy.deepcopy(experiment.EXPERIMENT)
    exp["network"]["populations"][1]["forward_activation"] = name
    return prepare_experiment(exp)


def test_engine_resolution(experiment, setup, monkeypatch, user_activation):
    from blursim.meta.objective import MetaObjective

    monkeypatch.delenv("BLURSIM_META_ENGINE", raising=False)
    mine = user_setup(experiment, user_activation)
    with pytest.raises(SpecError, match="my_act"):
        MetaObjective(mine, dtype="float64", engine="numpy")
    auto = MetaObjective(mine, dtype="float64", engine="auto")
    assert auto.engine == "jax" and "my_act" in auto.engine_note
    assert MetaObjective(mine, dtype="float64").engine == "jax"  # the default is auto
    assert MetaObjective(setup, dtype="float64", engine="jax").engine == "jax"
    # auto on the tiny experiment: JAX, since its steps are below the size where NumPy is faster
    small = MetaObjective(setup, dtype="float64")
    assert small.engine == "jax" and "small" in small.engine_note
    for bad in ("numba", "NumPy"):
        with pytest.raises(SpecError, match="engine"):
            MetaObjective(setup, dtype="float64", engine=bad)
    # the environment, when no engine is given
    monkeypatch.setenv("BLURSIM_META_ENGINE", "numpy")
    assert MetaObjective(setup, dtype="float64").engine == "numpy"
    with pytest.raises(SpecError, match="my_act"):
        MetaObjective(mine, dtype="float64")
    monkeypatch.setenv("BLURSIM_META_ENGINE", "jax")
    assert MetaObjective(setup, dtype="float64").engine == "jax"
    assert MetaObjective(setup, dtype="float64", engine="numpy").engine == "numpy"  # the argument wins
    monkeypatch.setenv("BLURSIM_META_ENGINE", "fast")
    with pytest.raises(SpecError, match="BLURSIM_META_ENGINE"):
        MetaObjective(setup, dtype="float64")


def test_unsupported_names_the_reason(user_activation):
    assert adjoint.unsupported(compile_network(load_network(chain(**CHAIN)))) is None
    # Kolen-Pollack's mirrored update has its derivative (checked against JAX above)
    assert adjoint.unsupported(compile_network(load_network(chain({"backward_synapses": "mirror"}, **CHAIN)))) is None
    reason = adjoint.unsupported(compile_network(load_network(chain(hidden={"forward_activation": user_activation},
                                                                      **CHAIN))))
    assert reason is not None and user_activation in reason


# ------------------------------------------------------------------ 7. gradient meta-training
def test_gradient_meta_training_is_the_same_on_both_engines(monkeypatch):
    """A short gradient run (float64) with BLURSIM_META_ENGINE=numpy and =jax: the same
    meta-losses and gradient norms in every record (the genome moves by the gradient, so a
    wrong gradient would also change the later losses)."""
    pytest.importorskip("jax")
    pytest.importorskip("optax")
    from test_gradient_training import gradient_experiment

    from blursim.meta import meta_train, prepare_experiment

    exp = gradient_experiment({"learning_rate": 0.05}, generations=2, validation_tasks=[],
                              execution={"dtype": "float64"})
    records = {}
    for engine in ("numpy", "jax"):
        monkeypatch.setenv("BLURSIM_META_ENGINE", engine)
        records[engine] = meta_train(prepare_experiment(exp), plot=False).records
    a, b = records["numpy"], records["jax"]
    assert len(a) == len(b) == 3
    for ra, rb in zip(a[1:], b[1:]):
        la, lb = np.asarray(ra["meta_loss"]["runs"]), np.asarray(rb["meta_loss"]["runs"])
        assert la.size and np.all(np.isfinite(la)) and np.allclose(la, lb, rtol=1e-9, atol=0), (la, lb)
        assert np.allclose(ra["grad_norm"]["runs"], rb["grad_norm"]["runs"], rtol=1e-9, atol=0)


# ------------------------------------------------------------------ MetaLoss(engine=...)
def test_meta_loss_on_the_numpy_engine_equals_jax():
    """blursim.meta.loss.MetaLoss (a network, a vector, arrays) computes the same loss and gradient
    on both engines (float64), on the example spec mlp_2d with two replicas."""
    pytest.importorskip("jax")
    from blursim.meta.loss import MetaLoss

    rng = np.random.default_rng(0)
    out = {}
    for engine in ("numpy", "jax"):
        ml = MetaLoss(Path(__file__).resolve().parent.parent / "specs" / "mlp_2d.json", dtype="float64",
                      engine=engine)
        F = ml.program.n_features
        xs, xq = rng.standard_normal((3, 8, F)), rng.standard_normal((2, 8, F))
        ys, yq = rng.integers(0, 2, (3, 8)), rng.integers(0, 2, (2, 8))
        rng = np.random.default_rng(0)  # the same arrays for the second engine
        out[engine] = ml.value_and_grad(ml.x0 + 0.01, xs, ys, xq, yq, ml.initial_synapses(0, replicas=2))
    (ln, gn, mn), (lj, gj, mj) = out["numpy"], out["jax"]
    assert abs(ln - lj) <= TOL64 * abs(lj) and mn == mj
    assert rel(gn, gj) <= TOL64 and np.abs(gj).max() > 1e-3


# ------------------------------------------------------------------ recomputation
@pytest.mark.parametrize("rules", [{}, {"reset_neurons": False, "synapse_normalization": "stored", "oja": "weights"}])
def test_recomputing_each_step_gives_the_same_bits(rules):
    """``remat=True`` (each step's tape rebuilt in the reverse pass, what the engine does above
    REMAT_BYTES of tape) against the kept tape: the same loss and gradient, bit for bit -- kept
    states and stored normalisation included (they cross the steps)."""
    inputs = case_inputs(chain(rules, **CHAIN), **CASE)
    kept = numpy_loss_and_grad(*inputs, remat=False)
    again = numpy_loss_and_grad(*inputs, remat=True)
    assert kept[0] == again[0] and np.array_equal(kept[3], again[3]) and np.abs(kept[3]).max() > 1e-3
    # the estimate that decides it grows with the unroll and the network
    prog = inputs[0]
    assert adjoint.tape_bytes(prog, 2, 4, 20, "float64") == 2 * adjoint.tape_bytes(prog, 2, 4, 10, "float64") > 0
