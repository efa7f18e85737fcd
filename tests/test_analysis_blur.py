"""Gradient-equivalence analysis of BLUR itself (paper Sec. 3.5, Fig. 2, App. A; DESIGN §5).

Known answers:

* the backprop genome (DESIGN §3) with ``error_mse`` or ``error_softmax``
  feedback makes one full-batch step ``Δw = −lr ∇L``, so ``Q = ∂Δw/∂w`` is
  ``−lr`` times the Hessian of the loss: symmetric on any acyclic topology,
  and equal to ``−lr ×`` the finite-difference Hessian of the independent
  reference backprop (tests/reference/backprop.py, no blursim code);
* random genomes are not gradients: asymmetry far above the noise floor;
* the complex-step Jacobian (complex128 simulation) and the FD ladder agree
  within the FD error estimate;
* labels/blocks name the synapse a coordinate perturbs (checked by hand);
* the memory guard names n, bytes and ``--variables PROJ`` (API and CLI);
* the testing kit's assertions pass and fail on known cases.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from reference.backprop import loss_and_grads

from blursim.analysis import (
    AnalysisError,
    BlurUpdateMap,
    MemoryBudgetError,
    analyze,
    asymmetry_report,
    base_state,
    fd_complex_agreement,
    jacobian,
    jacobian_complex,
    jacobian_fd,
)
from blursim.cli.main import main
from blursim.genome import backprop_genome, random_genome
from blursim.graph import compile_network
from blursim.sim import Simulator, train_batch
from blursim.spec import load_network
from blursim.testing import (
    assert_gradient_like,
    assert_invariant,
    assert_not_gradient_like,
    assert_tied_stay_tied,
    masked_entries_are_zero,
)
from blursim.testing.strategies import (
    backprop_network_specs,
    data_batches,
    genomes,
    network_specs,
    synapse_states,
)

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
LR = 0.1
SPARSE = ("all_to_all", "fixed_probability", "block_random")


def chain(n_in=2, n_h=3, n_out=2, *, rules=None, hidden_act="tanh", out_act="tanh", conn=None, bias=True, k=2):
    return {
        "k": k,
        "populations": [
            {"name": "in", "size": n_in, "role": "input"},
            {"name": "h", "size": n_h, "role": "hidden", "forward_activation": hidden_act,
             "backward_activation": "tanh" if isinstance(hidden_act, str) else "identity"},
            {"name": "out", "size": n_out, "role": "output", "forward_activation": out_act,
             "backward_activation": "identity"},
        ],
        "projections": [
            {"from": "in", "to": "h", "bias": bias, "connectivity": conn or {"kind": "all_to_all"}},
            {"from": "h", "to": "out", "bias": bias},
        ],
        "rules": rules or {},
    }


def backprop_chain(feedback="error_softmax", **kw):
    from blursim.testing.strategies import backprop_rules

    return chain(rules=backprop_rules(feedback, "sum"), hidden_act=["tanh", "tanh_derivative"],
                 out_act=["identity", "one"], **kw)


def connected(spec):
    """False if some projection's random mask came out empty (a degenerate draw: nothing flows)."""
    prog = compile_network(load_network(spec))
    return all(q.mask is None or q.mask.any() for q in prog.projs)


def batch(n_features=2, n_classes=2, B=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(B, n_features)), rng.integers(0, n_classes, B)


# ---------------------------------------------------------------------------
# known answer 1: the backprop genome's Q is the (symmetric) Hessian times −lr
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("feedback", ["error_mse", "error_softmax"])
@settings(max_examples=10)
@given(data=st.data())
def test_backprop_genome_jacobian_is_symmetric_on_random_dags(feedback, data):
    spec = data.draw(backprop_network_specs(
        feedback, data.draw(st.sampled_from(["sum", "mean"])), n_features=3, n_classes=3,
        sizes=(1, 3), hidden=(1, 3), connectivity=SPARSE,
    ))
    assume(connected(spec))
    x, y = data.draw(data_batches(3, 3, batch=(2, 6)))
    m = BlurUpdateMap(spec, backprop_genome(lr=LR), x, y)
    J = jacobian(m, m.w0, method="complex")
    rep = asymmetry_report(J)
    assert J.method == "complex" and rep.q_fro > 1e-6  # the test is not vacuous
    assert rep.is_symmetric, rep.verdict
    assert rep.rel_asymmetry < 1e-12  # absolute check, independent of the noise model


def reference_net(prog):
    """The network in the reference's plain-data format (activation of state 0)."""
    pops = [{"name": p.name, "size": p.size, "role": p.role, "activation": p.fwd_names[0]} for p in prog.pops]
    projs = [{"name": q.name, "from": prog.pops[q.pre].name, "to": prog.pops[q.post].name, "bias": q.bias,
              "mask": None if q.mask is None else q.mask.astype(float)} for q in prog.projs]
    return {"populations": pops, "projections": projs}


def reference_coordinates(m):
    """(projection, row, col) of the reference weight behind each map coordinate, parsed from the labels."""
    out = []
    for label in m.labels:
        proj, inside = re.fullmatch(r"(.+)\[(.+)\]", label).groups()
        fields = dict(f.split("=") if "=" in f else (f, None) for f in inside.split(","))
        n_pre = next(q.n_pre for q in m.program.projs if q.name == proj)
        row = n_pre if "bias" in fields else int(fields["pre"])
        out.append((proj, row, int(fields["post"])))
    return out


@pytest.mark.parametrize("feedback", ["error_mse", "error_softmax"])
@settings(max_examples=4)
@given(data=st.data())
def test_backprop_jacobian_equals_minus_lr_times_reference_hessian(feedback, data):
    reduction = data.draw(st.sampled_from(["sum", "mean"]))
    spec = data.draw(backprop_network_specs(
        feedback, reduction, n_features=3, n_classes=3, sizes=(1, 3), hidden=(1, 2), connectivity=SPARSE,
    ))
    assume(connected(spec))
    x, y = data.draw(data_batches(3, 3, batch=(2, 5)))
    prog = compile_network(load_network(spec))
    m = BlurUpdateMap(prog, backprop_genome(lr=LR), x, y, seed=data.draw(st.integers(0, 99)))
    Q = jacobian_complex(m, m.w0).Q

    desc = reference_net(prog)
    coords = reference_coordinates(m)
    weights = {q.name: np.zeros((q.n_pre + q.bias, q.n_post)) for q in prog.projs}
    for (proj, r, c), v in zip(coords, m.w0):
        weights[proj][r, c] = v
    inputs = {prog.pops[i].name: x[:, prog.pops[i].in_slice] for i in prog.inputs}
    tg = np.eye(3)[y] if feedback == "error_mse" else y
    targets = {prog.pops[o].name: tg for o in prog.outputs}
    loss = "mse" if feedback == "error_mse" else "softmax"

    def grad(w_flat):
        W = {k: v.copy() for k, v in weights.items()}
        for (proj, r, c), v in zip(coords, w_flat):
            W[proj][r, c] = v
        g = loss_and_grads(desc, W, inputs, targets, loss=loss, reduction=reduction)[1]
        return np.array([g[proj][r, c] for proj, r, c in coords])

    h = 1e-5
    H = np.empty((m.n, m.n))
    for j in range(m.n):
        e = np.zeros(m.n)
        e[j] = h
        H[:, j] = (grad(m.w0 + e) - grad(m.w0 - e)) / (2 * h)
    scale = max(1.0, np.abs(H).max())
    assert np.abs(H).max() > 1e-4  # non-trivial Hessian
    np.testing.assert_allclose(Q, -LR * H, rtol=0, atol=1e-7 * LR * scale)
    # the step itself is −lr × the reference gradient (Δw at the base point)
    np.testing.assert_allclose(m(m.w0), -LR * grad(m.w0), rtol=0, atol=1e-12 * scale)


# ---------------------------------------------------------------------------
# known answer 2: random genomes are not gradients
# ---------------------------------------------------------------------------


@settings(max_examples=8)
@given(data=st.data())
def test_random_genome_is_asymmetric_far_above_noise(data):
    rules = data.draw(st.sampled_from([
        {},  # the paper's general rule family: untied, additive, target feedback
        {"oja": "weights", "saturation": True},
        {"tied": True, "shared_channels": True, "backward_update": "multiplicative_second_state",
         "feedback": "error_softmax"},
    ]))
    spec = data.draw(network_specs(n_features=3, n_classes=3, sizes=(2, 3), hidden=(1, 2), rules=rules,
                                   connectivity=SPARSE))
    assume(connected(spec))
    x, y = data.draw(data_batches(3, 3, batch=(3, 6)))
    g = data.draw(genomes())
    rep = assert_not_gradient_like(spec, g, x, y, variables="forward_backward", min_margin=1e3,
                                   min_rel=1e-6)
    assert rep.margin > 1e6 and not rep.is_symmetric


# ---------------------------------------------------------------------------
# exact vs finite differences
# ---------------------------------------------------------------------------


CASES = {
    "backprop": (backprop_chain("error_mse"), backprop_genome(lr=0.5)),
    "general_rules": (chain(rules={"oja": "weights", "saturation": True, "batch_reduction": "mean"}),
                      random_genome(seed=3, scale=0.7)),
    "normalised": (chain(rules={"feedback": "error_softmax"}, hidden_act="sigmoid",
                         conn={"kind": "fixed_probability", "p": 0.6, "seed": 1}),
                   random_genome(seed=4)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fd_and_complex_step_agree_within_fd_error_estimate(case):
    spec, g = CASES[case]
    if case == "normalised":
        spec["populations"][1]["normalization"] = "both"
    x, y = batch(seed=1)
    m = BlurUpdateMap(spec, g, x, y, variables="forward_backward" if "tied" not in spec["rules"] else "forward")
    cx = jacobian_complex(m, m.w0)
    fd = jacobian_fd(m, m.w0)
    agree = fd_complex_agreement(fd, cx)
    assert agree["agree"], agree
    assert agree["frac_within"] > 0.9, agree  # elementwise the estimate is an estimate, not a bound
    assert 0 < fd.error_fro < 1e-5 * np.linalg.norm(cx.Q)  # the estimate is small, but not zero
    # the complex simulation's real part is the real simulation
    W = np.stack([m.w0, m.w0 + 0.01])
    np.testing.assert_allclose(m.batch(W + 0j).real, m.batch(W), rtol=0, atol=1e-14)


def test_a_wrong_jacobian_is_outside_the_agreement():
    """The agreement check can fail: a Jacobian perturbed by 100 × the FD error is rejected."""
    spec, g = CASES["backprop"]
    x, y = batch(seed=2)
    m = BlurUpdateMap(spec, g, x, y)
    cx, fd = jacobian_complex(m, m.w0), jacobian_fd(m, m.w0)
    cx.Q[3, 5] += 100 * fd.error_fro
    assert not fd_complex_agreement(fd, cx)["agree"]


# ---------------------------------------------------------------------------
# variables, labels, blocks
# ---------------------------------------------------------------------------


def test_labels_and_blocks_name_the_synapse_a_coordinate_moves():
    spec = chain(3, 4, 2, conn={"kind": "fixed_probability", "p": 0.6, "seed": 5})
    prog = compile_network(load_network(spec))
    mask = prog.projs[0].mask
    assert mask is not None and 0 < mask.sum() < mask.size
    g = random_genome(seed=2)
    x, y = batch(3, 2, seed=3)
    st0 = base_state(prog, g, "random", seed=7)
    m = BlurUpdateMap(prog, g, x, y, variables="forward_backward", state=st0)
    k = 2
    sizes = {"in->h": (int(mask.sum()) + 4) * k, "h->out": (4 + 1) * 2 * k,
             "V:in->h": int(mask.sum()) * k, "V:h->out": 4 * 2 * k}
    assert [(b[0], b[2] - b[1]) for b in m.blocks] == list(sizes.items())
    assert m.n == sum(sizes.values()) and len(set(m.labels)) == m.n
    for name, start, stop in m.blocks:
        assert all(lbl.startswith(name + "[") for lbl in m.labels[start:stop])
    i0, j0 = map(int, np.argwhere(~mask)[0])
    assert f"in->h[pre={i0},post={j0},c=0]" not in m.labels  # masked synapses are not variables

    sim = Simulator(prog, dtype="float64")
    genes = sim.prepare([g])
    i1, j1 = map(int, np.argwhere(mask)[0])
    delta = 1e-3
    for label, which, index in [
        (f"in->h[pre={i1},post={j1},c=1]", "W", (0, 0, 1, i1, j1)),
        ("h->out[bias,post=1,c=0]", "b", (0, 0, 0, 1)),
        (f"V:in->h[post={j1},pre={i1},c=1]", "V", (0, 0, 1, j1, i1)),
    ]:
        q = 0 if "in->h" in label else 1
        st_ = st0.copy()
        arr = np.array(st_.get(q, which))
        arr[index] += delta
        st_.set(q, which, arr)
        before = [(np.array(st_.get(i, "W")), np.array(st_.get(i, "V"))) for i in range(2)]
        sim.train_step(st_, genes, x, y)
        w = m.w0.copy()
        w[m.labels.index(label)] += delta
        dw = m(w)
        # every coordinate of the map's Δw equals the hand-run step at the synapse its label names
        for lab, value in zip(m.labels, dw):
            name, inside = re.fullmatch(r"(V:)?(.+)\[(.+)\]", lab).groups()[1:]
            qi = 0 if name == "in->h" else 1
            f = dict(p.split("=") if "=" in p else (p, None) for p in inside.split(","))
            c = int(f["c"])
            if lab.startswith("V:"):
                want = st_.get(qi, "V")[0, 0, c, int(f["post"]), int(f["pre"])] - \
                    before[qi][1][0, 0, c, int(f["post"]), int(f["pre"])]
            elif "bias" in f:
                want = st_.get(qi, "b")[0, 0, c, int(f["post"])] - (
                    arr[index] if (which == "b" and q == qi and index == (0, 0, c, int(f["post"])))
                    else st0.get(qi, "b")[0, 0, c, int(f["post"])])
            else:
                want = st_.get(qi, "W")[0, 0, c, int(f["pre"]), int(f["post"])] - \
                    before[qi][0][0, 0, c, int(f["pre"]), int(f["post"])]
            assert value == pytest.approx(want, abs=1e-14), lab


def test_shared_tied_network_has_one_variable_per_synapse_and_no_V():
    spec = backprop_chain()
    m = BlurUpdateMap(spec, backprop_genome(), *batch())
    assert m.n == (2 + 1) * 3 + (3 + 1) * 2 and all(",c=" not in lbl for lbl in m.labels)
    assert m.labels[0] == "in->h[pre=0,post=0]" and m.labels[6] == "in->h[bias,post=0]"
    with pytest.raises(AnalysisError, match="tied.*no V variables"):
        BlurUpdateMap(spec, backprop_genome(), *batch(), variables="V:in->h")


def test_unknown_variables_list_the_valid_choices():
    with pytest.raises(AnalysisError) as ei:
        BlurUpdateMap(chain(), random_genome(), *batch(), variables="in->hiden")
    msg = str(ei.value)
    assert "'in->hiden'" in msg and "in->h (18 synapses)" in msg and "V:h->out (12 synapses)" in msg
    assert "forward_backward" in msg


def test_restricted_variables_give_the_principal_subblock():
    spec, g = CASES["general_rules"]
    x, y = batch(seed=4)
    full = BlurUpdateMap(spec, g, x, y, variables="forward_backward")
    sub = BlurUpdateMap(spec, g, x, y, variables="h->out,V:in->h")
    Qf = jacobian_complex(full, full.w0).Q
    Qs = jacobian_complex(sub, sub.w0).Q
    idx = [full.labels.index(lbl) for lbl in sub.labels]
    np.testing.assert_allclose(Qs, Qf[np.ix_(idx, idx)], rtol=0, atol=1e-15)


@settings(max_examples=5)
@given(data=st.data())
def test_map_at_a_drawn_synapse_state(data):
    """``state=`` sets the base point: Δw there equals a plain simulator step from that state."""
    spec = data.draw(network_specs(n_features=3, n_classes=3, sizes=(1, 3), hidden=(1, 2), connectivity=SPARSE))
    g = data.draw(genomes())
    state = data.draw(synapse_states(spec, g))
    x, y = data.draw(data_batches(3, 3))
    m = BlurUpdateMap(spec, g, x, y, variables="forward_backward", state=state)
    prog = m.program
    sim = Simulator(prog, dtype="float64")
    after = state.copy()
    sim.train_step(after, sim.prepare([g]), x, y)
    np.testing.assert_allclose(m(m.w0), m.state_to_vector(after) - m.state_to_vector(state), rtol=0, atol=1e-13)
    assert masked_entries_are_zero(state, prog)


def test_trained_state_is_the_sgd_trajectory_for_backprop():
    from blursim.data import load_dataset
    from reference.backprop import sgd

    ds = load_dataset("xor", {"n_train": 64, "n_test": 64})
    spec = json.loads((SPECS / "mlp_2d.json").read_text())
    prog = compile_network(load_network(spec))
    g = backprop_genome(lr=LR)
    s0 = base_state(prog, g, "random", seed=2)
    s3 = base_state(prog, g, "trained:3", dataset=ds, batch_size=8, seed=2)
    m = BlurUpdateMap(prog, g, ds.x_train[:4], ds.y_train[:4], state=s0)
    desc = reference_net(prog)
    W0 = {q.name: s0.forward_synapses(i, 2)[0, 0, :, :, 0] for i, q in enumerate(prog.projs)}
    batches = []
    for t in range(3):
        xb, yb = train_batch(ds.x_train, ds.y_train, t, 2, 8)
        batches.append(({"in": xb}, {"out": yb}))
    ref = sgd(desc, W0, batches, LR, loss="softmax", reduction="mean")[-1]
    want = np.concatenate([ref[q.name].ravel() for q in prog.projs])
    np.testing.assert_allclose(m.state_to_vector(s3), want, rtol=0, atol=1e-12)
    assert np.abs(want - m.w0).max() > 1e-4
    with pytest.raises(AnalysisError, match="needs a dataset"):
        base_state(prog, g, "trained:2")
    with pytest.raises(AnalysisError, match="'random' or 'trained:N'"):
        base_state(prog, g, "trained")


# ---------------------------------------------------------------------------
# analyze(): report, metric, circulation, files; memory guard
# ---------------------------------------------------------------------------


def test_analyze_report_for_backprop_and_random_genome(tmp_path):
    x, y = batch(seed=5)
    spec = backprop_chain("error_softmax", n_h=2)
    rb = analyze(spec, backprop_genome(lr=LR), x, y, variables="h->out", metric_states=3,
                 out_dir=tmp_path / "bp")
    d = json.loads((tmp_path / "bp" / "report.json").read_text())
    assert d["verdict"]["gradient_like"] is True and d["verdict"]["circulation_zero"] is True
    assert d["metric"]["pd_found"] is True  # ĝ = I works for a gradient
    assert d["jacobian"]["method"] == "complex" and d["jacobian_check"]["agree"] is True
    assert d["variables"]["n"] == 6 and d["variables"]["selection"] == ["h->out"]
    assert sorted(p.name for p in (tmp_path / "bp").iterdir()) == [
        "circulation.png", "fig2_asymmetry.png", "report.json"]
    assert rb.gradient_like

    rr = analyze(chain(), random_genome(seed=1), x, y, metric=False, n_planes=2)
    d = json.loads(json.dumps(rr.to_dict(), allow_nan=False))
    assert d["verdict"]["gradient_like"] is False and d["verdict"]["circulation_zero"] is False
    assert d["asymmetry"]["margin"] > 1e6 and d["metric"] == {"skipped": "disabled"}
    assert 1.8 < d["circulation"]["slope"] < 2.2  # Stokes: ∮ ~ π ε² vᵀ(Q−Qᵀ)u
    big = analyze(chain(), random_genome(seed=1), x, y, metric_max_n=10, circulation=False, check_fd=False)
    assert big.metric is None and "n too large: n=34 > metric_max_n=10" in big.metric_skipped
    assert "variables='h->out'" in big.metric_skipped


def test_memory_guard_through_the_blur_map_and_analyze():
    spec = chain(40, 30, 10)
    x, y = batch(40, 10, B=4)
    m = BlurUpdateMap(spec, random_genome(), x, y)
    assert m.n == (41 * 30 + 31 * 10) * 2
    with pytest.raises(MemoryBudgetError, match=f"n={m.n} ") as ei:
        jacobian(m, m.w0, memory_budget=10 << 20)
    assert ei.value.required_bytes > 10 << 20 and m.n_evaluations == 0  # refused before simulating
    with pytest.raises(MemoryBudgetError) as ei:
        analyze(spec, random_genome(), x, y, memory_budget=10 << 20)
    msg = str(ei.value)
    assert f"n={m.n} variables (in->h, h->out)" in msg and str(ei.value.required_bytes) in msg
    assert "variables='h->out' (CLI: --variables 'h->out')" in msg and "in->h 2460" in msg


def test_cli_analyze_writes_report_and_plots(tmp_path, capsys):
    out = tmp_path / "an"
    rc = main(["analyze", str(SPECS / "mlp_2d.json"), "--preset", "backprop", "--task", "xor",
               "--variables", "hidden->out", "--batch", "16", "--metric", "off", "--out", str(out), "--json"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((out / "report.json").read_text())
    assert printed["verdict"] == written["verdict"] and written["verdict"]["gradient_like"] is True
    assert written["inputs"]["task"] == "xor" and written["inputs"]["batch_size"] == 16
    assert written["variables"]["n"] == 21 * 2
    assert sorted(p.name for p in out.iterdir()) == ["circulation.png", "fig2_asymmetry.png", "report.json"]
    for png in ("circulation.png", "fig2_asymmetry.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rc = main(["analyze", str(SPECS / "mlp_2d.json"), "--preset", "random", "--task", "xor",
               "--variables", "hidden->out", "--state", "trained:2", "--metric", "off"])
    text = capsys.readouterr().out
    assert rc == 0 and "not a gradient of any loss" in text


def test_cli_analyze_errors(capsys):
    rc = main(["analyze", str(SPECS / "mlp_2d.json"), "--preset", "backprop", "--task", "xor",
               "--variables", "hidden->outt"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown variables 'hidden->outt'" in err and "in->hidden (60 synapses)" in err
    rc = main(["analyze", str(SPECS / "digits_backprop.json"), "--preset", "backprop", "--task", "digits"])
    err = capsys.readouterr().err
    assert rc == 2 and "n=4810 variables" in err and "bytes" in err and "1073741824" in err
    assert "--variables 'hidden->out'" in err
    rc = main(["analyze", str(SPECS / "mlp_2d.json"), "--preset", "backprop", "--task", "xor",
               "--state", "trained:x"])
    assert rc == 2 and "trained:N" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# the testing kit's assertions on known cases (each must also fail)
# ---------------------------------------------------------------------------


def test_gradient_assertions_pass_and_fail():
    spec = backprop_chain("error_mse")
    x, y = batch(seed=6)
    assert_gradient_like(spec, backprop_genome(lr=LR), x, y)
    assert_not_gradient_like(spec, random_genome(seed=5), x, y)
    with pytest.raises(AssertionError, match="(?s)not gradient-like.*margin"):
        assert_gradient_like(spec, random_genome(seed=5), x, y)
    with pytest.raises(AssertionError, match="looks gradient-like"):
        assert_not_gradient_like(spec, backprop_genome(lr=LR), x, y)
    assert_gradient_like(spec, random_genome(seed=5), x, y, rtol=0.9)  # loose tolerance admits it


def symmetric_hebbian_genome(seed):
    """mu_tilde = nu_tildeᵀ: W's and V's Hebbian terms are transposes, so V = Wᵀ is kept (no Oja)."""
    g = random_genome(seed=seed)
    p = g.groups["default"]
    return g.model_copy(update={"groups": {"default": p.model_copy(
        update={"mu_tilde": np.asarray(p.nu_tilde).T.tolist()})}})


def test_tied_stay_tied_assertions():
    untied = chain(rules={"tied": False})
    batches = [batch(seed=s) for s in range(3)]
    assert assert_tied_stay_tied(untied, symmetric_hebbian_genome(1), batches, n_steps=5) < 1e-12
    with pytest.raises(AssertionError, match="V - Wᵀ.*after step 1"):
        assert_tied_stay_tied(untied, random_genome(seed=1), batches)
    # backprop genome: both channels of a synapse get the same update (DESIGN §3)
    assert_tied_stay_tied(untied, backprop_genome(lr=LR), batches, what="channels", n_steps=5)
    with pytest.raises(AssertionError, match="channel c − channel 0"):
        assert_tied_stay_tied(untied, random_genome(seed=1), batches, what="channels")
    with pytest.raises(ValueError, match="tied by construction"):
        assert_tied_stay_tied(backprop_chain(), backprop_genome(), batches)


def test_invariant_assertion_reports_the_failing_step():
    spec = chain(conn={"kind": "fixed_probability", "p": 0.5, "seed": 2})
    batches = [batch(seed=s) for s in range(2)]
    assert_invariant(spec, random_genome(seed=2), batches, masked_entries_are_zero, n_steps=4)
    first = {}

    def unchanged_in_h(state, prog):
        w = np.array(state.get(0, "W"))
        first.setdefault("w", w)
        return np.array_equal(w, first["w"])

    with pytest.raises(AssertionError, match="'unchanged_in_h' fails after 1 training step"):
        assert_invariant(spec, random_genome(seed=2), batches, unchanged_in_h, n_steps=4)


def test_fig2_tool_runs_and_separates_the_two_genomes(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("fig2_xor", ROOT / "tools" / "fig2_xor.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["--no-appendix-a", "--batch", "8", "--state", "random", "--out-dir", str(tmp_path)]) == 0
    assert "estimated time" in capsys.readouterr().out.splitlines()[0]
    d = json.loads((tmp_path / "fig2_xor.json").read_text())
    learned, bp = d["panels"]["learned"], d["panels"]["backprop"]
    assert (learned["n"], bp["n"]) == (204, 102)  # the paper's 204 forward weights and biases
    assert learned["rel_asymmetry"] > 1e-3 and learned["margin"] > 1e6
    assert bp["rel_asymmetry"] < 1e-12 and bp["margin"] < 10
    assert learned["fd_vs_complex"]["agree"] and bp["fd_vs_complex"]["agree"]
    assert (tmp_path / "fig2_xor.png").read_bytes()[:4] == b"\x89PNG"
