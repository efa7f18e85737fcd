"""The JAX engine (blursim.sim.jax_engine): the reference step jitted and scanned, wired into runs,
evaluations and ES population evaluation.

Anchored in the NumPy :class:`Simulator` (a different implementation of the step): same initial
synapses bit for bit, the same synapses after several steps to 1e-12 in float64, the same metrics.
The networks are tiny (JAX compiles once per network and shape).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from blursim.cli.main import main  # noqa: E402
from blursim.errors import BackendError, SpecError  # noqa: E402
from blursim.genome import random_genome  # noqa: E402
from blursim.graph import compile_network  # noqa: E402
from blursim.sim import Simulator, make_simulator  # noqa: E402
from blursim.sim.jax_engine import JaxSimulator  # noqa: E402
from blursim.spec import load_network  # noqa: E402

SPEC = {"k": 3, "seed": 1,
        "populations": [{"name": "in", "size": 3, "role": "input"},
                        {"name": "h", "size": 4, "role": "hidden", "forward_activation": ["tanh", "sigmoid", "sin"],
                         "backward_activation": "tanh", "normalization": "both"},
                        {"name": "out", "size": 2, "role": "output"}],
        "projections": [{"from": "in", "to": "h", "connectivity": {"kind": "fixed_probability", "p": 0.6}},
                        {"from": "h", "to": "out", "genome": "g1"}, {"from": "in", "to": "out", "bias": False}],
        "rules": {"oja": "weights", "saturation": True, "reset_neurons": False}}
#: 2 -> 3 -> 2 for the 2-D toy tasks (paper default rules).
TWO_D = {"k": 2, "populations": [
    {"name": "in", "size": 2, "role": "input"},
    {"name": "h", "size": 3, "role": "hidden", "forward_activation": "relu_tanh"},
    {"name": "out", "size": 2, "role": "output", "forward_activation": "tanh"}],
    "projections": [{"from": "in", "to": "h"}, {"from": "h", "to": "out"}]}


def rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max()) / max(float(np.abs(b).max()), 1e-3)


@pytest.fixture(scope="module")
def tiny():
    prog = compile_network(load_network(SPEC))
    gens = [random_genome(k=3, seed=s, groups=["default", "g1"]) for s in (1, 2)]
    for g in gens:
        g.groups["g1"].oja_alpha = 0.2
        g.groups["g1"].saturation = -1.5
        g.groups["default"].init_scale = 0.7
    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(5, 3)), rng.integers(0, 2, 5)) for _ in range(3)]
    return prog, gens, batches, (rng.normal(size=(6, 3)), rng.integers(0, 2, 6))


def synapses(sim, st, prog):
    return [(q, w, st.get(q, w)) for q in range(len(prog.projs)) for w in "WbV" if st.get(q, w) is not None]


def test_jax_engine_equals_simulator_float64(tiny):
    prog, gens, batches, (xq, yq) = tiny
    sim, js = Simulator(prog, backend="numpy", dtype="float64"), make_simulator(prog, "jax", "float64")
    assert isinstance(js, JaxSimulator) and js.backend.name == "jax"
    g_np, g_jx = sim.prepare(gens), js.prepare(gens)
    s_np, s_jx = sim.init_synapses(g_np, 2, 5), js.init_synapses(g_jx, 2, 5)
    for (q, w, a), (_, _, b) in zip(synapses(sim, s_np, prog), synapses(js, s_jx, prog)):
        assert np.array_equal(a, b), f"initial {w}[{q}] differs"  # the same draws, bit for bit
    s_scan = s_jx.copy()
    for x, y in batches:
        sim.train_step(s_np, g_np, x, y)
        js.train_step(s_jx, g_jx, x, y)
    js.train_steps(s_scan, g_jx, batches)  # the whole unroll as one lax.scan
    assert s_jx.steps == s_scan.steps == 3
    for (q, w, a), (_, _, b), (_, _, c) in zip(synapses(sim, s_np, prog), synapses(js, s_jx, prog),
                                               synapses(js, s_scan, prog)):
        assert rel(b, a) <= 1e-12, f"{w}[{q}] after 3 steps: {rel(b, a):.3g}"
        assert rel(c, b) <= 1e-13, f"{w}[{q}]: the scan differs from the step loop"
    m_np, m_jx = sim.evaluate(s_np, g_np, xq, yq), js.evaluate(s_jx, g_jx, xq, yq)
    assert np.array_equal(m_np["accuracy"], m_jx["accuracy"])
    assert rel(m_jx["cross_entropy"], m_np["cross_entropy"]) <= 1e-12
    assert js.is_finite(s_jx).shape == (2, 2) and js.is_finite(s_jx).all()
    # 64-bit mode was on only inside the engine's calls: the process-wide setting is untouched
    assert not jax.config.jax_enable_x64


def test_jax_engine_flags_bad_labels_and_records_monitors(tiny):
    from blursim.errors import DataError
    from blursim.sim import Monitor

    prog, gens, batches, _ = tiny
    js = JaxSimulator(prog, "float64")
    genes = js.prepare(gens)
    st = js.init_synapses(genes, 1, 0)
    x, y = batches[0]
    with pytest.raises(DataError, match="label 2 does not fit output population 'out'"):
        js.train_step(st, genes, x, np.full_like(y, 2))
    mon = Monitor(js, "loss")  # monitors record on the JAX engine too (tests/test_step.py: equal to NumPy's)
    js.train_step(st, genes, x, y, monitor=mon)
    assert mon["loss"].values.shape == (1, 2, 1)
    with pytest.raises(SpecError, match="float32 or float64"):
        JaxSimulator(prog, "complex128")


def test_missing_jax_extra_names_the_install_command(monkeypatch, tmp_path, capsys):
    prog = compile_network(load_network(SPEC))
    monkeypatch.setitem(sys.modules, "jax", None)  # as if JAX were not installed
    with pytest.raises(BackendError) as err:
        make_simulator(prog, "jax")
    assert 'pip install -e ".[jax]"' in str(err.value) and "\n" not in str(err.value)
    spec = tmp_path / "net.json"
    spec.write_text(json.dumps(TWO_D))
    rc = main(["run", str(spec), "--task", "xor", "--preset", "random", "--backend", "jax", "--steps", "1"])
    out = capsys.readouterr()
    assert rc == 2 and 'pip install -e ".[jax]"' in out.err


def test_cli_run_on_jax_matches_numpy(tmp_path, capsys):
    """``blursim run --backend jax`` (float32, the default) reports what the NumPy backend does;
    ``--record`` records (tests/test_step.py: the recording equals NumPy's)."""
    spec = tmp_path / "net.json"
    spec.write_text(json.dumps(TWO_D))
    runs = {}
    for backend in ("numpy", "jax"):
        assert main(["run", str(spec), "--task", "xor", "--task-opt", "n_test=64", "--preset", "random",
                     "--steps", "3", "--batch", "8", "--eval-every", "3", "--replicas", "2",
                     "--backend", backend, "--json"]) == 0
        runs[backend] = json.loads(capsys.readouterr().out)
    assert runs["jax"]["backend"] == "jax" and runs["jax"]["dtype"] == "float32"
    assert runs["jax"]["accuracy_mean"] == runs["numpy"]["accuracy_mean"]
    assert np.allclose(runs["jax"]["cross_entropy_mean"], runs["numpy"]["cross_entropy_mean"], rtol=1e-5)
    rc = main(["run", str(spec), "--task", "xor", "--preset", "random", "--backend", "jax",
               "--record", "default", "--out", str(tmp_path / "rec")])
    assert rc == 0 and (tmp_path / "rec" / "record.npz").is_file()


def test_es_population_evaluation_on_jax(tmp_path):
    """``execution.backend: "jax"`` evaluates an ES population (species axis, whole unroll as one
    scan) to the numbers of the NumPy simulator."""
    from blursim.meta import prepare_experiment
    from blursim.meta.evaluate import evaluate_chunk, make_job

    exp = {"network": {"k": 2, "populations": [
        {"name": "in", "size": 2, "role": "input"},
        {"name": "h", "size": 3, "role": "hidden", "genome": "g1"},
        {"name": "out", "size": 2, "role": "output"}],
        "projections": [{"from": "in", "to": "h"}, {"from": "h", "to": "out", "genome": "g1"}]},
        "training_tasks": [{"name": "xor", "options": {"n_train": 64, "n_test": 64}}, {"name": "and"}],
        "inner": {"steps": 3, "batch_size": 4, "query_batches": 2, "replicas": 2},
        "genome": {"init": {"kind": "random"}, "groups": ["g1"]},
        "strategy": {"name": "cma_es", "sigma0": 0.1, "popsize": 3}, "generations": 1,
        "execution": {"dtype": "float64"}}
    runs = {}
    X = None
    for backend in ("numpy", "jax"):
        exp["execution"]["backend"] = backend
        setup = prepare_experiment(exp)
        if X is None:
            X = setup.x0 + 0.1 * np.random.default_rng(0).standard_normal((3, setup.layout.size))
        runs[backend] = evaluate_chunk(make_job(setup), X, "train", [7, 8], setup.train_protocol(0))
    assert np.array_equal(runs["jax"]["accuracy"], runs["numpy"]["accuracy"])
    assert rel(runs["jax"]["cross_entropy"], runs["numpy"]["cross_entropy"]) <= 1e-12
    assert runs["jax"]["finite"].all()


def test_experiment_on_jax_without_the_extra_is_refused_before_any_compute(monkeypatch):
    from blursim.meta import prepare_experiment

    monkeypatch.setitem(sys.modules, "jax", None)
    exp = {"network": "specs/toy_blur.json", "training_tasks": [{"name": "xor"}], "inner": {"steps": 1},
           "genome": {"init": {"kind": "random"}}, "strategy": {"name": "cma_es", "sigma0": 0.1, "popsize": 2},
           "generations": 1, "execution": {"backend": "jax"}}
    with pytest.raises(SpecError, match=r"execution.backend 'jax' needs the optional JAX extra") as err:
        prepare_experiment(exp)
    assert err.value.path == "$.execution.backend" and 'pip install -e ".[jax]"' in str(err.value)


def test_jax_simulator_takes_a_reference_kernel_set(tiny):
    """``JaxSimulator(kernels=...)``: a replaced primitive is traced and jitted like the rest. The
    reference kernels themselves give the default bits; a halved activation changes the outputs
    and equals the same kernel set run eagerly by NumPy (blursim.sim.reference.train_step); the
    fast engine's kernel set is refused with a one-line error."""
    from blursim.sim import reference as ref

    prog, gens, batches, (xq, _) = tiny
    half = ref.KERNELS.replace(activate=lambda run, x, names: 0.5 * ref.activate(names, x))
    outs, blurs = {}, {}
    for name, K in (("default", None), ("reference", ref.KERNELS), ("half", half)):
        js = JaxSimulator(prog, "float64", kernels=K)
        g = js.prepare(gens)
        st = js.init_synapses(g, 2, 5)
        for x, y in batches:
            js.train_step(st, g, x, y)
        outs[name] = [np.asarray(o) for o in js.forward(st, g, xq)]
        blurs[name] = st.blur
    assert all(np.array_equal(a, b) for a, b in zip(outs["default"], outs["reference"]))
    assert all(rel(a, b) > 1e-3 for a, b in zip(outs["half"], outs["default"]))
    # the same kernel set on NumPy, eagerly, from the same initial synapses and genomes
    js = JaxSimulator(prog, "float64")
    genome = ref.genome_arrays(gens, prog)
    st0 = js.init_synapses(js.prepare(gens), 2, 5).blur
    state = ref.BlurState(tuple(np.asarray(w) for w in st0.W),
                          tuple(None if v is None else np.asarray(v) for v in st0.V), None)
    for x, y in batches:
        state = ref.train_step(prog, genome, state, np.asarray(x, dtype=np.float64), y, half)
    for a, b in zip(blurs["half"].W, state.W):
        assert rel(np.asarray(a), b) <= 1e-12
    with pytest.raises(SpecError, match="reference kernel set"):
        JaxSimulator(prog, "float64", kernels=Simulator(prog, backend="numpy", dtype="float64").kernels)
