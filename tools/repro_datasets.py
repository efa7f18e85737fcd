#!/usr/bin/env python
"""How hard the offline image sets are: tuned Adam's test accuracy after 100 and 1000 steps.

For each dataset (the rendered-font sets of :mod:`blursim.data.fonts` at 8x8, 16x16 and 28x28,
letters with unseen test typefaces, and the handwritten 8x8 ``digits`` for reference), Adam
trains the small network every comparison uses (``specs/repro_digits_blur_64.json``'s state-0
path: inputs -> 64 relu o tanh -> classes, tanh outputs; batches of 32) from ``--replicas``
initialisations; its rate is chosen separately for each horizon on a validation split (20 % of
the training split) over a half-decade grid that grows above the best rate
(the rule zoo's ``blursim compare`` through :func:`repro_common.compare_zoo`: evaluation seeds
1000 and 1001, ``--replicas`` / 2 initialisations each, then trained on the whole training split,
float64; ``--engine repro``: the older :func:`repro_common.compare_tuned`), and the test accuracy at
that rate is reported. Also
draws sample images of each set.

    python tools/repro_datasets.py             # docs/results.md
    python tools/repro_datasets.py --quick     # smoke run

Writes docs/figures/repro_datasets.png (samples) and docs/results/repro_datasets.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import repro_common as rc

NAME = "repro_datasets"
#: label -> (dataset, options)
SETS = {
    "font_letters 8x8": ("font_letters", {"size": 8}),
    "font_letters 16x16": ("font_letters", {"size": 16}),
    "font_letters 28x28": ("font_letters", {"size": 28}),
    "font_letters 16x16, unseen test faces": ("font_letters", {"size": 16, "test_fonts": "held_out"}),
    "font_digits 8x8": ("font_digits", {"size": 8}),
    "font_digits 16x16": ("font_digits", {"size": 16}),
    "digits 8x8 (handwritten, reference)": ("digits", {}),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    p.add_argument("--replicas", type=int, default=4, help="initialisations (default 4)")
    p.add_argument("--horizons", type=int, nargs="+", default=[100, 1000], help="steps (default 100 1000)")
    rc.add_engine_arg(p)
    return p.parse_args(argv)


def samples(path: Path, quick: bool) -> Path:
    from blursim.data import load_dataset

    plt = rc.pyplot()
    shown = [s for s in SETS if "unseen" not in s and (not quick or "8x8" in s)]
    n = 12
    fig, axes = plt.subplots(len(shown), n, figsize=(n * 0.95, len(shown) * 1.12))
    for r, label in enumerate(shown):
        name, opts = SETS[label]
        d = load_dataset(name, {**opts, "n_train": 60, "n_test": 20} if name != "digits" else opts)
        side = int(round(np.sqrt(d.n_features)))
        for j in range(n):
            ax = axes[r, j]
            ax.imshow(d.x_train[j].reshape(side, side), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(d.meta["class_names"][d.y_train[j]], fontsize=9, pad=2)
        axes[r, 0].set_ylabel(label.split(" (")[0].replace(" ", "\n", 1), fontsize=8, rotation=0, ha="right",
                              va="center")
    fig.suptitle("training images, first 12 (seed 0); ink dark", fontsize=10)
    fig.subplots_adjust(left=0.12, wspace=0.08, hspace=0.45)
    return rc.save_figure(fig, path)


def sd_over_inits(b: dict, h: int, j: int) -> float:
    """The sd of the test accuracy over every initialisation at the rate chosen for horizon ``h``
    (the zoo engine's curves; the repro engine's ``test`` holds one value per initialisation)."""
    if "curves" in b:
        return rc.cell_at(b["curves"], b["selected"][str(h)], h, "sd_over_inits")
    return float(np.std(b["test"][:, j]))


def main(argv=None) -> int:
    args = parse_args(argv)
    from blursim.spec import load_network

    timer = rc.Timer()
    sets, lrs = dict(SETS), rc.HALF_DECADE
    if args.quick:
        sets = {k: (v[0], {**v[1], "n_train": 130, "n_test": 52}) for k, v in SETS.items() if "8x8" in k
                and "digits 8x8 (" not in k}
        args.horizons, args.replicas, lrs = [5, 10], 2, [1e-2, 10 ** -1.5, 1e-1]
    rc.estimate(f"Adam on {len(sets)} datasets, {len(lrs)}+ rates, to {max(args.horizons)} steps",
                0.5 if args.quick else len(sets) * (len(lrs) + 3) * max(args.horizons) * 0.004 * args.replicas)
    base = load_network(rc.SPECS / "repro_digits_blur_64.json")
    tasks = {k: {"dataset": v[0], "options": v[1]} for k, v in sets.items()}
    seed = 1000 + args.seed
    res = rc.ENGINES[args.engine]({}, tasks, baseline_network=base, optimizers=["adam"], lrs=lrs,
                                  horizons=sorted(args.horizons), replicas=args.replicas, seed=seed,
                                  quiet=args.quiet)
    summary = {}
    for k, e in res.items():
        b = e["baselines"]["adam"]
        summary[k] = {"n_classes": e["n_classes"], "n_fit": e["n_fit"], "n_validation": e["n_validation"],
                      "n_test": e["n_test"],
                      "adam": {str(h): {"test": float(b["test_mean"][j]), "test_std": sd_over_inits(b, h, j),
                                        "lr": b["selected"][str(h)]} for j, h in enumerate(e["horizons"])},
                      "chance": 1.0 / e["n_classes"], "grid_extended": b["extended"], "top_reached": b["top_reached"]}
    f1 = samples(Path(args.fig_dir) / f"{NAME}.png", args.quick)
    scale = {"network": "inputs -> 64 (relu o tanh) -> classes (tanh), state-0 path of "
                        "specs/repro_digits_blur_64.json", "optimizer": "adam", "batch_size": 32,
             "replicas": args.replicas, "horizons": sorted(args.horizons), "learning_rates": lrs,
             "validation_fraction": 0.2, "engine": args.engine,
             "training_images": "the fitting part (80 %) of each training split" if args.engine == "repro" else
             "the whole training split (the rate chosen on its 20 % validation part)"}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"evaluation": rc.engine_seeds(args.engine, seed),
                                                            "validation_split": seed,
                                                            "datasets": 0}, scale,
                                        {"summary": summary, "per_task": res}, [f1]))
    for k, v in summary.items():
        print(f"{k:40s} " + "  ".join(f"{h} steps: {a['test']:.3f} (lr {a['lr']:.3g})" for h, a in v["adam"].items()))
    print(f"wrote {args.out} ({timer.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(rc.script_main(main))
