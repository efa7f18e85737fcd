"""Plots of the gradient analysis (paper Fig. 2 and the circulation test) and of monitored runs.

Each figure explains itself (docs/figures.md): a title naming what was run, axis labels with
the quantity, a legend for every line, a colour bar for every heatmap, colours that do not
repeat (:func:`distinct_colors`), and numerical noise drawn as noise (the Fig. 2 map greys
out entries below a stated noise floor, :func:`asymmetry_noise_level`). Each ``plot_*``
function has a ``*_figure`` twin that returns the matplotlib ``Figure`` instead of writing it.

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
    (or ``1e-300`` for ``Q = 0``).  Returns the array and the floor used.  (The heatmap
    does not clamp: it greys out entries below :func:`asymmetry_noise_level`.)"""
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


def asymmetry_noise_level(Q: Any) -> float:
    """The level below which an entry of ``|Q − Qᵀ|`` cannot be told from numerical error.

    The largest entry of ``E + Eᵀ`` when ``Q`` is a ``JacobianResult`` (``E`` its elementwise
    error estimate, as in :mod:`blursim.analysis.asymmetry`), and never below the rounding of
    float64 arithmetic on ``Q`` itself, ``n·ε·max|Q|`` (``ε`` = 2.2e-16, ``n`` the size)."""
    M = as_square_matrix(Q, "Q")
    scale = float(np.max(np.abs(M))) if M.size else 0.0
    level = M.shape[0] * float(np.finfo(np.float64).eps) * scale
    E = getattr(Q, "error_estimate", None)
    if E is not None:
        E = np.abs(np.asarray(E, dtype=np.float64))
        if E.shape == M.shape and E.size:
            level = max(level, float(np.max(E + E.T)))
    return level if level > 0 else 1e-300


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
    suptitle: str | None = None,
    dpi: int = 120,
) -> str:
    """Heatmap of ``ln |∂Δw_k/∂w_m − ∂Δw_m/∂w_k|`` (paper Fig. 2), with noise drawn as noise.

    ``Q`` is an ``(n, n)`` array or a ``JacobianResult`` (whose ``blocks`` are
    used when ``blocks`` is not given).  Projection boundaries are drawn as
    white lines.  With ``compare=`` (e.g. the backprop genome's Jacobian) two
    heatmaps are drawn side by side with a shared colour scale.

    **The noise floor.** Entries of ``|Q − Qᵀ|`` at or below ``floor`` are
    numerical error, not structure: they are drawn grey, and the colour scale
    starts at ``ln(floor)``, so rounding noise (e.g. a symmetric Jacobian's
    entries around ``e^-40``) is never stretched over the whole colour range.
    Default ``floor``: the largest :func:`asymmetry_noise_level` of the panels.
    The colour bar and each panel state the floor and how many entries lie
    above it; a panel with none says that ``Q`` is symmetric to within the
    floor.  Returns the written path.
    """
    fig = asymmetry_figure(Q, blocks, title, compare=compare, compare_title=compare_title,
                           compare_blocks=compare_blocks, floor=floor, suptitle=suptitle)
    return _save_atomic(fig, path, dpi)


def asymmetry_figure(Q: Any, blocks: Sequence[Any] | None = None, title: str | None = None, *,
                     compare: Any = None, compare_title: str | None = None,
                     compare_blocks: Sequence[Any] | None = None, floor: float | None = None,
                     suptitle: str | None = None):
    """The matplotlib ``Figure`` of :func:`plot_asymmetry_heatmap`."""
    from matplotlib import colormaps
    from matplotlib.patches import Patch

    panels = [(Q, blocks if blocks is not None else getattr(Q, "blocks", None), title)]
    if compare is not None:
        panels.append(
            (compare, compare_blocks if compare_blocks is not None else getattr(compare, "blocks", None), compare_title)
        )
    mats = [as_square_matrix(p[0], "Q") for p in panels]
    if floor is None:
        floor = max(asymmetry_noise_level(p[0]) for p in panels)
    if not floor > 0:
        raise AnalysisError(f"floor must be positive, got {floor}.")
    asym = [np.abs(M - M.T) for M in mats]
    above = [A > floor for A in asym]
    lo = float(np.log(floor))
    hi = max((float(np.log(A[m].max())) for A, m in zip(asym, above) if m.any()), default=lo + 1.0)
    if hi <= lo:
        hi = lo + 1.0
    cmap = colormaps["viridis"].with_extremes(bad="lightgrey")

    k = len(panels)
    fig = _new_figure((5.4 * k + 1.4, 6.8))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(1, k, squeeze=False)[0]
    im = None
    for ax, A, m, (_, blk, ttl) in zip(axes, asym, above, panels):
        L = np.ma.masked_array(np.log(np.where(m, A, 1.0)), mask=~m)
        im = ax.imshow(L, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        _draw_blocks(ax, blk, A.shape[0])
        off = ~np.eye(A.shape[0], dtype=bool)
        share = float(m[off].mean()) if off.any() else 0.0
        ax.set_title((ttl or "ln |Q − Qᵀ|") + f"\n{100 * share:.3g} % of off-diagonal entries above the noise floor",
                     fontsize=9)
        ax.set_xlabel("synapse m (grouped by projection)", fontsize=8)
        ax.set_ylabel("synapse k", fontsize=8)
        if not m.any():
            ax.text(0.5, 0.5, "every entry is below the noise floor:\nQ is symmetric to rounding",
                    transform=ax.transAxes, ha="center", va="center", fontsize=9,
                    bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "grey"})
    cb = fig.colorbar(im, ax=list(axes), shrink=0.85)
    if not any(m.any() for m in above):  # nothing to scale: the bar marks the floor only
        cb.set_ticks([lo])
    cb.set_label(f"ln |Q − Qᵀ| = ln |∂Δw_k/∂w_m − ∂Δw_m/∂w_k|\n(scale starts at the noise floor "
                 f"{floor:.2g} = e^{lo:.1f})", fontsize=8)
    fig.legend(handles=[Patch(facecolor="lightgrey", edgecolor="grey",
                              label=f"|Q − Qᵀ| ≤ noise floor {floor:.2g} (numerical error, not asymmetry)")],
               loc="outside lower center", fontsize=8, frameon=False)
    fig.suptitle(suptitle or "Is the update a gradient? Asymmetry of its Jacobian Q = ∂Δw/∂w\n"
                 "(paper Fig. 2; eq. 10: a gradient has Q = Qᵀ)", fontsize=10)
    return fig


def plot_circulation(result: Any, path: str | os.PathLike = "circulation.png", *, title: str | None = None, dpi: int = 120) -> str:
    """``|∮ Δw·dw|`` against ``ε`` on log-log axes, one line per plane, with the
    Stokes prediction (dashed, if available), the rounding floor (dotted) and
    reference slopes 2 and 3.  Returns the written path."""
    return _save_atomic(circulation_figure(result, title=title), path, dpi)


def circulation_figure(result: Any, *, title: str | None = None):
    """The matplotlib ``Figure`` of :func:`plot_circulation`."""
    from matplotlib.lines import Line2D

    eps = np.asarray(result.eps, dtype=np.float64)
    C = np.abs(np.atleast_2d(result.circulation))
    floor = np.atleast_2d(result.noise_floor)
    tiny = np.finfo(np.float64).tiny
    fig = _new_figure((6.0, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    colors = distinct_colors(C.shape[0])
    for p in range(C.shape[0]):
        line = ax.loglog(eps, np.maximum(C[p], tiny), "o-", color=colors[p], label=f"plane {p}")[0]
        if result.predicted is not None:
            ax.loglog(eps, np.maximum(np.abs(result.predicted[p]), tiny), "--", color=line.get_color(), lw=1)
        ax.loglog(eps, np.maximum(floor[p], tiny), ":", color=line.get_color(), lw=1)
    # reference slopes anchored at the largest ε and the largest |C| there
    i0 = int(np.argmax(eps))
    anchor = max(float(np.max(C[:, i0])), float(np.max(floor[:, i0])), tiny)
    for slope, style in ((2, "k-"), (3, "k-.")):
        ax.loglog(eps, anchor * (eps / eps[i0]) ** slope, style, lw=0.8, alpha=0.6,
                  label=f"reference slope {slope}" + (" (non-gradient: C ∝ ε²)" if slope == 2 else ""))
    ax.set_xlabel("loop radius ε")
    ax.set_ylabel("|∮ Δw·dw| (circulation of the update around the loop)")
    ax.set_title(title or "circulation of Δw around loops of radius ε in planes of w\n"
                 "(a gradient field circulates only at the rounding floor)", fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    if result.predicted is not None:
        handles.append(Line2D([], [], color="grey", ls="--", lw=1))
        labels.append("Stokes prediction πε²vᵀ(Q−Qᵀ)u")
    handles.append(Line2D([], [], color="grey", ls=":", lw=1))
    labels.append("rounding floor of the loop sum")
    ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return fig


#: What a recorded phase of the states is, for titles (docs/design.md, Monitors).
_PHASES = {"forward": "after the forward pass (eq. 5)", "feedback": "after the feedback (Sec. 3.3)",
           "backward": "after the backward pass (eq. 6)"}


def distinct_colors(n: int) -> list:
    """``n`` colours, no two alike: matplotlib's ``tab10`` up to 10, ``tab20`` up to 20, else
    ``n`` evenly spaced samples of ``turbo``."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](x) for x in np.linspace(0.0, 1.0, n)]


def _states_title(name: str) -> str:
    """``states:hidden@forward`` -> ``hidden, after the forward pass (eq. 5)``."""
    body = name.split(":", 1)[1] if ":" in name else name
    pop, _, phase = body.partition("@")
    return f"{pop}, {_PHASES.get(phase, phase)}" if phase else pop


def recordings_figure(recordings: dict, *, species: int | None = None, title: str | None = None,
                      bins: int = 40, max_panels: int = 12):
    """The matplotlib ``Figure`` of :func:`plot_recordings` (for callers that draw more on it)."""
    from matplotlib.colors import PowerNorm
    from matplotlib.ticker import MaxNLocator

    norms = {n: r for n, r in recordings.items() if n.startswith("norms:")}
    states = {n: r for n, r in recordings.items() if n.startswith("states:")}
    metrics = [(n, recordings[n]) for n in ("loss", "accuracy")
               if n in recordings and recordings[n].values.size and np.isfinite(recordings[n].values).any()]
    hists = [(name, rec, c) for name, rec in states.items() for c in range(rec.values.shape[-1])]
    if not (norms or metrics or hists):
        raise AnalysisError("nothing to draw: record norms, states, loss or accuracy (e.g. --record default).")
    shown = hists[:max_panels]

    def one_species(rec):
        ax = rec.axis("species")
        labels = rec.coords.get("species", np.arange(rec.values.shape[ax]))
        pos = 0 if species is None else int(np.flatnonzero(labels == species)[0])
        return np.take(rec.values, pos, axis=ax), (labels[pos] if len(labels) else 0)

    rows = int(bool(norms)) + int(bool(metrics)) + (len(shown) + 1) // 2
    fig = _new_figure((13.0, 3.3 * rows + 0.6))
    fig.set_layout_engine("constrained")
    grid = fig.add_gridspec(rows, 2)
    row, s_label = 0, None
    if norms:
        ax = fig.add_subplot(grid[row, :])
        row += 1
        lines = [(name, c) for name, rec in norms.items() for c in range(rec.values.shape[-1])]
        colors = iter(distinct_colors(len(lines)))
        for name, rec in norms.items():
            v, s_label = one_species(rec)  # (step, replica, neuron, channel)
            steps = rec.coords["step"]
            for c in range(v.shape[-1]):
                per = v[..., c].reshape(len(steps), -1)
                label = name[6:] + (f" channel {c}" if v.shape[-1] > 1 else "")
                color = next(colors)
                ax.plot(steps, per.mean(axis=1), "--" if name.startswith("norms:V:") else "-",
                        color=color, label=label)
                if len(lines) <= 6:
                    ax.fill_between(steps, per.min(axis=1), per.max(axis=1), color=color, alpha=0.12)
        ax.set_xlabel("training step (0: initial synapses)")
        ax.set_ylabel("synapse norm per neuron")
        band = "; band: min to max over neurons and replicas" if len(lines) <= 6 else ""
        ax.set_title("synapse norms sqrt(sum_pre W^2) per postsynaptic neuron (V: per presynaptic; dashed): "
                     f"mean over neurons and replicas{band}", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False,
                  ncol=min(len(lines), 4))
    for i, (name, rec) in enumerate(metrics):
        ax = fig.add_subplot(grid[row, i] if len(metrics) > 1 else grid[row, :])
        v, s_label = one_species(rec)  # (step, replica)
        steps = rec.coords["step"]
        v = v.reshape(len(steps), -1)
        for r, color in zip(range(v.shape[1]), distinct_colors(v.shape[1])):
            ax.plot(steps, v[:, r], lw=1, color=color, label=f"replica {r}")
        ax.set_xlabel("training step")
        ax.set_ylabel("accuracy" if name == "accuracy" else "cross-entropy (MSE for target vectors)")
        ax.set_title(f"training-batch {name}, before the step's update", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if v.shape[1] <= 10:
            ax.legend(fontsize=7, frameon=False, loc="best")
    row += int(bool(metrics))
    for i, (name, rec, c) in enumerate(shown):
        ax = fig.add_subplot(grid[row + i // 2, i % 2])
        v, s_label = one_species(rec)  # (step, replica, batch, neuron, state)
        vals = v[..., c].reshape(v.shape[0], -1)
        finite = vals[np.isfinite(vals)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
        hist = np.stack([np.histogram(r[np.isfinite(r)], bins=edges)[0] for r in vals], axis=1)
        hist = hist / max(vals.shape[1], 1)
        steps = rec.coords["step"]
        im = ax.imshow(hist, aspect="auto", origin="lower", cmap="magma", interpolation="nearest",
                       extent=(-0.5, len(steps) - 0.5, lo, hi), norm=PowerNorm(0.4, vmin=0.0, vmax=1.0))
        ticks = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), 6)).round().astype(int))
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(int(steps[t])) for t in ticks], fontsize=7)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"value of state {int(rec.coords['state'][c])}")
        ax.set_title(f"{_states_title(name)}: state {int(rec.coords['state'][c])}", fontsize=9)
        cb = fig.colorbar(im, ax=ax, pad=0.01)
        cb.set_label("fraction of the step's values\n(power scale, exponent 0.4)", fontsize=7)
        cb.ax.tick_params(labelsize=7)
    head = title or "monitored run"
    extra = f"species {s_label}" if s_label is not None else ""
    if len(hists) > len(shown):
        extra += f"; {len(shown)} of {len(hists)} state histograms shown (all are in record.npz)"
    fig.suptitle(head + (f"\n{extra}" if extra else ""), fontsize=11)
    return fig


def plot_recordings(recordings: dict, path: str | os.PathLike = "record.png", *, species: int | None = None,
                    title: str | None = None, bins: int = 40, max_panels: int = 12, dpi: int = 110) -> str:
    """The default figure of a monitored run (:class:`blursim.sim.Monitor`), titled ``title``
    (e.g. the spec, task and genome; :func:`blursim.cli.run` passes them): synapse norms over
    steps (one line per projection and channel, each its own colour, ``V`` dashed: the mean over
    postsynaptic neurons and replicas, the band its spread when there are few lines), the
    training-batch loss and accuracy (one line per replica), and for each recorded population,
    phase and state a histogram of its values over steps (columns: steps; rows: value bins;
    colour, with its colour bar: the fraction of values, on a power scale that shows the tails;
    at most ``max_panels``, the title says when some are left out). ``species``: the species
    label drawn (default: the first recorded). Returns the written path."""
    fig = recordings_figure(recordings, species=species, title=title, bins=bins, max_panels=max_panels)
    return _save_atomic(fig, path, dpi)
