#!/usr/bin/env python
"""Fig. 5 / Fig. 6 analogue (paper Sec. 4.2-4.3): a genome meta-trained on digits with a
curriculum over unrolls, against SGD / momentum / Adam swept over four orders of
magnitude of learning rate, to 100 training steps.

1. Meta-train ``specs/experiments/repro_digits_curriculum.json`` (64 -> 64 -> 10,
   general rules, random initial genome, CMA-ES, unroll 10 -> 50 by curriculum,
   fitness on the training split of the ten-class digits only).
2. Train from fresh synapses (``--replicas`` initialisations, batches of 32) the
   final CMA-ES mean genome on the held-out test split of ``digits`` and on the
   digit subsets ``digits_0_4`` / ``digits_5_9`` (unseen tasks, 5-output copies of
   the network), to ``--steps`` (100) steps.
3. ``blursim compare`` (:func:`compare`, through :func:`repro_common.compare_zoo`, float64):
   both genomes, and SGD, momentum (0.9) and Adam on (a) the standard MLP of the same size
   (``specs/repro_digits_mlp_64.json``: tanh, identity logits) and (b) the BLUR network itself
   (its state-0 activations: relu o tanh, tanh outputs), plus the zoo's ``backprop`` and
   ``feedback_alignment`` rules on the BLUR network (its rules replaced by the preset's), from
   the same batches and initial forward synapses (evaluation seeds 1000 and 1001, 4
   initialisations each). Each rate is chosen separately for each horizon (5, 10, 20, 30,
   50, 100 steps) on a *validation split* (20 % of the training split, the rest trains;
   ties by validation cross-entropy; a half-decade grid from 1e-4 extended at an edge), never
   on the test split, then trained on the whole training split and scored on the test split.
   Every rate tried is shown on the test split too (the sweep; it chooses nothing).

``--reuse docs/results/repro_digits_curriculum.json`` takes the genome of that earlier run
(``repro_digits_curriculum_genome.json`` beside it) and its meta-training record, and reruns
the comparison only.

    python tools/repro_digits_curriculum.py                   # 200 generations (about 5 min on 2 cores)
    python tools/repro_digits_curriculum.py --generations 400
    python tools/repro_digits_curriculum.py --reuse docs/results/repro_digits_curriculum.json   # comparison only
    python tools/repro_digits_curriculum.py --quick

Writes docs/figures/repro_digits_curriculum.png, the genome to
docs/results/repro_digits_curriculum_genome.json and the numbers to
docs/results/repro_digits_curriculum.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

import repro_common as rc

NAME = "repro_digits_curriculum"
EXPERIMENT = rc.SPECS / "experiments" / "repro_digits_curriculum.json"
TASKS = ["digits", "digits_0_4", "digits_5_9"]
OPTIMIZERS = ["sgd", "momentum", "adam"]
LRS = rc.HALF_DECADE
REPORT_STEPS = [5, 10, 20, 30, 50, 100]
#: where the test curves are scored (besides the horizons): every test evaluation costs as
#: much as several training steps, so not at every step
CURVE_STEPS = [0, 1, 2, 3, 4, 5, 7, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 100]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    p.add_argument("--generations", type=int, default=200, help="meta-training generations (default 200)")
    p.add_argument("--steps", type=int, default=100, help="training steps of the comparison (default 100)")
    p.add_argument("--replicas", type=int, default=8,
                   help="synapse initialisations (default 8: 2 evaluation seeds x 4)")
    p.add_argument("--reuse", metavar="JSON",
                   help="reuse the genome of an earlier run (e.g. docs/results/repro_digits_curriculum.json, its "
                        "genome beside it) instead of meta-training: reruns the comparison only")
    return p.parse_args(argv)


#: rules of the zoo compared on the BLUR network itself (its rules replaced by the preset's)
PRESETS = ("backprop", "feedback_alignment")


def reuse(path: str | Path) -> tuple[Any, dict, dict]:
    """The genome of an earlier run of this script (or of ``repro_curriculum_gradient.py``):
    ``(genome, results, header)`` from its results JSON and the ``<stem>_genome.json`` beside it,
    so the comparison reruns without meta-training. One line, naming the file, when either is
    missing or unreadable."""
    import json

    from blursim.errors import SpecError
    from blursim.spec import load_genome

    path = Path(path)
    gpath = path.with_name(path.stem + "_genome.json")
    try:
        doc = json.loads(path.read_text())
        results = doc["results"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SpecError(f"no earlier run to reuse ({type(e).__name__}: {e})", path=str(path),
                        hint="give the results JSON of an earlier run (its genome beside it as <stem>_genome.json), "
                             "or drop --reuse to meta-train") from None
    if not gpath.is_file():
        raise SpecError("the genome of the earlier run is missing", path=str(gpath),
                        hint="it is written beside the results JSON as <stem>_genome.json")
    header = {"file": str(path.resolve().relative_to(rc.ROOT)) if path.resolve().is_relative_to(rc.ROOT) else str(path),
              "genome": gpath.name, "command": doc.get("command"), "started": doc.get("started"),
              "commit": doc.get("machine", {}).get("commit"), "wall_seconds": doc.get("wall_seconds")}
    return load_genome(gpath), {**results, "scale": doc.get("scale", {}), "seeds": doc.get("seeds", {})}, header


def compare(genome, base_genome, args, lrs, tasks=TASKS) -> dict:
    """Step 2 and 3 of the module docstring for ``genome`` (and the ``base_genome`` it started
    from), through ``blursim compare`` (:func:`repro_common.compare_zoo`): per task of
    ``tasks``, both genomes and SGD / momentum / Adam on the standard MLP and on the BLUR network
    itself, plus the zoo's :data:`PRESETS` on the BLUR network, from the batches and initial
    forward synapses of evaluation seeds ``1000 + args.seed`` and the next (``args.replicas``
    initialisations in all); every rate chosen separately for each horizon (:data:`REPORT_STEPS`
    up to ``args.steps``) on a validation split carved from the training split. Every rate tried
    is also trained on the whole training split for the figure's sweep (``sweep=True``; it
    chooses nothing). Test curves at :data:`CURVE_STEPS`."""
    blur_spec = rc.load_spec(rc.SPECS / "repro_digits_blur_64.json")
    mlp_spec = rc.load_spec(rc.SPECS / "repro_digits_mlp_64.json")
    seed = 1000 + args.seed
    horizons = sorted({s for s in REPORT_STEPS if s <= args.steps} | {args.steps})
    zoo_tasks = {t: {"dataset": t} for t in tasks}
    curve_steps = sorted({s for s in CURVE_STEPS if s <= args.steps} | set(horizons))
    common = dict(optimizers=OPTIMIZERS, lrs=lrs, horizons=horizons, replicas=args.replicas, seed=seed,
                  curve_steps=curve_steps, sweep=True, quiet=args.quiet)
    genomes = {"mean": {"network": blur_spec, "genomes": [genome]},
               "initial": {"network": blur_spec, "genomes": [base_genome]}}
    same = rc.compare_zoo(genomes, zoo_tasks, baseline_network=blur_spec, presets=PRESETS, **common)
    mlp = rc.compare_zoo({}, zoo_tasks, baseline_network=mlp_spec, **common)
    per_task = {}
    for task in tasks:
        def blur(label):
            c = same[task]["methods"][label]["curves"][0]
            return {"mean": c["mean"][0], "std": c["sd_over_inits"][0], "diverged": int(c["diverged"][0]),
                    "per_seed": c["per_seed"][0]}

        per_task[task] = {
            "n_classes": same[task]["n_classes"], "n_fit": same[task]["n_fit"],
            "n_validation": same[task]["n_validation"], "n_test": same[task]["n_test"],
            "steps": curve_steps, "horizons": horizons,
            "blur_mean_genome": blur("mean"), "blur_initial_genome": blur("initial"),
            "baselines": {"standard_mlp": {o: baseline(o, b) for o, b in mlp[task]["baselines"].items()},
                          "same_network": {o: baseline(o, b) for o, b in same[task]["baselines"].items()}},
            "differences": {"standard_mlp": mlp_differences(same[task], mlp[task]),
                            "same_network": same[task]["differences"]["mean"]}}
    return per_task


def baseline(name: str, b: dict) -> dict:
    """One tuned optimizer or preset of :func:`repro_common.compare_zoo` in this script's JSON
    shape: the tuning (``lrs``, ``validation`` (L, H), ``selected`` per horizon, and
    ``selected_lr``/``validation_final_accuracy`` at the last horizon) and the test curves of
    every rate tried (``test_mean``/``test_std`` (L, E) over initialisations)."""
    c = b["curves"]
    val = np.asarray(b["validation"])
    hs = [int(h) for h in b["selected"]]
    return {"label": name, "kind": b["kind"],
            "lrs": b["lrs"], "validation": val, "validation_cross_entropy": b["validation_cross_entropy"],
            "validation_final_accuracy": val[:, -1], "selected": b["selected"],
            "selected_lr": b["selected"][str(max(hs))], "selection": rc.zoo_selection(),
            "grid_extended": b["extended"], "top_reached": b["top_reached"], "curve_lrs": c["lrs"],
            "test_mean": c["mean"], "test_std": c["sd_over_inits"], "diverged": c["diverged"],
            "spec_changes": b["spec_changes"]}


def mlp_differences(same: dict, mlp: dict) -> dict:
    """The genome minus each standard-MLP optimizer, per horizon: over evaluation seeds, paired
    (the genome's and the optimizer's runs share batches and initial synapses seed by seed)."""
    acc = np.asarray(same["methods"]["mean"]["test"])[0]  # (seeds, H)
    return {o: {str(h): {"over_inits": rc.t_interval(acc[:, j] - np.asarray(b["test"])[:, j])}
                for j, h in enumerate(mlp["horizons"])} for o, b in mlp["baselines"].items()}


def summarize(per_task: dict, lrs) -> tuple[dict, list[int], dict]:
    """Test accuracy at each horizon: BLUR against each optimizer (and preset) at the rate chosen
    for that horizon on the validation split (and, for reference, the test-split maximum of its
    sweep). Returns ``(summary, report_steps, chosen)``, ``chosen[task][row][step]`` the rate of
    each optimizer row."""
    summary, chosen_all = {}, {}
    rep = []
    for task, e in per_task.items():
        rep = e["horizons"]
        steps = e["steps"]
        row = {"blur": {s: float(e["blur_mean_genome"]["mean"][steps.index(s)]) for s in rep},
               "blur_initial": {s: float(e["blur_initial_genome"]["mean"][steps.index(s)]) for s in rep}}
        chosen = {}
        for net_name, tabs in e["baselines"].items():
            for opt, t in tabs.items():
                m = np.asarray(t["test_mean"])
                key = f"{opt} ({net_name})"
                row[key] = {s: float(m[t["curve_lrs"].index(t["selected"][str(s)]), steps.index(s)]) for s in rep}
                chosen[key] = {s: t["selected"][str(s)] for s in rep}
                # the best of the whole sweep at each step, for reference (this one is a test-split max)
                row[f"{opt} sweep max ({net_name})"] = {s: float(m[:, steps.index(s)].max()) for s in rep}
        summary[task] = row
        chosen_all[task] = chosen
    return summary, rep, chosen_all


def plot_comparison(per_task: dict, lrs, path, label: str = "BLUR meta-learned genome") -> Path:
    """Test curves per task: the whole sweep (thin), each optimizer at the rate chosen on the
    validation split for the last horizon (bold: standard MLP; dashed: the BLUR network; dash-dot:
    the zoo's rules on the BLUR network), BLUR's genome (black)."""
    tasks = list(per_task)
    plt = rc.pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4.4), sharey=True)
    colors = {"sgd": "tab:blue", "momentum": "tab:orange", "adam": "tab:green", "backprop": "tab:cyan",
              "feedback_alignment": "tab:olive"}
    for ax, task in zip(np.atleast_1d(axes), tasks):
        e = per_task[task]
        st = e["steps"]
        for opt in OPTIMIZERS:
            t = e["baselines"]["standard_mlp"][opt]
            m = np.asarray(t["test_mean"])
            for i in range(len(t["lrs"])):
                ax.plot(st, m[i], color=colors[opt], lw=0.5, alpha=0.35)
            i = t.get("curve_lrs", t["lrs"]).index(t["selected_lr"])
            ax.plot(st, m[i], color=colors[opt], lw=1.6, label=f"{t['label']} lr={t['selected_lr']:g} (MLP)")
            t2 = e["baselines"]["same_network"][opt]
            j = t2.get("curve_lrs", t2["lrs"]).index(t2["selected_lr"])
            ax.plot(st, np.asarray(t2["test_mean"])[j], color=colors[opt], lw=1.2, ls="--",
                    label=f"{t2['label']} lr={t2['selected_lr']:g} (BLUR net)")
        for name, t3 in e["baselines"]["same_network"].items():  # the zoo's rules on the BLUR network
            if name in OPTIMIZERS:
                continue
            k = t3["curve_lrs"].index(t3["selected_lr"])
            ax.plot(st, np.asarray(t3["test_mean"])[k], color=colors.get(name, "tab:gray"), lw=1.2, ls="-.",
                    label=f"{name} rule lr={t3['selected_lr']:g} (BLUR net)")
        m, s = np.asarray(e["blur_mean_genome"]["mean"]), np.asarray(e["blur_mean_genome"]["std"])
        ax.plot(st, m, color="k", lw=2.2, label=label)
        ax.fill_between(st, m - s, m + s, color="k", alpha=0.15)
        ax.plot(st, e["blur_initial_genome"]["mean"], color="gray", ls=":", label="BLUR initial random genome")
        ax.set(title=f"{task} (test split){'' if task == 'digits' else ' - unseen task'}", xlabel="training step",
               ylim=(0, 1))
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("test accuracy")
    np.atleast_1d(axes)[0].legend(fontsize=6.5, loc="lower right")
    first = next(iter(per_task.values()))["baselines"]["standard_mlp"]["sgd"]
    on = "validation split" if "selection" in first else "training split"
    fig.suptitle(f"thin lines: the whole learning-rate sweep (standard MLP); bold: lr selected on the {on} "
                 f"for the last step",
                 fontsize=9)
    return rc.save_figure(fig, path)


def main(argv=None) -> int:
    args = parse_args(argv)
    from blursim.meta import prepare_experiment

    timer = rc.Timer()
    reused = None
    if args.reuse:
        genome, earlier, reused = reuse(args.reuse)
        args.seed = int(earlier["seeds"].get("root", args.seed))  # its initial genome and evaluation seeds
        args.generations = earlier["scale"].get("generations", args.generations)
    over = dict(seed=args.seed, generations=args.generations, genome={"init": {"kind": "random", "seed": args.seed}},
                execution={"backend": args.backend, "dtype": "float32"})
    lrs = LRS
    if args.quick:
        args.generations, args.steps, args.replicas = 2, 6, 2
        over.update(generations=2, strategy={"popsize": 6})
        lrs = [1e-2, 1e-1]
    doc = rc.experiment_dict(EXPERIMENT, **over)
    per_gen = 0.0 if reused else rc.seconds_per_generation(doc, args.quick)
    sweep_runs = len(TASKS) * (2 * len(OPTIMIZERS) + len(PRESETS)) * (len(lrs) + 2) * 2
    rc.estimate(f"{0 if reused else args.generations} generations (population {doc['strategy']['popsize']}) + "
                f"about {sweep_runs} comparison runs",
                per_gen * rc.unroll_factor(doc, args.generations) * args.generations * 1.1
                + sweep_runs * 0.02 * args.steps * args.replicas / 8 + 20)

    genome_path = Path(args.out).with_name(Path(args.out).stem + "_genome.json")
    if reused:
        base_genome, c = prepare_experiment(doc).base_genome, earlier["curve"]
    else:
        res = rc.run_meta(doc, generations=args.generations, quiet=args.quiet)
        genome, base_genome, c = res.mean_genome, res.setup.base_genome, rc.curve(res.records)
    rc.write_text(genome_path, rc.genome_json(genome))

    per_task = compare(genome, base_genome, args, lrs)
    summary, rep, chosen = summarize(per_task, lrs)
    f1 = plot_comparison(per_task, lrs, Path(args.fig_dir) / f"{NAME}.png")
    seed = 1000 + args.seed

    scale = {"generations": args.generations, "popsize": doc["strategy"]["popsize"], "root_seed": args.seed,
             "network": "64 -> 64 -> 10 (specs/repro_digits_blur_64.json)", "inner": doc["inner"],
             "curriculum": doc["curriculum"], "comparison_steps": args.steps, "replicas": args.replicas,
             "evaluation_seeds": rc.ZOO_EVAL_SEEDS, "batch_size": 32, "learning_rates": lrs,
             "presets": list(PRESETS),
             "comparison": "blursim.compare through repro_common.compare_zoo, float64; " + rc.zoo_selection(),
             "meta_training": (f"reused from {reused['file']} (commit {reused['commit']}, started "
                               f"{reused['started']})") if reused else "this run",
             "paper": "MNIST 10x10 meta-training, 28x28 MNIST/EMNIST/Fashion evaluation, 8 synchronised runs x "
                      "10,000 steps per curriculum stage, unroll up to 50"}
    results = {"summary": summary, "report_steps": rep, "selected_lrs": chosen, "per_task": per_task, "curve": c,
               "genome": genome_path.name, "meta_training_reused": reused}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"root": args.seed,
                                                            "evaluation": rc.engine_seeds("zoo", seed),
                                                            "validation_split": seed},
                                        scale, results, [f1]))
    d = summary["digits"]
    print(f"digits test accuracy, BLUR genome: " + ", ".join(f"{s} steps {d['blur'][s]:.3f}" for s in rep)
          + f"; wrote {args.out} ({timer.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(rc.script_main(main))
