"""The figures blursim writes explain themselves (issue 26 item 4): checked by structure on tiny
inputs, headless (Agg canvas) — titles, axis labels, legends with every line, outside the
data, integer ticks for counts, colour bars on heatmaps, colours that do not repeat, noise
drawn as noise. No pixel comparisons."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from blursim.analysis.plots import asymmetry_figure, distinct_colors, recordings_figure  # noqa: E402
from blursim.meta.plot import plot_records, records_figure  # noqa: E402
from blursim.sim.monitor import Recording  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _drawn(fig):
    fig.canvas.draw()
    return fig


def _data_axes(fig):
    """The visible axes that hold data (colour-bar axes excluded)."""
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


def _main_axes(fig):
    """Data axes that are not twins (a twin shares the x axis of another and has no title)."""
    out = []
    for ax in _data_axes(fig):
        if any(ax is not o and ax.get_shared_x_axes().joined(ax, o) and o in out for o in out):
            continue
        out.append(ax)
    return out


def _ticks_inside(ax, axis="x"):
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    ticks = ax.get_xticks() if axis == "x" else ax.get_yticks()
    return [t for t in ticks if lo <= t <= hi]


# --------------------------------------------------------------------------- meta_training.png
def _es_records(n=3):
    recs = [{"generation": 0, "unroll": 10, "fitness": None, "best": None,
             "mean": {"train_mean": 0.5, "validation_mean": 0.45}}]
    for g in range(1, n + 1):
        recs.append({
            "generation": g, "unroll": 10 if g < 2 else 15,
            "fitness": {"best": 0.6 + 0.01 * g, "median": 0.5 + 0.01 * g, "mean": 0.48 + 0.01 * g},
            "best": {"train_mean": 0.6 + 0.01 * g, "validation_mean": 0.55 if g == n else None},
            "mean": {"train_mean": 0.55, "validation_mean": 0.5 if g == n else None},
        })
    return recs


def _gradient_records(n=4):
    recs = _es_records(n)
    for r in recs[1:]:
        g = r["generation"]
        r["fitness"]["median"] = r["fitness"]["mean"]  # two runs: median = mean
        r["meta_loss"] = {"mean": 0.7 - 0.01 * g, "runs": [0.7, 0.7]}
        r["grad_norm"] = {"mean": 3.0 * g, "runs": [3.0 * g, 3.0 * g], "clipped": int(3.0 * g > 10)}
        if g % 2:
            r["mean"] = None  # the current genome is measured only at validation steps
    return recs


EXPERIMENT_ES = {"name": "toy", "strategy": {"name": "cma_es", "popsize": 24, "sigma0": 0.2},
                 "fitness": {"metric": "accuracy"}}
EXPERIMENT_GRAD = {"name": "toy_gradient", "strategy": {"name": "gradient",
                                                        "options": {"learning_rate": 0.01, "runs": 2}}}


@pytest.mark.parametrize("gradient", [False, True], ids=["es", "gradient"])
def test_meta_training_figure_explains_itself(gradient):
    recs = _gradient_records() if gradient else _es_records()
    exp = EXPERIMENT_GRAD if gradient else EXPERIMENT_ES
    fig = _drawn(records_figure(recs, experiment=exp))
    title = fig.get_suptitle()
    assert exp["name"] in title and exp["strategy"]["name"].split("_")[0] in title
    main = _main_axes(fig)
    assert len(main) == (3 if gradient else 2)
    for ax in main:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), ax
        # generations are counted: integer ticks only (3 generations would otherwise get 0.5 steps)
        ticks = _ticks_inside(ax)
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        leg = ax.get_legend()
        assert leg is not None
        # every line of the panel and of its twin is in the legend
        lines = [ln for a in _data_axes(fig) if a is ax or a.get_shared_x_axes().joined(a, ax)
                 for ln in a.get_lines() if not ln.get_label().startswith("_")]
        assert sorted(t.get_text() for t in leg.get_texts()) == sorted(ln.get_label() for ln in lines)
        # the legend is outside the data: below the axes
        assert leg.get_window_extent().y1 <= ax.get_window_extent().y0 + 1
        for ln in ax.get_lines():  # no gaps: every drawn point is a number, lines are solid or dashed
            assert np.isfinite(np.asarray(ln.get_ydata(), float)).all()
            assert ln.get_linestyle() in ("-", "--")
    twins = [ax for ax in _data_axes(fig) if ax not in main]
    for twin in twins:  # unroll length T: integer ticks; the gradient norm: log scale
        assert twin.get_ylabel()
        if "unroll" in twin.get_ylabel():
            assert all(float(t).is_integer() for t in _ticks_inside(twin, "y"))
    if gradient:
        norm_axis = next(t for t in twins if t.get_yscale() == "log")
        clip = [ln for ln in norm_axis.get_lines() if "clipping threshold 10" in ln.get_label()]
        assert len(clip) == 1 and list(clip[0].get_ydata()) == [10, 10]  # the option's default
        labels = [t.get_text() for t in main[1].get_legend().get_texts()]
        assert "runs median" not in labels and any("= median" in s for s in labels)


def test_meta_training_png_bytes_and_short_runs():
    data = plot_records(_es_records(1), metric="accuracy")
    assert data[:8] == PNG
    fig = _drawn(records_figure(_es_records(1), title="my run"))
    assert fig.get_suptitle() == "my run"
    assert all(float(t).is_integer() for ax in _main_axes(fig) for t in _ticks_inside(ax))


# --------------------------------------------------------------------------------- record.png
def _recordings(n_proj=3, steps=6, replicas=2, pops=("h", "out")):
    rng = np.random.default_rng(0)
    st = np.arange(1, steps + 1)
    coords = lambda **kw: {"step": st, "species": np.array([0]), "replica": np.arange(replicas), **kw}  # noqa: E731
    recs = {}
    for p in range(n_proj):
        for v in ("", "V:"):
            name = f"norms:{v}p{p}"
            recs[name] = Recording(name, rng.random((steps + 1, 1, replicas, 4, 2)),
                                   ("step", "species", "replica", "neuron", "channel"),
                                   {**coords(channel=np.arange(2)), "step": np.arange(steps + 1)})
    for pop in pops:
        for phase in ("forward", "backward"):
            name = f"states:{pop}@{phase}"
            recs[name] = Recording(name, rng.standard_normal((steps, 1, replicas, 5, 3, 2)),
                                   ("step", "species", "replica", "batch", "neuron", "state"),
                                   coords(state=np.arange(2)))
    for name in ("loss", "accuracy"):
        recs[name] = Recording(name, rng.random((steps, 1, replicas)), ("step", "species", "replica"), coords())
    return recs


def test_record_figure_explains_itself():
    recs = _recordings(n_proj=3)  # 3 projections x (W, V) x 2 channels = 12 norm lines
    fig = _drawn(recordings_figure(recs, title="toy_blur.json on xor, preset random"))
    assert fig.get_suptitle().startswith("toy_blur.json on xor, preset random")
    axes = _data_axes(fig)
    for ax in axes:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
    norms = next(ax for ax in axes if "synapse norms" in ax.get_title())
    lines = norms.get_lines()
    assert len(lines) == 12
    colors = {tuple(np.round(np.asarray(__import__("matplotlib").colors.to_rgba(ln.get_color())), 6))
              for ln in lines}
    assert len(colors) == len(lines)  # no colour repeats beyond ten lines
    assert len(norms.get_legend().get_texts()) == 12
    acc = [ax for ax in axes if "accuracy" in ax.get_title()]
    assert len(acc) == 1 and len(acc[0].get_lines()) == 2  # one line per replica
    heatmaps = [ax for ax in axes if ax.images]
    assert len(heatmaps) == 2 * 2 * 2  # populations x phases x states
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colorbars) == len(heatmaps)
    assert all("fraction" in cb.get_ylabel() for cb in colorbars)
    assert all(float(t).is_integer() for ax in heatmaps for t in _ticks_inside(ax))


def test_record_figure_says_what_it_leaves_out():
    fig = recordings_figure(_recordings(pops=("a", "b", "c", "d")), max_panels=4)
    assert "4 of 16 state histograms shown" in fig.get_suptitle()
    assert len([ax for ax in fig.axes if ax.images]) == 4


def test_distinct_colors_never_repeat():
    for n in (1, 10, 11, 20, 21, 60):
        assert len(set(distinct_colors(n))) == n


# ----------------------------------------------------------------------- Fig. 2 asymmetry map
def test_asymmetry_map_greys_out_rounding_noise():
    rng = np.random.default_rng(3)
    n = 12
    S = rng.standard_normal((n, n))
    sym = S + S.T
    noisy = sym + 1e-17 * rng.standard_normal((n, n))  # rounding-size asymmetry only
    asym = sym.copy()
    asym[:4, 6:] += 0.1 * rng.standard_normal((4, 6))  # one block of real asymmetry
    fig = _drawn(asymmetry_figure(asym, None, "learned", compare=noisy, compare_title="backprop"))
    floor = n * np.finfo(np.float64).eps * max(np.abs(asym).max(), np.abs(noisy).max())
    left, right = [ax for ax in _data_axes(fig) if ax.images]
    for ax, Q in ((left, asym), (right, noisy)):
        shown = ax.images[0].get_array()
        np.testing.assert_array_equal(np.ma.getmaskarray(shown), np.abs(Q - Q.T) <= floor)
        assert ax.images[0].norm.vmin == pytest.approx(np.log(floor))
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert np.ma.getmaskarray(right.images[0].get_array()).all()
    assert any("below the noise floor" in t.get_text() for t in right.texts)
    assert "0 % of off-diagonal" in right.get_title() and "0 % of" not in left.get_title()
    (cb,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert "noise floor" in cb.get_ylabel() and f"{floor:.2g}" in cb.get_ylabel()
    assert fig.get_suptitle() and fig.legends


def test_asymmetry_map_uses_the_jacobians_error_estimate():
    from blursim.analysis.plots import asymmetry_noise_level

    class J:  # a JacobianResult-like object: Q and its elementwise error estimate
        def __init__(self, Q, E):
            self.Q, self.error_estimate = Q, E

        def __array__(self, dtype=None, copy=None):
            return np.asarray(self.Q, dtype=dtype)

    Q = np.array([[0.0, 1e-9], [0.0, 0.0]])
    E = np.full((2, 2), 1e-8)
    assert asymmetry_noise_level(J(Q, E)) == pytest.approx(2e-8)
    assert asymmetry_noise_level(Q) == pytest.approx(2 * np.finfo(float).eps * 1e-9)


# -------------------------------------------------------------------------- circulation.png
def test_circulation_figure_legends_every_line_style_and_colours_planes_apart():
    from types import SimpleNamespace

    from blursim.analysis.plots import circulation_figure

    eps = np.array([1e-3, 1e-2, 1e-1])
    planes = 12
    C = np.outer(np.arange(1, planes + 1), eps ** 2)
    res = SimpleNamespace(eps=eps, circulation=C, noise_floor=1e-16 * np.ones_like(C), predicted=C * 1.01)
    fig = _drawn(circulation_figure(res, title="net, genome"))
    (ax,) = _data_axes(fig)
    assert ax.get_title() == "net, genome" and ax.get_xlabel() and ax.get_ylabel()
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [t for t in texts if t.startswith("plane")] == [f"plane {p}" for p in range(planes)]
    assert any("Stokes" in t for t in texts) and any("rounding floor" in t for t in texts)
    measured = [ln for ln in ax.get_lines() if ln.get_label().startswith("plane")]
    assert len({ln.get_color() if isinstance(ln.get_color(), str) else tuple(ln.get_color())
                for ln in measured}) == planes
