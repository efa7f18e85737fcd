"""Meta-training: batched population evaluation, the generation loop, run files, resume.

Everything runs on a tiny inline network (2 -> 6 -> 2) with populations of 6
and unrolls of 3-5 steps; the real runs live in tools/ and specs/experiments/.
"""

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import kill_meta_train_at

from blursim.meta import MetaTrainer, meta_train, prepare_experiment
from blursim.meta.evaluate import EvalResult, Protocol, bytes_per_species
from blursim.meta.io import RunDirError, read_log
from blursim.meta.observers import ProgressBar, strip_time
from blursim.meta.seeds import train_seeds, validation_seeds

TINY_NETWORK = {
    "format": "blursim.network/1",
    "k": 2,
    "populations": [
        {"name": "in", "size": 2, "role": "input"},
        {"name": "hidden", "size": 6, "role": "hidden", "forward_activation": "relu_tanh",
         "backward_activation": "relu_tanh", "normalization": "both"},
        {"name": "out", "size": 2, "role": "output", "forward_activation": "tanh",
         "backward_activation": "tanh"},
    ],
    "projections": [{"from": "in", "to": "hidden"}, {"from": "hidden", "to": "out"}],
    "rules": {"oja": "weights", "batch_reduction": "mean"},
}


def tiny_experiment(**changes):
    """A complete experiment that meta-trains in well under a second per generation."""
    exp = {
        "format": "blursim.experiment/1",
        "name": "tiny",
        "network": copy.deepcopy(TINY_NETWORK),
        "training_tasks": [{"name": "xor", "options": {"n_train": 256, "n_test": 128}},
                           {"name": "and", "options": {"n_train": 256, "n_test": 128}}],
        "validation_tasks": [{"name": "center_circle", "options": {"n_train": 256, "n_test": 128}}],
        "inner": {"steps": 3, "batch_size": 16, "query_batches": 2, "replicas": 2},
        "curriculum": {"increment": 1, "every": 2, "max_steps": 5},
        "genome": {"init": {"kind": "random", "seed": 0}, "bounds": {"f_tilde": [0.0, 1.2]}},
        "strategy": {"name": "cma_es", "sigma0": 0.2, "popsize": 6},
        "validation": {"every": 2},
        "generations": 5,
        "seed": 7,
    }
    for key, value in changes.items():
        exp[key] = value
    return exp


def files_of(d: Path) -> dict[str, object]:
    """What must be identical between two runs: log (timing stripped) and genomes."""
    return {
        "log": strip_time(read_log(d / "log.jsonl")),
        "best": (d / "best_genome.json").read_text(),
        "mean": (d / "mean_genome.json").read_text(),
    }


# ------------------------------------------------------------------ evaluation
def population(setup, P=7, scale=0.3, seed=1):
    rng = np.random.default_rng(seed)
    return setup.x0 + scale * rng.standard_normal((P, setup.layout.size))


def test_chunked_evaluation_equals_unchunked():
    setup = prepare_experiment(tiny_experiment(validation_tasks=[]))
    X = population(setup)
    proto = Protocol(4, 16, 2, None, 2, "train")
    seeds = train_seeds(7, 0, 2)
    whole = MetaTrainer(setup, memory_budget_mb=1e6).evaluator
    one = setup.plan_memory(1e6).per_genome  # one genome under the training protocol
    tiny = MetaTrainer(setup, memory_budget_mb=1.5 * one / 2**20).evaluator
    assert len(whole.split(7, "train", proto)) == 1
    assert len(tiny.split(7, "train", proto)) == 7  # one species per chunk
    a = whole.evaluate(X, "train", seeds, proto)
    b = tiny.evaluate(X, "train", seeds, proto)
    for key in ("accuracy", "cross_entropy", "finite"):
        assert np.array_equal(getattr(a, key), getattr(b, key)), key
    assert a.accuracy.shape == (7, 2, 2)
    # a species' result does not depend on its neighbours: evaluate one alone
    c = whole.evaluate(X[3:4], "train", seeds, proto)
    assert np.array_equal(c.cross_entropy[0], a.cross_entropy[3])
    # common random numbers: identical genomes get identical results
    d = whole.evaluate(np.stack([X[0], X[0]]), "train", seeds, proto)
    assert np.array_equal(d.accuracy[0], d.accuracy[1])


def test_memory_budget_estimate_scales_with_network_and_batch():
    setup = prepare_experiment(tiny_experiment(validation_tasks=[]))
    prog = setup.programs[0]
    small = bytes_per_species(prog, Protocol(3, 16, 2, None, 1, "train"), 4)
    assert bytes_per_species(prog, Protocol(3, 64, 2, None, 1, "train"), 4) > small
    assert bytes_per_species(prog, Protocol(3, 16, 2, None, 2, "train"), 4) == 2 * small
    ev = MetaTrainer(setup, memory_budget_mb=small * 3 / 2**20).evaluator
    assert ev.chunk_size("train", Protocol(3, 16, 2, None, 1, "train")) == 3


def test_diverging_genomes_get_the_worst_fitness_and_are_counted():
    setup = prepare_experiment(tiny_experiment())
    X = population(setup, P=4)
    lab = setup.layout.labels()
    X[1, lab.index("default.eta_tilde")] = 1e30  # synapses overflow float32
    X[1, lab.index("default.f_tilde")] = 1e30
    ev = MetaTrainer(setup).evaluator
    res = ev.evaluate(X, "train", train_seeds(7, 0, 2), Protocol(3, 16, 2, None, 2, "train"))
    assert list(res.diverged) == [False, True, False, False]
    for metric in ("accuracy", "cross_entropy"):
        f = res.fitness(metric)
        assert np.isnan(f[1]) and np.isfinite(f[[0, 2, 3]]).all()

    # in a run: a population whose every genome diverges does not stop the run
    exp = tiny_experiment(generations=2)
    exp["genome"] = {"init": {"kind": "random", "seed": 0}, "set": {"f_tilde": 1e30}}
    r = meta_train(exp)
    assert [rec["generation"] for rec in r.records] == [0, 1, 2]
    assert [rec["diverged"] for rec in r.records] == [0, 6, 6]
    assert r.records[0]["mean"]["diverged"] and r.records[2]["best"] is None
    assert r.records[2]["fitness"]["best"] is None and r.best_genome is None


def test_fitness_is_mean_over_tasks_replicas_and_query_batches():
    acc = np.array([[[0.5, 1.0], [0.0, 0.5]]])  # (P=1, tasks=2, R=2)
    ce = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    res = EvalResult(acc, ce, np.ones_like(acc, dtype=bool))
    assert res.fitness("accuracy")[0] == 0.5
    assert res.fitness("cross_entropy")[0] == -2.5
    assert np.array_equal(res.task_accuracy(), [[0.75, 0.25]])


def test_seeds_are_common_within_and_fresh_across_generations():
    assert train_seeds(7, 3, 2) == train_seeds(7, 3, 2)
    assert train_seeds(7, 3, 2) != train_seeds(7, 4, 2)
    assert len(set(train_seeds(7, 3, 5))) == 5
    assert validation_seeds(7, 3) == validation_seeds(7, 3) != validation_seeds(8, 3)


# ------------------------------------------------------------------ the loop
def test_run_records_and_files(tmp_path):
    out = tmp_path / "run"
    r = meta_train(tiny_experiment(), out=out)
    assert sorted(os.listdir(out)) == [
        ".lock", "best_genome.json", "checkpoint-g0000005.npz", "checkpoint.json", "experiment.json",
        "log.jsonl", "mean_genome.json", "meta_training.png",
    ]  # nothing half-written left behind
    recs = read_log(out / "log.jsonl")
    assert recs == r.records
    assert [x["generation"] for x in recs] == [0, 1, 2, 3, 4, 5]
    assert [x["unroll"] for x in recs] == [3, 3, 3, 4, 4, 5]  # curriculum +1 every 2 generations
    first, last = recs[0], recs[-1]
    assert first["best"] is None and first["fitness"] is None and first["mean"]["validation_mean"] is not None
    assert set(last["fitness"]) == {"best", "mean", "median", "worst", "best_ever"}
    assert last["fitness"]["best"] >= last["fitness"]["median"] >= last["fitness"]["worst"]
    assert set(last["best"]["train"]) == {"xor", "and"}
    assert last["evaluations"] == 30 and last["diverged"] == 0 and last["step_size"] > 0
    # validation every 2 generations, for the best and the mean genome
    assert [x["mean"]["validation"] is not None for x in recs] == [True, False, True, False, True, False]
    assert recs[4]["best"]["validation"].keys() == {"center_circle"}
    assert set(last["time"]) == {"seconds", "evaluation_seconds", "timestamp"}
    # the best candidate's fitness is the population's best
    assert last["best"]["fitness"] == last["fitness"]["best"]
    assert (out / "meta_training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ck = json.loads((out / "checkpoint.json").read_text())
    assert ck["generation"] == 5 and ck["spec_hash"] == r.setup.spec_hash
    assert ck["blursim_version"] and ck["seed"] == 7 and ck["strategy"]["strategy"] == "cma_es"
    # the genomes are genome documents that `blursim run` accepts
    from blursim.cli.main import main
    from blursim.spec import load_genome

    g = load_genome(out / "best_genome.json")
    assert g.meta["generation"] == 5 and g.meta["kind"] == "best"
    net = tmp_path / "net.json"
    net.write_text(json.dumps(TINY_NETWORK))
    assert main(["run", str(net), "--genome", str(out / "best_genome.json"), "--task", "xor",
                 "--steps", "3", "--json"]) == 0


def test_no_files_without_an_output_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = meta_train(tiny_experiment(generations=1))
    assert r.out is None and os.listdir(tmp_path) == []
    assert r.best_genome is not None and r.mean_genome.k == 2


def test_same_seed_same_results_other_seed_different(tmp_path):
    a = meta_train(tiny_experiment(generations=3), out=tmp_path / "a")
    b = meta_train(tiny_experiment(generations=3), out=tmp_path / "b")
    c = meta_train(tiny_experiment(generations=3, seed=8))
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b")
    assert strip_time(a.records) != strip_time(c.records)
    assert b.records[1]["seeds"] != c.records[1]["seeds"]


@pytest.mark.parametrize("strategy", ["cma_es", "sep_cma_es", "openai_es"])
def test_stopped_and_resumed_run_equals_uninterrupted(tmp_path, strategy):
    exp = tiny_experiment(strategy={"name": strategy, "sigma0": 0.2, "popsize": 6})
    meta_train(exp, out=tmp_path / "full")
    meta_train(exp, out=tmp_path / "part", generations=2)
    assert len(read_log(tmp_path / "part" / "log.jsonl")) == 3
    meta_train(exp, out=tmp_path / "part", resume=True)
    assert files_of(tmp_path / "full") == files_of(tmp_path / "part")


class Crash(Exception):
    pass


class CrashAfter:
    """Observer that dies right after generation ``g`` was logged (before its checkpoint)."""

    def __init__(self, g):
        self.g = g

    def on_generation(self, trainer, gen):
        if gen.record["generation"] == self.g:
            raise Crash


def test_crash_between_log_and_checkpoint_resumes_identically(tmp_path, monkeypatch):
    exp = tiny_experiment()
    exp["execution"] = {"checkpoint_every": 2}
    meta_train(exp, out=tmp_path / "full")
    # a crash at generation 3: the log holds 4 records, the last checkpoint is generation 2
    import blursim.meta.observers as observers

    real_end = observers.RunDirectory.on_end
    monkeypatch.setattr(observers.RunDirectory, "on_end", lambda *a: None)  # as if killed
    with pytest.raises(Crash):
        meta_train(exp, out=tmp_path / "part", observers=[CrashAfter(3)])
    monkeypatch.setattr(observers.RunDirectory, "on_end", real_end)
    assert json.loads((tmp_path / "part" / "checkpoint.json").read_text())["generation"] == 2
    assert len(read_log(tmp_path / "part" / "log.jsonl")) == 4
    r = meta_train(exp, out=tmp_path / "part", resume=True)
    assert r.state.generation == 5
    assert files_of(tmp_path / "full") == files_of(tmp_path / "part")


def test_interrupted_run_checkpoints_its_last_generation(tmp_path):
    exp = tiny_experiment()
    with pytest.raises(Crash):
        meta_train(exp, out=tmp_path / "a", observers=[CrashAfter(2)])
    assert json.loads((tmp_path / "a" / "checkpoint.json").read_text())["generation"] == 2


def test_resume_refuses_a_directory_made_by_another_experiment(tmp_path):
    meta_train(tiny_experiment(generations=1), out=tmp_path / "a")
    other = tiny_experiment(generations=3)
    other["inner"]["steps"] = 4
    with pytest.raises(RunDirError, match=r"different experiment \(differs in: inner.steps\)"):
        meta_train(other, out=tmp_path / "a", resume=True)
    # execution-only and cosmetic changes are not differences: more generations, a budget
    same = tiny_experiment(generations=3, name="renamed", output="elsewhere")
    same["execution"] = {"memory_budget_mb": 1.0, "checkpoint_every": 3}
    assert meta_train(same, out=tmp_path / "a", resume=True).state.generation == 3
    with pytest.raises(RunDirError, match="already holds a meta-training run"):
        meta_train(tiny_experiment(), out=tmp_path / "a")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="holds no checkpoint.json"):
        meta_train(tiny_experiment(), out=tmp_path / "empty", resume=True)


def test_resume_refuses_a_changed_network_file(tmp_path):
    net = tmp_path / "net.json"
    net.write_text(json.dumps(TINY_NETWORK))
    exp = tiny_experiment(network=str(net), generations=1)
    meta_train(exp, out=tmp_path / "a")
    changed = copy.deepcopy(TINY_NETWORK)
    changed["populations"][1]["size"] = 7
    net.write_text(json.dumps(changed))
    with pytest.raises(RunDirError, match="differs in: network"):
        meta_train(exp, out=tmp_path / "a", resume=True)


def test_cross_entropy_fitness_is_minus_the_mean_cross_entropy():
    exp = tiny_experiment(fitness={"metric": "cross_entropy"}, generations=1)
    r = meta_train(exp)
    rec = r.records[1]
    assert rec["fitness"]["best"] < 0  # minus a cross-entropy
    assert rec["best"]["fitness"] == rec["fitness"]["best"]


def test_progress_bar_is_silent_when_quiet_or_not_a_tty(capsys):
    class Tty:
        def __init__(self):
            self.text = ""

        def isatty(self):
            return True

        def write(self, s):
            self.text += s

        def flush(self):
            pass

    tty = Tty()
    meta_train(tiny_experiment(generations=2), observers=[ProgressBar(2, stream=tty)])
    assert "2/2" in tty.text
    quiet = Tty()
    meta_train(tiny_experiment(generations=1), observers=[ProgressBar(1, quiet=True, stream=quiet)])
    assert quiet.text == ""
    meta_train(tiny_experiment(generations=1), observers=[ProgressBar(1)])  # pytest's stderr: no TTY
    assert capsys.readouterr().err == ""


def test_killed_process_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL a `blursim meta-train` process mid-run, resume it, compare bit for bit."""
    exp = tiny_experiment(generations=12)
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(exp))
    meta_train(exp, out=tmp_path / "full")
    out = tmp_path / "killed"
    killed, _ = kill_meta_train_at([path, "--out", out, "--quiet"], out, 3, timeout=60)
    if not killed:  # pragma: no cover - machine too fast to catch it mid-run
        pytest.skip("the run finished before it could be killed")
    done = json.loads((out / "checkpoint.json").read_text())["generation"]
    assert done < 12
    from blursim.cli.main import main

    assert main(["meta-train", str(path), "--resume", str(out), "--quiet"]) == 0
    assert files_of(tmp_path / "full") == files_of(out)
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]  # stale temp files cleared
    assert len(list(out.glob("checkpoint-g*.npz"))) == 1


@pytest.mark.slow
def test_toy_example_beats_its_random_start(tmp_path):
    """specs/experiments/toy.json (about a minute): the meta-trained genome beats the
    random genome it started from on the held-out validation tasks."""
    root = Path(__file__).resolve().parent.parent
    r = meta_train(root / "specs" / "experiments" / "toy.json", out=tmp_path / "toy")
    first, last = r.records[0], r.records[-1]
    assert first["best"] is None
    assert last["mean"]["validation_mean"] > first["mean"]["validation_mean"] + 0.15
    assert last["best"]["validation_mean"] > first["mean"]["validation_mean"] + 0.15
