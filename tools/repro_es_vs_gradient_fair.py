#!/usr/bin/env python
"""Fig. 7 at a fair scale (paper Sec. 4.4, issue 23 item 3): CMA-ES against gradient
meta-training, 8 runs per arm, equal wall clock per run, the gradient arm's Adam learning rate
tuned first on training fitness, every run shown.

The arms are those of ``tools/repro_es_vs_gradient.py`` (its :func:`compare_arms`: the
protocol of ``specs/experiments/repro_digits_es.json``, two states, general rules, a random
initial genome per run, 15 training batches of 128 per evaluation, fitness on 20 query batches
of 128 of the *training split*; hidden layer ``--hidden``), preceded by a tuning stage:

1. **tuning** (gradient arm only): one run per rate of ``--lr-grid`` from the random genome of
   seed ``seed + 100`` (none of the compared runs' seeds), ``--tune-budget`` seconds each; each
   final genome trains fresh synapses for the unroll on the *training split* (``--replicas``
   initialisations, seed ``3000 + seed``) and the rate with the highest training accuracy is
   used. No test data is looked at.
2. **comparison**: ``--runs`` runs per arm (seeds ``seed .. seed + runs - 1``; run ``i`` of both
   arms starts from the same genome), alternating on the same pinned core, ``--budget`` seconds
   of wall clock each (set-up and JAX compilation included). The JSON records every run's
   steps and genome evaluations (CMA-ES: generations x popsize accuracy evaluations; gradient:
   one forward + backward pass through the unroll per step). Selection ("best of N") is on the
   training split; the test split is only reported.

    python tools/repro_es_vs_gradient_fair.py                       # 8 runs per arm x 60 s, hidden 128 (about 20 min on one core)
    python tools/repro_es_vs_gradient_fair.py --hidden 512 --budget 600   # the paper's width (3 h)
    python tools/repro_es_vs_gradient_fair.py --quick               # smoke run

Writes docs/figures/repro_es_vs_gradient_fair.png, docs/figures/repro_es_vs_gradient_fair_tuning.png
and docs/results/repro_es_vs_gradient_fair.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import repro_common as rc
import repro_es_vs_gradient as esg

NAME = "repro_es_vs_gradient_fair"
LR_GRID = [0.003, 0.01, 0.03, 0.1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    p.add_argument("--runs", type=int, default=8, help="runs per arm (default 8, the paper's)")
    p.add_argument("--budget", type=float, default=60.0, help="wall-clock seconds per run (default 60)")
    p.add_argument("--hidden", type=int, default=128, help="hidden neurons (default 128; the paper's 512)")
    p.add_argument("--popsize", type=int, default=80, help="CMA-ES population (default 80, the paper's)")
    p.add_argument("--lr-grid", type=float, nargs="+", default=LR_GRID,
                   help=f"Adam learning rates tried (default {' '.join(map(str, LR_GRID))})")
    p.add_argument("--tune-budget", type=float, default=30.0, help="seconds per tuning run (default 30)")
    p.add_argument("--unrolls", type=int, default=45, help="test accuracy up to this many steps (default 45)")
    p.add_argument("--replicas", type=int, default=4, help="synapse initialisations of the evaluations (default 4)")
    args = p.parse_args(argv)
    args.learning_rate = None  # chosen by tune()
    return args


def tune(args) -> dict:
    """Stage 1: one ``--tune-budget`` run per rate from seed ``seed + 100``; each final genome's
    training-split accuracy after the unroll; the best rate."""
    seed = args.seed + 100
    runs = []
    for lr in args.lr_grid:
        args.learning_rate = lr
        runs.append(esg.budget_run(esg.doc_for(args, "gradient", seed), args.tune_budget))
    net, T = runs[0]["setup"].networks[0], runs[0]["unroll"]
    batch = esg.doc_for(args, "gradient", seed)["inner"]["batch_size"]
    sel = rc.evaluate_genome(net, [r["genome"] for r in runs], "digits", steps=T, replicas=args.replicas,
                             seed=3000 + args.seed, batch_size=batch, backend=args.backend, eval_steps="end",
                             split="train")
    acc = [float(a) for a in np.asarray(sel["mean"])[:, -1]]
    best = int(np.argmax(acc))
    return {"seed": seed, "budget_seconds": args.tune_budget, "lrs": list(args.lr_grid),
            "train_accuracy_at_T": acc, "steps": [r["steps"] for r in runs], "selected_lr": args.lr_grid[best],
            "trajectories": [r["trajectory"] for r in runs]}


def main(argv=None) -> int:
    args = parse_args(argv)
    timer = rc.Timer()
    if args.quick:
        esg.quick(args, argv)
        args.lr_grid, args.tune_budget = args.lr_grid[1:3], 0.2
    seeds = [args.seed + i for i in range(args.runs)]
    rc.estimate(f"{len(args.lr_grid)} tuning runs x {args.tune_budget:g} s, {args.runs} run(s) per arm x "
                f"{args.budget:g} s, then the evaluations",
                len(args.lr_grid) * (args.tune_budget + 3) + 2 * args.runs * (args.budget + 3) + 40)

    tuning = tune(args)
    args.learning_rate = tuning["selected_lr"]
    results = esg.compare_arms(args, seeds)
    results["tuning"] = tuning
    out, T = results["arms"], results["unroll"]
    for arm in esg.ARMS:
        out[arm]["genome_evaluations_per_run"] = rc.spread([x["genome_evaluations"] for x in out[arm]["runs"]])

    f1 = esg.plot(results, args.budget, args.replicas, Path(args.fig_dir) / f"{NAME}.png")
    f2 = plot_tuning(tuning, Path(args.fig_dir) / f"{NAME}_tuning.png")
    inner = esg.doc_for(args, "gradient", seeds[0])["inner"]
    scale = {"runs_per_arm": args.runs, "budget_seconds_per_run": args.budget,
             "network": f"64 -> {args.hidden} -> 10 (specs/digits_es_512.json with {args.hidden} hidden)",
             "hidden": args.hidden, "cma_es_popsize": args.popsize, "gradient_learning_rate": args.learning_rate,
             "lr_grid": list(args.lr_grid), "tune_budget_seconds": args.tune_budget, "inner": inner,
             "eval_replicas": args.replicas, "unrolls": args.unrolls,
             "paper": "MNIST 14x14, hidden 512, CMA-ES pop. 80 for 400 steps against gradient meta-training, "
                      "best of 8 runs each"}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"runs": seeds, "tuning": tuning["seed"],
                                                            "tuning_selection": 3000 + args.seed,
                                                            "selection": 2000 + args.seed,
                                                            "evaluation": 1000 + args.seed},
                                        scale, results, [f1, f2]))
    print(f"Adam rate {args.learning_rate:g} (of {args.lr_grid}); test accuracy after {T} steps, mean over "
          f"{args.runs} run(s): CMA-ES {out['cma_es']['test_at_T']['mean']:.3f} "
          f"({out['cma_es']['steps_per_run']['mean']:.0f} generations), gradient "
          f"{out['gradient']['test_at_T']['mean']:.3f} ({out['gradient']['steps_per_run']['mean']:.0f} steps); "
          f"wrote {args.out} ({timer.seconds:.0f} s)")
    return 0


def plot_tuning(tuning: dict, path: Path) -> Path:
    """The tuning stage: training-split accuracy against wall clock of each rate's run, and the
    selection numbers (training split after the unroll)."""
    plt = rc.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, (lr, tr) in enumerate(zip(tuning["lrs"], tuning["trajectories"])):
        axes[0].plot(tr["seconds"], tr["training_fitness"], color=f"C{i}", lw=1, label=f"Adam rate {lr:g}")
    axes[0].set(xlabel="wall-clock seconds", ylabel="training-split accuracy (step's forward pass)", ylim=(0, 1),
                title=f"tuning runs (seed {tuning['seed']}, {tuning['budget_seconds']:g} s each)")
    axes[0].legend(fontsize=9)
    xs = np.arange(len(tuning["lrs"]))
    axes[1].bar(xs, tuning["train_accuracy_at_T"], color=["tab:green" if lr == tuning["selected_lr"] else "gray"
                                                          for lr in tuning["lrs"]])
    axes[1].set_xticks(xs, [f"{lr:g}" for lr in tuning["lrs"]])
    axes[1].set(xlabel="Adam learning rate", ylabel="training-split accuracy of the final genome", ylim=(0, 1),
                title="selection (green: chosen)")
    for a in axes:
        a.grid(alpha=0.3)
        a.title.set_fontsize(11)
    fig.tight_layout()
    return rc.save_figure(fig, path)


def replot(doc: dict, fig_dir: Path) -> list[Path]:
    """The figures again from the JSON, for ``make_results.py --figures``."""
    r = doc["results"]
    return [esg.plot(r, doc["scale"]["budget_seconds_per_run"], doc["scale"]["eval_replicas"],
                     Path(fig_dir) / f"{NAME}.png"),
            plot_tuning(r["tuning"], Path(fig_dir) / f"{NAME}_tuning.png")]


if __name__ == "__main__":
    raise SystemExit(main())
