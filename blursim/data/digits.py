"""scikit-learn's bundled 8x8 handwritten digits, a small offline stand-in for MNIST (and resampled).

``sklearn.datasets.load_digits`` ships 1797 images of 8x8 pixels with values
0..16 and no network access is needed. The BLUR paper (Sec. 4.2) meta-trains
on MNIST and on its halves 0-4 and 5-9; ``digits``, ``digits_0_4`` and
``digits_5_9`` mirror that setup at a size a laptop runs in seconds.

The train/test split is a fixed stratified split of all 1797 images made
*before* any class subset is taken, from ``numpy.random.default_rng(split_seed)``:
within each digit, a permutation puts ``round(test_fraction * count)``
images in the test split. So it never changes between runs unless
``split_seed`` or ``test_fraction`` changes, and an image in the test split of
``digits`` is in the test split of ``digits_0_4`` too. Rows keep the original
order of ``load_digits``; the original indices are in ``meta["train_index"]``
and ``meta["test_index"]``.
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np
from pydantic import Field

from blursim.data.base import (
    Dataset,
    DatasetOptions,
    class_subset,
    register_dataset,
    stratified_split,
)
from blursim.data.mnist import resize_images

__all__ = [
    "digits",
    "digits_0_4",
    "digits_5_9",
    "digits_resized",
    "DigitsOptions",
    "DigitsHalfOptions",
    "DigitsResizedOptions",
]


class DigitsHalfOptions(DatasetOptions):
    """Options of the fixed-class digits datasets (``digits_0_4``, ``digits_5_9``)."""

    test_fraction: float = Field(
        0.3, gt=0.0, lt=1.0, description="fraction of each digit's images in the test split"
    )
    split_seed: int = Field(0, ge=0, description="seed of the stratified train/test split")
    scale: Literal["unit", "standard"] = Field(
        "unit", description="unit: pixels / 16 into [0, 1]; standard: per-pixel train z-scores"
    )


class DigitsOptions(DigitsHalfOptions):
    """Options of ``digits``."""

    classes: class_subset(10) = None


class DigitsResizedOptions(DigitsOptions):
    """Options of ``digits_resized``."""

    size: int = Field(
        16, ge=2, le=64,
        description="side of the resampled images (4: mean of 2x2 blocks; 16: bilinear, "
        "as blursim.data.mnist.resize_images)",
    )


@functools.lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 1797 digits as read-only ``(x (1797, 64) float64, y (1797,) int64)``, read once
    per process (reading the bundled file costs about 0.1 s; every dataset build used to)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _build(
    name: str, opts: DigitsHalfOptions, classes: list[int] | None, size: int = 8
) -> Dataset:
    test_fraction, split_seed, scale = opts.test_fraction, opts.split_seed, opts.scale

    x_all, y_all = _raw_digits()
    if size != 8:  # resampled before the split and the scaling, in the 0..16 pixel scale
        x_all = resize_images(x_all.reshape(-1, 8, 8), size).reshape(x_all.shape[0], size * size)
    train_idx, test_idx = stratified_split(y_all, test_fraction, split_seed)
    if classes is not None:
        train_idx = train_idx[np.isin(y_all[train_idx], classes)]
        test_idx = test_idx[np.isin(y_all[test_idx], classes)]
        kept = np.asarray(classes, dtype=np.int64)
    else:
        kept = np.arange(10, dtype=np.int64)

    x_train, x_test = x_all[train_idx], x_all[test_idx]
    y_train = np.searchsorted(kept, y_all[train_idx]).astype(np.int64)
    y_test = np.searchsorted(kept, y_all[test_idx]).astype(np.int64)
    if scale == "unit":
        x_train = x_train / 16.0
        x_test = x_test / 16.0
    else:
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std[std == 0] = 1.0  # constant (always blank) pixels stay at 0
        x_train = (x_train - mean) / std
        x_test = (x_test - mean) / std

    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        n_classes=int(kept.size),
        meta={
            "options": opts.model_dump(),
            "seed": split_seed,
            "source": "sklearn.datasets.load_digits (8x8 images, values 0..16)",
            "classes": [int(c) for c in kept],
            "class_names": [str(int(c)) for c in kept],
            "image_shape": [size, size],
            "train_index": [int(i) for i in train_idx],
            "test_index": [int(i) for i in test_idx],
        },
    )


@register_dataset("digits", DigitsOptions)
def digits(opts: DigitsOptions) -> Dataset:
    """scikit-learn 8x8 handwritten digits (1797 images, 64 features), offline MNIST stand-in.

    ``classes``: a subset of the digits 0..9 (at least two), relabelled
    0..m-1 in ascending digit order; ``meta["classes"]`` keeps the original
    digits. ``test_fraction`` and ``split_seed`` fix the stratified split
    (see the module docstring). ``scale``: ``"unit"`` divides the 0..16
    pixel values by 16 into [0, 1]; ``"standard"`` subtracts the train mean
    and divides by the train standard deviation per pixel (pixels that are
    constant in train are only centred).
    """
    return _build("digits", opts, opts.classes)


@register_dataset("digits_0_4", DigitsHalfOptions)
def digits_0_4(opts: DigitsHalfOptions) -> Dataset:
    """Digits 0-4 of the 8x8 digits, relabelled 0..4 (cf. MNIST 0-4 in Sec. 4.2)."""
    return _build("digits_0_4", opts, [0, 1, 2, 3, 4])


@register_dataset("digits_5_9", DigitsHalfOptions)
def digits_5_9(opts: DigitsHalfOptions) -> Dataset:
    """Digits 5-9 of the 8x8 digits, relabelled 0..4 (cf. MNIST 5-9 in Sec. 4.2)."""
    return _build("digits_5_9", opts, [5, 6, 7, 8, 9])


@register_dataset("digits_resized", DigitsResizedOptions)
def digits_resized(opts: DigitsResizedOptions) -> Dataset:
    """The 8x8 digits resampled to size x size pixels: the same images at another resolution.

    The paper validates genomes at resolutions they were not meta-trained on
    (Sec. 4.2, Fig. 8, Fig. 11: 10x10 vs 28x28); here e.g. ``size=4`` (16
    features, 2x2 block means) or ``size=16`` (256 features, bilinear). The
    split is that of ``digits`` with the same ``test_fraction`` and
    ``split_seed`` (an image is a test image at every resolution); other
    options as for ``digits``.
    """
    return _build("digits_resized", opts, opts.classes, size=opts.size)
