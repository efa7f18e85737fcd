"""Datasets from the user's own files: ``file`` (NPZ, NPY or CSV; labels or target vectors).

Declared like every other dataset, in a document::

    {"name": "file", "options": {"path": "data/train.npz", "test_path": "data/test.npz"}}
    {"name": "file", "options": {"path": "data/points.csv", "targets": "vectors",
                                 "target_columns": 2, "test_fraction": 0.25}}

or on the command line (``blursim run SPEC --task file --task-opt path=data.csv``).

Formats (chosen by the file's suffix)
-------------------------------------
* ``.npz``: the arrays named ``x_key`` (default ``"x"``, shape ``(N, d)``) and
  ``y_key`` (default ``"y"``: labels ``(N,)``, or target vectors ``(N, m)``;
  ``(N,)`` with ``targets: "vectors"`` is one target per row). Read with
  ``allow_pickle=False``.
* ``.npy``: one 2-D array ``(N, d + t)``; its last ``t = target_columns``
  columns are the targets.
* ``.csv``: numbers separated by commas, one example per line, laid out as for
  ``.npy``; a first line that is not numeric is a header and skipped.

Targets
-------
``targets: "labels"`` (default): integer class labels ``0 .. n_classes - 1``
(in a CSV or a float array they must be whole numbers); ``n_classes``
defaults to the largest label + 1. ``targets: "vectors"``: real-valued target
vectors, the values the output population's state 0 should take -- with the
``target`` and ``error_mse`` feedback kinds they replace the coded targets,
and runs report the mean squared error instead of accuracy (DESIGN §2 step 4,
docs/design.md).

Test split
----------
``test_path`` names a test file of the same format; otherwise a seeded split
of ``path`` (``test_fraction``, ``split_seed``): stratified by label for
labels (as ``digits``), a seeded permutation for target vectors.

Paths: in an experiment document a relative path is relative to the
experiment file (like its network and genome paths); elsewhere, to the current
directory. Every problem with a file -- missing, unreadable, wrong shape,
NaN or infinity, float labels, a missing NPZ key -- is a
:class:`~blursim.errors.DataError` naming the file (a missing file: a
:class:`~blursim.errors.SpecError` at the option), before anything is run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from blursim.data.base import Dataset, DatasetOptions, register_dataset, stratified_split
from blursim.errors import DataError, SpecError
from blursim.spec.base import error_at

__all__ = ["FileOptions", "file_dataset", "read_table"]

_SUFFIXES = (".npz", ".npy", ".csv")


class FileOptions(DatasetOptions):
    """Options of ``file``."""

    #: Options that name files (resolved against an experiment file's directory).
    PATH_OPTIONS: ClassVar[tuple[str, ...]] = ("path", "test_path")

    path: str = Field(
        min_length=1, description="the data file: .npz, .npy or .csv", examples=["data/train.npz"]
    )
    test_path: str | None = Field(
        None, min_length=1, description="a test file of the same format (null: split path)"
    )
    targets: Literal["labels", "vectors"] = Field(
        "labels", description="labels: integer classes; vectors: real-valued target vectors"
    )
    x_key: str = Field("x", min_length=1, description="NPZ: the name of the input array")
    y_key: str = Field("y", min_length=1, description="NPZ: the name of the target array")
    target_columns: int = Field(
        1, ge=1, description="NPY/CSV: how many trailing columns are the target (1 for labels)"
    )
    n_classes: int | None = Field(
        None, ge=1, description="labels: number of classes (null: the largest label + 1)"
    )
    test_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="without test_path: the fraction of rows held out"
    )
    split_seed: int = Field(0, ge=0, description="without test_path: seed of the split")

    @model_validator(mode="after")
    def _consistent(self):
        if self.targets == "labels" and self.target_columns != 1:
            raise error_at(
                ("target_columns",),
                "labels take one column; use targets: \"vectors\" for several target columns",
                value=self.target_columns,
            )
        if self.targets == "vectors" and self.n_classes is not None:
            raise error_at(("n_classes",), "n_classes is for labels; target vectors have none",
                           value=self.n_classes)
        return self


def _check_file(option: str, value: str) -> Path:
    p = Path(value)
    if p.suffix.lower() not in _SUFFIXES:
        raise SpecError(
            f"dataset 'file': {option} must end in {', '.join(_SUFFIXES)} (the format is "
            "chosen by the suffix)",
            path=option, value=value,
        )
    if not p.is_file():
        what = "is a directory, not a file" if p.is_dir() else "does not exist"
        raise SpecError(
            f"dataset 'file': {option} {what}",
            path=option, value=value,
            hint="In an experiment, relative paths are relative to the experiment file.",
        )
    return p


#: Largest data file read (and what an NPZ may inflate to); less where memory is smaller.
MAX_DATA_FILE_BYTES = 2**32


def _read_csv(p: Path) -> np.ndarray:
    from blursim.limits import read_regular_file
    from blursim.machine import memory_bytes

    # a CSV row of floats takes about as much memory as text: a quarter of memory for the text
    raw = read_regular_file(p, limit=min(MAX_DATA_FILE_BYTES, memory_bytes() // 16), what="data file",
                            error=DataError)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"CSV file {str(p)!r} cannot be read ({exc}); save it as UTF-8 text.") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise DataError(f"CSV file {str(p)!r} is empty; it needs one example per line.")
    try:
        [float(v) for v in lines[0].split(",")]
    except ValueError:
        lines = lines[1:]  # a header
        if not lines:
            raise DataError(f"CSV file {str(p)!r} has a header but no data lines.") from None
    width = None
    rows = []
    for i, line in enumerate(lines):
        fields = line.split(",")
        if width is None:
            width = len(fields)
        elif len(fields) != width:
            raise DataError(
                f"CSV file {str(p)!r}: data line {i + 1} has {len(fields)} values but the first "
                f"has {width}; every line needs the same number of columns."
            )
        try:
            rows.append([float(v) for v in fields])
        except ValueError:
            bad = next(v for v in fields if not _is_float(v))
            raise DataError(
                f"CSV file {str(p)!r}: data line {i + 1} holds {bad.strip()!r}, which is not a "
                "number; every value must be numeric (a header is allowed only on the first line)."
            ) from None
    return np.asarray(rows, dtype=np.float64)


def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def read_table(p: Path, opts: FileOptions) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` as stored in file ``p`` (targets as read, not yet checked)."""
    from blursim.limits import read_regular_file
    from blursim.machine import memory_bytes
    from blursim.npz import read_npy, read_npz

    suffix = p.suffix.lower()
    # the file, and what an NPZ inflates to (from its headers, before inflating), fit in memory
    limit = min(MAX_DATA_FILE_BYTES, memory_bytes() // 4)
    if suffix in (".npz", ".npy"):
        raw = read_regular_file(p, limit=limit, what="data file", error=DataError)
        if suffix == ".npy":
            table = read_npy(raw, name=str(p), max_bytes=limit, error=DataError)
        else:
            arrays = read_npz(raw, name=str(p), max_bytes=limit, error=DataError, what="NPZ data file")
            missing = [k for k in (opts.x_key, opts.y_key) if k not in arrays]
            if missing:
                from blursim.errors import shorten

                held = ", ".join(repr(shorten(k, 40)) for k in list(arrays)[:10]) or "no arrays"
                raise DataError(
                    f"NPZ file {shorten(str(p), 200)!r} has no array {shorten(missing[0], 40)!r}; it holds "
                    f"{held}. Set the options x_key and y_key to the names of the input and target arrays."
                )
            return arrays[opts.x_key], arrays[opts.y_key]
    else:
        table = _read_csv(p)
    if table.ndim != 2 or table.shape[1] <= opts.target_columns:
        raise DataError(
            f"{suffix[1:].upper()} file {str(p)!r} holds an array of shape {table.shape}, but "
            f"it must be 2-D with the features followed by {opts.target_columns} target "
            "column(s); store one example per row."
        )
    t = opts.target_columns
    return table[:, :-t], (table[:, -1] if opts.targets == "labels" else table[:, -t:])


def _targets(p: Path, y: np.ndarray, n_rows: int, opts: FileOptions) -> np.ndarray:
    where = f"file {str(p)!r}"
    if y.dtype.kind not in "iufb":
        raise DataError(f"{where}: the targets have dtype {y.dtype}; they must be numbers.")
    if y.shape[0] != n_rows:
        raise DataError(
            f"{where}: {n_rows} input rows but {y.shape[0]} targets; every row needs exactly one."
        )
    if opts.targets == "vectors":
        y = y.astype(np.float64).reshape(n_rows, -1) if y.ndim == 1 else y.astype(np.float64)
        if y.ndim != 2:
            raise DataError(f"{where}: target vectors must be (N, m) but have shape {y.shape}.")
        return y
    if y.ndim != 1:
        raise DataError(
            f"{where}: labels must be one per row, shape (N,), but have shape {y.shape}; for "
            "several real-valued targets per row use targets: \"vectors\"."
        )
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise DataError(f"{where}: the labels contain NaN or infinity; every label must be a class.")
        if not np.array_equal(y, np.round(y)):
            bad = float(y[np.flatnonzero(y != np.round(y))[0]])
            raise DataError(
                f"{where}: label {bad!r} is not a whole number; class labels are integers "
                "0..n_classes-1 (for real-valued targets use targets: \"vectors\")."
            )
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise DataError(f"{where}: label {int(y.min())} is negative; class labels are 0..n_classes-1.")
    return y


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@register_dataset("file", FileOptions)
def file_dataset(opts: FileOptions) -> Dataset:
    """Your own data from an NPZ, NPY or CSV file: class labels or real-valued target vectors.

    See :mod:`blursim.data.files` for the formats, the split and the errors.
    """
    paths = {"path": _check_file("path", opts.path)}
    if opts.test_path is not None:
        paths["test_path"] = _check_file("test_path", opts.test_path)
    parts = {}
    for option, p in paths.items():
        x, y = read_table(p, opts)
        if x.ndim != 2:
            raise DataError(
                f"file {str(p)!r}: the inputs must be 2-D (N, d) but have shape {x.shape}; "
                "flatten each example into one row."
            )
        if x.dtype.kind not in "iufb":
            raise DataError(f"file {str(p)!r}: the inputs have dtype {x.dtype}; they must be numbers.")
        if not np.isfinite(x).all():
            n_bad = int(x.size - np.isfinite(x.astype(np.float64)).sum())
            raise DataError(
                f"file {str(p)!r}: the inputs contain {n_bad} NaN or infinite value(s); "
                "every input must be finite, so clean or drop those rows."
            )
        parts[option] = (x.astype(np.float64), _targets(p, y, x.shape[0], opts))
    x_all, y_all = parts["path"]
    if opts.test_path is not None:
        (x_train, y_train), (x_test, y_test) = parts["path"], parts["test_path"]
    else:
        if x_all.shape[0] < 2:
            raise DataError(
                f"file {opts.path!r} has {x_all.shape[0]} row(s); a train/test split needs at "
                "least two (or give test_path)."
            )
        if opts.targets == "labels":
            train_idx, test_idx = stratified_split(y_all, opts.test_fraction, opts.split_seed)
        else:
            n = x_all.shape[0]
            k = min(max(int(round(opts.test_fraction * n)), 1), n - 1)
            perm = np.random.default_rng(opts.split_seed).permutation(n)
            test_idx, train_idx = np.sort(perm[:k]), np.sort(perm[k:])
        x_train, y_train, x_test, y_test = x_all[train_idx], y_all[train_idx], x_all[test_idx], y_all[test_idx]
    n_classes = None
    if opts.targets == "labels":
        seen = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
        n_classes = opts.n_classes if opts.n_classes is not None else seen
        if seen > n_classes:
            raise DataError(
                f"dataset 'file': the labels go up to {seen - 1} but n_classes is {n_classes}; "
                "raise n_classes or remap the labels to 0..n_classes-1."
            )
    meta: dict[str, Any] = {
        "options": opts.model_dump(),
        "seed": opts.split_seed if opts.test_path is None else None,
        "source": f"file {str(paths['path'])!r}" + (
            f" (test: {str(paths['test_path'])!r})" if opts.test_path is not None else ""),
        "fingerprint": {opt: "sha256:" + _sha256(p) for opt, p in paths.items()},
    }
    return Dataset(
        name="file", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        n_classes=n_classes, meta=meta,
    )
