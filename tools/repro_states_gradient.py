#!/usr/bin/env python
"""Fig. 13 by gradient (paper App. C.3; issue 23 item 4): do more states per neuron train better
after 10 steps when the genomes are meta-trained by gradient, at equal meta-training steps?

Cells k = 2, 4 and 8 states per neuron, the paper's default hidden non-linearity ``relu_tanh``
(the half of ``tools/repro_states.py`` where the paper sees more states help), the same
network for every k (64 -> ``--width`` -> 10 on the 8x8 digits, general rules: normalisation
on both passes, additive backward update, untied multi-channel synapses, +-1 target feedback).
Every k x k field of the eight core fields is searched (4 k^2 + 4 numbers). ``--seeds`` seeds
per cell (the random initial genome of seed ``s``), each meta-trained by gradient (Sec. 3.3,
App. C.1): Adam at ``--learning-rate`` on the exact meta-gradient of the query batches'
cross-entropy (training split), clipping 10, unroll 10, the same ``--generations`` steps for
every k. Initial and final genomes then train fresh networks for 10 steps (test split,
``--replicas`` initialisations, evaluation seed ``1000 + seed``).

    python tools/repro_states_gradient.py                # 3 cells x 5 seeds x 1000 steps (about 15 min on one core)
    python tools/repro_states_gradient.py --quick        # smoke run

Writes docs/figures/repro_states_gradient.png and docs/results/repro_states_gradient.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import repro_common as rc
import repro_states

NAME = "repro_states_gradient"
KS = [2, 4, 8]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    rc.add_gradient_args(p, seeds=5, steps=1000, learning_rate=0.003)
    return p.parse_args(argv)


def experiment(k: int, seed: int, args) -> dict:
    return rc.by_gradient(repro_states.experiment(k, "relu_tanh", seed, args), args)


def main(argv=None) -> int:
    args = parse_args(argv)
    timer = rc.Timer()
    ks = KS
    if args.quick:
        args.seeds, args.generations, args.replicas, args.width = 2, 2, 2, 8
        args.seeds = rc.explicit(argv, "--seeds", args.seeds)  # a one-run smoke test stays one run
        ks = [2, 4]
    cells = {f"k={k}": k for k in ks}
    seeds = [args.seed + i for i in range(args.seeds)]
    per_step = 0.05
    rc.estimate(f"{len(cells)} cells x {len(seeds)} seeds x {args.generations} gradient steps",
                sum((2 if args.quick else 40) + len(seeds) * args.generations * per_step for k in ks) + 30)
    makers = {lab: (lambda s, k=k: experiment(k, s, args)) for lab, k in cells.items()}
    runs, table = rc.digits_cells(makers, seeds, args, "states")
    f1 = plot(runs, table, list(cells), args.generations, Path(args.fig_dir) / f"{NAME}.png")
    vs_k2 = {lab: rc.separation(table["stats"][lab]["values"], table["stats"]["k=2"]["values"])
             for lab, k in cells.items() if k != 2}
    vs_initial = {lab: rc.separation(table["stats"][lab]["values"], table["initial"][lab]["values"])
                  for lab in cells}
    scale = {"cells": len(cells), "ks": ks, "activation": "relu_tanh", "seeds_per_cell": len(seeds),
             "gradient_steps": args.generations, "learning_rate": args.learning_rate, "sync_runs": args.sync_runs,
             "clip_norm": 10, "network": f"64 -> {args.width} -> 10 (general rules)", "unroll": 10,
             "replicas": args.replicas, "dataset": "8x8 digits",
             "paper": "MNIST, 2-8 states, the same architecture, gradient meta-training (Fig. 13)"}
    results = {"cells": {lab: {"k": k} for lab, k in cells.items()},
               **{key: table[key] for key in ("stats", "ranking", "best", "vs_best", "initial", "training_fitness")},
               "vs_k2": vs_k2, "vs_initial": vs_initial, "runs": runs}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"meta_training": seeds, "evaluation": 1000 + args.seed},
                                        scale, results, [f1]))
    for c in cells:
        st, ini = table["stats"][c], table["initial"][c]
        print(f"{c:6s} {st['mean']:.3f} ± {st['std']:.3f} (initial {ini['mean']:.3f})")
    print(f"wrote {args.out} ({timer.seconds:.0f} s)")
    return 0


def plot(runs: dict, table: dict, order: list[str], steps: int, path: Path) -> Path:
    """Initial and final accuracy of every cell (:func:`repro_common.plot_cells`)."""
    return rc.plot_cells(runs, table, path, generations=steps, order=order, unit="gradient steps",
                         title=f"states per neuron k, meta-trained by gradient ({steps} steps each; Fig. 13; "
                               "dots: seeds)")


def replot(doc: dict, fig_dir: Path) -> list[Path]:
    """The figure again from the JSON (:func:`plot`), for ``make_results.py --figures``."""
    r = doc["results"]
    return [plot(r["runs"], r, list(r["cells"]), doc["scale"]["gradient_steps"], Path(fig_dir) / f"{NAME}.png")]


if __name__ == "__main__":
    raise SystemExit(main())
