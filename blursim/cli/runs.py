"""``blursim runs list|show|plot`` (meta-training run directories, :mod:`blursim.runs`) and
``blursim genome diff`` (two genome documents field by field)."""

from __future__ import annotations

import math
from pathlib import Path

from blursim.cli.common import print_json

#: What ``runs plot --y`` can draw: a name of blursim.runs.SERIES and its axis label.
PLOTTABLE = {
    "validation": "validation {metric} of the mean (gradient: current) genome",
    "train": "training {metric} of the mean (gradient: current) genome",
    "fitness_best": "best fitness of the generation",
    "fitness_mean": "mean fitness of the generation",
    "best_validation": "validation {metric} of the generation's best",
    "meta_loss": "meta-loss (gradient runs)",
    "grad_norm": "gradient norm (gradient runs)",
    "unroll": "unroll length T (steps)",
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "runs", help="list, summarise and plot meta-training run directories",
        description="Read meta-training run directories (what blursim meta-train --out DIR writes): "
                    "list them ranked by validation, show one's validation over generations, plot "
                    "one or several on one figure. Python: blursim.runs.Run.")
    rsub = p.add_subparsers(dest="runs_command", metavar="ACTION")

    ls = rsub.add_parser("list", help="one line per run, best validation first",
                         description="One line per run: experiment, strategy, status (finished, "
                                     "stopped, interrupted, running), generations (steps) done of the "
                                     "experiment's, best and last validation of the mean genome, "
                                     "compute time. Sorted by best validation, best first.")
    ls.add_argument("dirs", nargs="+", metavar="DIR",
                    help="a run directory, or a directory of run directories (e.g. runs/)")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=cmd_list)

    sh = rsub.add_parser("show", help="one run: its summary and validation over generations",
                         description="A run's summary and a table of its validated generations "
                                     "(steps): unroll, fitness, training and validation of the mean "
                                     "genome and of the generation's best.")
    sh.add_argument("run", metavar="RUN", help="run directory")
    sh.add_argument("--all", action="store_true", help="every record, not only the validated ones")
    sh.add_argument("--json", action="store_true", help="print the summary and the log's arrays as JSON")
    sh.set_defaults(func=cmd_show)

    pl = rsub.add_parser("plot", help="overlay one or several runs' curves on one figure (PNG)",
                         description="Draw one quantity of the log of each run against its "
                                     "generations (steps) on one figure, one labelled line per run; "
                                     "or, with --full and one run, redraw the run's own "
                                     "meta_training.png figure.")
    pl.add_argument("runs", nargs="+", metavar="RUN", help="run directories (or directories of runs)")
    pl.add_argument("-o", "--out", required=True, metavar="PNG", help="figure to write")
    pl.add_argument("--y", action="append", choices=sorted(PLOTTABLE), metavar="NAME",
                    help="what to draw (repeatable; one panel each): " + ", ".join(PLOTTABLE)
                    + " (default: validation)")
    pl.add_argument("--full", action="store_true",
                    help="one run: its meta_training.png figure, redrawn from its log")
    pl.set_defaults(func=cmd_plot)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def add_genome_diff(gsub) -> None:
    """``blursim genome diff A B`` (registered by :mod:`blursim.cli.genome`)."""
    d = gsub.add_parser(
        "diff", help="compare two genome documents: distance and the fields that differ",
        description="Compare two blursim genome documents field by field over the groups both have "
                    "(optional fields at their neutral values when left out): the Euclidean distance "
                    "over every entry, the largest difference, and each field that differs. Exit "
                    "status 0 when they are equal (within --tol), 1 when they differ. To compare "
                    "them on tasks, give both to blursim evaluate (--genome A --genome B).")
    d.add_argument("a", metavar="A.json", help="genome document")
    d.add_argument("b", metavar="B.json", help="genome document")
    d.add_argument("--tol", type=float, default=0.0, help="differences up to this are equal (default 0)")
    d.add_argument("--json", action="store_true", help="print JSON")
    d.set_defaults(func=cmd_genome_diff)


# ----------------------------------------------------------------------- list
def _val(v: dict | tuple | None, width: int = 7) -> str:
    if v is None:
        return f"{'-':>{width}}"
    value, at = (v["value"], v["at"]) if isinstance(v, dict) else v
    return f"{value:{width}.4f} @{at}"


def cmd_list(args) -> int:
    from blursim.meta.progress import duration
    from blursim.runs import Run, find_runs

    runs = sorted(find_runs(args.dirs), key=Run.sort_key)
    if args.json:
        print_json([r.summary() for r in runs])
        return 0
    width = max(len("run"), *(len(str(r.path)) for r in runs))
    name_w = max(len("experiment"), *(len(r.name) for r in runs))
    print(f"{'run':<{width}}  {'experiment':<{name_w}}  {'strategy':<10}  {'status':<11}  "
          f"{'done':>11}  {'best validation':>16}  {'last validation':>16}  {'time':>9}")
    for r in runs:
        s = r.summary()
        done = f"{s['done']}/{s['total'] if s['total'] is not None else '?'} {'st' if r.unit == 'step' else 'gen'}"
        print(f"{str(r.path):<{width}}  {r.name:<{name_w}}  {r.strategy:<10}  {r.status:<11}  {done:>11}  "
              f"{_val(s['best_validation']):>16}  {_val(s['last_validation']):>16}  "
              f"{duration(s['seconds']):>9}")
    metrics = sorted({r.metric for r in runs})
    print(f"# validation: {', '.join(metrics)} of the mean genome on the validation tasks (@ the "
          f"generation or step); best first ({'lower' if metrics == ['mse'] else 'higher'} is better); "
          "time: compute time of the records")
    return 0


# ----------------------------------------------------------------------- show
def _num(x: float, w: int = 8) -> str:
    return f"{'-':>{w}}" if not math.isfinite(x) else f"{x:{w}.4f}"


def cmd_show(args) -> int:
    from blursim.meta.progress import duration
    from blursim.runs import Run

    run = Run(args.run)
    if args.json:
        print_json({"summary": run.summary(),
                    "log": {k: v.tolist() for k, v in run.arrays().items()}})
        return 0
    s = run.summary()
    print(f"{run.path}: experiment {run.name!r}, strategy {run.strategy}, {run.status}, "
          f"{run.done}/{s['total']} {run.unit}s, {duration(run.seconds)} of compute")
    if run.source:
        print(f"  experiment file: {run.source}  (resume: blursim meta-train {run.source} --resume {run.path})")
    for key, label in (("best_validation", "best validation"), ("last_validation", "last validation")):
        if s[key] is not None:
            print(f"  {label}: {s[key]['value']:.4f} ({run.metric}, mean genome, {run.unit} {s[key]['at']})")
    a = run.arrays()
    gradient = run.unit == "step"
    cols = [("unroll", "T", 4, "d"), ("fitness_best", "fit.best", 8, "f"), ("fitness_mean", "fit.mean", 8, "f")]
    if gradient:
        cols.append(("meta_loss", "meta-loss", 9, "f"))
    cols += [("train", "train", 8, "f"), ("validation", "valid.", 8, "f"),
             ("best_validation", "best:val", 8, "f")]
    unit = run.unit
    print(f"{unit:>10}" + "".join(f"  {h:>{w}}" for _, h, w, _ in cols))
    for i, g in enumerate(a["generation"]):
        if not args.all and not math.isfinite(a["validation"][i]) and i not in (0, len(a["generation"]) - 1):
            continue
        row = f"{int(g):>10}"
        for key, _, w, kind in cols:
            v = a[key][i]
            row += "  " + (f"{int(v):>{w}d}" if kind == "d" and math.isfinite(v) else _num(v, w))
        print(row)
    end = run.end_validation
    if end is not None:
        print(f"# {unit} {end[1]}: validation {end[0]:.4f} of the mean genome, validated at the end of the run "
              "(mean_genome.json; the log keeps its validation schedule)")
    print(f"# train / valid.: {run.metric} of the mean genome ({'current genome' if gradient else 'strategy mean'}); "
          f"best:val: the {unit}'s best candidate; fit.: fitness of the population"
          + ("" if args.all else f"; validated {unit}s only (--all: every record)"))
    return 0


# ----------------------------------------------------------------------- plot
def cmd_plot(args) -> int:
    from blursim.errors import BlursimError
    from blursim.io import atomic_write_bytes
    from blursim.runs import find_runs

    runs = find_runs(args.runs)
    if args.full:
        if len(runs) != 1:
            raise BlursimError(f"--full redraws one run's figure; {len(runs)} runs given")
        from blursim.meta.plot import plot_records

        from blursim.meta import io as mio

        exp = runs[0].path / "experiment.json"  # titles the figure, draws the clip threshold
        doc = mio.read_json_file(exp, what="experiment") if exp.is_file() else None
        png = plot_records(runs[0].records, metric=runs[0].metric, experiment=doc if isinstance(doc, dict) else None)
    else:
        png = overlay_png(runs, args.y or ["validation"])
    atomic_write_bytes(Path(args.out), png)
    print(f"{args.out}: {len(runs)} run(s)")
    return 0


def overlay_png(runs, ys: list[str]) -> bytes:
    """PNG bytes: one panel per name in ``ys``, one labelled line per run (against its
    generations or steps; markers only where the record has the number)."""
    import io
    import textwrap

    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6.5 * len(ys), 4.4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(ys), squeeze=False)[0]
    colours = _colours(len(runs))
    labels = _labels(runs)
    units = sorted({r.unit for r in runs})
    metrics = sorted({r.metric for r in runs})
    for ax, y in zip(axes, ys):
        for run, colour, label in zip(runs, colours, labels):
            x, v = run.series("generation"), run.series(y)
            ok = np.isfinite(v)
            if ok.any():
                ax.plot(x[ok], v[ok], marker="o" if ok.sum() < 40 else None, ms=3, color=colour, label=label)
            end = run.end_validation if y == "validation" else None
            if end is not None:  # the final mean genome, validated after the log's last record
                if ok.any():
                    ax.plot([x[ok][-1], end[1]], [v[ok][-1], end[0]], ls=":", color=colour)
                ax.plot([end[1]], [end[0]], marker="o", ms=7, mfc="none", ls="none", color=colour)
        if y == "validation" and any(r.end_validation is not None for r in runs):
            ax.plot([], [], marker="o", ms=7, mfc="none", ls="none", color="0.3",
                    label="validated at the end of the run (mean_genome.json)")
        ax.set_xlabel(" / ".join(f"{u}s" for u in units))
        ax.set_ylabel(textwrap.fill(PLOTTABLE[y].format(metric=" / ".join(metrics)), 40))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        # below the axes, never over the data
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    title = runs[0].name if len(runs) == 1 else f"{len(runs)} meta-training runs"
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def _labels(runs) -> list[str]:
    """The experiment's name, with the directory where two runs share it."""
    names = [r.name for r in runs]
    return [f"{r.name} ({r.path})" if names.count(r.name) > 1 else r.name for r in runs]


def _colours(n: int) -> list:
    """``n`` distinct colours (tab10, then evenly spaced hues: none repeats)."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    return [colormaps["hsv"](i / n) for i in range(n)]


# ---------------------------------------------------------------- genome diff
def cmd_genome_diff(args) -> int:
    from blursim.runs import genome_diff
    from blursim.spec import load_genome

    a, b = load_genome(args.a), load_genome(args.b)
    d = genome_diff(a, b, tol=args.tol)
    if args.json:
        print_json({"a": args.a, "b": args.b, "k": list(d.k), "equal": d.equal, "distance": d.distance,
                    "max_abs": d.max_abs, "entries": d.compared, "only_in_a": d.only_a, "only_in_b": d.only_b,
                    "fields": [{"group": f.group, "field": f.field, "max_abs": f.max_abs, "norm": f.norm}
                               for f in d.fields]})
        return 0 if d.equal else 1
    if d.k[0] != d.k[1]:
        print(f"{args.a} has k={d.k[0]} states, {args.b} has k={d.k[1]}: not comparable entry by entry")
        return 1
    for side, groups in ((args.a, d.only_a), (args.b, d.only_b)):
        if groups:
            print(f"groups only in {side}: {', '.join(groups)}")
    if d.equal:
        print(f"{args.a} and {args.b} are equal ({d.compared} entries" +
              (f", within {args.tol})" if args.tol else ")"))
        return 0
    print(f"distance {d.distance:.6g} (Euclidean, {d.compared} entries), largest difference {d.max_abs:.6g}")
    if d.fields:
        print(f"{'group':<12}  {'field':<10}  {'max |a-b|':>10}  {'||a-b||':>10}")
        for f in d.fields:
            print(f"{f.group:<12}  {f.field:<10}  {f.max_abs:10.4g}  {f.norm:10.4g}")
    return 1
