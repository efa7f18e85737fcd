#!/usr/bin/env python
"""Fig. 4 / Fig. 3 analogue (paper Sec. 4.1): meta-train two-state genomes on xor, and,
two moons from random starts and measure them on held-out 2-D tasks.

Several meta-training runs (seeds ``seed .. seed+runs-1``; each run's root seed
and random initial genome come from its seed) of ``specs/experiments/repro_toy.json``
(2 -> 20 -> 2, the paper's general rule family, CMA-ES with a population of 24,
unroll 10 -> 20 by curriculum, fitness = accuracy on the *training split* of the
three training tasks). Each run's final CMA-ES mean genome is then trained from
fresh synapses for ``--eval-steps`` (10, as in Fig. 4) steps on every training
and held-out task and scored on the task's held-out test split
(``--replicas`` initialisations). Decision-boundary pictures (Fig. 3 bottom row)
are drawn for the run with the highest final *training* fitness (chosen without
looking at the validation tasks). Fig. 4's correlation panel: across runs, the mean
test accuracy on the training tasks after 10 steps against the mean on the held-out
tasks (Pearson and Spearman coefficients with their p-values).

    python tools/repro_toy.py                      # 10 runs x 120 generations (about 15 min on 2 shared cores)
    python tools/repro_toy.py --runs 8 --generations 300
    python tools/repro_toy.py --quick              # smoke run

Writes docs/figures/repro_toy_fig4.png, docs/figures/repro_toy_boundaries.png,
the selected genome to docs/results/repro_toy_genome.json and the numbers to
docs/results/repro_toy.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import repro_common as rc

NAME = "repro_toy"
EXPERIMENT = rc.SPECS / "experiments" / "repro_toy.json"
TRAIN_TASKS = ["xor", "and", "two_moons"]
VAL_TASKS = ["center_circle", "small_center_circle", "pie_slice", "cross", "triangle"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    p.add_argument("--runs", type=int, default=10, help="meta-training runs (seeds seed..seed+runs-1; default 10)")
    p.add_argument("--generations", type=int, default=120, help="generations per run (default 120)")
    p.add_argument("--popsize", type=int, default=24, help="CMA-ES population (default 24)")
    p.add_argument("--eval-steps", type=int, default=10, help="training steps of the evaluation (default 10, Fig. 4)")
    p.add_argument("--replicas", type=int, default=8, help="synapse initialisations per evaluation (default 8)")
    p.add_argument("--grid", type=int, default=80, help="decision-boundary grid points per axis (default 80)")
    return p.parse_args(argv)


def boundaries(network, genome, tasks, *, steps, seed, grid, backend):
    """Train ``steps`` steps on each task (replica 0) and predict on a dense grid of [-1, 1]^2."""
    from blursim.data import load_dataset
    from blursim.graph import compile_network
    from blursim.sim import Simulator, train_batch

    prog = compile_network(network)
    sim = Simulator(prog, backend=backend, dtype="float32")
    g = np.linspace(-1, 1, grid)
    gx, gy = np.meshgrid(g, g)
    pts = np.stack([gx.ravel(), gy.ravel()], axis=1)
    out = {}
    for task in tasks:
        data = load_dataset(task, {"seed": seed})
        genes = sim.prepare([genome])
        st = sim.init_synapses(genes, replicas=1, seed=seed)
        for t in range(steps):
            x, y = train_batch(data.x_train, data.y_train, t, seed, 32)
            sim.train_step(st, genes, x, y)
        logits = sim.backend.to_numpy(sim.forward(st, genes, pts)[0])[0, 0]  # (B, n_out)
        pred = logits.argmax(axis=-1) if logits.shape[-1] > 1 else (logits[:, 0] > 0).astype(int)
        out[task] = {"pred": pred.reshape(grid, grid), "x": data.x_test[:300], "y": data.y_test[:300]}
    return g, out


def evaluate_run(res, network, args, seed: int) -> dict:
    """Fig. 4's evaluation of one meta-training run (a :class:`blursim.meta.MetaResult`): its
    current (mean) genome and its initial genome trained from fresh synapses for
    ``args.eval_steps`` steps on every training and held-out task, scored on the task's test
    split over ``args.replicas`` initialisations (dataset and synapse seed ``1000 + args.seed``,
    independent of the meta-training seeds). The run's record, with the genome under ``"genome"``."""
    init = res.setup.base_genome
    tasks = TRAIN_TASKS + VAL_TASKS
    ev = {}
    bar = rc.progress(len(tasks), f"evaluate run {seed}", args.quiet, "task")
    for task in tasks:
        r = rc.evaluate_genome(network, [res.mean_genome, init], task, steps=args.eval_steps,
                               replicas=args.replicas, seed=1000 + args.seed, batch_size=32,
                               backend=args.backend, options={"seed": 1000 + args.seed})
        ev[task] = {"mean_genome": float(r["mean"][0, -1]), "mean_genome_std": float(r["std"][0, -1]),
                    "initial_genome": float(r["mean"][1, -1]),
                    "curve_mean_genome": r["mean"][0], "diverged": int(r["diverged"][0])}
        bar.update(1)
    bar.close()
    last = res.records[-1]
    return {
        "seed": seed,
        "final_training_fitness_mean_genome": (last["mean"] or {}).get("fitness"),
        "final_unroll": last["unroll"],
        "curve": rc.curve(res.records),
        "evaluation": ev,
        "train_mean": float(np.mean([ev[t]["mean_genome"] for t in TRAIN_TASKS])),
        "validation_mean": float(np.mean([ev[t]["mean_genome"] for t in VAL_TASKS])),
        "initial_validation_mean": float(np.mean([ev[t]["initial_genome"] for t in VAL_TASKS])),
        "genome": res.mean_genome,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    from blursim.spec import load_network

    timer = rc.Timer()
    if args.quick:
        args.runs, args.generations, args.popsize, args.replicas, args.grid = 3, 2, 6, 2, 20
        args.runs = rc.explicit(argv, "--runs", args.runs)  # a one-run smoke test stays one run
    seeds = [args.seed + i for i in range(args.runs)]

    def doc_for(s):
        return rc.experiment_dict(
            EXPERIMENT, seed=s, generations=args.generations,
            genome={"init": {"kind": "random", "seed": s}},
            strategy={"popsize": args.popsize},
            validation={"every": 10, "replicas": 4},
            execution={"backend": args.backend, "dtype": "float32"},
        )

    per_gen = rc.seconds_per_generation(doc_for(seeds[0]), args.quick)
    factor = rc.unroll_factor(doc_for(seeds[0]), args.generations)
    rc.estimate(f"{args.runs} run(s) x {args.generations} generations, population {args.popsize}",
                per_gen * factor * args.generations * args.runs * 1.1 + 15)

    network = load_network(rc.SPECS / "toy_blur.json")
    runs = []
    for s in seeds:
        res = rc.run_meta(doc_for(s), generations=args.generations, quiet=args.quiet)
        runs.append(evaluate_run(res, network, args, s))

    # the run with the highest final training fitness (no validation data involved)
    sel = max(range(len(runs)), key=lambda i: runs[i]["final_training_fitness_mean_genome"] or -1)
    genome_path = Path(args.out).with_name(Path(args.out).stem + "_genome.json")

    rc.write_text(genome_path, rc.genome_json(runs[sel]["genome"]))
    for r in runs:
        del r["genome"]

    # ------------------------------------------------------------------ figures
    plt = rc.pyplot()
    fig_dir = Path(args.fig_dir)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for i, r in enumerate(runs):
        c = r["curve"]
        gens = c["generation"]
        axes[0].plot(gens, c["mean_genome_train"], label=f"seed {r['seed']}" + (" (selected)" if i == sel else ""))
        vg = [(g, v) for g, v in zip(gens, c["mean_genome_validation"]) if v is not None]
        if vg:
            axes[1].plot(*zip(*vg), marker=".", label=f"seed {r['seed']}")
    axes[0].set(title="meta-training: training-task accuracy (mean genome)", xlabel="generation",
                ylabel="accuracy (train split)")
    axes[1].set(title="held-out tasks during meta-training", xlabel="generation", ylabel="accuracy (test split)")
    for a in axes[:2]:
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
    tasks = TRAIN_TASKS + VAL_TASKS
    vals = np.array([[r["evaluation"][t]["mean_genome"] for t in tasks] for r in runs])
    init = np.array([[r["evaluation"][t]["initial_genome"] for t in tasks] for r in runs]).mean(axis=0)
    xs = np.arange(len(tasks))
    for i, r in enumerate(runs):
        axes[2].scatter(xs + 0.08 * (i - len(runs) / 2), vals[i], s=14, label=f"seed {r['seed']}")
    axes[2].plot(xs, vals.mean(0), "k_", markersize=18, label="mean over runs")
    axes[2].plot(xs, init, "rx", label="initial genomes (mean over runs)")
    axes[2].axvline(len(TRAIN_TASKS) - 0.5, color="gray", lw=0.8)
    axes[2].set_xticks(xs, tasks, rotation=40, ha="right", fontsize=8)
    axes[2].set(title=f"test accuracy after {args.eval_steps} steps ({args.replicas} inits)", ylim=(0.3, 1.02))
    axes[2].legend(fontsize=7)
    axes[2].grid(alpha=0.3)
    f1 = rc.save_figure(fig, fig_dir / f"{NAME}_fig4.png")

    g, bd = boundaries(network, load_network_genome(genome_path), tasks, steps=args.eval_steps,
                       seed=1000 + args.seed, grid=args.grid, backend=args.backend)
    fig, axes = plt.subplots(2, len(tasks), figsize=(2.1 * len(tasks), 4.4))
    for j, t in enumerate(tasks):
        d = bd[t]
        axes[0, j].scatter(d["x"][:, 0], d["x"][:, 1], c=d["y"], s=4, cmap="coolwarm")
        axes[1, j].imshow(d["pred"], origin="lower", extent=(-1, 1, -1, 1), cmap="coolwarm", vmin=0, vmax=1)
        axes[0, j].set_title(t, fontsize=8)
        for a in axes[:, j]:
            a.set_xticks([])
            a.set_yticks([])
            a.set_xlim(-1, 1)
            a.set_ylim(-1, 1)
    axes[0, 0].set_ylabel("test data")
    axes[1, 0].set_ylabel(f"prediction\nafter {args.eval_steps} steps")
    fig.suptitle(f"genome of run seed {runs[sel]['seed']}: training tasks (left 3), held-out tasks (right 5)",
                 fontsize=9)
    f2 = rc.save_figure(fig, fig_dir / f"{NAME}_boundaries.png")

    corr = correlation(runs)  # drawn here, written by over_runs
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    xs_, ys_ = [r["train_mean"] for r in runs], [r["validation_mean"] for r in runs]
    ax.scatter(xs_, ys_, c=[r["final_training_fitness_mean_genome"] for r in runs], cmap="viridis", s=30)
    for r in runs:
        ax.annotate(str(r["seed"]), (r["train_mean"], r["validation_mean"]), fontsize=7, xytext=(3, 2),
                    textcoords="offset points")
    ax.set(xlabel=f"training tasks: test accuracy after {args.eval_steps} steps",
           ylabel=f"held-out tasks: test accuracy after {args.eval_steps} steps",
           title=f"meta-training vs meta-validation across {len(runs)} runs\n"
                 + (f"Pearson r = {corr['pearson_r']:.2f} (p = {corr['pearson_p']:.2g}), "
                    f"Spearman rho = {corr['spearman_rho']:.2f}" if corr["pearson_r"] is not None else corr["note"]))
    ax.title.set_fontsize(8)
    ax.grid(alpha=0.3)
    f3 = rc.save_figure(fig, fig_dir / f"{NAME}_correlation.png")

    from blursim.data import load_dataset

    majority = {}
    for t in tasks:  # the accuracy of always predicting the test split's most frequent class
        y = load_dataset(t, {"seed": 1000 + args.seed}).y_test
        majority[t] = float(np.bincount(y).max() / y.size)
    summary = {
        "train_tasks": TRAIN_TASKS, "validation_tasks": VAL_TASKS,
        "majority_class_rate": majority,
        **over_runs(runs),
        "selected_run_seed": runs[sel]["seed"],
        "selected_genome": str(genome_path.resolve().relative_to(rc.ROOT)) if genome_path.resolve().is_relative_to(rc.ROOT) else str(genome_path),
    }
    scale = {"runs": args.runs, "generations": args.generations, "popsize": args.popsize,
             "network": "2 -> 20 -> 2 (specs/toy_blur.json)", "unroll": "10 -> 20 (+5 every 40 generations)",
             "eval_steps": args.eval_steps, "eval_replicas": args.replicas,
             "paper": "several training tasks, gradient-based meta-training (Sec. 4.1), spread over several runs"}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"meta_training": seeds, "evaluation": 1000 + args.seed},
                                        scale, {"summary": summary, "runs": runs}, [f1, f2, f3]))
    print(f"validation accuracy after {args.eval_steps} steps, mean over {args.runs} run(s): "
          f"{summary['validation_mean_over_runs']:.3f} (initial genome {summary['initial_validation_mean']:.3f}); "
          f"wrote {args.out} ({timer.seconds:.0f} s)")
    return 0


def over_runs(runs: list[dict]) -> dict:
    """The Fig. 4 numbers over runs (each from :func:`evaluate_run`): per task the mean, worst
    and best run and the initial genome (mean over the runs' initial genomes, like
    ``initial_validation_mean``; the first run's alone is ``per_task_initial_genome_first_run``);
    the held-out and training means; the correlation panel (:func:`correlation`)."""
    tasks = TRAIN_TASKS + VAL_TASKS
    vals = np.array([[r["evaluation"][t]["mean_genome"] for t in tasks] for r in runs])
    init = np.array([[r["evaluation"][t]["initial_genome"] for t in tasks] for r in runs])
    return {
        "per_task_mean_over_runs": {t: float(vals[:, j].mean()) for j, t in enumerate(tasks)},
        "per_task_min_over_runs": {t: float(vals[:, j].min()) for j, t in enumerate(tasks)},
        "per_task_max_over_runs": {t: float(vals[:, j].max()) for j, t in enumerate(tasks)},
        "per_task_initial_genome_mean_over_runs": {t: float(init[:, j].mean()) for j, t in enumerate(tasks)},
        "per_task_initial_genome_first_run": {t: float(init[0, j]) for j, t in enumerate(tasks)},
        "validation_mean_over_runs": float(np.mean([r["validation_mean"] for r in runs])),
        "validation_min_run": float(np.min([r["validation_mean"] for r in runs])),
        "validation_max_run": float(np.max([r["validation_mean"] for r in runs])),
        "train_mean_over_runs": float(np.mean([r["train_mean"] for r in runs])),
        "initial_validation_mean": float(np.mean([r["initial_validation_mean"] for r in runs])),
        "correlation": correlation(runs),
    }


def correlation(runs: list[dict]) -> dict:
    """Fig. 4 (bottom middle): across runs, mean accuracy on the training tasks vs on the held-out
    tasks after the evaluation steps; also the final training fitness vs the held-out accuracy."""
    import warnings

    from scipy.stats import pearsonr, spearmanr

    x = np.array([r["train_mean"] for r in runs])
    f = np.array([r["final_training_fitness_mean_genome"] or np.nan for r in runs], dtype=float)
    y = np.array([r["validation_mean"] for r in runs])
    out = {"runs": len(runs)}
    if len(runs) < 3:  # two points always lie on a line; one has no correlation at all
        for name in ("", "fitness_"):
            out.update({f"{name}pearson_r": None, f"{name}pearson_p": None, f"{name}spearman_rho": None,
                        f"{name}spearman_p": None})
        out["note"] = f"not computed: {len(runs)} run(s); a correlation needs at least 3"
        return out
    with warnings.catch_warnings():  # constant inputs (a smoke run) give NaN, said as such
        warnings.simplefilter("ignore")
        for name, a in (("", x), ("fitness_", f)):
            pr, sr = pearsonr(a, y), spearmanr(a, y)
            out.update({f"{name}pearson_r": float(pr.statistic), f"{name}pearson_p": float(pr.pvalue),
                        f"{name}spearman_rho": float(sr.statistic), f"{name}spearman_p": float(sr.pvalue)})
    return out


def load_network_genome(path):
    from blursim.spec import load_genome

    return load_genome(path)


if __name__ == "__main__":
    raise SystemExit(main())
