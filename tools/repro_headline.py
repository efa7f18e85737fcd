#!/usr/bin/env python
"""The paper's headline (abstract, Sec. 4.2, Fig. 5): genomes meta-trained on the digits train
networks on datasets they never saw, against SGD / momentum / Adam tuned per horizon on a
validation split.

1. ``meta`` phase: for every number of states in ``--states`` (2, 4) and every seed
   ``seed .. seed + --seeds - 1``, meta-train a genome by gradient through the unroll (Sec. 3.3)
   on the training split of the ten-class digits: the network of
   ``specs/repro_digits_blur_64.json`` (64 -> ``--hidden`` -> 10, general rules) with ``k``
   states, random initial genome (seed), Adam (``--learning-rate``) on the meta-gradient,
   ``--sync-runs`` synchronised runs, curriculum unroll 10 -> ``--max-unroll`` (+``--increment``
   every ``--stage-steps`` steps; the paper: +5, 8 runs, 10,000 steps per stage, 4 states,
   256/512 hidden). Runs go seed by seed, every ``k`` of a seed before the next seed, so a run
   cut short still holds genomes of every ``k``. Each final current genome is written to ``--genome-dir`` as soon as its run ends,
   with its meta-training record (``run_k<k>_seed<s>.json``).
2. ``compare`` phase: every genome found in ``--genome-dir`` (grouped by states) against the
   three optimizers through the rule zoo's ``blursim compare`` (:mod:`blursim.compare`, via
   :func:`repro_common.compare_zoo`; ``--engine repro``: the older
   :func:`repro_common.compare_tuned`): unseen image sets
   ``font_letters`` and ``font_digits`` (8x8, the digits' input size, and letters at 16x16),
   ``mnist1d`` (to ``--mnist1d-steps`` steps, where tuned methods separate), ``breast_cancer``
   and ``xor``; 20 % of each training split is the validation split that chooses each
   optimizer's rate per horizon over a half-decade grid extended while the best rate lies at
   its edge; the chosen rate and every genome then train on the whole training split with the
   same batches and initial weights (evaluation seeds ``1000 + seed`` and ``1001 + seed``,
   ``--replicas`` / 2 initialisations each) and are scored on the test split; per-seed
   differences with 95 % t-intervals over genomes (meta-training seeds) and, separately, over
   evaluation seeds. (``--engine repro`` trains everything on the 80 % fitting part, one
   evaluation seed, ``--replicas`` initialisations, intervals over initialisations.)

    python tools/repro_headline.py --phase meta --seeds 3 --states 2 4   # background run
    python tools/repro_headline.py --phase compare                       # on the genomes found
    python tools/repro_headline.py --quick                               # smoke run

Writes docs/results/repro_headline.json, docs/figures/repro_headline.png and
docs/figures/repro_headline_diff.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import repro_common as rc

NAME = "repro_headline"
EXPERIMENT = rc.SPECS / "experiments" / "repro_digits_curriculum.json"
HORIZONS = [5, 10, 20, 50, 100]
OPTIMIZERS = ["sgd", "momentum", "adam"]
#: label -> (dataset, options, relation to the digits)
TASKS = {
    "font_letters_8": ("font_letters", {"size": 8}, "unseen images: printed letters, 26 classes, 8x8"),
    "font_digits_8": ("font_digits", {"size": 8}, "unseen images: printed digits, 10 classes, 8x8"),
    "font_letters_16": ("font_letters", {"size": 16}, "unseen images: printed letters, 26 classes, 16x16"),
    "mnist1d": ("mnist1d", {}, "no shared data: 1-D signals, 10 classes"),
    "breast_cancer": ("breast_cancer", {}, "no shared data: tabular, 2 classes"),
    "xor": ("xor", {}, "no shared data: Boolean (Fig. 5)"),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    p.add_argument("--phase", choices=["all", "meta", "compare"], default="all",
                   help="meta: meta-train and write genomes; compare: compare the genomes found; all: both")
    p.add_argument("--genome-dir", default=str(rc.RESULTS / "headline"),
                   help="where genomes are written and read (default docs/results/headline)")
    p.add_argument("--states", type=int, nargs="+", default=[2, 4], help="numbers of states k (default 2 4)")
    p.add_argument("--seeds", type=int, nargs="+", default=[5, 3],
                   help="meta-training seeds for each of --states (one number: the same for all; default 5 3)")
    p.add_argument("--hidden", type=int, default=64, help="hidden width (default 64; the paper 256/512)")
    p.add_argument("--sync-runs", type=int, default=2, help="synchronised runs (default 2; the paper's 8)")
    p.add_argument("--stage-steps", type=int, default=10,
                   help="gradient steps per unroll stage (default 10; the paper's 10,000)")
    p.add_argument("--max-unroll", type=int, default=50, help="last unroll of the curriculum (default 50)")
    p.add_argument("--increment", type=int, default=10,
                   help="unroll added per stage, from 10 (default 10: 5 stages; the paper's 5: 9 stages)")
    p.add_argument("--learning-rate", type=float, default=0.01, help="meta-training Adam rate (default 0.01)")
    p.add_argument("--replicas", type=int, default=4, help="initialisations per comparison (default 4)")
    p.add_argument("--mnist1d-steps", type=int, default=1000,
                   help="mnist1d's last horizon (default 1000; at 100 steps every method sits near 0.2)")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS),
                   help="comparison tasks (default all)")
    p.add_argument("--variant", default="",
                   help="a second run beside the page's: its name becomes repro_headline_VARIANT (its JSON "
                        "docs/results/repro_headline_VARIANT.json and figures), e.g. a larger scale for one k")
    rc.add_engine_arg(p)
    return p.parse_args(argv)


def network_doc(k: int, hidden: int) -> dict:
    d = json.loads((rc.SPECS / "repro_digits_blur_64.json").read_text())
    d["k"] = k
    d["name"] = f"headline_k{k}_h{hidden}"
    for pop in d["populations"]:
        if pop["role"] == "hidden":
            pop["size"] = hidden
    return d


def meta_doc(k: int, seed: int, args) -> dict:
    start, inc = (2, 1) if args.quick else (10, args.increment)
    stages = (args.max_unroll - start) // inc + 1
    over = dict(seed=seed, generations=stages * args.stage_steps, network=network_doc(k, args.hidden),
                genome={"init": {"kind": "random", "seed": seed}},
                curriculum={"increment": inc, "every": args.stage_steps, "max_steps": args.max_unroll},
                validation={"every": args.stage_steps, "replicas": 2},
                execution={"backend": args.backend, "dtype": "float32"})
    if args.quick:
        over["inner"] = {"steps": start, "batch_size": 16, "query_batches": 1, "query_batch_size": 32, "replicas": 1}
    doc = rc.experiment_dict(EXPERIMENT, **over)
    doc["network"] = over["network"]
    doc["strategy"] = {"name": "gradient", "options": {"learning_rate": args.learning_rate, "runs": args.sync_runs}}
    return doc


def meta_phase(args) -> list[dict]:
    out_dir = Path(args.genome_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    seeds = args.seeds * len(args.states) if len(args.seeds) == 1 else args.seeds
    if len(seeds) != len(args.states):
        raise SystemExit(f"repro_headline: --seeds gives {len(args.seeds)} numbers for {len(args.states)} --states; "
                         "give one number, or one per state count")
    todo = sorted(((s, k) for k, n in zip(args.states, seeds) for s in range(args.seed, args.seed + n)))
    total = 0.0
    for k in args.states:
        doc = meta_doc(k, args.seed, args)
        first, per_step = rc.gradient_step_seconds(doc, args.quick)
        stages = -(-doc["generations"] // args.stage_steps)
        per_run = per_step * rc.unroll_factor(doc, doc["generations"]) * doc["generations"]
        # JAX compiles each stage's unroll once per process: later runs with the same k reuse it
        total += stages * first + per_run * sum(1 for _, kk in todo if kk == k)
    rc.estimate(f"{len(todo)} gradient meta-training runs ({args.sync_runs} synchronised runs each)", total * 1.1)
    for s, k in todo:
        doc = meta_doc(k, s, args)
        t0 = time.perf_counter()
        res = rc.run_meta(doc, generations=doc["generations"], quiet=True)
        secs = time.perf_counter() - t0
        gpath = out_dir / f"genome_k{k}_seed{s}.json"
        rc.write_text(gpath, rc.genome_json(res.mean_genome))
        c = rc.curve(res.records)
        rec = {"states": k, "seed": s, "genome": gpath.name, "seconds": round(secs, 1),
               "steps": doc["generations"], "final_unroll": res.records[-1]["unroll"],
               "hidden": args.hidden, "sync_runs": args.sync_runs, "stage_steps": args.stage_steps,
               "learning_rate": args.learning_rate, "max_unroll": args.max_unroll, "increment": args.increment,
               "stage_end_validation": [(g, u, v) for g, u, v in zip(c["generation"], c["unroll"],
                                                                      c["mean_genome_validation"]) if v is not None],
               "machine": rc.machine()}
        rc.write_json(out_dir / f"run_k{k}_seed{s}.json", rec)
        runs.append(rec)
        print(f"[meta] k={k} seed={s}: {secs:.0f} s, final unroll {rec['final_unroll']}", flush=True)
    return runs


def load_genomes(args) -> tuple[dict, list[dict]]:
    from blursim.spec import load_genome, load_network

    methods, runs = {}, []
    recs = [json.loads(f.read_text()) for f in sorted(Path(args.genome_dir).glob("run_k*_seed*.json"))]
    for rec in sorted(recs, key=lambda r: (r["states"], r["seed"])):
        label = f"BLUR k={rec['states']} (digits, gradient)"
        if rec["states"] not in args.states:
            continue
        if args.quick and len(methods.get(label, {}).get("genomes", [])) >= args.seeds[0]:
            continue  # a smoke run compares the first --seeds genomes of each k found
        runs.append(rec)
        m = methods.setdefault(label, {"network": load_network(network_doc(rec["states"], rec["hidden"])),
                                       "genomes": [], "seeds": []})
        m["genomes"].append(load_genome(Path(args.genome_dir) / rec["genome"]))
        m["seeds"].append(rec["seed"])
    return methods, runs


def plot(result: dict, path: Path, *, diff: bool) -> Path:
    plt = rc.pyplot()
    tasks = list(result)
    cols = min(3, len(tasks))
    rows = (len(tasks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, 4.0 * rows), squeeze=False)
    colors = {"sgd": "tab:blue", "momentum": "tab:orange", "adam": "tab:green"}
    mcolors = ["k", "tab:red", "tab:purple", "tab:brown"]
    for ax, t in zip(axes.ravel(), tasks):
        e = result[t]
        hs = e["horizons"]
        if not diff:
            for opt, b in e["baselines"].items():
                ax.plot(hs, b["test_mean"], "o-", color=colors[opt], ms=3, lw=1.2,
                        label=f"{opt}, rate tuned per horizon on validation")
            for c, (label, m) in zip(mcolors, e["methods"].items()):
                ps = np.asarray(m["per_seed"])
                for row in ps:
                    ax.plot(hs, row, color=c, lw=0.6, alpha=0.45)
                ax.plot(hs, ps.mean(axis=0), "s-", color=c, lw=2, ms=4, label=f"{label}: mean, thin: each seed")
            ax.set(ylim=(0, 1), ylabel="test accuracy")
        else:
            markers = ["o", "s", "^", "D"]
            for mi, (label, d) in enumerate(e["differences"].items()):
                for oi, (opt, dd) in enumerate(d.items()):
                    xs = np.asarray(hs, dtype=float) * 1.07 ** (3 * mi + oi - 2.5)
                    mean = [dd[str(h)]["over_seeds"]["mean"] for h in hs]
                    lo = [dd[str(h)]["over_seeds"]["low"] for h in hs]
                    hi = [dd[str(h)]["over_seeds"]["high"] for h in hs]
                    err = None
                    if all(v is not None for v in lo):
                        err = [np.subtract(mean, lo), np.subtract(hi, mean)]
                    ax.errorbar(xs, mean, yerr=err, fmt=markers[mi % 4], color=colors[opt], ms=5, capsize=2,
                                label=f"{label.split(' (')[0]} minus {opt}")
            ax.axhline(0, color="gray", lw=0.8)
            ax.set(ylabel="BLUR minus tuned optimizer (test accuracy)")
        ax.set_xscale("log")
        ax.set_xticks(hs, [str(h) for h in hs])
        ax.minorticks_off()
        ax.set(xlabel="training steps (horizon)", title=f"{t}\n{e.get('relation', e['dataset'])}")
        ax.title.set_fontsize(11)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(tasks):]:
        ax.axis("off")
    h, lab = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(h, lab, loc="lower center", ncol=2, fontsize=9, frameon=False, bbox_to_anchor=(0.5, -0.02 * rows))
    by = "; made by blursim compare" if any(e.get("engine") for e in result.values()) else ""
    fig.suptitle(("differences: mean over meta-training seeds with 95% t-interval over seeds" if diff else
                  "test accuracy; optimizers' rates chosen on a validation split carved from the training split") + by,
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.08 / rows, 1, 0.97))
    return rc.save_figure(fig, path)


def main(argv=None) -> int:
    args = parse_args(argv)
    name = f"{NAME}_{args.variant}" if args.variant else NAME
    if args.variant and args.out == str(rc.RESULTS / f"{NAME}.json"):
        args.out = str(rc.RESULTS / f"{name}.json")
    timer = rc.Timer()
    lrs = [x for x in rc.HALF_DECADE if x >= 1e-3]  # 1e-3 .. 10**0.5, extended upward when needed
    if args.quick:
        args.seeds, args.states, args.sync_runs, args.stage_steps, args.max_unroll = [2], [2], 2, 2, 3
        args.replicas = 2
        args.states = rc.explicit(argv, "--states", args.states)
        args.seeds = rc.explicit(argv, "--seeds", args.seeds)  # a one-run smoke test stays one run
        args.mnist1d_steps, args.tasks = 12, ["font_letters_8", "mnist1d", "xor"]
        lrs = [1e-2, 10 ** -1.5, 1e-1]
    runs = []
    if args.phase == "compare":
        rc.estimate("the comparison", 600 if not args.quick else 5)
    if args.phase in ("all", "meta"):
        runs = meta_phase(args)
        if args.phase == "meta":
            return 0
    methods, runs = load_genomes(args)
    if not methods:
        raise SystemExit(f"repro_headline: no genomes in {args.genome_dir}; run --phase meta first")
    horizons = [h for h in HORIZONS if h <= (10 if args.quick else 100)]
    tasks = {}
    for t in args.tasks:
        ds, opts, _ = TASKS[t]
        if args.quick and ds == "mnist1d":
            opts = {**opts, "n_samples": 500}
        if args.quick and ds.startswith("font"):
            opts = {**opts, "n_train": 260, "n_test": 130}
        tasks[t] = {"dataset": ds, "options": opts}
        if ds == "mnist1d":
            tasks[t]["horizons"] = sorted(set(horizons) | {args.mnist1d_steps // 3, args.mnist1d_steps})
    from blursim.spec import load_network

    base = load_network(network_doc(2, runs[0]["hidden"]))
    seed = 1000 + args.seed
    engine = rc.ENGINES[args.engine]
    result = engine({k: {"network": v["network"], "genomes": v["genomes"]} for k, v in methods.items()},
                    tasks, baseline_network=base, optimizers=OPTIMIZERS, lrs=lrs, horizons=horizons,
                    replicas=args.replicas, seed=seed, quiet=args.quiet)
    for t in result:
        result[t]["relation"] = TASKS[t][2]
    fig_dir = Path(args.fig_dir)
    f1 = plot(result, fig_dir / f"{name}.png", diff=False)
    f2 = plot(result, fig_dir / f"{name}_diff.png", diff=True)
    keys = ("states", "seed", "seconds", "steps", "final_unroll", "hidden", "sync_runs", "stage_steps",
            "learning_rate", "max_unroll", "increment")
    scale = {"meta_training": [{k: r[k] for k in keys if k in r} for r in runs],
             "network": "64 -> hidden -> C (specs/repro_digits_blur_64.json, general rules), resized per task",
             "baseline_network": "the same network's state-0 path (k=2), relu o tanh hidden, tanh outputs",
             "horizons": horizons, "replicas": args.replicas if args.engine == "repro" else
             f"{max(1, args.replicas // rc.ZOO_EVAL_SEEDS)} per evaluation seed", "batch_size": 32,
             "learning_rates": lrs,
             "validation_fraction": 0.2, "optimizers": OPTIMIZERS, "engine": args.engine,
             "paper": "MNIST 10x10 meta-training, 8 synchronised runs x 10,000 steps per curriculum stage, "
                      "unroll 10 -> 50, 4 states, 256/512 hidden; evaluation on MNIST/EMNIST/Fashion-MNIST 28x28"}
    seeds = {"meta_training": {k: v["seeds"] for k, v in methods.items()}, "evaluation": rc.engine_seeds(args.engine, seed),
             "validation_split": seed}
    rc.write_json(args.out, rc.envelope(name, args, timer, seeds, scale, {"tasks": result,
                                                                        "meta_runs": runs}, [f1, f2]))
    for t, e in result.items():
        h = e["horizons"][-1]
        line = ", ".join(f"{lab.split(' (')[0]} {np.mean(np.asarray(m['per_seed'])[:, -1]):.3f}"
                         for lab, m in e["methods"].items())
        opt = ", ".join(f"{o} {b['test_mean'][-1]:.3f}" for o, b in e["baselines"].items())
        print(f"{t} @ {h} steps: {line}; {opt}")
    print(f"wrote {args.out} ({timer.seconds:.0f} s)")
    return 0


def replot(doc: dict, fig_dir: Path) -> list[Path]:
    """The figures again from the JSON (:func:`plot`), for ``make_results.py --figures``."""
    res = doc["results"]["tasks"]
    name = doc["name"]
    return [plot(res, Path(fig_dir) / f"{name}.png", diff=False),
            plot(res, Path(fig_dir) / f"{name}_diff.png", diff=True)]


if __name__ == "__main__":
    raise SystemExit(main())
