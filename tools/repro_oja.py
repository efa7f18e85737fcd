#!/usr/bin/env python
"""Oja's term and synapse normalisation over long runs (paper App. C.5 Fig. 15, App. C.6
Fig. 16): do synapses explode without Oja's rule, and does synapse normalisation keep a
genome learning far beyond the unroll it was meta-trained for?

Six cells, ``--seeds`` (3) meta-training seeds each: Oja's term off (``rules.oja: none``) or
on (``rules.oja: weights``, eq. 8's first term with a learnable multiplier: ``oja_alpha`` is
**searched** by CMA-ES, starting at ``--oja-start`` within [0, 2]) x synapse normalisation
``none``, ``activations`` (App. C.6: W / ||W|| per postsynaptic neuron only when computing
activations; the stored synapses are untouched) or ``stored`` (written back every step).
Network 64 -> 32 -> 10 on the 8x8 digits, general rules (relu o tanh, normalisation on both
passes, additive, untied multi-channel synapses); CMA-ES, population ``--popsize``,
``--generations`` generations, unroll 10 -> 20 by curriculum (the paper's n_target),
training-split fitness. Then every final mean genome trains fresh networks for
``--long-steps`` (1000 >= the paper's 800) steps of 32 digits, ``--replicas``
initialisations; a monitor (:mod:`blursim.sim.monitor`, ``norms:PROJ``) records the stored
synapse norms sqrt(sum_pre W^2) every 10 steps, and the test accuracy is measured along the
way.

    python tools/repro_oja.py                        # 6 cells x 3 seeds x 100 generations + 1000-step runs (about 15 min on 2 shared cores)
    python tools/repro_oja.py --quick

Writes docs/figures/repro_oja.png and docs/results/repro_oja.json.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

import repro_common as rc

NAME = "repro_oja"
SYN_NORMS = ["none", "activations", "stored"]
OJA = ["none", "weights"]
PROJS = ["in->h1", "h1->out"]
REPORT_STEPS = [10, 20, 100, 200, 500, 800, 1000]


def label(oja: str, syn: str) -> str:
    return f"{'Oja' if oja == 'weights' else 'no Oja'}, synapse norm {syn}"


def network(oja: str, syn: str, width: int) -> dict:
    return rc.mlp_network(f"oja_{oja}_{syn}", 64, [width], 10, rules={"oja": oja, "synapse_normalization": syn})


def experiment(oja: str, syn: str, seed: int, args) -> dict:
    fields = rc.CORE_FIELDS + (["oja_alpha"] if oja == "weights" else [])
    bounds = {**rc.CORE_BOUNDS, **({"oja_alpha": [0, 2]} if oja == "weights" else {})}
    every = max(1, args.generations // 3)
    return rc.meta_experiment(f"{NAME}_{oja}_{syn}", network(oja, syn, args.width),
                              {"kind": "random", "seed": seed}, rc.with_seed(args, seed), fields=fields,
                              bounds=bounds, set_={"oja_alpha": args.oja_start} if oja == "weights" else None,
                              curriculum={"increment": 5, "every": every, "max_steps": 20})


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    rc.add_es_args(p, seeds=3, generations=100, popsize=24, replicas=4,
                   replicas_help="initialisations of the long runs")
    p.add_argument("--oja-start", type=float, default=0.05, help="initial oja_alpha of the Oja cells (default 0.05)")
    p.add_argument("--long-steps", type=int, default=1000, help="training steps of the long runs (default 1000)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from blursim.spec import NetworkSpec

    timer = rc.Timer()
    if args.quick:
        args.seeds, args.generations, args.popsize, args.long_steps, args.replicas = 1, 2, 4, 40, 2
        args.seeds = rc.explicit(argv, "--seeds", args.seeds)  # a one-run smoke test stays one run
    seeds = [args.seed + i for i in range(args.seeds)]
    cfgs = list(itertools.product(OJA, SYN_NORMS))
    per_gen = sum(rc.seconds_per_generation(experiment(o, s, seeds[0], args), args.quick) for o, s in cfgs) / len(cfgs)
    rc.estimate(f"{len(cfgs)} cells x {len(seeds)} seeds x {args.generations} generations + "
                f"{args.long_steps}-step runs",
                per_gen * 1.4 * args.generations * len(cfgs) * len(seeds) + len(cfgs) * args.long_steps * 0.05 + 30)

    cells = {label(o, s): (lambda seed, o=o, s=s: experiment(o, s, seed, args)) for o, s in cfgs}
    runs = rc.run_cells(cells, seeds, args, lambda lab, res: {}, "meta-train")

    eval_seed = 1000 + args.seed
    steps_eval = sorted({0, 1, 2, 5} | {s for s in [10, 20, 50] + list(range(100, args.long_steps + 1, 100))
                                        if s <= args.long_steps} | {args.long_steps})
    report = [s for s in REPORT_STEPS if s <= args.long_steps] or [args.long_steps]
    long = {}
    bar = rc.progress(len(cfgs), "long runs", args.quiet, "cell")
    for o, s in cfgs:
        lab = label(o, s)
        from blursim.spec import GenomeSpec

        genomes = [GenomeSpec(k=2, groups=r["genome"]) for r in runs[lab]]
        spec = NetworkSpec.model_validate(network(o, s, args.width))
        ev = rc.evaluate_genome(spec, genomes, "digits", steps=args.long_steps, replicas=args.replicas,
                                seed=eval_seed, batch_size=32, backend=args.backend, eval_steps=steps_eval,
                                record=[f"norms:{p}" for p in PROJS], record_steps=10)
        acc = np.asarray(ev["mean"])  # (seeds, E)
        st = [int(x) for x in ev["steps"]]
        norms = {}
        for p in PROJS:
            rec = ev["recordings"][f"norms:{p}"]  # (step, species, replica, post, channel)
            with np.errstate(all="ignore"):
                v = np.asarray(rec.values, dtype=np.float64)
                per_seed = np.nanmean(v, axis=(2, 3, 4)).T  # (seeds, recorded steps): mean norm
            norms[p] = {"steps": rec.coords["step"].tolist(),
                        "mean_over_seeds": np.nanmean(per_seed, axis=0), "per_seed": per_seed}
        long[lab] = {
            "oja": o, "synapse_normalization": s, "steps": st, "accuracy_per_seed": acc,
            "accuracy_mean": acc.mean(axis=0), "accuracy_std": acc.std(axis=0),
            "at": {str(t): rc.spread(acc[:, st.index(t)]) for t in report},
            "peak": rc.spread(acc.max(axis=1)),
            "norms": norms,
            "final_norm": {p: rc.spread(norms[p]["per_seed"][:, -1]) for p in PROJS},
            "diverged_replicas": [int(d) for d in ev["diverged"]],
            "oja_alpha": [abs(r["genome"]["default"].get("oja_alpha") or 0.0) for r in runs[lab]],
        }
        bar.update(1)
    bar.close()

    f1 = plot(long, Path(args.fig_dir) / f"{NAME}.png")

    scale = {"cells": len(cfgs), "seeds_per_cell": len(seeds), "generations": args.generations,
             "popsize": args.popsize, "network": f"64 -> {args.width} -> 10 (general rules)",
             "unroll": "10 -> 20", "long_steps": args.long_steps, "replicas": args.replicas,
             "oja_alpha": f"searched in [0, 2] from {args.oja_start}", "dataset": "8x8 digits",
             "paper": "MNIST, best of 10 runs per variant, 800 steps, labels randomised after step 500 "
                      "(not done here)"}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"meta_training": seeds, "evaluation": eval_seed},
                                        scale, {"cells": long, "report_steps": report, "runs": runs}, [f1]))
    for lab, e in long.items():
        print(f"{lab:36s} " + " ".join(f"{t}:{e['at'][t]['mean']:.3f}" for t in map(str, report))
              + f"  norm {e['final_norm'][PROJS[0]]['mean']:.3g}")
    print(f"wrote {args.out} ({timer.seconds:.0f} s)")
    return 0


def plot(cells: dict, path: Path) -> Path:
    """The long runs of every cell (``results.cells`` of the JSON): test accuracy (mean over seeds,
    thin: each seed) and the stored synapse norm of each projection, each seed drawn on its own
    (a mean would be one exploding seed); a seed whose norm overflowed ends in a cross at its last
    finite value, and the panel says how many did."""
    plt = rc.pyplot()
    labels = list(cells)
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.6), gridspec_kw={"height_ratios": [1, 1]})
    for lab, e in cells.items():
        c, ls = f"C{SYN_NORMS.index(e['synapse_normalization'])}", "-" if e["oja"] == "weights" else "--"
        ax = axes[0, 0] if e["oja"] == "none" else axes[1, 0]
        st = np.asarray(e["steps"], dtype=float)
        for row in np.asarray(e["accuracy_per_seed"], dtype=float):
            ax.plot(st, row, color=c, ls=ls, lw=0.6, alpha=0.5)
        ax.plot(st, np.asarray(e["accuracy_mean"], dtype=float), color=c, ls=ls, lw=2, label=lab)
        for p, ax_n in zip(PROJS, axes[0 if e["oja"] == "none" else 1, 1:]):
            n = e["norms"][p]
            steps = np.asarray(n["steps"], dtype=float)
            for row in n["per_seed"]:
                v = np.array([np.nan if x is None else x for x in row], dtype=float)
                ok = np.isfinite(v) & (v > 0)
                ax_n.plot(steps[ok], v[ok], color=c, ls=ls, lw=1.1)
                if not ok.all() and ok.any():
                    last = np.flatnonzero(ok)[-1]
                    ax_n.plot(steps[last], v[last], "x", color=c, ms=8, mew=2)
    for r, title in ((0, "no Oja term"), (1, "Oja's term searched by CMA-ES")):
        ax = axes[r, 0]
        ax.axvline(20, color="gray", lw=0.8, ls=":")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(0, max(max(e["steps"]) for e in cells.values()))
        ax.set(xlabel="training step", ylabel="digits test accuracy", ylim=(0, 1),
               title=f"{title}: long runs (thick: mean over seeds; dotted: unroll 20)")
        ax.legend(fontsize=9, loc="upper left")
        for p, ax_n in zip(PROJS, axes[r, 1:]):
            n_over = sum(1 for e in cells.values() if (e["oja"] == "none") == (r == 0)
                         for row in e["norms"][p]["per_seed"]
                         if any(x is None or not np.isfinite(x) for x in row))
            ax_n.set(yscale="log", xlabel="training step", ylabel="stored synapse norm (mean over neurons)",
                     title=f"{title}: {p}, each seed" + (f" ({n_over} overflowed: x)" if n_over else ""))
    for ax in axes.ravel():
        ax.grid(alpha=0.3)
        ax.title.set_fontsize(10)
    fig.suptitle("colour: synapse normalisation (blue none, orange activations, green stored); "
                 "solid: Oja's term searched, dashed: no Oja", fontsize=10)
    fig.tight_layout()
    return rc.save_figure(fig, path)


def replot(doc: dict, fig_dir: Path) -> list[Path]:
    """The figure again from the JSON (:func:`plot`), for ``make_results.py --figures``."""
    return [plot(doc["results"]["cells"], Path(fig_dir) / f"{NAME}.png")]


if __name__ == "__main__":
    raise SystemExit(main())
