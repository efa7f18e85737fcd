"""Runs as objects (blursim.runs, ``blursim runs``, ``blursim genome diff``) and ``blursim
evaluate`` over several genomes, presets and tasks and on experiment documents (issue 26, item 1)."""

import json

import numpy as np
import pytest
from test_meta_train import TINY_NETWORK, Crash, CrashAfter, tiny_experiment

from blursim.cli.main import main
from blursim.meta import meta_train
from blursim.meta.io import RunLock, read_log
from blursim.runs import Run, find_runs, genome_diff
from blursim.spec import load_genome


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``runs/a``: finished (3 of 3 generations); ``runs/b``: another seed, stopped as asked
    after 2 of 3 (``--generations 2``); ``crashed/c``: interrupted after generation 1 of 3; the
    experiment file of ``a``."""
    root = tmp_path_factory.mktemp("runs")
    exp = tiny_experiment(generations=3, validation={"every": 2})
    path = root / "exp.json"
    path.write_text(json.dumps(exp))
    meta_train(path, out=root / "runs" / "a")
    meta_train(tiny_experiment(generations=3, seed=8, name="other"), out=root / "runs" / "b", generations=2)
    with pytest.raises(Crash):
        meta_train(tiny_experiment(generations=3), out=root / "crashed" / "c", observers=[CrashAfter(1)])
    return root


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_run_object_reads_status_numbers_and_arrays(runs):
    a, b = Run(runs / "runs" / "a"), Run(runs / "runs" / "b")
    assert (a.name, a.strategy, a.unit, a.status, a.done, a.total) == ("tiny", "cma_es", "generation", "finished", 3, 3)
    assert (b.name, b.status, b.done) == ("other", "stopped", 2)
    c = Run(runs / "crashed" / "c")
    assert (c.status, c.done, c.total) == ("interrupted", 1, 3)
    recs = read_log(runs / "runs" / "a" / "log.jsonl")
    arr = a.arrays()
    assert arr["generation"].tolist() == [0, 1, 2, 3]
    assert np.isnan(arr["fitness_best"][0]) and arr["fitness_best"][3] == recs[3]["fitness"]["best"]
    # the log validated 0 and 2 (every 2); the last generation, 3, was validated at the end
    assert np.isfinite(arr["validation"]).tolist() == [True, False, True, False]
    end = load_genome(runs / "runs" / "a" / "mean_genome.json").meta
    assert end["validated_at_end"] and end["generation"] == 3
    vals = [(r["mean"]["validation_mean"], r["generation"]) for r in recs if r["mean"]["validation_mean"] is not None]
    vals.append((end["validation_mean"], 3))
    assert a.end_validation == vals[-1] and a.last_validation == vals[-1]
    assert a.best_validation == max(vals, key=lambda v: (v[0], -v[1]))
    assert a.series("mean.validation.center_circle")[2] == recs[2]["mean"]["validation"]["center_circle"]
    assert a.seconds == pytest.approx(sum(r["time"]["seconds"] for r in recs))
    assert a.genome("mean") == load_genome(runs / "runs" / "a" / "mean_genome.json")
    # a process that holds the lock: running
    lock = RunLock(runs / "runs" / "b").acquire()
    try:
        assert Run(runs / "runs" / "b").status == "running"
    finally:
        lock.release()
    assert Run(runs / "runs" / "b").status == "stopped"
    assert [r.path.name for r in find_runs([runs / "runs"])] == ["a", "b"]


def test_runs_list_ranks_by_best_validation(runs, capsys):
    rc, out, err = cli(capsys, "runs", "list", runs / "runs")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["run", "experiment", "strategy", "status"]
    a, b = Run(runs / "runs" / "a"), Run(runs / "runs" / "b")
    first = a if a.best_validation[0] >= b.best_validation[0] else b
    assert lines[1].startswith(str(first.path))
    assert "finished" in out and "stopped" in out and "3/3 gen" in out and "2/3 gen" in out
    rc, out, _ = cli(capsys, "runs", "list", runs / "runs" / "b", runs / "runs" / "a", "--json")
    doc = json.loads(out)
    assert {d["experiment"] for d in doc} == {"tiny", "other"}
    assert doc[0]["best_validation"]["value"] >= doc[1]["best_validation"]["value"]
    rc, out, err = cli(capsys, "runs", "list", runs)  # holds no run directly, but a folder of them: no
    assert rc == 2 and "holds none" in err and "Traceback" not in err


def test_runs_show_and_plot(runs, capsys, tmp_path):
    rc, out, err = cli(capsys, "runs", "show", runs / "runs" / "a")
    assert rc == 0, err
    assert "finished, 3/3 generations" in out and f"--resume {runs / 'runs' / 'a'}" in out
    rows = [ln.split() for ln in out.splitlines() if ln[:10].strip().isdigit()]
    assert [int(r[0]) for r in rows] == [0, 2, 3]  # validated generations and the last
    assert "validated at the end" in out
    rc, out, _ = cli(capsys, "runs", "show", runs / "runs" / "a", "--all")
    assert [int(ln.split()[0]) for ln in out.splitlines() if ln[:10].strip().isdigit()] == [0, 1, 2, 3]
    rc, out, _ = cli(capsys, "runs", "show", runs / "runs" / "a", "--json")
    doc = json.loads(out)
    assert doc["summary"]["status"] == "finished" and len(doc["log"]["validation"]) == 4
    png = tmp_path / "all.png"
    rc, out, err = cli(capsys, "runs", "plot", runs / "runs", "-o", png, "--y", "validation", "--y", "fitness_best")
    assert rc == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "2 run(s)" in out
    rc, _, err = cli(capsys, "runs", "plot", runs / "runs" / "a", "-o", tmp_path / "one.png", "--full")
    assert rc == 0 and (tmp_path / "one.png").exists()
    rc, _, err = cli(capsys, "runs", "plot", runs / "runs", "-o", tmp_path / "x.png", "--full")
    assert rc == 2 and "one run" in err


def test_genome_diff(runs, capsys, tmp_path):
    a, b = runs / "runs" / "a" / "mean_genome.json", runs / "runs" / "b" / "mean_genome.json"
    rc, out, _ = cli(capsys, "genome", "diff", a, a)
    assert rc == 0 and "are equal" in out
    rc, out, _ = cli(capsys, "genome", "diff", a, b, "--json")
    assert rc == 1
    doc = json.loads(out)
    # reference: every entry of the two documents, read as plain JSON (no optional fields here)
    ga, gb = (json.loads(p.read_text())["groups"]["default"] for p in (a, b))
    diff = np.concatenate([np.ravel(np.subtract(ga[f], gb[f], dtype=float)) for f in ga])
    assert doc["distance"] == pytest.approx(np.linalg.norm(diff), rel=1e-12)
    assert doc["max_abs"] == pytest.approx(np.abs(diff).max(), rel=1e-12)
    assert {f["field"] for f in doc["fields"]} == {f for f in ga if np.any(np.subtract(ga[f], gb[f]) != 0)}
    # one field changed: exactly that field, by that much
    g = load_genome(a)
    g.groups["default"].eta_tilde += 0.25
    c = tmp_path / "c.json"
    c.write_text(g.model_dump_json())
    d = genome_diff(load_genome(a), load_genome(c))
    assert [(f.field, f.max_abs) for f in d.fields] == [("eta_tilde", pytest.approx(0.25))]
    rc, out, _ = cli(capsys, "genome", "diff", a, c)
    assert rc == 1 and "eta_tilde" in out and "nu " not in out
    assert cli(capsys, "genome", "diff", a, c, "--tol", "0.3")[0] == 0


def test_evaluate_several_genomes_presets_and_tasks(runs, capsys, tmp_path):
    net = tmp_path / "net.json"
    net.write_text(json.dumps(TINY_NETWORK))
    a = runs / "runs" / "a" / "mean_genome.json"
    b = runs / "runs" / "b" / "mean_genome.json"
    base = ["evaluate", net, "--steps", "3", "--replicas", "2"]
    rc, out, err = cli(capsys, *base, "--genome", a, "--genome", b, "--preset", "random",
                       "--task", "xor", "--task", "and", "--task", "center_circle", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["genomes"] == [str(a), str(b), "preset:random"]
    assert [t["label"] for t in doc["tasks"]] == ["xor", "and", "center_circle"]
    assert len(doc["results"]) == 9  # every genome on every task: no repeated flag kept only last
    # each pair equals that genome evaluated alone on that task (same seed and protocol)
    rc, out, _ = cli(capsys, *base, "--genome", b, "--task", "and", "--json")
    alone = json.loads(out)
    pair = next(r for r in doc["results"] if r["genome"] == str(b) and r["task"] == "and")
    assert pair["accuracy"] == alone["accuracy"]
    rc, out, _ = cli(capsys, *base, "--genome", a, "--preset", "random", "--task", "xor", "--task", "and")
    assert rc == 0
    assert "2 genome(s) x 2 task(s)" in out and "preset:random" in out and "*" in out
    rc, out, err = cli(capsys, *base, "--genome", a, "--task", "xor", "--task", "xor")
    assert rc == 2 and "given twice" in err
    # a zoo preset on a network without the rules it needs is refused, naming the rules (issue 21)
    rc, out, err = cli(capsys, *base, "--preset", "backprop", "--task", "xor")
    assert rc == 2 and "needs rules this network does not have" in err and "$.rules.tied" in err


def test_evaluate_an_experiment_gives_the_numbers_of_its_log(runs, capsys):
    """Evaluated on the experiment document, the mean genome of the finished run scores exactly
    the validation its log holds for the last generation (the trainer's population evaluator
    computed that; evaluate runs the simulator directly)."""
    run = Run(runs / "runs" / "a")
    rc, out, err = cli(capsys, "evaluate", runs / "exp.json", "--genome", runs / "runs" / "a" / "mean_genome.json",
                       "--preset", "random", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert [t["label"] for t in doc["tasks"]] == ["center_circle"]
    mine = doc["results"][0]
    assert mine["final_accuracy_mean"] == run.last_validation[0]
    assert mine["steps"][-1] == read_log(run.path / "log.jsonl")[-1]["unroll"]
    rc, out, err = cli(capsys, "evaluate", runs / "exp.json", "--preset", "random", "--task", "center_circle",
                       "--json")
    assert rc == 0, err
    assert json.loads(out)["results"][0]["accuracy"] == doc["results"][1]["accuracy"]  # the same pair
    rc, _, err = cli(capsys, "evaluate", runs / "exp.json", "--preset", "random", "--task", "xor")
    assert rc == 2 and "no validation task labelled 'xor'" in err and "center_circle" in err


def fake_run(d, *, metric, validations, generations=3, strategy="cma_es"):
    """A run directory written by hand: experiment.json and a log whose mean genome has the given
    validation numbers (None: not validated)."""
    d.mkdir(parents=True)
    exp = {"name": d.name, "strategy": {"name": strategy}, "fitness": {"metric": metric},
           "generations": generations}
    (d / "experiment.json").write_text(json.dumps({"experiment": exp, "source": None, "spec_hash": "0" * 64}))
    recs = [{"generation": g, "mean": {"validation_mean": v}, "time": {"seconds": 1.5}}
            for g, v in enumerate(validations)]
    (d / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_lower_is_better_for_mse_and_runs_without_numbers_come_last(tmp_path, capsys):
    fake_run(tmp_path / "r" / "high", metric="mse", validations=[0.9, None, 0.5, 0.6])
    fake_run(tmp_path / "r" / "low", metric="mse", validations=[0.9, 0.2, None, 0.3])
    fake_run(tmp_path / "r" / "empty", metric="mse", validations=[])
    fake_run(tmp_path / "r" / "grad", metric="mse", validations=[0.9, None], strategy="gradient")
    runs = sorted(find_runs([tmp_path / "r"]), key=Run.sort_key)
    assert [r.name for r in runs] == ["low", "high", "grad", "empty"]
    low = runs[0]
    assert low.best_validation == (0.2, 1) and low.last_validation == (0.3, 3) and low.status == "finished"
    assert low.seconds == 6.0 and low.end_validation is None
    assert runs[-1].done == 0 and runs[-1].status == "interrupted" and runs[-1].best_validation is None
    assert runs[2].unit == "step" and runs[2].status == "interrupted"
    rc, out, err = cli(capsys, "runs", "list", tmp_path / "r")
    assert rc == 0, err
    assert [ln.split()[0] for ln in out.splitlines()[1:5]] == [str(r.path) for r in runs]
    assert "1/3 st" in out and "lower is better" in out
