#!/usr/bin/env python
"""States per neuron (paper App. C.3, Fig. 13; App. C.2's remark on linear networks): does
a genome with more states k train better after 10 steps?

Cells: k = 2, 3, 4 and 8 states per neuron, each with the paper's default hidden
non-linearity ``relu_tanh`` and with a linear hidden layer (``identity`` on both passes; the
paper: "fully linear network ... does not see any advantage of increasing number of states,
while networks with non-linearity improve with the number of states"). Network: 64 -> 32 -> 10
on the 8x8 digits, the same architecture for every k (general rules: normalisation on both
passes, additive backward update, untied multi-channel synapses -- k channels per synapse --,
+-1 target feedback into state 1, zeros into states >= 2). Every k x k field of the genome is
searched (4 k^2 + 4 numbers: 20 for k = 2, 260 for k = 8). ``--seeds`` (3) meta-training
seeds per cell, CMA-ES, population ``--popsize``, unroll 10, training-split fitness; initial
and final mean genomes train fresh networks for 10 steps (test split, ``--replicas``
initialisations).

    python tools/repro_states.py                     # 8 cells x 3 seeds x 100 generations (about 10 min on 2 shared cores)
    python tools/repro_states.py --quick

Writes docs/figures/repro_states.png and docs/results/repro_states.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import repro_common as rc

NAME = "repro_states"
KS = [2, 3, 4, 8]
ACTIVATIONS = ["relu_tanh", "identity"]


def experiment(k: int, act: str, seed: int, args) -> dict:
    net = rc.mlp_network(f"states_{k}_{act}", 64, [args.width], 10, k=k, activation=act)
    return rc.meta_experiment(NAME, net, {"kind": "random", "seed": seed}, rc.with_seed(args, seed))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    rc.add_es_args(p, seeds=3, generations=100, popsize=24, replicas=8)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    timer = rc.Timer()
    ks = KS
    if args.quick:
        args.seeds, args.generations, args.popsize, args.replicas = 2, 1, 4, 2
        args.seeds = rc.explicit(argv, "--seeds", args.seeds)  # a one-run smoke test stays one run
        ks = [2, 3]
    cells = {f"k={k}, {act}": (k, act) for act in ACTIVATIONS for k in ks}
    seeds = [args.seed + i for i in range(args.seeds)]
    per_gen = sum(rc.seconds_per_generation(experiment(k, "relu_tanh", seeds[0], args), args.quick) for k in ks)
    rc.estimate(f"{len(cells)} cells x {len(seeds)} seeds x {args.generations} generations",
                per_gen * len(ACTIVATIONS) * args.generations * len(seeds) * 1.2 + 20)
    makers = {lab: (lambda s, ka=ka: experiment(*ka, s, args)) for lab, ka in cells.items()}
    runs, table = rc.digits_cells(makers, seeds, args, "states")
    f1 = rc.plot_cells(runs, table, Path(args.fig_dir) / f"{NAME}.png", generations=args.generations,
                       order=list(cells), title="states per neuron k (Fig. 13; dots: seeds)")
    # does k matter? each k against k = 2, per activation
    vs_k2 = {lab: rc.separation(table["stats"][lab]["values"], table["stats"][f"k=2, {act}"]["values"])
             for lab, (k, act) in cells.items() if k != 2}
    scale = {"cells": len(cells), "ks": ks, "activations": ACTIVATIONS, "seeds_per_cell": len(seeds),
             "generations": args.generations, "popsize": args.popsize,
             "network": f"64 -> {args.width} -> 10 (general rules)", "unroll": 10, "replicas": args.replicas,
             "dataset": "8x8 digits", "paper": "MNIST, 2-8 states, the same architecture, gradient meta-training "
                                              "(Fig. 13)"}
    results = {"cells": {lab: {"k": k, "activation": act} for lab, (k, act) in cells.items()},
               **{key: table[key] for key in ("stats", "ranking", "best", "vs_best", "initial", "training_fitness")},
               "vs_k2": vs_k2, "runs": runs}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"meta_training": seeds, "evaluation": 1000 + args.seed},
                                        scale, results, [f1]))
    for c in cells:
        st = table["stats"][c]
        print(f"{c:22s} {st['mean']:.3f} ± {st['std']:.3f}")
    print(f"wrote {args.out} ({timer.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
