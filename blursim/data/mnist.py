"""MNIST, Fashion-MNIST and EMNIST from local IDX files (BLUR paper, Sec. 4.2).

The paper meta-trains on MNIST cropped to 20x20 and resized to 10x10 (options
``crop=20, size=10``), on its halves 0-4 and 5-9 (``mnist_0_4``,
``mnist_5_9``), and validates at 28x28 on MNIST, Fashion-MNIST, a 10-class
letter subset of EMNIST (``emnist`` with ``split="letters"``,
``classes=[0, ..., 9]``) and the full 62-class EMNIST (``split="byclass"``);
Appendix experiments also use 14x14 MNIST (``size=14``).

Where the files are looked for
------------------------------
blursim downloads nothing. Each dataset needs four IDX files, each either
plain or gzip-compressed with a ``.gz`` suffix (the plain one is used when
both exist):

* ``mnist`` and ``fashion_mnist``: ``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte`` (the two datasets use the same names);
* ``emnist``: ``emnist-{split}-train-images-idx3-ubyte``,
  ``emnist-{split}-train-labels-idx1-ubyte``,
  ``emnist-{split}-test-images-idx3-ubyte``,
  ``emnist-{split}-test-labels-idx1-ubyte``.

The directory searched is, in this order of precedence:

1. the option ``data_dir``: the files must be directly in it;
2. otherwise ``$BLURSIM_DATA_DIR/mnist/``, ``$BLURSIM_DATA_DIR/fashion_mnist/``
   or ``$BLURSIM_DATA_DIR/emnist/`` respectively.

Processing, in this order
-------------------------
1. EMNIST images are stored transposed; they are transposed back so that
   every image is upright. EMNIST ``letters`` labels 1..26 become 0..25
   (a..z).
2. ``classes``: keep only those labels (in the label space after step 1) and
   relabel them 0..m-1 in ascending order; ``meta["classes"]`` keeps the
   original labels and ``meta["class_names"]`` their names.
3. ``limit_train`` / ``limit_test``: keep the first N examples of what is left
   (file order), for speed.
4. ``crop``: keep the central ``crop`` x ``crop`` pixels (when the margin is
   odd, the extra row/column is dropped at the bottom/right).
5. ``size``: resize to ``size`` x ``size``: by averaging non-overlapping
   blocks when ``size`` divides the side (20 -> 10, 28 -> 14), otherwise
   bilinearly with pixel centres aligned (output pixel ``i`` samples source
   coordinate ``(i + 0.5) * side / size - 0.5``, clamped to the image).
6. Pixels divided by 255 into [0, 1]; each image flattened row by row.

Arrays are float64, so the full 62-class EMNIST (about 700,000 images) takes
several GB at 28x28; use ``size`` or ``limit_train`` to keep it small.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from blursim.data.base import (
    Dataset,
    DatasetOptions,
    check_classes,
    class_subset,
    register_dataset,
)
from blursim.data.idx import read_idx
from blursim.errors import DataError, SpecError

__all__ = [
    "ENV_VAR",
    "EMNIST_SPLITS",
    "center_crop",
    "resize_images",
    "mnist",
    "fashion_mnist",
    "emnist",
]

#: Environment variable naming the root directory of the IDX datasets.
ENV_VAR = "BLURSIM_DATA_DIR"

_DIGITS = [str(d) for d in range(10)]
_UPPER = [chr(ord("A") + i) for i in range(26)]
_LOWER = [chr(ord("a") + i) for i in range(26)]
_FASHION = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_MERGED = _DIGITS + _UPPER + list("abdefghnqrt")

#: EMNIST split -> class names in label order (after letters are shifted to 0..25).
EMNIST_SPLITS: dict[str, list[str]] = {
    "letters": _LOWER,
    "digits": _DIGITS,
    "mnist": _DIGITS,
    "balanced": _MERGED,
    "bymerge": _MERGED,
    "byclass": _DIGITS + _UPPER + _LOWER,
}

_WHERE = {
    "mnist": ("MNIST", "http://yann.lecun.com/exdb/mnist/"),
    "fashion_mnist": ("Fashion-MNIST", "https://github.com/zalandoresearch/fashion-mnist"),
    "emnist": ("EMNIST", "https://www.nist.gov/itl/products-and-services/emnist-dataset"),
}

_CHUNK = 8192
_CACHE: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
_CACHE_SIZE = 8


# ---------------------------------------------------------------------------
# image transforms


def center_crop(images: np.ndarray, crop: int) -> np.ndarray:
    """Central ``crop`` x ``crop`` window of a stack of images ``(N, H, W)``.

    With an odd margin the window starts at ``(H - crop) // 2``, i.e. the
    extra row and column are dropped at the bottom and right.
    """
    h, w = images.shape[-2:]
    if not 1 <= crop <= min(h, w):
        raise ValueError(f"crop {crop} does not fit images of {h}x{w}")
    top, left = (h - crop) // 2, (w - crop) // 2
    return images[..., top : top + crop, left : left + crop]


def _bilinear_axis(images: np.ndarray, size: int, axis: int) -> np.ndarray:
    n = images.shape[axis]
    src = (np.arange(size) + 0.5) * (n / size) - 0.5
    src = np.clip(src, 0.0, n - 1.0)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = src - lo
    shape = [1] * images.ndim
    shape[axis] = size
    frac = frac.reshape(shape)
    return np.take(images, lo, axis=axis) * (1.0 - frac) + np.take(images, hi, axis=axis) * frac


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resize a stack of images ``(N, H, W)`` to ``(N, size, size)`` as float64.

    Block averaging when ``size`` divides both ``H`` and ``W``, otherwise
    bilinear interpolation with aligned pixel centres (see module docstring).
    """
    x = np.asarray(images, dtype=np.float64)
    n, h, w = x.shape
    if size == h == w:
        return x.copy()
    if h % size == 0 and w % size == 0:
        return x.reshape(n, size, h // size, size, w // size).mean(axis=(2, 4))
    return _bilinear_axis(_bilinear_axis(x, size, 1), size, 2)


# ---------------------------------------------------------------------------
# files


def _file_names(kind: str, split: str | None) -> dict[str, str]:
    if kind == "emnist":
        p = f"emnist-{split}-"
        return {
            "train_images": p + "train-images-idx3-ubyte",
            "train_labels": p + "train-labels-idx1-ubyte",
            "test_images": p + "test-images-idx3-ubyte",
            "test_labels": p + "test-labels-idx1-ubyte",
        }
    return {
        "train_images": "train-images-idx3-ubyte",
        "train_labels": "train-labels-idx1-ubyte",
        "test_images": "t10k-images-idx3-ubyte",
        "test_labels": "t10k-labels-idx1-ubyte",
    }


def _locate(name: str, kind: str, data_dir: Any, files: dict[str, str]) -> dict[str, Path]:
    label, url = _WHERE[kind]
    listing = ", ".join(f"{f}[.gz]" for f in files.values())
    todo = (
        f"Download {label} (e.g. from {url}) and either pass the option "
        f"data_dir=<directory holding the files> or set the environment variable "
        f"{ENV_VAR}=<root> with the files in <root>/{kind}/."
    )
    if data_dir is not None:
        if not isinstance(data_dir, (str, os.PathLike)) or not str(data_dir):
            raise SpecError(
                f"dataset {name!r}: option 'data_dir' must be a directory path (string) or null",
                path="data_dir",
                value=data_dir,
                hint=f"Point it at the directory that holds {listing}.",
            )
        from blursim.limits import check_path_text

        directory = Path(check_path_text(data_dir, what="data_dir", where="data_dir")).expanduser()
        how = "option data_dir"
    else:
        root = os.environ.get(ENV_VAR)
        if not root:
            raise DataError(
                f"dataset {name!r}: no directory to read {label} from: the option data_dir "
                f"is not set and neither is the environment variable {ENV_VAR}. The files "
                f"expected are {listing} (each plain or gzip-compressed with .gz). {todo}"
            )
        directory = Path(root).expanduser() / kind
        how = f"environment variable {ENV_VAR}={root!r} plus '/{kind}'"
    found: dict[str, Path] = {}
    missing: list[str] = []
    for role, base in files.items():
        for cand in (base, base + ".gz"):
            if _is_file(directory / cand):
                found[role] = directory / cand
                break
        else:
            missing.append(f"{base}[.gz]")
    if missing:
        state = "" if _is_dir(directory) else " (the directory does not exist)"
        if len(missing) == len(files):
            what = f"none of the {label} files {listing} was found"
        else:
            what = f"{label} file(s) {', '.join(missing)} not found"
        raise DataError(
            f"dataset {name!r}: {what} in directory {str(directory)!r}{state}, which comes "
            f"from the {how}. {label} needs all four files ({listing}), each plain or "
            f"gzip-compressed with a .gz suffix. {todo}"
            if len(missing) < len(files)
            else f"dataset {name!r}: {what} in directory {str(directory)!r}{state}, which "
            f"comes from the {how} (each file may be plain or gzip-compressed with a .gz "
            f"suffix). {todo}"
        )
    return found


def _is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except OSError:  # e.g. a name too long for the file system
        return False


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except OSError:
        return False


def _read_cached(path: Path) -> np.ndarray:
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    arr = _CACHE.get(key)
    if arr is None:
        arr = read_idx(path)
        arr.setflags(write=False)
        _CACHE[key] = arr
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return arr


def _read_split(
    name: str, images_path: Path, labels_path: Path
) -> tuple[np.ndarray, np.ndarray]:
    images = _read_cached(images_path)
    labels = _read_cached(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"dataset {name!r}: image file {str(images_path)!r} holds a {images.dtype} array "
            f"of shape {images.shape}, but images must be unsigned bytes of shape "
            "(N, height, width); check that the file is the images file, not the labels."
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(
            f"dataset {name!r}: label file {str(labels_path)!r} holds a {labels.dtype} array "
            f"of shape {labels.shape}, but labels must be unsigned bytes of shape (N,); "
            "check that the file is the labels file, not the images."
        )
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"dataset {name!r}: {str(images_path)!r} has {images.shape[0]} images but "
            f"{str(labels_path)!r} has {labels.shape[0]} labels; the two files do not belong "
            "together, so replace them with a matching pair."
        )
    return images, labels


def _prepare(
    images: np.ndarray, crop: int | None, size: int | None, transpose: bool
) -> np.ndarray:
    if transpose:
        images = images.transpose(0, 2, 1)
    if crop is not None:
        images = center_crop(images, crop)
    h, w = images.shape[1:]
    side_h, side_w = (size, size) if size is not None else (h, w)
    out = np.empty((images.shape[0], side_h * side_w), dtype=np.float64)
    for start in range(0, images.shape[0], _CHUNK):
        chunk = images[start : start + _CHUNK].astype(np.float64)
        if size is not None:
            chunk = resize_images(chunk, size)
        out[start : start + _CHUNK] = chunk.reshape(chunk.shape[0], -1) / 255.0
    return out


# ---------------------------------------------------------------------------
# the loader


class MnistHalfOptions(DatasetOptions):
    """Options of every IDX dataset (the fixed-class halves take only these)."""

    data_dir: str | None = Field(
        None, description="directory holding the four IDX files (default $BLURSIM_DATA_DIR/<name>/)"
    )
    crop: int | None = Field(None, ge=1, description="keep the central crop x crop pixels")
    size: int | None = Field(None, ge=1, le=256, description="resize to size x size pixels")
    limit_train: int | None = Field(None, ge=1, description="keep the first N train examples")
    limit_test: int | None = Field(None, ge=1, description="keep the first N test examples")


class MnistOptions(MnistHalfOptions):
    """Options of ``mnist``."""

    classes: class_subset(10) = None


class FashionMnistOptions(MnistOptions):
    """Options of ``fashion_mnist``."""


class EmnistOptions(MnistHalfOptions):
    """Options of ``emnist``: the split decides the labels ``classes`` may name."""

    split: Literal["letters", "digits", "mnist", "balanced", "bymerge", "byclass"] = Field(
        "letters", description="EMNIST split: letters (26), digits/mnist (10), balanced/bymerge (47), byclass (62)"
    )
    classes: list[int] | None = Field(
        None, description="a subset of at least two labels of the split, relabelled 0..m-1 in "
        "ascending order; null for all classes"
    )

    @field_validator("classes")
    @classmethod
    def _classes_of_the_split(cls, v: list[int] | None, info) -> list[int] | None:
        split = info.data.get("split")
        if split is None:  # the split itself is invalid; that error is reported
            return v
        try:
            return check_classes(v, len(EMNIST_SPLITS[split]))
        except ValueError as e:
            raise ValueError(f"for split {split!r}, classes {e}") from None


def _load(
    name: str, kind: str, opts: MnistHalfOptions, classes: list[int] | None
) -> Dataset:
    split = getattr(opts, "split", None)
    if kind == "emnist":
        class_names = EMNIST_SPLITS[split]
    else:
        class_names = _FASHION if kind == "fashion_mnist" else _DIGITS
    n_all = len(class_names)
    crop, size = opts.crop, opts.size

    files = _file_names(kind, split)
    paths = _locate(name, kind, opts.data_dir, files)
    kept = list(range(n_all)) if classes is None else classes
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for part, limit in (("train", opts.limit_train), ("test", opts.limit_test)):
        images, labels = _read_split(name, paths[f"{part}_images"], paths[f"{part}_labels"])
        labels = labels.astype(np.int64)
        if kind == "emnist" and split == "letters":
            labels = labels - 1
        if labels.size and (labels.min() < 0 or labels.max() >= n_all):
            lo, hi = (1, n_all) if split == "letters" else (0, n_all - 1)
            shift = 1 if split == "letters" else 0
            raise DataError(
                f"dataset {name!r}: label file {str(paths[f'{part}_labels'])!r} contains "
                f"labels {int(labels.min()) + shift}..{int(labels.max()) + shift}, but "
                f"{_WHERE[kind][0]}{'' if split is None else ' ' + split} labels must lie in "
                f"{lo}..{hi}; the file belongs to another dataset or split, so replace it."
            )
        keep = np.flatnonzero(np.isin(labels, kept))
        if limit is not None:
            keep = keep[:limit]
        h, w = images.shape[1:]
        if crop is not None and crop > min(h, w):
            raise SpecError(  # depends on the files found, so checked here (path: the option)
                f"dataset {name!r}: option 'crop' is larger than the {h}x{w} images in "
                f"{str(paths[f'{part}_images'])!r}",
                path="crop",
                value=crop,
                hint=f"Use a crop between 1 and {min(h, w)}, or null for no crop.",
            )
        x = _prepare(images[keep], crop, size, transpose=kind == "emnist")
        y = np.searchsorted(np.asarray(kept), labels[keep]).astype(np.int64)
        arrays[part] = (x, y)

    side = size if size is not None else (crop if crop is not None else None)
    shape = [side, side] if side is not None else list(images.shape[1:])
    return Dataset(
        name=name,
        x_train=arrays["train"][0],
        y_train=arrays["train"][1],
        x_test=arrays["test"][0],
        y_test=arrays["test"][1],
        n_classes=len(kept),
        meta={
            "options": opts.model_dump(),
            "seed": None,
            "source": f"{_WHERE[kind][0]} IDX files in {str(paths['train_images'].parent)!r}",
            "files": {role: str(p) for role, p in paths.items()},
            "classes": [int(c) for c in kept],
            "class_names": [class_names[c] for c in kept],
            "image_shape": shape,
        },
    )


@register_dataset("mnist", MnistOptions)
def mnist(opts: MnistOptions) -> Dataset:
    """MNIST handwritten digits from local IDX files (Sec. 4.2; crop=20, size=10 as in the paper).

    Files: train-images-idx3-ubyte, train-labels-idx1-ubyte,
    t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (plain or .gz) in
    ``data_dir``, else in ``$BLURSIM_DATA_DIR/mnist/``. Options as described
    in :mod:`blursim.data.mnist`.
    """
    return _load("mnist", "mnist", opts, opts.classes)


@register_dataset("mnist_0_4", MnistHalfOptions)
def mnist_0_4(opts: MnistHalfOptions) -> Dataset:
    """MNIST digits 0-4 relabelled 0..4, one of the half-size meta-training tasks of Sec. 4.2."""
    return _load("mnist_0_4", "mnist", opts, [0, 1, 2, 3, 4])


@register_dataset("mnist_5_9", MnistHalfOptions)
def mnist_5_9(opts: MnistHalfOptions) -> Dataset:
    """MNIST digits 5-9 relabelled 0..4, one of the half-size meta-training tasks of Sec. 4.2."""
    return _load("mnist_5_9", "mnist", opts, [5, 6, 7, 8, 9])


@register_dataset("fashion_mnist", FashionMnistOptions)
def fashion_mnist(opts: FashionMnistOptions) -> Dataset:
    """Fashion-MNIST clothing images from local IDX files (meta-validation, Sec. 4.2).

    Same file names as MNIST (plain or .gz), in ``data_dir``, else in
    ``$BLURSIM_DATA_DIR/fashion_mnist/``. Options as for ``mnist``.
    """
    return _load("fashion_mnist", "fashion_mnist", opts, opts.classes)


@register_dataset("emnist", EmnistOptions)
def emnist(opts: EmnistOptions) -> Dataset:
    """EMNIST letters/digits/... from local IDX files (meta-validation, Sec. 4.2).

    ``split``: letters (26 classes, labels 1..26 remapped to 0..25),
    digits (10), mnist (10), balanced (47), bymerge (47) or byclass (62, the
    paper's "full 62-category E-MNIST"). Files
    emnist-{split}-{train,test}-{images-idx3,labels-idx1}-ubyte (plain or
    .gz) in ``data_dir``, else in ``$BLURSIM_DATA_DIR/emnist/``. Images are
    transposed back to upright. Other options as for ``mnist``.
    """
    return _load("emnist", "emnist", opts, opts.classes)
