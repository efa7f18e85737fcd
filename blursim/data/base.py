"""The :class:`Dataset` container, the dataset registry and :func:`load_dataset`.

A dataset is produced by a *factory*: a function registered in
:data:`DATASETS` that takes keyword-only options (all with defaults) and
returns a :class:`Dataset`. :func:`load_dataset` resolves a name and a dict of
options (as found in a JSON spec), rejects options the factory does not take,
and calls it. Factories validate option *values* themselves with the
``check_*`` helpers below, which raise :class:`~blursim.errors.SpecError`
whose path is the option name; :func:`load_dataset` re-roots that path at the
spec location it was given.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blursim.errors import DataError, SpecError
from blursim.registry import Registry

__all__ = [
    "Dataset",
    "DATASETS",
    "load_dataset",
    "dataset_options",
    "check_int",
    "check_float",
    "check_choice",
    "check_classes",
    "subset_classes",
]


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A classification dataset split into train and test parts.

    Attributes
    ----------
    name:
        Registered name of the dataset (e.g. ``"xor"``, ``"mnist"``).
    x_train, x_test:
        Inputs, ``float64`` arrays of shape ``(N, d)`` with finite values.
    y_train, y_test:
        Labels, ``int64`` arrays of shape ``(N,)`` with values in
        ``0 .. n_classes - 1``.
    n_classes:
        Number of classes (labels need not all occur in a split).
    meta:
        Free-form, JSON-friendly description: at least ``options`` (every
        option value used, defaults included), ``seed`` (the seed that
        determined the data, or ``None``) and ``source`` (where it came from).

    Arrays given with another numeric dtype are converted; anything that
    cannot be (wrong rank, mismatched lengths, NaN/inf, labels out of range)
    raises :class:`~blursim.errors.DataError`.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise DataError(
                f"Dataset name must be a non-empty string (got {self.name!r}); "
                "give the dataset the name it is registered under."
            )
        who = f"dataset {self.name!r}"
        if (
            isinstance(self.n_classes, bool)
            or not isinstance(self.n_classes, numbers.Integral)
            or self.n_classes < 1
        ):
            raise DataError(
                f"{who}: n_classes must be an integer >= 1 (got {self.n_classes!r}); "
                "set it to the number of distinct labels the task can have."
            )
        object.__setattr__(self, "n_classes", int(self.n_classes))
        if not isinstance(self.meta, dict):
            raise DataError(
                f"{who}: meta must be a dict (got {type(self.meta).__name__}); "
                "pass a dict such as {'options': ..., 'seed': ..., 'source': ...}."
            )
        for split in ("train", "test"):
            x = self._as_features(who, f"x_{split}", getattr(self, f"x_{split}"))
            y = self._as_labels(who, f"y_{split}", getattr(self, f"y_{split}"))
            if x.shape[0] != y.shape[0]:
                raise DataError(
                    f"{who}: x_{split} has {x.shape[0]} rows but y_{split} has "
                    f"{y.shape[0]} labels; every input row needs exactly one label."
                )
            if x.shape[0] == 0:
                raise DataError(
                    f"{who}: the {split} split is empty; it needs at least one "
                    "example (check n_train/n_test, limits or the class subset)."
                )
            if y.size and (y.min() < 0 or y.max() >= self.n_classes):
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

    @staticmethod
    def _as_features(who: str, field_name: str, value: Any) -> np.ndarray:
        try:
            x = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"{who}: {field_name} cannot be converted to a float64 array ({exc}); "
                "pass a numeric (N, d) array."
            ) from None
        if x.ndim != 2:
            raise DataError(
                f"{who}: {field_name} must be a 2-D array (N, d) but has shape {x.shape}; "
                "flatten each example into one row."
            )
        if not np.isfinite(x).all():
            n_bad = int(x.size - np.isfinite(x).sum())
            raise DataError(
                f"{who}: {field_name} contains {n_bad} NaN or infinite value(s); "
                "all inputs must be finite, so clean or drop those examples."
            )
        return x

    @staticmethod
    def _as_labels(who: str, field_name: str, value: Any) -> np.ndarray:
        y = np.asarray(value)
        if y.dtype.kind not in "iu":
            raise DataError(
                f"{who}: {field_name} must hold integer class labels but has dtype "
                f"{y.dtype}; convert the labels to integers 0..n_classes-1."
            )
        if y.ndim != 1:
            raise DataError(
                f"{who}: {field_name} must be a 1-D array (N,) but has shape {y.shape}; "
                "give one integer label per example."
            )
        return y.astype(np.int64, copy=False)

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
        return (
            f"Dataset(name={self.name!r}, train={self.n_train}x{self.n_features}, "
            f"test={self.n_test}x{self.n_features}, n_classes={self.n_classes})"
        )


#: Registry of dataset factories: name -> ``f(**options) -> Dataset``.
DATASETS: Registry[Callable[..., Dataset]] = Registry("dataset")


def _option_params(factory: Callable[..., Dataset]) -> dict[str, inspect.Parameter]:
    sig = inspect.signature(factory)
    return {
        n: p
        for n, p in sig.parameters.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def dataset_options(name: str) -> dict[str, Any]:
    """Option name -> default value of the dataset ``name`` (for docs and ``blursim list``)."""
    factory = DATASETS.get(name)
    out: dict[str, Any] = {}
    for n, p in _option_params(factory).items():
        out[n] = None if p.default is inspect.Parameter.empty else p.default
    return out


def load_dataset(
    name: str, options: Mapping[str, Any] | None = None, *, path: str | None = None
) -> Dataset:
    """Build the registered dataset ``name`` with ``options``.

    ``path`` is the JSON path of the dataset entry in the spec (for example
    ``"$.dataset"``); errors point at ``<path>.name`` for an unknown dataset
    and at ``<path>.options.<option>`` for a bad option. Without ``path``
    they point at ``name`` and ``options.<option>``.
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
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise SpecError(
            f"options of dataset {name!r} must be an object mapping option names to values",
            path=opt_path,
            value=options,
            hint=f"Valid options: {', '.join(_option_params(factory)) or '(none)'}.",
        )
    params = _option_params(factory)
    unknown = sorted(str(k) for k in options if not isinstance(k, str) or k not in params)
    if unknown:
        quoted = ", ".join(repr(k) for k in unknown)
        plural = "options" if len(unknown) > 1 else "option"
        raise SpecError(
            f"dataset {name!r} has no {plural} {quoted}",
            path=f"{opt_path}.{unknown[0]}",
            choices=list(params),
            hint=(
                "Remove or rename the option; "
                f"blursim.data.dataset_options({name!r}) lists each option with its default."
            ),
        )
    try:
        return factory(**options)
    except SpecError as exc:
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
# option checks shared by the factories


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(
    dataset: str,
    option: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    allow_none: bool = False,
) -> int | None:
    """Return ``value`` as ``int`` or raise SpecError naming ``option``."""
    if value is None and allow_none:
        return None
    rng = _range_text(minimum, maximum)
    if not _is_int(value) or (minimum is not None and value < minimum) or (
        maximum is not None and value > maximum
    ):
        extra = " or null" if allow_none else ""
        raise SpecError(
            f"dataset {dataset!r}: option {option!r} must be an integer{rng}{extra}",
            path=option,
            value=value,
            hint=f"Set {option} to such an integer.",
        )
    return int(value)


def check_float(
    dataset: str,
    option: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive: bool = False,
) -> float:
    """Return ``value`` as a finite ``float`` within bounds or raise SpecError."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = math.isfinite(v)
        if ok and minimum is not None:
            ok = v > minimum if exclusive else v >= minimum
        if ok and maximum is not None:
            ok = v < maximum if exclusive else v <= maximum
    if not ok:
        rng = _range_text(minimum, maximum, exclusive=exclusive)
        raise SpecError(
            f"dataset {dataset!r}: option {option!r} must be a finite number{rng}",
            path=option,
            value=value,
            hint=f"Set {option} to such a number.",
        )
    return float(value)


def check_choice(dataset: str, option: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices`` or raise SpecError listing them."""
    if not isinstance(value, str) or value not in choices:
        raise SpecError(
            f"dataset {dataset!r}: option {option!r} has an unknown value",
            path=option,
            value=value,
            choices=choices,
        )
    return value


def check_classes(dataset: str, value: Any, n_classes: int, option: str = "classes") -> list[int] | None:
    """Validate a class subset: ``None`` or >= 2 distinct labels in ``0..n_classes-1``.

    Returns the subset sorted ascending (the order of the new labels).
    """
    if value is None:
        return None
    what = (
        f"dataset {dataset!r}: option {option!r} must be null (all classes) or a list "
        f"of at least 2 distinct integer labels in 0..{n_classes - 1}"
    )
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
        raise SpecError(what, path=option, value=value, hint="For example [0, 1, 2, 3, 4].")
    items = list(value)
    bad = [c for c in items if not _is_int(c) or not 0 <= c < n_classes]
    if bad:
        raise SpecError(
            what + f"; {bad[0]!r} is not such a label",
            path=option,
            value=items,
            hint="Remove the labels outside that range.",
        )
    ints = [int(c) for c in items]
    if len(set(ints)) != len(ints):
        dups = sorted({c for c in ints if ints.count(c) > 1})
        raise SpecError(
            what + f"; label(s) {dups} appear more than once",
            path=option,
            value=items,
            hint="List each label once.",
        )
    if len(ints) < 2:
        raise SpecError(
            what + "; a classifier needs at least two classes",
            path=option,
            value=items,
            hint="Add another label, or use null for all classes.",
        )
    return sorted(ints)


def _range_text(
    minimum: float | None, maximum: float | None, *, exclusive: bool = False
) -> str:
    lo, hi = ("(", ")") if exclusive else ("[", "]")
    if minimum is not None and maximum is not None:
        return f" in {lo}{minimum}, {maximum}{hi}"
    if minimum is not None:
        return f" {'>' if exclusive else '>='} {minimum}"
    if maximum is not None:
        return f" {'<' if exclusive else '<='} {maximum}"
    return ""


def subset_classes(
    x: np.ndarray, y: np.ndarray, classes: list[int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Keep rows whose label is in ``classes`` (sorted) and remap labels to 0..m-1."""
    if classes is None:
        return x, y
    wanted = np.asarray(sorted(classes), dtype=np.int64)
    keep = np.isin(y, wanted)
    return x[keep], np.searchsorted(wanted, y[keep]).astype(np.int64)
