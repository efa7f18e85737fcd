"""Presets come with the rules they need (issue 21 item 1) and the Hebbian zoo entries (item 2).

- ``--preset backprop`` on a spec with the paper's general rules is refused with one line
  naming each change, or runs with them applied (``--apply-preset-rules``) and says so; the
  applied spec meets DESIGN §3 as the ``backprop_equals_sgd`` law (written apart) checks it.
- The ``hebbian`` and ``oja`` presets equal the independent references of
  ``tests/reference/zoo.py`` step by step on Hypothesis-drawn layered networks (float64,
  <= 1e-10 relative).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import zoo

from blursim.cli.main import main
from blursim.genome import PRESETS, make_preset
from blursim.genome.presets import PRESET_REQUIREMENTS
from blursim.genome.requirements import (
    PresetRulesError,
    apply_preset_rules,
    check_preset_rules,
    with_preset,
)
from blursim.graph import compile_network
from blursim.sim import Simulator
from blursim.spec import load_network
from blursim.testing import laws

from conftest import SPECS

GENERAL = SPECS / "toy_blur.json"  # the paper's general rules: untied, additive, Oja weights, norm


def test_backprop_on_general_rules_is_refused_naming_every_change(capsys):
    rc = main(["run", str(GENERAL), "--task", "cross", "--preset", "backprop", "--steps", "2"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    for path in ("$.rules.tied", "$.rules.shared_channels", "$.rules.backward_update", "$.rules.oja",
                 "$.rules.feedback", "$.populations[1].normalization", "$.populations[2].forward_activation"):
        assert path in err, path
    assert "--apply-preset-rules" in err and "toy_blur.json" in err


def test_apply_preset_rules_prints_the_changes_and_gives_the_design_section_3_spec(capsys):
    rc = main(["run", str(GENERAL), "--task", "cross", "--preset", "backprop", "--steps", "3",
               "--apply-preset-rules", "--json"])
    out = capsys.readouterr()
    assert rc == 0
    assert "applied the rules it needs" in out.err and "$.rules.tied: false -> true" in out.err
    assert json.loads(out.out)["steps"][-1] == 3
    new, changes = apply_preset_rules("backprop", GENERAL)
    assert [c.path for c in changes] == [c.path for c in check_preset_rules("backprop", GENERAL)]
    assert check_preset_rules("backprop", new) == []
    assert laws.backprop_equals_sgd.why_not(new, make_preset("backprop", k=2, groups=["default"])) is None
    # everything the preset does not need is the user's: sizes, seeds, batch reduction, init
    old = load_network(GENERAL)
    assert [p.size for p in new.populations] == [p.size for p in old.populations]
    assert new.rules.batch_reduction == old.rules.batch_reduction
    assert new.rules.synapse_init == old.rules.synapse_init


def test_a_spec_with_the_rules_runs_unchanged_and_random_needs_nothing():
    for name in ("mlp_2d.json", "digits_backprop.json"):
        setup = with_preset(SPECS / name, "backprop", lr=0.2)
        assert setup.changes == [] and setup.spec == load_network(SPECS / name)
        assert setup.genome.groups["default"].eta_tilde == 0.2
    assert check_preset_rules("random", GENERAL) == []


def test_python_api_refuses_or_applies_like_the_command_line():
    with pytest.raises(PresetRulesError) as e:
        with_preset(GENERAL, "oja")
    assert "$.rules.oja: \"weights\" -> \"activity\"" in str(e.value) and "\n" not in str(e.value)
    setup = with_preset(GENERAL, "oja", apply_rules=True, lr=0.05)
    assert {c.path for c in setup.changes} >= {"$.rules.oja", "$.populations[1].backward_activation"}
    assert setup.spec.rules.oja == "activity"
    assert setup.genome.groups["default"].oja_alpha == 1.0


def test_unknown_preset_lists_the_zoo():
    with pytest.raises(Exception) as e:
        check_preset_rules("sign_symmetry", GENERAL)
    assert "backprop" in str(e.value) and "oja" in str(e.value)


def test_every_preset_with_requirements_is_registered_and_listed(capsys):
    assert set(PRESET_REQUIREMENTS) <= set(PRESETS.names())
    assert main(["list", "presets", "-v"]) == 0
    out = capsys.readouterr().out
    for name in ("backprop", "hebbian", "oja", "random"):
        assert f"  {name} " in out
    assert "needs:" in out and "Oja (1982)" in out


# ---------------------------------------------------------------- Hebb and Oja
ACTS = ("tanh", "sigmoid", "softplus", "identity")


def _chain_spec(sizes, acts, bias):
    """A layered network with the paper's general rules (the presets' rules are applied)."""
    pops = [{"name": "p0", "size": sizes[0], "role": "input"}]
    for l in range(1, len(sizes)):
        role = "output" if l == len(sizes) - 1 else "hidden"
        pops.append({"name": f"p{l}", "size": sizes[l], "role": role, "forward_activation": acts[l - 1],
                     "backward_activation": "tanh"})
    projs = [{"from": f"p{l - 1}", "to": f"p{l}", "bias": bias} for l in range(1, len(sizes))]
    return {"k": 2, "populations": pops, "projections": projs}


@pytest.mark.parametrize("name", ["hebbian", "oja"])
@settings(max_examples=15)
@given(data=st.data())
def test_hebbian_presets_equal_the_reference_step_by_step(name, data):
    n_layers = data.draw(st.integers(1, 3))
    sizes = [data.draw(st.integers(1, 4)) for _ in range(n_layers + 1)]
    acts = [data.draw(st.sampled_from(ACTS)) for _ in range(n_layers)]
    bias = data.draw(st.booleans())
    reduction = data.draw(st.sampled_from(["sum", "mean"]))
    spec = _chain_spec(sizes, acts, bias)
    spec["rules"] = {"batch_reduction": reduction, "shared_channels": data.draw(st.booleans())}
    setup = with_preset(spec, name, apply_rules=True, lr=0.05)
    prog = compile_network(setup.spec)
    sim = Simulator(prog, dtype="float64")
    genes = sim.prepare([setup.genome])
    state = sim.init_synapses(genes, replicas=1, seed=data.draw(st.integers(0, 99)))
    W = [state.forward_synapses(i, 2)[0, 0, :, :, 0].copy() for i in range(n_layers)]
    W0 = [w.copy() for w in W]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    for _ in range(4):
        x = rng.normal(size=(int(rng.integers(1, 6)), sizes[0]))
        y = rng.integers(0, sizes[-1], x.shape[0]) if sizes[-1] > 1 else rng.integers(0, 2, x.shape[0])
        sim.train_step(state, genes, x, y)
        W = zoo.hebbian_step(acts, W, x, 0.05, bias=bias, oja=name == "oja", reduction=reduction)
        for i, want in enumerate(W):
            got = state.forward_synapses(i, 2)[0, 0, :, :, 0]
            assert np.linalg.norm(got - want) <= 1e-10 * max(np.linalg.norm(want), 1e-300)
    assert any(np.abs(w - w0).max() > 1e-6 for w, w0 in zip(W, W0))  # the rule moved the weights


# ------------------------------------------------ feedback alignment, Kolen-Pollack
REF_ACTS = ("tanh", "sigmoid", "softplus")


def _layered(data, hidden_acts):
    """A drawn layered network with the paper's general rules, and its sizes."""
    n_hidden = data.draw(st.integers(1, 3))
    sizes = [data.draw(st.integers(1, 4))] + [data.draw(st.integers(1, 4)) for _ in range(n_hidden)]
    sizes.append(data.draw(st.integers(2, 4)))
    acts = [data.draw(st.sampled_from(hidden_acts)) for _ in range(n_hidden)] + ["identity"]
    return sizes, acts, _chain_spec(sizes, acts, data.draw(st.booleans()))


@pytest.mark.parametrize("name", ["feedback_alignment", "kolen_pollack"])
@settings(max_examples=15)
@given(data=st.data())
def test_feedback_alignment_and_kolen_pollack_equal_the_reference_step_by_step(name, data):
    sizes, acts, spec = _layered(data, REF_ACTS)
    reduction = data.draw(st.sampled_from(["sum", "mean"]))
    spec["rules"] = {"batch_reduction": reduction}
    decay = data.draw(st.sampled_from([0.0, 0.05])) if name == "kolen_pollack" else 0.0
    opts = {"lr": 0.2, **({"decay": decay} if name == "kolen_pollack" else {})}
    setup = with_preset(spec, name, apply_rules=True, **opts)
    bias = setup.spec.projections[0].bias
    prog = compile_network(setup.spec)
    sim = Simulator(prog, dtype="float64")
    genes = sim.prepare([setup.genome])
    state = sim.init_synapses(genes, replicas=1, seed=data.draw(st.integers(0, 99)))
    L = len(prog.projs)
    W = [state.forward_synapses(i, 2)[0, 0, :, :, 0].copy() for i in range(L)]
    B = [None] + [state.backward_synapses(i, 2)[0, 0, :, :, 0].T.copy() for i in range(L)]
    B0 = [None] + [b.copy() for b in B[1:]]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    for _ in range(4):
        x = rng.normal(size=(int(rng.integers(1, 6)), sizes[0]))
        y = rng.integers(0, sizes[-1], x.shape[0])
        sim.train_step(state, genes, x, y)
        W, B = zoo.step(name, acts, W, B, x, y, 0.2, bias=bias, reduction=reduction, decay=decay)
        for i in range(L):
            got_w = state.forward_synapses(i, 2)[0, 0, :, :, 0]
            got_b = state.backward_synapses(i, 2)[0, 0, :, :, 0].T
            assert np.linalg.norm(got_w - W[i]) <= 1e-10 * np.linalg.norm(W[i])
            assert np.linalg.norm(got_b - B[i + 1]) <= 1e-10 * np.linalg.norm(B[i + 1])
    if name == "feedback_alignment":
        assert all(np.array_equal(b, b0) for b, b0 in zip(B[1:], B0[1:]))  # B never changes
    else:
        assert any(not np.allclose(b, b0) for b, b0 in zip(B[1:], B0[1:]))  # B learns


@settings(max_examples=15)
@given(data=st.data())
def test_direct_feedback_alignment_equals_the_reference_step_by_step(data):
    """Feedback pathways (DESIGN §6) from the output to every hidden layer, frozen: Nøkland's
    δ_l = (B_l e) ⊙ f'(z_l), on the NumPy simulator."""
    sizes, acts, spec = _layered(data, REF_ACTS)
    reduction = data.draw(st.sampled_from(["sum", "mean"]))
    spec["rules"] = {"batch_reduction": reduction}
    setup = with_preset(spec, "direct_feedback_alignment", apply_rules=True, lr=0.2)
    assert {c.path.split(".")[-1] for c in setup.changes} >= {"backward_synapses", "pathway"}
    bias = setup.spec.projections[0].bias
    prog = compile_network(setup.spec)
    sim = Simulator(prog, dtype="float64")
    genes = sim.prepare([setup.genome])
    state = sim.init_synapses(genes, replicas=1, seed=data.draw(st.integers(0, 99)))
    fwd = [q.index for q in prog.projs if q.pathway != "feedback"]
    pathway_of = {q.pre: q.index for q in prog.projs if q.pathway == "feedback"}  # hidden pop -> pathway
    W = [state.forward_synapses(i, 2)[0, 0, :, :, 0].copy() for i in fwd]
    B = [None] + [state.backward_synapses(pathway_of[l], 2)[0, 0, :, :, 0].T.copy()  # (n_l, n_L)
                  for l in range(1, len(sizes) - 1)] + [None]
    B0 = [None if b is None else b.copy() for b in B]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    for _ in range(4):
        x = rng.normal(size=(int(rng.integers(1, 6)), sizes[0]))
        y = rng.integers(0, sizes[-1], x.shape[0])
        sim.train_step(state, genes, x, y)
        W, B = zoo.step("direct_feedback_alignment", acts, W, B, x, y, 0.2, bias=bias, reduction=reduction)
        for i, qi in enumerate(fwd):
            got = state.forward_synapses(qi, 2)[0, 0, :, :, 0]
            assert np.linalg.norm(got - W[i]) <= 1e-10 * np.linalg.norm(W[i])
    for l, qi in pathway_of.items():  # the pathways never change, and store no forward synapses
        assert np.array_equal(state.backward_synapses(qi, 2)[0, 0, :, :, 0].T, B0[l])
        assert not state.forward_synapses(qi, 2).any()


def test_feedback_pathways_run_alike_on_the_numpy_and_jax_engines():
    pytest.importorskip("jax")
    from blursim.sim import make_simulator

    spec = _chain_spec([2, 3, 3, 2], ["tanh", "sigmoid", "identity"], True)  # two pathways, JIT kept small
    setup = with_preset(spec, "direct_feedback_alignment", apply_rules=True, lr=0.3)
    prog = compile_network(setup.spec)
    assert sum(q.pathway == "feedback" for q in prog.projs) == 2
    rng = np.random.default_rng(3)
    batches = [(rng.normal(size=(6, 2)), rng.integers(0, 2, 6)) for _ in range(3)]
    out = []
    for backend in ("numpy", "jax"):
        sim = make_simulator(prog, backend, "float64")
        genes = sim.prepare([setup.genome])
        st_ = sim.init_synapses(genes, replicas=2, seed=1)
        for x, y in batches:
            st_ = sim.train_step(st_, genes, x, y) or st_
        out.append([np.asarray(st_.forward_synapses(i, 2)) for i in range(len(prog.projs))])
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_feedback_pathways_are_validated():
    from blursim.errors import SpecError

    base = {"k": 2, "populations": [{"name": "in", "size": 2, "role": "input"},
                                    {"name": "h", "size": 3, "role": "hidden"},
                                    {"name": "out", "size": 2, "role": "output"}],
            "projections": [{"from": "in", "to": "h"}, {"from": "h", "to": "out"}]}

    def bad(extra, rules=None):
        spec = json.loads(json.dumps(base))
        spec["projections"].append(extra)
        spec["rules"] = rules or {}
        with pytest.raises(SpecError) as e:
            compile_network(load_network(spec))
        return str(e.value)

    assert "tied" in bad({"from": "out", "to": "h", "pathway": "feedback"}, {"tied": True})
    assert "$.projections[2].from" in bad({"name": "fb", "from": "in", "to": "h", "pathway": "feedback"})
    assert "bias" in bad({"from": "out", "to": "h", "pathway": "feedback", "bias": True})
    assert "$.projections[2].to" in bad({"from": "out", "to": "in", "pathway": "feedback"})
    only_feedback = json.loads(json.dumps(base))  # a hidden population fed only by a pathway
    only_feedback["populations"].append({"name": "h2", "size": 2, "role": "hidden"})
    only_feedback["projections"].append({"from": "out", "to": "h2", "pathway": "feedback"})
    with pytest.raises(SpecError) as e:
        compile_network(load_network(only_feedback))
    assert "receives no projection" in str(e.value)
    ok = json.loads(json.dumps(base))
    ok["projections"].append({"from": "out", "to": "h", "pathway": "feedback"})
    prog = compile_network(load_network(ok))  # out -> h does not make a cycle with h -> out
    assert prog.projs[2].pathway == "feedback" and not prog.projs[2].bias
    assert prog.forward_order == [1, 2] and 2 in prog.pops[1].outgoing and 2 not in prog.pops[2].incoming


def test_the_memory_estimate_counts_what_a_pathway_network_allocates():
    """The estimate (an upper bound: it counts a bias row in V too) grows by exactly what the
    feedback pathways allocate."""
    from blursim.graph.memory import estimate

    def stored(spec):
        prog = compile_network(spec)
        sim = Simulator(prog, dtype="float64")
        st_ = sim.init_synapses(sim.prepare([make_preset("backprop", k=2, groups=prog.groups)]), replicas=1, seed=0)
        return sum(np.asarray(a).size for q in range(len(prog.projs))
                   for a in (st_.get(q, "W"), st_.get(q, "b"), st_.get(q, "V")) if a is not None)

    with_paths = with_preset(SPECS / "deep_mlp_2d.json", "direct_feedback_alignment", apply_rules=True).spec
    without = with_paths.model_copy(deep=True)
    without.projections = [q for q in without.projections if q.pathway != "feedback"]
    est = [estimate(s, batch=1, itemsize=8).synapses for s in (with_paths, without)]
    got = [stored(s) for s in (with_paths, without)]
    assert est[0] >= 8 * got[0] and est[1] >= 8 * got[1]
    assert est[0] - est[1] == 8 * (got[0] - got[1]) > 0


def test_the_network_schema_documents_pathways():
    from blursim.spec import schema_json

    text = json.dumps(schema_json("network"))
    assert '"feedback"' in text and "backward pass only" in text


@pytest.mark.parametrize("sparse", ["blocks", "masked"])
def test_sparse_pathways_agree_with_the_reference_kernels(sparse):
    """Masked feedback and forward-only pathways with a generic genome and learned V: the fast
    Simulator equals the reference step; a feedback pathway's W stays 0, a forward-only
    projection's V never changes."""
    from blursim.genome import random_genome
    from blursim.sim import reference as ref

    spec = {"k": 2, "populations": [{"name": "in", "size": 5, "role": "input"},
                                    {"name": "h", "size": 12, "role": "hidden"},
                                    {"name": "out", "size": 8, "role": "output"}],
            "projections": [{"from": "in", "to": "h"},
                            {"from": "h", "to": "out", "pathway": "forward",
                             "connectivity": {"kind": "fixed_probability", "p": 0.4, "seed": 2}},
                            {"from": "out", "to": "h", "pathway": "feedback",
                             "connectivity": {"kind": "block_random", "block": [2, 3], "p": 0.5, "seed": 3}}],
            "rules": {"tied": False, "backward_synapses": "learned"}}
    prog = compile_network(load_network(spec))
    g = random_genome(k=2, seed=0, lr=0.05)
    sim = Simulator(prog, dtype="float64", sparse=sparse)
    genes = sim.prepare([g])
    state = sim.init_synapses(genes, replicas=2, seed=0)
    V1 = state.backward_synapses(1, 2).copy()
    G, rs = ref.genome_arrays([g], prog), ref.from_simulator(state, prog)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x, y = rng.normal(size=(4, 5)), rng.integers(0, 8, 4)
        sim.train_step(state, genes, x, y)
        rs = ref.train_step(prog, G, rs, x, y)
    for q in range(3):
        np.testing.assert_allclose(state.forward_synapses(q, 2), rs.W[q], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(state.backward_synapses(q, 2), rs.V[q], rtol=1e-12, atol=1e-12)
    assert not state.forward_synapses(2, 2).any() and np.array_equal(state.backward_synapses(1, 2), V1)
    assert not np.allclose(state.backward_synapses(2, 2), ref.from_simulator(
        sim.init_synapses(genes, replicas=2, seed=0), prog).V[2])  # the pathway's V learned


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_monitors_record_the_hebbian_terms_that_pathways_have(backend):
    """A feedback pathway updates no W and a forward-only projection no V: H is recorded for the
    others (asking for a pathway's W term is an error naming it)."""
    if backend == "jax":
        pytest.importorskip("jax")
    from blursim.errors import SpecError
    from blursim.sim import Monitor, make_simulator

    spec = _chain_spec([2, 3, 2], ["tanh", "identity"], True)
    spec["rules"] = {"backward_synapses": "learned"}
    spec["projections"].append({"from": "p2", "to": "p1", "pathway": "feedback"})
    spec["projections"][1]["pathway"] = "forward"
    prog = compile_network(load_network(spec))
    sim = make_simulator(prog, backend, "float64")
    mon = Monitor(sim, ["H"])
    genes = sim.prepare([make_preset("random", k=2, groups=prog.groups, lr=0.05)])
    st_ = sim.init_synapses(genes, replicas=1, seed=0)
    mon.plan(sim, S=1, R=1, B=4, steps=1)
    sim.train_step(st_, genes, np.zeros((4, 2)) + 0.3, np.array([0, 1, 0, 1]), monitor=mon)
    assert sorted(mon.recordings()) == ["H:V:p0->p1", "H:V:p2->p1", "H:p0->p1", "H:p1->p2"]
    with pytest.raises(SpecError) as e:
        Monitor(sim, ["H:p2->p1"])
    assert "feedback pathway" in str(e.value)
