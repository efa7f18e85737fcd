#!/usr/bin/env python
"""Non-linearities (paper Sec. 4.5 "Impact of non-linearity", App. C.2, Fig. 12): can genomes
be meta-learned for every choice of forward and backward non-linearity?

Cells: the hidden layers' forward activation ``identity``, ``tanh``, ``relu``, ``sigmoid`` or
``relu_tanh`` (the paper's default), with the same function on the backward pass or none
(``identity``) -- nine distinct cells (identity/identity is the fully linear hidden path).
Network: 64 -> 32 -> 32 -> 10 on the 8x8 digits (two hidden layers, as Fig. 12), k = 2, the
general rules otherwise (normalisation on both passes, additive backward update, untied
multi-channel synapses, +-1 target feedback, tanh outputs). ``--seeds`` (3) meta-training
seeds per cell (seed ``s``: root seed and random initial genome), CMA-ES, population
``--popsize``, unroll 10, training-split fitness; each run's initial and final mean genome
train fresh networks for 10 steps (test split, ``--replicas`` initialisations).

    python tools/repro_nonlin.py                     # 9 cells x 3 seeds x 100 generations (about 10 min on 2 shared cores)
    python tools/repro_nonlin.py --quick

Writes docs/figures/repro_nonlin.png and docs/results/repro_nonlin.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import repro_common as rc

NAME = "repro_nonlin"
FORWARD = ["identity", "tanh", "relu", "sigmoid", "relu_tanh"]


def cells_of(forward: list[str]) -> dict[str, tuple[str, str]]:
    out = {}
    for f in forward:
        for b in (f, "identity"):
            out.setdefault(f"{f} / {b}", (f, b))
    return out


def experiment(fwd: str, bwd: str, seed: int, args) -> dict:
    net = rc.mlp_network(f"nonlin_{fwd}_{bwd}", 64, [args.width, args.width], 10, activation=fwd,
                         backward_activation=bwd)
    return rc.meta_experiment(NAME, net, {"kind": "random", "seed": seed}, rc.with_seed(args, seed))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    rc.add_es_args(p, seeds=3, generations=100, popsize=24, replicas=8)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    timer = rc.Timer()
    forward = FORWARD
    if args.quick:
        args.seeds, args.generations, args.popsize, args.replicas = 2, 1, 4, 2
        args.seeds = rc.explicit(argv, "--seeds", args.seeds)  # a one-run smoke test stays one run
        forward = ["identity", "tanh"]
    cells = cells_of(forward)
    seeds = [args.seed + i for i in range(args.seeds)]
    per_gen = rc.seconds_per_generation(experiment("tanh", "tanh", seeds[0], args), args.quick)
    rc.estimate(f"{len(cells)} cells x {len(seeds)} seeds x {args.generations} generations",
                per_gen * args.generations * len(cells) * len(seeds) * 1.2 + 20)
    makers = {lab: (lambda s, fb=fb: experiment(*fb, s, args)) for lab, fb in cells.items()}
    runs, table = rc.digits_cells(makers, seeds, args, "non-linearities")
    f1 = rc.plot_cells(runs, table, Path(args.fig_dir) / f"{NAME}.png", generations=args.generations,
                       title="hidden non-linearity: forward / backward (Fig. 12; dots: seeds)")
    scale = {"cells": len(cells), "seeds_per_cell": len(seeds), "generations": args.generations,
             "popsize": args.popsize, "network": f"64 -> {args.width} -> {args.width} -> 10, k = 2 (general rules)",
             "unroll": 10, "replicas": args.replicas, "dataset": "8x8 digits",
             "paper": "MNIST, two hidden layers, 2-8 states, gradient meta-training (Fig. 12)"}
    results = {"cells": {lab: {"forward": f, "backward": b} for lab, (f, b) in cells.items()},
               **{k: table[k] for k in ("stats", "ranking", "best", "vs_best", "initial", "training_fitness")},
               "not_separated_from_best": [table["best"]] + [c for c, v in table["vs_best"].items()
                                                             if not v["separated"]],
               "runs": runs}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"meta_training": seeds, "evaluation": 1000 + args.seed},
                                        scale, results, [f1]))
    for c in table["ranking"]:
        st = table["stats"][c]
        print(f"{c:24s} {st['mean']:.3f} ± {st['std']:.3f}")
    print(f"wrote {args.out} ({timer.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
