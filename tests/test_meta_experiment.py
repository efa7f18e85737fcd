"""The experiment document: validation before any compute, hashing, examples, command line."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from test_meta_train import TINY_NETWORK, tiny_experiment

from blursim.cli.main import main
from blursim.errors import SpecError
from blursim.meta import load_experiment, prepare_experiment
from blursim.spec import SCHEMAS, schema_json

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "specs" / "experiments").glob("*.json"))


def write(tmp_path, exp, name="exp.json"):
    p = tmp_path / name
    p.write_text(json.dumps(exp, indent=2))
    return p


def fails(tmp_path, exp, match, path=None):
    """prepare_experiment on a file raises a SpecError naming the file, line and JSON path."""
    p = write(tmp_path, exp)
    with pytest.raises(SpecError, match=match) as info:
        prepare_experiment(p)
    err = info.value
    assert err.source and err.source.startswith(str(p)) and ", line " in err.source, str(err)
    if path is not None:
        assert err.path == path, str(err)
    return err


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_experiments_are_valid(path):
    setup = prepare_experiment(path)
    assert setup.layout.size > 0 and setup.train_tasks and setup.val_tasks
    spec = setup.experiment.strategy
    # an evolution strategy's population, or the gradient strategy's runs
    assert setup.strategy.popsize == (spec.popsize if spec.popsize is not None else spec.options.runs)


def test_digits_example_is_the_sec_4_4_analogue():
    setup = prepare_experiment(ROOT / "specs" / "experiments" / "digits_es.json")
    exp = setup.experiment
    hidden = [p for p in setup.networks[0].populations if p.role == "hidden"]
    assert [p.size for p in hidden] == [512] and setup.programs[0].k == 2
    assert exp.strategy.name == "cma_es" and exp.strategy.popsize == 80
    assert (exp.inner.steps, exp.inner.batch_size, exp.inner.query_batches) == (15, 128, 20)
    assert exp.fitness.metric == "accuracy" and exp.curriculum is None


def test_schema_is_registered_and_printed(capsys):
    assert "experiment" in SCHEMAS
    sch = schema_json("experiment")
    assert "training_tasks" in sch["properties"] and "genome" in sch["properties"]
    assert main(["schema", "experiment"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "ExperimentSpec"


def test_unknown_task_is_reported_with_choices(tmp_path):
    exp = tiny_experiment()
    exp["training_tasks"][1] = {"name": "andd"}
    err = fails(tmp_path, exp, "unknown dataset 'andd'", "$.training_tasks[1].name")
    assert "two_moons" in err.choices


def test_unknown_task_option(tmp_path):
    exp = tiny_experiment()
    exp["validation_tasks"][0]["options"]["radiuss"] = 1
    fails(tmp_path, exp, "unknown option 'radiuss'", "$.validation_tasks[0].options.radiuss")


def test_unknown_genome_field(tmp_path):
    exp = tiny_experiment()
    exp["genome"]["fields"] = ["f", "etta"]
    err = fails(tmp_path, exp, "unknown genome field 'etta'", "$.genome.fields[1]")
    assert "eta_tilde" in err.choices


def test_bounds_that_exclude_the_initial_value(tmp_path):
    exp = tiny_experiment()
    exp["genome"]["bounds"] = {"eta": [0.0, 0.1]}
    fails(tmp_path, exp, r"initial value of default.eta \(.*\) lies outside its bounds \[0, 0.1\]",
          "$.genome.bounds.eta")
    exp["genome"]["bounds"] = {"oja_alpha": [0.0, 1.0]}
    fails(tmp_path, exp, "not an evolved field", "$.genome.bounds.oja_alpha")
    exp["genome"]["bounds"] = {"eta": [1.0, -1.0]}
    fails(tmp_path, exp, "low < high", "$.genome.bounds.eta")
    exp["genome"]["bounds"] = {"eta": [None, 2.0]}  # an open end is fine
    prepare_experiment(write(tmp_path, exp))


def test_network_that_does_not_fit_a_task(tmp_path):
    exp = tiny_experiment()
    exp["validation_tasks"].append({"name": "blobs5"})
    err = fails(tmp_path, exp, "task 'blobs5' does not fit the network: output population 'out' has 2 "
                "neurons but task 'blobs5' has 5 classes", "$.validation_tasks[1].name")
    assert "Use 5 output neurons" in str(err)
    # ... unless that task brings its own network (same k and genome groups)
    five = copy.deepcopy(TINY_NETWORK)
    five["populations"][2]["size"] = 5
    exp["validation_tasks"][1]["network"] = five
    setup = prepare_experiment(write(tmp_path, exp))
    assert len(setup.programs) == 2 and setup.val_tasks[1].network == 1
    exp["validation_tasks"][1]["network"]["k"] = 3
    exp["validation_tasks"][1]["network"]["rules"]["feedback"] = "target"
    fails(tmp_path, exp, "k=3 states", "$.validation_tasks[1].network")


def test_bad_inline_network_points_into_the_experiment(tmp_path):
    exp = tiny_experiment()
    exp["network"]["projections"][0]["to"] = "hiden"
    err = fails(tmp_path, exp, "unknown population 'hiden'", "$.network.projections[0].to")
    assert "hidden" in err.choices


def test_network_path_is_relative_to_the_experiment(tmp_path):
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "tiny.json").write_text(json.dumps(TINY_NETWORK))
    (tmp_path / "exps").mkdir()
    exp = tiny_experiment(network="../nets/tiny.json")
    setup = prepare_experiment(write(tmp_path / "exps", exp))
    assert setup.networks[0].populations[1].size == 6
    exp["network"] = "../nets/missing.json"
    p = write(tmp_path / "exps", exp)
    with pytest.raises(SpecError, match="network spec file not found"):
        prepare_experiment(p)


def test_strategy_errors(tmp_path):
    exp = tiny_experiment()
    exp["strategy"]["name"] = "cmaes"
    err = fails(tmp_path, exp, "unknown strategy 'cmaes'", "$.strategy.name")
    assert "sep_cma_es" in err.choices
    exp["strategy"] = {"name": "cma_es", "sigma0": 0.2, "popsize": 6, "options": {"CMA_foo": 1}}
    fails(tmp_path, exp, "unknown option 'CMA_foo'", "$.strategy.options.CMA_foo")
    exp["strategy"]["options"] = {"CMA_cmean": -1.0}
    fails(tmp_path, exp, "CMA_cmean", "$.strategy.options.CMA_cmean")


def test_type_errors_and_unknown_keys_are_located(tmp_path):
    exp = tiny_experiment()
    exp["inner"]["stepz"] = 3
    err = fails(tmp_path, exp, "unknown field 'stepz'", "$.inner.stepz")
    assert "steps" in err.choices
    exp = tiny_experiment()
    exp["inner"]["steps"] = 0
    fails(tmp_path, exp, "greater than or equal to 1", "$.inner.steps")
    exp = tiny_experiment()
    exp["training_tasks"] = []
    fails(tmp_path, exp, "at least 1", "$.training_tasks")


def test_duplicate_task_labels(tmp_path):
    exp = tiny_experiment()
    exp["training_tasks"].append({"name": "xor", "options": {"seed": 3}})
    fails(tmp_path, exp, "both labelled 'xor'", "$.training_tasks[2].name")
    exp["training_tasks"][2]["label"] = "xor_seed3"
    setup = prepare_experiment(write(tmp_path, exp))
    assert [t.label for t in setup.train_tasks] == ["xor", "and", "xor_seed3"]


def test_genome_init_kinds_and_overrides(tmp_path):
    exp = tiny_experiment()
    exp["genome"] = {"init": {"kind": "preset", "name": "backprop", "options": {"lr": 0.3}},
                     "set": {"oja_alpha": 0.05, "nu": [[1, 0], [0, 1]]},
                     "fields": ["eta_tilde", "oja_alpha", "nu"]}
    setup = prepare_experiment(write(tmp_path, exp))
    assert setup.layout.labels()[:2] == ["default.eta_tilde", "default.oja_alpha"]
    assert np.array_equal(setup.x0, [0.3, 0.05, 1, 0, 0, 1])
    (tmp_path / "g.json").write_text(setup.base_genome.model_dump_json())
    exp["genome"] = {"init": {"kind": "file", "path": "g.json"}, "fields": ["eta_tilde"]}
    assert prepare_experiment(write(tmp_path, exp)).x0.tolist() == [0.3]
    exp["genome"]["init"]["path"] = "nope.json"
    fails(tmp_path, exp, "genome file not found", "$.genome.init.path")
    exp["genome"] = {"init": {"kind": "preset", "name": "backprp"}}
    fails(tmp_path, exp, "unknown genome preset 'backprp'", "$.genome.init.name")
    exp["genome"] = {"init": {"kind": "random"}, "set": {"oja_alpha": [1, 2]}}
    fails(tmp_path, exp, "has shape", "$.genome.set.oja_alpha")
    exp["genome"] = {"init": {"kind": "random"}, "groups": ["defualt"]}
    fails(tmp_path, exp, "genome group 'defualt' is not used", "$.genome.groups[0]")


def test_curriculum_schedule():
    exp = tiny_experiment(curriculum={"increment": 5, "every": 10, "max_steps": 20})
    exp["inner"]["steps"] = 10
    setup = prepare_experiment(exp)
    assert [setup.unroll(g) for g in (0, 9, 10, 19, 20, 30, 1000)] == [10, 10, 15, 15, 20, 20, 20]
    exp.pop("curriculum")
    assert prepare_experiment(exp).unroll(1000) == 10


def test_hash_covers_results_not_execution():
    h = prepare_experiment(tiny_experiment()).spec_hash
    same = tiny_experiment(generations=99, name="x", description="y", output="z")
    same["execution"] = {"memory_budget_mb": 1, "checkpoint_every": 5, "dask": {"local_workers": 2}}
    same["training_tasks"][0]["options"]["seed"] = 0  # the default, spelt out
    assert prepare_experiment(same).spec_hash == h
    for change in (lambda e: e.update(seed=8), lambda e: e["inner"].update(replicas=3),
                   lambda e: e.update(execution={"dtype": "float64"}),
                   lambda e: e["validation"].update(every=3)):
        other = tiny_experiment()
        change(other)
        assert prepare_experiment(other).spec_hash != h


# ---------------------------------------------------------------- command line
def test_cli_bad_experiment_fails_before_any_output(tmp_path, capsys):
    exp = tiny_experiment()
    exp["genome"]["fields"] = ["f", "etta"]
    p = write(tmp_path, exp)
    out = tmp_path / "out"
    assert main(["meta-train", str(p), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown genome field 'etta'" in err and "line" in err and "Traceback" not in err
    assert not out.exists()


def test_cli_meta_train_resume_and_evaluate(tmp_path, capsys):
    p = write(tmp_path, tiny_experiment(generations=3))
    out = tmp_path / "run"
    assert main(["meta-train", str(p), "--out", str(out), "--generations", "2"]) == 0
    text = capsys.readouterr().out
    assert "2 generations" in text and "generation 0 (initial genome)" in text
    assert main(["meta-train", str(p), "--out", str(out), "--quiet"]) == 2  # not over a run
    assert "already holds" in capsys.readouterr().err
    assert main(["meta-train", str(p), "--resume", str(out), "--quiet"]) == 0
    assert len((out / "log.jsonl").read_text().splitlines()) == 4
    other = tiny_experiment(generations=3, seed=1)
    q = write(tmp_path, other, "other.json")
    assert main(["meta-train", str(q), "--resume", str(out), "--quiet"]) == 2
    assert "different experiment (differs in: seed)" in capsys.readouterr().err

    net = write(tmp_path, TINY_NETWORK, "net.json")
    assert main(["evaluate", str(net), "--genome", str(out / "best_genome.json"), "--task", "xor",
                 "--steps", "4", "--replicas", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["steps"] == [0, 1, 2, 3, 4] and len(res["accuracy"]) == 3
    assert len(res["accuracy_mean"]) == len(res["accuracy_std"]) == len(res["accuracy_min"]) == 5
    assert main(["evaluate", str(net), "--genome", str(out / "mean_genome.json"), "--task", "xor",
                 "--steps", "2", "--replicas", "2"]) == 0
    table = capsys.readouterr().out
    assert "± std" in table and "final accuracy" in table


def test_cli_evaluate_rejects_a_task_that_does_not_fit(tmp_path, capsys):
    net = write(tmp_path, TINY_NETWORK, "net.json")
    assert main(["meta-train", str(write(tmp_path, tiny_experiment(generations=1))), "--out",
                 str(tmp_path / "r"), "--quiet"]) == 0
    g = tmp_path / "r" / "mean_genome.json"
    assert main(["evaluate", str(net), "--genome", str(g), "--task", "blobs5"]) == 2
    assert "5 classes" in capsys.readouterr().err


def test_load_experiment_accepts_dicts_and_models():
    exp = load_experiment(tiny_experiment())
    assert load_experiment(exp) is exp and exp.format == "blursim.experiment/1"


def test_searching_one_of_two_genome_groups_keeps_the_other():
    """``genome.groups`` naming a subset: populations are evaluated with every group (the others
    from the initial genome), and a genome vector becomes a genome of every group."""
    from blursim.meta.evaluate import evaluate_chunk, make_job

    net = {"k": 2, "populations": [{"name": "in", "size": 2, "role": "input"},
                                   {"name": "h", "size": 3, "role": "hidden"},
                                   {"name": "out", "size": 2, "role": "output", "genome": "g1"}],
           "projections": [{"from": "in", "to": "h"}, {"from": "h", "to": "out", "genome": "g1"}]}
    exp = {"network": net, "training_tasks": [{"name": "xor", "options": {"n_train": 32, "n_test": 32}}],
           "inner": {"steps": 2, "batch_size": 4, "query_batches": 1}, "genome": {
               "init": {"kind": "random", "seed": 1}, "groups": ["g1"], "fields": ["eta_tilde"]},
           "strategy": {"name": "cma_es", "sigma0": 0.1, "popsize": 2}, "generations": 1}
    setup = prepare_experiment(exp)
    assert setup.layout.labels() == ["g1.eta_tilde"]
    x = setup.x0 + 0.25
    genome = setup.layout.from_vector(x, setup.base_genome)
    assert set(genome.groups) == {"default", "g1"}
    assert genome.groups["g1"].eta_tilde == pytest.approx(x[0])
    for f in ("eta_tilde", "f_tilde", "nu", "mu_tilde"):
        assert getattr(genome.groups["default"], f) == getattr(setup.base_genome.groups["default"], f)
    res = evaluate_chunk(make_job(setup), x[None], "train", [5], setup.train_protocol(0))
    assert res["finite"].all() and np.isfinite(res["cross_entropy"]).all()
