"""Monitors record what a step computes (issue 14): states per phase, H, synapses, metrics.

The oracles are independent of the simulator: the arrays the paper authors' code produced
(tests/data/authors, PROVENANCE.json) and a hand computation of eq. (5)-(7) written here.
"""

from __future__ import annotations

import numpy as np
import pytest

from blursim.errors import MemoryLimitError, SpecError
from blursim.genome import random_genome
from blursim.graph import compile_network
from blursim.sim import Monitor, Simulator, load_recordings, train_and_evaluate
from blursim.spec import load_network

from test_authors_layout import CONFIGS, RTOL, _rel, _setup


# -------------------------------------------------- against the authors' arrays
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_recorded_states_are_the_authors_states(name):
    """Hidden and output states after the forward and the backward pass, as their code computed them."""
    c, d, prog, sim, genes, st = _setup(name)
    mon = Monitor(sim, ["states"], steps="all")
    sim.train_step(st, genes, d["x/0"], d["labels/0"], monitor=mon)
    names = ["in"] + [f"h{i}" for i in range(1, len(c["sizes"]) - 1)] + ["out"]
    for i, pop in enumerate(names[1:], start=1):
        for phase in ("forward", "backward"):
            rec = mon[f"states:{pop}@{phase}"]
            assert rec.dims == ("step", "species", "replica", "batch", "neuron", "state")
            assert rec.coords["step"].tolist() == [1]
            assert _rel(rec.values[0], d[f"step/{phase}/{i}"]) <= RTOL, (pop, phase)


@pytest.mark.parametrize("name", ["untied_additive_k3", "symmetric_single_state_backprop_like",
                                  "untied_single_state_additive"])
def test_recorded_H_is_the_authors_update(name):
    """Without an Oja term their update is W <- keep W + update H: H = (W_after - keep W) / update,
    from their arrays alone (the bias row included; channel 0 for their symmetric states)."""
    c, d, prog, sim, genes, st = _setup(name)
    mon = Monitor(sim, ["H"], steps=[1])
    sim.train_step(st, genes, d["x/0"], d["labels/0"], monitor=mon)
    keep = d["genome/synapse/keep"].reshape(-1, 1, 1, 1, 1)
    update = d["genome/synapse/update"].reshape(-1, 1, 1, 1, 1)
    n = c["sizes"]
    for i, q in enumerate(prog.projs):
        theirs = (d[f"step/synapse/{i}"] - keep * d[f"synapse_initial/{i}"]) / update
        fwd = theirs[:, :, : n[i] + 1, n[i] + 1 :, : prog.kw]  # (S, R, n_pre + bias, n_post, kw)
        got = mon[f"H:{q.name}"]
        assert got.dims == ("step", "species", "replica", "pre", "post", "channel")
        assert _rel(got.values[0], fwd) <= 1e-9, q.name  # a difference divided by update ~ 1e-2
        if not prog.rules.tied:
            bwd = theirs[:, :, n[i] + 1 :, : n[i]]
            assert _rel(mon[f"H:V:{q.name}"].values[0], bwd) <= 1e-9


# ------------------------------------------------------ against a hand computation
SPEC = {
    "k": 2, "seed": 3,
    "populations": [
        {"name": "in", "size": 3, "role": "input"},
        {"name": "hidden", "size": 4, "role": "hidden", "forward_activation": "tanh",
         "backward_activation": "tanh"},
        {"name": "out", "size": 2, "role": "output", "forward_activation": "tanh"},
    ],
    "projections": [{"from": "in", "to": "hidden", "bias": True}, {"from": "hidden", "to": "out", "bias": False}],
}


def _hand_step(W1, b1, W2, V1, V2, g, x, y, reduction):
    """Eq. (5)-(7) for SPEC's network, one species and replica, float64 (DESIGN §2)."""
    nu, mu, nt, mt = (np.asarray(g[n]) for n in ("nu", "mu", "nu_tilde", "mu_tilde"))
    f, eta = g["f"], g["eta"]
    B = x.shape[0]
    a_in = np.stack([x, np.zeros_like(x)], axis=-1)  # (B, 3, k): data in state 0
    mix = lambda M, a: np.einsum("cd,bnd->bnc", M, a)  # noqa: E731
    ones = np.ones((B, 1, 2))
    a_in_bar = np.concatenate([a_in, ones], axis=1)
    W1b = np.concatenate([W1, b1[None]], axis=0)  # (4, 4, k): bias row last
    z_h = np.einsum("ijc,bic->bjc", W1b, mix(nu, a_in_bar))
    h_fwd = np.tanh(eta * z_h)
    z_o = np.einsum("ijc,bic->bjc", W2, mix(nu, h_fwd))
    o_fwd = np.tanh(eta * z_o)
    o_fb = o_fwd.copy()
    o_fb[:, :, 1] = np.where(np.eye(2)[y] > 0, 1.0, -1.0)  # target feedback, +-1
    y_h = np.einsum("jic,bjc->bic", V2, mix(mu, o_fb))
    h_bwd = np.tanh(f * h_fwd + eta * y_h)
    rho = (lambda t: t.sum(0)) if reduction == "sum" else (lambda t: t.mean(0))
    P = lambda a: np.einsum("ec,bne->bnc", nt, a)  # noqa: E731
    Q = lambda a: np.einsum("cd,bnd->bnc", mt, a)  # noqa: E731
    H1 = rho(np.einsum("bic,bjc->bijc", P(a_in_bar), Q(h_bwd)))  # (4, 4, k), bias row last
    H2 = rho(np.einsum("bic,bjc->bijc", P(h_bwd), Q(o_fb)))
    HV1 = rho(np.einsum("bjc,bic->bjic", P(h_bwd), Q(a_in)))  # V: P from post, Q from pre
    HV2 = rho(np.einsum("bjc,bic->bjic", P(o_fb), Q(h_bwd)))
    del V1
    return {"h_fwd": h_fwd, "h_bwd": h_bwd, "o_fwd": o_fwd, "o_fb": o_fb,
            "H1": H1, "H2": H2, "HV1": HV1, "HV2": HV2}


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_recorded_states_and_H_match_a_hand_computation(reduction):
    spec = load_network({**SPEC, "rules": {"batch_reduction": reduction}})
    prog = compile_network(spec)
    sim = Simulator(prog, dtype="float64", threads=1)
    genome = random_genome(k=2, seed=7)
    genes = sim.prepare([genome])
    st = sim.init_synapses(genes, replicas=1, seed=4)
    W1, b1, W2 = (np.asarray(st.get(0, "W"))[0, 0], np.asarray(st.get(0, "b"))[0, 0],
                  np.asarray(st.get(1, "W"))[0, 0])
    V1, V2 = np.asarray(st.get(0, "V"))[0, 0], np.asarray(st.get(1, "V"))[0, 0]
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)), rng.integers(0, 2, size=5)
    mon = Monitor(sim, "states:hidden,states:out,feedback,H", steps="all")
    sim.train_step(st, genes, x, y, monitor=mon)
    mv = lambda a: np.moveaxis(a, 0, -1)  # noqa: E731  (channel-major -> DESIGN's channel last)
    hand = _hand_step(mv(W1), mv(b1), mv(W2), mv(V1), mv(V2), genome.groups["default"].model_dump(), x, y,
                      reduction)
    got = lambda name: mon[name].values[0, 0, 0]  # noqa: E731
    np.testing.assert_allclose(got("states:hidden@forward"), hand["h_fwd"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got("states:hidden@backward"), hand["h_bwd"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got("states:out@forward"), hand["o_fwd"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got("states:out@feedback"), hand["o_fb"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got("H:in->hidden"), hand["H1"], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(got("H:hidden->out"), hand["H2"], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(got("H:V:in->hidden"), hand["HV1"], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(got("H:V:hidden->out"), hand["HV2"], rtol=1e-12, atol=1e-13)


# --------------------------------------------------------------- selection and cost
def _toy(S=3, R=2, threads=1, **rules):
    spec = load_network({**SPEC, "rules": rules})
    prog = compile_network(spec)
    sim = Simulator(prog, dtype="float64", threads=threads)
    genes = sim.prepare([random_genome(k=2, seed=s) for s in range(S)])
    return sim, genes, sim.init_synapses(genes, replicas=R, seed=1)


def _batches(n, B=6):
    rng = np.random.default_rng(5)
    return [(rng.normal(size=(B, 3)), rng.integers(0, 2, size=B)) for _ in range(n)]


def test_steps_species_and_replicas_select_slices_of_the_full_recording():
    sim, genes, st = _toy()
    st2 = st.copy()
    full = Monitor(sim, "states:hidden@backward,H:in->hidden,weights,norms,loss,accuracy")
    part = Monitor(sim, "states:hidden@backward,H:in->hidden,weights,norms,loss,accuracy", steps=2,
                   species=[2, 0], replicas=[1])
    full.record_synapses(sim, st)
    part.record_synapses(sim, st2)
    for x, y in _batches(4):
        sim.train_step(st, genes, x, y, monitor=full)
        sim.train_step(st2, genes, x, y, monitor=part)
    for name in full.names:
        a, b = full[name], part[name]
        assert a.dims == b.dims
        keep = np.isin(a.coords["step"], b.coords["step"])
        assert b.coords["step"].tolist() == ([0, 2, 4] if name.startswith(("weights", "norms")) else [2, 4])
        assert b.coords["species"].tolist() == [2, 0] and b.coords["replica"].tolist() == [1]
        np.testing.assert_array_equal(b.values, a.values[keep][:, [2, 0]][:, :, [1]])
    # norms are the norms of the recorded weights
    w, nrm = full["weights:in->hidden"].values, full["norms:in->hidden"].values
    np.testing.assert_allclose(nrm, np.sqrt((w ** 2).sum(axis=3)), rtol=1e-13)
    assert full["loss"].values.shape == (4, 3, 2) and np.isfinite(full["loss"].values).all()


def test_a_monitor_changes_nothing_and_threads_record_the_same():
    sim, genes, st = _toy(S=4, R=2)
    plain = st.copy()
    sim4, _, _ = _toy(S=4, R=2, threads=2)
    threaded = st.copy()
    mon1 = Monitor(sim, "states,H,weights,loss")
    mon2 = Monitor(sim4, "states,H,weights,loss")
    for x, y in _batches(3):
        sim.train_step(st, genes, x, y, monitor=mon1)
        sim.train_step(plain, genes, x, y)
        sim4.train_step(threaded, genes, x, y, monitor=mon2)
    for q in range(2):
        for which in ("W", "b", "V"):
            a, b = st.get(q, which), plain.get(q, which)
            if a is not None:
                np.testing.assert_array_equal(a, b)
    for name in mon1.names:
        np.testing.assert_allclose(mon2[name].values, mon1[name].values, rtol=1e-12, atol=1e-14)


def test_block_sparse_H_is_the_masked_dense_H():
    spec = dict(SPEC, projections=[
        {"from": "in", "to": "hidden", "connectivity": {"kind": "fixed_probability", "p": 0.5, "seed": 2}},
        {"from": "hidden", "to": "out"}])
    out = {}
    for sparse in ("blocks", "masked"):
        prog = compile_network(load_network(spec))
        sim = Simulator(prog, dtype="float64", threads=1, sparse=sparse)
        genes = sim.prepare([random_genome(k=2, seed=3)])
        st = sim.init_synapses(genes, replicas=1, seed=0)
        mon = Monitor(sim, "H:in->hidden,weights:in->hidden")
        x, y = _batches(1)[0]
        sim.train_step(st, genes, x, y, monitor=mon)
        out[sparse] = mon["H:in->hidden"].values
        mask = prog.projs[0].mask
        assert (out[sparse][..., :3, :, :][..., ~mask, :] == 0).all()
    np.testing.assert_allclose(out["blocks"], out["masked"], rtol=1e-12, atol=1e-14)


def test_train_and_evaluate_records_and_saves_without_pickle(tmp_path):
    from blursim.data import load_dataset

    prog = compile_network(load_network("specs/toy_blur.json"))
    sim = Simulator(prog, dtype="float32")
    mon = Monitor(sim, "default", steps=2)
    train_and_evaluate(sim, [random_genome(k=prog.k, seed=1, groups=prog.groups)], load_dataset("two_moons"),
                       steps=4, batch_size=8, replicas=2, monitor=mon, eval_steps="end")
    assert mon["norms:in->hidden"].coords["step"].tolist() == [0, 2, 4]
    assert mon["states:hidden@forward"].coords["step"].tolist() == [2, 4]
    mon.save(tmp_path / "r.npz")
    back = load_recordings(tmp_path / "r.npz")
    assert set(back) == set(mon.names)
    for name, rec in back.items():
        assert rec.dims == mon[name].dims
        np.testing.assert_array_equal(rec.values, mon[name].values)
        np.testing.assert_array_equal(rec.coords["step"], mon[name].coords["step"])
    assert back["loss"].sel(step=2, species=0).values.shape == (2,)


@pytest.mark.parametrize("item, words", [
    ("volts", "unknown variable"),
    ("states:hiden", "unknown population"),
    ("states:in", "input population"),
    ("states:hidden[5]", "state indices"),
    ("states:hidden@sideways", "unknown phase"),
    ("weights:nowhere", "unknown projection"),
    ("loss:out", "takes no target"),
    ("feedback:hidden", "output populations"),
])
def test_bad_variables_are_one_line_errors(item, words):
    prog = compile_network(load_network(SPEC))
    with pytest.raises(SpecError, match=words) as e:
        Monitor(prog, item)
    assert "\n" not in str(e.value)


def test_tied_networks_have_no_V_and_recordings_are_bounded():
    sim, genes, st = _toy(tied=True)
    with pytest.raises(SpecError, match="tied"):
        Monitor(sim, "weights:V:in->hidden")
    assert [n for n in Monitor(sim, "weights").names] == ["weights:in->hidden", "weights:hidden->out"]
    mon = Monitor(sim, "states", max_bytes=10_000)
    with pytest.raises(MemoryLimitError, match="needs"):
        mon.plan(sim, S=3, R=2, B=6, steps=100)
    with pytest.raises(SpecError, match="no species"):
        Monitor(sim, "loss", species=[7]).plan(sim, S=3, R=2, B=6, steps=1)


def test_blursim_run_record_writes_npz_json_and_the_default_figure(tmp_path, capsys):
    from blursim.cli.main import main

    out = tmp_path / "rec"
    rc = main(["run", "specs/toy_blur.json", "--task", "two_moons", "--preset", "random", "--steps", "6",
               "--batch", "8", "--replicas", "2", "--record", "default,H:in->hidden", "--record-every", "3",
               "--record-replicas", "1", "--out", str(out)])
    assert rc == 0
    assert "recorded" in capsys.readouterr().out
    recs = load_recordings(out / "record.npz")
    assert recs["H:in->hidden"].coords["step"].tolist() == [3, 6]
    assert recs["norms:in->hidden"].coords["step"].tolist() == [0, 3, 6]
    assert recs["loss"].coords["replica"].tolist() == [1]
    assert (out / "record.png").stat().st_size > 10_000
    import json

    meta = json.loads((out / "record.json").read_text())
    assert meta["recordings"]["loss"]["dims"] == ["step", "species", "replica"]
    assert main(["run", "specs/toy_blur.json", "--task", "two_moons", "--preset", "random", "--steps", "2",
                 "--record", "default"]) == 2
    assert "--record needs --out" in capsys.readouterr().err


def test_readme_monitor_example_runs(tmp_path):
    import re
    import subprocess
    import sys

    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)\n```", readme.split("## Python API", 1)[1].split("\n## ", 1)[0], re.S)
    code = "\n".join(blocks[:2]).replace('"record.npz"', repr(str(tmp_path / "record.npz")))
    code += "\nassert h.dims == ('step', 'species', 'replica', 'batch', 'neuron', 'state')\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert set(load_recordings(tmp_path / "record.npz")) >= {"loss", "H:in->hidden"}


def test_blursim_run_records_a_run_on_a_file_dataset(tmp_path, capsys):
    """Issue 14's acceptance: `blursim run specs/... --task <file dataset> --record ...` from the
    command line on a file the test writes."""
    from blursim.cli.main import main

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 2))
    np.savez(tmp_path / "data.npz", x=x, y=(x[:, 0] * x[:, 1] > 0).astype(np.int64))
    rc = main(["run", "specs/mlp_2d.json", "--task", "file", "--task-opt", f"path={tmp_path / 'data.npz'}",
               "--preset", "backprop", "--lr", "0.5", "--steps", "4", "--record", "loss,H,states:hidden@backward",
               "--out", str(tmp_path / "rec")])
    assert rc == 0, capsys.readouterr().err
    recs = load_recordings(tmp_path / "rec" / "record.npz")
    assert recs["H:in->hidden"].values.shape[0] == 4 and recs["loss"].coords["step"].tolist() == [1, 2, 3, 4]
    assert (tmp_path / "rec" / "record.png").exists()


def test_load_recordings_reads_a_hostile_file_as_one_line_errors(tmp_path):
    """A recording is read like every other file blursim reads (issue 24): a pickled object array,
    a file that is no NPZ and an NPZ without dimension names are one-line SpecErrors naming the
    file, never NumPy's allow_pickle message or a KeyError."""
    import io as _io

    from blursim.errors import SpecError
    from blursim.sim.monitor import load_recordings

    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, a=np.array([{"x": 1}], dtype=object))
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    nodims = tmp_path / "nodims.npz"
    np.savez(nodims, w=np.zeros((2, 3)))
    for path in (pickled, junk, nodims):
        with pytest.raises(SpecError) as err:
            load_recordings(path)
        msg = str(err.value)
        assert "\n" not in msg.strip() and path.name in msg and "allow_pickle" not in msg
    buf = _io.BytesIO()
    np.savez(buf, w=np.zeros((2, 3)), **{"w#dims": np.array(["i", "j"])})
    good = tmp_path / "good.npz"
    good.write_bytes(buf.getvalue())
    rec = load_recordings(good)["w"]
    assert rec.dims == ("i", "j") and rec.values.shape == (2, 3)
