"""The step written once (blursim.sim.step, issue 20): one reader of the rules, kernel sets with
replaceable primitives, monitors on every engine, and the rule variant ``backward_synapses``.

Oracles: the NumPy simulator's recordings for the JAX engine's (both run the same orchestrator,
on different kernel sets and layouts); for ``backward_synapses``, eq. (7) itself -- a frozen
``V`` keeps its initial bits, and a mirrored ``V`` moves by the transpose of what ``W`` moved
(read off ``W``'s own update, which the option does not change).
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from blursim.genome import random_genome
from blursim.graph import compile_network
from blursim.sim import Monitor, Simulator
from blursim.sim import reference as ref
from blursim.sim.kernels import PRIMITIVES
from blursim.spec import load_network
from blursim.spec.network import Rules

ROOT = Path(__file__).resolve().parent.parent
SPEC = {"k": 2, "seed": 3,
        "populations": [{"name": "in", "size": 3, "role": "input"},
                        {"name": "hidden", "size": 4, "role": "hidden", "forward_activation": "tanh",
                         "backward_activation": "tanh"},
                        {"name": "out", "size": 2, "role": "output", "forward_activation": "tanh"}],
        "projections": [{"from": "in", "to": "hidden", "connectivity": {"kind": "fixed_probability", "p": 0.7}},
                        {"from": "hidden", "to": "out", "bias": False}]}


def _program(**rules):
    return compile_network(load_network({**SPEC, "rules": rules}))


def _batches(n, B=5, seed=5):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(B, 3)), rng.integers(0, 2, size=B)) for _ in range(n)]


def _genomes(S=2):
    return [random_genome(k=2, seed=s) for s in range(S)]


# --------------------------------------------------------------- one reader of the rules
def test_only_the_step_module_reads_the_rules_of_the_equations():
    """Inside blursim/sim, only step.py reads a Rules option (synapse_init, how synapses are
    drawn, is the initial draw's: oracle.py)."""
    fields = set(Rules.model_fields) - {"synapse_init"}
    readers = {}
    for path in sorted((ROOT / "blursim" / "sim").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr in fields
                    and ((isinstance(node.value, ast.Attribute) and node.value.attr == "rules")
                         or (isinstance(node.value, ast.Name) and node.value.id == "rules"))):
                readers.setdefault(path.name, set()).add(node.attr)
    assert set(readers) == {"step.py"}, readers


# ------------------------------------------------------------------ replacing a primitive
def test_a_kernel_set_with_one_primitive_replaced():
    """Saturation replaced by a no-op on either kernel set: the run equals the same rules without
    saturation, bit for bit on the fast set."""
    prog_sat, prog_plain = _program(saturation=True), _program()
    gens = _genomes()
    for g in gens:
        g.groups["default"].saturation = 0.3  # binding: |w| would exceed it
    batches = _batches(2)
    runs = {}
    for name, prog, noop in (("sat", prog_sat, False), ("noop", prog_sat, True), ("plain", prog_plain, False)):
        sim = Simulator(prog, dtype="float64")
        if noop:  # a set derived from another simulator's, bound to this one
            other = Simulator(prog, dtype="float64")
            sim = Simulator(prog, dtype="float64", kernels=other.kernels.replace(saturate=lambda run, job, syn: None))
            assert sim.kernels.sim is sim and "saturate" in sim.kernels.name
        genes = sim.prepare(gens)
        st = sim.init_synapses(genes, replicas=1, seed=2)
        for x, y in batches:
            sim.train_step(st, genes, x, y)
        runs[name] = st.get(0, "W")
    assert np.array_equal(runs["noop"], runs["plain"])
    assert np.abs(runs["sat"]).max() <= 0.3 < np.abs(runs["plain"]).max()
    # the reference set likewise
    G = ref.genome_arrays(gens, prog_sat)
    state = ref.from_simulator(Simulator(prog_sat, dtype="float64").init_synapses(
        Simulator(prog_sat, dtype="float64").prepare(gens), 1, 2), prog_sat)
    x, y = batches[0]
    noop = ref.KERNELS.replace(saturate=lambda run, job, syn: None)
    a = ref.train_step(prog_sat, G, state, x, y, kernels=noop)
    b = ref.train_step(prog_plain, G, state, x, y)
    assert all(np.array_equal(u, v) for u, v in zip(a.W, b.W))
    with pytest.raises(ValueError, match="the primitives are: " + ", ".join(PRIMITIVES[:2])):
        ref.KERNELS.replace(hebb=lambda run: None)


# ------------------------------------------------------------------ backward_synapses
def _run(prog, gens, batches, sparse="auto"):
    sim = Simulator(prog, dtype="float64", sparse=sparse)
    genes = sim.prepare(gens)
    st = sim.init_synapses(genes, replicas=2, seed=1)
    out = [st.copy()]
    for x, y in batches:
        sim.train_step(st, genes, x, y)
        out.append(st.copy())
    return out


def test_frozen_backward_synapses_never_change():
    gens, batches = _genomes(), _batches(3)
    learned = _run(_program(), gens, batches)
    frozen = _run(_program(backward_synapses="frozen"), gens, batches)
    for q in range(2):
        assert all(np.array_equal(s.get(q, "V"), frozen[0].get(q, "V")) for s in frozen)
        # the first step's W update reads the same initial V either way
        assert np.array_equal(frozen[1].get(q, "W"), learned[1].get(q, "W"))
        assert not np.array_equal(learned[1].get(q, "V"), learned[0].get(q, "V"))


@pytest.mark.parametrize("sparse", ["masked", "blocks"])
def test_mirrored_backward_synapses_move_by_the_transpose_of_W_s_hebbian_term(sparse):
    """Eq. (7) without Oja or saturation: ``W' = M (f~ W + eta~ H)`` and, mirrored,
    ``V' = M^T (f~ V + eta~ H^T)``: so ``(V' - f~ V) = (W' - f~ W)^T`` on the presynaptic rows."""
    gens, batches = _genomes(), _batches(3)
    runs = _run(_program(backward_synapses="mirror"), gens, batches, sparse)
    ft = np.array([g.groups["default"].f_tilde for g in gens]).reshape(-1, 1, 1, 1, 1)
    for before, after in zip(runs, runs[1:]):
        for q in range(2):
            dW = after.get(q, "W") - ft * before.get(q, "W")  # (S, R, k, n_pre, n_post)
            dV = after.get(q, "V") - ft * before.get(q, "V")  # (S, R, k, n_post, n_pre)
            np.testing.assert_allclose(dV, dW.swapaxes(-1, -2), rtol=1e-10, atol=1e-12)
            assert np.abs(dW).max() > 1e-3


def test_backward_synapses_need_untied_synapses():
    from blursim.errors import SpecError

    with pytest.raises(SpecError, match="backward_synapses.*tied"):
        load_network({**SPEC, "rules": {"tied": True, "backward_synapses": "frozen"}})


# ------------------------------------------------------------------ monitors on JAX
VARIABLES = ["states", "feedback", "weights", "norms", "H", "loss", "accuracy"]


@pytest.mark.parametrize("rules", [{"oja": "weights", "saturation": True},
                                   {"shared_channels": True, "oja": "activity", "backward_synapses": "mirror",
                                    "batch_reduction": "mean"}])
def test_jax_engine_records_what_the_numpy_engine_records(rules):
    pytest.importorskip("jax")
    from blursim.sim.jax_engine import JaxSimulator

    prog = _program(**rules)
    gens = _genomes()
    recs = {}
    for name, sim in (("numpy", Simulator(prog, dtype="float64")), ("jax", JaxSimulator(prog, "float64"))):
        mon = Monitor(sim, VARIABLES, steps=[0, 1, 3], replicas=[1])
        genes = sim.prepare(gens)
        st = sim.init_synapses(genes, replicas=2, seed=1)
        mon.record_synapses(sim, st)
        for x, y in _batches(3):
            sim.train_step(st, genes, x, y, monitor=mon)
        recs[name] = mon.recordings()
    assert sorted(recs["jax"]) == sorted(recs["numpy"]) and len(recs["jax"]) > 15
    for name, a in recs["numpy"].items():
        b = recs["jax"][name]
        assert a.dims == b.dims and a.values.shape == b.values.shape, name
        assert all(np.array_equal(a.coords[d], b.coords[d]) for d in a.coords), name
        np.testing.assert_allclose(b.values, a.values, rtol=1e-9, atol=1e-12, err_msg=name)


def test_blursim_run_records_on_the_jax_backend(tmp_path):
    pytest.importorskip("jax")
    from blursim.cli.main import main
    from blursim.sim import load_recordings

    recs = {}
    for backend in ("numpy", "jax"):
        out = tmp_path / backend
        rc = main(["run", "specs/toy_blur.json", "--task", "two_moons", "--preset", "random", "--steps", "3",
                   "--batch", "8", "--backend", backend, "--dtype", "float64", "--record", "default",
                   "--out", str(out)])
        assert rc == 0
        recs[backend] = load_recordings(out / "record.npz")
    assert sorted(recs["jax"]) == sorted(recs["numpy"])
    for name, a in recs["numpy"].items():
        np.testing.assert_allclose(recs["jax"][name].values, a.values, rtol=1e-9, atol=1e-12, err_msg=name)


def test_the_law_of_docs_rule_variants_runs(capsys, monkeypatch):
    """docs/rule_variants.md's law holds under "mirror" and breaks under "learned", as it says."""
    import re

    monkeypatch.chdir(ROOT)
    doc = (ROOT / "docs" / "rule_variants.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)\n```", doc, flags=re.S) if "assert_invariant(" in b)
    exec(compile(block, "docs/rule_variants.md", "exec"), {})
    assert "learned V breaks it" in capsys.readouterr().out


def test_mirror_on_the_jax_engine_equals_numpy():
    pytest.importorskip("jax")
    from blursim.sim.jax_engine import JaxSimulator

    prog = _program(backward_synapses="mirror", oja="activity")
    gens = _genomes()
    out = {}
    for name, sim in (("numpy", Simulator(prog, dtype="float64")), ("jax", JaxSimulator(prog, "float64"))):
        genes = sim.prepare(gens)
        st = sim.init_synapses(genes, replicas=2, seed=1)
        for x, y in _batches(2):
            sim.train_step(st, genes, x, y)
        out[name] = [st.get(q, "V") for q in range(2)]
    for a, b in zip(out["numpy"], out["jax"]):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


def test_flops_count_the_products_a_step_computes():
    """oracle.step_flops: forward 2 B n_pre n_post k per projection; backward into the hidden
    population only; Hebbian for W and a V that learns (a frozen V computes none)."""
    from blursim.sim.oracle import step_flops

    B, k = 5, 2
    fwd = 2 * B * k * (3 * 4 + 4 * 2)
    learned, frozen = step_flops(_program(), B), step_flops(_program(backward_synapses="frozen"), B)
    assert learned["forward"] == frozen["forward"] == fwd
    assert learned["backward"] == frozen["backward"] == 2 * B * k * 4 * 2  # hidden <- out only
    assert learned["hebbian"] == 2 * fwd and frozen["hebbian"] == fwd
    assert Simulator(_program(), sparse="masked").flops(B) == learned
