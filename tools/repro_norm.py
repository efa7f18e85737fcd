#!/usr/bin/env python
"""Neuron normalisation on and off (paper Sec. 3.4 and Sec. 4.5, Fig. 8): meta-training with
and without the batch normalisation N of the hidden layers, and how the genomes generalise to
another resolution and a deeper network.

Three arms, ``--seeds`` (5) meta-training seeds each, on the 8x8 digits with two hidden
layers of ``--width`` (64 -> 32 -> 32 -> 10, general rules: relu o tanh, additive backward
update, untied multi-channel synapses, +-1 target feedback):

* ``no normalisation`` -- ``normalization: none`` in the hidden layers;
* ``normalisation, gain/shift fixed`` -- ``normalization: both`` (forward and backward pass),
  ``norm_gain`` 1 and ``norm_shift`` 0 frozen (as in every other reproduction script);
* ``normalisation, gain/shift searched`` -- the same with ``norm_gain`` (within [0.05, 5]) and
  ``norm_shift`` (within [-3, 3]) evolved by CMA-ES with the core fields: the paper's
  "learnable mean and deviation" (Sec. 3.4).

CMA-ES, population ``--popsize``, ``--generations`` generations, unroll 10, training-split
fitness; each arm's seed ``s`` starts from the random genome of seed ``s``. The final mean
genomes then train fresh networks for 10 steps (test split, ``--replicas`` initialisations)
on the meta-training setting and on settings they never saw: 16x16 and 4x4 digits
(``digits_resized``: inputs 256 and 16) and four hidden layers.

    python tools/repro_norm.py                       # 3 arms x 5 seeds x 100 generations (about 10 min on 2 shared cores)
    python tools/repro_norm.py --quick

Writes docs/figures/repro_norm.png and docs/results/repro_norm.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import repro_common as rc

NAME = "repro_norm"
ARMS = {  # label -> (hidden normalisation, searched extra fields)
    "no normalisation": ("none", []),
    "normalisation, gain/shift fixed": ("both", []),
    "normalisation, gain/shift searched": ("both", ["norm_gain", "norm_shift"]),
}
#: evaluation setting -> (dataset, options, input size, hidden layers)
SETTINGS = {
    "8x8, 2 hidden (meta-training)": ("digits", {}, 64, 2),
    "16x16, 2 hidden": ("digits_resized", {"size": 16}, 256, 2),
    "4x4, 2 hidden": ("digits_resized", {"size": 4}, 16, 2),
    "8x8, 4 hidden": ("digits", {}, 64, 4),
}


def network(norm: str, n_in: int, depth: int, width: int) -> dict:
    return rc.mlp_network(f"norm_{norm}_{n_in}_{depth}", n_in, [width] * depth, 10, normalization=norm)


def experiment(arm: str, seed: int, args) -> dict:
    norm, extra = ARMS[arm]
    bounds = {**rc.CORE_BOUNDS, **({"norm_gain": [0.05, 5], "norm_shift": [-3, 3]} if extra else {})}
    return rc.meta_experiment(f"{NAME}", network(norm, 64, 2, args.width), {"kind": "random", "seed": seed},
                              rc.with_seed(args, seed), fields=rc.CORE_FIELDS + extra, bounds=bounds)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    rc.add_es_args(p, seeds=5, generations=100, popsize=24, replicas=8, per="arm")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from blursim.spec import NetworkSpec

    timer = rc.Timer()
    if args.quick:
        args.seeds, args.generations, args.popsize, args.replicas = 2, 2, 4, 2
        args.seeds = rc.explicit(argv, "--seeds", args.seeds)  # a one-run smoke test stays one run
    seeds = [args.seed + i for i in range(args.seeds)]
    per_gen = sum(rc.seconds_per_generation(experiment(a, seeds[0], args), args.quick) for a in ARMS)
    rc.estimate(f"{len(ARMS)} arms x {len(seeds)} seeds x {args.generations} generations",
                per_gen * args.generations * len(seeds) * 1.2 + 30)
    eval_seed = 1000 + args.seed

    def evaluate(arm, res):
        norm = ARMS[arm][0]
        out = {}
        for s, (ds, opts, n_in, depth) in SETTINGS.items():
            spec = NetworkSpec.model_validate(network(norm, n_in, depth, args.width))
            r = rc.evaluate_genome(spec, [res.mean_genome], ds, steps=10, replicas=args.replicas, seed=eval_seed,
                                   batch_size=32, backend=args.backend, options=opts, eval_steps="end")
            out[s] = float(np.asarray(r["mean"])[0, -1])
        g = res.mean_genome.groups["default"]
        return {"accuracy": out, "norm_gain": g.norm_gain, "norm_shift": g.norm_shift}

    cells = {a: (lambda s, a=a: experiment(a, s, args)) for a in ARMS}
    runs = rc.run_cells(cells, seeds, args, evaluate, "normalisation")
    table = {a: {s: rc.spread([r["accuracy"][s] for r in runs[a]]) for s in SETTINGS} for a in ARMS}
    fitness = {a: rc.spread([r["final_training_fitness"] for r in runs[a]]) for a in ARMS}
    compare = {}
    for hi, lo in (("normalisation, gain/shift fixed", "no normalisation"),
                   ("normalisation, gain/shift searched", "no normalisation"),
                   ("normalisation, gain/shift searched", "normalisation, gain/shift fixed")):
        compare[f"{hi} vs {lo}"] = {s: rc.separation(table[hi][s]["values"], table[lo][s]["values"])
                                    for s in SETTINGS}
        compare[f"{hi} vs {lo}"]["training fitness"] = rc.separation(fitness[hi]["values"], fitness[lo]["values"])

    plt = rc.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    for i, a in enumerate(ARMS):
        curves = np.array([r["curve"] for r in runs[a]], dtype=float)
        m, s = curves.mean(axis=0), curves.std(axis=0)
        axes[0].plot(m, color=f"C{i}", label=a)
        axes[0].fill_between(np.arange(m.size), m - s, m + s, color=f"C{i}", alpha=0.2)
    axes[0].set(xlabel="generation", ylabel="training-split accuracy (mean genome)", ylim=(0, 1),
                title=f"meta-training (mean ± std over {len(seeds)} seeds)")
    axes[0].legend(fontsize=8)
    xs = np.arange(len(SETTINGS))
    for i, a in enumerate(ARMS):
        axes[1].bar(xs + (i - 1) * 0.27, [table[a][s]["mean"] for s in SETTINGS], 0.27,
                    yerr=[table[a][s]["std"] for s in SETTINGS], capsize=2, color=f"C{i}", label=a)
    axes[1].set_xticks(xs, list(SETTINGS), fontsize=8)
    axes[1].set(ylim=(0, 1), ylabel="test accuracy after 10 steps", title="final mean genomes")
    for ax in axes:
        ax.grid(alpha=0.3)
    f1 = rc.save_figure(fig, Path(args.fig_dir) / f"{NAME}.png")

    scale = {"arms": list(ARMS), "seeds_per_arm": len(seeds), "generations": args.generations,
             "popsize": args.popsize, "network": f"64 -> {args.width} -> {args.width} -> 10 (general rules)",
             "unroll": 10, "replicas": args.replicas, "settings": list(SETTINGS), "dataset": "8x8 digits",
             "paper": "MNIST, Sec. 4.1 setup, meta-training curves of identical runs with normalisation off (Fig. 8)"}
    results = {"accuracy": table, "training_fitness": fitness, "compare": compare, "runs": runs}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"meta_training": seeds, "evaluation": eval_seed},
                                        scale, results, [f1]))
    for a in ARMS:
        print(f"{a:36s} fitness {fitness[a]['mean']:.3f} " +
              " | ".join(f"{s.split(',')[0]}{s.split(',')[1]}: {table[a][s]['mean']:.3f}" for s in SETTINGS))
    print(f"wrote {args.out} ({timer.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
