"""Every example network spec in specs/ validates, compiles and runs on a task that fits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blursim.data import load_dataset
from blursim.genome import backprop_genome, make_preset
from blursim.graph import check_task_fit, compile_network
from blursim.sim import Simulator, train_and_evaluate
from blursim.spec import dump_json, load_network

SPECS = Path(__file__).resolve().parent.parent / "specs"
NETWORK_SPECS = [p for p in sorted(SPECS.glob("*.json"))
                 if str(json.loads(p.read_text()).get("format", "")).startswith("blursim.network")]
_DATA = {}


def dataset(name):
    if name not in _DATA:
        _DATA[name] = load_dataset(name)
    return _DATA[name]


def task_for(doc):
    """2-D specs run on xor (on blobs5 with a five-neuron head), 64-feature specs on digits."""
    n_in = sum(p["size"] for p in doc["populations"] if p["role"] == "input")
    n_out = {p["size"] for p in doc["populations"] if p["role"] == "output"}
    if n_in == 2 and n_out == {5}:
        return "blobs5"
    return {2: "xor", 64: "digits"}[n_in]


def test_specs_found():
    names = {p.name for p in NETWORK_SPECS}
    assert {"mlp_2d.json", "deep_mlp_2d.json", "recurrent_2d.json", "toy_blur.json", "toy_blur_5out.json",
            "digits_backprop.json", "sparse_digits.json", "dag_two_heads_digits.json"} <= names


@pytest.mark.parametrize("path", NETWORK_SPECS, ids=lambda p: p.stem)
def test_example_spec_compiles_and_matches_its_json(path):
    doc = json.loads(path.read_text())
    assert doc["format"] == "blursim.network/1"
    assert doc.get("description"), "example specs should say what they are"
    spec = load_network(path)
    prog = compile_network(spec)
    assert [p.name for p in prog.pops] == [p["name"] for p in doc["populations"]]
    # a feedback pathway from -> to is compiled as the backward half of to -> from (docs/zoo.md)
    assert [(prog.pops[q.post].name, prog.pops[q.pre].name) if q.pathway == "feedback"
            else (prog.pops[q.pre].name, prog.pops[q.post].name) for q in prog.projs] == [
        (q["from"], q["to"]) for q in doc["projections"]]
    assert prog.k == doc["k"]
    assert sorted(prog.pops[i].name for i in prog.outputs) == sorted(
        p["name"] for p in doc["populations"] if p["role"] == "output")
    # forward order: every non-input population exactly once; under the topological
    # schedule each population comes after the sources of its incoming projections.
    order = [prog.pops[i].name for i in prog.forward_order]
    assert sorted(order) == sorted(p["name"] for p in doc["populations"] if p["role"] != "input")
    if spec.rules.schedule == "topological":
        pos = {n: i for i, n in enumerate(order)}
        for q in doc["projections"]:
            if q["from"] in pos and q.get("pathway") != "feedback":  # pathways carry no forward pass
                assert pos[q["from"]] < pos[q["to"]]
    # the canonical form is stable
    assert load_network(json.loads(dump_json(spec))).model_dump() == spec.model_dump()


@pytest.mark.parametrize("path", NETWORK_SPECS, ids=lambda p: p.stem)
def test_example_spec_runs_three_steps_with_random_preset(path):
    doc = json.loads(path.read_text())
    task = task_for(doc)
    ds = dataset(task)
    spec = load_network(path)
    check_task_fit(spec, ds.n_features, ds.n_classes, task)
    prog = compile_network(spec)
    sim = Simulator(prog, backend="numpy", dtype="float64")
    genome = make_preset("random", k=prog.k, groups=prog.groups, seed=1)
    res = train_and_evaluate(sim, [genome], ds, steps=3, batch_size=16, replicas=2, seed=0,
                             eval_steps=[0, 3], n_query_batches=1, query_batch_size=64)
    assert res.accuracy.shape == (1, 2, 2)
    assert np.isfinite(res.accuracy).all() and np.isfinite(res.cross_entropy).all()
    assert not res.diverged.any()
    moved = [np.abs(res.state.forward_synapses(q, prog.k)).sum() for q in range(len(prog.projs))]
    assert all(np.isfinite(moved))
    assert res.state.steps == 3


BACKPROP_READY = [p for p in NETWORK_SPECS
                  if json.loads(p.read_text()).get("rules", {}).get("backward_update")
                  == "multiplicative_second_state"]


@pytest.mark.parametrize("path", BACKPROP_READY, ids=lambda p: p.stem)
def test_backprop_ready_specs_reduce_the_training_loss(path):
    """Specs written for DESIGN §3: a few backprop steps lower the training cross-entropy."""
    doc = json.loads(path.read_text())
    ds = dataset(task_for(doc))
    prog = compile_network(load_network(path))
    sim = Simulator(prog, backend="numpy", dtype="float64")
    res = train_and_evaluate(sim, [backprop_genome(lr=0.5, groups=prog.groups)], ds, steps=15,
                             batch_size=64, seed=0, eval_steps=[0, 15], split="train",
                             n_query_batches=1, query_batch_size=256)
    ce = res.cross_entropy[0, 0]
    assert ce[1] < ce[0]
