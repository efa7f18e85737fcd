#!/usr/bin/env python
"""Fig. 7 (paper Sec. 4.4): CMA-ES against gradient meta-training on the digits, at the same
wall-clock budget per run, best of N runs each.

Both arms run the protocol of ``specs/experiments/repro_digits_es.json`` (tools/repro_digits_es.py:
two states, the general rule family, a random initial genome, no curriculum; every evaluation
trains 15 batches of 128 from fresh synapses and scores 20 query batches of 128 of the
*training split*) with one hidden layer of ``--hidden`` neurons:

- **CMA-ES**: population ``--popsize`` (80, the paper's), fitness = accuracy (non-differentiable);
- **gradient**: Adam on the exact meta-gradient of the softmax cross-entropy of the same query
  batches (Sec. 3.3), clipping 10, learning rate ``--learning-rate``, one run (no synchronisation).

Run ``i`` of both arms starts from the same random genome (seed ``seed + i``). The runs
alternate (CMA-ES run 0, gradient run 0, CMA-ES run 1, ...) in one process, so both arms get
the same machine; each run steps until ``--budget`` seconds of wall clock have passed (counting
everything: set-up, JAX compilation, the initial evaluation) and ends after the step under way.
No test data is looked at during the runs. Then every run's final genome (CMA-ES: its mean;
gradient: its current genome) is trained from fresh synapses: on the training split for the
selection ("best of N" = the highest training-split accuracy after 15 steps), and on the test
split up to ``--unrolls`` steps for the report (Fig. 7 right).

    python tools/repro_es_vs_gradient.py                            # 3 runs per arm x 180 s
    python tools/repro_es_vs_gradient.py --runs 4 --budget 150      # docs/results.md (20 min)
    python tools/repro_es_vs_gradient.py --runs 8 --budget 600      # the paper's best of 8
    python tools/repro_es_vs_gradient.py --quick                    # smoke run

Writes docs/figures/repro_es_vs_gradient.png and docs/results/repro_es_vs_gradient.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import repro_common as rc

NAME = "repro_es_vs_gradient"
EXPERIMENT = rc.SPECS / "experiments" / "repro_digits_es.json"
ARMS = ("cma_es", "gradient")
LABELS = {"cma_es": "CMA-ES (accuracy fitness)", "gradient": "gradient (meta-loss: cross-entropy)"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    p.add_argument("--runs", type=int, default=3, help="runs per arm (default 3)")
    p.add_argument("--budget", type=float, default=180.0, help="wall-clock seconds per run (default 180)")
    p.add_argument("--hidden", type=int, default=64, help="hidden neurons (default 64; the paper's 512)")
    p.add_argument("--popsize", type=int, default=80, help="CMA-ES population (default 80, the paper's)")
    p.add_argument("--learning-rate", type=float, default=0.01, help="Adam's learning rate (default 0.01)")
    p.add_argument("--unrolls", type=int, default=45, help="test accuracy up to this many steps (default 45)")
    p.add_argument("--replicas", type=int, default=4, help="synapse initialisations of the evaluations (default 4)")
    return p.parse_args(argv)


def doc_for(args, arm: str, seed: int) -> dict:
    net = rc.load_spec(rc.SPECS / "digits_es_512.json").model_dump(mode="json", by_alias=True)
    net["populations"][1]["size"] = args.hidden
    over = dict(network=net, seed=seed, genome={"init": {"kind": "random", "seed": seed}},
                validation={"every": 10**6, "replicas": 1},
                execution={"backend": args.backend, "dtype": "float32", "memory_budget_mb": 2048})
    if arm == "gradient":
        over["strategy"] = {"name": "gradient", "options": {"learning_rate": args.learning_rate, "runs": 1}}
    else:
        over["strategy"] = {"name": "cma_es", "sigma0": 0.1, "popsize": args.popsize}
    if args.quick:
        over["inner"] = {"steps": 3, "batch_size": 32, "query_batches": 2, "replicas": 1}
    doc = rc.experiment_dict(EXPERIMENT, **over)
    doc["strategy"] = over["strategy"]  # replaced, not merged with the document's CMA-ES settings
    return doc


def budget_run(doc: dict, budget: float) -> dict:
    """Meta-train ``doc`` until ``budget`` seconds have passed (the step under way finishes):
    the final genome (CMA-ES mean / gradient current genome), the steps done, and the training
    fitness of the current genome against elapsed seconds."""
    from blursim.meta import prepare_experiment
    from blursim.meta.trainer import make_trainer

    t0 = time.perf_counter()
    setup = prepare_experiment(doc)
    trainer = make_trainer(setup)
    gen = trainer.start()
    state = gen.state
    secs, fit, unroll = [time.perf_counter() - t0], [gen.record["mean"]["fitness"]], gen.record["unroll"]
    while time.perf_counter() - t0 < budget:
        gen = trainer.step(state)
        state = gen.state
        rec = gen.record
        secs.append(time.perf_counter() - t0)
        # ES: the mean genome, measured with the generation's seeds; gradient (one run): the
        # genome the step's gradient was taken at, from that forward pass (training split)
        fit.append(rec["mean"]["fitness"] if rec.get("meta_loss") is None else rec["fitness"]["best"])
    return {"setup": setup, "genome": trainer.genome(gen.mean_x, kind="mean", generation=state.generation),
            "steps": state.generation, "seconds": time.perf_counter() - t0, "unroll": unroll,
            "trajectory": {"seconds": [round(s, 2) for s in secs], "training_fitness": fit}}


def compare_arms(args, seeds: list[int]) -> dict:
    """Both arms, run ``i`` of each from seed ``seeds[i]``, alternating on the same machine for
    ``args.budget`` seconds each; then every final genome trained from fresh synapses: on the
    training split for the selection (best of N), on the test split for the report. Returns
    the ``results`` section of the JSON (per run: steps, seconds, accuracies, trajectory,
    genome)."""
    runs: dict[str, list] = {a: [] for a in ARMS}
    bar = rc.progress(2 * args.runs, "runs", args.quiet, "run")
    for s in seeds:  # alternating arms: the same machine for both
        for arm in ARMS:
            runs[arm].append(budget_run(doc_for(args, arm, s), args.budget))
            bar.update(1)
    bar.close()

    net = runs["gradient"][0]["setup"].networks[0]
    T = runs["gradient"][0]["unroll"]
    batch = doc_for(args, "gradient", seeds[0])["inner"]["batch_size"]
    genomes = [r["genome"] for a in ARMS for r in runs[a]] + [runs["gradient"][0]["setup"].base_genome]
    # selection on the training split (accuracy after T steps), then the test curves
    sel = rc.evaluate_genome(net, genomes, "digits", steps=T, replicas=args.replicas, seed=2000 + args.seed,
                             batch_size=batch, backend=args.backend, eval_steps="end", split="train")
    ev = rc.evaluate_genome(net, genomes, "digits", steps=args.unrolls, replicas=args.replicas,
                            seed=1000 + args.seed, batch_size=batch, backend=args.backend)
    steps = ev["steps"].tolist()
    out: dict = {}
    for a_i, arm in enumerate(ARMS):
        rows = []
        for j, r in enumerate(runs[arm]):
            k = a_i * args.runs + j
            rows.append({"seed": seeds[j], "steps": r["steps"], "seconds": round(r["seconds"], 1),
                         # CMA-ES: popsize accuracy evaluations per generation; gradient: one
                         # forward + backward pass through the unroll per step (one run)
                         "genome_evaluations": r["steps"] * (args.popsize if arm == "cma_es" else 1),
                         "train_accuracy_at_T": float(sel["mean"][k, -1]),
                         "test_accuracy_at_T": float(ev["mean"][k, steps.index(T)]),
                         "test_accuracy_final": float(ev["mean"][k, -1]), "test_curve": ev["mean"][k],
                         "test_std": ev["std"][k], "diverged": int(ev["diverged"][k]),
                         "trajectory": r["trajectory"],
                         "genome": r["genome"].model_dump(mode="json")["groups"]})
        best = int(np.argmax([x["train_accuracy_at_T"] for x in rows]))
        out[arm] = {"runs": rows, "best_run": best, "best_seed": rows[best]["seed"],
                    "best_test_at_T": rows[best]["test_accuracy_at_T"],
                    "best_test_final": rows[best]["test_accuracy_final"],
                    "test_at_T": rc.spread([x["test_accuracy_at_T"] for x in rows]),
                    "steps_per_run": rc.spread([x["steps"] for x in rows])}
    init = len(genomes) - 1
    results = {"paper_cmaes_accuracy": 0.84, "unroll": T, "steps": steps, "arms": out,
               "initial_genome": {"seed": seeds[0], "test_at_T": float(ev["mean"][init, steps.index(T)]),
                                  "test_curve": ev["mean"][init]},
               "test_at_T_separation": rc.separation([x["test_accuracy_at_T"] for x in out["gradient"]["runs"]],
                                                     [x["test_accuracy_at_T"] for x in out["cma_es"]["runs"]])}
    return results


def quick(args, argv) -> None:
    """The ``--quick`` smoke settings (this script's and repro_es_vs_gradient_fair.py's)."""
    args.runs, args.budget, args.hidden, args.popsize, args.unrolls, args.replicas = 2, 0.3, 8, 6, 4, 2
    args.runs = rc.explicit(argv, "--runs", args.runs)  # a one-run smoke test stays one run


def main(argv=None) -> int:
    args = parse_args(argv)
    timer = rc.Timer()
    if args.quick:
        quick(args, argv)
    seeds = [args.seed + i for i in range(args.runs)]
    rc.estimate(f"{args.runs} run(s) per arm x {args.budget:g} s, then the evaluations",
                2 * args.runs * (args.budget + 5) + 30)

    results = compare_arms(args, seeds)
    out = results["arms"]
    T = results["unroll"]

    f1 = plot(results, args.budget, args.replicas, Path(args.fig_dir) / f"{NAME}.png")

    scale = {"runs_per_arm": args.runs, "budget_seconds_per_run": args.budget,
             "network": f"64 -> {args.hidden} -> 10 (specs/digits_es_512.json with {args.hidden} hidden)",
             "cma_es_popsize": args.popsize, "gradient_learning_rate": args.learning_rate,
             "inner": doc_for(args, "gradient", seeds[0])["inner"], "eval_replicas": args.replicas,
             "paper": "MNIST 14x14, hidden 512, CMA-ES pop. 80 for 400 steps against gradient meta-training, "
                      "best of 8 runs each"}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"runs": seeds, "selection": 2000 + args.seed,
                                                            "evaluation": 1000 + args.seed},
                                        scale, results, [f1]))
    print("test accuracy after {} steps of the best run (of {}) per arm: CMA-ES {:.3f} ({} generations), "
          "gradient {:.3f} ({} steps); wrote {} ({:.0f} s)".format(
              T, args.runs, out["cma_es"]["best_test_at_T"], out["cma_es"]["runs"][out["cma_es"]["best_run"]]["steps"],
              out["gradient"]["best_test_at_T"], out["gradient"]["runs"][out["gradient"]["best_run"]]["steps"],
              args.out, timer.seconds))
    return 0


def plot(results: dict, budget: float, replicas: int, path: Path) -> Path:
    """Fig. 7: every run of both arms, during meta-training (training-split fitness against wall
    clock) and after it (test curves of each run's final genome, mean over ``replicas``
    initialisations); the run each arm would pick on the training split is drawn bold."""
    plt = rc.pyplot()
    T, steps, out = results["unroll"], results["steps"], results["arms"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.4))
    colors = {"cma_es": "tab:orange", "gradient": "tab:blue"}
    for arm in ARMS:
        n = len(out[arm]["runs"])
        for j, x in enumerate(out[arm]["runs"]):
            tr = x["trajectory"]
            bold = j == out[arm]["best_run"]
            axes[0].plot(tr["seconds"], tr["training_fitness"], color=colors[arm], lw=1.4 if bold else 0.6,
                         alpha=1 if bold else 0.5, label=f"{LABELS[arm]}: {n} runs" if bold else None)
            axes[1].plot(steps, x["test_curve"], color=colors[arm], lw=2 if bold else 0.9, alpha=1 if bold else 0.7,
                         label=(f"{LABELS[arm].split(' (')[0]}: each of {n} runs (bold: best on training split, "
                                f"seed {x['seed']})") if bold else None)
    axes[1].plot(steps, results["initial_genome"]["test_curve"], color="gray", ls=":", label="initial random genome")
    axes[0].set(xlabel="wall-clock seconds (one pinned core)", ylabel=f"training-split accuracy after {T} steps",
                title=f"meta-training, {budget:g} s per run", ylim=(0, 1))
    axes[1].axvline(T, color="gray", ls=":", lw=0.8)
    axes[1].set(xlabel="training step (batches of 128)", ylabel="test accuracy (8x8 digits)",
                title=f"every run's final genome ({replicas} initialisations each; dotted: unroll)", ylim=(0, 1))
    for a in axes:
        a.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False)
        a.grid(alpha=0.3)
        a.title.set_fontsize(11)
    fig.tight_layout()
    return rc.save_figure(fig, path)


def replot(doc: dict, fig_dir: Path) -> list[Path]:
    """The figure again from the JSON (:func:`plot`), for ``make_results.py --figures``."""
    return [plot(doc["results"], doc["scale"]["budget_seconds_per_run"], doc["scale"]["eval_replicas"],
                 Path(fig_dir) / f"{NAME}.png")]


if __name__ == "__main__":
    raise SystemExit(main())
