"""PNG curves of a meta-training log (matplotlib, imported only when plotting).

Uses matplotlib's object API with the Agg canvas, never ``pyplot``, so the
caller's matplotlib backend and global figure state are left alone.
"""

from __future__ import annotations

import io


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


def plot_records(records: list[dict], title: str | None = None, metric: str = "accuracy") -> bytes:
    """PNG bytes: fitness (best/mean/median of the population, unroll length) and
    training / validation accuracy (the mean squared error when ``metric`` is
    ``"mse"``) of the best and mean genomes per generation; for gradient
    meta-training (records with ``meta_loss``) also the meta-loss and the
    gradient's norm per step."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    gradient = any(r.get("meta_loss") is not None for r in records)
    fig = Figure(figsize=(15 if gradient else 10, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3 if gradient else 2)
    ax1, ax2 = axes[-2:]
    if gradient:
        _plot_meta_loss(axes[0], records)
    unit, pop = ("step", "runs") if gradient else ("generation", "population")
    for key, style in (("best", "-"), ("median", "--"), ("mean", ":")):
        xs, ys = _series(records, lambda r, k=key: r["fitness"][k])
        if xs:
            ax1.plot(xs, ys, style, label=f"{pop} {key}")
    ax1.set_xlabel(unit)
    ax1.set_ylabel("fitness")
    xs, ys = _series(records, lambda r: r["unroll"])
    if len(set(ys)) > 1:
        twin = ax1.twinx()
        twin.step(xs, ys, where="post", color="grey", alpha=0.5, label="unroll T")
        twin.set_ylabel("unroll T")
    if ax1.get_legend_handles_labels()[0]:
        ax1.legend(loc="lower right", fontsize="small")
    ax1.grid(alpha=0.3)
    for who, color in (("best", "C0"), ("mean", "C1")):
        for what, style in (("train_mean", "-"), ("validation_mean", "--")):
            xs, ys = _series(records, lambda r, w=who, m=what: r[w][m])
            if xs:
                name = "current" if gradient and who == "mean" else who
                label = f"{name} genome, {'training' if what == 'train_mean' else 'validation'}"
                ax2.plot(xs, ys, style, color=color, label=label, marker="." if len(xs) < 30 else None)
    ax2.set_xlabel(unit)
    ax2.set_ylabel(f"{'MSE' if metric == 'mse' else 'accuracy'} (mean over tasks)")
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(loc="lower right", fontsize="small")
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _plot_meta_loss(ax, records: list[dict]) -> None:
    """Meta-loss (mean over runs) and, on a log-scaled twin axis, the gradient's global norm."""
    xs, ys = _series(records, lambda r: r["meta_loss"]["mean"])
    ax.plot(xs, ys, color="C2", label="meta-loss (mean over runs)")
    ax.set_xlabel("step")
    ax.set_ylabel("meta-loss")
    ax.grid(alpha=0.3)
    xs, ys = _series(records, lambda r: r["grad_norm"]["mean"])
    if xs and min(ys) > 0:
        twin = ax.twinx()
        twin.plot(xs, ys, color="grey", alpha=0.5, linewidth=0.8, label="gradient norm")
        twin.set_yscale("log")
        twin.set_ylabel("gradient norm (before clipping)")
    ax.legend(loc="upper right", fontsize="small")
