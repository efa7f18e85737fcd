#!/usr/bin/env python
"""Fig. 14 / App. C.4 in miniature, then Fig. 5/6 (paper Sec. 4.2-4.3): the curriculum genome
meta-trained by gradient with N synchronised runs up to unroll 50, against SGD, momentum and
Adam.

1. Meta-train ``specs/experiments/repro_digits_curriculum.json`` (64 -> 64 -> 10, general
   rules, random initial genome, training split of the ten-class digits) by gradient
   descent through the unroll (Sec. 3.3): Adam (``--learning-rate``) on the exact
   meta-gradient, clipping 10, ``--sync-runs`` runs that start from the same genome and
   are synchronised at every stage change (docs/meta.md: every run continues from the stage
   leader's genome and Adam state); unroll 10 -> 50 in steps of 5, ``--stage-steps`` steps
   per stage (the paper: 8 runs, 10,000 steps per stage).
2. The final current genome against SGD / momentum / Adam and the zoo's backprop and
   feedback-alignment rules exactly as ``tools/repro_digits_curriculum.py`` compares
   (``repro_digits_curriculum.compare``: ``blursim compare``, the same networks, batches and
   initial forward synapses; every rate chosen per horizon on a validation split carved from
   the training split), to ``--steps`` training steps, on ``--tasks``. The CMA-ES curriculum
   genome's numbers of docs/results/repro_digits_curriculum.json are put beside it when that
   file exists. ``--reuse docs/results/repro_curriculum_gradient.json`` takes that earlier
   run's genome (beside it) and meta-training record and reruns the comparison only.

    python tools/repro_curriculum_gradient.py                  # 4 runs, 60 steps per stage (about 5 min on one core)
    python tools/repro_curriculum_gradient.py --sync-runs 8 --stage-steps 100   # docs/results.md (15 min)
    python tools/repro_curriculum_gradient.py --reuse docs/results/repro_curriculum_gradient.json  # comparison only
    python tools/repro_curriculum_gradient.py --quick          # smoke run

Writes docs/figures/repro_curriculum_gradient.png (the comparison),
docs/figures/repro_curriculum_gradient_fig14.png (meta-training), the genome to
docs/results/repro_curriculum_gradient_genome.json and the numbers to
docs/results/repro_curriculum_gradient.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import repro_common as rc
import repro_digits_curriculum as cur

NAME = "repro_curriculum_gradient"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    p.add_argument("--sync-runs", type=int, default=4, help="synchronised runs (default 4; the paper's 8)")
    p.add_argument("--stage-steps", type=int, default=60, help="gradient steps per unroll stage (default 60)")
    p.add_argument("--max-unroll", type=int, default=50, help="last unroll of the curriculum (default 50)")
    p.add_argument("--learning-rate", type=float, default=0.01, help="Adam's learning rate (default 0.01)")
    p.add_argument("--steps", type=int, default=100, help="training steps of the comparison (default 100)")
    p.add_argument("--replicas", type=int, default=8, help="synapse initialisations (default 8)")
    p.add_argument("--tasks", nargs="+", default=cur.TASKS, choices=cur.TASKS,
                   help="tasks of the comparison (default: all three)")
    p.add_argument("--reuse", metavar="JSON",
                   help="reuse the genome and meta-training record of an earlier run (e.g. "
                        "docs/results/repro_curriculum_gradient.json, its genome beside it) instead of meta-training: "
                        "reruns the comparison only")
    p.add_argument("--cmaes", default=str(rc.RESULTS / "repro_digits_curriculum.json"),
                   help="the CMA-ES curriculum result to put beside (default docs/results/repro_digits_curriculum.json)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    timer = rc.Timer()
    lrs = cur.LRS
    start, inc = 10, 5
    inner = None
    reused = None
    if args.reuse:  # the earlier run's settings, so that its initial genome and scale are recorded
        reused_genome, earlier, reused = cur.reuse(args.reuse)
        sc = earlier["scale"]
        args.seed = int(earlier["seeds"].get("root", args.seed))
        args.sync_runs = sc.get("synchronised_runs", args.sync_runs)
        args.stage_steps = sc.get("stage_steps", args.stage_steps)
        args.learning_rate = sc.get("learning_rate", args.learning_rate)
    if args.quick:
        args.sync_runs, args.stage_steps, args.max_unroll, args.steps, args.replicas = 2, 2, 3, 6, 2
        args.tasks, lrs, start, inc = ["digits"], [1e-2, 1e-1], 2, 1
        inner = {"steps": start, "batch_size": 16, "query_batches": 1, "query_batch_size": 32, "replicas": 1}
    stages = (args.max_unroll - start) // inc + 1
    generations = stages * args.stage_steps
    over = dict(seed=args.seed, generations=generations, genome={"init": {"kind": "random", "seed": args.seed}},
                strategy={"name": "gradient", "options": {"learning_rate": args.learning_rate,
                                                          "runs": args.sync_runs}},
                curriculum={"increment": inc, "every": args.stage_steps, "max_steps": args.max_unroll},
                validation={"every": args.stage_steps, "replicas": 2},
                execution={"backend": args.backend, "dtype": "float32"})
    if inner:
        over["inner"] = inner
    doc = rc.experiment_dict(cur.EXPERIMENT, **over)
    doc["strategy"] = over["strategy"]  # replaced, not merged with the CMA-ES settings (sigma0, popsize)
    first, per_step = (0.0, 0.0) if reused else rc.gradient_step_seconds(doc, args.quick)
    factor = rc.unroll_factor(doc, generations)
    rc.estimate(f"{args.sync_runs} synchronised runs x {stages} stages x {args.stage_steps} steps + the baselines",
                stages * first + per_step * factor * generations * 1.1
                + 2 * len(args.tasks) * 2 * len(cur.OPTIMIZERS) * len(lrs) * 0.02 * args.steps * args.replicas / 8 + 20)

    genome_path = Path(args.out).with_name(Path(args.out).stem + "_genome.json")
    if reused:
        from blursim.meta import prepare_experiment

        genome, base_genome = reused_genome, prepare_experiment(doc).base_genome
        training, final_unroll = earlier["training"], earlier["final_unroll"]
        meta_seconds, per_step = earlier["scale"]["meta_training_seconds"], earlier["scale"].get(
            "seconds_per_step_measured_first_stage")
    else:
        res = rc.run_meta(doc, generations=generations, quiet=args.quiet)
        genome, base_genome, meta_seconds = res.mean_genome, res.setup.base_genome, res.seconds
        training, final_unroll = training_record(res), res.records[-1]["unroll"]
    rc.write_text(genome_path, rc.genome_json(genome))

    per_task = cur.compare(genome, base_genome, args, lrs, tasks=args.tasks)
    summary, rep, chosen = cur.summarize(per_task, lrs)
    f1 = cur.plot_comparison(per_task, lrs, Path(args.fig_dir) / f"{NAME}.png",
                             label=f"BLUR genome, gradient ({args.sync_runs} sync. runs)")
    f2 = plot_training(training, Path(args.fig_dir) / f"{NAME}_fig14.png")

    cma = None
    path = Path(args.cmaes)
    if path.exists():
        d = json.loads(path.read_text())
        cma = {"file": str(path.resolve().relative_to(rc.ROOT)) if path.resolve().is_relative_to(rc.ROOT) else str(path),
               "command": d["command"], "quick": d.get("quick", False), "wall_seconds": d["wall_seconds"],
               "scale": d["scale"],
               "same_protocol": d["scale"].get("comparison_steps") == args.steps
               and d["scale"].get("replicas") == args.replicas
               and d["seeds"].get("evaluation") == rc.engine_seeds("zoo", 1000 + args.seed),
               "blur": {t: d["results"]["summary"][t]["blur"] for t in args.tasks if t in d["results"]["summary"]}}
    scale = {"synchronised_runs": args.sync_runs, "stage_steps": args.stage_steps, "steps": generations,
             "unroll": f"{start} -> {args.max_unroll} (+{inc} every {args.stage_steps} steps, runs synchronised)",
             "learning_rate": args.learning_rate, "clip_norm": 10,
             "network": "64 -> 64 -> 10 (specs/repro_digits_blur_64.json)", "inner": doc["inner"],
             "meta_training_seconds": round(meta_seconds, 1), "seconds_per_step_measured_first_stage":
             None if per_step is None else round(per_step, 3),
             "comparison_steps": args.steps, "replicas": args.replicas, "evaluation_seeds": rc.ZOO_EVAL_SEEDS,
             "batch_size": 32, "learning_rates": lrs, "tasks": args.tasks, "presets": list(cur.PRESETS),
             "comparison": "blursim.compare through repro_common.compare_zoo, float64; " + rc.zoo_selection(),
             "meta_training": (f"reused from {reused['file']} (commit {reused['commit']}, started "
                               f"{reused['started']})") if reused else "this run",
             "paper": "MNIST 10x10 meta-training, 8 synchronised runs x 10,000 steps per stage, unroll 10 -> 50"}
    results = {"summary": summary, "report_steps": rep, "selected_lrs": chosen, "per_task": per_task,
               "training": training, "final_unroll": final_unroll, "cmaes_curriculum": cma,
               "genome": genome_path.name, "meta_training_reused": reused}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"root": args.seed,
                                                            "evaluation": rc.engine_seeds("zoo", 1000 + args.seed),
                                                            "validation_split": 1000 + args.seed},
                                        scale, results, [f1, f2]))
    d = summary[args.tasks[0]]
    print(f"{args.tasks[0]} test accuracy, gradient curriculum genome: "
          + ", ".join(f"{s} steps {d['blur'][s]:.3f}" for s in rep) + f"; wrote {args.out} ({timer.seconds:.0f} s)")
    return 0


def training_record(res) -> dict:
    """The meta-training record of a gradient run (:class:`blursim.meta.MetaResult`): per step
    the unroll, every run's meta-loss, best/worst fitness, gradient norms, the synchronisations
    and the held-out accuracy at stage ends."""
    recs = res.records[1:]
    c = rc.curve(res.records)
    return {"step": [r["generation"] for r in recs], "unroll": [r["unroll"] for r in recs],
                "meta_loss_runs": [r["meta_loss"]["runs"] for r in recs],
                "fitness_best": [r["fitness"]["best"] for r in recs], "fitness_worst": [r["fitness"]["worst"] for r in recs],
                "grad_norm_mean": [r["grad_norm"]["mean"] for r in recs],
                "clipped": [r["grad_norm"]["clipped"] for r in recs],
                "synchronised_at": [r["generation"] for r in recs if r["synchronised"]],
                "leader_at_sync": [r["lead"] for r in recs if r["synchronised"]],
                "skipped": res.records[-1]["skipped"],
                "stage_end_validation": [(g, u, v) for g, u, v in zip(c["generation"], c["unroll"],
                                                                      c["mean_genome_validation"]) if v is not None]}


def plot_training(training: dict, path: Path) -> Path:
    """Fig. 14: every run's meta-loss over the gradient steps, and the runs' accuracies."""
    plt = rc.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    ml = np.array([[np.nan if v is None else v for v in row] for row in training["meta_loss_runs"]])
    for r in range(ml.shape[1]):
        axes[0].plot(training["step"], ml[:, r], lw=0.7, label=f"run {r}")
    for g in training["synchronised_at"]:
        axes[0].axvline(g, color="gray", lw=0.5, ls=":")
    axes[0].set(xlabel="gradient step (dotted: stage change + synchronisation, unroll +5)",
                ylabel="meta-loss (cross-entropy, training split)", title="meta-training by gradient (Fig. 14)")
    axes[0].legend(fontsize=7)
    axes[1].plot(training["step"], training["fitness_best"], lw=0.7, label="best run")
    axes[1].plot(training["step"], training["fitness_worst"], lw=0.7, label="worst run")
    sv = training["stage_end_validation"]
    if sv:
        axes[1].plot([g for g, _, _ in sv], [v for _, _, v in sv], "ko-", ms=3, label="current genome, test split")
    axes[1].set(xlabel="gradient step", ylabel="accuracy after the unroll", ylim=(0, 1),
                title="training-split accuracy of the runs; held-out at stage ends")
    for a in axes:
        a.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    return rc.save_figure(fig, path)


if __name__ == "__main__":
    raise SystemExit(rc.script_main(main))
