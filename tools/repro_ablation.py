#!/usr/bin/env python
"""Ablation in the spirit of Fig. 9 / App. C.7 (paper Sec. 4.5), at small scale:
backward update type x tied/untied synapses x shared/multi-channel synapses x random or
backprop initial genome -- sixteen meta-training runs.

Network: 8x8 digits, 64 -> ``--width`` (32) -> 10, per-state hidden activations
(tanh, tanh'), identity logits, softmax-error feedback -- the rules under which the
backprop genome is exactly SGD when synapses are tied, shared and the backward
update is ``multiplicative_second_state`` (DESIGN §3); each run changes
``backward_update`` (``multiplicative_second_state`` or ``additive``), ``tied`` and
``shared_channels``, and starts CMA-ES either from a random genome (seed ``--seed``)
or from the backprop genome (lr 0.1; the paper's "initialised close to
backpropagation"). CMA-ES, population ``--popsize``, unroll 10, fitness = accuracy
on the training split. Reported: the digits test accuracy after 10 steps of the
initial and of the final CMA-ES mean genome (``--replicas`` initialisations).

    python tools/repro_ablation.py                   # 24 runs x 100 generations, population 24 (a few minutes on 2 cores)
    python tools/repro_ablation.py --generations 300 --popsize 32
    python tools/repro_ablation.py --quick

Writes docs/figures/repro_ablation.png and docs/results/repro_ablation.json.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    p.add_argument("--generations", type=int, default=100, help="generations per run (default 100)")
    p.add_argument("--popsize", type=int, default=24, help="CMA-ES population (default 24)")
    p.add_argument("--width", type=int, default=32, help="hidden width (default 32)")
    p.add_argument("--replicas", type=int, default=8, help="synapse initialisations of the evaluation (default 8)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from blursim.spec import NetworkSpec

    timer = rc.Timer()
    if args.quick:
        args.generations, args.popsize, args.replicas = 1, 4, 2
    cfgs = [{"backward_update": u, "tied": t, "shared": s, "init": i}
            for u, t, s, i in itertools.product(UPDATES, [True, False], [True, False], ["backprop", "random"])]
    if args.quick:
        cfgs = cfgs[:2]
    per_gen = rc.seconds_per_generation(experiment(cfgs[-1], args))
    rc.estimate(f"{len(cfgs)} runs x {args.generations} generations, population {args.popsize}",
                per_gen * args.generations * len(cfgs) * 1.2 + 20)
    rows = []
    bar = rc.progress(len(cfgs), "ablation", args.quiet, "run")
    for cfg in cfgs:
        doc = experiment(cfg, args)
        res = rc.run_meta(doc, generations=args.generations, quiet=True)
        spec = NetworkSpec.model_validate(doc["network"])
        r = rc.evaluate_genome(spec, [res.setup.base_genome, res.mean_genome], "digits", steps=10,
                               replicas=args.replicas, seed=1000 + args.seed, batch_size=32,
                               backend=args.backend, eval_steps="end")
        rows.append({**cfg,
                     "initial_accuracy": float(r["mean"][0, -1]), "initial_std": float(r["std"][0, -1]),
                     "final_accuracy": float(r["mean"][1, -1]), "final_std": float(r["std"][1, -1]),
                     "final_diverged_replicas": int(r["diverged"][1]),
                     "final_training_fitness": res.records[-1]["mean"]["fitness"],
                     "curve": rc.curve(res.records)["mean_genome_train"]})
        bar.update(1)
    bar.close()
    order = sorted(range(len(rows)), key=lambda i: -rows[i]["final_accuracy"])

    plt = rc.pyplot()
    fig, ax = plt.subplots(figsize=(11, 4.2))
    labels = [("mult2" if r["backward_update"].startswith("mult") else "add") + ("/tied" if r["tied"] else "/untied")
              + ("/shared" if r["shared"] else "/multi") + f"/{r['init'][:4]}" for r in rows]
    xs = np.arange(len(rows))
    ax.bar(xs - 0.2, [r["initial_accuracy"] for r in rows], 0.4, color="lightgray", label="initial genome")
    ax.bar(xs + 0.2, [r["final_accuracy"] for r in rows], 0.4, yerr=[r["final_std"] for r in rows],
           color="tab:blue", label=f"after {args.generations} generations")
    ax.set_xticks(xs, labels, rotation=60, ha="right", fontsize=7)
    ax.set(ylabel="digits test accuracy after 10 steps", ylim=(0, 1),
           title="ablation: backward update / synapse symmetry / channels / initial genome")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    f1 = rc.save_figure(fig, Path(args.fig_dir) / f"{NAME}.png")

    scale = {"runs": len(cfgs), "generations": args.generations, "popsize": args.popsize,
             "network": f"64 -> {args.width} -> 10 (tanh, identity logits, softmax-error feedback)",
             "unroll": 10, "replicas": args.replicas, "dataset": "8x8 digits",
             "paper": "MNIST and 10-way Omniglot episodes, 8 variants, gradient-based meta-training"}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"root_and_random_genome": args.seed,
                                                            "evaluation": 1000 + args.seed},
                                        scale, {"rows": rows, "ranking": order}, [f1]))
    for i in order:
        print(f"{labels[i]:32s} initial {rows[i]['initial_accuracy']:.3f} -> final {rows[i]['final_accuracy']:.3f}")
    print(f"wrote {args.out} ({timer.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
