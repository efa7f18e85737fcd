"""Parity of the pure BLUR step (blursim.sim.reference) with the Simulator, property-based.

On Hypothesis-drawn networks (random DAGs with skip connections, recurrent
graphs under the synchronous schedule, every connectivity kind, k = 2..4),
rules (every option of ``Rules``, via the public ``rules()`` strategy),
genomes (two genome groups, optional fields set or left out, negative
``eta_tilde``), ``S`` species and ``R`` replicas, and the Simulator's three
sparse storages, the Simulator runs 3-5 training steps in float64 and then
evaluates a query batch. Two comparisons with the reference in NumPy float64:

- **step-wise** (the claim): the reference step started from the Simulator's
  state before each step equals the Simulator's state after it -- every
  synapse and the kept neuron states (``reset_neurons: false``; the batch
  size may change on the last step) -- and the reference's evaluation of the
  final state equals the Simulator's outputs;
- **free-running**: the reference's own 3-5 step trajectory from the same
  initial synapses, compared likewise (rounding differences compound).

Each array must agree to ``rel <= 1e-12``, or, where the computation is
ill-conditioned, to K = 300 times float64's own rounding error there, measured
as the float64 reference against the same reference in extended precision
(``numpy.longdouble``) -- see :func:`compare`.

    rel(a, b) = max|a - b| / max(max|b|, 1e-3)   per array

(relative to the array's largest entry; the floor only matters for arrays
that are zero up to rounding, see :func:`rel`). Comparisons stop at the first
state that is not finite or exceeds 1e30 (some drawn rules are unstable).

Every example also shows that the step-wise comparison can fail: with one
genome entry (``f_tilde``, ``eta_tilde`` or ``saturation`` of a projection's
group, one species) moved by 1e-6 on the reference's side, it exceeds the
tolerance by a factor 1000 or more. ``tools/reference_parity.py`` runs the
same comparison on many examples and reports the largest differences seen.

k = 1 is not drawn: it cannot be valid, since every feedback kind writes
state 1 of the outputs and the validator refuses ``k < 2`` (``feedback.needs``);
``test_k1_is_refused`` pins that down.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from blursim.errors import SpecError
from blursim.genome import random_genome
from blursim.graph import compile_network
from blursim.sim import Simulator
from blursim.sim import reference as ref
from blursim.spec import load_network
from blursim.testing.strategies import ALL_CONNECTIVITY, network_specs, rules

TOL = 1e-12
FLOOR = 1e-3
K = 300  # tolerance per unit of float64's own rounding error (see compare)

#: Continuous activations (a step function such as relu_derivative could flip on a rounding
#: difference at 0 and is left out); per-state lists mix them.
ACTS = ("tanh", "relu_tanh", "sigmoid", "identity", "leaky_relu", "softplus", "sin", "hard_tanh",
        "relu", "tanh_derivative", "sigmoid_derivative", "softplus_derivative", "one")
GROUPS = ("default", "g1")


def rel(a, b) -> float:
    """max|a - b| / max(max|b|, FLOOR): relative to the array's largest entry, with a floor.

    The floor keeps arrays that are zero up to rounding (an output whose every
    term cancels, computed as 0 on one side and 1e-17 on the other) from
    counting as a 100% difference; arrays of entries above 1e-3 -- synapses
    and neuron states are O(0.01-1) -- are compared purely relatively.
    """
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    d = float(np.max(np.abs(a - b), initial=0.0))
    return d / max(float(np.max(np.abs(b), initial=0.0)), FLOOR)


@st.composite
def activations(draw, k):
    if draw(st.booleans()):
        return draw(st.sampled_from(ACTS))
    return [draw(st.sampled_from(ACTS)) for _ in range(k)]


def _value(lo, hi):
    """A float with |x| in [lo, hi], either sign (no zeros or subnormals: degenerate genomes,
    such as rescale 0 which zeroes every effective synapse, would make weak examples)."""
    mag = st.floats(lo, hi)
    return st.tuples(mag, st.booleans()).map(lambda t: -t[0] if t[1] else t[0])


@st.composite
def genome_docs(draw, k):
    g = random_genome(k=k, seed=draw(st.integers(0, 2**31 - 1)), groups=GROUPS,
                      scale=draw(st.sampled_from([0.5, 0.3, 0.8])))
    for params in g.groups.values():
        if draw(st.booleans()):
            params.eta_tilde = -params.eta_tilde
        if draw(st.booleans()):
            params.norm_gain = [draw(_value(0.2, 2)) for _ in range(k)]
            params.norm_shift = [draw(st.floats(-1, 1)) for _ in range(k)]
        if draw(st.booleans()):
            params.oja_alpha = draw(_value(0.05, 2))
        if draw(st.booleans()):
            params.saturation = draw(_value(0.2, 3))
        if draw(st.booleans()):
            params.rescale = draw(_value(0.2, 2))
        if draw(st.booleans()):
            params.init_scale = draw(st.floats(0.3, 2))
    return g


@st.composite
def parity_cases(draw, **pin):
    """A spec, S genomes, R, the batches of every step, a query batch and the Simulator's storage."""
    k = draw(st.integers(2, 4))
    n_classes = draw(st.sampled_from([3, 2, 1]))
    recurrent = draw(st.booleans())
    n_features = draw(st.integers(1, 4))
    spec = draw(network_specs(
        k=k, n_features=n_features, n_classes=n_classes, hidden=(1, 3), outputs=(1, 2), sizes=(1, 4),
        connectivity=ALL_CONNECTIVITY, recurrent_p=0.3 if recurrent else 0.0,
        rules=rules(recurrent=recurrent, **pin)))  # error_softmax on one neuron: logistic
    # zero initial synapses are drawn, but rarely: with many rules they stay zero (a weak example)
    spec["rules"]["synapse_init"]["distribution"] = draw(st.sampled_from(["normal", "uniform"] * 3 + ["zeros"]))
    for p in spec["populations"]:
        if p["role"] != "input":
            p["forward_activation"] = draw(activations(k))
            p["backward_activation"] = draw(activations(k))
            p["normalization"] = draw(st.sampled_from(["none", "forward", "backward", "both"]))
            p["genome"] = draw(st.sampled_from(GROUPS))
    for q in spec["projections"]:
        q["genome"] = draw(st.sampled_from(GROUPS))
    S, R, T = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(3, 5))
    genomes = [draw(genome_docs(k)) for _ in range(S)]
    sizes = [draw(st.integers(1, 4))] * T
    if draw(st.booleans()):
        sizes[-1] = draw(st.integers(1, 4))  # a batch-size change: kept states restart from 0
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    labels = 2 if n_classes == 1 else n_classes  # one output neuron: labels 0 and 1
    vectors = spec["rules"]["feedback"] != "error_softmax" and draw(st.booleans())  # real-valued targets
    batches = [(rng.normal(size=(B, n_features)),
                rng.normal(size=(B, n_classes)) if vectors else rng.integers(0, labels, B)) for B in sizes]
    query = rng.normal(size=(draw(st.integers(1, 4)), n_features))
    return dict(spec=spec, genomes=genomes, R=R, batches=batches, query=query,
                seed=draw(st.integers(0, 2**16)), sparse=draw(st.sampled_from(["auto", "masked", "blocks"])))


def arrays(state) -> list:
    """Every array a step changes, named: synapses W and untied V, kept neuron states a."""
    out = [("W", q, w) for q, w in enumerate(state.W)]
    out += [("V", q, v) for q, v in enumerate(state.V) if v is not None]
    out += [("a", p, a) for p, a in enumerate(state.a or ()) if a is not None]
    return out


def finite(named) -> bool:
    """Every array finite and below 1e30 in magnitude: beyond that, squares inside a step (norms,
    Oja sums) may overflow in one summation order and not in the other."""
    return all(np.isfinite(a).all() and np.abs(a).max(initial=0.0) < 1e30 for _, _, a in named)


def simulator_run(case):
    """The Simulator's run: the program, the states before/after every step, the evaluation outputs."""
    prog = compile_network(load_network(copy.deepcopy(case["spec"])))
    sim = Simulator(prog, backend="numpy", dtype="float64", sparse=case["sparse"])
    genes = sim.prepare(case["genomes"])
    st_ = sim.init_synapses(genes, replicas=case["R"], seed=case["seed"])
    states = [ref.from_simulator(st_, prog)]
    for x, y in case["batches"]:
        sim.train_step(st_, genes, x, y)
        states.append(ref.from_simulator(st_, prog))
    for s_ in (states[0], states[-1]):  # the conversions are exact both ways (kept states included)
        back = arrays(ref.from_simulator(ref.to_simulator(s_, prog), prog))
        assert [n[:2] for n in back] == [n[:2] for n in arrays(s_)]
        # a drawn rule may diverge (the last state NaN; the parity below stops before it): the
        # conversion must still carry every entry, NaN to NaN in the same places
        assert all(np.array_equal(a, b, equal_nan=True) for (_, _, a), (_, _, b) in zip(back, arrays(s_)))
    outputs = [np.array(o) for o in sim.forward(st_, genes, case["query"])]
    return prog, states, outputs


EXTENDED = np.longdouble  # 64-bit mantissa on x86-64: the "exact" answer for float64's rounding


def cast(state, dtype):
    f = (lambda a: None if a is None else np.asarray(a).astype(dtype))
    return ref.BlurState(tuple(map(f, state.W)), tuple(map(f, state.V)),
                         None if state.a is None else tuple(map(f, state.a)))


def outs(outputs):
    return [("out", o, v) for o, v in enumerate(outputs)]


def reference_runs(prog, G, states, case, dtype) -> dict:
    """The reference in ``dtype``: ``stepwise`` -- from the Simulator's state before each step,
    then the evaluation of its final state -- and ``free`` -- its own trajectory from the same
    initial synapses, then its evaluation. Lists of named arrays per step (+ evaluation); they
    end at the first Simulator state that is not :func:`finite`."""
    stepwise, free = [], []
    mine = cast(states[0], dtype)
    for t, (x, y) in enumerate(case["batches"]):
        if not (finite(arrays(states[t])) and finite(arrays(states[t + 1]))):
            return {"stepwise": stepwise, "free": free}
        stepwise.append(arrays(ref.train_step(prog, G, cast(states[t], dtype), x.astype(dtype), y)))
        mine = ref.train_step(prog, G, mine, x.astype(dtype), y)
        free.append(arrays(mine))
    xq = case["query"].astype(dtype)
    stepwise.append(outs(ref.evaluate(prog, G, cast(states[-1], dtype), xq)))
    free.append(outs(ref.evaluate(prog, G, mine, xq)))
    return {"stepwise": stepwise, "free": free}


#: The equation each compared array comes from (named in a failure).
EQUATION = {"W": "eq. (7)-(8) synapse update", "V": "eq. (7)-(8) synapse update",
            "a": "eq. (5)-(6) kept neuron states", "out": "eq. (5) evaluation forward pass"}


def entry(prog, name, idx, a, b) -> str:
    """Where ``a`` (the reference's array ``name`` of projection/population ``idx``) and ``b`` (the
    Simulator's) differ most: array, projection or population by name, entry, channel or state,
    species, replica and the two values."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(invalid="ignore"):
        d = np.abs(a - b)
    d = np.where(np.isnan(d) & ~(np.isnan(a) & np.isnan(b)), np.inf, np.nan_to_num(d, nan=0.0))
    pos = tuple(int(i) for i in np.unravel_index(int(np.argmax(d)), d.shape))
    s, r, rest = pos[0], pos[1], pos[2:]
    if name in ("W", "V"):
        q = prog.projs[idx]
        i, j, c = rest
        if name == "W":
            at = f"[bias, post={j}]" if i == q.n_pre else f"[pre={i}, post={j}]"
            what = f"forward synapse W of projection {q.name!r} {at}"
        else:
            what = f"backward synapse V of projection {q.name!r} [post={i}, pre={j}]"
        what += f", channel {c}"
    elif name == "a":
        b_, n, c = rest
        what = f"kept neuron state a of population {prog.pops[idx].name!r} [example={b_}, neuron={n}], state {c}"
    else:
        b_, n = rest
        what = f"output state 0 of population {prog.pops[prog.outputs[idx]].name!r} [example={b_}, neuron={n}]"
    return f"{what}, species {s}, replica {r}: reference {a[pos]:.17g}, Simulator {b[pos]:.17g}"


def compare(got, want, truth, tol0: float, tols=None, prog=None) -> dict:
    """Fold rel(got, want) over two lists of named arrays per step, each array against its
    tolerance ``max(tol0, K x rel(got, truth))`` -- ``tol0``, unless float64 itself is off the
    extended-precision answer by more than ``tol0 / K`` there (an ill-conditioned step, e.g.
    N of a batch whose rows agree up to rounding: ``x - mean`` is noise, divided by
    ``sqrt(eps)``; or a free-running trajectory that amplifies rounding). ``want``'s arrays
    after the last of ``got`` are not compared (not finite). ``tols``: the tolerances of an
    earlier call, in its order (then ``truth`` is not used).

    ``rel(got, truth)`` is one sample of float64's rounding error at that point; the
    Simulator's summation order can make a larger one (up to ~50x seen over 2000 examples,
    where batch normalisation of nearly equal rows amplifies it), hence K = 300.
    """
    out = {"rel": 0.0, "ratio": 0.0, "where": "", "tol": tol0, "tols": [], "equation": "", "entry": ""}
    for t, (g_step, w_step, x_step) in enumerate(zip(got, want, truth or [None] * len(got))):
        where = "the evaluation" if g_step and g_step[0][0] == "out" else f"training step {t + 1}"
        assert [n[:2] for n in g_step] == [n[:2] for n in w_step]
        for (name, idx, a), (_, _, b), (_, _, c) in zip(g_step, w_step, x_step or g_step):
            tol = tols[len(out["tols"])] if tols is not None else max(tol0, K * rel(a, c))
            r = rel(a, b)
            out["rel"], out["tol"] = max(out["rel"], r), max(out["tol"], tol)
            out["tols"].append(tol)
            if r / tol > out["ratio"]:
                out["ratio"], out["where"], out["equation"] = r / tol, where, EQUATION[name]
                out["worst_rel"], out["worst_tol"] = r, tol
                out["entry"] = entry(prog, name, idx, a, b) if prog is not None else f"{name}[{idx}]"
    return out


def mutants(prog, G, states):
    """``G`` with one genome entry (last species) moved by 1e-6, for entries likely to matter:
    ``f_tilde``, ``eta_tilde`` and (with ``rules.saturation``) ``saturation`` of the groups of
    the projections, largest initial synapses first. (Which entry matters depends on the
    example: f_tilde cannot move saturated synapses or synapses that start and stay at 0.)"""
    fields = ("f_tilde", "eta_tilde") + (("saturation",) if prog.rules.saturation else ())
    order = np.argsort([-float(np.abs(w[-1]).max(initial=0.0)) for w in states[0].W], kind="stable")
    tried = set()
    for qi in order:
        for field in fields:
            key = (prog.projs[qi].group, field)
            if key in tried:
                continue
            tried.add(key)
            bad = {g: dict(f) for g, f in G.items()}
            bad[key[0]][field] = bad[key[0]][field].copy()
            bad[key[0]][field][-1] += 1e-6
            yield bad


def simulator_trajectory(states, outputs, n: int) -> list:
    """The Simulator's states after each of the first ``n`` steps, then its outputs."""
    return [arrays(s) for s in states[1 : n + 1]] + [outs(outputs)]


#: Synapses smaller than this everywhere are zero for the mutant check: a genome entry moved by
#: 1e-6 changes them by amounts no float64 tolerance can see (a drawn case with zero initial
#: synapses and a one-neuron input reached 1e-250).
NUMERICALLY_ZERO = 1e-100


def parity(case) -> dict:
    """Step-wise and free-running comparisons (see the module docstring); ``mutant``: the
    largest rel / tolerance of the step-wise comparison with one genome entry moved by 1e-6
    (:func:`mutants`, tried until one exceeds 1e3). ``trivial``: every compared synapse of
    the Simulator is zero or numerically zero (below :data:`NUMERICALLY_ZERO`; e.g. zero initial
    synapses that no Hebbian term moves, or moves to 1e-250 from a one-neuron input: then the
    synapse gates that :func:`mutants` moves cannot matter)."""
    prog, states, outputs = simulator_run(case)
    G = ref.genome_arrays(case["genomes"], prog)
    mine = reference_runs(prog, G, states, case, np.float64)
    exact = reference_runs(prog, G, states, case, EXTENDED)
    steps = len(mine["stepwise"]) - 1 if len(mine["stepwise"]) > len(case["batches"]) else len(mine["stepwise"])
    sim = simulator_trajectory(states, outputs, steps)
    res = compare(mine["stepwise"], sim, exact["stepwise"], TOL, prog=prog)
    res.update(steps=steps, T=len(case["batches"]), free=compare(mine["free"], sim, exact["free"], TOL, prog=prog))
    res["mutant"] = 0.0
    for bad in mutants(prog, G, states):
        got = reference_runs(prog, bad, states, case, np.float64)["stepwise"]
        res["mutant"] = max(res["mutant"], compare(got, sim, None, TOL, res["tols"])["ratio"])
        if res["mutant"] > 1e3:
            break
    res["trivial"] = all(np.max(np.abs(a), initial=0.0) < NUMERICALLY_ZERO
                         for s in states[1 : steps + 1] for name, _, a in arrays(s) if name != "a")
    return res


def check(case) -> None:
    res = parity(case)
    note(f"compared {res['steps']} of {res['T']} steps; largest tolerance {res['tol']:.3g}; "
         f"free-running rel {res['free']['rel']:.3g}; mutant rel/tolerance {res['mutant']:.3g}")
    for kind, r in (("step-wise", res), ("free-running", res["free"])):
        assert r["ratio"] <= 1, (
            f"law 'reference parity' ({r['equation']}) broken: the Simulator's {kind} trajectory differs from "
            f"blursim.sim.reference\n  where: {r['entry']}, after {r['where']}\n"
            f"  relative deviation {r['worst_rel']:.3g} (max|ref − sim| / max|sim| of the array), tolerance "
            f"{r['worst_tol']:.3g} ({r['ratio']:.3g} × it)")
    if res["steps"] and not res["trivial"]:
        assert res["mutant"] > 1e3, (
            f"a genome entry moved by 1e-6 changed the result by only {res['mutant']:.3g} x the tolerance")


@settings(max_examples=60)
@given(case=parity_cases())
def test_reference_step_equals_simulator(case):
    check(case)


@settings(max_examples=10)
@given(case=parity_cases(schedule="synchronous", reset_neurons=False))
def test_reference_step_equals_simulator_recurrent_persistent(case):
    """The synchronous schedule (recurrent graphs) with kept neuron states, drawn more often."""
    check(case)


@settings(max_examples=10)
@given(case=parity_cases(shared_channels=True, shared_update="channel0"))
def test_reference_step_equals_simulator_channel0(case):
    """Shared channels updated by channel 0's update (the authors' code, docs/authors_layout.md),
    every other option drawn (the Oja term included)."""
    check(case)


def test_k1_is_refused():
    spec = {"k": 1, "populations": [{"name": "in", "size": 2, "role": "input"},
                                     {"name": "out", "size": 2, "role": "output"}],
            "projections": [{"from": "in", "to": "out"}]}
    for fb in ("target", "error_mse", "error_softmax"):
        with pytest.raises(SpecError, match="k >= 2"):
            compile_network(load_network(dict(spec, rules={"feedback": fb})))


def _tiny(**rules_):
    spec = {"k": 3, "seed": 1,
            "populations": [{"name": "in", "size": 3, "role": "input"},
                            {"name": "h", "size": 4, "role": "hidden", "forward_activation": ["tanh", "sigmoid", "sin"],
                             "backward_activation": "tanh", "normalization": "both"},
                            {"name": "out", "size": 2, "role": "output"}],
            "projections": [{"from": "in", "to": "h", "connectivity": {"kind": "fixed_probability", "p": 0.6}},
                            {"from": "h", "to": "out"}, {"from": "in", "to": "out", "bias": False}],
            "rules": {"oja": "weights", "saturation": True, "reset_neurons": False, **rules_}}
    prog = compile_network(load_network(spec))
    sim = Simulator(prog, backend="numpy", dtype="float64")
    gens = [random_genome(k=3, seed=s) for s in (1, 2)]
    for g in gens:
        g.groups["default"].norm_gain = [1.5, 0.5, -1.0]
        g.groups["default"].oja_alpha = 0.3
    state = ref.from_simulator(sim.init_synapses(sim.prepare(gens), replicas=2, seed=4), prog)
    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(5, 3)), rng.integers(0, 2, 5)) for _ in range(3)]
    return prog, ref.genome_arrays(gens, prog), state, batches


def test_complex128_with_zero_imaginary_part_equals_float64():
    """Complex-step safety: complex inputs with imaginary part 0 give the float64 result, imag 0."""
    prog, G, state, batches = _tiny(synapse_normalization="activations", feedback="error_softmax")
    cstate = ref.BlurState(tuple(w.astype(complex) for w in state.W),
                           tuple(v.astype(complex) for v in state.V), None)
    for x, y in batches:
        state = ref.train_step(prog, G, state, x, y)
        cstate = ref.train_step(prog, G, cstate, x.astype(complex), y)
    for a, b in zip(arrays(cstate), arrays(state)):
        assert a[2].dtype == np.complex128 and b[2].dtype == np.float64
        assert rel(a[2].real, b[2]) <= 1e-14 and np.all(a[2].imag == 0)
    xq = batches[0][0]
    for a, b in zip(ref.evaluate(prog, G, cstate, xq.astype(complex)), ref.evaluate(prog, G, state, xq)):
        assert rel(a.real, b) <= 1e-14 and np.all(a.imag == 0)
    # and a nonzero imaginary part does propagate (the check is not vacuous)
    hstate = ref.train_step(prog, G, cstate, batches[0][0] + 1e-20j, batches[0][1])
    assert max(np.abs(w.imag).max() for w in hstate.W) > 0


def test_jit_step_equals_numpy():
    """The same code under jax.jit (x64) equals NumPy to 1e-12 (tiny: JAX compiles once)."""
    jax = pytest.importorskip("jax")
    enable_x64 = getattr(jax, "enable_x64", None)
    if enable_x64 is None:  # older JAX
        from jax.experimental import enable_x64
        ctx = enable_x64()
    else:
        ctx = enable_x64(True)
    prog, G, state, batches = _tiny(shared_channels=True, oja="activity")
    with ctx:
        import jax.numpy as jnp

        step = jax.jit(lambda g, s, x, y: ref.train_step(prog, g, s, x, y))
        jG = jax.tree_util.tree_map(jnp.asarray, G)
        js = jax.tree_util.tree_map(jnp.asarray, state)
        np_state = state
        for x, y in batches[:2]:
            js = step(jG, js, jnp.asarray(x), jnp.asarray(y))
            np_state = ref.train_step(prog, G, np_state, x, y)
        for a, b in zip(arrays(js), arrays(np_state)):
            assert a[2].dtype == jnp.float64
            assert rel(np.asarray(a[2]), b[2]) <= TOL


def test_a_parity_failure_names_the_equation_the_array_and_the_entry():
    """With a planted bug (the Oja factor's sign, blursim.testing.mutants) the parity check fails with
    a message naming the equation, the projection by name, the entry, channel, species, replica,
    step, both values and the tolerance."""
    from blursim.testing.mutants import chain, example_batches, planted

    spec = chain({"oja": "weights"})
    g = random_genome(seed=1)
    g = g.model_copy(update={"groups": {"default": g.groups["default"].model_copy(update={"oja_alpha": 0.5})}})
    rng = np.random.default_rng(0)
    case = dict(spec=spec, genomes=[g], R=1, batches=example_batches(2), query=rng.normal(size=(3, 3)), seed=0,
                sparse="masked")
    @settings(max_examples=1, database=None, deadline=None)
    @given(c=st.just(case))
    def check_one(c):
        check(c)

    check_one()  # the real step passes
    with planted("oja_factor_sign"), pytest.raises(AssertionError) as err:
        check_one()
    msg = str(err.value)
    assert msg.startswith("law 'reference parity' (eq. (7)-(8) synapse update) broken: the Simulator's step-wise")
    head = msg.splitlines()[1]
    assert "synapse" in head and "of projection '" in head and "channel " in head and "species 0, replica 0" in head
    assert ("[pre=" in head or "[bias, post=" in head or "[post=" in head) and "after training step " in head
    assert "reference " in head and ", Simulator " in head and "tolerance 1e-12" in msg
