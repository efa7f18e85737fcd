"""The law library (blursim.testing.laws): every law holds over random genomes and rules inside its
domain, and every law breaks — with a message naming the law and the index — on a mutant (a rule
or genome outside its domain, or a deliberately broken simulator).

The laws are both blursim's documentation of what a step guarantees and tests of the simulator:
the first group of tests runs each of them on Hypothesis-drawn networks (acyclic and recurrent,
every connectivity kind, k = 2-3), rules (every option the domain allows) and genomes (every
value drawn, optional fields included).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from blursim.genome import backprop_genome, random_genome
from blursim.sim import Simulator
from blursim.sim.fast import FastKernels
from blursim.testing import LAWS, LawNotApplicable, LawViolation, laws
from blursim.testing import mutants as planted_bugs
from blursim.testing.strategies import (
    LAW_DOMAINS,
    backprop_network_specs,
    data_batches,
    generic_network_specs,
    genomes,
    law_network_specs,
)

N_FEATURES, N_CLASSES = 3, 3

#: The laws whose domain is DESIGN §3 (the backprop genome); every other law is drawn from
#: strategies.law_network_specs (its rules domain, otherwise every option drawn).
BACKPROP_LAWS = ("backprop_equals_sgd", "backprop_is_gradient_like")
OTHER_LAWS = tuple(n for n in LAWS.names() if n not in BACKPROP_LAWS)
NO_EXPLAIN = [p for p in Phase if p.name != "explain"]


def test_every_law_is_tested_here():
    assert set(MUTANTS) == set(LAWS.names())
    assert set(LAW_DOMAINS) <= set(LAWS.names())


def drawn_case(data, name):
    """A spec from the law's domain strategy, a genome (every value drawn, optional fields
    included) moved into the law's genome domain, three batches."""
    law = LAWS.get(name)
    spec = data.draw(law_network_specs(name, n_features=N_FEATURES, n_classes=N_CLASSES), label="spec")
    genome = law.conform(data.draw(genomes(k=spec["k"], values=True, optional=True), label="genome"))
    batches = [data.draw(data_batches(N_FEATURES, N_CLASSES, batch=(1, 4), values=True), label="batch")
               for _ in range(3)]
    return law, spec, genome, batches


@pytest.mark.parametrize("name", OTHER_LAWS)
@settings(max_examples=6, deadline=None, phases=NO_EXPLAIN)
@given(data=st.data())
def test_law_holds_over_random_genomes_and_rules(name, data):
    law, spec, genome, batches = drawn_case(data, name)
    assume(law.applies(spec, genome))  # at least half of the draws (next test)
    run = law(spec, genome, batches, seed=data.draw(st.integers(0, 99), label="seed"))
    assert run.t == 3


def law_applies_to_draws(name, n):
    """How many of ``n`` (derandomized) draws of the law's strategy, genome conformed, it applies to."""
    seen = []

    @settings(max_examples=n, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def draw(data):
        law = LAWS.get(name)
        spec = data.draw(law_network_specs(name, n_features=N_FEATURES, n_classes=N_CLASSES))
        seen.append(law.applies(spec, law.conform(data.draw(genomes(k=spec["k"], values=True, optional=True)))))

    draw()
    return sum(seen), len(seen)


@pytest.mark.parametrize("name", OTHER_LAWS)
def test_each_law_runs_on_at_least_half_of_its_strategy_draws(name):
    """Domains that hold: strategies.law_network_specs draws inside the law's rules domain and
    law.conform moves the drawn genome into its genome domain, so the law runs on most draws."""
    hits, n = law_applies_to_draws(name, 6)
    assert hits >= n / 2, f"{name} applies to {hits} of {n} draws"


@pytest.mark.slow
@pytest.mark.parametrize("name", OTHER_LAWS)
def test_each_law_runs_on_at_least_half_of_40_draws(name):
    hits, n = law_applies_to_draws(name, 40)
    assert hits >= n / 2, f"{name} applies to {hits} of {n} draws"


def test_generic_specs_draw_normalisation_oja_saturation_and_shared_channels():
    found = set()

    @settings(max_examples=30, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(spec=generic_network_specs())
    def draw(spec):
        r = spec["rules"]
        found.update(k for k, on in (("oja", r["oja"] != "none"), ("saturation", r["saturation"]),
                                     ("shared_channels", r["shared_channels"]),
                                     ("normalization", any(p.get("normalization") for p in spec["populations"])))
                     if on)

    draw()
    assert found == {"oja", "saturation", "shared_channels", "normalization"}


@pytest.mark.parametrize("name", BACKPROP_LAWS)
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_backprop_laws_hold_on_random_dags(name, data):
    spec = data.draw(backprop_network_specs(None, None, n_features=N_FEATURES, n_classes=N_CLASSES, sizes=(1, 3),
                                            hidden=(1, 3), connectivity=("all_to_all", "fixed_probability",
                                                                         "block_random", "from_list")))
    lr = data.draw(st.sampled_from([0.05, 0.1, 0.5]))
    batches = [data.draw(data_batches(N_FEATURES, N_CLASSES, batch=(2, 4))) for _ in range(2)]
    run = LAWS.get(name)(spec, backprop_genome(lr=lr), batches, replicas=data.draw(st.integers(1, 2)))
    assert run.worst < 1.0 and run.t == 2


# ------------------------------------------------------------------------- mutants
def chain(rules=None, conn=None, k=2, n_h=4):
    return {"k": k, "populations": [
        {"name": "in", "size": 3, "role": "input"},
        {"name": "h", "size": n_h, "role": "hidden", "forward_activation": "tanh", "backward_activation": "tanh"},
        {"name": "out", "size": 3, "role": "output", "forward_activation": "tanh"}],
        "projections": [{"from": "in", "to": "h", "connectivity": conn or {"kind": "all_to_all"}},
                        {"from": "h", "to": "out"}],
        "rules": rules or {}}


def backprop_chain(feedback="error_softmax"):
    from blursim.testing.strategies import backprop_rules

    spec = chain(backprop_rules(feedback, "sum"))
    spec["populations"][1].update(forward_activation=["tanh", "tanh_derivative"], backward_activation="identity")
    spec["populations"][2].update(forward_activation=["identity", "one"], backward_activation="identity")
    return spec


def batches(n=3, B=4, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(B, 3)), rng.integers(0, 3, B)) for _ in range(n)]


def wrap(monkeypatch, cls, name, make):
    orig = getattr(cls, name)
    monkeypatch.setattr(cls, name, make(orig))


def mutant_masked(mp):
    """The Hebbian product of a masked projection is not masked (a plausible bug)."""
    from blursim.sim.operators import DenseOperator, MaskedDenseOperator

    mp.setattr(MaskedDenseOperator, "hebbian_update", DenseOperator.hebbian_update)
    return chain(conn={"kind": "fixed_probability", "p": 0.5, "seed": 3}), random_genome(seed=1), {}


def mutant_frozen(mp):
    """A rule outside the domain: saturation rescales synapses even with frozen plasticity."""
    return chain({"saturation": True}), laws.frozen_plasticity.conform(random_genome(seed=1)), {"check_domain": False}


def mutant_saturation(mp):
    """Saturation forgotten for the stored synapses."""
    mp.setattr(FastKernels, "saturate", lambda self, run, job, syn: None)
    g = random_genome(seed=1)
    g.groups["default"].saturation = 0.05
    return chain({"saturation": True}), g, {}


def mutant_tied(mp):
    """A genome outside the domain: eq. (7)'s product is not symmetric in pre and post."""
    return chain(), random_genome(seed=1), {"check_domain": False}


def mutant_channels(mp):
    """A genome outside the domain: the channels get different Hebbian products."""
    return chain(), random_genome(seed=2), {"check_domain": False}


def mutant_equivariance(mp):
    """A position-dependent threshold: neuron n gets an extra 1e-3·n before its activation."""
    def make(orig):
        def activate(self, run, x, names):  # x: the states about to be activated
            x += 1e-3 * np.arange(x.shape[-1])
            return orig(self, run, x, names)
        return activate

    wrap(mp, FastKernels, "activate", make)
    return chain(), random_genome(seed=1), {}


def mutant_species(mp):
    """Species leak into each other: every species' W moves by 1e-3 × the species mean."""
    planted_bugs.MUTANTS.get("species_mixing").plant(mp)
    return chain(), random_genome(seed=1), {}


def mutant_replicas(mp):
    """Replicas leak into each other."""
    planted_bugs.MUTANTS.get("replica_mixing").plant(mp)
    return chain(), random_genome(seed=1), {}


def mutant_batch_order(mp):
    """Example b of a batch is weighted by 1 + b/10 (an order-dependent input)."""
    def make(orig):
        def _input_states(self, x):
            x = np.asarray(x) * (1 + 0.1 * np.arange(len(x)))[:, None]
            return orig(self, x)
        return _input_states

    wrap(mp, Simulator, "_input_states", make)
    return chain(), random_genome(seed=1), {}


def _off_backprop():
    g = backprop_genome(lr=0.1)
    g.groups["default"].mu[1][1] = 1.001  # DESIGN §3's mu, off by 1e-3
    return g


def mutant_sgd(mp):
    """A genome outside the domain: the backprop genome with mu[1][1] off by 1e-3."""
    return backprop_chain(), _off_backprop(), {"check_domain": False}


def mutant_gradient_like(mp):
    return backprop_chain("error_mse"), _off_backprop(), {"check_domain": False}


MUTANTS = {
    "masked_synapses_stay_zero": (mutant_masked, "synapse V of projection 'in->h' [post="),
    "frozen_plasticity": (mutant_frozen, "of projection '"),
    "saturation_bounds_synapses": (mutant_saturation, "of projection '"),
    "tied_synapses_stay_tied": (mutant_tied, "backward synapse V of projection '"),
    "tied_channels_stay_tied": (mutant_channels, ", channel "),
    "hidden_relabelling_equivariance": (mutant_equivariance, "of projection '"),
    "species_independence": (mutant_species, "species 1 of 3"),
    "replica_independence": (mutant_replicas, "replica "),
    "batch_order_invariance": (mutant_batch_order, "of projection '"),
    "backprop_equals_sgd": (mutant_sgd, "forward synapse W of projection '"),
    "backprop_is_gradient_like": (mutant_gradient_like, "Q = ∂Δw/∂w ["),
}


def planted_mutant(name):
    """A mutant of blursim.testing.mutants, planted for the test (undone by monkeypatch)."""
    def make(mp):
        m = planted_bugs.MUTANTS.get(name)
        m.plant(mp)
        spec, genome = m.example()
        return spec, LAWS.get(m.caught_by).conform(genome), {}
    return make


#: The laws of each equation (blursim.testing.step_laws), each broken by a planted bug.
for _law, _mutant, _where in (
        ("forward_pass_closed_form", "bias_left_out_of_forward", "neuron state a of population '"),
        ("backward_pass_closed_form", "backward_reads_forward_transpose", "neuron state a of population 'h' ["),
        ("normalisation_batch_statistics", "normalisation_wrong_axis", "neuron state a of population 'h' [example="),
        ("feedback_sets_output_states", "target_sign_flipped", "neuron state a of population 'out' [example="),
        ("synapse_update_closed_form", "feedback_rule_transposed", "backward synapse V of projection '"),
        ("oja_scales_by_exact_factor", "oja_factor_sign", "synapse "),
        ("untied_feedback_drives_backward", "backward_reads_forward_transpose", "neuron state a of population 'h' ["),
        ("unroll_equals_single_steps", "unroll_one_step_short", "synapse ")):
    MUTANTS[_law] = (planted_mutant(_mutant), _where)


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_law_breaks_on_a_mutant_with_a_message_naming_law_and_index(name, monkeypatch):
    make, where = MUTANTS[name]
    spec, genome, kw = make(monkeypatch)
    with pytest.raises(LawViolation) as err:
        LAWS.get(name)(spec, genome, batches(), save=False, **kw)
    msg = str(err.value)
    law = LAWS.get(name)
    assert law.equation and msg.startswith(f"law {name!r} ({law.equation}) broken: ")  # law and equation
    assert err.value.equation == law.equation
    assert where in msg
    head = msg.splitlines()[1]
    for part in ("species ", "replica ", "step "):  # the index: species, replica, step ...
        assert part in head, (part, head)
    if name != "backprop_is_gradient_like":  # ... and synapse (or neuron), channel (or state), value, tolerance
        if "neuron state a" in head:
            assert "[example=" in head and "neuron=" in head and ", state " in head
        else:
            assert "channel" in head and ("[pre=" in head or "[post=" in head)
        assert "tolerance" in msg and "expected" not in msg.splitlines()[0]
    assert err.value.law == name and err.value.where.step >= 1 if err.value.where.step else True
    assert err.value.counterexample.law == name


def test_mutants_are_real_the_unpatched_simulator_passes():
    """The simulator mutants above break the laws only while patched (the laws do not fail by
    themselves on those specs and genomes)."""
    from pytest import MonkeyPatch

    for name in ("masked_synapses_stay_zero", "hidden_relabelling_equivariance", "species_independence",
                 "replica_independence", "batch_order_invariance", "normalisation_batch_statistics",
                 "forward_pass_closed_form", "backward_pass_closed_form",
                 "feedback_sets_output_states", "synapse_update_closed_form", "oja_scales_by_exact_factor",
                 "untied_feedback_drives_backward", "unroll_equals_single_steps"):
        with MonkeyPatch.context() as mp:
            spec, genome, kw = MUTANTS[name][0](mp)
        LAWS.get(name)(spec, genome, batches(), save=False, **kw)


# --------------------------------------------------------------------- domains
def test_laws_refuse_rules_outside_their_domain_with_the_reason():
    g = laws.frozen_plasticity.conform(random_genome(seed=1))
    with pytest.raises(LawNotApplicable, match="saturation = true rescales every synapse"):
        laws.frozen_plasticity(chain({"saturation": True}), g, batches())
    with pytest.raises(LawNotApplicable, match=r"eta_tilde = 0, f_tilde = 0.9\d+ \(needs 0 and 1\)"):
        laws.frozen_plasticity.start(chain(), random_genome(seed=1).model_copy(update={"groups": {
            "default": random_genome(seed=1).groups["default"].model_copy(update={"eta_tilde": 0.0})}}))
    with pytest.raises(LawNotApplicable, match="rules.oja = 'weights'"):
        laws.tied_synapses_stay_tied(chain({"oja": "weights"}), laws.tied_synapses_stay_tied.conform(g), batches())
    with pytest.raises(LawNotApplicable, match="needs rules.tied = True"):
        laws.backprop_equals_sgd(chain(), backprop_genome(), batches())
    assert laws.saturation_bounds_synapses.why_not(chain(), g) == "rules.saturation is false: nothing bounds the synapses"
    names = {law.name for law in laws.applicable_laws(backprop_chain(), backprop_genome())}
    assert {"backprop_equals_sgd", "backprop_is_gradient_like", "tied_channels_stay_tied"} <= names
    assert "frozen_plasticity" not in names and "tied_synapses_stay_tied" not in names


def test_conform_moves_a_genome_into_the_domain():
    g = random_genome(seed=4)
    for law, spec in ((laws.frozen_plasticity, chain()), (laws.tied_synapses_stay_tied, chain()),
                      (laws.tied_channels_stay_tied, chain()), (laws.backprop_equals_sgd, backprop_chain())):
        assert not law.applies(spec, g)
        assert law.applies(spec, law.conform(g))
    c = laws.tied_synapses_stay_tied.conform(g).groups["default"]
    assert np.allclose(c.mu_tilde, np.asarray(c.nu_tilde).T)
    assert laws.masked_synapses_stay_zero.conform(g) == g


def _prog(spec):
    from blursim.graph import compile_network
    from blursim.spec import load_network

    return compile_network(load_network(spec))


def test_law_options_are_checked_and_recorded():
    with pytest.raises(TypeError, match=r"takes the options 'others', 'position'; got \['other'\]"):
        laws.species_independence(chain(), random_genome(seed=1), batches(1), other=[])
    with pytest.raises(ValueError, match="not a permutation of 0..3"):
        laws.hidden_relabelling_equivariance(chain(), random_genome(seed=1), batches(1), permutations={"h": [0, 1, 1, 2]})
    run = laws.hidden_relabelling_equivariance(chain(), random_genome(seed=1), batches(1), seed=4)
    perm = run.options["permutations"]["h"]
    assert sorted(perm) == [0, 1, 2, 3] and perm != [0, 1, 2, 3]  # seeded, resolved, recorded
    run = laws.species_independence(chain(), random_genome(seed=1), batches(3))
    assert len(run.options["others"]) == 2 and run.options["position"] == 1
    assert not run.sim.is_finite(run.state)[2].all()  # the default neighbour overflows ... and is harmless


def test_check_all_runs_every_applicable_law():
    done = laws.check_all(chain({"oja": "activity"}), random_genome(seed=3), batches(2))
    assert done == ["masked_synapses_stay_zero", "hidden_relabelling_equivariance", "species_independence",
                    "replica_independence", "batch_order_invariance", "forward_pass_closed_form",
                    "backward_pass_closed_form", "feedback_sets_output_states", "synapse_update_closed_form",
                    "unroll_equals_single_steps"]
    # conform=True: the laws with a genome domain run on the genome moved into it
    done = laws.check_all(chain({"oja": "activity"}), random_genome(seed=3), batches(2), conform=True)
    assert {"frozen_plasticity", "tied_channels_stay_tied", "oja_scales_by_exact_factor"} <= set(done)
    assert "tied_synapses_stay_tied" not in done  # a rules domain (oja: none) is not conformed


# ----------------------------------------------------- the laws' own machinery
def test_the_sgd_reference_gradient_matches_an_independent_backprop_and_finite_differences():
    """backprop_equals_sgd compares against reference_gradient (complex step of a forward pass written in
    the law). Anchor it: it equals tests/reference/backprop.py's gradients (another independent
    implementation) and central finite differences of its own loss."""
    from reference.backprop import sgd

    from blursim.testing.laws import reference_gradient, reference_loss

    spec = chain({"tied": True, "shared_channels": True, "backward_update": "multiplicative_second_state",
                  "feedback": "error_softmax", "synapse_init": {"bias": "same"}},
                 conn={"kind": "fixed_probability", "p": 0.6, "seed": 2})
    prog = _prog(spec)
    rng = np.random.default_rng(1)
    W = {q: rng.normal(size=(p.n_pre + 1, p.n_post)) for q, p in enumerate(prog.projs)}
    W[0][:3] *= prog.projs[0].mask
    x, y = rng.normal(size=(5, 3)), rng.integers(0, 3, 5)
    g = reference_gradient(prog, W, x, y)
    desc = {"populations": [{"name": p.name, "size": p.size, "role": p.role,
                             "activation": "tanh" if p.role == "hidden" else "identity"} for p in prog.pops],
            "projections": [{"name": q.name, "from": prog.pops[q.pre].name, "to": prog.pops[q.post].name,
                             "bias": True, "mask": None if q.mask is None else q.mask.astype(float)}
                            for q in prog.projs]}
    lr = 0.1
    after = sgd(desc, {q.name: W[i] for i, q in enumerate(prog.projs)}, [({"in": x}, {"out": y})], lr, loss="softmax")[0]
    for i, q in enumerate(prog.projs):
        np.testing.assert_allclose(W[i] - lr * g[i], after[q.name], rtol=1e-12, atol=1e-13)
    # finite differences of the loss itself, at one live weight per projection
    for i in range(2):
        idx = tuple(np.argwhere(W[i] != 0)[0])
        h = 1e-6
        Wp = {j: w[None].copy() for j, w in W.items()}
        Wm = {j: w[None].copy() for j, w in W.items()}
        Wp[i][(0, *idx)] += h
        Wm[i][(0, *idx)] -= h
        fd = (reference_loss(prog, Wp, x, y)[0] - reference_loss(prog, Wm, x, y)[0]) / (2 * h)
        assert abs(fd - g[i][idx]) < 1e-7 * max(1, abs(fd))


def test_a_violation_names_value_expected_tolerance_and_counts():
    with pytest.raises(LawViolation) as err:
        laws.tied_synapses_stay_tied(chain(), random_genome(seed=1), batches(1), save=False, check_domain=False)
    e = err.value
    lines = str(e).splitlines()
    assert lines[0] == ("law 'tied_synapses_stay_tied' (eq. (7) for W and untied V) broken: backward synapses that start as the transposed "
                        "forward ones (V = Wᵀ) stay so")
    assert lines[1].startswith("  where: backward synapse V of projection '")
    assert "after step 1" in lines[1] and "species 0" in lines[1] and "replica 0" in lines[1]
    assert f"value: {float(e.value):.6g}, Wᵀ: {float(e.expected):.6g}" in lines[2]
    assert "tolerance 1e-12 + 1e-10·|expected|" in lines[2]
    assert "entries beyond tolerance" in lines[3]
    assert "err.save(DIR)" in lines[-1] and "blursim replay DIR" in lines[-1]
    assert e.where.variable == "V" and e.where.step == 1 and set(e.where.index) == {"post", "pre"}
