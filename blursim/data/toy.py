"""Two-dimensional toy classification tasks (BLUR paper, Fig. 3 and Sec. 4.1).

Section 4.1 meta-trains a two-layer network on "toy examples with two
variable inputs" -- and, xor, two-moon and others -- and validates on held-out
ones (centre circle, small centre circle, pie slice, five gaussian blobs,
cross, triangle), all drawn in Fig. 3. Each task here is a seeded generator of
points in the square ``[-1, 1]^2``.

Conventions shared by every task
--------------------------------
* Options ``seed: int = 0`` (>= 0), ``n_train: int = 1024`` and
  ``n_test: int = 1024``, plus task-specific ones listed per task.
* Randomness comes only from ``numpy.random.SeedSequence(seed)``, spawned into
  three independent streams: one for the task's own random parameters (the
  centre of ``circle``, the rotation of ``random_xor``, ...), one for the train
  points and one for the test points. So train and test are independent draws
  from the same distribution, the task parameters do not depend on
  ``n_train``/``n_test``, and the global NumPy RNG is never touched.
* Unless a task says otherwise, points are uniform on ``[-1, 1]^2`` and the
  label is a geometric rule of the point. For the rule-based tasks,
  :func:`label_points` evaluates that rule on arbitrary points (e.g. a grid, to
  draw the true decision regions as in Fig. 3).
* Boolean tasks read the quadrant signs as bits ``a = x > 0``, ``b = y > 0``:
  ``xor`` is ``a != b`` (label 1 where ``sign(x) * sign(y) < 0``), ``and`` is
  ``a and b``, ``or`` is ``a or b``.
* The task's random parameters are recorded in ``meta["params"]``.
* Every split must contain every class; if a tiny ``n_train``/``n_test``
  misses one, a :class:`~blursim.errors.DataError` says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from blursim.data.base import Dataset, DatasetOptions, register_dataset
from blursim.errors import DataError, SpecError
from blursim.spec.options import validate_options

__all__ = ["TOY_TASKS", "label_points"]

_MAX_POINTS = 10_000_000
_SOURCE = "synthetic: blursim.data.toy (BLUR paper Fig. 3, Sec. 4.1)"

#: Radius of the centred circle that covers half of the square: pi r^2 = 2.
BALANCED_RADIUS = math.sqrt(2.0 / math.pi)

#: Vertices (counter-clockwise) of the ``triangle`` task.
TRIANGLE_VERTICES = ((-0.9, -0.8), (0.9, -0.8), (0.0, 0.9))

Params = dict[str, Any]


class ToyOptions(DatasetOptions):
    """Options of every toy task."""

    seed: int = Field(0, ge=0, description="seed of the task parameters and of both splits")
    n_train: int = Field(1024, ge=1, le=_MAX_POINTS, description="points in the train split")
    n_test: int = Field(1024, ge=1, le=_MAX_POINTS, description="points in the test split")


def _extra(opts: ToyOptions) -> dict[str, Any]:
    """The task-specific options (those beyond seed, n_train and n_test)."""
    return {k: v for k, v in opts.model_dump().items() if k not in ToyOptions.model_fields}


@dataclass(frozen=True)
class _RuleTask:
    """A task whose label is ``rule(points, params)`` on uniform points."""

    params: Callable[[np.random.Generator, dict[str, Any]], Params]
    rule: Callable[[np.ndarray, Params], np.ndarray]
    options: type[ToyOptions]


_RULE_TASKS: dict[str, _RuleTask] = {}
_ALL_TASKS: list[str] = []


def _streams(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    params, train, test = np.random.SeedSequence(seed).spawn(3)
    return (
        np.random.default_rng(params),
        np.random.default_rng(train),
        np.random.default_rng(test),
    )


def _uniform(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, size=(n, 2))


def _finish(
    name: str,
    seed: int,
    options: dict[str, Any],
    params: Params,
    n_classes: int,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
) -> Dataset:
    for split, (_, y) in (("train", train), ("test", test)):
        counts = np.bincount(y, minlength=n_classes)
        missing = [int(c) for c in np.flatnonzero(counts == 0)]
        if missing:
            raise DataError(
                f"dataset {name!r} (seed={seed}): the {split} split of {y.size} point(s) "
                f"contains no point of class(es) {missing}, but every split needs every "
                f"class; raise n_{split} (currently {y.size}) or choose another seed."
            )
    return Dataset(
        name=name,
        x_train=train[0],
        y_train=train[1],
        x_test=test[0],
        y_test=test[1],
        n_classes=n_classes,
        meta={"options": options, "seed": seed, "source": _SOURCE, "params": params},
    )


def _make_rule_task(name: str, opts: ToyOptions) -> Dataset:
    task = _RULE_TASKS[name]
    p_rng, tr_rng, te_rng = _streams(opts.seed)
    params = task.params(p_rng, _extra(opts))
    splits = []
    for rng, n in ((tr_rng, opts.n_train), (te_rng, opts.n_test)):
        x = _uniform(rng, n)
        splits.append((x, task.rule(x, params).astype(np.int64)))
    return _finish(name, opts.seed, opts.model_dump(), params, 2, splits[0], splits[1])


def _rule_task(
    name: str,
    rule: Callable[[np.ndarray, Params], np.ndarray],
    params: Callable[[np.random.Generator, dict[str, Any]], Params] | None = None,
    options: type[ToyOptions] = ToyOptions,
):
    """Decorator: register ``factory`` as a rule-based toy task ``name`` with ``options``."""

    def _add(factory: Callable[..., Dataset]) -> Callable[..., Dataset]:
        _RULE_TASKS[name] = _RuleTask(
            params=params or (lambda rng, opts: dict(opts)), rule=rule, options=options
        )
        _ALL_TASKS.append(name)
        return register_dataset(name, options)(factory)

    return _add


def label_points(name: str, points: Any, *, seed: int = 0, **options: Any) -> np.ndarray:
    """Labels that the rule-based toy task ``name`` gives to ``points``.

    ``points`` is an ``(N, 2)`` array; ``seed`` and the task options are those
    of the dataset factory (``n_train``/``n_test`` are accepted and ignored),
    so ``label_points(name, ds.x_train, **ds.meta["options"])`` reproduces
    ``ds.y_train``. Not available for ``two_moons`` and ``blobs5``, whose
    labels come from the generator rather than a rule.
    """
    task = _RULE_TASKS.get(name)
    if task is None:
        raise SpecError(
            f"toy task {name!r} has no labelling rule",
            value=name,
            choices=_RULE_TASKS,
            hint="two_moons and blobs5 label points by how they are generated.",
        )
    opts = validate_options(task.options, {"seed": seed, **options}, what=f"toy task {name!r}")
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise DataError(
            f"label_points({name!r}): points must be an (N, 2) array but have shape "
            f"{pts.shape}; pass one (x, y) pair per row."
        )
    p_rng, _, _ = _streams(opts.seed)
    return task.rule(pts, task.params(p_rng, _extra(opts))).astype(np.int64)


# ---------------------------------------------------------------------------
# labelling rules


def _quadrant_bits(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return p[:, 0] > 0, p[:, 1] > 0


def _xor_rule(p: np.ndarray, _: Params) -> np.ndarray:
    a, b = _quadrant_bits(p)
    return a != b


def _and_rule(p: np.ndarray, _: Params) -> np.ndarray:
    a, b = _quadrant_bits(p)
    return a & b


def _or_rule(p: np.ndarray, _: Params) -> np.ndarray:
    a, b = _quadrant_bits(p)
    return a | b


def _circle_rule(p: np.ndarray, params: Params) -> np.ndarray:
    c = np.asarray(params["center"], dtype=np.float64)
    return ((p - c) ** 2).sum(axis=1) < params["radius"] ** 2


def _pie_rule(p: np.ndarray, params: Params) -> np.ndarray:
    angle = np.arctan2(p[:, 1], p[:, 0])
    off = np.deg2rad(params["direction_deg"])
    diff = np.mod(angle - off + np.pi, 2 * np.pi) - np.pi
    return np.abs(diff) < np.deg2rad(params["width_deg"]) / 2


def _cross_rule(p: np.ndarray, params: Params) -> np.ndarray:
    w = params["half_width"]
    return (np.abs(p[:, 0]) < w) | (np.abs(p[:, 1]) < w)


def _triangle_rule(p: np.ndarray, params: Params) -> np.ndarray:
    v = np.asarray(params["vertices"], dtype=np.float64)
    inside = np.ones(p.shape[0], dtype=bool)
    for i in range(3):
        a, b = v[i], v[(i + 1) % 3]
        edge = (b[0] - a[0]) * (p[:, 1] - a[1]) - (b[1] - a[1]) * (p[:, 0] - a[0])
        inside &= edge > 0
    return inside


def _square_rule(p: np.ndarray, params: Params) -> np.ndarray:
    s = params["half_side"]
    return (np.abs(p[:, 0]) < s) & (np.abs(p[:, 1]) < s)


def _random_xor_rule(p: np.ndarray, params: Params) -> np.ndarray:
    d = p - np.asarray(params["center"], dtype=np.float64)
    ca, sa = math.cos(params["angle"]), math.sin(params["angle"])
    u = ca * d[:, 0] + sa * d[:, 1]
    v = -sa * d[:, 0] + ca * d[:, 1]
    return (u > 0) != (v > 0)


def _checkerboard_rule(p: np.ndarray, params: Params) -> np.ndarray:
    k = params["cells"]
    idx = np.clip(np.floor((p + 1.0) / 2.0 * k), 0, k - 1).astype(np.int64)
    return (idx[:, 0] + idx[:, 1]) % 2 == 1


def _spiral_rule(p: np.ndarray, params: Params) -> np.ndarray:
    r = np.hypot(p[:, 0], p[:, 1])
    phase = np.arctan2(p[:, 1], p[:, 0]) - 2 * np.pi * params["turns"] * r
    return np.mod(np.floor(phase / np.pi), 2) == 1


def _halfplane_rule(p: np.ndarray, params: Params) -> np.ndarray:
    a = params["normal_angle"]
    return p[:, 0] * math.cos(a) + p[:, 1] * math.sin(a) > params["offset"]


# ---------------------------------------------------------------------------
# random task parameters


def _random_circle(rng: np.random.Generator, _: dict[str, Any]) -> Params:
    center = rng.uniform(-0.5, 0.5, size=2)
    return {"center": [float(c) for c in center], "radius": float(rng.uniform(0.3, 0.7))}


def _centred_circle(_: np.random.Generator, opts: dict[str, Any]) -> Params:
    return {"center": [0.0, 0.0], "radius": opts["radius"]}


def _triangle_params(_: np.random.Generator, __: dict[str, Any]) -> Params:
    return {"vertices": [list(v) for v in TRIANGLE_VERTICES]}


def _random_xor_params(rng: np.random.Generator, _: dict[str, Any]) -> Params:
    center = rng.uniform(-0.5, 0.5, size=2)
    return {"center": [float(c) for c in center], "angle": float(rng.uniform(0, 2 * np.pi))}


def _halfplane_params(rng: np.random.Generator, _: dict[str, Any]) -> Params:
    return {
        "normal_angle": float(rng.uniform(0, 2 * np.pi)),
        "offset": float(rng.uniform(-0.4, 0.4)),
    }


class CenteredCircleOptions(ToyOptions):
    radius: float = Field(
        BALANCED_RADIUS, gt=0.0, lt=math.sqrt(2.0),
        description="radius of the disc about the origin (sqrt(2/pi): half the square)",
    )


class SmallCircleOptions(CenteredCircleOptions):
    radius: float = Field(0.4, gt=0.0, lt=math.sqrt(2.0), description="radius of the disc about the origin")


class PieOptions(ToyOptions):
    direction_deg: float = Field(
        0.0, ge=-360.0, le=360.0, description="centre of the wedge, degrees counter-clockwise from +x"
    )
    width_deg: float = Field(90.0, gt=0.0, lt=360.0, description="opening angle of the wedge, degrees")


class CrossOptions(ToyOptions):
    half_width: float = Field(0.3, gt=0.0, lt=1.0, description="half the width of each bar of the plus")


class SquareOptions(ToyOptions):
    half_side: float = Field(0.7, gt=0.0, lt=1.0, description="half the side of the centred square")


class CheckerboardOptions(ToyOptions):
    cells: int = Field(4, ge=2, le=64, description="cells per side of the board")


class SpiralOptions(ToyOptions):
    turns: float = Field(1.0, gt=0.0, lt=10.0, description="turns of each arm per unit radius")


class MoonsOptions(ToyOptions):
    noise: float = Field(0.1, ge=0.0, le=1.0, description="standard deviation of make_moons' noise")


class BlobsOptions(ToyOptions):
    cluster_std: float = Field(0.12, gt=0.0, le=0.5, description="standard deviation of each blob")


# ---------------------------------------------------------------------------
# the tasks (first docstring line is what `blursim list` shows)


@_rule_task("xor", _xor_rule)
def xor(opts: ToyOptions) -> Dataset:
    """XOR of the quadrant signs: label 1 where sign(x)*sign(y) < 0 (Fig. 3, meta-training).

    Uniform points on [-1, 1]^2; ``y = (x > 0) != (y > 0)``. See Sec. 4.1.
    """
    return _make_rule_task("xor", opts)


@_rule_task("and", _and_rule)
def and_(opts: ToyOptions) -> Dataset:
    """AND of the quadrant signs: label 1 only where x > 0 and y > 0 (Fig. 3, meta-training).

    Uniform points on [-1, 1]^2; about a quarter of them are class 1. Sec. 4.1.
    """
    return _make_rule_task("and", opts)


@_rule_task("or", _or_rule)
def or_(opts: ToyOptions) -> Dataset:
    """OR of the quadrant signs: label 1 where x > 0 or y > 0 (Fig. 3 style, Sec. 4.1).

    Uniform points on [-1, 1]^2; about three quarters of them are class 1.
    """
    return _make_rule_task("or", opts)


@_rule_task("circle", _circle_rule, _random_circle)
def circle(opts: ToyOptions) -> Dataset:
    """Inside (1) vs outside (0) a circle whose centre and radius come from the seed (Sec. 4.1).

    The centre is uniform on [-0.5, 0.5]^2 and the radius uniform on
    [0.3, 0.7], both drawn from the task-parameter stream of ``seed``; they are
    recorded in ``meta["params"]``. Points uniform on [-1, 1]^2.
    """
    return _make_rule_task("circle", opts)


@_rule_task("center_circle", _circle_rule, _centred_circle, CenteredCircleOptions)
def center_circle(opts: CenteredCircleOptions) -> Dataset:
    """Inside (1) vs outside (0) a circle centred at the origin (Fig. 3 "centercirc", validation).

    The default radius sqrt(2/pi) ~ 0.798 makes the disc half the area of the
    square, so the classes are balanced. Points uniform on [-1, 1]^2. Sec. 4.1.
    """
    return _make_rule_task("center_circle", opts)


@_rule_task("small_center_circle", _circle_rule, _centred_circle, SmallCircleOptions)
def small_center_circle(opts: SmallCircleOptions) -> Dataset:
    """Inside (1) vs outside (0) a small centred circle (Fig. 3 "smallcentercirc", validation).

    Radius 0.4 by default: about 12.6% of uniform points on [-1, 1]^2 fall
    inside, an unbalanced task. Sec. 4.1.
    """
    return _make_rule_task("small_center_circle", opts)


@_rule_task("pie_slice", _pie_rule, options=PieOptions)
def pie_slice(opts: PieOptions) -> Dataset:
    """A wedge of angles about the origin is class 1 (Fig. 3 "pieslice", validation).

    Label 1 where the polar angle of the point lies within ``width_deg / 2``
    of ``direction_deg`` (degrees, counter-clockwise from the +x axis). The
    default is the quarter wedge ``x > |y|``. Points uniform on [-1, 1]^2.
    Sec. 4.1.
    """
    return _make_rule_task("pie_slice", opts)


@_rule_task("cross", _cross_rule, options=CrossOptions)
def cross(opts: CrossOptions) -> Dataset:
    """A thick plus-shaped band is class 1 (Fig. 3 "cross", validation).

    Label 1 where ``|x| < half_width`` or ``|y| < half_width``; the default
    0.3 covers about 51% of the square. Points uniform on [-1, 1]^2. Sec. 4.1.
    """
    return _make_rule_task("cross", opts)


@_rule_task("triangle", _triangle_rule, _triangle_params)
def triangle(opts: ToyOptions) -> Dataset:
    """Inside (1) vs outside (0) a fixed triangle (Fig. 3 "triangle", validation).

    Vertices (-0.9, -0.8), (0.9, -0.8), (0, 0.9): about 38% of uniform points
    on [-1, 1]^2 fall inside. Sec. 4.1.
    """
    return _make_rule_task("triangle", opts)


@_rule_task("square", _square_rule, options=SquareOptions)
def square(opts: SquareOptions) -> Dataset:
    """Inside (1) vs outside (0) a centred axis-aligned square (in the spirit of Fig. 3).

    Label 1 where ``max(|x|, |y|) < half_side``; the default 0.7 covers 49%
    of the square. Points uniform on [-1, 1]^2. Sec. 4.1.
    """
    return _make_rule_task("square", opts)


@_rule_task("random_xor", _random_xor_rule, _random_xor_params)
def random_xor(opts: ToyOptions) -> Dataset:
    """XOR about a random centre and rotation drawn from the seed (variant of Fig. 3 xor).

    With centre ``c`` uniform on [-0.5, 0.5]^2 and angle ``a`` uniform on
    [0, 2 pi) (in ``meta["params"]``), ``(u, v)`` is ``p - c`` rotated by
    ``-a`` and the label is ``(u > 0) != (v > 0)``. Points uniform on
    [-1, 1]^2. Sec. 4.1.
    """
    return _make_rule_task("random_xor", opts)


@_rule_task("checkerboard", _checkerboard_rule, options=CheckerboardOptions)
def checkerboard(opts: CheckerboardOptions) -> Dataset:
    """A ``cells`` x ``cells`` checkerboard on the square (a harder xor, Sec. 4.1 style).

    Cell ``(i, j)`` counted from the bottom-left corner is class ``(i + j) % 2``.
    Points uniform on [-1, 1]^2.
    """
    return _make_rule_task("checkerboard", opts)


@_rule_task("spiral", _spiral_rule, options=SpiralOptions)
def spiral(opts: SpiralOptions) -> Dataset:
    """Two interleaved spiral arms (a harder Sec. 4.1 style task).

    With polar coordinates ``(r, t)``, the label is ``floor((t - 2 pi turns r)
    / pi) mod 2``: two arms that wind ``turns`` times per unit radius. Points
    uniform on [-1, 1]^2; the classes are nearly balanced.
    """
    return _make_rule_task("spiral", opts)


@_rule_task("halfplane", _halfplane_rule, _halfplane_params)
def halfplane(opts: ToyOptions) -> Dataset:
    """A random half-plane from the seed: a linearly separable task (Sec. 4.1 style).

    Normal angle ``a`` uniform on [0, 2 pi) and offset ``b`` uniform on
    [-0.4, 0.4] (in ``meta["params"]``); label 1 where
    ``x cos a + y sin a > b``. Points uniform on [-1, 1]^2.
    """
    return _make_rule_task("halfplane", opts)


# ---------------------------------------------------------------------------
# generator-labelled tasks


@register_dataset("two_moons", MoonsOptions)
def two_moons(opts: MoonsOptions) -> Dataset:
    """Two interleaving half circles, sklearn make_moons (Fig. 3 "twomoon", meta-training).

    ``sklearn.datasets.make_moons(noise=noise)`` seeded from the split's
    stream, then mapped by the fixed affine map ``((x - 0.5) / 1.75,
    (y - 0.25) / 1.75)`` (the same for both splits) and clipped to
    [-1, 1]^2. Class 0 is the upper moon. Sec. 4.1.
    """
    from sklearn.datasets import make_moons

    _, tr_rng, te_rng = _streams(opts.seed)
    splits = []
    for rng, n in ((tr_rng, opts.n_train), (te_rng, opts.n_test)):
        x, y = make_moons(n_samples=n, noise=opts.noise, random_state=int(rng.integers(2**31 - 1)))
        x = np.clip((x - np.array([0.5, 0.25])) / 1.75, -1.0, 1.0)
        splits.append((x, y.astype(np.int64)))
    params = {"shift": [0.5, 0.25], "scale": 1 / 1.75}
    return _finish("two_moons", opts.seed, opts.model_dump(), params, 2, splits[0], splits[1])


_ALL_TASKS.append("two_moons")


def _blob_centres(rng: np.random.Generator, k: int, spread: float, min_dist: float) -> np.ndarray:
    """``k`` centres uniform on [-spread, spread]^2, pairwise at least ``min_dist`` apart."""
    for _ in range(1000):
        centres: list[np.ndarray] = []
        for _ in range(200 * k):
            c = rng.uniform(-spread, spread, size=2)
            if all(np.hypot(*(c - o)) >= min_dist for o in centres):
                centres.append(c)
                if len(centres) == k:
                    return np.array(centres)
    raise AssertionError("could not place blob centres")  # pragma: no cover


@register_dataset("blobs5", BlobsOptions)
def blobs5(opts: BlobsOptions) -> Dataset:
    """Five-class gaussian blobs, sklearn make_blobs (Fig. 3 "blob5x1", validation).

    Five centres uniform on [-0.6, 0.6]^2 and at least 0.4 apart are drawn
    from the seed (``meta["params"]["centers"]``); each split is
    ``sklearn.datasets.make_blobs`` around them with standard deviation
    ``cluster_std`` (equal class sizes, up to one point), clipped to
    [-1, 1]^2. Needs n_train, n_test >= 5. Sec. 4.1.
    """
    from sklearn.datasets import make_blobs

    p_rng, tr_rng, te_rng = _streams(opts.seed)
    centres = _blob_centres(p_rng, 5, 0.6, 0.4)
    splits = []
    for rng, n in ((tr_rng, opts.n_train), (te_rng, opts.n_test)):
        x, y = make_blobs(
            n_samples=n,
            centers=centres,
            cluster_std=opts.cluster_std,
            random_state=int(rng.integers(2**31 - 1)),
        )
        splits.append((np.clip(x, -1.0, 1.0), y.astype(np.int64)))
    params = {"centers": centres.tolist()}
    return _finish("blobs5", opts.seed, opts.model_dump(), params, 5, splits[0], splits[1])


_ALL_TASKS.append("blobs5")

#: Names of every toy task registered by this module.
TOY_TASKS: tuple[str, ...] = tuple(_ALL_TASKS)
