"""Gradient meta-training (strategy ``gradient``): the optimizer against a hand-written Adam,
synchronised runs, the NaN/Inf policy, checkpoints of the optimizer state and bit-identical
resume, the experiment document's fields.

Most tests drive the trainer with a stand-in meta-objective, a quadratic with a known minimum
(:class:`Quadratic`), so that every number is known by hand; the genomes are still measured
and validated by the real population evaluator on the tiny network of ``test_meta_train``.
The tests with the real JAX meta-objective are at the end.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import kill_meta_train_at
from test_meta_train import files_of, tiny_experiment

from blursim.cli.main import main
from blursim.errors import BlursimError, SpecError
from blursim.meta import load_experiment, meta_train, prepare_experiment
from blursim.meta import MetaGradientError
from blursim.meta.io import RunDirError, read_log
from blursim.meta.seeds import gradient_seeds


ROOT = Path(__file__).resolve().parent.parent
TOY = ROOT / "specs" / "experiments" / "toy_gradient.json"


def gradient_experiment(options=None, **changes):
    exp = tiny_experiment(**changes)
    exp["strategy"] = {"name": "gradient", "options": dict(options or {})}
    return exp


class Quadratic:
    """Stand-in meta-objective: ``0.5 * ||x - x_star||^2 + jitter(seeds)``, gradient ``x - x_star``.

    ``jitter`` (a known function of the task seeds) makes draws and runs distinguishable;
    ``nan(seeds, proto)`` says when to return a NaN loss and gradient. Every call is recorded.
    Accuracy per task ``exp(-loss)``, cross-entropy per task ``loss``.
    """

    def __init__(self, x_star, jitter=0.0, nan=None):
        self.x_star = np.asarray(x_star, dtype=np.float64)
        self.jitter = jitter
        self.nan = nan
        self.calls = []

    def loss(self, x, seeds):
        d = np.asarray(x) - self.x_star
        return 0.5 * float(d @ d) + self.jitter * (seeds[0] % 101) / 101

    def value_and_grad(self, x, seeds, proto):
        x = np.array(x, dtype=np.float64)
        loss, grad = self.loss(x, seeds), x - self.x_star
        if self.nan is not None and self.nan(seeds, proto):
            loss, grad = float("nan"), np.full_like(x, np.nan)
        self.calls.append({"x": x, "seeds": list(seeds), "steps": proto.steps, "loss": loss})
        n = len(seeds)
        metrics = {"accuracy": np.full(n, np.exp(-loss)), "cross_entropy": np.full(n, loss),
                   "finite": bool(np.isfinite(loss))}
        return loss, grad, metrics


def hand_adam(x, grads_of, steps, lr, clip, b1=0.9, b2=0.999, eps=1e-8):
    """Adam after global-norm clipping, written from Kingma & Ba (2015) Alg. 1 and App. C.1:
    the genomes before each step, their gradient norms, whether each was clipped."""
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    xs, norms, clipped = [], [], []
    for t in range(1, steps + 1):
        xs.append(x.copy())
        g = grads_of(x)
        norm = float(np.sqrt(np.sum(g * g)))
        norms.append(norm)
        clipped.append(norm > clip)
        if norm > clip:
            g = g * (clip / norm)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        x = x - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return xs, norms, clipped


def unbounded(exp):
    exp["genome"] = {"init": {"kind": "random", "seed": 0}}
    return exp


# ------------------------------------------------------------------ the optimizer
def test_steps_are_adam_after_global_norm_clipping():
    exp = unbounded(gradient_experiment({"learning_rate": 0.05, "clip_norm": 1.0}, generations=6,
                                        validation_tasks=[]))
    setup = prepare_experiment(exp)
    x0 = setup.x0
    offset = np.linspace(-1.0, 1.0, x0.size)
    x_star = x0 + 1.1 * offset / np.linalg.norm(offset)  # |g| = 1.1 at the start: clipped
    obj = Quadratic(x_star)
    r = meta_train(setup, objective=obj)
    xs, norms, clipped = hand_adam(x0.copy(), lambda x: x - x_star, 6, lr=0.05, clip=1.0)
    assert clipped[0] and not all(clipped)  # both branches of the clip are exercised
    assert len(obj.calls) == 6
    for t, call in enumerate(obj.calls):
        np.testing.assert_allclose(call["x"], xs[t], rtol=1e-12, atol=1e-14, err_msg=f"step {t}")
    recs = r.records
    assert [rec["generation"] for rec in recs] == list(range(7))
    for t in range(6):
        rec = recs[t + 1]
        d = xs[t] - x_star
        assert rec["meta_loss"]["runs"] == [pytest.approx(0.5 * d @ d, rel=1e-12)]
        assert rec["grad_norm"]["runs"] == [pytest.approx(norms[t], rel=1e-12)]
        assert rec["grad_norm"]["clipped"] == int(clipped[t])
        assert rec["fitness"]["best"] == pytest.approx(np.exp(-0.5 * d @ d), rel=1e-12)
        assert rec["best"]["index"] == 0 and rec["step_size"] == 0.05 and rec["evaluations"] == t + 1
    # the current genome after the last step is the next Adam iterate
    xs7, _, _ = hand_adam(x0.copy(), lambda x: x - x_star, 7, lr=0.05, clip=1.0)
    final = r.setup.layout.to_vector(r.mean_genome)
    np.testing.assert_allclose(final, xs7[6], rtol=1e-12, atol=1e-14)


def test_runs_converge_to_the_known_minimum_inside_the_bounds():
    exp = gradient_experiment({"learning_rate": 0.05}, generations=120, validation_tasks=[],
                              validation={"every": 1000})
    setup = prepare_experiment(exp)  # bounds: f_tilde in [0, 1.2]
    lab = setup.layout.labels()
    x_star = setup.x0 + np.linspace(-0.5, 0.5, setup.x0.size)
    ft = lab.index("default.f_tilde")
    x_star[ft] = 2.0  # outside its bounds: the projected iterate stops at 1.2
    r = meta_train(setup, objective=Quadratic(x_star))
    x = setup.layout.to_vector(r.mean_genome)
    assert x[ft] == 1.2
    rest = np.arange(x.size) != ft
    assert np.abs(x[rest] - x_star[rest]).max() < 0.01
    floor = 0.5 * (2.0 - 1.2) ** 2  # the loss at the constrained minimum
    losses = [rec["meta_loss"]["mean"] - floor for rec in r.records[1:]]
    assert 0 <= losses[-1] < 0.01 * losses[0]


# ------------------------------------------------------------------ synchronised runs
def test_runs_synchronise_to_the_leader_with_its_adam_state():
    n, every, draws = 3, 2, 2
    exp = unbounded(gradient_experiment(
        {"learning_rate": 0.05, "runs": n, "sync_every": every, "init_noise": 0.3, "meta_batch": draws},
        generations=4, validation_tasks=[]))
    setup = prepare_experiment(exp)
    x_star = setup.x0 + 0.4
    obj = Quadratic(x_star, jitter=0.05)
    r = meta_train(setup, objective=obj)
    calls = np.array(obj.calls, dtype=object).reshape(4, n, draws)  # step, run, draw

    # run 0 starts from the initial genome, the others perturbed; runs and draws have their own seeds
    assert np.array_equal(calls[0, 0, 0]["x"], setup.x0)
    assert all(np.abs(calls[0, i, 0]["x"] - setup.x0).max() > 0.05 for i in (1, 2))
    seeds = [tuple(c["seeds"]) for c in calls.ravel()]
    assert len(set(seeds)) == len(seeds)
    assert calls[1, 2, 1]["seeds"] == gradient_seeds(7, 2, 1, 1, 2)
    assert r.records[2]["seeds"]["gradient"][2][1] == gradient_seeds(7, 2, 1, 1, 2)

    # the meta-loss of a run is the mean over its draws; fitness is measured on the same forward pass
    for g in range(4):
        for i in range(n):
            assert r.records[g + 1]["meta_loss"]["runs"][i] == pytest.approx(
                np.mean([c["loss"] for c in calls[g, i]]), rel=1e-12)

    # the leader: best mean fitness over the stage's steps 0 and 1 (fitness = mean accuracy)
    fit = np.array([[np.mean([np.exp(-c["loss"]) for c in calls[g, i]]) for i in range(n)] for g in range(2)])
    leader = int(np.argmax(fit.mean(axis=0)))
    assert r.records[1]["lead"] == int(np.argmax(fit[0])) and not r.records[1]["synchronised"]
    assert r.records[2]["lead"] == leader and r.records[2]["synchronised"]
    # the leader's genome after step 1, by hand: its two Adam steps on the draw-averaged gradient
    xs, _, _ = hand_adam(calls[0, leader, 0]["x"].copy(), lambda x: x - x_star, 3, lr=0.05, clip=10.0)
    for i in range(n):
        np.testing.assert_allclose(calls[2, i, 0]["x"], xs[2], rtol=1e-12, atol=1e-14)
    # every run also took the leader's Adam state: same genome, same gradient -> same next genome
    for i in range(1, n):
        assert np.array_equal(calls[3, i, 0]["x"], calls[3, 0, 0]["x"])
    assert r.records[4]["synchronised"] and not r.records[3]["synchronised"]


def test_synchronisation_follows_the_curriculum_by_default():
    exp = gradient_experiment({"runs": 2})  # curriculum: +1 every 2 generations
    assert prepare_experiment(exp).strategy.config.sync_every == 2
    exp = gradient_experiment({"runs": 2, "sync_every": 0})
    assert prepare_experiment(exp).strategy.config.sync_every == 0
    exp = gradient_experiment({"runs": 2}, curriculum=None)
    exp.pop("curriculum")
    assert prepare_experiment(exp).strategy.config.sync_every == 0


# ------------------------------------------------------------------ NaN / Inf
def test_a_non_finite_gradient_skips_the_step_and_is_counted():
    exp = unbounded(gradient_experiment({"learning_rate": 0.05, "runs": 2, "sync_every": 0},
                                        generations=3, validation_tasks=[]))
    setup = prepare_experiment(exp)
    bad = gradient_seeds(7, 1, 1, 0, 2)  # run 1, step 1
    obj = Quadratic(setup.x0 + 0.4, nan=lambda seeds, proto: list(seeds) == bad)
    r = meta_train(setup, objective=obj)
    calls = np.array(obj.calls, dtype=object).reshape(3, 2)
    rec = r.records[2]
    assert rec["diverged"] == 1 and rec["skipped"] == 1 and r.records[3]["skipped"] == 1
    assert rec["meta_loss"]["runs"][1] is None and rec["meta_loss"]["runs"][0] is not None
    assert rec["grad_norm"]["runs"][1] is None and rec["best"]["index"] == 0
    assert rec["fitness"]["best"] == rec["fitness"]["worst"]  # one finite fitness
    assert np.array_equal(calls[2, 1]["x"], calls[1, 1]["x"])  # run 1 left where it was
    assert not np.array_equal(calls[2, 0]["x"], calls[1, 0]["x"])  # run 0 went on


def persistent_nan_experiment():
    # the unroll grows to 4 at step 2 (curriculum), and from then on every gradient is NaN
    return gradient_experiment({"learning_rate": 0.05, "max_skips": 2}, generations=6,
                               validation_tasks=[])


def test_a_persistently_non_finite_gradient_stops_the_run(tmp_path):
    setup = prepare_experiment(persistent_nan_experiment())
    obj = Quadratic(setup.x0, nan=lambda seeds, proto: proto.steps >= 4)
    out = tmp_path / "run"
    with pytest.raises(MetaGradientError, match=r"stopped after step 4: the meta-gradient of run 0 was "
                                                r"NaN or Inf in 2 consecutive steps"):
        meta_train(setup, out=out, objective=obj, plot=False)
    recs = read_log(out / "log.jsonl")
    assert [x["skipped"] for x in recs] == [0, 0, 0, 1, 2]  # both skipped steps are logged
    assert json.loads((out / "checkpoint.json").read_text())["generation"] == 4


def test_a_persistently_non_finite_gradient_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    import blursim.meta.gradient_step as gradient

    exp = persistent_nan_experiment()
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(exp))
    x0 = prepare_experiment(exp).x0
    monkeypatch.setattr(gradient, "default_objective",
                        lambda setup: Quadratic(x0, nan=lambda seeds, proto: proto.steps >= 4))
    rc = main(["meta-train", str(path), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("blursim: error: gradient meta-training "
                                                               "stopped after step 4"), err


# ------------------------------------------------------------------ checkpoints and resume
def resumable_experiment(generations=6, **changes):
    return gradient_experiment({"learning_rate": 0.05, "runs": 3, "sync_every": 3, "init_noise": 0.01},
                               generations=generations, **changes)


def resumable_objective(setup):
    # run 2 skips step 1 (the skip counters are state too); runs 0 and 1 compete for the lead,
    # their fitness dominated by seed-dependent jitter (so the stage's sums decide)
    bad = gradient_seeds(7, 2, 1, 0, 2)
    return Quadratic(setup.x0 + 0.3, jitter=1.0, nan=lambda seeds, proto: list(seeds) == bad)


def test_stopped_and_resumed_equals_uninterrupted_and_checkpoints_hold_adam_as_arrays(tmp_path):
    setup = prepare_experiment(resumable_experiment())
    meta_train(setup, out=tmp_path / "full", objective=resumable_objective(setup), plot=False)
    meta_train(setup, out=tmp_path / "part", generations=2, objective=resumable_objective(setup), plot=False)
    ck = json.loads((tmp_path / "part" / "checkpoint.json").read_text())
    raw = (tmp_path / "part" / ck["arrays"]["file"]).read_bytes()
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    # optax's chain(clip, adam) state: the step count and the two moments, stacked over the runs
    assert arrays["state.opt.0"].dtype == np.int32 and list(arrays["state.opt.0"]) == [2, 2, 1]
    dim = setup.layout.size
    assert arrays["state.opt.1"].shape == arrays["state.opt.2"].shape == (3, dim)
    assert arrays["state.opt.1"].dtype == np.float64 and np.all(arrays["state.opt.2"] > 0)
    assert ck["strategy"]["strategy"] == "gradient" and ck["strategy"]["state"]["skipped"] == 1
    meta_train(setup, out=tmp_path / "part", resume=True, objective=resumable_objective(setup), plot=False)
    assert files_of(tmp_path / "full") == files_of(tmp_path / "part")


def test_killed_at_every_file_write_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch):
    from test_run_dirs import Killed, killed_at

    import blursim.meta.plot as plot

    monkeypatch.setattr(plot, "plot_records", lambda records, **kw: b"\x89PNG stub")
    setup = prepare_experiment(resumable_experiment(generations=2, validation_tasks=[]))
    meta_train(setup, out=tmp_path / "full", objective=resumable_objective(setup))
    with killed_at(10**9) as count:
        meta_train(setup, out=tmp_path / "count", objective=resumable_objective(setup))
    for n in range(1, count["n"] + 1):
        out = tmp_path / f"killed-{n}"
        with killed_at(n), pytest.raises(Killed):
            meta_train(setup, out=out, objective=resumable_objective(setup))
        began = (out / "experiment.json").exists()
        meta_train(setup, out=out, resume=began, objective=resumable_objective(setup))
        assert files_of(tmp_path / "full") == files_of(out), f"killed at write {n}"


def _rewrite_npz(out, edit):
    ck = json.loads((out / "checkpoint.json").read_text())
    npz = out / ck["arrays"]["file"]
    with np.load(npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    edit(arrays, ck)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    npz.write_bytes(buf.getvalue())
    ck["arrays"]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    (out / "checkpoint.json").write_text(json.dumps(ck))


@pytest.fixture(scope="module")
def run2(tmp_path_factory):
    """A finished two-step run with two runs (its directory, to copy and tamper with)."""
    setup = prepare_experiment(resumable_experiment(generations=2, validation_tasks=[]))
    out = tmp_path_factory.mktemp("gradient") / "run"
    meta_train(setup, out=out, objective=resumable_objective(setup), plot=False)
    return setup, out


@pytest.mark.parametrize("edit, match", [
    (lambda a, ck: a.update({"state.opt.1": a["state.opt.1"][:, :-1]}), r"array 'opt.1' is float64\[3, \d+\]"),
    (lambda a, ck: a.update({"state.opt.0": a["state.opt.0"].astype(np.float64)}), "array 'opt.0' is float64"),
    (lambda a, ck: ck["strategy"]["state"].update(opt_leaves=2), "2 optimizer arrays"),
    (lambda a, ck: a.update({"state.x": np.full_like(a["state.x"], np.nan)}), "non-finite genome"),
    (lambda a, ck: ck["strategy"]["config"]["options"].update(learning_rate=0.1), "differs in: options"),
])
def test_a_checkpoint_with_a_wrong_optimizer_state_is_refused(tmp_path, run2, edit, match):
    import shutil

    setup, full = run2
    out = tmp_path / "run"
    shutil.copytree(full, out, ignore=shutil.ignore_patterns(".lock"))
    _rewrite_npz(out, edit)
    with pytest.raises(RunDirError, match="cannot resume: .*" + match):
        meta_train(setup, out=out, resume=True, generations=3, objective=resumable_objective(setup))


# ------------------------------------------------------------------ the document
def test_evolution_fields_are_refused_for_gradient_and_required_for_evolution(tmp_path):
    for strategy, path, fragment in [
        ({"name": "gradient", "sigma0": 0.2}, "$.strategy.sigma0", "its counterpart is options.learning_rate"),
        ({"name": "gradient", "popsize": 6}, "$.strategy.popsize", "its counterpart is options.runs"),
        ({"name": "openai_es", "sigma0": 0.2}, "$.strategy.popsize", "strategy 'openai_es' needs popsize"),
        ({"name": "gradient", "options": {"sigma_decay": 0.9}}, "$.strategy.options.sigma_decay",
         "unknown option 'sigma_decay'"),
        ({"name": "gradient", "options": {"runs": 0}}, "$.strategy.options.runs", "greater than or equal to 1"),
    ]:
        f = tmp_path / "exp.json"
        f.write_text(json.dumps(tiny_experiment(strategy=strategy), indent=2))
        with pytest.raises(SpecError) as e:
            load_experiment(f)
        assert e.value.path == path and fragment in str(e.value) and ", line " in e.value.source


def test_schema_alternative_of_gradient_has_no_evolution_fields():
    from blursim.spec import schema_json

    schema = schema_json("experiment")
    alts = schema["$defs"]["StrategySpec"]["oneOf"]
    resolve = lambda a: schema["$defs"][a["$ref"].split("/")[-1]] if "$ref" in a else a  # noqa: E731
    by_name = {resolve(a)["properties"]["name"]["const"]: resolve(a) for a in alts}
    assert not {"sigma0", "popsize"} & set(by_name["gradient"]["properties"])
    assert {"sigma0", "popsize"} <= set(by_name["cma_es"]["required"])


def test_validate_describes_a_gradient_experiment(capsys):
    assert main(["validate", str(TOY)]) == 0
    assert "gradient with 2 run(s), 300 steps; memory" in capsys.readouterr().out


@pytest.mark.parametrize("module", ["jax", "optax"])
def test_missing_jax_is_a_clear_error(monkeypatch, module):
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(BlursimError, match=rf"needs .*{module}.*install .*pip install -e \"\.\[jax\]\""):
        meta_train(gradient_experiment(generations=1))


# ------------------------------------------------------------------ the real meta-objective (JAX)


@pytest.fixture(scope="module")
def toy10(tmp_path_factory):
    """The shipped experiment's first 10 steps, from the command line (the unroll is compiled
    once in this process and reused by every later run of the experiment here)."""
    out = tmp_path_factory.mktemp("toy") / "run"
    assert main(["meta-train", str(TOY), "--generations", "10", "--out", str(out), "--quiet"]) == 0
    return out


def test_toy_gradient_improves_the_held_out_mean_from_the_command_line(toy10, tmp_path, capsys):
    """The shipped experiment, its first 10 steps from the command line (the full 300-step run
    is reported in docs/meta.md): the current genome beats its random start on the held-out
    tasks; stopped after 6 steps and resumed, the run equals the uninterrupted one bit for bit;
    `blursim evaluate` reproduces a held-out number of the log."""
    out, part = toy10, tmp_path / "part"
    recs = read_log(out / "log.jsonl")
    start, end = recs[0]["mean"], recs[10]["mean"]
    assert end["validation_mean"] > start["validation_mean"] + 0.05, (start, end)
    assert end["train_mean"] > start["train_mean"] + 0.05
    assert all(r["skipped"] == 0 and r["meta_loss"]["mean"] > 0 for r in recs[1:])

    assert main(["meta-train", str(TOY), "--generations", "6", "--out", str(part), "--quiet"]) == 0
    assert main(["meta-train", str(TOY), "--generations", "10", "--resume", str(part), "--quiet"]) == 0
    assert files_of(out) == files_of(part)

    # validation task 'cross' (index 3): its seed, the current T, 4 replicas, the whole test split
    from blursim.meta.seeds import validation_seeds

    capsys.readouterr()
    seed = validation_seeds(0, 5)[3]
    assert main(["evaluate", str(ROOT / "specs" / "toy_blur.json"), "--genome", str(out / "mean_genome.json"),
                 "--task", "cross", "--steps", "10", "--replicas", "4", "--batch", "32", "--seed", str(seed),
                 "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["final_accuracy_mean"] == pytest.approx(end["validation"]["cross"], abs=1e-12)


@pytest.mark.slow
def test_killed_process_resumes_to_the_uninterrupted_result(toy10, tmp_path):
    """SIGKILL a gradient `blursim meta-train` process mid-run, resume it in another process,
    compare bit for bit (the unroll compiled in two processes gives the same bits on CPU).

    Slow (a second process compiles the unroll again, 10-15 s on 2 cores): ``python -m pytest -m
    slow tests/test_gradient_training.py``; the default suite kills a run at every file write
    in process (above)."""
    import os

    out = tmp_path / "killed"
    killed, err = kill_meta_train_at([TOY, "--generations", "10", "--out", out, "--quiet"], out, 2, timeout=300)
    if not killed:  # pragma: no cover - machine too fast to catch it mid-run
        pytest.skip(f"the run finished before it could be killed ({err[-300:]!r})")
    done = json.loads((out / "checkpoint.json").read_text())["generation"]
    assert 2 <= done < 10
    assert main(["meta-train", str(TOY), "--generations", "10", "--resume", str(out), "--quiet"]) == 0
    assert files_of(toy10) == files_of(out)
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
