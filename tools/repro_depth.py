#!/usr/bin/env python
"""Fig. 10 analogue (paper Sec. 4.5, "deeper and wider networks"): genomes meta-trained on
networks with 1, 2 and 4 hidden layers, each evaluated on 1, 2, 3, 4 and 10 hidden
layers and on a skip-connection DAG none of them saw.

All networks: 8x8 digits, hidden layers of ``--width`` (32) neurons, the paper's
general rule family (relu o tanh, normalisation on both passes, additive backward
update, untied multi-channel synapses, +-1 target feedback; the Oja term is
available in ``weights`` mode but stays off: ``oja_alpha`` is 0 and not searched);
the chain of depth ``d`` is built by this script, the DAG is
``specs/repro_dag_skip_digits.json``. ``--seeds`` (5) meta-training seeds: for seed
``s`` every depth starts from the *same* random genome (seed ``s``), so within a seed
the rows differ only by the depth they were trained on: CMA-ES, population
``--popsize``, unroll 10, fitness = accuracy on the training split. Evaluation: the
final CMA-ES mean genome trained from fresh synapses for 10 steps (as in Fig. 10),
test-split accuracy, ``--replicas`` initialisations (the same for every genome);
reported as mean +- standard deviation over seeds.

    python tools/repro_depth.py                      # 3 depths x 5 seeds x 150 generations, population 32 (about 15 min on 2 shared cores)
    python tools/repro_depth.py --generations 400 --popsize 48
    python tools/repro_depth.py --quick

Writes docs/figures/repro_depth.png and docs/results/repro_depth.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import repro_common as rc

NAME = "repro_depth"
TRAIN_DEPTHS = [1, 2, 4]
EVAL_ARCHS = ["1", "2", "3", "4", "10", "dag_skip"]


def chain(depth: int, width: int) -> dict:
    return rc.mlp_network(f"digits_chain_{depth}x{width}", 64, [width] * depth, 10)


def experiment(depth: int, args) -> dict:
    return rc.digits_experiment(f"repro_depth_{depth}", chain(depth, args.width),
                                {"kind": "random", "seed": args.seed}, args)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    p.add_argument("--seeds", type=int, default=5, help="meta-training seeds per depth (default 5)")
    p.add_argument("--generations", type=int, default=150, help="generations per depth (default 150)")
    p.add_argument("--popsize", type=int, default=32, help="CMA-ES population (default 32)")
    p.add_argument("--width", type=int, default=32, help="hidden layer width (default 32)")
    p.add_argument("--eval-steps", type=int, default=10, help="training steps of the evaluation (default 10)")
    p.add_argument("--replicas", type=int, default=8, help="synapse initialisations (default 8)")
    return p.parse_args(argv)


def architectures(width: int) -> dict:
    from blursim.spec import NetworkSpec

    archs = {a: NetworkSpec.model_validate(chain(int(a), width)) for a in EVAL_ARCHS if a.isdigit()}
    archs["dag_skip"] = rc.load_spec(rc.SPECS / "repro_dag_skip_digits.json")
    return archs


def evaluate_on(archs: dict, genomes: list, args, seed: int) -> dict[str, np.ndarray]:
    """Test accuracy after ``--eval-steps`` steps of each genome on each architecture: ``{arch: (G,)}``."""
    out = {}
    for a, spec in archs.items():
        r = rc.evaluate_genome(spec, genomes, "digits", steps=args.eval_steps, replicas=args.replicas, seed=seed,
                               batch_size=32, backend=args.backend, eval_steps="end")
        out[a] = np.asarray(r["mean"])[:, -1]
    return out


def main(argv=None) -> int:
    args = parse_args(argv)

    timer = rc.Timer()
    if args.quick:
        args.generations, args.popsize, args.replicas, args.seeds = 1, 4, 2, 2
        args.seeds = rc.explicit(argv, "--seeds", args.seeds)  # a one-run smoke test stays one run
    seeds = [args.seed + i for i in range(args.seeds)]
    est = sum(rc.seconds_per_generation(experiment(d, args), args.quick) for d in TRAIN_DEPTHS) * args.generations
    rc.estimate(f"{len(TRAIN_DEPTHS)} depths x {len(seeds)} seeds x {args.generations} generations, "
                f"population {args.popsize}", est * len(seeds) * 1.15 + 30)

    archs = architectures(args.width)
    eval_seed = 1000 + args.seed
    names = [f"trained on {d}" for d in TRAIN_DEPTHS]
    initial = {}

    def evaluate(lab, res):
        seed = res.setup.experiment.seed
        genomes = [res.mean_genome]
        if seed not in initial:  # the shared random start of this seed, once
            genomes.append(res.setup.base_genome)
        acc = evaluate_on(archs, genomes, args, eval_seed)
        if len(genomes) == 2:
            initial[seed] = {a: float(v[1]) for a, v in acc.items()}
        return {"accuracy": {a: float(v[0]) for a, v in acc.items()}}

    cells = {f"trained on {d}": (lambda s, d=d: experiment(d, rc.with_seed(args, s))) for d in TRAIN_DEPTHS}
    runs = rc.run_cells(cells, seeds, args, evaluate, "depth")
    table = {n: {a: rc.spread([r["accuracy"][a] for r in runs[n]]) for a in EVAL_ARCHS} for n in names}
    table["initial genome"] = {a: rc.spread([initial[s][a] for s in seeds]) for a in EVAL_ARCHS}
    # the asymmetry: is the 4-layer genome's lead over the shallower ones larger than the spread?
    compare = {f"{hi} vs {lo}": {a: rc.separation(table[hi][a]["values"], table[lo][a]["values"])
                                 for a in EVAL_ARCHS}
               for hi, lo in (("trained on 4", "trained on 1"), ("trained on 4", "trained on 2"),
                              ("trained on 2", "trained on 1"))}

    plt = rc.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 3.8), gridspec_kw={"width_ratios": [1.2, 1], "wspace": 0.4})
    rows = names + ["initial genome"]
    M = np.array([[table[n][a]["mean"] for a in EVAL_ARCHS] for n in rows])
    S = np.array([[table[n][a]["std"] for a in EVAL_ARCHS] for n in rows])
    im = axes[0].imshow(M, vmin=0, vmax=1, cmap="viridis")
    for i in range(len(rows)):
        for j in range(len(EVAL_ARCHS)):
            axes[0].text(j, i, f"{M[i, j]:.2f}\n±{S[i, j]:.2f}", ha="center", va="center",
                         color="w" if M[i, j] < 0.6 else "k", fontsize=7)
    axes[0].set_xticks(range(len(EVAL_ARCHS)), [f"{a} hidden" if a.isdigit() else "skip DAG" for a in EVAL_ARCHS],
                       fontsize=8)
    axes[0].set_yticks(range(len(rows)), rows, fontsize=8)
    axes[0].set_title(f"digits test accuracy after {args.eval_steps} steps: mean ± std over {len(seeds)} seeds",
                      fontsize=9)
    fig.colorbar(im, ax=axes[0], fraction=0.03)
    for k, d in enumerate(TRAIN_DEPTHS):
        for j, r in enumerate(runs[f"trained on {d}"]):
            axes[1].plot(r["curve"], color=f"C{k}", lw=0.8, label=f"{d} hidden layer(s)" if j == 0 else None)
    axes[1].set(xlabel="generation", ylabel="training-split accuracy (mean genome)", title="meta-training (all seeds)",
                ylim=(0, 1))
    axes[1].legend(fontsize=8)
    axes[1].grid(alpha=0.3)
    f1 = rc.save_figure(fig, Path(args.fig_dir) / f"{NAME}.png")

    scale = {"train_depths": TRAIN_DEPTHS, "eval_architectures": EVAL_ARCHS, "width": args.width,
             "seeds_per_depth": len(seeds), "generations": args.generations, "popsize": args.popsize, "unroll": 10,
             "eval_steps": args.eval_steps, "replicas": args.replicas, "dataset": "8x8 digits",
             "paper": "MNIST, genomes trained on 2-4 hidden layers (Sec. 4.1 setup, gradient-based meta-training)"}
    results = {"accuracy": {n: {a: v["mean"] for a, v in t.items()} for n, t in table.items()},
               "std": {n: {a: v["std"] for a, v in t.items()} for n, t in table.items()},
               "per_seed": {n: {a: v["values"] for a, v in t.items()} for n, t in table.items()},
               "compare": compare, "runs": runs}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"meta_training": seeds, "evaluation": eval_seed},
                                        scale, results, [f1]))
    for n in rows:
        print(f"{n:16s} " + " ".join(f"{a}:{table[n][a]['mean']:.3f}±{table[n][a]['std']:.3f}" for a in EVAL_ARCHS))
    print(f"wrote {args.out} ({timer.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
