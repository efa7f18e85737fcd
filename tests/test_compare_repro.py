"""The reproduction scripts' comparisons go through ``blursim compare`` (issue 21): its test
curves (``curve_steps``, ``sweep``), ``repro_common.compare_zoo`` with rules of the zoo, and
rerunning a comparison from genomes meta-trained earlier."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from blursim.baselines import train_baseline
from blursim.compare import QUICK_SPEC, compare
from blursim.data import load_dataset
from blursim.errors import SpecError
from blursim.graph import compile_network
from blursim.spec import load_network

TOOLS = Path(__file__).resolve().parent.parent / "tools"
SMALL = dict(seeds=2, replicas=2, batch_size=8)


@pytest.fixture(scope="module")
def rc():
    sys.path.insert(0, str(TOOLS))
    import repro_common

    return repro_common


def test_curves_are_the_chosen_rate_scored_at_further_steps():
    """``curve_steps`` scores the chosen rate's test runs at more steps and chooses nothing: the
    tuning is that of a run without them, and each seed's curve is what an SGD run of its own
    (``train_baseline`` on the whole training split, the same seed) scores at that step."""
    kw = dict(entries=["sgd"], tasks=["cross"], horizons=[4], grid=[0.1, 1.0], **SMALL)
    plain = compare(QUICK_SPEC, **kw)
    res = compare(QUICK_SPEC, curve_steps=[0, 2, 6], **kw)
    assert res.tuning == plain.tuning and res.rows == plain.rows
    c = res.curves["cross/sgd"]
    lr = res.rows[0]["lr"]
    assert c["steps"] == [0, 2, 4, 6] and c["lrs"] == [lr]
    data = load_dataset("cross")
    prog = compile_network(load_network(QUICK_SPEC))
    for si, seed in enumerate([0, 1]):
        r = train_baseline(prog, data, "sgd", lr, steps=6, batch_size=8, replicas=2, seed=seed,
                           eval_steps=[2, 6], dtype="float64")
        np.testing.assert_allclose([c["per_seed"][0][si][1], c["per_seed"][0][si][3]], r.accuracy.mean(axis=0),
                                   atol=1e-12)
    assert c["mean"][0][2] == pytest.approx(res.rows[0]["mean"])  # equal replicas per seed: the same mean
    with pytest.raises(SpecError):
        compare(QUICK_SPEC, curve_steps=[-1], **kw)


def test_sweep_shows_every_tried_rate_and_changes_no_choice():
    kw = dict(entries=["adam"], tasks=["cross"], horizons=[3, 6], grid=[1e-2, 1e-1], **SMALL)
    a = compare(QUICK_SPEC, **kw)
    b = compare(QUICK_SPEC, sweep=True, **kw)
    assert a.rows == b.rows and a.tuning == b.tuning
    tried = b.tuning["cross/adam"]["lrs"]
    cb, ca = b.curves["cross/adam"], a.curves["cross/adam"]
    assert cb["lrs"] == sorted(tried) and len(tried) >= 2 and set(ca["lrs"]) <= set(tried)
    for lr in ca["lrs"]:
        np.testing.assert_allclose(cb["mean"][cb["lrs"].index(lr)], ca["mean"][ca["lrs"].index(lr)], atol=1e-12)


def test_compare_zoo_runs_zoo_rules_on_the_same_network(rc):
    """A preset is a baseline beside the optimizers: tuned on the validation split (the chosen rate
    is the best validation accuracy, ties by the lowest validation cross-entropy), the network's
    rules replaced by the preset's, with test curves of its chosen rates."""
    spec = rc.load_spec(rc.SPECS / "repro_digits_blur_64.json")
    res = rc.compare_zoo({}, {"xor": {"dataset": "xor", "options": {"n_train": 120, "n_test": 60}}},
                         baseline_network=spec, optimizers=["sgd"], presets=["feedback_alignment"],
                         lrs=[0.1, 10 ** -0.5], horizons=[3], replicas=2, seed=0, curve_steps=[1])["xor"]
    fa, sgd = res["baselines"]["feedback_alignment"], res["baselines"]["sgd"]
    assert fa["kind"] == "preset" and sgd["kind"] == "optimizer" and fa["spec_changes"] and not sgd["spec_changes"]
    for b in (fa, sgd):
        val = np.asarray(b["validation"])[:, 0]
        ce = [np.inf if c[0] is None else c[0] for c in b["validation_cross_entropy"]]
        top = np.flatnonzero(val >= val.max() - 1e-12)
        assert b["selected"]["3"] == b["lrs"][int(top[np.argmin(np.asarray(ce)[top])])]
        assert b["curves"]["steps"] == [1, 3] and b["curves"]["lrs"] == [b["selected"]["3"]]
        assert rc.cell_at(b["curves"], b["selected"]["3"], 3) == pytest.approx(float(np.mean(b["test"])))


def test_reuse_refuses_a_missing_or_genome_less_run_in_one_line(rc, tmp_path, capsys):
    import repro_digits_curriculum as cur
    import repro_transfer as tr

    with pytest.raises(SpecError, match="no earlier run to reuse"):
        cur.reuse(tmp_path / "none.json")
    (tmp_path / "run.json").write_text(json.dumps({"results": {}}))
    with pytest.raises(SpecError, match="run_genome.json"):
        cur.reuse(tmp_path / "run.json")
    with pytest.raises(SpecError, match="results.meta_training"):
        tr.load_meta_training(tmp_path / "run.json", ["digits3 (new)"])
    assert rc.script_main(tr.main, ["--quick", "--genomes", str(tmp_path / "run.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "run.json" in err and len(err.splitlines()) == 1


def test_reused_genome_is_the_one_written_beside_the_run(rc, tmp_path):
    """``--reuse`` reads the genome written beside a run's JSON, not the path recorded in it
    (which names the machine it ran on)."""
    import repro_digits_curriculum as cur

    from blursim.spec import dump_json, load_genome

    genome = load_genome(rc.RESULTS / "repro_toy_genome.json")
    (tmp_path / "r_genome.json").write_text(dump_json(genome))
    (tmp_path / "r.json").write_text(json.dumps({"command": "x", "seeds": {"root": 3}, "scale": {"generations": 7},
                                                 "results": {"genome": "/elsewhere/r_genome.json", "curve": {}}}))
    g, earlier, header = cur.reuse(tmp_path / "r.json")
    assert dump_json(g) == dump_json(genome)
    assert earlier["seeds"]["root"] == 3 and earlier["scale"]["generations"] == 7 and header["genome"] == "r_genome.json"
