"""``blursim compare`` (issue 21 item 4): fair by construction, tuned without the test split."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from blursim.baselines.train import half_decade_grid, tune_lr, validation_split
from blursim.cli.main import main
from blursim.compare import QUICK_SPEC, Entry, Task, _summary, compare, parse_entry
from blursim.data import Dataset, load_dataset

SMALL = {"horizons": [4, 8], "seeds": 2, "replicas": 2, "batch_size": 16}


def _spec(reduction="mean"):
    return {**QUICK_SPEC, "rules": {"batch_reduction": reduction}}


def test_backprop_preset_and_sgd_at_the_same_lr_score_the_same():
    """Same network, batches and initial synapses: the backprop preset (mean reduction, its rules
    applied) and SGD on the plain network at one learning rate are the same run (DESIGN §3)."""
    res = compare(_spec("mean"), [Entry("preset", "backprop", options={"lr": 0.5}),
                                  Entry("optimizer", "sgd", options={"lr": 0.5})],
                  ["cross"], **SMALL)
    bp = [r for r in res.rows if r["kind"] == "preset"]
    sgd = [r for r in res.rows if r["kind"] == "optimizer"]
    assert bp[0]["entry"] == "preset backprop(lr=0.5)" and sgd[0]["entry"] == "sgd(lr=0.5)"
    for a, b in zip(bp, sgd):
        assert a["horizon"] == b["horizon"] and a["lr"] == b["lr"] == 0.5
        np.testing.assert_allclose(a["per_seed"], b["per_seed"], atol=1e-12)
    assert bp[-1]["per_seed"] != bp[0]["per_seed"]  # training moved something
    assert res.spec_changes["cross/preset backprop(lr=0.5)"]  # the general spec got the preset's rules


def test_tuning_never_sees_the_test_split():
    """Scrambling the test labels changes the scores but not one tuning number."""
    ds = load_dataset("cross")
    rng = np.random.default_rng(0)
    scrambled = Dataset(ds.name, ds.x_train, ds.y_train, ds.x_test, rng.permutation(ds.y_test),
                        n_classes=ds.n_classes, meta=ds.meta)
    kw = dict(entries=["sgd"], grid=[0.1, 0.3, 1.0], **SMALL)
    a = compare(_spec(), tasks=["cross"], **kw)
    b = compare(_spec(), tasks=[Task("cross", dataset=scrambled)], **kw)
    assert a.tuning == b.tuning
    assert [r["per_seed"] for r in a.rows] != [r["per_seed"] for r in b.rows]


def test_validation_split_is_carved_from_the_training_split():
    ds = load_dataset("two_moons")
    v = validation_split(ds, 0.25, seed=3)
    train_rows = {tuple(r) for r in ds.x_train}
    assert {tuple(r) for r in v.x_train} | {tuple(r) for r in v.x_test} == train_rows
    assert not {tuple(r) for r in v.x_train} & {tuple(r) for r in v.x_test}
    assert abs(v.n_test - 0.25 * ds.n_train) <= 2
    assert not {tuple(r) for r in v.x_test} & {tuple(r) for r in ds.x_test}


def test_tune_lr_extends_the_grid_at_an_edge_and_picks_per_horizon():
    """A known optimum: horizon 10 peaks at 1e-5 (below the grid), horizon 100 at 1e-2."""
    calls = []

    def score(lrs):
        calls.append(list(lrs))
        x = np.log10(lrs)
        acc = np.stack([-np.abs(x + 5), -np.abs(x + 2)], axis=1)
        return acc, np.zeros_like(acc)

    t = tune_lr(score, half_decade_grid(1e-3, 1.0), [10, 100])
    assert math.isclose(t.chosen[10], 1e-5) and math.isclose(t.chosen[100], 1e-2)
    assert [round(math.log10(v), 3) for v in t.extended] == [-3.5, -4.0, -4.5, -5.0, -5.5]
    assert len(half_decade_grid(1e-3, 1.0)) == 7
    t2 = tune_lr(score, [1e-3], [10, 100], max_extensions=2)
    assert len(t2.extended) <= 3  # bounded


def test_ties_go_to_the_lower_cross_entropy():
    def score(lrs):
        return np.ones((len(lrs), 1)), np.array([[3.0], [1.0], [2.0]])[: len(lrs)]

    assert tune_lr(score, [0.01, 0.1, 1.0], [5], max_extensions=0).chosen[5] == 0.1


def test_confidence_interval_is_students_t():
    s = _summary(np.array([1.0, 2.0, 3.0]))
    assert s["mean"] == 2.0 and s["sd"] == 1.0 and s["n_seeds"] == 3
    np.testing.assert_allclose(s["ci95"], [2 - 4.302652729911275 / math.sqrt(3), 2 + 4.302652729911275 / math.sqrt(3)])


def test_entries_are_parsed_and_bad_ones_refused():
    assert parse_entry("adam").kind == "optimizer" and parse_entry("oja").kind == "preset"
    assert parse_entry("genome:x/best.json").genome == "x/best.json"
    with pytest.raises(Exception) as e:
        parse_entry("rmsprop")
    assert "sgd" in str(e.value) and "backprop" in str(e.value)


def test_cli_writes_table_json_and_figure(tmp_path, capsys):
    rc = main(["compare", "--quick", "--horizons", "3", "6", "--seeds", "2", "--replicas", "1",
               "--optimizer", "sgd", "--preset", "backprop", "--lr-grid", "0.1", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "95% CI" in out and "preset backprop" in out
    doc = json.loads((tmp_path / "compare.json").read_text())
    assert doc["format"] == "blursim.compare/1" and len(doc["rows"]) == 4
    assert (tmp_path / "compare.png").stat().st_size > 1000
    assert set(doc["tuning"]) == {"cross/preset backprop", "cross/sgd"}


def test_cli_refuses_without_entries(capsys):
    assert main(["compare", "specs/mlp_2d.json", "--task", "cross", "--horizons", "5"]) == 2
    assert "--optimizer" in capsys.readouterr().err


@pytest.mark.slow  # its time (12.6-13.9 s measured) is a benchmark number, not a test assertion
def test_quick_run_writes_its_outputs(tmp_path, capsys):
    assert main(["compare", "--quick", "--out", str(tmp_path)]) == 0
    assert {p.suffix for p in tmp_path.iterdir()} >= {".json", ".png"}
    assert Task("cross").title == "cross"


def test_the_jax_engine_gives_the_numpy_comparison():
    pytest.importorskip("jax")
    kw = dict(entries=[Entry("preset", "backprop", options={"lr": 0.05})], tasks=["cross"],
              horizons=[2, 4], seeds=2, replicas=2, batch_size=8)
    a = compare(_spec("sum"), backend="jax", **kw)
    b = compare(_spec("sum"), **kw)
    for ra, rb in zip(a.rows, b.rows):
        np.testing.assert_allclose(ra["per_seed"], rb["per_seed"], atol=1e-12)
    assert a.settings["backend"] == "jax"


def test_presets_that_add_feedback_pathways_start_from_the_same_forward_synapses():
    """DFA appends pathways to the task's network; its forward synapses still start from the
    common draw (with learning off, every entry predicts what the initial network predicts)."""
    spec = {**QUICK_SPEC, "populations": QUICK_SPEC["populations"][:2]
            + [{"name": "h2", "size": 5, "role": "hidden", "forward_activation": "tanh"}]
            + QUICK_SPEC["populations"][2:],
            "projections": [{"from": "in", "to": "hidden"}, {"from": "hidden", "to": "h2"}, {"from": "h2", "to": "out"}]}
    names = ["backprop", "direct_feedback_alignment", "feedback_alignment", "kolen_pollack"]
    res = compare(spec, [Entry("preset", n, options={"lr": 1e-12}) for n in names], ["cross"],
                  horizons=[1], seeds=2, replicas=2, batch_size=8)
    first = res.rows[0]["per_seed"]
    assert all(r["per_seed"] == first for r in res.rows)
    assert any("feedback" in c for c in res.spec_changes["cross/preset direct_feedback_alignment(lr=1e-12)"])
