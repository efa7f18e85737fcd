#!/usr/bin/env python
"""Fig. 10 by gradient (paper Sec. 4.5, "learning genomes for deeper and wider networks";
issue 23 item 4): genomes meta-trained by gradient descent through the unroll on networks with
2, 3 and 4 hidden layers, each applied to 1..10 hidden layers and to a skip-connection DAG.

The protocol of ``tools/repro_depth.py`` (8x8 digits, hidden layers of ``--width`` neurons, the
paper's general rule family with Oja's term off, eight core genome fields, unroll 10,
training-split objective; for seed ``s`` every depth starts from the same random genome of
seed ``s``), meta-trained as in the paper by gradient (Sec. 3.3; App. C.1): Adam at
``--learning-rate`` on the exact meta-gradient of the softmax cross-entropy of the query
batches, clipping 10, ``--generations`` steps, ``--sync-runs`` synchronised runs. Every final
genome (and each seed's initial genome) then trains fresh networks of 1..10 hidden layers and
the DAG for 10 steps (as in Fig. 10): test-split accuracy, ``--replicas`` initialisations,
evaluation seed ``1000 + seed``; mean +- standard deviation over ``--seeds`` seeds.

    python tools/repro_depth_gradient.py                 # 3 depths x 5 seeds x 1000 steps (about 15 min on one core)
    python tools/repro_depth_gradient.py --quick         # smoke run

Writes docs/figures/repro_depth_gradient.png and docs/results/repro_depth_gradient.json.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

import repro_common as rc
import repro_depth

NAME = "repro_depth_gradient"
TRAIN_DEPTHS = [2, 3, 4]
EVAL_DEPTHS = list(range(1, 11))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    rc.add_gradient_args(p, seeds=5, steps=1000, learning_rate=0.003)
    p.add_argument("--eval-steps", type=int, default=10, help="training steps of the evaluation (default 10)")
    return p.parse_args(argv)


def experiment(depth: int, seed: int, args) -> dict:
    return rc.by_gradient(repro_depth.experiment(depth, rc.with_seed(args, seed)), args)


def main(argv=None) -> int:
    args = parse_args(argv)
    from blursim.spec import NetworkSpec

    timer = rc.Timer()
    eval_depths, train_depths = EVAL_DEPTHS, TRAIN_DEPTHS
    if args.quick:
        args.seeds, args.generations, args.replicas, args.width = 2, 2, 2, 8
        args.seeds = rc.explicit(argv, "--seeds", args.seeds)  # a one-run smoke test stays one run
        eval_depths, train_depths = [1, 10], [1, 2]
    seeds = [args.seed + i for i in range(args.seeds)]
    per_step = 0.05
    rc.estimate(f"{len(train_depths)} depths x {len(seeds)} seeds x {args.generations} gradient steps",
                len(train_depths) * ((2 if args.quick else 50) + len(seeds) * args.generations * per_step * 1.3) + 30)

    archs = {str(d): NetworkSpec.model_validate(repro_depth.chain(d, args.width)) for d in eval_depths}
    archs["dag_skip"] = rc.load_spec(rc.SPECS / "repro_dag_skip_digits.json")
    names = list(archs)
    eval_seed = 1000 + args.seed
    initial: dict[int, dict] = {}

    def evaluate(lab, res):
        seed = res.setup.experiment.seed
        genomes = [res.mean_genome] + ([res.setup.base_genome] if seed not in initial else [])
        acc = repro_depth.evaluate_on(archs, genomes, args, eval_seed)
        if len(genomes) == 2:
            initial[seed] = {a: float(v[1]) for a, v in acc.items()}
        return {"accuracy": {a: float(v[0]) for a, v in acc.items()}}

    cells = {f"trained on {d}": (lambda s, d=d: experiment(d, s, args)) for d in train_depths}
    runs = rc.run_cells(cells, seeds, args, evaluate, "depth")
    rows = list(cells) + ["initial genome"]
    table = {n: {a: rc.spread([r["accuracy"][a] for r in runs[n]]) for a in names} for n in cells}
    table["initial genome"] = {a: rc.spread([initial[s][a] for s in seeds]) for a in names}
    compare = {f"{hi} vs {lo}": {a: rc.separation(table[hi][a]["values"], table[lo][a]["values"]) for a in names}
               for hi, lo in itertools.combinations(reversed(list(cells)), 2)}
    vs_initial = {n: {a: rc.separation(table[n][a]["values"], table["initial genome"][a]["values"])
                      for a in names} for n in cells}

    f1 = plot(table, runs, names, rows, args.eval_steps, len(seeds), Path(args.fig_dir) / f"{NAME}.png")
    scale = {"train_depths": train_depths, "eval_architectures": names, "width": args.width,
             "seeds_per_depth": len(seeds), "gradient_steps": args.generations,
             "learning_rate": args.learning_rate, "sync_runs": args.sync_runs, "clip_norm": 10, "unroll": 10,
             "eval_steps": args.eval_steps, "replicas": args.replicas, "dataset": "8x8 digits",
             "paper": "MNIST, genomes meta-trained by gradient on 2, 3 and 4 hidden layers (Sec. 4.5, Fig. 10); "
                      "the paper's meta-training: Adam 5e-4, clipping 10, unroll 10-50 (App. C.1)"}
    results = {"accuracy": {n: {a: v["mean"] for a, v in t.items()} for n, t in table.items()},
               "std": {n: {a: v["std"] for a, v in t.items()} for n, t in table.items()},
               "per_seed": {n: {a: v["values"] for a, v in t.items()} for n, t in table.items()},
               "compare": compare, "vs_initial": vs_initial, "runs": runs}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"meta_training": seeds, "evaluation": eval_seed},
                                        scale, results, [f1]))
    for n in rows:
        print(f"{n:16s} " + " ".join(f"{a}:{table[n][a]['mean']:.2f}±{table[n][a]['std']:.2f}" for a in names))
    print(f"wrote {args.out} ({timer.seconds:.0f} s)")
    return 0


def plot(table: dict, runs: dict, names: list[str], rows: list[str], eval_steps: int, n_seeds: int,
         path: Path) -> Path:
    """Left: test accuracy after ``eval_steps`` steps against the evaluated depth, one line per
    training depth (mean +- std over seeds; dots: seeds), the skip DAG at the right. Right: the
    meta-training curves of every run (training accuracy of each step's forward pass)."""
    plt = rc.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [1.4, 1]})
    xs = np.arange(len(names))
    for i, n in enumerate(rows):
        c = "gray" if n == "initial genome" else f"C{i}"
        m = np.array([table[n][a]["mean"] for a in names])
        s = np.array([table[n][a]["std"] for a in names])
        off = (i - (len(rows) - 1) / 2) * 0.08
        chain = np.array([a.isdigit() for a in names])  # a line over the depths; the DAG on its own
        axes[0].errorbar(xs[chain] + off, m[chain], yerr=s[chain], color=c, marker="o", ms=4, capsize=2, lw=1.2,
                         ls=":" if n == "initial genome" else "-", label=n)
        axes[0].errorbar(xs[~chain] + off, m[~chain], yerr=s[~chain], color=c, marker="o", ms=4, capsize=2, ls="none")
        for j, a in enumerate(names):
            v = table[n][a]["values"]
            axes[0].scatter(np.full(len(v), j + off), v, s=5, color=c, alpha=0.5)
    axes[0].set_xticks(xs, [a if a.isdigit() else "skip\nDAG" for a in names])
    axes[0].set(xlabel="hidden layers of the trained network", ylim=(0, 1),
                ylabel=f"digits test accuracy after {eval_steps} steps",
                title=f"genomes meta-trained by gradient on {len(runs)} depths (mean ± std, {n_seeds} seeds)")
    axes[0].legend(fontsize=9)
    for i, n in enumerate(runs):
        for j, r in enumerate(runs[n]):
            axes[1].plot(r["curve"], color=f"C{i}", lw=0.7, alpha=0.8, label=n if j == 0 else None)
    axes[1].set(xlabel="gradient step", ylabel="training accuracy (the step's forward pass)", ylim=(0, 1),
                title="meta-training, every run")
    axes[1].legend(fontsize=9)
    for a in axes:
        a.grid(alpha=0.3)
        a.title.set_fontsize(10)
    fig.tight_layout()
    return rc.save_figure(fig, path)


def replot(doc: dict, fig_dir: Path) -> list[Path]:
    """The figure again from the JSON (:func:`plot`), for ``make_results.py --figures``."""
    r = doc["results"]
    names = doc["scale"]["eval_architectures"]
    table = {n: {a: {"mean": r["accuracy"][n][a], "std": r["std"][n][a], "values": r["per_seed"][n][a]}
                 for a in names} for n in r["accuracy"]}
    return [plot(table, r["runs"], names, list(r["accuracy"]), doc["scale"]["eval_steps"],
                 doc["scale"]["seeds_per_depth"], Path(fig_dir) / f"{NAME}.png")]


if __name__ == "__main__":
    raise SystemExit(main())
