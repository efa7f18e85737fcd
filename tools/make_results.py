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
  ``archive_STEM`` names ``docs/results/archive/STEM.json``, a run of the same command on
  another blursim version.

    python tools/make_results.py [--results docs/results] [--template ...] [--out docs/results.md]

A run made with ``--quick`` is flagged on the page as a smoke run, not a result.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
        "- **scale:** " + "; ".join(f"{k} = {json.dumps(v) if not isinstance(v, str) else v}"
                                   for k, v in doc["scale"].items()),
    ]
    return "\n".join(lines)


def figures(doc: dict) -> str:
    return "\n\n".join(f"![{Path(f).stem}]({Path(f).relative_to('docs') if f.startswith('docs/') else f})"
                       for f in doc["figures"])


# ------------------------------------------------------------------- tables
def table_toy(doc: dict) -> str:
    r = doc["results"]
    s = r["summary"]
    tasks = s["train_tasks"] + s["validation_tasks"]
    rows = []
    for t in tasks:
        kind = "training" if t in s["train_tasks"] else "held out"
        maj = s.get("majority_class_rate", {}).get(t)
        rows.append([t, kind, maj, s["per_task_initial_genome"][t], s["per_task_mean_over_runs"][t],
                     s["per_task_min_over_runs"][t], s["per_task_max_over_runs"][t]])
    maj = s.get("majority_class_rate")
    rows.append(["**mean of held-out tasks**", "",
                 sum(maj[t] for t in s["validation_tasks"]) / len(s["validation_tasks"]) if maj else None,
                 s["initial_validation_mean"], s["validation_mean_over_runs"],
                 s["validation_min_run"], s["validation_max_run"]])
    head = ["task", "role", "majority class", "initial genome", f"mean over {len(r['runs'])} runs", "worst run",
            "best run"]
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
    for task, row in r["summary"].items():
        keys = ["blur", "blur_initial"] + [k for k in row if k not in ("blur", "blur_initial") and "sweep max" not in k]
        keys += [k for k in row if "sweep max" in k]
        names = {"blur": "**BLUR meta-learned genome**", "blur_initial": "BLUR initial random genome"}
        rows = [[names.get(k, k)] + [row[k][str(s)] for s in rep] for k in keys]
        out.append(f"**{task}** (test split; optimizer rows: lr selected on the training split; "
                   f"'sweep max' rows: best of all five learning rates at each step, on the test split, "
                   f"shown only as an upper reference)\n\n" + md_table(["method"] + [f"step {s}" for s in rep], rows))
    # the whole sweep: final accuracy per lr
    sweep_rows = []
    for task, e in r["per_task"].items():
        for net, tabs in e["baselines"].items():
            for opt, t in tabs.items():
                sweep_rows.append([task, net, t["label"]] + [m[-1] for m in t["test_mean"]])
    lrs = next(iter(next(iter(r["per_task"].values()))["baselines"]["standard_mlp"].values()))["lrs"]
    steps = r["per_task"][next(iter(r["per_task"]))]["steps"]
    out.append(f"The whole sweep: test accuracy after {steps[-1]} steps for every learning rate\n\n"
               + md_table(["task", "network", "optimizer"] + [f"lr {x:g}" for x in lrs], sweep_rows))
    return "\n\n".join(out)


def table_depth(doc: dict) -> str:
    r = doc["results"]
    archs = doc["scale"]["eval_architectures"]
    rows = [[n] + [r["accuracy"][n][a] for a in archs] for n in r["accuracy"]]
    return md_table(["genome \\ evaluated on"] + [f"{a} hidden" if a.isdigit() else "skip DAG" for a in archs], rows)


def table_ablation(doc: dict) -> str:
    r = doc["results"]
    rows = []
    for i in r["ranking"]:
        x = r["rows"][i]
        rows.append([x["backward_update"], "tied" if x["tied"] else "untied",
                     "shared" if x["shared"] else "multi-channel", x["init"],
                     x["initial_accuracy"], f"{x['final_accuracy']:.3f} ± {x['final_std']:.3f}",
                     x["final_training_fitness"]])
    return md_table(["backward update", "synapses", "channels", "initial genome", "initial test acc.",
                     "final test acc. (± std over inits)", "final training fitness"], rows)


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


TABLES = {"repro_toy": table_toy, "repro_digits_es": table_digits_es,
          "repro_digits_curriculum": table_curriculum, "repro_depth": table_depth,
          "repro_ablation": table_ablation, "repro_fig2": table_fig2}


def render(template: str, docs: dict[str, dict]) -> str:
    def sub(m: re.Match) -> str:
        body = m.group(1).strip()
        kind, _, rest = body.partition(":")
        if kind in ("header", "table", "figure"):
            doc = docs.get(rest)
            if doc is None:
                return f"*(no results yet: run `python tools/{rest}.py`)*"
            return {"header": header, "figure": figures, "table": TABLES.get(rest, lambda d: "")}[kind](doc)
        name = kind
        path, _, spec = rest.partition(":")
        doc = docs.get(name)
        if doc is None:
            return "n/a"
        try:
            return fmt(get(doc, path), spec)
        except KeyError:
            raise SystemExit(f"make_results: {name}.json has no {path!r} (placeholder {{{{{body}}}}})")

    return PLACEHOLDER.sub(sub, template)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default=str(ROOT / "docs" / "results"))
    p.add_argument("--template", default=str(ROOT / "docs" / "results" / "results_template.md"))
    p.add_argument("--out", default=str(ROOT / "docs" / "results.md"))
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
    text = render(Path(args.template).read_text(), docs)
    atomic_write_text(args.out, text)
    os.chmod(args.out, 0o644)
    print(f"wrote {args.out} from {len(docs)} result file(s): {', '.join(sorted(docs))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
