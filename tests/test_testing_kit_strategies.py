"""The testing kit's strategies for what a rule is made of: rule profiles, genomes (value-drawn, near a
preset, fields fixed, optional fields), data and synapse states that shrink to readable values,
paper/sparse/recurrent specs. (tests/test_rules_strategy.py covers rules() option by option.)"""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from conftest import SPECS

from blursim.genome import backprop_genome
from blursim.graph import compile_network
from blursim.graph.build import build_graph
from blursim.spec import load_network
from blursim.spec.genome import GenomeSpec
from blursim.spec.network import Rules
from blursim.testing import laws
from blursim.testing import strategies as bst


def test_the_default_profile_is_the_rules_defaults():
    assert Rules.model_validate(find(bst.rules(profile="default"), lambda r: True)) == Rules()


def test_the_paper_profiles_are_the_papers_rule_sets():
    """"paper_asymmetric" pins exactly the rules of the specs that reproduce the paper's Sec. 4 runs;
    "paper" is the same with App. C.7's symmetric (tied) synapses."""
    for name in ("digits_es_512.json", "repro_digits_blur_64.json", "toy_blur.json"):
        want = Rules.model_validate(json.loads((SPECS / name).read_text())["rules"])
        assert Rules.model_validate(find(bst.rules(profile="paper_asymmetric"), lambda r: True)) == want, name
        paper = Rules.model_validate(find(bst.rules(profile="paper"), lambda r: True))
        assert paper == want.model_copy(update={"tied": True})
    assert paper.backward_update == "additive" and not paper.shared_channels and paper.oja == "weights"
    # the family profile varies what the paper ablates, and nothing it keeps fixed
    seen = {k: set() for k in ("backward_update", "tied", "shared_channels", "oja", "saturation",
                               "synapse_normalization", "feedback", "batch_reduction")}

    @settings(max_examples=60, database=None)
    @given(r=bst.rules(profile="paper_family"))
    def collect(r):
        for k in seen:
            seen[k].add(r[k])

    collect()
    assert seen["feedback"] == {"target"} and seen["batch_reduction"] == {"mean"}
    assert len(seen["backward_update"]) == 3 and seen["tied"] == {False, True} and len(seen["oja"]) == 2


@settings(max_examples=15, deadline=None)
@given(spec=bst.backprop_network_specs(None, None, n_features=3))
def test_the_backprop_profile_is_inside_the_backprop_laws_domain(spec):
    assert laws.backprop_equals_sgd.why_not(spec, backprop_genome(lr=0.3)) is None
    assert spec["rules"]["feedback"] in ("error_mse", "error_softmax")


def test_profiles_can_be_overridden_and_unknown_ones_are_refused():
    r = find(bst.rules(profile="paper", oja="activity", saturation=st.just(True)), lambda r: True)
    assert r["oja"] == "activity" and r["saturation"] is True and r["backward_update"] == "additive"
    r = find(bst.rules(profile="paper", recurrent=True), lambda r: r["sweeps"] == 2)
    assert r["schedule"] == "synchronous"
    with pytest.raises(ValueError, match="unknown profile 'papr'"):
        find(bst.rules(profile="papr"), lambda r: True)


@settings(max_examples=20, deadline=None)
@given(spec=bst.paper_network_specs(family=True, k=3))
def test_paper_specs_compile_with_unitary_activations_and_normalisation(spec):
    prog = compile_network(load_network(spec))
    for p in prog.pops:
        if p.role == "hidden":
            assert p.norm_fwd and p.norm_bwd and p.fwd_names == p.bwd_names
            assert p.fwd_names[0] in ("relu_tanh", "tanh")
    assert prog.k == 3


@settings(max_examples=20, deadline=None)
@given(sparse=bst.sparse_network_specs(n_features=3, sizes=(1, 4)),
       recurrent=bst.recurrent_network_specs(n_features=3, sizes=(1, 3)))
def test_sparse_and_recurrent_specs_compile(sparse, recurrent):
    assert all(p["connectivity"]["kind"] in bst.SPARSE_CONNECTIVITY for p in sparse["projections"])
    compile_network(load_network(sparse))
    assert recurrent["rules"]["schedule"] == "synchronous"
    compile_network(load_network(recurrent))


def test_recurrent_specs_reach_cycles():
    spec = find(bst.recurrent_network_specs(n_features=3),
                lambda s: not nx.is_directed_acyclic_graph(build_graph(load_network(s))),
                settings=settings(max_examples=100, phases=[Phase.generate], database=None))
    compile_network(load_network(spec))


# ---------------------------------------------------------------------- genomes
def test_value_drawn_genomes_shrink_to_a_short_readable_genome():
    g = find(bst.genomes(values=True), lambda g: True)
    p = g.groups["default"]
    assert p.nu == p.mu == p.nu_tilde == p.mu_tilde == [[0.0, 0.0], [0.0, 0.0]]
    assert p.f == 0.0 and p.oja_alpha is None
    # a property that needs one particular entry shrinks to a genome with only that entry set
    g = find(bst.genomes(values=True), lambda g: abs(g.groups["default"].nu_tilde[1][0]) > 0.5)
    nt = np.asarray(g.groups["default"].nu_tilde)
    assert np.count_nonzero(nt) == 1 and abs(nt[1, 0]) > 0.5 and len(str(nt[1, 0])) <= 6
    assert np.count_nonzero(g.groups["default"].mu) == 0


@settings(max_examples=25, deadline=None)
@given(g=bst.genomes(k=3, groups=("default", "other"), scale=0.4, values=True, optional=("oja_alpha", "norm_gain"),
                     fixed={"eta_tilde": 0.0, "other.f_tilde": 1.0}))
def test_value_drawn_genomes_respect_ranges_fixed_fields_and_optional_fields(g):
    assert isinstance(g, GenomeSpec) and g.k == 3 and set(g.groups) == {"default", "other"}
    for name, p in g.groups.items():
        assert p.eta_tilde == 0.0
        assert 0 <= p.f <= 1 and 0.5 <= p.eta <= 1.5
        assert np.abs(p.nu).max() <= 0.8 and len(p.mu_tilde) == 3
        assert p.oja_alpha is None or 0 <= p.oja_alpha <= 1
        assert p.norm_gain is None or len(p.norm_gain) == 3
        assert p.saturation is None
        assert all(len(str(v)) <= 6 for row in p.nu for v in row)  # three decimals at most
    assert g.groups["other"].f_tilde == 1.0


def test_genomes_near_a_preset_shrink_to_the_preset():
    g = find(bst.genomes(near="backprop", scale=0.1), lambda g: True)
    bp = backprop_genome(lr=0.1).groups["default"]
    assert g.groups["default"].model_dump() == bp.model_dump()
    g = find(bst.genomes(near=backprop_genome(lr=0.1), scale=0.1),
             lambda g: g.groups["default"].mu[1][1] != 1.0)
    diff = np.asarray(g.groups["default"].mu) - np.asarray(bp.mu)
    assert np.count_nonzero(diff) == 1


def test_bad_genome_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown genome field 'etta'"):
        find(bst.genomes(fixed={"etta": 1.0}), lambda g: True)
    with pytest.raises(ValueError, match="needs \\(2, 2\\)"):
        find(bst.genomes(fixed={"nu": [1.0, 0.0]}), lambda g: True)
    with pytest.raises(ValueError, match="unknown optional field 'oja'"):
        find(bst.genomes(optional=("oja",)), lambda g: True)


# ------------------------------------------------------------- data and states
def test_value_drawn_data_and_states_shrink_to_zeros():
    x, y = find(bst.data_batches(3, 4, batch=(2, 5), values=True), lambda d: True)
    assert x.shape == (2, 3) and not x.any() and not y.any() and y.dtype == np.int64
    x, y = find(bst.data_batches(3, 4, values=True), lambda d: d[0][0, 2] < -1)
    assert np.count_nonzero(x) == 1 and x[0, 2] < -1 and len(str(x[0, 2])) <= 5
    spec = {"k": 2, "populations": [{"name": "in", "size": 3, "role": "input"},
                                    {"name": "out", "size": 2, "role": "output"}],
            "projections": [{"from": "in", "to": "out", "connectivity": {"kind": "fixed_probability", "p": 0.5,
                                                                         "seed": 1}}]}
    prog = compile_network(load_network(spec))
    state = find(bst.synapse_states(spec, values=True), lambda s: np.abs(np.asarray(s.get(0, "W"))).sum() > 1)
    W = np.asarray(state.get(0, "W"))
    assert np.all(W[..., ~prog.projs[0].mask] == 0)  # nothing outside the mask
    assert np.count_nonzero(W) <= 2 and np.count_nonzero(state.get(0, "V")) == 0
