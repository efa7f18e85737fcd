"""Printed letters and digits rendered offline from the fonts that ship with matplotlib.

An *unseen* image task for genomes meta-trained on the handwritten 8x8 digits
(the BLUR paper's generalisation claim, Sec. 4.2, Fig. 5: a rule learned on
one dataset trains networks on datasets it never saw). Like EMNIST letters or
Fashion-MNIST for MNIST, these are a distribution shift from handwriting:
typeset glyphs from 21 font faces (DejaVu Sans / Sans Mono / Serif, STIX
General and Computer Modern, regular, bold, oblique/italic), randomly
distorted. Nothing is downloaded: the outlines come from the TrueType files in
``matplotlib/mpl-data/fonts/ttf`` through :class:`matplotlib.textpath.TextPath`.

Datasets (``blursim list datasets -v`` lists their options):

* ``font_letters`` -- 26 classes, the letters A..Z (``case="lower"``: a..z);
* ``font_digits`` -- 10 classes, the printed digits 0..9 (the same labels as
  ``digits``, another writing system: type instead of handwriting).

How an image is made (all randomness from ``numpy.random.default_rng([seed, split])``
with split 0 for train and 1 for test, so the two splits never share a draw):

1. *Glyph bank*, once per process and resolution: each character of each font
   is rasterised at a master resolution ``M = 2 * size`` with 3x3 supersampling
   (coverage in [0, 1]); its outline's bounding box is centred and its larger
   side scaled to ``0.7 * M`` (MNIST's 20-in-28 box, keeping the aspect).
   Holes (B, 8, g) come out right: each closed contour toggles coverage (even-odd).
2. *Stroke width*: a grey dilation (thicker) of the glyph by a square of
   radius ``r`` master pixels, or for ``r < 0`` the mean of the glyph and its
   grey erosion (thinner; hairlines fade rather than vanish), ``r`` uniform in
   ``-round(stroke * M) .. +round(stroke * M)``.
3. *Affine distortion* about the image centre: rotation uniform in
   ``+-rotation`` degrees, horizontal shear uniform in ``+-shear``, scale
   uniform in ``1 +- scale`` (both axes alike), translation uniform in
   ``+-translate * M`` pixels per axis (bilinear, zero outside).
4. *Resolution*: 2x2 block means down to ``size x size``.
5. *Noise*: Gaussian pixel noise of standard deviation ``noise``, then clipped
   to [0, 1] (0 = background, 1 = ink, as ``digits`` with ``scale="unit"``).

Labels are balanced (``n % n_classes`` of each class, then shuffled). With
``test_fonts="held_out"`` every fourth face (in the list order of
:data:`FONT_FILES`) is used only by the test split: the test then measures
transfer to unseen typefaces as well.

The fonts' licences (Bitstream Vera / DejaVu, STIX SIL OFL, Computer Modern's
AMS/BaKoMa Type 1 conversions) are matplotlib's and ship with it.
"""

from __future__ import annotations

import functools
import json
import string
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from blursim.data.base import Dataset, DatasetOptions, class_subset, register_dataset, subset_classes
from blursim.errors import DataError

__all__ = ["FONT_FILES", "FontLettersOptions", "FontDigitsOptions", "font_letters", "font_digits",
           "glyph_bank"]

#: The font faces drawn from, matplotlib's bundled TrueType files (order fixes the held-out faces).
FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf",
)

_SUPERSAMPLE = 3
_BOX = 0.7  # the glyph's larger side, as a fraction of the image side


class _FontOptions(DatasetOptions):
    """Options shared by the rendered-font datasets (see :mod:`blursim.data.fonts`)."""

    size: int = Field(16, ge=8, le=28, description="side of the square images in pixels (8..28)")
    n_train: int = Field(5000, ge=10, le=200_000, description="training images (balanced over the classes)")
    n_test: int = Field(1000, ge=10, le=200_000, description="test images (balanced over the classes)")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of every random draw (fonts, distortions, noise)")
    test_fonts: Literal["same", "held_out"] = Field(
        "same", description="same: both splits draw from all 21 faces; held_out: every fourth face "
        "only in the test split (transfer to unseen typefaces)")
    rotation: float = Field(12.0, ge=0.0, le=45.0, description="rotation uniform in +-rotation degrees")
    shear: float = Field(0.15, ge=0.0, le=0.5, description="horizontal shear uniform in +-shear")
    scale: float = Field(0.15, ge=0.0, le=0.4, description="scale factor uniform in 1 +- scale")
    translate: float = Field(0.08, ge=0.0, le=0.25,
                             description="shift uniform in +-translate image sides per axis")
    stroke: float = Field(0.04, ge=0.0, le=0.1, description="stroke width change up to +-stroke image "
                          "sides (grey dilation / thinning)")
    noise: float = Field(0.1, ge=0.0, le=1.0, description="standard deviation of Gaussian pixel noise "
                         "(then clipped to [0, 1])")


class FontLettersOptions(_FontOptions):
    """Options of ``font_letters``."""

    case: Literal["upper", "lower"] = Field("upper", description="upper: A..Z; lower: a..z")
    classes: class_subset(26) = None


class FontDigitsOptions(_FontOptions):
    """Options of ``font_digits``."""

    classes: class_subset(10) = None


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _rasterise(polys: list[np.ndarray], master: int) -> np.ndarray:
    """Coverage ``(master, master)`` in [0, 1] of a glyph outline (closed contours), centred and
    scaled into the box."""
    from matplotlib.path import Path as MplPath

    if not polys:
        return np.zeros((master, master))
    pts = np.concatenate(polys)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    side = float((hi - lo).max()) / _BOX
    centre = (lo + hi) / 2
    n = master * _SUPERSAMPLE
    g = (np.arange(n) + 0.5) / n - 0.5
    xs, ys = centre[0] + g * side, centre[1] - g * side  # sample columns (x) and rows (y, downwards)
    inside = np.zeros((n, n), dtype=bool)
    for poly in polys:  # even-odd: every contour toggles, so holes stay empty
        lo_p, hi_p = poly.min(axis=0), poly.max(axis=0)  # only the samples in the contour's box can be in it
        cols = np.flatnonzero((xs >= lo_p[0]) & (xs <= hi_p[0]))
        rows = np.flatnonzero((ys >= lo_p[1]) & (ys <= hi_p[1]))
        if cols.size == 0 or rows.size == 0:
            continue
        qx, qy = np.meshgrid(xs[cols], ys[rows])
        hit = MplPath(poly).contains_points(np.column_stack([qx.ravel(), qy.ravel()]))
        inside[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] ^= hit.reshape(rows.size, cols.size)
    cover = inside.astype(np.float64)
    return cover.reshape(master, _SUPERSAMPLE, master, _SUPERSAMPLE).mean(axis=(1, 3))


@functools.lru_cache(maxsize=4)
def _outlines(chars: str) -> list[list[list[np.ndarray]]]:
    """The closed contours of every character of ``chars`` in every face of :data:`FONT_FILES`
    (``[face][char] -> polygons``), read once per process whatever the resolution."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath

    folder = _font_dir()
    out = []
    for name in FONT_FILES:
        f = folder / name
        if not f.is_file():
            raise DataError(f"font file {f} is missing from this matplotlib install; the font datasets "
                            "need matplotlib's bundled fonts (reinstall matplotlib).")
        prop = FontProperties(fname=str(f))
        out.append([[p for p in TextPath((0, 0), ch, size=1, prop=prop).to_polygons() if len(p) >= 3]
                    for ch in chars])
    return out


@functools.lru_cache(maxsize=4)
def glyph_bank(chars: str, master: int) -> np.ndarray:
    """Rendered glyphs ``(len(FONT_FILES), len(chars), master, master)`` (read-only, cached)."""
    outlines = _outlines(chars)
    bank = np.zeros((len(FONT_FILES), len(chars), master, master))
    for i, face in enumerate(outlines):
        for j, polys in enumerate(face):
            bank[i, j] = _rasterise(polys, master)
    bank.setflags(write=False)
    return bank


def _stroke_variants(glyphs: np.ndarray, radius: int) -> dict[int, np.ndarray]:
    """``r -> glyphs`` grey-dilated (r > 0) or thinned (r < 0) by a ``(2|r|+1)`` square; thinning
    is the mean of the glyph and its grey erosion, so hairlines (Computer Modern) fade but stay."""
    from scipy.ndimage import grey_dilation, grey_erosion

    out = {0: glyphs}
    for r in range(1, radius + 1):
        fp = (1, 2 * r + 1, 2 * r + 1)
        out[r] = grey_dilation(glyphs, size=fp)
        out[-r] = 0.5 * (glyphs + grey_erosion(glyphs, size=fp))
    return out


def _render(opts: _FontOptions, chars: str, n: int, split: int, fonts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.ndimage import affine_transform

    size = opts.size
    master = 2 * size
    bank = glyph_bank(chars, master)
    k = len(chars)
    rng = np.random.default_rng([opts.seed, split])
    y = rng.permutation(np.arange(n) % k).astype(np.int64)
    face = fonts[rng.integers(0, fonts.size, n)]
    radius = int(round(opts.stroke * master))
    r = rng.integers(-radius, radius + 1, n)
    theta = np.deg2rad(rng.uniform(-opts.rotation, opts.rotation, n))
    shear = rng.uniform(-opts.shear, opts.shear, n)
    zoom = rng.uniform(1 - opts.scale, 1 + opts.scale, n)
    shift = rng.uniform(-opts.translate, opts.translate, (n, 2)) * master
    noise = rng.standard_normal((n, size, size)) * opts.noise

    variants = _stroke_variants(bank.reshape(-1, master, master), radius)
    c = (master - 1) / 2.0
    out = np.empty((n, master, master))
    for i in range(n):
        src = variants[int(r[i])][face[i] * k + y[i]]
        ct, st = np.cos(theta[i]), np.sin(theta[i])
        fwd = zoom[i] * np.array([[ct, -st], [st, ct]]) @ np.array([[1.0, 0.0], [shear[i], 1.0]])  # (row, col)
        inv = np.linalg.inv(fwd)
        offset = np.array([c, c]) - inv @ (np.array([c, c]) + shift[i])
        out[i] = affine_transform(src, inv, offset=offset, order=1, mode="constant", cval=0.0)
    x = out.reshape(n, size, 2, size, 2).mean(axis=(2, 4)) + noise
    return np.clip(x, 0.0, 1.0).reshape(n, size * size), y


_CACHE: dict[str, tuple[np.ndarray, ...]] = {}


def _rendered(opts: _FontOptions, chars: str) -> tuple[np.ndarray, ...]:
    """``(x_train, y_train, x_test, y_test, train_faces, test_faces)``, read-only, cached per options."""
    key = json.dumps([chars, opts.model_dump(exclude={"classes"})], sort_keys=True)
    if key in _CACHE:
        return _CACHE[key]
    all_faces = np.arange(len(FONT_FILES))
    if opts.test_fonts == "held_out":
        test_faces = all_faces[::4]
        train_faces = np.setdiff1d(all_faces, test_faces)
    else:
        train_faces = test_faces = all_faces
    x_train, y_train = _render(opts, chars, opts.n_train, 0, train_faces)
    x_test, y_test = _render(opts, chars, opts.n_test, 1, test_faces)
    out = (x_train, y_train, x_test, y_test, train_faces, test_faces)
    for a in out:
        a.setflags(write=False)
    if len(_CACHE) >= 8:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = out
    return out


def _build(name: str, opts: _FontOptions, chars: str) -> Dataset:
    x_train, y_train, x_test, y_test, train_faces, test_faces = _rendered(opts, chars)
    classes = getattr(opts, "classes", None)
    x_train, y_train = subset_classes(x_train, y_train, classes)
    x_test, y_test = subset_classes(x_test, y_test, classes)
    kept = list(range(len(chars))) if classes is None else list(classes)
    import matplotlib

    return Dataset(
        name=name, x_train=x_train.copy(), y_train=y_train.copy(), x_test=x_test.copy(), y_test=y_test.copy(),
        n_classes=len(kept),
        meta={
            "options": opts.model_dump(),
            "seed": opts.seed,
            "source": f"rendered offline from matplotlib {matplotlib.__version__}'s bundled fonts "
                      "(blursim.data.fonts)",
            "classes": kept,
            "class_names": [chars[c] for c in kept],
            "image_shape": [opts.size, opts.size],
            "train_fonts": [FONT_FILES[i] for i in train_faces],
            "test_fonts": [FONT_FILES[i] for i in test_faces],
        },
    )


@register_dataset("font_letters", FontLettersOptions)
def font_letters(opts: FontLettersOptions) -> Dataset:
    """Printed letters A..Z (or a..z) from 21 of matplotlib's font faces, randomly distorted.

    26 classes; any resolution 8x8..28x28; deterministic by ``seed``. See
    :mod:`blursim.data.fonts` for the rendering and distortions. An unseen
    image task for genomes meta-trained on ``digits`` (Sec. 4.2, Fig. 5).
    """
    chars = string.ascii_uppercase if opts.case == "upper" else string.ascii_lowercase
    return _build("font_letters", opts, chars)


@register_dataset("font_digits", FontDigitsOptions)
def font_digits(opts: FontDigitsOptions) -> Dataset:
    """Printed digits 0..9 from 21 of matplotlib's font faces, randomly distorted.

    10 classes with the labels of ``digits`` (type instead of handwriting);
    any resolution 8x8..28x28; deterministic by ``seed``. See
    :mod:`blursim.data.fonts`.
    """
    return _build("font_digits", opts, string.digits)
