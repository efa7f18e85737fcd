"""Trajectory properties (blursim.testing.stateful): laws and invariants checked after every step of
runs that Hypothesis drives; invariants that see the initial and the current synapses."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from blursim.genome import random_genome
from blursim.sim import Simulator
from blursim.testing import LawViolation, assert_invariant, masked_entries_are_zero, unchanged_since_start
from blursim.testing.stateful import law_machine
from blursim.testing.mutants import MUTANTS
from blursim.testing.strategies import genomes, network_specs, rules

from test_laws import batches, chain

SETTINGS = settings(max_examples=4, stateful_step_count=4, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow],
                    phases=[p for p in Phase if p.name != "explain"])


def zero_stays_zero_off_the_mask(initial, state, program):
    """Every synapse outside the mask that was 0 at the start is still 0 (an invariant of runs)."""
    return masked_entries_are_zero(initial, program) <= masked_entries_are_zero(state, program)


SPECS = network_specs(k=2, n_features=3, n_classes=3, hidden=(1, 2), sizes=(1, 4),
                      connectivity=("all_to_all", "fixed_probability", "block_random", "from_list"),
                      hidden_activation=("tanh", "relu_tanh"), backward_activation="same",
                      normalization=("none", "both"), recurrent_p=0.3,
                      rules=rules(profile="paper_family", schedule=st.sampled_from(["topological", "synchronous"])))

LAW_NAMES = ["masked_synapses_stay_zero", "species_independence", "replica_independence",
             "batch_order_invariance", "hidden_relabelling_equivariance", "tied_channels_stay_tied",
             "saturation_bounds_synapses"]


def test_laws_hold_along_runs_hypothesis_drives():
    Runs = law_machine(SPECS, laws=LAW_NAMES, invariants=[zero_stays_zero_off_the_mask, masked_entries_are_zero])
    run_state_machine_as_test(Runs, settings=SETTINGS)


def test_a_run_law_breaks_on_a_mutant_naming_law_species_and_step(monkeypatch):
    MUTANTS.get("species_mixing").plant(monkeypatch)  # each species' W moves by 1e-3 x the species mean
    Runs = law_machine(st.just(chain()), laws=["species_independence"])
    with pytest.raises(LawViolation) as err:
        run_state_machine_as_test(Runs, settings=SETTINGS)
    msg = str(err.value)
    assert msg.startswith("law 'species_independence' (DESIGN §1 species) broken")
    assert "species 1 of 3" in msg and "after step 1" in msg  # shrunk to the first step
    assert len(err.value.counterexample.batches) == 1


def unchanged_unless_overflowed(initial, state, program):
    """Frozen plasticity (η̃ = 0, f̃ = 1): no synapse changed — unless the run overflowed: a Hebbian
    term of ±inf or NaN (neuron states that diverged) makes ``f̃ W + η̃ H = W + 0 · inf`` NaN,
    as eq. (7) says in IEEE arithmetic (a random local draw with multiplicative backward updates
    and three synchronous sweeps did). A NaN synapse is that case and nothing else: with η̃ = 0 a
    finite ``W`` can only become NaN through a non-finite ``H``."""
    from blursim.testing.assertions import label_arrays

    if not all(np.isfinite(a).all() for _, _, a in label_arrays(state, program)):
        return True
    return unchanged_since_start(initial, state, program)


unchanged_unless_overflowed.explain = unchanged_since_start.explain


def test_an_invariant_sees_initial_and_current_state_along_runs():
    """Frozen plasticity as a run invariant: unchanged since the start, for any genome with η̃ = 0,
    f̃ = 1 (while the run does not overflow) — and, under saturation, Hypothesis finds the step
    where it breaks."""
    frozen = lambda prog: genomes(k=prog.k, groups=tuple(prog.groups), values=True, optional=True,  # noqa: E731
                                  fixed={"eta_tilde": 0.0, "f_tilde": 1.0})
    ok = law_machine(network_specs(n_features=3, hidden=(1, 2), sizes=(1, 3),
                                   rules=rules(saturation=False, synapse_normalization="none")),
                     frozen, invariants=[unchanged_unless_overflowed])
    run_state_machine_as_test(ok, settings=SETTINGS)
    bad = law_machine(network_specs(n_features=3, hidden=(1, 2), sizes=(1, 3), rules=rules(saturation=True)),
                      frozen, invariants=[unchanged_since_start])
    with pytest.raises(LawViolation) as err:  # (not shrunk: the first failing run is reported)
        run_state_machine_as_test(bad, settings=settings(SETTINGS, phases=[Phase.generate]))
    msg = str(err.value)
    assert msg.startswith("law 'unchanged_since_start' broken: Invariant")
    assert "after step " in msg and "changed from" in msg and "of projection '" in msg


def test_law_machine_refuses_unknown_laws():
    with pytest.raises(Exception, match="unknown law 'masked'. Valid choices: .*masked_synapses_stay_zero"):
        law_machine(SPECS, laws=["masked"])
    with pytest.raises(ValueError, match="at least one law"):
        law_machine(SPECS)


# ----------------------------------------------------------- assert_invariant
def test_assert_invariant_passes_initial_and_current_state_to_three_argument_invariants():
    g = random_genome(seed=2)
    frozen = g.model_copy(update={"groups": {"default": g.groups["default"].model_copy(
        update={"eta_tilde": 0.0, "f_tilde": 1.0})}})
    assert_invariant(chain(), frozen, batches(2), unchanged_since_start, n_steps=3)
    seen = []

    def grows(initial, state, program):
        seen.append((initial.steps, state.steps))
        return True

    assert_invariant(chain(), g, batches(2), grows, n_steps=2)
    assert seen == [(0, 0), (0, 1), (0, 2)]  # initial stays the state before the first step
    with pytest.raises(AssertionError, match=r"(?s)'unchanged_since_start' fails after 1 training step\(s\) "
                                             r"\(returned False\): (forward|backward) synapse . of projection .* changed from"):
        assert_invariant(chain(), g, batches(2), unchanged_since_start)


def test_assert_invariant_says_where_the_mask_broke(monkeypatch):
    from blursim.sim.operators import DenseOperator, MaskedDenseOperator

    spec = chain(conn={"kind": "fixed_probability", "p": 0.5, "seed": 3})
    assert_invariant(spec, random_genome(seed=1), batches(2), masked_entries_are_zero)
    monkeypatch.setattr(MaskedDenseOperator, "hebbian_update", DenseOperator.hebbian_update)
    with pytest.raises(AssertionError, match=r"'masked_entries_are_zero' fails after 1 training step\(s\) "
                                             r"\(returned False\): .*synapse . of projection 'in->h' \[.*\], "
                                             r"channel \d, species 0, replica 0 is .*outside the connectivity mask"):
        assert_invariant(spec, random_genome(seed=1), batches(2), masked_entries_are_zero)


def test_forward_synapses_is_designs_layout_with_the_bias_row_last():
    from blursim.graph import compile_network
    from blursim.spec import load_network
    from blursim.testing import forward_synapses

    prog = compile_network(load_network(chain({"shared_channels": True}, k=3)))
    sim = Simulator(prog, dtype="float64")
    st_ = sim.init_synapses(sim.prepare([random_genome(k=3, seed=1)]), replicas=2, seed=1)
    st_.set(0, "b", np.asarray(st_.get(0, "b")) + 1.5)
    W = forward_synapses(st_, prog)
    assert list(W) == ["in->h", "h->out"]
    assert W["in->h"].shape == (1, 2, 3 + 1, 4, 3)  # (S, R, n_pre + bias, n_post, k)
    np.testing.assert_array_equal(W["in->h"][:, :, 3, :, 2], np.asarray(st_.get(0, "b"))[:, :, 0])
    np.testing.assert_array_equal(W["in->h"][:, :, :3, :, 1], np.asarray(st_.get(0, "W"))[:, :, 0])
