"""PNG curves of a meta-training log (matplotlib, imported only when plotting).

Uses matplotlib's object API with the Agg canvas, never ``pyplot``, so the
caller's matplotlib backend and global figure state are left alone.

The figure explains itself: its title names the experiment, the strategy and the
fitness metric; every line is in a legend placed outside the data; generations
(gradient steps) and the unroll length ``T`` are integers and ticked as such;
a gradient run's panel draws the gradient norm with the clipping threshold
(App. C.1). Each series is drawn where the log has it: the mean (current)
genome of a gradient run is measured only when it is validated, so its points
are joined across the steps between, and marked.
"""

from __future__ import annotations

import io
from typing import Any

#: Colours of the series (matplotlib's default cycle, named for the reader of the code): the
#: best genome is blue and the mean genome orange in every panel; the population's mean and
#: median fitness (statistics over candidates, not genomes) have colours of their own.
_BEST, _MEAN, _POP_MEAN, _LOSS, _MEDIAN = "C0", "C1", "C2", "C3", "C4"


def _series(records: list[dict], get) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in records:
        try:
            v = get(r)
        except (KeyError, TypeError):
            v = None
        if v is not None:
            xs.append(r["generation"])
            ys.append(v)
    return xs, ys


def _as_dict(experiment: Any) -> dict | None:
    """An experiment document as a plain dict (an ExperimentSpec, its dump, or the run
    directory's ``experiment.json`` content with the document under ``"experiment"``)."""
    if experiment is None:
        return None
    if hasattr(experiment, "model_dump"):
        return experiment.model_dump(mode="json", by_alias=True)
    if isinstance(experiment, dict) and isinstance(experiment.get("experiment"), dict):
        return experiment["experiment"]
    return dict(experiment)


def _clip_norm(exp: dict | None) -> float | None:
    """The gradient strategy's clipping threshold (its option, else the option's default)."""
    if not exp or (exp.get("strategy") or {}).get("name") != "gradient":
        return None
    given = (exp["strategy"].get("options") or {}).get("clip_norm")
    if given is not None:
        return float(given)
    try:
        from blursim.meta.strategies import STRATEGIES
        from blursim.spec.options import option_defaults

        return float(option_defaults(STRATEGIES.options("gradient"))["clip_norm"])
    except Exception:  # noqa: BLE001 - a figure without the line rather than no figure
        return None


def describe_experiment(experiment: Any) -> str:
    """One line naming an experiment, its strategy and its fitness metric (the figure's title)."""
    exp = _as_dict(experiment) or {}
    strat = exp.get("strategy") or {}
    name = strat.get("name", "?")
    opts = strat.get("options") or {}
    if name == "gradient":
        how = f"gradient descent (Adam, learning rate {opts.get('learning_rate', '?')}, " \
              f"{opts.get('runs', '?')} run(s))"
    else:
        how = f"{name} (popsize {strat.get('popsize', '?')}, sigma0 {strat.get('sigma0', '?')})"
    metric = (exp.get("fitness") or {}).get("metric", "accuracy")
    label = exp.get("name") or "experiment"
    return f"meta-training of {label!r}: {how}; fitness = {_metric_text(metric)}"


def _metric_text(metric: str) -> str:
    return {"accuracy": "accuracy", "cross_entropy": "minus cross-entropy",
            "mse": "minus mean squared error"}.get(metric, metric)


def _integer_ticks(ax, axis: str = "x") -> None:
    from matplotlib.ticker import MaxNLocator

    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def _legend_below(ax, handles: list, labels: list) -> None:
    """The legend under the axes (outside the data), in as many columns as fit."""
    if handles:
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize="small",
                  ncol=1 if max(map(len, labels)) > 38 else min(2, len(handles)), frameon=False)


def records_figure(records: list[dict], title: str | None = None, metric: str | None = None, *,
                   experiment: Any = None, clip_norm: float | None = None):
    """The matplotlib ``Figure`` of :func:`plot_records` (for callers that draw more on it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    exp = _as_dict(experiment)
    if metric is None:
        metric = ((exp or {}).get("fitness") or {}).get("metric", "accuracy")
    if clip_norm is None:
        clip_norm = _clip_norm(exp)
    if title is None and exp is not None:
        title = describe_experiment(exp)
    gradient = any(r.get("meta_loss") is not None for r in records)
    fig = Figure(figsize=(17 if gradient else 11, 5.2), dpi=100, layout="constrained")
    fig.get_layout_engine().set(wspace=0.06)  # room between a twin's right label and the next panel
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3 if gradient else 2)
    unit, pop = ("gradient step", "runs") if gradient else ("generation", "population")
    if gradient:
        _plot_meta_loss(axes[0], records, clip_norm)
    _plot_fitness(axes[-2], records, unit, pop, metric)
    _plot_accuracy(axes[-1], records, unit, metric, gradient)
    fig.suptitle(title or "meta-training", fontsize=11)
    return fig


def plot_records(records: list[dict], title: str | None = None, metric: str | None = None, *,
                 experiment: Any = None, clip_norm: float | None = None) -> bytes:
    """PNG bytes: fitness (best/median/mean of the population, unroll length) and
    training / validation accuracy (the mean squared error when ``metric`` is
    ``"mse"``) of the best and mean genomes per generation; for gradient
    meta-training (records with ``meta_loss``) also the meta-loss and the
    gradient's norm per step, with the clipping threshold.

    ``experiment`` (an ExperimentSpec, its JSON, or a run directory's
    ``experiment.json``) supplies the title (:func:`describe_experiment`), the
    metric and the clipping threshold unless ``title``, ``metric`` or
    ``clip_norm`` are given.
    """
    fig = records_figure(records, title, metric, experiment=experiment, clip_norm=clip_norm)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _plot_fitness(ax, records: list[dict], unit: str, pop: str, metric: str) -> None:
    """Best, median and mean fitness of the population per generation, and the unroll length."""
    series = {k: _series(records, lambda r, k=k: r["fitness"][k]) for k in ("best", "median", "mean")}
    same = series["median"][1] == series["mean"][1]  # two runs: the median is the mean
    for key, color, width in (("best", _BEST, 1.6), ("median", _MEDIAN, 1.0), ("mean", _POP_MEAN, 1.0)):
        xs, ys = series[key]
        if not xs or (key == "median" and same):
            continue
        label = f"{pop} {key}" + (" (= median)" if key == "mean" and same else "")
        ax.plot(xs, ys, "-", color=color, lw=width, label=label, marker="." if len(xs) < 40 else None)
    if not any(xs for xs, _ in series.values()):
        ax.text(0.5, 0.5, f"no {unit} evaluated yet", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel(unit)
    ax.set_ylabel(f"fitness ({_metric_text(metric)}, mean over training tasks)")
    _integer_ticks(ax)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    xs, ys = _series(records, lambda r: r["unroll"])
    if len(set(ys)) > 1:
        twin = ax.twinx()
        twin.step(xs, ys, where="post", color="grey", alpha=0.6, lw=1.2, label="unroll length T (right axis)")
        twin.set_ylabel("unroll length T (training steps)")
        _integer_ticks(twin, "y")
        h, l_ = twin.get_legend_handles_labels()
        handles += h
        labels += l_
        ax.set_title(f"fitness of the {pop} per {unit}", fontsize=10)
    else:
        ax.set_title(f"fitness of the {pop} per {unit} (T = {ys[0]})" if ys else f"fitness per {unit}",
                     fontsize=10)
    _legend_below(ax, handles, labels)


def _plot_accuracy(ax, records: list[dict], unit: str, metric: str, gradient: bool) -> None:
    """Training and validation accuracy (or MSE) of the best and the mean (current) genome."""
    for who, color in (("best", _BEST), ("mean", _MEAN)):
        for what, style in (("train_mean", "-"), ("validation_mean", "--")):
            xs, ys = _series(records, lambda r, w=who, m=what: r[w][m])
            if not xs:
                continue
            name = ("current genome" if gradient else "mean genome") if who == "mean" else \
                f"best genome of the {'step' if gradient else 'generation'}"
            label = f"{name}, {'training' if what == 'train_mean' else 'validation'} tasks"
            ax.plot(xs, ys, style, color=color, label=label, marker="o" if len(xs) < 40 else None,
                    markersize=3)
    what = "mean squared error" if metric == "mse" else "accuracy"
    ax.set_xlabel(unit)
    ax.set_ylabel(f"{what} (mean over tasks)")
    ax.set_title(f"{what} of the best and {'current' if gradient else 'mean'} genomes", fontsize=10)
    _integer_ticks(ax)
    ax.grid(alpha=0.3)
    _legend_below(ax, *ax.get_legend_handles_labels())


def _plot_meta_loss(ax, records: list[dict], clip_norm: float | None) -> None:
    """Meta-loss (mean over runs) and, on a log-scaled twin axis, the gradient's global norm
    before clipping, with the clipping threshold."""
    xs, ys = _series(records, lambda r: r["meta_loss"]["mean"])
    ax.plot(xs, ys, color=_LOSS, marker="." if len(xs) < 40 else None, label="meta-loss (mean over runs)")
    ax.set_xlabel("gradient step")
    ax.set_ylabel("meta-loss (query cross-entropy after T steps)")
    ax.set_title("meta-loss and meta-gradient norm", fontsize=10)
    _integer_ticks(ax)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    xs, ys = _series(records, lambda r: r["grad_norm"]["mean"])
    ys_pos = [(x, y) for x, y in zip(xs, ys) if y is not None and y > 0]
    if ys_pos:
        twin = ax.twinx()
        twin.plot([x for x, _ in ys_pos], [y for _, y in ys_pos], color="dimgrey", lw=1.0,
                  label="gradient norm before clipping (mean over runs; right axis)")
        twin.set_yscale("log")
        twin.set_ylabel("global norm of the meta-gradient")
        if clip_norm is not None:
            twin.axhline(clip_norm, color="black", ls="--", lw=1.0,
                         label=f"clipping threshold {clip_norm:g} (larger norms are scaled to it)")
        h, l_ = twin.get_legend_handles_labels()
        handles += h
        labels += l_
    _legend_below(ax, handles, labels)
