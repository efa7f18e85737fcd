"""The :class:`Dataset` container, the dataset registry and :func:`load_dataset`.

A dataset is produced by a *factory* registered in :data:`DATASETS` together
with its *options model* (a :class:`DatasetOptions` subclass: every option's
type, range, default and description). :func:`load_dataset` resolves a name,
validates a dict of options (as found in a JSON document) against the model and
calls the factory with the validated options. The same models validate the
``options`` of an experiment's tasks (:mod:`blursim.spec.options`), so an
option error is reported at its own JSON path either way.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, Field

from blursim.errors import DataError, SpecError
from blursim.registry import Registry
from blursim.spec.options import Options, option_defaults, validate_options

__all__ = [
    "Dataset",
    "DATASETS",
    "DatasetOptions",
    "register_dataset",
    "load_dataset",
    "dataset_options",
    "class_subset",
    "check_classes",
    "stratified_split",
    "subset_classes",
]


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A dataset split into train and test parts: class labels or real-valued target vectors.

    Attributes
    ----------
    name:
        Registered name of the dataset (e.g. ``"xor"``, ``"mnist"``).
    x_train, x_test:
        Inputs, ``float64`` arrays of shape ``(N, d)`` with finite values.
    y_train, y_test:
        Either class labels, ``int64`` arrays of shape ``(N,)`` with values in
        ``0 .. n_classes - 1`` (``targets == "labels"``), or real-valued
        target vectors, finite ``float64`` arrays of shape ``(N, m)``
        (``targets == "vectors"``: regression, or any target an output
        population should reproduce in its state 0).
    n_classes:
        Number of classes (labels need not all occur in a split); ``None``
        for target vectors.
    meta:
        Free-form, JSON-friendly description: at least ``options`` (every
        option value used, defaults included), ``seed`` (the seed that
        determined the data, or ``None``) and ``source`` (where it came from).

    Arrays given with another numeric dtype are converted; anything that
    cannot be (wrong rank, mismatched lengths, NaN/inf, labels out of range,
    float labels) raises :class:`~blursim.errors.DataError`.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise DataError(
                f"Dataset name must be a non-empty string (got {self.name!r}); "
                "give the dataset the name it is registered under."
            )
        who = f"dataset {self.name!r}"
        vectors = np.ndim(self.y_train) == 2
        if vectors:
            if self.n_classes is not None:
                raise DataError(
                    f"{who}: y_train holds target vectors (shape {np.shape(self.y_train)}), so "
                    f"n_classes must be None (got {self.n_classes!r}); give integer labels of "
                    "shape (N,) for a classification task."
                )
        elif (
            isinstance(self.n_classes, bool)
            or not isinstance(self.n_classes, numbers.Integral)
            or self.n_classes < 1
        ):
            raise DataError(
                f"{who}: n_classes must be an integer >= 1 (got {self.n_classes!r}); "
                "set it to the number of distinct labels the task can have."
            )
        else:
            object.__setattr__(self, "n_classes", int(self.n_classes))
        if not isinstance(self.meta, dict):
            raise DataError(
                f"{who}: meta must be a dict (got {type(self.meta).__name__}); "
                "pass a dict such as {'options': ..., 'seed': ..., 'source': ...}."
            )
        for split in ("train", "test"):
            x = self._as_features(who, f"x_{split}", getattr(self, f"x_{split}"))
            raw = getattr(self, f"y_{split}")
            y = (self._as_vectors if vectors else self._as_labels)(who, f"y_{split}", raw)
            if x.shape[0] != y.shape[0]:
                raise DataError(
                    f"{who}: x_{split} has {x.shape[0]} rows but y_{split} has "
                    f"{y.shape[0]} {'target vectors' if vectors else 'labels'}; every input "
                    "row needs exactly one."
                )
            if x.shape[0] == 0:
                raise DataError(
                    f"{who}: the {split} split is empty; it needs at least one "
                    "example (check n_train/n_test, limits or the class subset)."
                )
            if not vectors and y.size and (y.min() < 0 or y.max() >= self.n_classes):
                bad = int(y.min()) if y.min() < 0 else int(y.max())
                raise DataError(
                    f"{who}: y_{split} contains label {bad}, outside 0..{self.n_classes - 1} "
                    f"(n_classes={self.n_classes}); remap labels to 0..n_classes-1 "
                    "or raise n_classes."
                )
            object.__setattr__(self, f"x_{split}", x)
            object.__setattr__(self, f"y_{split}", y)
        if self.x_train.shape[1] != self.x_test.shape[1]:
            raise DataError(
                f"{who}: x_train has {self.x_train.shape[1]} features but x_test has "
                f"{self.x_test.shape[1]}; both splits must have the same number of columns."
            )
        if vectors and self.y_train.shape[1] != self.y_test.shape[1]:
            raise DataError(
                f"{who}: y_train has target vectors of length {self.y_train.shape[1]} but "
                f"y_test of length {self.y_test.shape[1]}; both splits need the same length."
            )

    @staticmethod
    def _finite_matrix(who: str, field_name: str, value: Any, what: str) -> np.ndarray:
        """``value`` as a finite float64 ``(N, m)`` array of ``what`` (inputs or targets)."""
        try:
            x = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"{who}: {field_name} cannot be converted to a float64 array ({exc}); "
                f"pass a numeric 2-D array of {what}."
            ) from None
        if x.ndim != 2 or x.shape[1] < 1:
            raise DataError(
                f"{who}: {field_name} must be a 2-D array of {what} (one row per example) but "
                f"has shape {x.shape}."
            )
        if not np.isfinite(x).all():
            n_bad = int(x.size - np.isfinite(x).sum())
            raise DataError(
                f"{who}: {field_name} contains {n_bad} NaN or infinite value(s); all {what} "
                "must be finite, so clean or drop those examples."
            )
        return x

    @classmethod
    def _as_features(cls, who: str, field_name: str, value: Any) -> np.ndarray:
        return cls._finite_matrix(who, field_name, value, "inputs (N, d)")

    @staticmethod
    def _as_labels(who: str, field_name: str, value: Any) -> np.ndarray:
        y = np.asarray(value)
        if y.dtype.kind not in "iu":
            raise DataError(
                f"{who}: {field_name} must hold integer class labels but has dtype "
                f"{y.dtype}; convert the labels to integers 0..n_classes-1, or give "
                "real-valued targets as an (N, m) array of target vectors."
            )
        if y.ndim != 1:
            raise DataError(
                f"{who}: {field_name} must be a 1-D array (N,) but has shape {y.shape}; "
                "give one integer label per example."
            )
        return y.astype(np.int64, copy=False)

    @classmethod
    def _as_vectors(cls, who: str, field_name: str, value: Any) -> np.ndarray:
        return cls._finite_matrix(who, field_name, value, "target vectors (N, m)")

    @property
    def targets(self) -> str:
        """``"labels"`` (classification) or ``"vectors"`` (real-valued target vectors)."""
        return "vectors" if self.n_classes is None else "labels"

    @property
    def n_outputs(self) -> int:
        """What an output population predicts: ``n_classes``, or the target vector length."""
        return self.n_classes if self.n_classes is not None else int(self.y_train.shape[1])

    @property
    def n_features(self) -> int:
        """Number of input features ``d``."""
        return int(self.x_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    def __repr__(self) -> str:
        what = f"n_classes={self.n_classes}" if self.n_classes is not None else f"targets={self.n_outputs}"
        return (
            f"Dataset(name={self.name!r}, train={self.n_train}x{self.n_features}, "
            f"test={self.n_test}x{self.n_features}, {what})"
        )


#: Registry of datasets: name -> ``build(options) -> Dataset``, each registered
#: with its options model (``DATASETS.options(name)``).
DATASETS: Registry[Callable[..., Dataset]] = Registry("dataset")


class DatasetOptions(Options):
    """Base of the options model of every dataset (see :mod:`blursim.spec.options`)."""


def register_dataset(name: str, options: type[DatasetOptions]):
    """Decorator: register ``build(options) -> Dataset`` as dataset ``name``.

    ``options`` is the dataset's options model: every option, its type, range,
    default and a one-line description. ``build`` receives a validated instance.
    """
    return DATASETS.register(name, options=options)


def dataset_options(name: str) -> dict[str, Any]:
    """Option name -> default value of the dataset ``name`` (for docs and ``blursim list``)."""
    DATASETS.get(name)
    return option_defaults(DATASETS.options(name))


def load_dataset(
    name: str, options: Mapping[str, Any] | DatasetOptions | None = None, *, path: str | None = None
) -> Dataset:
    """Build the registered dataset ``name`` with ``options``.

    ``options`` is a mapping (as in a JSON document) or an instance of the
    dataset's options model. ``path`` is the JSON path of the dataset entry in
    the spec (for example ``"$.dataset"``); errors point at ``<path>.name`` for
    an unknown dataset and at ``<path>.options.<option>`` for a bad option.
    Without ``path`` they point at ``name`` and ``options.<option>``.
    """
    base = path or ""
    name_path = f"{base}.name" if base else "name"
    opt_path = f"{base}.options" if base else "options"
    if not isinstance(name, str):
        raise SpecError(
            "dataset name must be a string",
            path=name_path,
            value=name,
            choices=DATASETS.names(),
        )
    factory = DATASETS.get(name, path=name_path)
    opts = validate_options(DATASETS.options(name), options, what=f"dataset {name!r}", path=path)
    try:
        return factory(opts)
    except SpecError as exc:  # an option that does not fit the data found (e.g. crop > image)
        if exc.path and not exc.path.startswith("$") and not exc.path.startswith(opt_path):
            raise SpecError(
                exc.message,
                path=f"{opt_path}.{exc.path}",
                value=exc.value,
                choices=exc.choices,
                source=exc.source,
                hint=exc.hint,
            ) from None
        raise


# ---------------------------------------------------------------------------
# option types shared by the datasets


def check_classes(value: list[int] | None, n_classes: int) -> list[int] | None:
    """``None`` or >= 2 distinct labels in ``0..n_classes-1``, returned sorted."""
    if value is None:
        return None
    what = (
        f"must be null (all classes) or a list of at least 2 distinct integer labels "
        f"in 0..{n_classes - 1}"
    )
    bad = [c for c in value if not 0 <= c < n_classes]
    if bad:
        raise ValueError(f"{what}; {bad[0]!r} is not such a label (remove it)")
    if len(set(value)) != len(value):
        dups = sorted({c for c in value if value.count(c) > 1})
        raise ValueError(f"{what}; label(s) {dups} appear more than once (list each once)")
    if len(value) < 2:
        raise ValueError(f"{what}; a classifier needs at least two classes (or use null)")
    return sorted(value)


def class_subset(n_classes: int) -> Any:
    """The type of a ``classes`` option of a dataset with ``n_classes`` labels."""
    return Annotated[
        list[int] | None,
        AfterValidator(lambda v: check_classes(v, n_classes)),
        Field(
            description=f"a subset of at least two of the labels 0..{n_classes - 1}, relabelled "
            "0..m-1 in ascending order; null for all classes",
        ),
    ]


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row indices (each sorted): a seeded split stratified by label.

    From ``numpy.random.default_rng(seed)``, within each label in ascending
    order, a permutation puts ``round(test_fraction * count)`` rows (at least
    one and at most ``count - 1``) in the test split.
    """
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = int(round(test_fraction * idx.size))
        k = min(max(k, 1), idx.size - 1)
        test.append(rng.permutation(idx)[:k])
    test_idx = np.sort(np.concatenate(test))
    train_mask = np.ones(y.size, dtype=bool)
    train_mask[test_idx] = False
    return np.flatnonzero(train_mask), test_idx


def subset_classes(
    x: np.ndarray, y: np.ndarray, classes: list[int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Keep rows whose label is in ``classes`` (sorted) and remap labels to 0..m-1."""
    if classes is None:
        return x, y
    wanted = np.asarray(sorted(classes), dtype=np.int64)
    keep = np.isin(y, wanted)
    return x[keep], np.searchsorted(wanted, y[keep]).astype(np.int64)
