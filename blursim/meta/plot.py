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
    ``"mse"``) of the best and mean genomes per generation."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    for key, style in (("best", "-"), ("median", "--"), ("mean", ":")):
        xs, ys = _series(records, lambda r, k=key: r["fitness"][k])
        if xs:
            ax1.plot(xs, ys, style, label=f"population {key}")
    ax1.set_xlabel("generation")
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
                label = f"{who} genome, {'training' if what == 'train_mean' else 'validation'}"
                ax2.plot(xs, ys, style, color=color, label=label, marker="." if len(xs) < 30 else None)
    ax2.set_xlabel("generation")
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
