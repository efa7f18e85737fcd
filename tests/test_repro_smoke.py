"""Smoke tests of the reproduction scripts (tools/repro_*.py, tools/make_results.py).

Each script runs with ``--quick`` (a tiny population, network and run) into a
temporary directory: it must print its time estimate first, write its JSON with
the command line, seeds, wall time and machine, write its figure(s), and a second
run with the same seed must give the same numbers. The real runs are long and
live in tools/ (see docs/results.md), not in the test suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"


def run(script: str, tmp: Path, *extra: str) -> dict:
    out = tmp / f"{script}.json"
    cmd = [sys.executable, str(TOOLS / f"{script}.py"), "--quick", "--quiet", "--out", str(out),
           "--fig-dir", str(tmp / "figures"), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("[estimate]"), proc.stdout[:500]
    return checked_document(script, out)


def checked_document(script: str, out: Path) -> dict:
    """The result document a ``--quick`` run of ``script`` wrote to ``out``: its header names the
    script and the quick run, and every figure it lists exists."""
    doc = json.loads(out.read_text())
    assert doc["format"] == "blursim.repro/1" and doc["name"] == script and doc["quick"] is True
    assert f"tools/{script}.py" in doc["command"] and "--quick" in doc["command"]
    assert doc["wall_seconds"] >= 0 and doc["machine"]["cores"] >= 1 and doc["machine"]["cpu"]
    for f in doc["figures"]:
        assert Path(f).exists() and Path(f).stat().st_size > 1000, f
    return doc


def strip(doc: dict) -> dict:
    """The numbers of a result document (what must repeat with the same seed)."""
    d = dict(doc["results"])
    for k in ("curve", "curves"):
        d.pop(k, None)
    d.pop("fig2_xor_numbers", None)
    return json.loads(json.dumps(d).replace("NaN", "null"))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("repro")
    return tmp, run("repro_toy", tmp)


def test_repro_toy(toy):
    tmp, doc = toy
    s = doc["results"]["summary"]
    assert set(s["per_task_mean_over_runs"]) == set(s["train_tasks"] + s["validation_tasks"])
    assert (tmp / "repro_toy_genome.json").exists()
    # Fig. 4's correlation panel, from the runs' own numbers
    c = s["correlation"]
    runs = doc["results"]["runs"]
    assert c["runs"] == len(runs) == 3
    x = np.array([r["train_mean"] for r in runs])
    y = np.array([r["validation_mean"] for r in runs])
    if x.std() > 0 and y.std() > 0:
        assert c["pearson_r"] == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-9)


def test_repro_digits_es_repeats(tmp_path):
    a = run("repro_digits_es", tmp_path / "a")
    b = run("repro_digits_es", tmp_path / "b")
    assert strip(a) == strip(b)
    assert a["results"]["paper_accuracy"] == 0.84


def chosen(acc, ce) -> int:
    """The index :func:`blursim.compare.compare` chooses, recomputed: the highest validation accuracy,
    ties broken by the lowest validation cross-entropy (None: not measured, never chosen on a tie)."""
    acc = np.asarray(acc, dtype=float)
    top = np.flatnonzero(acc >= acc.max() - 1e-12)
    c = [np.inf if ce is None or ce[i] is None else ce[i] for i in top]
    return int(top[int(np.argmin(c))])


def test_repro_digits_curriculum(tmp_path):
    doc = run("repro_digits_curriculum", tmp_path)
    s = doc["results"]["summary"]
    assert set(s) == {"digits", "digits_0_4", "digits_5_9"}
    # the lr of each optimizer is chosen on a validation split: the record says which
    for e in doc["results"]["per_task"].values():
        for tabs in e["baselines"].values():
            for t in tabs.values():
                ce = [v[-1] for v in t["validation_cross_entropy"]]
                assert t["selected_lr"] == t["lrs"][chosen(t["validation_final_accuracy"], ce)]
                assert "validation" in t["selection"]


def test_repro_fig2_and_make_results(toy):
    tmp, _ = toy
    doc = run("repro_fig2", tmp, "--genome", str(tmp / "repro_toy_genome.json"))
    assert set(doc["results"]["summary"]) == {"learned", "backprop"}
    template = tmp / "template.md"
    template.write_text("# R\n{{header:repro_toy}}\n{{table:repro_toy}}\n{{figure:repro_toy}}\n"
                        "{{repro_toy:results.summary.validation_mean_over_runs:.2f}}\n{{table:repro_fig2}}\n"
                        "{{table:repro_depth}}\n")
    out = tmp / "results.md"
    proc = subprocess.run([sys.executable, str(TOOLS / "make_results.py"), "--results", str(tmp),
                           "--template", str(template), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "Smoke run" in text and "tools/repro_toy.py --quick" in text
    assert "no results yet" in text  # repro_depth was not run in this directory


# ------------------------------------------------ issue 15: generalisation, Oja, sweeps, seeds
sys.path.insert(0, str(TOOLS))


def test_spread_and_separation_by_hand():
    import repro_common as rc

    s = rc.spread([1.0, 2.0, 3.0])
    assert (s["mean"], s["std"], s["n"]) == (2.0, 1.0, 3)  # sample standard deviation
    assert rc.spread([0.7])["std"] == 0.0
    # Welch: t = -3 / sqrt(1/3 + 1/3) = -3.674 with 4 degrees of freedom -> p = 0.0213
    v = rc.separation([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert v["difference"] == -3.0 and v["welch_p"] == pytest.approx(0.02131, abs=2e-4) and v["separated"]
    near = rc.separation([1.0, 2.0, 3.0], [2.5, 3.5, 4.5])  # intervals overlap
    assert not near["separated"] and near["welch_p"] > 0.05
    assert not rc.separation([0.5], [0.1])["separated"]  # one seed: no spread, no claim


def run_here(script: str, tmp: Path, *extra: str) -> dict:
    """:func:`run` in this process (the imports are paid once for all scripts): the same checks."""
    import contextlib
    import importlib
    import io

    out = tmp / f"{script}.json"
    argv = [str(TOOLS / f"{script}.py"), "--quick", "--quiet", "--out", str(out), "--fig-dir", str(tmp / "figures"),
            *extra]
    saved, sys.argv = sys.argv, argv
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            assert importlib.import_module(script).main(argv[1:]) == 0
    finally:
        sys.argv = saved
    assert buf.getvalue().startswith("[estimate]"), buf.getvalue()[:500]
    return checked_document(script, out)


@pytest.fixture(scope="module")
def issue15(tmp_path_factory):
    """Every new script's smoke run, in one directory (make_results renders them all)."""
    tmp = tmp_path_factory.mktemp("issue15")
    docs = {s: run_here(s, tmp) for s in ("repro_transfer", "repro_ablation", "repro_depth", "repro_deep10",
                                           "repro_oja", "repro_norm", "repro_nonlin", "repro_states")}
    docs["repro_relabel"] = run_here("repro_relabel", tmp, "--genomes", str(tmp / "repro_oja.json"))
    return tmp, docs


def test_repro_relabel_permutes_the_labels_mid_run(issue15):
    _, docs = issue15
    r = docs["repro_relabel"]["results"]
    perm, steps, sw = np.array(r["permutation"]), r["steps"], r["switch"]
    assert sorted(perm) == list(range(10)) and np.all(perm != np.arange(10))  # every class relabelled
    i = steps.index(sw)
    assert len(r["cells"]) == 2 and {e["oja"] for e in r["cells"].values()} == {"none", "weights"}
    for e in r["cells"].values():
        sw_acc, ctl, old = (np.asarray(e[k]) for k in ("accuracy_switched", "accuracy_control",
                                                       "accuracy_original_labels"))
        # up to the switch the permuted run *is* the control run (same genomes, synapses, batches)
        assert np.array_equal(sw_acc[:, :i + 1], ctl[:, :i + 1]) and np.array_equal(old[:, :i + 1], ctl[:, :i + 1])
        # after it, the permuted run trains on other labels: its numbers part from the control's
        assert not np.array_equal(old[:, i + 1:], ctl[:, i + 1:])
        assert e["at_switch"]["values"] == sw_acc[:, i].tolist()
    # the script's own training loop against the library's (repro_oja's long runs: the same
    # genomes, initialisations, batches and test split): the control run's numbers, step by step
    oja = docs["repro_oja"]["results"]["cells"]
    for lab, e in r["cells"].items():
        o = oja[lab]
        common = sorted(set(o["steps"]) & set(steps))
        assert len(common) >= 3
        ours = np.asarray(e["accuracy_control"])[:, [steps.index(t) for t in common]]
        theirs = np.asarray(o["accuracy_per_seed"])[:, [o["steps"].index(t) for t in common]]
        assert np.array_equal(ours, theirs)


def test_repro_transfer(issue15):
    _, docs = issue15
    r = docs["repro_transfer"]["results"]
    blur64 = r["per_family"]["blur64"]
    assert {"mnist1d", "breast_cancer"} <= set(blur64)  # two tasks that share no images with digits
    for e in blur64.values():
        assert {"digits3 (new)", "mnist1d3 (new)", "curriculum (shipped)"} <= set(e["blur"])
        for t in e["baselines"].values():  # lr chosen on a validation split, for each horizon
            val = np.asarray(t["validation"])
            for j, h in enumerate(r["horizons"]):
                ce = np.asarray(t["validation_cross_entropy"], dtype=float)[:, j]
                assert t["selected"][str(h)]["lr"] == t["lrs"][chosen(val[:, j], ce)]
    assert "digits" in r["per_family"]["toy20"]  # the toy genome on digits (Fig. 4's out-of-domain task)
    assert set(r["horizons"]) <= set(blur64["digits"]["steps"])


def test_repro_ablation_and_depth_have_seeds(issue15):
    _, docs = issue15
    a = docs["repro_ablation"]["results"]
    assert len(a["rows"]) == 2 and all(x["final"]["n"] == 2 for x in a["rows"])
    assert a["best"] == a["ranking"][0]
    d = docs["repro_depth"]["results"]
    assert set(d["accuracy"]) == {"trained on 1", "trained on 2", "trained on 4", "initial genome"}
    assert all(len(v) == 2 for t in d["per_seed"].values() for v in t.values())
    assert set(d["compare"]["trained on 4 vs trained on 1"]) == {"1", "2", "3", "4", "10", "dag_skip"}
    ten = docs["repro_deep10"]["results"]
    assert set(ten["final"]) == {"4 hidden, long", "10 hidden, direct"}
    assert all(set(v) == {"1", "2", "4", "10"} for v in ten["final"].values())


def test_repro_oja_searches_oja_alpha_and_records_norms(issue15):
    _, docs = issue15
    r = docs["repro_oja"]["results"]
    assert len(r["cells"]) == 6
    for lab, e in r["cells"].items():
        for p, n in e["norms"].items():
            assert n["steps"] == list(range(0, 41, 10))  # the monitor, every 10 steps of 40
            assert np.all(np.asarray(n["per_seed"]) > 0)
        if e["oja"] == "none":
            assert e["oja_alpha"] == [0.0]
        else:  # searched from 0.05: CMA-ES moved it
            assert all(a != 0.05 for a in e["oja_alpha"])
    stored = r["cells"]["no Oja, synapse norm stored"]["norms"]["in->h1"]
    assert np.asarray(stored["per_seed"])[0, 0] != pytest.approx(1.0)  # initial synapses are not normalised yet


def test_repro_norm_searches_gain_and_shift(issue15):
    _, docs = issue15
    runs = docs["repro_norm"]["results"]["runs"]
    for r in runs["normalisation, gain/shift fixed"] + runs["no normalisation"]:
        assert r["norm_gain"] == [1.0, 1.0] and r["norm_shift"] == [0.0, 0.0]
    for r in runs["normalisation, gain/shift searched"]:
        assert r["norm_gain"] != [1.0, 1.0] and r["norm_shift"] != [0.0, 0.0]


def test_repro_sweeps(issue15):
    _, docs = issue15
    n = docs["repro_nonlin"]["results"]
    assert set(n["cells"]) == {"identity / identity", "tanh / tanh", "tanh / identity"}
    s = docs["repro_states"]["results"]
    g = s["runs"]["k=3, relu_tanh"][0]["genome"]["default"]
    assert len(g["nu"]) == 3 and len(g["mu_tilde"][0]) == 3
    assert set(s["vs_k2"]) == {"k=3, relu_tanh", "k=3, identity"}


def render_all(tmp: Path, names) -> str:
    """tools/make_results.py on the smoke runs in ``tmp``: header, table and figure of each of
    ``names``; every one must render (its command shown)."""
    template = tmp / "template.md"
    template.write_text("\n\n".join(f"{{{{header:{n}}}}}\n{{{{table:{n}}}}}\n{{{{figure:{n}}}}}" for n in names))
    out = tmp / "results.md"
    proc = subprocess.run([sys.executable, str(TOOLS / "make_results.py"), "--results", str(tmp),
                           "--template", str(template), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    for n in names:
        assert f"tools/{n}.py --quick" in text
    return text


def test_make_results_renders_the_new_tables(issue15):
    tmp, docs = issue15
    text = render_all(tmp, list(docs))
    assert "lr tuned on validation" in text and "larger than the spread" in text


# ------------------------------------------ issue 11 item 7 / issue 15: gradient meta-training
@pytest.fixture(scope="module")
def gradient_repros(tmp_path_factory):
    """The gradient reproductions' smoke runs, in one directory (JAX compiles their unrolls)."""
    pytest.importorskip("jax")
    tmp = tmp_path_factory.mktemp("gradient")
    docs = {s: run_here(s, tmp) for s in ("repro_toy_gradient", "repro_es_vs_gradient", "repro_curriculum_gradient")}
    # issue 23's gradient sweeps, each with one run / seed (the one-run path of every script)
    docs["repro_es_vs_gradient_fair"] = run_here("repro_es_vs_gradient_fair", tmp, "--runs", "1")
    for s in ("repro_depth_gradient", "repro_states_gradient"):
        docs[s] = run_here(s, tmp, "--seeds", "1")
    return tmp, docs


def test_repro_toy_gradient(gradient_repros):
    _, docs = gradient_repros
    r = docs["repro_toy_gradient"]["results"]
    runs, s = r["runs"], r["summary"]
    assert len(runs) == 2 and all(len(x["meta_loss"]) == 5 for x in runs)  # record 0 + 4 steps
    assert s["validation_mean_over_runs"] == pytest.approx(np.mean([x["validation_mean"] for x in runs]))
    for x in runs:  # Fig. 4's protocol: every training and held-out task evaluated
        assert set(x["evaluation"]) == set(s["train_tasks"] + s["validation_tasks"])
        assert x["final_unroll"] == 2 and x["final_training_fitness_mean_genome"] is not None
    cma = r["cmaes"]
    if cma is not None:  # the CMA-ES side is read from docs/results/repro_toy.json
        assert cma["runs"] == len(cma["validation_per_run"]) and not cma["same_protocol"]  # quick: 2 replicas


def test_repro_es_vs_gradient(gradient_repros):
    _, docs = gradient_repros
    doc = docs["repro_es_vs_gradient"]
    r = doc["results"]
    for arm in ("cma_es", "gradient"):
        a = r["arms"][arm]
        assert len(a["runs"]) == 2
        # best of N is chosen on the training split
        assert a["best_run"] == int(np.argmax([x["train_accuracy_at_T"] for x in a["runs"]]))
        for x in a["runs"]:  # each run steps until its wall-clock budget is spent
            assert x["seconds"] >= doc["scale"]["budget_seconds_per_run"] and x["steps"] >= 1
            assert len(x["trajectory"]["seconds"]) == x["steps"] + 1
    # run i of both arms starts from the same genome: the same initial training fitness
    for c, g in zip(r["arms"]["cma_es"]["runs"], r["arms"]["gradient"]["runs"]):
        assert c["trajectory"]["training_fitness"][0] == g["trajectory"]["training_fitness"][0]


def test_repro_es_vs_gradient_fair_tunes_the_rate_on_training_fitness(gradient_repros):
    _, docs = gradient_repros
    doc = docs["repro_es_vs_gradient_fair"]
    r, sc = doc["results"], doc["scale"]
    tu = r["tuning"]
    assert tu["lrs"] == sc["lr_grid"] and len(tu["train_accuracy_at_T"]) == len(tu["lrs"]) == 2
    assert tu["selected_lr"] == tu["lrs"][int(np.argmax(tu["train_accuracy_at_T"]))] == sc["gradient_learning_rate"]
    assert tu["seed"] not in doc["seeds"]["runs"]  # tuned on a run none of the compared runs is
    for arm, per_step in (("cma_es", sc["cma_es_popsize"]), ("gradient", 1)):
        runs = r["arms"][arm]["runs"]
        assert len(runs) == 1 and r["arms"][arm]["best_run"] == 0
        assert [x["genome_evaluations"] for x in runs] == [x["steps"] * per_step for x in runs]
        assert r["arms"][arm]["genome_evaluations_per_run"]["values"] == [x["genome_evaluations"] for x in runs]
    assert r["test_at_T_separation"]["welch_p"] is None  # one run per arm: no claim


def test_repro_depth_and_states_by_gradient(gradient_repros):
    _, docs = gradient_repros
    d = docs["repro_depth_gradient"]
    r = d["results"]
    assert set(r["accuracy"]) == {"trained on 1", "trained on 2", "initial genome"}
    assert d["scale"]["eval_architectures"] == ["1", "10", "dag_skip"]
    for runs in r["runs"].values():  # gradient runs: a meta-loss per step, one seed
        assert len(runs) == 1 and len(runs[0]["meta_loss"]) == len(runs[0]["curve"]) == d["scale"]["gradient_steps"]
    assert set(r["compare"]) == {"trained on 2 vs trained on 1"}
    s = docs["repro_states_gradient"]["results"]
    assert set(s["cells"]) == {"k=2", "k=4"} and set(s["vs_k2"]) == {"k=4"}
    g = s["runs"]["k=4"][0]["genome"]["default"]
    assert len(g["nu"]) == 4 and len(g["mu_tilde"][0]) == 4
    assert all(len(x["meta_loss"]) == 2 for rows in s["runs"].values() for x in rows)


def test_repro_curriculum_gradient(gradient_repros):
    _, docs = gradient_repros
    r = docs["repro_curriculum_gradient"]["results"]
    t = r["training"]
    assert r["final_unroll"] == 3 and t["unroll"] == [2, 2, 3, 3]  # 2 -> 3, two steps per stage
    assert t["synchronised_at"] == [2, 4]  # at every stage change (and the end of the last stage)
    assert all(len(m) == 2 for m in t["meta_loss_runs"])
    for tabs in r["per_task"]["digits"]["baselines"].values():
        for b in tabs.values():
            ce = [v[-1] for v in b["validation_cross_entropy"]]
            assert b["selected_lr"] == b["lrs"][chosen(b["validation_final_accuracy"], ce)]


def test_make_results_renders_the_gradient_tables(gradient_repros):
    tmp, docs = gradient_repros
    text = render_all(tmp, list(docs))
    assert "CMA-ES" in text and "larger than the spread" in text and "selected on a validation split" in text


def test_make_results_oja_table_reports_overflowed_norms():
    """A seed whose synapse norm overflowed (None in the JSON, as ``repro_oja`` writes NaN) is
    reported as such, not formatted as a number."""
    sys.path.insert(0, str(TOOLS))
    import make_results

    at = {"mean": 0.5, "std": 0.1, "n": 2, "values": [0.4, 0.6]}
    cell = {"at": {"10": at}, "peak": at, "oja": "none", "oja_alpha": [0.0, 0.0], "diverged_replicas": [4, 0],
            "final_norm": {"in->h1": {"mean": None, "std": None, "n": 2, "values": [None, 2.0]},
                           "h1->out": {"mean": 1.5, "std": 0.1, "n": 2, "values": [1.4, 1.6]}}}
    text = make_results.table_oja({"results": {"report_steps": [10], "cells": {"no Oja": cell}}})
    row = next(line for line in text.splitlines() if line.startswith("| no Oja"))
    assert "non-finite in 1 of 2 seeds" in row and "| 1.5 |" in row and row.endswith("| 4 |")


# ------------------------------------------ issue 23: headline protocol, datasets, one-run scripts
def test_explicit_keeps_a_given_count():
    import repro_common as rc

    assert rc.explicit(["--quick", "--runs", "1"], "--runs", 3) == 1
    assert rc.explicit(["--quick", "--runs=1"], "--runs", 3) == 1
    assert rc.explicit(["--quick"], "--runs", 3) == 3
    assert rc.explicit(["--seeds", "2", "4", "--quick"], "--seeds", [5]) == [2, 4]


def test_toy_correlation_with_fewer_than_three_runs_is_not_computed():
    import repro_toy

    run = {"train_mean": 0.8, "validation_mean": 0.6, "final_training_fitness_mean_genome": 0.7}
    for n in (1, 2):
        c = repro_toy.correlation([run] * n)
        assert c["runs"] == n and c["pearson_r"] is None and "at least 3" in c["note"]


def test_t_interval_by_hand():
    import repro_common as rc

    v = [0.1, 0.3, 0.2, 0.4]
    ci = rc.t_interval(v)
    half = 3.182446305284263 * np.std(v, ddof=1) / 2  # t(0.975, 3) * sd / sqrt(4)
    assert ci["mean"] == pytest.approx(0.25) and ci["low"] == pytest.approx(0.25 - half)
    assert ci["high"] == pytest.approx(0.25 + half) and ci["n"] == 4
    assert rc.t_interval([0.5])["low"] is None


def test_rates_are_chosen_on_a_validation_split_of_the_training_split():
    """compare_tuned's choice, recomputed by hand: carve 20 % of the training split (stratified,
    the comparison seed), train on the rest, pick the argmax of validation accuracy per horizon;
    a grid whose best rate is its top grows until a larger rate did worse."""
    import repro_common as rc

    from blursim.baselines import train_baseline
    from blursim.data import load_dataset
    from blursim.data.base import stratified_split
    from blursim.graph import compile_network

    spec = rc.resized_network(rc.load_spec(rc.SPECS / "repro_digits_blur_64.json"), n_in=2, n_out=2)
    data = load_dataset("xor", {"n_train": 200, "n_test": 100})
    res = rc.compare_tuned({}, {"xor": {"dataset": "xor", "options": {"n_train": 200, "n_test": 100}}},
                           baseline_network=spec, optimizers=["sgd"], lrs=[1e-2, 10 ** -1.5], horizons=[3, 8],
                           replicas=2, seed=7)["xor"]
    b = res["baselines"]["sgd"]
    assert b["extended"] and len(b["lrs"]) > 2  # the best of 0.01, 0.03 was the top: the grid grew
    assert b["lrs"][2] == 0.1 and b["lrs"][4] == 1.0  # on the half-decade lattice
    tr, va = stratified_split(data.y_train, 0.2, 7)
    assert res["n_fit"] == tr.size and res["n_validation"] == va.size and res["n_test"] == 100
    from blursim.data import Dataset

    tune = Dataset(name="xor", x_train=data.x_train[tr], y_train=data.y_train[tr], x_test=data.x_train[va],
                   y_test=data.y_train[va], n_classes=2)
    prog = compile_network(spec)
    for j, h in enumerate([3, 8]):
        val = [train_baseline(prog, tune, "sgd", lr, steps=h, batch_size=32, replicas=2, seed=7,
                              eval_steps="end", split="test").accuracy.mean() for lr in b["lrs"]]
        assert b["selected"][str(h)] == b["lrs"][int(np.argmax(val))]
        assert b["top_reached"] or b["selected"][str(h)] < b["lrs"][-1]


@pytest.fixture(scope="module")
def headline(tmp_path_factory):
    """The comparison phase's smoke run on the shipped 30-steps-per-stage genomes (two of the 2-state
    seeds: ``--quick``); the meta phase is the gradient curriculum of repro_curriculum_gradient."""
    tmp = tmp_path_factory.mktemp("headline")
    return tmp, run_here("repro_headline", tmp, "--phase", "compare", "--genome-dir",
                         str(ROOT / "docs" / "results" / "headline_s30"))


def test_repro_headline_meta_documents():
    """The meta phase's experiment: k states, hidden width, gradient strategy with synchronised
    runs, curriculum 10 -> 50 by ``--increment`` every ``--stage-steps``."""
    import repro_headline

    args = repro_headline.parse_args(["--hidden", "32", "--sync-runs", "3", "--stage-steps", "7"])
    doc = repro_headline.meta_doc(4, 11, args)
    assert doc["network"]["k"] == 4 and doc["seed"] == 11 and doc["genome"]["init"] == {"kind": "random", "seed": 11}
    assert [p["size"] for p in doc["network"]["populations"]] == [64, 32, 10]
    assert doc["strategy"] == {"name": "gradient", "options": {"learning_rate": 0.01, "runs": 3}}
    assert doc["curriculum"] == {"increment": 10, "every": 7, "max_steps": 50} and doc["generations"] == 5 * 7


def test_repro_headline_differences_are_per_seed(headline):
    _, doc = headline
    tasks = doc["results"]["tasks"]
    assert set(tasks) == {"font_letters_8", "mnist1d", "xor"}
    for t, e in tasks.items():
        (label, m), = e["methods"].items()
        per_seed = np.asarray(m["per_seed"])  # (genomes, horizons): the mean over initialisations
        assert per_seed.shape == (2, len(e["horizons"]))
        assert np.allclose(per_seed, np.asarray(m["test"]).mean(axis=1))
        for opt, b in e["baselines"].items():
            test = np.asarray(b["test"])
            for j, h in enumerate(e["horizons"]):
                d = e["differences"][label][opt][str(h)]
                diffs = per_seed[:, j] - test[:, j].mean()
                assert d["over_seeds"]["mean"] == pytest.approx(diffs.mean()) and d["over_seeds"]["n"] == 2
                assert d["over_inits"]["n"] == test.shape[0]
                # the highest validation accuracy; ties (the zoo's blursim.compare) by the lowest cross-entropy
                acc = np.asarray(b["validation"])[:, j]
                top = np.flatnonzero(acc >= acc.max() - 1e-12)
                ce = [b["validation_cross_entropy"][i][j] for i in top] if "validation_cross_entropy" in b else [0]
                assert b["selected"][str(h)] == b["lrs"][int(top[np.argmin([np.inf if c is None else c for c in ce])])]
    assert max(tasks["mnist1d"]["horizons"]) == 12 and doc["machine"]["versions"]["numpy"]


def test_repro_datasets_and_redraw(issue15, tmp_path):
    tmp, docs = issue15
    doc = run_here("repro_datasets", tmp)
    s = doc["results"]["summary"]
    assert set(s) == {"font_letters 8x8", "font_digits 8x8"}
    for v in s.values():
        assert set(v["adam"]) == {"5", "10"} and v["chance"] == 1 / v["n_classes"]
    import make_results

    figs = make_results.redraw({n: docs[n] for n in ("repro_oja", "repro_transfer")}, tmp_path)
    assert sorted(p.name for p in figs) == ["repro_oja.png", "repro_transfer.png", "repro_transfer_curves.png"]
    assert all(p.stat().st_size > 1000 for p in figs)


def test_compare_zoo_has_compare_tuned_shape():
    """The swap to the rule zoo's ``blursim.compare`` (issue 21) gives the result shape the
    headline's tables and figures read (skipped where that module is not in this checkout)."""
    pytest.importorskip("blursim.compare")
    import repro_common as rc

    from blursim.spec import load_genome

    spec = rc.load_spec(rc.SPECS / "toy_blur.json")
    genome = load_genome(rc.RESULTS / "repro_toy_genome.json")
    res = rc.compare_zoo({"toy": {"network": spec, "genomes": [genome, genome]}},
                         {"xor": {"dataset": "xor", "options": {"n_train": 100, "n_test": 50}}},
                         baseline_network=spec, optimizers=["sgd"], lrs=[0.1, 10 ** -0.5], horizons=[3],
                         replicas=2, seed=0)["xor"]
    test = np.asarray(res["methods"]["toy"]["test"])
    assert test.shape == (2, 2, 1) and np.allclose(test[0], test[1])  # one genome twice: the same numbers
    d = res["differences"]["toy"]["sgd"]["3"]["over_seeds"]
    assert d["n"] == 2 and d["mean"] == pytest.approx(test[:, :, 0].mean() - res["baselines"]["sgd"]["test"][:, 0].mean())
