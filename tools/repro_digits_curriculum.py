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
3. The gradient baselines on the same batches and initial weights: SGD,
   momentum (0.9) and Adam at learning rates 1e-4 .. 1 on (a) the standard MLP
   of the same size (``specs/repro_digits_mlp_64.json``: tanh, identity logits)
   and (b) the BLUR network itself (its state-0 activations: relu o tanh, tanh
   outputs). The whole sweep is reported; the "selected" learning rate of each
   optimizer is chosen on a *validation split* (20 % of the training split, the rest
   trains; accuracy after the last step; the grid grows above the best rate), never on
   the test split. (Runs before this protocol chose on the training split.)

    python tools/repro_digits_curriculum.py                   # 200 generations (about 5 min on 2 cores)
    python tools/repro_digits_curriculum.py --generations 400
    python tools/repro_digits_curriculum.py --quick

Writes docs/figures/repro_digits_curriculum.png, the genome to
docs/results/repro_digits_curriculum_genome.json and the numbers to
docs/results/repro_digits_curriculum.json.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np

import repro_common as rc

NAME = "repro_digits_curriculum"
EXPERIMENT = rc.SPECS / "experiments" / "repro_digits_curriculum.json"
TASKS = ["digits", "digits_0_4", "digits_5_9"]
OPTIMIZERS = ["sgd", "momentum", "adam"]
LRS = rc.HALF_DECADE
REPORT_STEPS = [5, 10, 20, 30, 50, 100]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    p.add_argument("--generations", type=int, default=200, help="meta-training generations (default 200)")
    p.add_argument("--steps", type=int, default=100, help="training steps of the comparison (default 100)")
    p.add_argument("--replicas", type=int, default=8, help="synapse initialisations (default 8)")
    return p.parse_args(argv)


def with_outputs(spec, n: int):
    from blursim.spec import NetworkSpec

    d = copy.deepcopy(spec.model_dump(mode="json", by_alias=True))
    for p in d["populations"]:
        if p["role"] == "output":
            p["size"] = n
    return NetworkSpec.model_validate(d)


def compare(genome, base_genome, args, lrs, tasks=TASKS) -> dict:
    """Step 2 and 3 of the module docstring for ``genome`` (and the ``base_genome`` it started
    from): per task of ``tasks``, BLUR's test curves from fresh synapses and the whole
    SGD / momentum / Adam sweep over ``lrs`` on the standard MLP and on the BLUR network itself,
    on the batches and initial weights of seed ``1000 + args.seed``; each optimizer's
    ``selected_lr`` chosen on a validation split carved from the training split (accuracy after
    ``args.steps`` steps, :func:`repro_common.tune_on_validation`)."""
    from blursim.baselines import lr_sweep
    from blursim.data import load_dataset
    from blursim.graph import compile_network

    blur_spec = rc.load_spec(rc.SPECS / "repro_digits_blur_64.json")
    mlp_spec = rc.load_spec(rc.SPECS / "repro_digits_mlp_64.json")
    seed = 1000 + args.seed
    per_task = {}
    bar = rc.progress(len(tasks) * (1 + 2 * 2 * len(OPTIMIZERS)), "comparison", args.quiet, "run")
    for task in tasks:
        data = load_dataset(task, {})
        tune, _ = rc.validation_split(data, 0.2, seed)
        nc = data.n_classes
        bspec, mspec = with_outputs(blur_spec, nc), with_outputs(mlp_spec, nc)
        ev = rc.evaluate_genome(bspec, [genome, base_genome], task, steps=args.steps,
                                replicas=args.replicas, seed=seed, batch_size=32, backend=args.backend)
        bar.update(1)
        entry = {"n_classes": nc, "steps": ev["steps"],
                 "blur_mean_genome": {"mean": ev["mean"][0], "std": ev["std"][0], "diverged": int(ev["diverged"][0])},
                 "blur_initial_genome": {"mean": ev["mean"][1], "std": ev["std"][1]},
                 "baselines": {}}
        for net_name, spec in (("standard_mlp", mspec), ("same_network", bspec)):
            prog = compile_network(spec)
            tab_entry = {}
            for opt in OPTIMIZERS:
                # selection on a validation split carved from the training split (accuracy after
                # the last step; the grid grows above the best rate), then the test curves
                tv = rc.tune_on_validation(prog, tune, optimizer=opt, lrs=lrs, horizons=[args.steps],
                                           batch_size=32, replicas=args.replicas, seed=seed)
                bar.update(1)
                rates = tv["lrs"]
                tab = lr_sweep(prog, data, optimizers=[opt], lrs=rates, steps=args.steps, batch_size=32,
                               replicas=args.replicas, seed=seed, eval_steps="all", split="test")
                bar.update(1)
                acc = np.nan_to_num(tab.accuracy[0], nan=0.0)  # (L, R, E)
                tab_entry[opt] = {
                    "label": tab.optimizers[0],
                    "lrs": rates,
                    "validation_final_accuracy": tv["validation"][:, 0],
                    "selected_lr": tv["selected"][args.steps],
                    "selection": "validation split (20 % of the training split)",
                    "test_mean": acc.mean(axis=1),
                    "test_std": acc.std(axis=1),
                    "diverged": tab.diverged[0].sum(axis=1),
                }
            entry["baselines"][net_name] = tab_entry
        per_task[task] = entry
    bar.close()
    return per_task


def summarize(per_task: dict, lrs) -> tuple[dict, list[int]]:
    """Accuracy at the report steps: BLUR against each optimizer at its training-selected
    learning rate (and, for reference, the test-split maximum of its sweep). Returns
    ``(summary, report_steps)``."""
    tasks = list(per_task)
    # summary table: accuracy at a few steps, BLUR vs each optimizer at its train-selected lr
    steps = list(per_task[tasks[0]]["steps"])
    rep = [s for s in REPORT_STEPS if s in steps]
    summary = {}
    for task, e in per_task.items():
        row = {"blur": {s: float(e["blur_mean_genome"]["mean"][steps.index(s)]) for s in rep},
               "blur_initial": {s: float(e["blur_initial_genome"]["mean"][steps.index(s)]) for s in rep}}
        for net_name, tabs in e["baselines"].items():
            for opt, t in tabs.items():
                i = t["lrs"].index(t["selected_lr"])
                row[f"{opt}@{t['selected_lr']:g} ({net_name})"] = {
                    s: float(np.asarray(t["test_mean"])[i, steps.index(s)]) for s in rep}
                # the best of the whole sweep at each step, for reference (this one is a test-split max)
                row[f"{opt} sweep max ({net_name})"] = {
                    s: float(np.asarray(t["test_mean"])[:, steps.index(s)].max()) for s in rep}
        summary[task] = row
    return summary, rep


def plot_comparison(per_task: dict, lrs, path, label: str = "BLUR meta-learned genome") -> Path:
    """Test curves per task: the whole sweep (thin), each optimizer at its training-selected
    learning rate (bold: standard MLP; dashed: the BLUR network), BLUR's genome (black)."""
    tasks = list(per_task)
    plt = rc.pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4.4), sharey=True)
    colors = {"sgd": "tab:blue", "momentum": "tab:orange", "adam": "tab:green"}
    for ax, task in zip(np.atleast_1d(axes), tasks):
        e = per_task[task]
        st = e["steps"]
        for opt in OPTIMIZERS:
            t = e["baselines"]["standard_mlp"][opt]
            m = np.asarray(t["test_mean"])
            for i in range(len(t["lrs"])):
                ax.plot(st, m[i], color=colors[opt], lw=0.5, alpha=0.35)
            i = t["lrs"].index(t["selected_lr"])
            ax.plot(st, m[i], color=colors[opt], lw=1.6, label=f"{t['label']} lr={t['lrs'][i]:g} (MLP)")
            t2 = e["baselines"]["same_network"][opt]
            j = t2["lrs"].index(t2["selected_lr"])
            ax.plot(st, np.asarray(t2["test_mean"])[j], color=colors[opt], lw=1.2, ls="--",
                    label=f"{t2['label']} lr={t2['lrs'][j]:g} (BLUR net)")
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
    fig.suptitle(f"thin lines: the whole learning-rate sweep (standard MLP); bold: lr selected on the {on}",
                 fontsize=9)
    return rc.save_figure(fig, path)


def main(argv=None) -> int:
    args = parse_args(argv)
    timer = rc.Timer()
    over = dict(seed=args.seed, generations=args.generations, genome={"init": {"kind": "random", "seed": args.seed}},
                execution={"backend": args.backend, "dtype": "float32"})
    lrs = LRS
    if args.quick:
        args.generations, args.steps, args.replicas = 2, 6, 2
        over.update(generations=2, strategy={"popsize": 6})
        lrs = [1e-2, 1e-1]
    doc = rc.experiment_dict(EXPERIMENT, **over)
    per_gen = rc.seconds_per_generation(doc, args.quick)
    sweep_runs = len(TASKS) * 2 * len(OPTIMIZERS) * len(lrs)
    rc.estimate(f"{args.generations} generations (population {doc['strategy']['popsize']}) + "
                f"{2 * sweep_runs} baseline runs",
                per_gen * rc.unroll_factor(doc, args.generations) * args.generations * 1.1
                + 2 * sweep_runs * 0.02 * args.steps * args.replicas / 8 + 20)

    res = rc.run_meta(doc, generations=args.generations, quiet=args.quiet)
    genome_path = Path(args.out).with_name(Path(args.out).stem + "_genome.json")
    rc.write_text(genome_path, rc.genome_json(res.mean_genome))

    per_task = compare(res.mean_genome, res.setup.base_genome, args, lrs)
    summary, rep = summarize(per_task, lrs)
    f1 = plot_comparison(per_task, lrs, Path(args.fig_dir) / f"{NAME}.png")
    seed = 1000 + args.seed

    c = rc.curve(res.records)
    scale = {"generations": args.generations, "popsize": doc["strategy"]["popsize"],
             "network": "64 -> 64 -> 10 (specs/repro_digits_blur_64.json)", "inner": doc["inner"],
             "curriculum": doc["curriculum"], "comparison_steps": args.steps, "replicas": args.replicas,
             "batch_size": 32, "learning_rates": lrs,
             "paper": "MNIST 10x10 meta-training, 28x28 MNIST/EMNIST/Fashion evaluation, 8 synchronised runs x "
                      "10,000 steps per curriculum stage, unroll up to 50"}
    results = {"summary": summary, "report_steps": rep, "per_task": per_task, "curve": c,
               "genome": str(genome_path)}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"root": args.seed, "evaluation": seed},
                                        scale, results, [f1]))
    d = summary["digits"]
    print(f"digits test accuracy, BLUR genome: " + ", ".join(f"{s} steps {d['blur'][s]:.3f}" for s in rep)
          + f"; wrote {args.out} ({timer.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
