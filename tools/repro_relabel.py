#!/usr/bin/env python
"""Fig. 16's label randomisation (paper App. C.6; issue 23 item 4): the labels are permuted in
the middle of a long run -- does the learned rule go on learning the new labelling?

The genomes are the final CMA-ES mean genomes of ``tools/repro_oja.py`` (``--genomes``,
default docs/results/repro_oja.json: six cells -- Oja's term off or searched x synapse
normalisation none / activations / stored -- one genome per meta-training seed, meta-trained
for unroll 10 -> 20 on the 8x8 digits); no meta-training happens here. Each genome trains fresh
64 -> 32 -> 10 networks (the cell's own rules) for ``--steps`` (800, the paper's) steps of
``--batch-size`` digits, ``--replicas`` initialisations (seed ``1000 + seed``). From step
``--switch`` (500, the paper's) on every label y of the training batches *and* of the test set
is replaced by ``perm[y]``, a fixed random permutation of the ten classes without fixed points
(seed ``seed``). A control run of the same genomes, initialisations and batches keeps the
original labels. The test accuracy is measured every ``--every`` steps under the labelling in
force, and after the switch also under the old labelling (does the network forget it?).

    python tools/repro_relabel.py                    # 6 cells x 5 genomes, 800 steps (about 4 min on one core)
    python tools/repro_relabel.py --quick            # smoke run

Writes docs/figures/repro_relabel.png and docs/results/repro_relabel.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import repro_common as rc
import repro_oja

NAME = "repro_relabel"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    p.add_argument("--genomes", default=str(rc.RESULTS / "repro_oja.json"),
                   help="the repro_oja.py result whose genomes are run (default docs/results/repro_oja.json)")
    p.add_argument("--steps", type=int, default=800, help="training steps (default 800, the paper's)")
    p.add_argument("--switch", type=int, default=500, help="labels permuted from this step on (default 500)")
    p.add_argument("--every", type=int, default=10, help="test accuracy every this many steps (default 10)")
    p.add_argument("--batch-size", type=int, default=32, help="training batch (default 32, as repro_oja.py)")
    p.add_argument("--width", type=int, default=32, help="hidden width of the genomes' networks (default 32)")
    p.add_argument("--replicas", type=int, default=4, help="synapse initialisations (default 4)")
    return p.parse_args(argv)


def derangement(n: int, seed: int) -> np.ndarray:
    """A random permutation of ``0..n-1`` with no fixed point (every class gets a new label)."""
    rng = np.random.default_rng(seed)
    while True:
        p = rng.permutation(n)
        if np.all(p != np.arange(n)):
            return p


def long_run(spec, genomes: list, data, args, perm: np.ndarray | None) -> dict[str, np.ndarray]:
    """Train ``genomes`` (one species each) for ``args.steps`` steps; from ``args.switch`` on the
    labels are ``perm[y]`` when ``perm`` is given. Test accuracy ``(S, E)`` (mean over replicas)
    under the labelling in force (``current``) and the original one (``original``)."""
    from blursim.graph import compile_network
    from blursim.sim import Simulator
    from blursim.sim.run import evaluate_batches, train_batch

    sim = Simulator(compile_network(spec), backend=args.backend, dtype="float32")
    genes = sim.prepare(genomes)
    seed = 1000 + args.seed
    st = sim.init_synapses(genes, replicas=args.replicas, seed=seed)
    old = [(data.x_test, data.y_test)]
    new = old if perm is None else [(data.x_test, perm[data.y_test])]
    acc = {"current": [], "original": []}

    def measure(t):
        cur = evaluate_batches(sim, st, genes, new if t > args.switch else old)["accuracy"]
        orig = evaluate_batches(sim, st, genes, old)["accuracy"]
        for k, v in (("current", cur), ("original", orig)):
            acc[k].append(np.nan_to_num(v, nan=0.0).mean(axis=1))

    measure(0)
    for t in range(args.steps):
        x, y = train_batch(data.x_train, data.y_train, t, seed, args.batch_size)
        if perm is not None and t >= args.switch:
            y = perm[y]
        sim.train_step(st, genes, x, y)
        if (t + 1) % args.every == 0 or t + 1 == args.steps:
            measure(t + 1)
    out = {k: np.stack(v, axis=-1) for k, v in acc.items()}
    out["diverged"] = (~sim.is_finite(st)).sum(axis=1)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    from blursim.data import load_dataset
    from blursim.spec import GenomeSpec, NetworkSpec

    timer = rc.Timer()
    src = json.loads(Path(args.genomes).read_text())
    cells = src["results"]["runs"]
    if args.quick:
        args.steps, args.switch, args.every, args.replicas = 30, 20, 5, 2
        cells = {lab: rows[:2] for lab, rows in list(cells.items())[::3][:2]}  # one cell per Oja setting
    rc.estimate(f"{len(cells)} cells x {len(next(iter(cells.values())))} genomes x {args.steps} steps, twice",
                len(cells) * 2 * args.steps * 0.03 + 10)
    data = load_dataset("digits", {})
    perm = derangement(10, args.seed)
    measured = [0] + [t for t in range(1, args.steps + 1) if t % args.every == 0 or t == args.steps]
    before = max(t for t in measured if t <= args.switch)
    after = [t for t in measured if t > args.switch]
    out = {}
    bar = rc.progress(len(cells), "cells", args.quiet, "cell")
    for lab, rows in cells.items():
        oja = "weights" if lab.startswith("Oja") else "none"
        syn = lab.split("synapse norm ")[1]
        spec = NetworkSpec.model_validate(repro_oja.network(oja, syn, args.width))
        genomes = [GenomeSpec(k=2, groups=r["genome"]) for r in rows]
        sw = long_run(spec, genomes, data, args, perm)
        ctl = long_run(spec, genomes, data, args, None)
        cur, orig, c = sw["current"], sw["original"], ctl["current"]
        i0, i_end = measured.index(before), len(measured) - 1
        i1 = measured.index(after[0]) if after else i_end
        out[lab] = {
            "oja": oja, "synapse_normalization": syn, "seeds": [r["seed"] for r in rows],
            "accuracy_switched": cur, "accuracy_original_labels": orig, "accuracy_control": c,
            "at_switch": rc.spread(cur[:, i0]),
            "just_after_switch": rc.spread(cur[:, i1]),
            "final_new_labels": rc.spread(cur[:, i_end]),
            "final_old_labels": rc.spread(orig[:, i_end]),
            "final_control": rc.spread(c[:, i_end]),
            # how much of the accuracy it had on the old labels does it reach on the new ones?
            "relearned_fraction": rc.spread(cur[:, i_end] / np.maximum(cur[:, i0], 1e-9)),
            "new_minus_control_final": rc.separation(cur[:, i_end], c[:, i_end]),
            "diverged_replicas": {"switched": sw["diverged"].tolist(), "control": ctl["diverged"].tolist()},
        }
        bar.update(1)
    bar.close()

    results = {"steps": measured, "switch": args.switch, "permutation": perm.tolist(), "cells": out}
    f1 = plot(results, Path(args.fig_dir) / f"{NAME}.png")
    scale = {"cells": len(cells), "genomes_per_cell": len(next(iter(cells.values()))), "steps": args.steps,
             "switch": args.switch, "batch_size": args.batch_size, "replicas": args.replicas,
             "network": f"64 -> {args.width} -> 10 (the cells of tools/repro_oja.py)", "dataset": "8x8 digits",
             "genomes": {"file": str(Path(args.genomes).resolve().relative_to(rc.ROOT))
                         if Path(args.genomes).resolve().is_relative_to(rc.ROOT) else args.genomes,
                         "command": src["command"], "commit": src["machine"].get("commit"),
                         "scale": src["scale"]},
             "paper": "MNIST, best of 10 runs per variant, 800 steps, labels randomised after step 500 (Fig. 16)"}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"evaluation": 1000 + args.seed,
                                                            "permutation": args.seed,
                                                            "genomes": src["seeds"]},
                                        scale, results, [f1]))
    for lab, e in out.items():
        print(f"{lab:36s} at switch {e['at_switch']['mean']:.3f}, just after {e['just_after_switch']['mean']:.3f}, "
              f"final new labels {e['final_new_labels']['mean']:.3f} (control {e['final_control']['mean']:.3f}, "
              f"old labels {e['final_old_labels']['mean']:.3f})")
    print(f"wrote {args.out} ({timer.seconds:.0f} s)")
    return 0


def plot(results: dict, path: Path) -> Path:
    """One panel per Oja setting: test accuracy (mean over genomes) under the labels in force,
    solid: labels permuted at the switch, dashed: control with the original labels, dotted: the
    permuted run scored on the old labels; colour: synapse normalisation (one legend below)."""
    plt = rc.pyplot()
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, 2, figsize=(14, 5.4), sharey=True)
    st = np.asarray(results["steps"], dtype=float)
    after = st > results["switch"]
    norms = ["none", "activations", "stored"]
    n = 0
    for lab, e in results["cells"].items():
        ax = axes[0 if e["oja"] == "none" else 1]
        c = f"C{norms.index(e['synapse_normalization'])}"
        n = len(e["seeds"])
        ax.plot(st, np.mean(e["accuracy_switched"], axis=0), color=c, lw=1.6)
        ax.plot(st, np.mean(e["accuracy_control"], axis=0), color=c, lw=1, ls="--")
        ax.plot(st[after], np.mean(e["accuracy_original_labels"], axis=0)[after], color=c, lw=0.9, ls=":")
    for ax, title in zip(axes, ("no Oja term", "Oja's term searched by CMA-ES")):
        ax.axvline(results["switch"], color="gray", lw=0.8)
        ax.set(xlabel="training step", title=f"{title}: labels permuted at step {results['switch']}", ylim=(0, 1))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"digits test accuracy (mean over {n} genomes)")
    handles = [Line2D([], [], color=f"C{i}", lw=2, label=f"synapse norm {m}") for i, m in enumerate(norms)]
    handles += [Line2D([], [], color="k", lw=1.6, label="labels permuted, scored on the new labels"),
                Line2D([], [], color="k", lw=1, ls="--", label="control: labels never permuted"),
                Line2D([], [], color="k", lw=0.9, ls=":", label="permuted run scored on the old labels")]
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=10, frameon=False)
    return rc.save_figure(fig, path)


def replot(doc: dict, fig_dir: Path) -> list[Path]:
    """The figure again from the JSON (:func:`plot`), for ``make_results.py --figures``."""
    return [plot(doc["results"], Path(fig_dir) / f"{NAME}.png")]


if __name__ == "__main__":
    raise SystemExit(main())
