#!/usr/bin/env python
"""Fig. 10 analogue (paper Sec. 4.5, "deeper and wider networks"): genomes meta-trained on
networks with 1, 2 and 4 hidden layers, each evaluated on 1, 2, 3, 4 and 10 hidden
layers and on a skip-connection DAG none of them saw.

All networks: 8x8 digits, hidden layers of ``--width`` (32) neurons, the paper's
general rule family (relu o tanh, normalisation on both passes, additive backward
update, untied multi-channel synapses, +-1 target feedback, Oja term); the chain
of depth ``d`` is built by this script, the DAG is ``specs/repro_dag_skip_digits.json``.
Every meta-training run starts from the *same* random genome (seed ``--seed``),
so the rows differ only by the depth they were trained on: CMA-ES, population
``--popsize``, unroll 10, fitness = accuracy on the training split. Evaluation: the
final CMA-ES mean genome trained from fresh synapses for 10 steps (as in Fig. 10),
test-split accuracy, ``--replicas`` initialisations.

    python tools/repro_depth.py                      # 3 runs x 150 generations, population 32 (a minute or two on 2 cores)
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
    hidden = {"role": "hidden", "forward_activation": "relu_tanh", "backward_activation": "relu_tanh",
              "normalization": "both", "size": width}
    pops = [{"name": "in", "size": 64, "role": "input"}]
    pops += [{"name": f"h{i + 1}", **hidden} for i in range(depth)]
    pops += [{"name": "out", "size": 10, "role": "output", "forward_activation": "tanh", "backward_activation": "tanh"}]
    projs = [{"from": pops[i]["name"], "to": pops[i + 1]["name"]} for i in range(len(pops) - 1)]
    return {"format": "blursim.network/1", "name": f"digits_chain_{depth}x{width}", "k": 2,
            "populations": pops, "projections": projs,
            "rules": {"backward_update": "additive", "tied": False, "shared_channels": False,
                      "feedback": "target", "oja": "weights", "batch_reduction": "mean"}}


def experiment(depth: int, args) -> dict:
    return rc.digits_experiment(f"repro_depth_{depth}", chain(depth, args.width),
                                {"kind": "random", "seed": args.seed}, args)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    p.add_argument("--generations", type=int, default=150, help="generations per depth (default 150)")
    p.add_argument("--popsize", type=int, default=32, help="CMA-ES population (default 32)")
    p.add_argument("--width", type=int, default=32, help="hidden layer width (default 32)")
    p.add_argument("--eval-steps", type=int, default=10, help="training steps of the evaluation (default 10)")
    p.add_argument("--replicas", type=int, default=8, help="synapse initialisations (default 8)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from blursim.spec import NetworkSpec

    timer = rc.Timer()
    if args.quick:
        args.generations, args.popsize, args.replicas = 2, 6, 2
    docs = {d: experiment(d, args) for d in TRAIN_DEPTHS}
    est = sum(rc.seconds_per_generation(docs[d]) for d in TRAIN_DEPTHS) * args.generations * 1.15 + 30
    rc.estimate(f"{len(TRAIN_DEPTHS)} runs x {args.generations} generations, population {args.popsize}", est)

    archs = {a: NetworkSpec.model_validate(chain(int(a), args.width)) for a in EVAL_ARCHS if a.isdigit()}
    archs["dag_skip"] = rc.load_spec(rc.SPECS / "repro_dag_skip_digits.json")
    genomes, curves = {}, {}
    for d in TRAIN_DEPTHS:
        res = rc.run_meta(docs[d], generations=args.generations, quiet=args.quiet)
        genomes[f"trained on {d}"] = res.mean_genome
        curves[str(d)] = rc.curve(res.records)
        genomes.setdefault("initial genome", res.setup.base_genome)
    names = [f"trained on {d}" for d in TRAIN_DEPTHS] + ["initial genome"]
    seed = 1000 + args.seed
    table = {n: {} for n in names}
    std = {n: {} for n in names}
    div = {n: {} for n in names}
    bar = rc.progress(len(archs), "evaluate architectures", args.quiet, "net")
    for a, spec in archs.items():
        r = rc.evaluate_genome(spec, [genomes[n] for n in names], "digits", steps=args.eval_steps,
                               replicas=args.replicas, seed=seed, batch_size=32, backend=args.backend,
                               eval_steps="end")
        for i, n in enumerate(names):
            table[n][a] = float(r["mean"][i, -1])
            std[n][a] = float(r["std"][i, -1])
            div[n][a] = int(r["diverged"][i])
        bar.update(1)
    bar.close()

    plt = rc.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 3.8), gridspec_kw={"width_ratios": [1.2, 1], "wspace": 0.4})
    M = np.array([[table[n][a] for a in EVAL_ARCHS] for n in names])
    im = axes[0].imshow(M, vmin=0, vmax=1, cmap="viridis")
    for i in range(len(names)):
        for j in range(len(EVAL_ARCHS)):
            axes[0].text(j, i, f"{M[i, j]:.2f}", ha="center", va="center",
                         color="w" if M[i, j] < 0.6 else "k", fontsize=8)
    axes[0].set_xticks(range(len(EVAL_ARCHS)), [f"{a} hidden" if a.isdigit() else "skip DAG" for a in EVAL_ARCHS],
                       fontsize=8)
    axes[0].set_yticks(range(len(names)), names, fontsize=8)
    axes[0].set_title(f"digits test accuracy after {args.eval_steps} steps ({args.replicas} inits)", fontsize=9)
    fig.colorbar(im, ax=axes[0], fraction=0.03)
    for d in TRAIN_DEPTHS:
        c = curves[str(d)]
        axes[1].plot(c["generation"], c["mean_genome_train"], label=f"{d} hidden layer(s)")
    axes[1].set(xlabel="generation", ylabel="training-split accuracy (mean genome)", title="meta-training",
                ylim=(0, 1))
    axes[1].legend(fontsize=8)
    axes[1].grid(alpha=0.3)
    f1 = rc.save_figure(fig, Path(args.fig_dir) / f"{NAME}.png")

    scale = {"train_depths": TRAIN_DEPTHS, "eval_architectures": EVAL_ARCHS, "width": args.width,
             "generations": args.generations, "popsize": args.popsize, "unroll": 10,
             "eval_steps": args.eval_steps, "replicas": args.replicas, "dataset": "8x8 digits",
             "paper": "MNIST, genomes trained on 2-4 hidden layers (Sec. 4.1 setup, gradient-based meta-training)"}
    results = {"accuracy": table, "std": std, "diverged_replicas": div, "curves": curves}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"root_and_initial_genome": args.seed,
                                                            "evaluation": seed}, scale, results, [f1]))
    for n in names:
        print(f"{n:16s} " + " ".join(f"{a}:{table[n][a]:.3f}" for a in EVAL_ARCHS))
    print(f"wrote {args.out} ({timer.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
