#!/usr/bin/env python
"""Sec. 4.4 / Fig. 7 analogue: CMA-ES finds a genome from scratch with a non-differentiable
accuracy fitness (paper: 0.84 on 14x14 MNIST after 400 generations).

The paper's protocol on the bundled 8x8 digits (``specs/experiments/repro_digits_es.json``):
one hidden layer of 512, two states, the general rule family, a random initial
genome, CMA-ES with a population of 80, no curriculum; every fitness evaluation
trains 15 batches of 128 from fresh synapses and scores accuracy on 20 query
batches of 128 drawn from the *training split*. The held-out test split is only
looked at for reporting: the validation curve during the run, and at the end the
test accuracy versus unroll step (0 .. ``--unrolls``) of the final generation's
best candidate and of the CMA-ES mean genome.

    python tools/repro_digits_es.py                       # the paper's 400 generations (about 50 min on 2 cores)
    python tools/repro_digits_es.py --generations 100     # what fits a short CPU budget
    python tools/repro_digits_es.py --backend cupy        # on a GPU
    python tools/repro_digits_es.py --quick               # smoke run (tiny population and network)

Writes docs/figures/repro_digits_es.png, the genomes to
docs/results/repro_digits_es_{best,mean}_genome.json and the numbers to
docs/results/repro_digits_es.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import repro_common as rc

NAME = "repro_digits_es"
EXPERIMENT = rc.SPECS / "experiments" / "repro_digits_es.json"
PAPER = 0.84


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    p.add_argument("--generations", type=int, default=400, help="generations (default 400, the paper's)")
    p.add_argument("--unrolls", type=int, default=45, help="evaluate test accuracy up to this many steps (default 45)")
    p.add_argument("--replicas", type=int, default=4, help="synapse initialisations of the final evaluation (default 4)")
    p.add_argument("--run-dir", default=None,
                   help="also keep the resumable run directory (log, checkpoint) here; default: none")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    timer = rc.Timer()
    over = dict(seed=args.seed, generations=args.generations,
                execution={"backend": args.backend, "dtype": "float32", "memory_budget_mb": 2048})
    if args.quick:
        args.generations, args.unrolls, args.replicas = 2, 5, 2
        over.update(generations=2, strategy={"popsize": 8}, validation={"every": 1, "replicas": 1},
                    inner={"steps": 3, "batch_size": 32, "query_batches": 2, "replicas": 1})
        over["network"] = {**rc.load_spec(rc.SPECS / "digits_es_512.json").model_dump(mode="json", by_alias=True)}
        over["network"]["populations"][1]["size"] = 16
    doc = rc.experiment_dict(EXPERIMENT, **over)
    per_gen = rc.seconds_per_generation(doc, args.quick)
    rc.estimate(f"{args.generations} generations, population {doc['strategy']['popsize']}",
                per_gen * args.generations * 1.05 + 20)

    res = rc.run_meta(doc, generations=args.generations, quiet=args.quiet, out=args.run_dir)
    net = res.setup.networks[0]
    genomes = {"best": res.best_genome, "mean": res.mean_genome}
    stem = Path(args.out).with_suffix("")
    for k, g in genomes.items():
        rc.write_text(f"{stem}_{k}_genome.json", rc.genome_json(g))

    ev = rc.evaluate_genome(net, [genomes["best"], genomes["mean"], res.setup.base_genome], "digits",
                            steps=args.unrolls, replicas=args.replicas, seed=1000 + args.seed,
                            batch_size=doc["inner"]["batch_size"], backend=args.backend)
    c = rc.curve(res.records)
    T = doc["inner"]["steps"]
    steps = ev["steps"].tolist()
    at = {name: {"at_T": float(ev["mean"][i, steps.index(T)]) if T in steps else None,
                 "final": float(ev["mean"][i, -1]), "max": float(ev["mean"][i].max()),
                 "curve": ev["mean"][i], "std": ev["std"][i], "diverged": int(ev["diverged"][i])}
          for i, name in enumerate(["best_genome", "mean_genome", "initial_genome"])}
    fb = [v for v in c["fitness_best"] if v is not None]
    results = {
        "paper_accuracy": PAPER,
        "paper_setting": "MNIST 14x14, 400 generations, population 80, hidden 512, 2 states",
        "final_generation": res.records[-1]["generation"],
        "final_fitness_best": fb[-1] if fb else None,
        "final_fitness_mean_genome": res.records[-1]["mean"]["fitness"],
        "max_fitness_best": max(fb) if fb else None,
        "unroll": T,
        "test_accuracy_vs_step": {"steps": steps, **at},
        "curve": c,
    }

    plt = rc.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    a = axes[0]
    gens = c["generation"]
    a.plot(gens, c["fitness_best"], label="population best (train split)")
    a.plot(gens, c["fitness_median"], label="population median (train split)")
    a.plot(gens, c["mean_genome_train"], label="CMA-ES mean genome (train split)")
    vg = [(g, v) for g, v in zip(gens, c["mean_genome_validation"]) if v is not None]
    if vg:
        a.plot(*zip(*vg), "o-", ms=3, label="mean genome, held-out test split")
    a.axhline(PAPER, color="k", ls="--", lw=0.8, label="paper: 0.84 after 400 gen. (MNIST 14x14)")
    a.set(xlabel="generation", ylabel=f"accuracy after {T} steps", title="meta-training (CMA-ES, pop. 80, hidden 512)",
          ylim=(0, 1))
    a.legend(fontsize=7)
    a.grid(alpha=0.3)
    a = axes[1]
    for name, lab in (("best_genome", "final best candidate"), ("mean_genome", "final CMA-ES mean"),
                      ("initial_genome", "initial random genome")):
        m, s = np.asarray(at[name]["curve"]), np.asarray(at[name]["std"])
        a.plot(steps, m, label=lab)
        a.fill_between(steps, m - s, m + s, alpha=0.2)
    a.axvline(T, color="gray", ls=":", lw=0.8, label=f"meta-training unroll T={T}")
    a.axhline(PAPER, color="k", ls="--", lw=0.8)
    a.set(xlabel="training step (batches of 128)", ylabel="test accuracy (8x8 digits)",
          title=f"trained from fresh synapses ({args.replicas} inits)", ylim=(0, 1))
    a.legend(fontsize=7)
    a.grid(alpha=0.3)
    f1 = rc.save_figure(fig, Path(args.fig_dir) / f"{NAME}.png")

    digits = res.setup.train_tasks[0].dataset
    n_train, n_test = digits.x_train.shape[0], digits.x_test.shape[0]
    scale = {"generations": args.generations, "paper_generations": 400,
             "popsize": doc["strategy"]["popsize"], "network": "specs/digits_es_512.json (64 -> 512 -> 10)" if not args.quick else "64 -> 16 -> 10 (quick)",
             "inner": doc["inner"], "dataset": f"sklearn 8x8 digits ({n_train} train / {n_test} test), not 14x14 MNIST",
             "seconds_per_generation_measured": round(per_gen, 2)}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"root": args.seed, "evaluation": 1000 + args.seed},
                                        scale, results, [f1]))
    print(f"generation {results['final_generation']}: best fitness {results['final_fitness_best']:.3f}; "
          f"test accuracy after {T} steps: best genome {at['best_genome']['at_T']:.3f}, mean genome "
          f"{at['mean_genome']['at_T']:.3f} (paper {PAPER} on MNIST 14x14 after 400 gen.); wrote {args.out} "
          f"({timer.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
