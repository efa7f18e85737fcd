"""scikit-learn's bundled tabular classification sets: ``breast_cancer`` and ``wine``.

Both ship with scikit-learn (``sklearn.datasets.load_breast_cancer``,
``load_wine``; no network access) and share nothing with the digit images: they
are measurements, not pixels, with another number of features and classes. They
serve as meta-validation tasks a genome meta-trained on images has never seen
(the BLUR paper's generalisation claims, Sec. 4.1-4.2 and Fig. 5, where an
MNIST genome is applied to unrelated tasks).

* ``breast_cancer``: 569 tumours, 30 real-valued features (radius, texture, ...
  of cell nuclei), 2 classes (0 malignant, 1 benign; 212 / 357).
* ``wine``: 178 wines, 13 chemical measurements, 3 cultivars (59 / 71 / 48).

Split and scaling, as for ``digits``: a fixed stratified split
(:func:`~blursim.data.base.stratified_split` with ``test_fraction`` and
``split_seed``), made before any scaling; then ``scale``:

* ``"standard"`` (default): per-feature z-scores with the mean and standard
  deviation of the **train** split only (the test split never informs the
  scaling); the raw features span five orders of magnitude (e.g. areas near
  1000 next to smoothness near 0.1), so some scaling is needed;
* ``"unit"``: per-feature min-max of the train split into [0, 1] (test values
  may fall slightly outside).

Rows keep the order of the sklearn loader; ``meta["train_index"]`` and
``meta["test_index"]`` hold the original row indices.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from blursim.data.base import Dataset, DatasetOptions, register_dataset, stratified_split

__all__ = ["TabularOptions", "breast_cancer", "wine", "scale_by_train"]


class TabularOptions(DatasetOptions):
    """Options of the bundled tabular sets."""

    test_fraction: float = Field(
        0.3, gt=0.0, lt=1.0, description="fraction of each class's rows in the test split"
    )
    split_seed: int = Field(0, ge=0, description="seed of the stratified train/test split")
    scale: Literal["standard", "unit"] = Field(
        "standard", description="standard: per-feature train z-scores; unit: per-feature train min-max into [0, 1]"
    )


def scale_by_train(x_train: np.ndarray, x_test: np.ndarray, scale: str) -> tuple[np.ndarray, np.ndarray]:
    """Scale both splits by statistics of ``x_train`` only (constant features are only shifted)."""
    if scale == "standard":
        centre, spread = x_train.mean(axis=0), x_train.std(axis=0)
    else:
        centre = x_train.min(axis=0)
        spread = x_train.max(axis=0) - centre
    spread = np.where(spread > 0, spread, 1.0)
    return (x_train - centre) / spread, (x_test - centre) / spread


def _build(name: str, loader: str, opts: TabularOptions) -> Dataset:
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loader)()
    x_all = np.asarray(bunch.data, dtype=np.float64)
    y_all = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = stratified_split(y_all, opts.test_fraction, opts.split_seed)
    x_train, x_test = scale_by_train(x_all[train_idx], x_all[test_idx], opts.scale)
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_all[train_idx],
        x_test=x_test,
        y_test=y_all[test_idx],
        n_classes=int(len(bunch.target_names)),
        meta={
            "options": opts.model_dump(),
            "seed": opts.split_seed,
            "source": f"sklearn.datasets.{loader} (bundled with scikit-learn)",
            "class_names": [str(c) for c in bunch.target_names],
            "feature_names": [str(f) for f in bunch.feature_names],
            "train_index": [int(i) for i in train_idx],
            "test_index": [int(i) for i in test_idx],
        },
    )


@register_dataset("breast_cancer", TabularOptions)
def breast_cancer(opts: TabularOptions) -> Dataset:
    """Wisconsin breast cancer (sklearn, bundled): 569 rows, 30 features, 2 classes; no images.

    A meta-validation task that shares no data with the digit images (Sec. 4.2,
    Fig. 5's out-of-domain tasks); see :mod:`blursim.data.tabular` for the split
    and the train-only scaling.
    """
    return _build("breast_cancer", "load_breast_cancer", opts)


@register_dataset("wine", TabularOptions)
def wine(opts: TabularOptions) -> Dataset:
    """UCI wine (sklearn, bundled): 178 rows, 13 chemical features, 3 cultivars; no images.

    See :mod:`blursim.data.tabular` for the split and the train-only scaling.
    """
    return _build("wine", "load_wine", opts)
