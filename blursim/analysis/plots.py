"""Plots of the gradient analysis (paper Fig. 2 and the circulation test).

Matplotlib is imported lazily inside each function and used through its Agg
canvas directly (no ``pyplot``, no global backend switch), so the analysis
core never needs matplotlib or a display.  Files are written atomically: the
figure is saved to a temporary file in the target directory, then moved into
place with ``os.replace``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from blursim.io import atomic_path

from ._common import AnalysisError, as_square_matrix


def _new_figure(figsize: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _save_atomic(fig: Any, path: str | os.PathLike, dpi: int) -> str:
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise AnalysisError(f"cannot write {path!r}: directory {directory!r} does not exist.")
    ext = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    with atomic_path(path, suffix="." + ext) as tmp:
        fig.savefig(tmp, format=ext, dpi=dpi, bbox_inches="tight")
    return path


def log_abs_asymmetry(Q: Any, floor: float | None = None) -> tuple[np.ndarray, float]:
    """``ln max(|Q − Qᵀ|, floor)`` (Fig. 2).  Default floor: ``1e-16·max|Q|``
    (or ``1e-300`` for ``Q = 0``).  Returns the array and the floor used."""
    Qa = as_square_matrix(Q, "Q")
    A = np.abs(Qa - Qa.T)
    if floor is None:
        scale = float(np.max(np.abs(Qa))) if Qa.size else 0.0
        floor = 1e-16 * scale if scale > 0 else 1e-300
    if not floor > 0:
        raise AnalysisError(f"floor must be positive, got {floor}.")
    return np.log(np.maximum(A, floor)), float(floor)


def _draw_blocks(ax: Any, blocks: Sequence[Any] | None, n: int) -> None:
    if not blocks:
        return
    centers, names = [], []
    for name, start, stop in blocks:
        if not (0 <= start < stop <= n):
            raise AnalysisError(f"block {name!r} range [{start}, {stop}) is outside [0, {n}).")
        for edge in (start, stop):
            if 0 < edge < n:
                ax.axhline(edge - 0.5, color="white", lw=0.8)
                ax.axvline(edge - 0.5, color="white", lw=0.8)
        centers.append((start + stop - 1) / 2.0)
        names.append(str(name))
    ax.set_xticks(centers)
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_yticks(centers)
    ax.set_yticklabels(names, fontsize=7)


def plot_asymmetry_heatmap(
    Q: Any,
    blocks: Sequence[Any] | None = None,
    path: str | os.PathLike = "asymmetry.png",
    title: str | None = None,
    *,
    compare: Any = None,
    compare_title: str | None = None,
    compare_blocks: Sequence[Any] | None = None,
    floor: float | None = None,
    dpi: int = 120,
) -> str:
    """Heatmap of ``ln |∂Δw_k/∂w_m − ∂Δw_m/∂w_k|`` (paper Fig. 2).

    ``Q`` is an ``(n, n)`` array or a ``JacobianResult`` (whose ``blocks`` are
    used when ``blocks`` is not given).  Projection boundaries are drawn as
    white lines.  With ``compare=`` (e.g. the backprop genome's Jacobian) two
    heatmaps are drawn side by side with a shared colour scale.  ``floor``
    replaces zeros before taking the log (default ``1e-16·max|Q|`` over both
    panels).  Returns the written path.
    """
    panels = [(Q, blocks if blocks is not None else getattr(Q, "blocks", None), title)]
    if compare is not None:
        panels.append(
            (compare, compare_blocks if compare_blocks is not None else getattr(compare, "blocks", None), compare_title)
        )
    mats = [as_square_matrix(p[0], "Q") for p in panels]
    if floor is None:
        scale = max((float(np.max(np.abs(M))) if M.size else 0.0) for M in mats)
        floor = 1e-16 * scale if scale > 0 else 1e-300
    logs = [log_abs_asymmetry(M, floor)[0] for M in mats]
    vmin = min(float(L.min()) for L in logs)
    vmax = max(float(L.max()) for L in logs)
    if vmax <= vmin:
        vmax = vmin + 1.0

    k = len(panels)
    fig = _new_figure((5.2 * k + 0.8, 4.8))
    axes = fig.subplots(1, k, squeeze=False, gridspec_kw={"wspace": 0.35})[0]
    im = None
    for ax, L, (_, blk, ttl) in zip(axes, logs, panels):
        im = ax.imshow(L, cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest")
        _draw_blocks(ax, blk, L.shape[0])
        ax.set_title(ttl or "ln |Q − Qᵀ|", fontsize=9)
    cb = fig.colorbar(im, ax=list(axes), shrink=0.85)
    cb.set_label("ln |∂Δw_k/∂w_m − ∂Δw_m/∂w_k|")
    return _save_atomic(fig, path, dpi)


def plot_circulation(result: Any, path: str | os.PathLike = "circulation.png", *, title: str | None = None, dpi: int = 120) -> str:
    """``|∮ Δw·dw|`` against ``ε`` on log-log axes, one line per plane, with the
    Stokes prediction (dashed, if available), the rounding floor (dotted) and
    reference slopes 2 and 3.  Returns the written path."""
    eps = np.asarray(result.eps, dtype=np.float64)
    C = np.abs(np.atleast_2d(result.circulation))
    floor = np.atleast_2d(result.noise_floor)
    tiny = np.finfo(np.float64).tiny
    fig = _new_figure((6.0, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    for p in range(C.shape[0]):
        line = ax.loglog(eps, np.maximum(C[p], tiny), "o-", label=f"plane {p}")[0]
        if result.predicted is not None:
            ax.loglog(eps, np.maximum(np.abs(result.predicted[p]), tiny), "--", color=line.get_color(), lw=1)
        ax.loglog(eps, np.maximum(floor[p], tiny), ":", color=line.get_color(), lw=1)
    # reference slopes anchored at the largest ε and the largest |C| there
    i0 = int(np.argmax(eps))
    anchor = max(float(np.max(C[:, i0])), float(np.max(floor[:, i0])), tiny)
    for slope, style in ((2, "k-"), (3, "k-.")):
        ax.loglog(eps, anchor * (eps / eps[i0]) ** slope, style, lw=0.8, alpha=0.6, label=f"slope {slope}")
    ax.set_xlabel("loop radius ε")
    ax.set_ylabel("|∮ Δw·dw|")
    ax.set_title(title or "circulation (dashed: Stokes πε²vᵀ(Q−Qᵀ)u; dotted: rounding floor)", fontsize=8)
    ax.legend(fontsize=7)
    return _save_atomic(fig, path, dpi)


def plot_recordings(recordings: dict, path: str | os.PathLike = "record.png", *, species: int | None = None,
                    bins: int = 40, max_panels: int = 12, dpi: int = 110) -> str:
    """The default figure of a monitored run (:class:`blursim.sim.Monitor`): synapse norms over
    steps (one line per projection and channel: the mean over postsynaptic neurons and replicas,
    the band its spread over neurons), the training loss, and for each recorded population and
    phase a histogram of each state's values over steps (columns: steps; rows: value bins; colour:
    the fraction of values, on a power scale that shows the tails). ``species``: the species label drawn (default: the first recorded).
    Returns the written path."""
    norms = {n: r for n, r in recordings.items() if n.startswith("norms:")}
    states = {n: r for n, r in recordings.items() if n.startswith("states:")}
    loss = recordings.get("loss")
    panels: list[tuple[str, Any]] = []
    if norms:
        panels.append(("norms", norms))
    if loss is not None and loss.values.size:
        panels.append(("loss", loss))
    for name, rec in states.items():
        for c in range(rec.values.shape[-1]):
            panels.append(("hist", (name, rec, c)))
    if not panels:
        raise AnalysisError("nothing to draw: record norms, states or loss (e.g. --record default).")
    panels = panels[:max_panels]

    def one_species(rec):
        ax = rec.axis("species")
        labels = rec.coords.get("species", np.arange(rec.values.shape[ax]))
        pos = 0 if species is None else int(np.flatnonzero(labels == species)[0])
        return np.take(rec.values, pos, axis=ax), (labels[pos] if len(labels) else 0)

    cols = 2 if len(panels) > 1 else 1
    rows = (len(panels) + cols - 1) // cols
    fig = _new_figure((6.2 * cols, 3.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw={"hspace": 0.55, "wspace": 0.3}).ravel()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax, (kind, item) in zip(axes, panels):
        if kind == "norms":
            for name, rec in item.items():
                v, s_label = one_species(rec)  # (step, replica, neuron, channel)
                steps = rec.coords["step"]
                for c in range(v.shape[-1]):
                    per = v[..., c].reshape(len(steps), -1)
                    mean = per.mean(axis=1)
                    line = ax.plot(steps, mean, label=f"{name[6:]}" + (f" ch {c}" if v.shape[-1] > 1 else ""))[0]
                    ax.fill_between(steps, per.min(axis=1), per.max(axis=1), color=line.get_color(), alpha=0.15)
            ax.set_xlabel("step")
            ax.set_ylabel("‖W‖ per neuron")
            ax.set_title(f"synapse norms (species {s_label})", fontsize=9)
            ax.legend(fontsize=6)
        elif kind == "loss":
            v, s_label = one_species(item)  # (step, replica)
            ax.plot(item.coords["step"], v, lw=1)
            ax.set_xlabel("step")
            ax.set_ylabel("training-batch loss")
            ax.set_title(f"loss (species {s_label}, one line per replica)", fontsize=9)
        else:
            name, rec, c = item
            v, s_label = one_species(rec)  # (step, replica, batch, neuron, state)
            vals = v[..., c].reshape(v.shape[0], -1)
            finite = vals[np.isfinite(vals)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
            if hi <= lo:
                lo, hi = lo - 0.5, hi + 0.5
            edges = np.linspace(lo, hi, bins + 1)
            hist = np.stack([np.histogram(row[np.isfinite(row)], bins=edges)[0] for row in vals], axis=1)
            hist = hist / max(vals.shape[1], 1)
            steps = rec.coords["step"]
            from matplotlib.colors import PowerNorm

            ax.imshow(hist, aspect="auto", origin="lower", cmap="magma", interpolation="nearest",
                      extent=(-0.5, len(steps) - 0.5, lo, hi), norm=PowerNorm(0.4, vmin=0.0, vmax=1.0))
            ticks = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), 6)).round().astype(int))
            ax.set_xticks(ticks)
            ax.set_xticklabels([str(int(steps[t])) for t in ticks], fontsize=7)
            ax.set_xlabel("step")
            ax.set_ylabel(f"state {int(rec.coords['state'][c])}")
            ax.set_title(f"{name} (species {s_label})", fontsize=9)
    return _save_atomic(fig, path, dpi)
