"""MNIST-1D (Greydanus, 2020): a 40-feature, 10-class benchmark that shares no data with digits.

MNIST-1D turns ten hand-made one-dimensional templates (one per digit) into
signals of 40 samples by random padding, dilation, scaling, translation,
correlated and i.i.d. noise, shear and resampling; the whole set is then
centred and scaled to unit standard deviation. It is small and fast, yet a
linear classifier reaches only about a third of the accuracy an MLP reaches,
so it separates learning rules well. For blursim it is a task a genome
meta-trained on images has never seen (the BLUR paper's generalisation claims,
Sec. 4.1-4.2, Fig. 4-5): other inputs, other input size, same ten classes.

Provenance. The data are *generated*, never downloaded, by the generator of
the ``mnist1d`` package (PyPI ``mnist1d``, https://github.com/greydanus/mnist1d,
Apache-2.0 licence; install it with ``pip install -e ".[datasets]"``):
``mnist1d.data.make_dataset`` with the package's default arguments except
``seed``, ``num_samples``, ``train_split`` and ``shuffle_seq``. With the
defaults (``seed=42``, 5000 samples, 4000 train / 1000 test) this is the
generator configuration of the published MNIST-1D set. The package's
``get_dataset`` (which downloads a pickle and writes files) is never called.

Randomness. The generator draws from NumPy's *global* RNG (it calls
``np.random.seed(seed)``); blursim saves the global NumPy and ``random``
states before and restores them after, under a lock, so loading this dataset
changes no other random stream. Generated sets are cached per options in the
process.
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from pydantic import Field

from blursim.data.base import (
    Dataset,
    DatasetOptions,
    class_subset,
    register_dataset,
    subset_classes,
)
from blursim.errors import DataError

__all__ = ["Mnist1dOptions", "mnist1d", "generate_mnist1d"]

_LOCK = threading.Lock()
_CACHE: OrderedDict[tuple, dict[str, np.ndarray]] = OrderedDict()
_CACHE_SIZE = 4


class Mnist1dOptions(DatasetOptions):
    """Options of ``mnist1d``."""

    seed: int = Field(42, ge=0, le=2**32 - 1, description="seed of the generator (42: the published set)")
    n_samples: int = Field(
        5000, ge=20, le=1_000_000, multiple_of=10,
        description="signals generated, the same number per class (train + test)",
    )
    train_fraction: float = Field(
        0.8, gt=0.0, lt=1.0, description="the first fraction of the shuffled signals is the train split"
    )
    shuffle_seq: bool = Field(
        False, description="permute the 40 positions (one fixed permutation): no spatial structure left"
    )
    classes: class_subset(10) = None


def _package() -> Any:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise DataError(
            "dataset 'mnist1d' needs the mnist1d package (its generator makes the data "
            "offline); install it with pip install -e \".[datasets]\" or pip install mnist1d."
        ) from None
    return get_dataset_args, make_dataset


def generate_mnist1d(seed: int, n_samples: int, train_fraction: float, shuffle_seq: bool) -> dict[str, np.ndarray]:
    """The generator's output ``{"x", "y", "x_test", "y_test"}`` (cached; global RNGs untouched)."""
    key = (seed, n_samples, train_fraction, shuffle_seq)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
        get_dataset_args, make_dataset = _package()
        args = get_dataset_args()
        args.seed = seed
        args.num_samples = n_samples
        args.train_split = train_fraction
        args.shuffle_seq = shuffle_seq
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            raw = make_dataset(args)
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
        out = {
            k: np.array(raw[k], dtype=np.int64 if k.startswith("y") else np.float64)
            for k in ("x", "y", "x_test", "y_test")
        }
        for a in out.values():
            a.setflags(write=False)
        _CACHE[key] = out
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return out


@register_dataset("mnist1d", Mnist1dOptions)
def mnist1d(opts: Mnist1dOptions) -> Dataset:
    """MNIST-1D: 40-sample 1-D signals of the ten digits, generated offline (Greydanus 2020).

    A task that shares no data with the image datasets (Sec. 4.2's
    generalisation, Fig. 5): see :mod:`blursim.data.mnist_1d` for the generator,
    its provenance and licence. ``classes`` keeps a subset relabelled 0..m-1.
    """
    raw = generate_mnist1d(opts.seed, opts.n_samples, opts.train_fraction, opts.shuffle_seq)
    x_train, y_train = subset_classes(raw["x"], raw["y"], opts.classes)
    x_test, y_test = subset_classes(raw["x_test"], raw["y_test"], opts.classes)
    kept = list(range(10)) if opts.classes is None else opts.classes
    try:
        import importlib.metadata as md

        version = md.version("mnist1d")
    except Exception:  # noqa: BLE001 - only for the provenance note
        version = "unknown"
    return Dataset(
        name="mnist1d",
        x_train=x_train.copy(),
        y_train=y_train.copy(),
        x_test=x_test.copy(),
        y_test=y_test.copy(),
        n_classes=len(kept),
        meta={
            "options": opts.model_dump(),
            "seed": opts.seed,
            "source": f"generated offline by mnist1d {version} (Greydanus 2020, Apache-2.0); "
            "mnist1d.data.make_dataset",
            "classes": [int(c) for c in kept],
            "class_names": [str(c) for c in kept],
        },
    )
