#!/usr/bin/env python
"""Fig. 4's toy protocol (paper Sec. 4.1) meta-trained by gradient descent through the unroll
(Sec. 3.3), beside the CMA-ES result of ``tools/repro_toy.py``.

``--runs`` independent meta-training runs (seeds ``seed .. seed+runs-1``; each run's root seed
and random initial genome come from its seed, as in repro_toy.py) of
``specs/experiments/toy_gradient.json``: the same network (2 -> 20 -> 2, the paper's general
rule family), tasks, genome fields and bounds as the CMA-ES protocol, meta-trained by Adam on
the exact meta-gradient (softmax cross-entropy of the query batches after the unroll) with
global-norm clipping 10, ``--sync-runs`` synchronised runs per meta-training run (Sec. 4.2;
docs/meta.md), unroll 10 -> 15 by curriculum. Each run's current genome is then evaluated
exactly as repro_toy.py evaluates its CMA-ES mean genomes (``repro_toy.evaluate_run``:
trained from fresh synapses for ``--eval-steps`` (10, Fig. 4) steps on every training and
held-out task, scored on the test split, ``--replicas`` initialisations, evaluation seed
``1000 + seed``). The CMA-ES side is read from ``--cmaes`` (docs/results/repro_toy.json,
written by ``python tools/repro_toy.py``), not rerun.

    python tools/repro_toy_gradient.py                 # 5 runs x 300 steps (about 7 min on one core)
    python tools/repro_toy_gradient.py --runs 10       # docs/results.md (about 4 min)
    python tools/repro_toy_gradient.py --quick         # smoke run

Writes docs/figures/repro_toy_gradient.png and docs/results/repro_toy_gradient.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import repro_common as rc
import repro_toy

NAME = "repro_toy_gradient"
EXPERIMENT = rc.SPECS / "experiments" / "toy_gradient.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    p.add_argument("--runs", type=int, default=5, help="independent meta-training runs (default 5)")
    p.add_argument("--sync-runs", type=int, default=2,
                   help="synchronised runs inside each meta-training run (strategy.options.runs; default 2)")
    p.add_argument("--generations", type=int, default=300, help="gradient steps per run (default 300)")
    p.add_argument("--learning-rate", type=float, default=0.01, help="Adam's learning rate (default 0.01)")
    p.add_argument("--eval-steps", type=int, default=10, help="training steps of the evaluation (default 10, Fig. 4)")
    p.add_argument("--replicas", type=int, default=8, help="synapse initialisations per evaluation (default 8)")
    p.add_argument("--cmaes", default=str(rc.RESULTS / "repro_toy.json"),
                   help="the CMA-ES result to compare with (default docs/results/repro_toy.json)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from blursim.spec import load_network

    timer = rc.Timer()
    every = 50
    over: dict = {}
    if args.quick:
        args.runs, args.generations, args.replicas, args.eval_steps = 2, 4, 2, 3
        args.runs = rc.explicit(argv, "--runs", args.runs)  # a one-run smoke test stays one run
        every = 2
        over = {"inner": {"steps": 2, "batch_size": 8, "query_batches": 1, "replicas": 1},
                "curriculum": {"increment": 1, "every": 2, "max_steps": 2}}  # one unroll: one compilation per run
    seeds = [args.seed + i for i in range(args.runs)]

    def doc_for(s):
        return rc.experiment_dict(
            EXPERIMENT, seed=s, generations=args.generations,
            genome={"init": {"kind": "random", "seed": s}},
            strategy={"name": "gradient", "options": {"learning_rate": args.learning_rate, "runs": args.sync_runs}},
            validation={"every": every, "replicas": 4},
            execution={"backend": args.backend, "dtype": "float32"}, **over)

    first, per_step = rc.gradient_step_seconds(doc_for(seeds[0]), args.quick)
    rc.estimate(f"{args.runs} run(s) x {args.generations} gradient steps, {args.sync_runs} synchronised",
                args.runs * (2 * first + per_step * args.generations * 1.1) + 15)

    network = load_network(rc.SPECS / "toy_blur.json")
    runs = []
    for s in seeds:
        t0 = rc.Timer()
        res = rc.run_meta(doc_for(s), generations=args.generations, quiet=args.quiet)
        run = repro_toy.evaluate_run(res, network, args, s)
        del run["genome"]
        run["meta_training_seconds"] = round(res.seconds, 1)
        run["seconds"] = round(t0.seconds, 1)
        run["meta_loss"] = [(r.get("meta_loss") or {}).get("mean") for r in res.records]
        runs.append(run)
    summary = {"train_tasks": repro_toy.TRAIN_TASKS, "validation_tasks": repro_toy.VAL_TASKS,
               **repro_toy.over_runs(runs)}

    cma = cmaes_side(args)
    plt = rc.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    tasks = repro_toy.TRAIN_TASKS + repro_toy.VAL_TASKS
    xs = np.arange(len(tasks))
    sides = [("gradient", summary, "tab:blue")]
    if cma is not None:
        sides.insert(0, ("CMA-ES", cma["summary"], "tab:orange"))
    for i, (lab, s, col) in enumerate(sides):
        off = (i - (len(sides) - 1) / 2) * 0.35
        mean = np.array([s["per_task_mean_over_runs"][t] for t in tasks])
        lo = mean - np.array([s["per_task_min_over_runs"][t] for t in tasks])
        hi = np.array([s["per_task_max_over_runs"][t] for t in tasks]) - mean
        n = cma["runs"] if lab == "CMA-ES" else len(runs)
        axes[0].bar(xs + off, mean, 0.35, yerr=[lo, hi], color=col, capsize=2,
                    label=f"{lab}: mean over {n} runs (bars: worst..best run)")
    axes[0].plot(xs, [summary["per_task_initial_genome_mean_over_runs"][t] for t in tasks], "kx",
                 label="initial genomes (mean over the gradient runs)")
    axes[0].axvline(len(repro_toy.TRAIN_TASKS) - 0.5, color="gray", lw=0.8)
    axes[0].set_xticks(xs, tasks, rotation=40, ha="right", fontsize=8)
    axes[0].set(ylim=(0.3, 1.02), ylabel=f"test accuracy after {args.eval_steps} steps ({args.replicas} inits)",
                title="training tasks (left 3), held-out tasks (right 5)")
    axes[0].legend(fontsize=7, loc="lower left")
    axes[0].grid(alpha=0.3, axis="y")
    for r in runs:
        c = r["curve"]
        vg = [(g, v) for g, v in zip(c["generation"], c["mean_genome_validation"]) if v is not None]
        axes[1].plot(*zip(*vg), marker=".", label=f"seed {r['seed']}")
    axes[1].set(xlabel="gradient step", ylabel="held-out tasks, test split, after the current unroll",
                title="during meta-training: the current genome (validation: 4 inits, T = 10 or 15 steps)")
    axes[1].legend(fontsize=7)
    axes[1].grid(alpha=0.3)
    f1 = rc.save_figure(fig, Path(args.fig_dir) / f"{NAME}.png")

    cur = doc_for(seeds[0])["curriculum"]
    scale = {"runs": args.runs, "steps": args.generations, "synchronised_runs": args.sync_runs,
             "learning_rate": args.learning_rate, "clip_norm": 10,
             "unroll": f"{doc_for(seeds[0])['inner']['steps']} -> {cur['max_steps']} "
                       f"(+{cur['increment']} every {cur['every']} steps)",
             "network": "2 -> 20 -> 2 (specs/toy_blur.json)", "eval_steps": args.eval_steps,
             "eval_replicas": args.replicas, "seconds_per_step_measured": round(per_step, 3),
             "paper": "gradient-based meta-training on several toy tasks (Sec. 4.1), spread over runs"}
    results = {"summary": summary, "runs": runs, "cmaes": cma,
               "difference_validation_mean": (summary["validation_mean_over_runs"]
                                              - cma["summary"]["validation_mean_over_runs"]) if cma else None,
               "separation_validation": (rc.separation([r["validation_mean"] for r in runs], cma["validation_per_run"])
                                         if cma else None)}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"meta_training": seeds, "evaluation": 1000 + args.seed},
                                        scale, results, [f1]))
    print(f"held-out accuracy after {args.eval_steps} steps, mean over {args.runs} gradient run(s): "
          f"{summary['validation_mean_over_runs']:.3f} (initial {summary['initial_validation_mean']:.3f}"
          + (f"; CMA-ES {cma['summary']['validation_mean_over_runs']:.3f} over {cma['runs']} runs" if cma else "")
          + f"); wrote {args.out} ({timer.seconds:.0f} s)")
    return 0


def cmaes_side(args) -> dict | None:
    """The CMA-ES numbers of ``args.cmaes`` (None when the file is missing), with whether its
    evaluation protocol is this one (steps, replicas, evaluation seed)."""
    path = Path(args.cmaes)
    if not path.exists():
        return None
    d = json.loads(path.read_text())
    s, runs = d["results"]["summary"], d["results"]["runs"]
    same = (d["scale"].get("eval_steps") == args.eval_steps and d["scale"].get("eval_replicas") == args.replicas
            and d["seeds"].get("evaluation") == 1000 + args.seed)
    keys = ("per_task_mean_over_runs", "per_task_min_over_runs", "per_task_max_over_runs",
            "validation_mean_over_runs", "validation_min_run", "validation_max_run", "train_mean_over_runs",
            "initial_validation_mean", "majority_class_rate")
    return {"file": str(path.resolve().relative_to(rc.ROOT)) if path.resolve().is_relative_to(rc.ROOT) else str(path),
            "command": d["command"], "quick": d.get("quick", False), "commit": d["machine"].get("commit"),
            "wall_seconds": d["wall_seconds"], "runs": len(runs), "scale": d["scale"], "same_protocol": same,
            "seconds_per_run": d["wall_seconds"] / max(1, len(runs)),
            "validation_per_run": [r["validation_mean"] for r in runs],
            "summary": {k: s[k] for k in keys if k in s}}


if __name__ == "__main__":
    raise SystemExit(main())
