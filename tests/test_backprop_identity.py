"""DESIGN §3: the backprop genome is exactly SGD, against an independent backprop.

The reference (tests/reference/backprop.py) shares no code with blursim and is
itself checked against finite differences (tests/test_reference_backprop.py).
"""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from reference.backprop import sgd

from blursim.genome import backprop_genome
from blursim.graph import compile_network
from blursim.sim import Simulator
from blursim.spec import load_network
from blursim.testing.strategies import BACKPROP_HIDDEN, backprop_rules, network_specs

N_FEATURES, N_CLASSES, STEPS, LR = 4, 3, 20, 0.05


def reference_description(prog):
    pops = []
    for p in prog.pops:
        act = {"tanh": "tanh", "sigmoid": "sigmoid", "softplus": "softplus", "identity": "identity"}[p.fwd_names[0]]
        pops.append({"name": p.name, "size": p.size, "role": p.role, "activation": act})
    projs = [
        {"name": q.name, "from": prog.pops[q.pre].name, "to": prog.pops[q.post].name, "bias": q.bias,
         "mask": None if q.mask is None else q.mask.astype(float)}
        for q in prog.projs
    ]
    return {"populations": pops, "projections": projs}


def sgd_distance(spec_dict, loss, reduction, seed, draw_targets, n_features=N_FEATURES, steps=STEPS):
    """BLUR with the backprop genome vs the reference SGD on ``loss`` over ``steps`` batches.

    ``draw_targets(rng, B)`` gives ``(y for the simulator, targets for the reference)``.
    Returns the largest relative distance of the weights over the steps, and how far
    SGD moved them (a vacuous comparison moves nothing).
    """
    prog = compile_network(load_network(spec_dict))
    sim = Simulator(prog, dtype="float64")
    genes = sim.prepare([backprop_genome(lr=LR)])
    st_ = sim.init_synapses(genes, replicas=1, seed=seed)
    W0 = {q.name: st_.forward_synapses(i, 2)[0, 0, :, :, 0] for i, q in enumerate(prog.projs)}
    rng = np.random.default_rng(seed)
    batches, raw = [], []
    for _ in range(steps):
        B = int(rng.integers(1, 6))
        x = rng.normal(size=(B, n_features))
        y, ref_targets = draw_targets(rng, B)
        inputs = {prog.pops[i].name: x[:, prog.pops[i].in_slice] for i in prog.inputs}
        batches.append((inputs, {prog.pops[o].name: ref_targets for o in prog.outputs}))
        raw.append((x, y))
    ref = sgd(reference_description(prog), W0, batches, LR, loss=loss, reduction=reduction)
    errs = []
    for t, (x, y) in enumerate(raw):
        sim.train_step(st_, genes, x, y)
        blur = np.concatenate([st_.forward_synapses(i, 2)[0, 0].ravel() for i in range(len(prog.projs))])
        # both channels must equal the SGD weights
        want = np.concatenate([np.repeat(ref[t][q.name][..., None], 2, -1).ravel() for q in prog.projs])
        errs.append(np.linalg.norm(blur - want) / np.linalg.norm(want))
    moved = sum(np.abs(ref[-1][q.name] - W0[q.name]).sum() for q in prog.projs)
    # np.max propagates a NaN (Python's max could skip it); a reference that diverged makes ``moved``
    # NaN, which the tests' assume(moved > 0) rejects
    return float(np.max(errs)), moved


def blur_vs_sgd(spec_dict, feedback, reduction, seed):
    def labels(rng, B):
        y = rng.integers(0, N_CLASSES, B)
        return y, (np.eye(N_CLASSES)[y] if feedback == "error_mse" else y)

    loss = "mse" if feedback == "error_mse" else "softmax"
    return sgd_distance(spec_dict, loss, reduction, seed, labels)


@pytest.mark.parametrize("feedback", ["error_mse", "error_softmax"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@settings(max_examples=12)
@given(data=st.data())
def test_backprop_genome_is_sgd(feedback, reduction, data):
    spec = data.draw(network_specs(
        n_features=N_FEATURES, n_classes=N_CLASSES, hidden=(1, 4), outputs=(1, 2), inputs=(1, 2),
        hidden_activation=tuple(tuple(v) for v in BACKPROP_HIDDEN.values()),
        output_activation=["identity", "one"], backward_activation="identity",
        connectivity=("all_to_all", "all_to_all", "fixed_probability", "block_random"),
        rules=backprop_rules(feedback, reduction),
    ))
    for p in spec["populations"]:
        if isinstance(p.get("forward_activation"), tuple):
            p["forward_activation"] = list(p["forward_activation"])
    err, moved = blur_vs_sgd(spec, feedback, reduction, seed=data.draw(st.integers(0, 1000)))
    # a sparse draw can leave an output with no synapse at all (e.g. fixed_probability drawing no
    # pair of a 1 x 3 projection, no bias): nothing can learn, SGD moves exactly nothing; such
    # draws are skipped (if every draw were, Hypothesis would fail the test as unsatisfiable)
    assume(moved > 0.0)
    assert moved > 1e-3, "SGD did not move the weights: the comparison would be vacuous"
    assert err <= 1e-10


def test_backprop_identity_detects_a_wrong_rule():
    """The comparison can fail: a perturbed genome (mu off by 1e-3) is not SGD."""
    spec = {
        "k": 2,
        "populations": [
            {"name": "in", "size": 4, "role": "input"},
            {"name": "h", "size": 5, "role": "hidden", "forward_activation": ["tanh", "tanh_derivative"]},
            {"name": "out", "size": 3, "role": "output", "forward_activation": ["identity", "one"]},
        ],
        "projections": [{"from": "in", "to": "h"}, {"from": "h", "to": "out"}],
        "rules": backprop_rules("error_softmax", "sum"),
    }
    err, _ = blur_vs_sgd(spec, "error_softmax", "sum", seed=3)
    assert err <= 1e-10
    prog = compile_network(load_network(spec))
    sim = Simulator(prog, dtype="float64")
    g = backprop_genome(lr=LR)
    g.groups["default"].mu[1][1] = 1.001
    genes = sim.prepare([g])
    st_ = sim.init_synapses(genes, seed=3)
    W0 = {q.name: st_.forward_synapses(i, 2)[0, 0, :, :, 0] for i, q in enumerate(prog.projs)}
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 4)), rng.integers(0, 3, 4)
    ref = sgd(reference_description(prog), W0, [({"in": x}, {"out": y})], LR, loss="softmax")
    sim.train_step(st_, genes, x, y)
    d = np.abs(st_.forward_synapses(0, 2)[0, 0, :, :, 0] - ref[0][prog.projs[0].name]).max()
    assert d > 1e-8
