#!/usr/bin/env python
"""Assemble docs/results.md from the reproduction scripts' JSON files and a hand-written template.

Every number on the page comes from a ``docs/results/repro_*.json`` file written by
the command printed next to it; this script only formats. The prose lives in
``docs/results/results_template.md``, with placeholders:

* ``{{header:NAME}}`` -- command, seeds, wall time, machine and scale of NAME's run;
* ``{{table:NAME}}`` -- NAME's result table;
* ``{{figure:NAME}}`` -- NAME's figure(s);
* ``{{NAME:dotted.path}}`` / ``{{NAME:dotted.path:.3f}}`` -- one value of NAME's JSON
  (path from the top of the document, e.g. ``results.summary.validation_mean_over_runs``);
  ``{{NAME:path:colmean-1,.3f}}`` -- the mean over the rows of a table (a list of lists) of its
  column -1 (e.g. a genome family's accuracy at the last horizon, mean over seeds);
  ``archive_STEM`` names ``docs/results/archive/STEM.json``, a run of the same command on
  another blursim version.

    python tools/make_results.py [--results docs/results] [--template ...] [--out docs/results.md]
    python tools/make_results.py --figures     # also redraw the figures of the scripts that can, from their JSON

``--figures`` calls ``replot(doc, fig_dir)`` of every ``tools/repro_NAME.py`` that has one
(the figure code of the run itself, fed from the JSON), so a figure fix needs no rerun.

A run made with ``--quick`` is flagged on the page as a smoke run, not a result.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

PLACEHOLDER = re.compile(r"\{\{([^{}]+)\}\}")


def fmt(v, spec: str = "") -> str:
    if v is None:
        return "n/a"
    if spec:
        try:
            return format(v, spec)
        except (TypeError, ValueError):
            return str(v)
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def get(doc: dict, path: str):
    cur = doc
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.lstrip("-").isdigit():
            cur = cur[int(part)]
        else:
            raise KeyError(path)
    return cur


def md_table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


# ------------------------------------------------------------------ headers
def header(doc: dict) -> str:
    m = doc["machine"]
    seeds = ", ".join(f"{k} {v}" for k, v in doc["seeds"].items()) if isinstance(doc["seeds"], dict) else doc["seeds"]
    mins = doc["wall_seconds"] / 60
    lines = []
    if doc.get("quick"):
        lines.append("> **Smoke run (`--quick`) - not a result.** Rerun the command without `--quick`.\n")
    commit = m.get("commit") or "unknown"
    dirty = " (with uncommitted changes to blursim/)" if m.get("blursim_modified") else ""
    lines += [
        f"- **command:** `{doc['command']}`",
        f"- **seeds:** {seeds}",
        f"- **wall time:** {doc['wall_seconds']:.0f} s ({mins:.1f} min), started {doc['started']}",
        f"- **machine:** {m['cpu']}, {m['cores']} cores; Python {m['python']}, NumPy {m['numpy']}, "
        f"blursim {m['blursim']} at commit `{commit[:10]}`{dirty}",
        *([f"- **libraries:** {versions_line(m)}"] if "versions" in m else []),
        "- **scale:** " + "; ".join(f"{k} = {json.dumps(v) if not isinstance(v, str) else v}"
                                   for k, v in doc["scale"].items()),
    ]
    return "\n".join(lines)


def versions_line(m: dict) -> str:
    """The library versions and BLAS a run recorded (runs since issue 23)."""
    v = m["versions"]
    libs = ", ".join(f"{k} {v[k]}" for k in ("scipy", "jax", "jaxlib", "cma", "scikit-learn", "matplotlib")
                     if v.get(k))
    blas = "; ".join(f"{b['internal_api']} {b['version']} ({b['architecture']} kernels, {b['library']})"
                     for b in m.get("blas", []) if b.get("user_api") == "blas")
    tools = " (with uncommitted changes to tools/)" if m.get("tools_modified") else ""
    return f"{libs}; BLAS: {blas or 'not recorded'}{tools}"


def figures(doc: dict) -> str:
    return "\n\n".join(f"![{Path(f).stem}]({Path(f).relative_to('docs') if f.startswith('docs/') else f})"
                       for f in doc["figures"])


# ------------------------------------------------------------------- tables
def initial_over_runs(runs: list[dict], task: str) -> float:
    """The initial genomes' test accuracy on ``task``, mean over the runs (each run starts from its
    own random genome): the same average as the summary's ``initial_validation_mean``."""
    return statistics.fmean(x["evaluation"][task]["initial_genome"] for x in runs)


def table_toy(doc: dict) -> str:
    r = doc["results"]
    s = r["summary"]
    tasks = s["train_tasks"] + s["validation_tasks"]
    rows = []
    for t in tasks:
        kind = "training" if t in s["train_tasks"] else "held out"
        maj = s.get("majority_class_rate", {}).get(t)
        rows.append([t, kind, maj, initial_over_runs(r["runs"], t), s["per_task_mean_over_runs"][t],
                     s["per_task_min_over_runs"][t], s["per_task_max_over_runs"][t]])
    maj = s.get("majority_class_rate")
    rows.append(["**mean of held-out tasks**", "",
                 sum(maj[t] for t in s["validation_tasks"]) / len(s["validation_tasks"]) if maj else None,
                 s["initial_validation_mean"], s["validation_mean_over_runs"],
                 s["validation_min_run"], s["validation_max_run"]])
    head = ["task", "role", "majority class", f"initial genomes (mean over {len(r['runs'])} runs)",
            f"mean over {len(r['runs'])} runs", "worst run", "best run"]
    per_run = md_table(["meta-training seed", "final training fitness", "training tasks (test split)",
                        "held-out tasks (test split)"],
                       [[x["seed"], x["final_training_fitness_mean_genome"], x["train_mean"], x["validation_mean"]]
                        for x in r["runs"]])
    return md_table(head, rows) + "\n\n" + per_run


def table_digits_es(doc: dict) -> str:
    r = doc["results"]
    a = r["test_accuracy_vs_step"]
    steps = a["steps"]
    show = [s for s in (0, 5, 10, 15, 20, 30, 45) if s in steps]
    rows = []
    for key, lab in (("best_genome", "final best candidate"), ("mean_genome", "final CMA-ES mean"),
                     ("initial_genome", "initial random genome")):
        rows.append([lab] + [a[key]["curve"][steps.index(s)] for s in show])
    t = md_table(["genome"] + [f"step {s}" for s in show], rows)
    t2 = md_table(["", "paper (MNIST 14x14)", "blursim (8x8 digits)"], [
        ["generations", 400, r["final_generation"]],
        ["population / hidden / states", "80 / 512 / 2", f"{doc['scale']['popsize']} / 512 / 2"],
        ["best fitness (train-split accuracy after 15 steps)", "0.84", fmt(r["final_fitness_best"])],
        [f"test accuracy after {r['unroll']} steps, final best candidate", "-",
         fmt(a["best_genome"]["at_T"])],
        [f"test accuracy after {r['unroll']} steps, final CMA-ES mean", "-", fmt(a["mean_genome"]["at_T"])],
    ])
    return t2 + "\n\nTest accuracy (held-out split, mean over replicas) versus training step:\n\n" + t


def table_curriculum(doc: dict) -> str:
    r = doc["results"]
    out = []
    rep = r["report_steps"]
    chosen = r.get("selected_lrs", {})  # per-horizon rates (blursim compare); older runs: one rate in the label

    def cell(task, k, s):
        v, lr = r["summary"][task][k][str(s)], chosen.get(task, {}).get(k, {}).get(str(s))
        return v if lr is None else f"{fmt(v)} (lr {lr:.3g})"

    for task, row in r["summary"].items():
        keys = ["blur", "blur_initial"] + [k for k in row if k not in ("blur", "blur_initial") and "sweep max" not in k]
        keys += [k for k in row if "sweep max" in k]
        names = {"blur": "**BLUR meta-learned genome**", "blur_initial": "BLUR initial random genome"}
        rows = [[names.get(k, k)] + [cell(task, k, s) for s in rep] for k in keys]
        first = next(iter(r["per_task"][task]["baselines"]["standard_mlp"].values()))
        on = "a validation split carved from the training split" if "selection" in first else "the training split"
        per = ", separately for each step" if chosen else ""
        out.append(f"**{task}** (test split; optimizer rows: lr selected on {on}{per}; "
                   f"'sweep max' rows: best of all the learning rates at each step, on the test split, "
                   f"shown only as an upper reference)\n\n" + md_table(["method"] + [f"step {s}" for s in rep], rows))
    # the whole sweep: final accuracy per lr
    curves = [(task, net, t) for task, e in r["per_task"].items() for net, tabs in e["baselines"].items()
              for t in tabs.values()]
    lrs = sorted({x for _, _, t in curves for x in t.get("curve_lrs", t["lrs"])})
    sweep_rows = []
    for task, net, t in curves:
        at = dict(zip(t.get("curve_lrs", t["lrs"]), (m[-1] for m in t["test_mean"])))
        sweep_rows.append([task, net, t["label"]] + [at.get(x, "-") for x in lrs])
    steps = r["per_task"][next(iter(r["per_task"]))]["steps"]
    out.append(f"The whole sweep: test accuracy after {steps[-1]} steps for every learning rate\n\n"
               + md_table(["task", "network", "optimizer"] + [f"lr {x:.3g}" for x in lrs], sweep_rows))
    return "\n\n".join(out)


def pm(st: dict, digits: int = 3) -> str:
    """``mean ± std`` of a spread record (:func:`repro_common.spread`)."""
    return f"{st['mean']:.{digits}f} ± {st['std']:.{digits}f}"


def sep_mark(v: dict) -> str:
    """A separation record (:func:`repro_common.separation`) in a few characters."""
    p = v.get("welch_p")
    return ("**yes**" if v["separated"] else "no") + (f" (p={p:.2g})" if p is not None else "")


def arch_name(a: str) -> str:
    return f"{a} hidden" if a.isdigit() else "skip DAG"


def table_depth(doc: dict) -> str:
    r = doc["results"]
    archs = doc["scale"]["eval_architectures"]
    if "compare" not in r:  # a one-seed run of an older version of the script
        return md_table(["genome \\ evaluated on"] + [arch_name(a) for a in archs],
                        [[n] + [r["accuracy"][n][a] for a in archs] for n in r["accuracy"]])
    rows = [[n] + [f"{r['accuracy'][n][a]:.3f} ± {r['std'][n][a]:.3f}" for a in archs] for n in r["accuracy"]]
    t = md_table(["genome \\ evaluated on"] + [arch_name(a) for a in archs], rows)
    comp = [[k] + [f"{v[a]['difference']:+.3f} {sep_mark(v[a])}" for a in archs] for k, v in r["compare"].items()]
    return (t + "\n\nDifferences of the means, and whether each is larger than the spread (**yes**: the intervals "
            "mean ± std do not overlap; p: Welch's t-test over seeds):\n\n"
            + md_table(["comparison"] + [arch_name(a) for a in archs], comp))


def table_ablation(doc: dict) -> str:
    r = doc["results"]
    if "best" not in r:  # a one-seed run of an older version of the script
        rows = [[x["backward_update"], "tied" if x["tied"] else "untied",
                 "shared" if x["shared"] else "multi-channel", x["init"], x["initial_accuracy"],
                 f"{x['final_accuracy']:.3f} ± {x['final_std']:.3f}", x["final_training_fitness"]]
                for x in (r["rows"][i] for i in r["ranking"])]
        return md_table(["backward update", "synapses", "channels", "initial genome", "initial test acc.",
                         "final test acc. (± std over inits)", "final training fitness"], rows)
    best = r["best"]
    rows = []
    for x in r["rows"]:
        v = r["vs_best"].get(x["label"])
        rows.append([x["backward_update"], "tied" if x["tied"] else "untied",
                     "shared" if x["shared"] else "multi-channel", x["init"], f"{x['initial']['mean']:.3f}",
                     pm(x["final"]), " ".join(f"{a:.2f}" for a in x["final"]["values"]),
                     "(best)" if x["label"] == best else sep_mark(v), f"{x['final_training_fitness']['mean']:.3f}"])
    t = md_table(["backward update", "synapses", "channels", "initial genome", "initial test acc.",
                  "final test acc. (mean ± std over seeds)", "per seed", "below the best by more than the spread?",
                  "final training fitness"], rows)
    pairs = [[k, f"{v['difference']:+.3f}", sep_mark(v)] for k, v in r["backprop_vs_random_init"].items()]
    return (t + "\n\nBackprop initial genome minus random initial genome, cell by cell:\n\n"
            + md_table(["cell", "difference of means", "larger than the spread?"], pairs))


def table_cells(doc: dict) -> str:
    """The sweeps (non-linearities, states): one row per cell in ranking order."""
    r = doc["results"]
    rows = []
    for c in r["ranking"]:
        v = r["vs_best"].get(c)
        rows.append([c, f"{r['initial'][c]['mean']:.3f}", pm(r["stats"][c]),
                     " ".join(f"{a:.2f}" for a in r["stats"][c]["values"]),
                     "(best)" if c == r["best"] else sep_mark(v), f"{r['training_fitness'][c]['mean']:.3f}"])
    return md_table(["cell", "initial test acc.", "final test acc. (mean ± std over seeds)", "per seed",
                     "below the best by more than the spread?", "final training fitness"], rows)


def table_states(doc: dict) -> str:
    r = doc["results"]
    rows = [[c, f"{v['difference']:+.3f}", sep_mark(v)] for c, v in r["vs_k2"].items()]
    return table_cells(doc) + "\n\nEach k against k = 2 with the same activation:\n\n" + md_table(
        ["cell", "difference from k = 2", "larger than the spread?"], rows)


def table_transfer(doc: dict) -> str:
    r = doc["results"]
    hs = [str(h) for h in r["horizons"]]
    out = []
    for fam, per in r["summary"].items():
        for ds, row in per.items():
            e = r["per_family"][fam][ds]
            rows = []
            for m, at in row.items():
                if "tuned" in m:
                    cells = [f"{at[h]['mean']:.3f} (lr {at[h]['lr']:.3g})" for h in hs]
                elif at[hs[0]]["n"] > 1:
                    cells = [pm(at[h]) for h in hs]
                else:
                    cells = [f"{at[h]['mean']:.3f}" for h in hs]
                rows.append([f"**{m}**" if "(new)" in m else m] + cells)
            out.append(f"**{ds}** on the {fam} network ({e['relation']}; {e['n_features']} inputs, "
                       f"{e['n_classes']} classes, {e['n_test']} test rows, majority class "
                       f"{e['majority_class']:.3f})\n\n" + md_table(["method"] + [f"step {h}" for h in hs], rows))
    wins = [[g, ds] + [f"{at[h]['margin']:+.3f}" for h in hs]
            for g, per in r["wins"].items() for ds, at in per.items()]
    zoo = any(k.startswith(("backprop rule", "feedback alignment")) for per in r["summary"].values()
              for row in per.values() for k in row)
    rivals = "tuned optimizers and zoo rules" if zoo else "three tuned optimizers"
    out.append(f"BLUR genome (mean over its seeds) minus the best of the {rivals} at each horizon "
               "(positive: the genome is ahead):\n\n" + md_table(["genome", "task"] + [f"step {h}" for h in hs], wins))
    return "\n\n".join(out)


def table_deep10(doc: dict) -> str:
    r = doc["results"]
    depths = list(next(iter(r["final"].values())))
    t = md_table(["meta-trained"] + [f"{d} hidden" for d in depths],
                 [[k] + [pm(v[d]) for d in depths] for k, v in r["final"].items()])
    b = r["ten_hidden_by_budget"]
    t2 = md_table(["generations of the 4-hidden-layer runs"] + list(b),
                  [["10-hidden test accuracy (mean ± std over seeds)"] + [pm(v) for v in b.values()]])
    return t + "\n\n" + t2


def norm_cell(st: dict) -> str:
    """A synapse-norm spread record: its mean, or -- when some seed's norm overflowed (stored as
    ``None``) -- how many seeds did."""
    if st["mean"] is not None:
        return f"{st['mean']:.3g}"
    bad = sum(v is None for v in st["values"])
    return f"non-finite in {bad} of {len(st['values'])} seeds"


def table_oja(doc: dict) -> str:
    r = doc["results"]
    steps = [str(s) for s in r["report_steps"]]
    projs = list(next(iter(r["cells"].values()))["final_norm"])
    rows = []
    for lab, e in r["cells"].items():
        rows.append([lab] + [pm(e["at"][s], 2) for s in steps] + [pm(e["peak"], 2)]
                    + [norm_cell(e["final_norm"][p]) for p in projs]
                    + [", ".join(f"{a:.2g}" for a in e["oja_alpha"]) if e["oja"] != "none" else "-",
                       sum(e["diverged_replicas"])])
    return md_table(["cell"] + [f"acc. step {s}" for s in steps] + ["peak acc."]
                    + [f"synapse norm {p} at the end" for p in projs]
                    + ["learned oja_alpha per seed", "diverged replicas"], rows)


def table_norm(doc: dict) -> str:
    r = doc["results"]
    settings = doc["scale"]["settings"]
    rows = [[a, pm(r["training_fitness"][a])] + [pm(r["accuracy"][a][s]) for s in settings] for a in r["accuracy"]]
    t = md_table(["arm", "final training fitness"] + settings, rows)
    comp = [[k, sep_mark(v["training fitness"])] + [f"{v[s]['difference']:+.3f} {sep_mark(v[s])}" for s in settings]
            for k, v in r["compare"].items()]
    return t + "\n\nDifferences of the means and whether they exceed the spread:\n\n" + md_table(
        ["comparison", "training fitness"] + settings, comp)


def table_fig2(doc: dict) -> str:
    r = doc["results"]
    rows = [[v["genome"], v["n"], v["rel_asymmetry"], v["rel_noise_floor"], v["margin"], v["circulation_slope"]]
            for v in r["summary"].values()]
    t = md_table(["genome", "forward synapses n", "relative asymmetry", "relative noise floor",
                  "margin (asymmetry / noise)", "circulation slope"],
                 [[c if not isinstance(c, float) else f"{c:.3g}" for c in row] for row in rows])
    a = r.get("appendix_a")
    if a:
        t += (f"\n\nApp. A constant-metric search (hidden 5, n = {a.get('n')}): null space "
              f"{a.get('null_dim_at_base_state')} at the base state, {a.get('basis_survivors')} basis vectors survive "
              f"{a.get('validation_states')} other states; verdict: {a.get('verdict')}")
    return t


def table_toy_gradient(doc: dict) -> str:
    r = doc["results"]
    s, cma = r["summary"], r.get("cmaes")
    cs = (cma or {}).get("summary", {})
    tasks = s["train_tasks"] + s["validation_tasks"]

    def cell(sm, key_t=None, agg=None):
        if not sm:
            return "n/a"
        if key_t is not None:
            return (f"{sm['per_task_mean_over_runs'][key_t]:.3f} ({sm['per_task_min_over_runs'][key_t]:.3f}"
                    f"..{sm['per_task_max_over_runs'][key_t]:.3f})")
        return f"{sm['validation_mean_over_runs']:.3f} ({sm['validation_min_run']:.3f}..{sm['validation_max_run']:.3f})"

    maj = cs.get("majority_class_rate", {})
    rows = [[t, "training" if t in s["train_tasks"] else "held out", maj.get(t), initial_over_runs(r["runs"], t),
             cell(cs, t), cell(s, t)] for t in tasks]
    vt = s["validation_tasks"]
    rows.append(["**mean of held-out tasks**", "", sum(maj[t] for t in vt) / len(vt) if maj else None,
                 s["initial_validation_mean"], cell(cs), cell(s)])
    n_c = cma["runs"] if cma else 0
    head = ["task", "role", "majority class", f"initial genomes (mean over {len(r['runs'])} gradient runs)",
            f"CMA-ES: mean (worst..best) of {n_c} runs", f"gradient: mean (worst..best) of {len(r['runs'])} runs"]
    per_run = md_table(["gradient run seed", "final training fitness", "training tasks (test split)",
                        "held-out tasks (test split)", "meta-training s"],
                       [[x["seed"], x["final_training_fitness_mean_genome"], x["train_mean"], x["validation_mean"],
                         f"{x['meta_training_seconds']:.0f}"] for x in r["runs"]])
    out = md_table(head, rows) + "\n\n" + per_run
    if cma:
        sep = r["separation_validation"]
        out += (f"\n\nCMA-ES side: `{cma['command']}` ({cma['runs']} runs, {cma['scale'].get('generations')} "
                f"generations of {cma['scale'].get('popsize')}, {cma['seconds_per_run']:.0f} s per run"
                f"{', a smoke run' if cma['quick'] else ''}; same evaluation protocol: "
                f"{'yes' if cma['same_protocol'] else '**no**'}). Held-out mean, gradient minus CMA-ES: "
                f"{r['difference_validation_mean']:+.3f}; larger than the spread over runs: {sep_mark(sep)}.")
    return out


def table_es_vs_gradient(doc: dict) -> str:
    r = doc["results"]
    steps = r["steps"]
    show = [x for x in (0, 5, 10, 15, 20, 30, 45) if x in steps]
    names = {"cma_es": "CMA-ES", "gradient": "gradient"}
    rows, curves = [], []
    for arm, a in r["arms"].items():
        b = a["runs"][a["best_run"]]
        fin = [x["test_accuracy_final"] for x in a["runs"]]
        rows.append([names[arm], len(a["runs"]), pm(a["steps_per_run"], 0), b["seed"], b["train_accuracy_at_T"],
                     b["test_accuracy_at_T"], pm(a["test_at_T"]), b["test_accuracy_final"],
                     f"{min(fin):.3f}..{max(fin):.3f}"])
        curves.append([f"{names[arm]} best run (seed {b['seed']})"] + [b["test_curve"][steps.index(x)] for x in show])
    curves.append(["initial random genome"] + [r["initial_genome"]["test_curve"][steps.index(x)] for x in show])
    T = r["unroll"]
    t1 = md_table(["arm", "runs", "steps (generations) per run", "best run (seed; chosen on train split)",
                   f"best run: train acc. after {T}", f"best run: test acc. after {T}",
                   f"all runs: test acc. after {T} (mean ± std)", f"best run: test acc. after {steps[-1]}",
                   f"all runs: test acc. after {steps[-1]} (worst..best)"], rows)
    def reach(x, level=0.85):  # wall-clock seconds until the run's training fitness first reached level
        tr = x["trajectory"]
        return next((f"{s:.0f}" for s, f in zip(tr["seconds"], tr["training_fitness"]) if f is not None and f >= level),
                    "never")

    per = md_table(["arm", "seed", "steps", "seconds", "seconds to training fitness ≥ 0.85", f"train acc. after {T}",
                    f"test acc. after {T}"],
                   [[names[arm], x["seed"], x["steps"], f"{x['seconds']:.0f}", reach(x), x["train_accuracy_at_T"],
                     x["test_accuracy_at_T"]] for arm, a in r["arms"].items() for x in a["runs"]])
    sep = r["test_at_T_separation"]
    return (t1 + f"\n\nGradient minus CMA-ES, test accuracy after {T} steps over runs: {sep['difference']:+.3f}; "
            f"larger than the spread: {sep_mark(sep)}.\n\nEvery run:\n\n" + per
            + "\n\nTest accuracy (held-out split, mean over replicas) versus training step:\n\n"
            + md_table(["genome"] + [f"step {x}" for x in show], curves))


def table_curriculum_gradient(doc: dict) -> str:
    r = doc["results"]
    t = r["training"]
    stages = []
    us = t["unroll"]
    for u in sorted(set(us)):
        idx = [i for i, v in enumerate(us) if v == u]
        last = [v for v in t["meta_loss_runs"][idx[-1]] if v is not None]
        gn = [t["grad_norm_mean"][i] for i in idx if t["grad_norm_mean"][i] is not None]
        val = [v for g, uu, v in t["stage_end_validation"] if uu == u]
        stages.append([u, len(idx), sum(last) / len(last) if last else None,
                       f"{statistics.median(gn):.3g}" if gn else None, sum(t["clipped"][i] for i in idx),
                       val[-1] if val else None])
    out = md_table(["unroll", "steps", "meta-loss, stage's last step (mean of runs)", "median gradient norm",
                    "clipped run-steps", "current genome, held-out digits at stage end"], stages)
    out += (f"\n\nSynchronised at steps {', '.join(map(str, t['synchronised_at']))}; leaders "
            f"{', '.join(map(str, t['leader_at_sync']))}; skipped run-steps (NaN/Inf): {t['skipped']}.")
    cma = r.get("cmaes_curriculum")
    if cma:
        rep = r["report_steps"]
        rows = []
        for task, row in r["summary"].items():
            rows.append([task, "gradient (this run)"] + [row["blur"][str(x)] for x in rep])
            if task in cma["blur"]:
                rows.append([task, "CMA-ES (repro_digits_curriculum)"] + [cma["blur"][task].get(str(x)) for x in rep])
        out += (f"\n\nThe gradient genome beside the CMA-ES curriculum genome (`{cma['command']}`; same evaluation "
                f"protocol: {'yes' if cma['same_protocol'] else '**no**'}), test accuracy:\n\n"
                + md_table(["task", "genome"] + [f"step {x}" for x in rep], rows))
    return out + "\n\n" + table_curriculum(doc)


def table_es_vs_gradient_fair(doc: dict) -> str:
    """Fig. 7 at a fair scale: the tuning of the gradient arm's rate, the comparison
    (:func:`table_es_vs_gradient`) and each arm's genome evaluations per run."""
    r = doc["results"]
    tu = r["tuning"]
    tune = md_table(["Adam learning rate"] + [f"{lr:g}" for lr in tu["lrs"]],
                    [[f"steps in {tu['budget_seconds']:g} s"] + tu["steps"],
                     [f"train acc. after {r['unroll']} steps (selection)"]
                     + [f"**{a:.3f}**" if lr == tu["selected_lr"] else f"{a:.3f}"
                        for lr, a in zip(tu["lrs"], tu["train_accuracy_at_T"])]])
    names = {"cma_es": "CMA-ES: generations x population accuracy evaluations",
             "gradient": "gradient: forward + backward passes through the unroll (one per step)"}
    evals = md_table(["arm", "genome evaluations per run (mean ± std)", "min..max"],
                     [[names[arm], pm(a["genome_evaluations_per_run"], 0),
                       f"{min(a['genome_evaluations_per_run']['values']):.0f}.."
                       f"{max(a['genome_evaluations_per_run']['values']):.0f}"] for arm, a in r["arms"].items()])
    return ("Tuning of the gradient arm (seed " + str(tu["seed"]) + ", training split only; bold: chosen):\n\n"
            + tune + "\n\n" + table_es_vs_gradient(doc) + "\n\nEvaluations per run:\n\n" + evals)


def table_depth_gradient(doc: dict) -> str:
    """Fig. 10 by gradient: one row per evaluated architecture, one column per genome; then each
    trained genome against the initial one and the depths against each other."""
    r = doc["results"]
    archs, genomes = doc["scale"]["eval_architectures"], list(r["accuracy"])
    t = md_table(["evaluated on \\ genome"] + genomes,
                 [[arch_name(a)] + [f"{r['accuracy'][g][a]:.3f} ± {r['std'][g][a]:.3f}" for g in genomes]
                  for a in archs])
    pairs = {**{f"{n} vs initial genome": v for n, v in r["vs_initial"].items()}, **r["compare"]}
    comp = md_table(["evaluated on \\ difference"] + list(pairs),
                    [[arch_name(a)] + [f"{v[a]['difference']:+.3f} {sep_mark(v[a])}" for v in pairs.values()]
                     for a in archs])
    return (t + "\n\nDifferences of the means over seeds, and whether each is larger than the spread (**yes**: "
            "the intervals mean ± std do not overlap and Welch's p < 0.05):\n\n" + comp)


def table_states_gradient(doc: dict) -> str:
    r = doc["results"]
    rows = [[c, f"{v['difference']:+.3f}", sep_mark(v)] for c, v in r["vs_initial"].items()]
    return table_states(doc) + "\n\nEach cell's final genomes against its initial genomes:\n\n" + md_table(
        ["cell", "final minus initial", "larger than the spread?"], rows)


def table_relabel(doc: dict) -> str:
    """Fig. 16's label randomisation: per cell, the accuracy before and after the switch."""
    r = doc["results"]
    sw, end = r["switch"], r["steps"][-1]
    rows = [[lab, pm(e["at_switch"]), pm(e["just_after_switch"]), pm(e["final_new_labels"]),
             pm(e["final_old_labels"]), pm(e["final_control"]), pm(e["relearned_fraction"], 2),
             f"{e['new_minus_control_final']['difference']:+.3f} {sep_mark(e['new_minus_control_final'])}",
             f"{sum(e['diverged_replicas']['switched'])} / {sum(e['diverged_replicas']['control'])}"]
            for lab, e in r["cells"].items()]
    return md_table(["cell", f"step {sw} (old labels)", f"step {r['steps'][r['steps'].index(sw) + 1]} (new labels)",
                     f"step {end}: new labels", f"step {end}: scored on old labels",
                     f"step {end}: control (labels never permuted)", f"step {end} new / step {sw} old",
                     "permuted minus control at the end", "diverged replicas (permuted / control)"], rows)


def table_datasets(doc: dict) -> str:
    s = doc["results"]["summary"]
    hs = [str(h) for h in doc["scale"]["horizons"]]
    rows = [[k, v["n_classes"], f"{v['n_fit']} / {v['n_validation']} / {v['n_test']}", v["chance"]]
            + [f"{v['adam'][h]['test']:.3f} ± {v['adam'][h]['test_std']:.3f} (lr {v['adam'][h]['lr']:.3g})" for h in hs]
            for k, v in s.items()]
    return md_table(["dataset", "classes", "images fit / validation / test", "chance"]
                    + [f"tuned Adam, {h} steps (± sd over inits)" for h in hs], rows)


def ci_cell(d: dict) -> str:
    """``+0.012 [-0.030, +0.054]``: a mean difference and its 95 % t-interval (n/a bounds for n < 2)."""
    if d["low"] is None:
        return f"{d['mean']:+.3f} (n = {d['n']})"
    return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def verdict(diffs: dict, h: str, over: str = "over_seeds") -> str:
    """Against all tuned optimizers at horizon ``h``: ahead of all (every interval above 0), behind
    (some interval below 0), or not separated."""
    cis = [d[h][over] for d in diffs.values()]
    gap = f" ({min(c['mean'] for c in cis):+.2f})"  # the mean difference from the best optimizer
    if any(c["low"] is None for c in cis):
        return "n/a (one seed)" + gap
    if all(c["low"] > 0 for c in cis):
        return "**ahead of all three**" + gap
    if any(c["high"] < 0 for c in cis):
        worse = [o for o, d in diffs.items() if d[h][over]["high"] < 0]
        return "behind " + ", ".join(worse) + gap
    return "not separated" + gap


def table_headline(doc: dict) -> str:
    tasks = doc["results"]["tasks"]
    out = []
    summary_rows = []
    for t, e in tasks.items():
        hs = [str(h) for h in e["horizons"]]
        rows = []
        for label, m in e["methods"].items():
            ps = m["per_seed"]
            rows.append([f"{label} (mean, min..max over {len(ps)} seeds)"]
                        + [f"{statistics.fmean(r[j] for r in ps):.3f} ({min(r[j] for r in ps):.3f}.."
                           f"{max(r[j] for r in ps):.3f})" for j in range(len(hs))])
        for opt, b in e["baselines"].items():
            rows.append([f"{opt}, rate chosen on validation (lr)"]
                        + [f"{b['test_mean'][j]:.3f} ({b['selected'][h]:.3g})" for j, h in enumerate(hs)])
        for label, d in e["differences"].items():
            for opt in d:
                rows.append([f"{label.split(' (')[0]} minus {opt}: mean [95 % CI over seeds]"]
                            + [ci_cell(d[opt][h]["over_seeds"]) for h in hs])
            summary_rows.append([t, label.split(" (")[0]]
                                + [verdict(d, h) if h in hs else "-" for h in map(str, doc["scale"]["horizons"])])
        out.append(f"**{t}** ({e['relation']}; {e['n_fit']} training / {e['n_validation']} validation / "
                   f"{e['n_test']} test examples)\n\n" + md_table(["method"] + [f"{h} steps" for h in hs], rows))
    runs = doc["results"].get("meta_runs", [])
    if runs:
        out.append("Meta-training runs (digits test accuracy of the current genome after the unroll, at the end "
                   "of the last stage: monitoring only, nothing is chosen on it):\n\n" + md_table(
                       ["states", "seed", "steps", "final unroll", "seconds (shared core; the first run of each k compiles)", "digits test accuracy"],
                       [[r["states"], r["seed"], r["steps"], r["final_unroll"], f"{r['seconds']:.0f}",
                         r["stage_end_validation"][-1][2] if r["stage_end_validation"] else None] for r in runs]))
    hs0 = [str(h) for h in doc["scale"]["horizons"]]
    head = md_table(["task", "genome"] + [f"{h} steps" for h in hs0], summary_rows)
    return ("Summary: the genome against the three tuned optimizers at each horizon, by the 95 % "
            "t-intervals over meta-training seeds of the per-seed differences: *behind X* where X's interval "
            "lies below zero, *not separated* where every interval straddles zero (with 3 seeds an interval "
            "is wide: this is not 'level'); in brackets the mean difference from the best of the three. "
            "mnist1d's longer horizons are in its own table.\n\n" + head + "\n\n" + "\n\n".join(out))


TABLES = {"repro_datasets": table_datasets, "repro_headline": table_headline,
          "repro_toy": table_toy, "repro_digits_es": table_digits_es,
          "repro_digits_curriculum": table_curriculum, "repro_depth": table_depth,
          "repro_ablation": table_ablation, "repro_fig2": table_fig2, "repro_transfer": table_transfer,
          "repro_deep10": table_deep10, "repro_oja": table_oja, "repro_norm": table_norm,
          "repro_nonlin": table_cells, "repro_states": table_states,
          "repro_toy_gradient": table_toy_gradient, "repro_es_vs_gradient": table_es_vs_gradient,
          "repro_curriculum_gradient": table_curriculum_gradient,
          "repro_es_vs_gradient_fair": table_es_vs_gradient_fair, "repro_depth_gradient": table_depth_gradient,
          "repro_states_gradient": table_states_gradient, "repro_relabel": table_relabel}


def render(template: str, docs: dict[str, dict]) -> str:
    def sub(m: re.Match) -> str:
        body = m.group(1).strip()
        kind, _, rest = body.partition(":")
        if kind in ("header", "table", "figure"):
            doc = docs.get(rest)
            if doc is None:
                return f"*(no results yet: run `python tools/{rest}.py`)*"
            table = TABLES.get(rest) or (table_headline if rest.startswith("repro_headline_") else lambda d: "")
            return {"header": header, "figure": figures, "table": table}[kind](doc)
        name = kind
        path, _, spec = rest.partition(":")
        doc = docs.get(name)
        if doc is None:
            return "n/a"
        try:
            value = get(doc, path)
            if spec.startswith("colmean"):  # {{NAME:path.to.rows:colmean-1,.3f}}: mean of column -1 over the rows
                col, _, spec = spec[len("colmean"):].partition(",")
                value = statistics.fmean(row[int(col)] for row in value)
            return fmt(value, spec)
        except KeyError:
            raise SystemExit(f"make_results: {name}.json has no {path!r} (placeholder {{{{{body}}}}})")

    return PLACEHOLDER.sub(sub, template)


def redraw(docs: dict[str, dict], fig_dir: Path) -> list[Path]:
    """Redraw each document's figures with its script's ``replot`` (scripts without one are skipped)."""
    import importlib

    out = []
    for name, doc in docs.items():
        if name.startswith("archive_"):
            continue
        try:
            mod = importlib.import_module("repro_headline" if name.startswith("repro_headline_") else name)
        except ImportError:
            continue
        if hasattr(mod, "replot"):
            out += mod.replot(doc, fig_dir)
            print(f"redrew {name}: {', '.join(p.name for p in out[-len(doc['figures']):])}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default=str(ROOT / "docs" / "results"))
    p.add_argument("--template", default=str(ROOT / "docs" / "results" / "results_template.md"))
    p.add_argument("--out", default=str(ROOT / "docs" / "results.md"))
    p.add_argument("--figures", action="store_true",
                   help="also redraw, from the JSON files, the figures of every script that has a replot()")
    p.add_argument("--fig-dir", default=str(ROOT / "docs" / "figures"), help="where --figures writes")
    args = p.parse_args(argv)
    from blursim.cli.common import atomic_write_text

    docs = {}
    for f in sorted(Path(args.results).glob("repro_*.json")):
        d = json.loads(f.read_text())
        if d.get("format") == "blursim.repro/1":
            docs[d["name"]] = d
    # archived runs (the same commands on other blursim versions), addressed as archive_<file stem>
    for f in sorted((Path(args.results) / "archive").glob("repro_*.json")):
        d = json.loads(f.read_text())
        if d.get("format") == "blursim.repro/1":
            docs[f"archive_{f.stem}"] = d
    if args.figures:
        redraw(docs, Path(args.fig_dir))
    text = render(Path(args.template).read_text(), docs)
    atomic_write_text(args.out, text)
    os.chmod(args.out, 0o644)
    print(f"wrote {args.out} from {len(docs)} result file(s): {', '.join(sorted(docs))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
