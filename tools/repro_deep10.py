#!/usr/bin/env python
"""Is the 10-hidden-layer result of Fig. 10 (tools/repro_depth.py) a budget limit? (paper
Sec. 4.5, "deeper and wider networks": a genome trained on 2-4 layers trains 10 layers.)

Two kinds of meta-training run, ``--seeds`` (3) seeds each, on the networks of
``tools/repro_depth.py`` (8x8 digits, hidden layers of 32, the general rule family):

* ``4 hidden, long``: meta-trained on 4 hidden layers for ``--generations`` (600: four times
  the budget of repro_depth.py), population ``--popsize``; every ``--every`` generations the
  CMA-ES mean genome trains fresh 4- and 10-hidden-layer networks for 10 steps (the
  experiment's validation tasks, test split, 4 initialisations) -- the 10-layer accuracy as a
  function of the meta-training budget;
* ``10 hidden, direct``: meta-trained on the 10-hidden-layer network itself for
  ``--direct-generations`` (300) -- can a genome train 10 layers in 10 steps at all?

Fitness is always training-split accuracy (unroll 10); the curves are monitoring, nothing is
selected on them. At the end every final mean genome trains 1, 2, 4 and 10 hidden layers for
10 steps (test split, ``--replicas`` initialisations, the evaluation seed of repro_depth.py).

    python tools/repro_deep10.py                     # 3 x 600 + 3 x 300 generations (about 25 min on 2 shared cores)
    python tools/repro_deep10.py --quick

Writes docs/figures/repro_deep10.png and docs/results/repro_deep10.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import repro_common as rc
from repro_depth import chain

NAME = "repro_deep10"
EVAL_DEPTHS = ["1", "2", "4", "10"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    p.add_argument("--seeds", type=int, default=3, help="seeds per kind of run (default 3)")
    p.add_argument("--generations", type=int, default=600, help="generations of the 4-layer runs (default 600)")
    p.add_argument("--direct-generations", type=int, default=300,
                   help="generations of the runs on 10 layers (default 300)")
    p.add_argument("--popsize", type=int, default=32, help="CMA-ES population (default 32)")
    p.add_argument("--width", type=int, default=32, help="hidden layer width (default 32)")
    p.add_argument("--every", type=int, default=25, help="generations between validations (default 25)")
    p.add_argument("--replicas", type=int, default=8, help="synapse initialisations of the final evaluation")
    return p.parse_args(argv)


def experiment(depth: int, seed: int, args, generations: int) -> dict:
    a = rc.with_seed(args, seed)
    a.generations = generations
    val = [{"name": "digits", "label": f"digits_{d}_hidden", "network": chain(d, args.width)}
           for d in sorted({4, 10, depth})]
    return rc.meta_experiment(f"{NAME}_{depth}", chain(depth, args.width), {"kind": "random", "seed": seed}, a,
                              validation_tasks=val, validation={"every": args.every, "replicas": 4})


def main(argv=None) -> int:
    args = parse_args(argv)
    from blursim.spec import NetworkSpec

    timer = rc.Timer()
    if args.quick:
        args.seeds, args.generations, args.direct_generations = 1, 4, 2
        args.popsize, args.every, args.replicas = 6, 2, 2
        args.seeds = rc.explicit(argv, "--seeds", args.seeds)  # a one-run smoke test stays one run
    seeds = [args.seed + i for i in range(args.seeds)]
    kinds = {"4 hidden, long": (4, args.generations), "10 hidden, direct": (10, args.direct_generations)}
    est = sum(rc.seconds_per_generation(experiment(d, seeds[0], args, g), args.quick) * g for d, g in kinds.values())
    rc.estimate(f"{len(seeds)} x ({args.generations} generations on 4 layers + {args.direct_generations} on 10)",
                est * len(seeds) * 1.25 + 30)
    archs = {d: NetworkSpec.model_validate(chain(int(d), args.width)) for d in EVAL_DEPTHS}
    eval_seed = 1000 + args.seed
    runs = {}
    bar = rc.progress(len(kinds) * len(seeds), "deep10", args.quiet, "run")
    for kind, (depth, gens) in kinds.items():
        for s in seeds:
            res = rc.run_meta(experiment(depth, s, args, gens), generations=gens, quiet=True)
            val = [(r["generation"], r["mean"]["validation"]) for r in res.records if r["mean"]["validation"]]
            final = {}
            for d, spec in archs.items():
                ev = rc.evaluate_genome(spec, [res.mean_genome], "digits", steps=10, replicas=args.replicas,
                                        seed=eval_seed, batch_size=32, backend=args.backend, eval_steps="end")
                final[d] = float(np.asarray(ev["mean"])[0, -1])
            runs.setdefault(kind, []).append({
                "seed": s, "generations": gens, "final_training_fitness": res.records[-1]["mean"]["fitness"],
                "curve": rc.curve(res.records)["mean_genome_train"],
                "validation_generations": [g for g, _ in val],
                "validation": {lab: [v[lab] for _, v in val] for lab in val[0][1]} if val else {},
                "final": final, "genome": res.mean_genome.model_dump(mode="json")["groups"]})
            bar.update(1)
    bar.close()

    final = {k: {d: rc.spread([r["final"][d] for r in rs]) for d in EVAL_DEPTHS} for k, rs in runs.items()}
    # the 10-layer accuracy of the 4-layer runs at budgets 150 (repro_depth.py's), 300, ... generations
    long = runs["4 hidden, long"]
    budgets = [g for g in long[0]["validation_generations"] if g > 0]
    by_budget = {str(g): rc.spread([r["validation"]["digits_10_hidden"][r["validation_generations"].index(g)]
                                    for r in long]) for g in budgets}
    first, last = str(budgets[0]), str(budgets[-1])
    ref = str(min(budgets, key=lambda g: abs(g - 150)))
    growth = rc.separation(by_budget[last]["values"], by_budget[ref]["values"])

    plt = rc.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.9))
    for kind, rs in runs.items():
        for j, r in enumerate(rs):
            for lab, ls in (("digits_10_hidden", "-"), ("digits_4_hidden", ":")):
                if lab in r["validation"]:
                    c = "tab:red" if kind.startswith("10") else "tab:blue"
                    axes[0].plot(r["validation_generations"], r["validation"][lab], color=c, ls=ls, lw=1,
                                 label=f"{kind}: {lab.split('_')[1]} hidden" if j == 0 else None)
    axes[0].axvline(150, color="gray", lw=0.8, ls="--")
    axes[0].text(152, 0.02, "repro_depth.py budget", fontsize=7, color="gray")
    axes[0].set(xlabel="generation (population %d)" % args.popsize, ylabel="test accuracy after 10 steps",
                title="mean genome during meta-training (4 inits per point)", ylim=(0, 1))
    axes[0].legend(fontsize=7)
    axes[0].grid(alpha=0.3)
    xs = np.arange(len(EVAL_DEPTHS))
    for i, (kind, f) in enumerate(final.items()):
        axes[1].bar(xs + (i - 0.5) * 0.4, [f[d]["mean"] for d in EVAL_DEPTHS], 0.4,
                    yerr=[f[d]["std"] for d in EVAL_DEPTHS], capsize=2, label=kind)
    axes[1].set_xticks(xs, [f"{d} hidden" for d in EVAL_DEPTHS])
    axes[1].set(ylim=(0, 1), title=f"final mean genomes ({args.replicas} inits, mean ± std over seeds)")
    axes[1].legend(fontsize=8)
    axes[1].grid(alpha=0.3, axis="y")
    f1 = rc.save_figure(fig, Path(args.fig_dir) / f"{NAME}.png")

    scale = {"seeds": len(seeds), "generations_4_hidden": args.generations,
             "generations_10_hidden": args.direct_generations, "popsize": args.popsize, "width": args.width,
             "unroll": 10, "validation_every": args.every, "validation_replicas": 4, "replicas": args.replicas,
             "dataset": "8x8 digits", "reference": "tools/repro_depth.py: 150 generations x 32 on 4 layers",
             "paper": "MNIST, gradient meta-training on 2-4 layers, evaluated on up to 10 layers (Fig. 10)"}
    results = {"final": final, "ten_hidden_by_budget": by_budget, "reference_budget": int(ref),
               "first_budget": int(first), "last_budget": int(last), "growth_last_vs_reference": growth,
               "runs": runs}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"meta_training": seeds, "evaluation": eval_seed},
                                        scale, results, [f1]))
    for kind, f in final.items():
        print(f"{kind:18s} " + " ".join(f"{d}:{f[d]['mean']:.3f}±{f[d]['std']:.3f}" for d in EVAL_DEPTHS))
    print(f"10 hidden during the 4-layer runs: gen {ref}: {by_budget[ref]['mean']:.3f}, gen {last}: "
          f"{by_budget[last]['mean']:.3f}; wrote {args.out} ({timer.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
