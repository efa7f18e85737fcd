#!/usr/bin/env python
"""Ablation in the spirit of Fig. 9 / App. C.7 (paper Sec. 4.5), at small scale:
backward update type x tied/untied synapses x shared/multi-channel synapses x random or
backprop initial genome -- twenty-four cells, each meta-trained with ``--seeds`` (5)
seeds, reported as mean +- standard deviation over seeds.

Network: 8x8 digits, 64 -> ``--width`` (32) -> 10, per-state hidden activations
(tanh, tanh'), identity logits, softmax-error feedback -- the rules under which the
backprop genome is exactly SGD when synapses are tied, shared and the backward
update is ``multiplicative_second_state`` (DESIGN §3); each run changes
``backward_update`` (``multiplicative_second_state`` or ``additive``), ``tied`` and
``shared_channels``, and starts CMA-ES either from a random genome (seed ``--seed``)
or from the backprop genome (lr 0.1; the paper's "initialised close to
backpropagation"). Seed ``s`` (``--seed`` .. ``--seed + seeds - 1``) fixes the root
seed of the run (task batches, CMA-ES sampler) and the random initial genome.
CMA-ES, population ``--popsize``, unroll 10, fitness = accuracy on the training
split. Reported per run: the digits test accuracy after 10 steps of the initial and
of the final CMA-ES mean genome (``--replicas`` initialisations, the same for every
run); per cell: mean and standard deviation over seeds, and whether the cell's
difference from the best cell is larger than that spread.

    python tools/repro_ablation.py                   # 24 cells x 5 seeds x 100 generations, population 24 (about 45 min on 2 shared cores)
    python tools/repro_ablation.py --generations 300 --popsize 32
    python tools/repro_ablation.py --quick

Writes docs/figures/repro_ablation.png and docs/results/repro_ablation.json.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import repro_common as rc

NAME = "repro_ablation"
UPDATES = ["multiplicative_second_state", "multiplicative", "additive"]


def network(width: int, update: str, tied: bool, shared: bool) -> dict:
    return {
        "format": "blursim.network/1", "name": f"ablation_{update}_{tied}_{shared}", "k": 2,
        "populations": [
            {"name": "in", "size": 64, "role": "input"},
            {"name": "hidden", "size": width, "role": "hidden",
             "forward_activation": ["tanh", "tanh_derivative"], "backward_activation": "identity"},
            {"name": "out", "size": 10, "role": "output",
             "forward_activation": ["identity", "one"], "backward_activation": "identity"},
        ],
        "projections": [{"from": "in", "to": "hidden"}, {"from": "hidden", "to": "out"}],
        "rules": {"backward_update": update, "tied": tied, "shared_channels": shared,
                  "feedback": "error_softmax", "batch_reduction": "mean"},
    }


def experiment(cfg: dict, args) -> dict:
    init = ({"kind": "random", "seed": args.seed} if cfg["init"] == "random"
            else {"kind": "preset", "name": "backprop", "options": {"lr": 0.1}})
    network_doc = network(args.width, cfg["backward_update"], cfg["tied"], cfg["shared"])
    return rc.digits_experiment("repro_ablation", network_doc, init, args)


def label(cfg: dict) -> str:
    u = {"multiplicative_second_state": "mult2", "multiplicative": "mult", "additive": "add"}[cfg["backward_update"]]
    return f"{u}/{'tied' if cfg['tied'] else 'untied'}/{'shared' if cfg['shared'] else 'multi'}/{cfg['init'][:4]}"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    rc.add_es_args(p, seeds=5, generations=100, popsize=24, replicas=8, replicas_help="synapse initialisations of the evaluation")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    timer = rc.Timer()
    if args.quick:
        args.generations, args.popsize, args.replicas, args.seeds = 1, 4, 2, 2
        args.seeds = rc.explicit(argv, "--seeds", args.seeds)  # a one-run smoke test stays one run
    cfgs = [{"backward_update": u, "tied": t, "shared": s, "init": i}
            for u, t, s, i in itertools.product(UPDATES, [True, False], [True, False], ["backprop", "random"])]
    if args.quick:
        cfgs = cfgs[:2]
    seeds = [args.seed + i for i in range(args.seeds)]
    per_gen = rc.seconds_per_generation(experiment(cfgs[-1], args), args.quick)
    rc.estimate(f"{len(cfgs)} cells x {len(seeds)} seeds x {args.generations} generations, population {args.popsize}",
                per_gen * args.generations * len(cfgs) * len(seeds) * 1.2 + 20)
    by_label = {label(c): c for c in cfgs}
    eval_seed = 1000 + args.seed
    cells = {label(c): (lambda s, c=c: experiment(c, rc.with_seed(args, s))) for c in cfgs}
    runs, table = rc.digits_cells(cells, seeds, args, "ablation")
    init_stats, fit_stats = table["initial"], table["training_fitness"]
    # backprop vs random initial genome, cell by cell (the paper: backprop init helps)
    init_pairs = {}
    for c in cfgs:
        if c["init"] == "backprop":
            a, b = label(c), label({**c, "init": "random"})
            if a in runs and b in runs:
                init_pairs[a[:-5]] = rc.separation(table["stats"][a]["values"], table["stats"][b]["values"])
    order = table["ranking"]
    rows = [{**by_label[lab], "label": lab, "final": table["stats"][lab], "initial": init_stats[lab],
             "final_training_fitness": fit_stats[lab], "runs": runs[lab]} for lab in order]
    f1 = rc.plot_cells(runs, table, Path(args.fig_dir) / f"{NAME}.png", generations=args.generations,
                       title="ablation: backward update / synapse symmetry / channels / initial genome (dots: seeds)")

    scale = {"cells": len(cfgs), "seeds_per_cell": len(seeds), "generations": args.generations,
             "popsize": args.popsize,
             "network": f"64 -> {args.width} -> 10 (tanh, identity logits, softmax-error feedback)",
             "unroll": 10, "replicas": args.replicas, "dataset": "8x8 digits",
             "paper": "MNIST and 10-way Omniglot episodes, 8 variants, best of 8 runs plotted, "
                      "gradient-based meta-training"}
    results = {"rows": rows, "ranking": order, "best": table["best"], "vs_best": table["vs_best"],
               "backprop_vs_random_init": init_pairs,
               "not_separated_from_best": [table["best"]] + [c for c, v in table["vs_best"].items()
                                                             if not v["separated"]]}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"meta_training": seeds, "evaluation": eval_seed},
                                        scale, results, [f1]))
    for lab in order:
        st = table["stats"][lab]
        print(f"{lab:28s} initial {init_stats[lab]['mean']:.3f} -> final {st['mean']:.3f} +- {st['std']:.3f}")
    print(f"wrote {args.out} ({timer.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
