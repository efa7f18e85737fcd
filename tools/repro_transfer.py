#!/usr/bin/env python
"""Cross-domain generalisation (paper Sec. 4.1-4.3, Fig. 4 and Fig. 5): genomes applied to
datasets they never saw, against SGD, momentum and Adam tuned on a validation split.

Genomes (every one a final CMA-ES mean, never chosen on a test split):

* ``digits3`` -- new, meta-trained here on the digits' three tasks (all ten digits, 0-4, 5-9;
  the paper's three MNIST tasks of Sec. 4.2), ``--seeds`` independent runs (random initial
  genome and CMA-ES seed ``seed + i``), 64 -> 64 -> C networks with the general rules
  (``specs/repro_digits_blur_64.json``; 5-output copies for the halves), unroll 10 -> 30 by
  curriculum, population ``--popsize``, ``--generations`` generations;
* ``mnist1d3`` -- the reverse direction: the same on MNIST-1D (all ten classes, 0-4, 5-9;
  40 -> 64 -> C);
* the shipped genomes: ``docs/results/repro_digits_curriculum_genome.json`` (digits only, same
  network), ``repro_digits_es_mean_genome.json`` (Sec. 4.4, hidden 512, batches of 128) and
  ``repro_toy_genome.json`` (2-D toy tasks, hidden 20: Fig. 4's out-of-domain MNIST check,
  here the digits).

Evaluation tasks (test split; input and output sizes of each network adapted to the task,
the genome unchanged): ``digits`` (the meta-training images), ``digits_resized`` at 4x4 and
16x16 (the same images at other resolutions), and three tasks that share **no** data with
the digits: ``mnist1d`` (1-D signals, 40 features, 10 classes), ``breast_cancer`` (30
tabular features, 2 classes) and ``xor`` (the paper's Fig. 5 out-of-domain Boolean task, 2
inputs). The comparison is ``blursim compare`` (:func:`blursim.compare.compare` through
:func:`repro_common.compare_zoo`, float64): each genome trains fresh networks for ``--steps``
(100) steps from ``--replicas`` initialisations (2 evaluation seeds x 4; the unit of the
statistics is an evaluation seed); SGD, momentum 0.9 and Adam on the *same* network (its
state-0 path) and, on the 64-hidden network, the zoo's ``backprop`` and ``feedback_alignment``
rules (the network's rules replaced by the preset's), all with the same batches and initial
forward synapses. Every rate is chosen separately for each horizon 5, 10, 20 and 100 steps by
validation accuracy (ties: validation cross-entropy) on a **validation split** (20 % of the
training split; the rest trains), over a half-decade grid from 1e-4 extended at an edge; the
chosen rate then trains on the whole training split like the genomes and its test accuracy
is reported. ``--genomes docs/results/repro_transfer.json`` reuses the new genomes of that
earlier run (its ``results.meta_training``) and reruns the comparison only.

    python tools/repro_transfer.py                   # 2 x 3 meta-training runs + evaluation (about 25 min on 2 shared cores)
    python tools/repro_transfer.py --seeds 5 --generations 300
    python tools/repro_transfer.py --genomes docs/results/repro_transfer.json   # the comparison only
    python tools/repro_transfer.py --quick

Writes docs/figures/repro_transfer.png (bars at 5/10/20/100 steps),
docs/figures/repro_transfer_curves.png and docs/results/repro_transfer.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import repro_common as rc

NAME = "repro_transfer"
HORIZONS = [5, 10, 20, 100]
CURVE_STEPS = [0, 1, 2, 3, 4, 5, 7, 10, 15, 20, 30, 40, 50, 70, 100]
OPTIMIZERS = ["sgd", "momentum", "adam"]
#: rules of the zoo compared on the same network (its rules replaced by the preset's), per family
PRESETS = {"blur64": ("backprop", "feedback_alignment")}
TITLES = {"backprop": "backprop rule", "feedback_alignment": "feedback alignment"}
LRS = rc.HALF_DECADE

#: label -> (dataset, options, relation to the digits)
EVAL_SETS = {
    "digits": ("digits", {}, "meta-training images (test split)"),
    "digits_4x4": ("digits_resized", {"size": 4}, "same images, 4x4"),
    "digits_16x16": ("digits_resized", {"size": 16}, "same images, 16x16"),
    "mnist1d": ("mnist1d", {}, "no shared data: 1-D signals"),
    "breast_cancer": ("breast_cancer", {}, "no shared data: tabular"),
    "xor": ("xor", {}, "no shared data: Boolean (Fig. 5)"),
}
#: family -> (network file, batch size, evaluation sets)
FAMILIES = {
    "blur64": ("repro_digits_blur_64.json", 32, list(EVAL_SETS)),
    "es512": ("digits_es_512.json", 128, ["digits", "mnist1d", "breast_cancer", "xor"]),
    "toy20": ("toy_blur.json", 32, ["digits", "mnist1d", "breast_cancer", "xor"]),
}
SHIPPED = {  # genome label -> (family, file, what it was meta-trained on)
    "curriculum (shipped)": ("blur64", "repro_digits_curriculum_genome.json", "digits (10 classes)"),
    "sec4.4 ES (shipped)": ("es512", "repro_digits_es_mean_genome.json", "digits (10 classes)"),
    "toy (shipped)": ("toy20", "repro_toy_genome.json", "xor, and, two_moons"),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    p.add_argument("--seeds", type=int, default=3, help="meta-training runs per new genome (default 3)")
    p.add_argument("--generations", type=int, default=200, help="generations per run (default 200)")
    p.add_argument("--popsize", type=int, default=24, help="CMA-ES population (default 24)")
    p.add_argument("--steps", type=int, default=100, help="training steps of the comparison (default 100)")
    p.add_argument("--replicas", type=int, default=8,
                   help="synapse initialisations (default 8: 2 evaluation seeds x 4)")
    p.add_argument("--genomes", metavar="JSON",
                   help="reuse the new genomes of an earlier run (its docs/results/repro_transfer.json) instead "
                        "of meta-training them: reruns the comparison only")
    return p.parse_args(argv)


def task_options(name: str, options: dict, quick: bool) -> dict:
    if quick and name == "mnist1d":
        return {**options, "n_samples": 500}
    return dict(options)


def meta_doc(source: str, seed: int, args) -> dict:
    """The three-task experiment on ``source`` (digits or mnist1d) for one seed."""
    from blursim.data import load_dataset

    base = rc.load_spec(rc.SPECS / "repro_digits_blur_64.json")
    opts = task_options("mnist1d", {}, args.quick) if source == "mnist1d" else {}
    n_in = load_dataset(source, opts).n_features
    net10 = rc.resized_network(base, n_in=n_in, n_out=10).model_dump(mode="json", by_alias=True)
    net5 = rc.resized_network(base, n_in=n_in, n_out=5).model_dump(mode="json", by_alias=True)
    if source == "digits":
        tasks = [{"name": "digits"}, {"name": "digits_0_4", "network": net5}, {"name": "digits_5_9", "network": net5}]
    else:
        tasks = [{"name": "mnist1d", "options": opts},
                 {"name": "mnist1d", "label": "mnist1d_0_4", "options": {**opts, "classes": [0, 1, 2, 3, 4]},
                  "network": net5},
                 {"name": "mnist1d", "label": "mnist1d_5_9", "options": {**opts, "classes": [5, 6, 7, 8, 9]},
                  "network": net5}]
    every = max(1, args.generations // 5)
    a = argparse.Namespace(**{**vars(args), "seed": seed})
    return rc.meta_experiment(
        f"{NAME}_{source}3", net10, {"kind": "random", "seed": seed}, a, tasks=tasks,
        validation_tasks=[{"name": source, "label": f"{source}_test", "options": opts}],
        curriculum={"increment": 5, "every": every, "max_steps": 30},
        validation={"every": max(1, args.generations // 10), "replicas": 2})


def load_meta_training(path: str | Path, labels: list[str]) -> tuple[dict[str, list], dict[str, list], dict]:
    """The new genomes of an earlier run (``results.meta_training`` of its JSON): ``(genomes,
    curves, header)``, so the comparison reruns without CMA-ES. One line, naming the file and
    field, when the file lacks them."""
    import json

    from blursim.errors import SpecError
    from blursim.spec import GenomeSpec

    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        runs = doc["results"]["meta_training"]
        genomes = {k: [GenomeSpec.model_validate(r["genome"]) for r in runs[k]] for k in labels}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SpecError(f"no meta-trained genomes to reuse ({type(e).__name__}: {e})", path=str(path),
                        hint="give the JSON of an earlier repro_transfer.py run (field results.meta_training), "
                             "or drop --genomes to meta-train") from None
    header = {"file": str(path), "command": doc.get("command"), "started": doc.get("started"),
              "commit": doc.get("machine", {}).get("commit"), "wall_seconds": doc.get("wall_seconds"),
              "scale": {k: doc.get("scale", {}).get(k) for k in ("seeds_per_new_genome", "generations", "popsize")}}
    return genomes, {k: runs[k] for k in labels}, header


def main(argv=None) -> int:
    args = parse_args(argv)
    from blursim.data import load_dataset
    from blursim.meta import prepare_experiment
    from blursim.spec import load_genome

    timer = rc.Timer()
    lrs, horizons = LRS, HORIZONS
    eval_sets, families = dict(EVAL_SETS), {k: list(v) for k, v in FAMILIES.items()}
    if args.quick:
        args.seeds, args.generations, args.popsize, args.steps, args.replicas = 1, 2, 6, 10, 2
        args.seeds = rc.explicit(argv, "--seeds", args.seeds)  # a one-run smoke test stays one run
        lrs, horizons = [1e-2, 1e-1], [5, 10]
        eval_sets = {k: eval_sets[k] for k in ("digits", "mnist1d", "breast_cancer")}
        families = {"blur64": [families["blur64"][0], 32, list(eval_sets)],
                    "toy20": [families["toy20"][0], 32, ["digits"]]}
    curve_steps = sorted({s for s in CURVE_STEPS if s <= args.steps} | set(horizons) | {args.steps})
    new_labels = [f"{src}3 (new)" for src in ("digits", "mnist1d")]
    reused = None
    if args.genomes:
        genomes, meta_curves, reused = load_meta_training(args.genomes, new_labels)
        seeds = [r["seed"] for r in meta_curves[new_labels[0]]]
        args.seeds = len(seeds)
        args.generations = reused["scale"]["generations"] or args.generations  # the run that made them
        args.popsize = reused["scale"]["popsize"] or args.popsize
    else:
        seeds = [args.seed + i for i in range(args.seeds)]
    docs = {src: [meta_doc(src, s, args) for s in seeds] for src in ("digits", "mnist1d")}
    per_gen = 0.0 if reused else sum(rc.seconds_per_generation(docs[src][0], args.quick) for src in docs)
    n_base = sum(len(f[2]) for f in families.values()) * (len(OPTIMIZERS) + 2) * (len(lrs) + 3) * 2
    rc.estimate(f"{0 if reused else 2 * args.seeds} meta-training run(s) x {args.generations} generations "
                f"+ about {n_base} comparison runs",
                per_gen * 2.0 * args.generations * args.seeds + n_base * 0.01 * args.steps * args.replicas + 60)

    # ------------------------------------------------------------- meta-training (or its genomes, reused)
    origin: dict[str, dict] = {}
    if not reused:
        genomes, meta_curves = {}, {}  # label -> list of genomes (one per seed)
        for src, label in zip(("digits", "mnist1d"), new_labels):
            genomes[label], meta_curves[label] = [], []
            for doc in docs[src]:
                res = rc.run_meta(doc, generations=args.generations, quiet=args.quiet)
                genomes[label].append(res.mean_genome)
                meta_curves[label].append({"seed": doc["seed"],
                                           "final_training_fitness": res.records[-1]["mean"]["fitness"],
                                           "final_unroll": res.records[-1]["unroll"], "curve": rc.curve(res.records),
                                           "genome": res.mean_genome.model_dump(mode="json")})
    for src, label in zip(("digits", "mnist1d"), new_labels):
        origin[label] = {"family": "blur64", "trained_on": f"{src}, {src} 0-4, {src} 5-9 (training split)"}
    initial = prepare_experiment(docs["digits"][0]).base_genome  # the random genome run 0 started from
    for label, (fam, file, trained) in SHIPPED.items():
        if fam in families:
            genomes[label] = [load_genome(rc.RESULTS / file)]
            origin[label] = {"family": fam, "trained_on": trained, "file": f"docs/results/{file}"}
    genomes[f"initial random (seed {seeds[0]})"] = [initial]
    origin[f"initial random (seed {seeds[0]})"] = {"family": "blur64", "trained_on": "nothing (reference)"}

    # ------------------------------------------------------------- evaluation (blursim.compare)
    seed = 1000 + args.seed
    results: dict[str, dict] = {}
    for fam, (net_file, batch, sets) in families.items():
        base = rc.load_spec(rc.SPECS / net_file)
        labels = [g for g in genomes if origin[g]["family"] == fam]
        tasks = {ds: {"dataset": eval_sets[ds][0], "options": task_options(eval_sets[ds][0], eval_sets[ds][1],
                                                                             args.quick)} for ds in sets}
        zoo = rc.compare_zoo({g: {"network": base, "genomes": genomes[g]} for g in labels}, tasks,
                             baseline_network=base, optimizers=OPTIMIZERS, presets=PRESETS.get(fam, ()), lrs=lrs,
                             horizons=horizons, replicas=args.replicas, seed=seed, batch_size=batch,
                             curve_steps=curve_steps, quiet=args.quiet)
        for ds, z in zoo.items():
            data = load_dataset(z["dataset"], z["options"])
            blur = {}
            for g in labels:
                m = z["methods"][g]
                per_genome = np.asarray(m["test"]).mean(axis=1)  # (G, H): each genome's mean over its inits
                at = {str(h): rc.spread(per_genome[:, j]) for j, h in enumerate(horizons)}
                if len(m["curves"]) == 1:  # one genome: the spread over initialisations instead
                    for h in horizons:
                        at[str(h)]["std"] = rc.cell_at(m["curves"][0], None, h, "sd_over_inits")
                        at[str(h)]["std_over"] = "initialisations"
                cm = np.array([c["mean"][0] for c in m["curves"]])  # (G, E)
                blur[g] = {"curve_mean": cm.mean(axis=0), "curve_std_over_seeds": cm.std(axis=0),
                           "n_genomes": len(m["curves"]), "at": at, "diverged_replicas": m["diverged"]}
            base_res = {}
            for name, b in z["baselines"].items():
                c = b["curves"]
                base_res[name] = {
                    "label": name, "kind": b["kind"], "lrs": b["lrs"], "validation": b["validation"],
                    "validation_cross_entropy": b["validation_cross_entropy"], "curve_lrs": c["lrs"],
                    "test_mean": c["mean"], "test_std": c["sd_over_inits"], "steps": c["steps"],
                    "diverged": c["diverged"], "spec_changes": b["spec_changes"],
                    "selected": {str(h): {"lr": b["selected"][str(h)],
                                          "validation": float(b["validation"][b["lrs"].index(b["selected"][str(h)]), j]),
                                          "test": rc.cell_at(c, b["selected"][str(h)], h),
                                          "test_std": rc.cell_at(c, b["selected"][str(h)], h, "sd_over_inits")}
                                 for j, h in enumerate(horizons)},
                    "selection": rc.zoo_selection(), "grid_extended": b["extended"], "top_reached": b["top_reached"]}
            results.setdefault(fam, {})[ds] = {
                "dataset": z["dataset"], "options": z["options"], "relation": eval_sets[ds][2],
                "n_features": data.n_features, "n_classes": data.n_classes, "n_test": int(data.y_test.size),
                "n_fit": z["n_fit"], "n_validation": z["n_validation"],
                "majority_class": float(np.bincount(data.y_test).max() / data.y_test.size),
                "steps": curve_steps, "blur": blur, "baselines": base_res, "differences": z["differences"]}

    # ------------------------------------------------------------- summary
    summary = {}
    for fam, per in results.items():
        for ds_label, e in per.items():
            row = {}
            for g, b in e["blur"].items():
                row[g] = {h: b["at"][h] for h in map(str, horizons)}
            for name, t in e["baselines"].items():
                row[f"{TITLES.get(name, name)} (lr tuned on validation)"] = {
                    h: {"mean": t["selected"][h]["test"], "std": t["selected"][h]["test_std"],
                        "lr": t["selected"][h]["lr"]} for h in map(str, horizons)}
            summary.setdefault(fam, {})[ds_label] = row
    # where does each new genome beat every tuned baseline? (mean over seeds vs baseline mean)
    wins = {}
    for ds_label, row in summary.get("blur64", {}).items():
        for g in [x for x in row if "(new)" in x or "shipped" in x]:
            for h in map(str, horizons):
                best_name, best_base = max(((k, v[h]["mean"]) for k, v in row.items() if "tuned" in k),
                                           key=lambda kv: kv[1])
                wins.setdefault(g, {}).setdefault(ds_label, {})[h] = {
                    "blur": row[g][h]["mean"], "best_tuned_baseline": best_base, "best": best_name,
                    "margin": row[g][h]["mean"] - best_base}

    figs = plot(results, horizons, args.fig_dir)
    scale = {"seeds_per_new_genome": args.seeds, "generations": args.generations, "popsize": args.popsize,
             "unroll": "10 -> 30 (+5 every generations/5)", "inner": docs["digits"][0]["inner"],
             "comparison_steps": args.steps, "replicas": args.replicas,
             "evaluation_seeds": rc.ZOO_EVAL_SEEDS, "replicas_per_evaluation_seed": max(1, args.replicas // rc.ZOO_EVAL_SEEDS),
             "learning_rates": lrs, "horizons": horizons, "networks": {f: v[0] for f, v in families.items()},
             "presets": {f: list(PRESETS.get(f, ())) for f in families},
             "comparison": "blursim.compare through repro_common.compare_zoo, float64; " + rc.zoo_selection(),
             "meta_training": ("reused from " + reused["file"] + f" (commit {reused['commit']}, "
                               f"started {reused['started']})") if reused else "this run",
             "paper": "MNIST 10x10 meta-training (gradient, curriculum to unroll 50); evaluation on 28x28 MNIST, "
                      "EMNIST, Fashion-MNIST and a Boolean task; SGD lrs over 4 decades (Fig. 5/6)"}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"meta_training": seeds,
                                                            "evaluation": rc.engine_seeds("zoo", seed),
                                                            "validation_split": seed}, scale,
                                        {"summary": summary, "wins": wins, "per_family": results,
                                         "genomes": origin, "meta_training": meta_curves,
                                         "meta_training_reused": reused, "horizons": horizons}, figs))
    for ds_label, row in summary.get("blur64", {}).items():
        g = "digits3 (new)"
        if g in row:
            print(f"{ds_label:14s} digits3 genome "
                  + " ".join(f"{h}:{row[g][h]['mean']:.3f}" for h in map(str, horizons)))
    print(f"wrote {args.out} ({timer.seconds:.0f} s)")
    return 0


COLORS = {"sgd": "tab:blue", "momentum": "tab:orange", "adam": "tab:green", "backprop": "tab:cyan",
          "feedback_alignment": "tab:olive"}
BLUR_COLORS = ["black", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:gray"]


def chosen_on(t: dict) -> str:
    """Where a baseline's rate was chosen (runs before the validation protocol have no field)."""
    return "validation split" if "selection" in t else "training split"


def plot(results, horizons, fig_dir) -> list:
    """1. Bars at the horizons, one block of panels per network family with its own legend below
    it: BLUR genomes as bars of the mean with one dot per meta-training seed (new genomes) or
    with the sd over initialisations (a single shipped genome), optimizers at the rate chosen
    for that horizon with the sd over initialisations. 2. The curves of the 64-hidden family."""
    plt = rc.pyplot()
    out = []
    fams = list(results)
    cols = 3
    rows_of = {f: int(np.ceil(len(results[f]) / cols)) for f in fams}
    fig = plt.figure(figsize=(5.2 * cols, sum(3.6 * r + 1.3 for r in rows_of.values())))
    subs = fig.subfigures(len(fams), 1, height_ratios=[3.6 * rows_of[f] + 1.3 for f in fams], squeeze=False)[:, 0]
    for sub, fam in zip(subs, fams):
        per = results[fam]
        axes = sub.subplots(rows_of[fam], cols, squeeze=False)
        handles = {}
        for ax, (ds, e) in zip(axes.flat, per.items()):
            methods = [(g, e["blur"][g]) for g in e["blur"] if not g.startswith("initial")]
            n_m = len(methods) + len(e["baselines"])
            w = 0.84 / n_m
            xs = np.arange(len(horizons))
            for i, (g, b) in enumerate(methods):
                x = xs + (i - n_m / 2 + 0.5) * w
                mean = [b["at"][str(h)]["mean"] for h in horizons]
                single = b["n_genomes"] == 1
                err = [b["at"][str(h)]["std"] for h in horizons] if single else None
                handles[g] = ax.bar(x, mean, w, yerr=err, capsize=2, color=BLUR_COLORS[i % len(BLUR_COLORS)],
                                    label=g + (" (one genome; bar: sd over initialisations)" if single else
                                               f" (mean of {b['n_genomes']} seeds; dots: each seed)"))
                if not single:
                    for xi, h in zip(x, horizons):
                        v = b["at"][str(h)]["values"]
                        ax.scatter(np.full(len(v), xi), v, s=9, color="white", edgecolor="k", lw=0.6, zorder=3)
            for j, (opt, t) in enumerate(e["baselines"].items()):
                x = xs + (len(methods) + j - n_m / 2 + 0.5) * w
                handles[opt] = ax.bar(x, [t["selected"][str(h)]["test"] for h in horizons], w,
                                      yerr=[t["selected"][str(h)]["test_std"] for h in horizons], capsize=2,
                                      color=COLORS.get(opt, "tab:gray"), hatch="//", edgecolor="white",
                                      label=f"{TITLES.get(opt, t['label'])}, rate chosen on the {chosen_on(t)} per horizon "
                                            "(bar: sd over initialisations)")
            handles["majority"] = ax.axhline(e["majority_class"], color="gray", lw=1, ls=":",
                                             label="majority class")
            ax.set_xticks(xs, [f"{h} steps" for h in horizons], fontsize=10)
            ax.tick_params(axis="y", labelsize=10)
            ax.set(ylim=(0, 1.05))
            ax.set_title(f"{ds}: {e['relation']}", fontsize=10)
            ax.grid(alpha=0.3, axis="y")
        for ax in list(axes.flat)[len(per):]:
            ax.axis("off")
        axes[0, 0].set_ylabel("test accuracy", fontsize=10)
        sub.suptitle(f"network family {fam}", fontsize=12, fontweight="bold")
        sub.legend(list(handles.values()), [h.get_label() for h in handles.values()], loc="lower center",
                   ncol=2, fontsize=9.5, frameon=False)
        sub.subplots_adjust(bottom=1.2 / (3.6 * rows_of[fam] + 1.3) + 0.06, top=0.9, hspace=0.35, wspace=0.18)
    out.append(rc.save_figure(fig, Path(fig_dir) / f"{NAME}.png"))
    # 2. curves, blur64 family
    per = results.get("blur64", {})
    if not per:
        return out
    cols2 = min(3, len(per))
    rows2 = int(np.ceil(len(per) / cols2))
    fig, axes = plt.subplots(rows2, cols2, figsize=(5.2 * cols2, 3.8 * rows2 + 1.4), squeeze=False)
    handles = {}
    for ax, (ds, e) in zip(axes.flat, per.items()):
        st = e["steps"]
        for j, (g, b) in enumerate(e["blur"].items()):
            m = np.asarray(b["curve_mean"])
            c = BLUR_COLORS[j % len(BLUR_COLORS)]
            handles[g] = ax.plot(st, m, ls=":" if g.startswith("initial") else "-", lw=2 if "(new)" in g else 1.3,
                                 color=c, label=g + (f" (mean of {b['n_genomes']} seeds)" if b["n_genomes"] > 1
                                                     else ""))[0]
        for opt, t in e["baselines"].items():
            i = t.get("curve_lrs", t["lrs"]).index(t["selected"][str(horizons[-1])]["lr"])
            handles[opt] = ax.plot(t["steps"], np.asarray(t["test_mean"])[i], color=COLORS.get(opt, "tab:gray"),
                                   lw=1.2, ls="--",
                                   label=f"{TITLES.get(opt, t['label'])} at the rate chosen for {horizons[-1]} steps")[0]
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(0, max(st))
        ax.set(xlabel="training step", ylim=(0, 1))
        ax.set_title(ds, fontsize=11)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(per):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("test accuracy (mean over initialisations)")
    fig.legend(list(handles.values()), [h.get_label() for h in handles.values()], loc="lower center", ncol=2,
               fontsize=9.5, frameon=False)
    fig.suptitle("64-hidden network: BLUR genomes against optimizers (rates chosen on the "
                 f"{chosen_on(next(iter(next(iter(per.values()))['baselines'].values())))})",
                 fontsize=11)
    fig.subplots_adjust(bottom=1.5 / (3.8 * rows2 + 1.4) + 0.08, top=0.92, hspace=0.35)
    out.append(rc.save_figure(fig, Path(fig_dir) / f"{NAME}_curves.png"))
    return out


def replot(doc: dict, fig_dir: Path) -> list[Path]:
    """The figures again from the JSON (:func:`plot`), for ``make_results.py --figures``."""
    return plot(doc["results"]["per_family"], doc["results"]["horizons"], fig_dir)

if __name__ == "__main__":
    raise SystemExit(rc.script_main(main))
