"""Tests for blursim.data: toy tasks, sklearn digits, IDX reader, MNIST-family loaders.

Expectations are computed here from the task definitions (BLUR paper Fig. 3 /
Sec. 4.1 and the module docstrings), never read back from the code under test.
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest

from blursim.data import DATASETS, Dataset, dataset_options, load_dataset, read_idx
from blursim.data.mnist import resize_images
from blursim.data.toy import label_points
from blursim.errors import DataError, SpecError

TWO_CLASS_TOYS = [
    "xor", "and", "or", "two_moons", "circle", "center_circle", "small_center_circle",
    "pie_slice", "cross", "triangle", "square", "random_xor", "checkerboard", "spiral",
    "halfplane",
]
TOYS = TWO_CLASS_TOYS + ["blobs5"]


# ---------------------------------------------------------------------------
# toy tasks


def test_every_expected_name_is_registered():
    expected = set(TOYS) | {
        "digits", "digits_0_4", "digits_5_9", "mnist", "fashion_mnist", "emnist",
    }
    assert expected <= set(DATASETS.names())


@pytest.mark.parametrize("name", TOYS)
def test_toy_points_labels_and_classes(name):
    n_classes = 5 if name == "blobs5" else 2
    for seed in (0, 1, 2, 3):
        ds = load_dataset(name, {"seed": seed})
        assert isinstance(ds, Dataset)
        assert ds.n_classes == n_classes and ds.n_features == 2
        for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
            assert x.shape == (1024, 2) and y.shape == (1024,)
            assert x.dtype == np.float64 and y.dtype == np.int64
            assert np.isfinite(x).all()
            assert x.min() >= -1.0 and x.max() <= 1.0
            assert set(np.unique(y).tolist()) == set(range(n_classes)), (name, seed)
        assert ds.meta["seed"] == seed and ds.meta["options"]["seed"] == seed
        # train and test are independent draws, not the same points
        assert not np.array_equal(ds.x_train, ds.x_test)


@pytest.mark.parametrize("name", TOYS)
def test_toy_same_seed_same_data(name):
    a = load_dataset(name, {"seed": 11, "n_train": 300, "n_test": 200})
    b = load_dataset(name, {"seed": 11, "n_train": 300, "n_test": 200})
    for f in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
    c = load_dataset(name, {"seed": 12, "n_train": 300, "n_test": 200})
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.x_test.shape == (200, 2)


def test_toy_does_not_touch_global_rng():
    np.random.seed(123)
    expected = np.random.random_sample(3)
    np.random.seed(123)
    load_dataset("circle", {"seed": 5})
    load_dataset("two_moons", {"seed": 5})
    assert np.array_equal(np.random.random_sample(3), expected)


@pytest.mark.parametrize("name", ["circle", "random_xor", "halfplane"])
def test_seeded_random_tasks_change_their_rule_with_the_seed(name):
    a = load_dataset(name, {"seed": 0})
    b = load_dataset(name, {"seed": 1})
    assert a.meta["params"] != b.meta["params"]
    # the same points get different labels under the two rules
    la = label_points(name, a.x_train, seed=0)
    lb = label_points(name, a.x_train, seed=1)
    assert (la != lb).mean() > 0.02


def test_xor_and_or_rules_on_dataset_points():
    for name, rule in (
        ("xor", lambda x, y: (x > 0) != (y > 0)),
        ("and", lambda x, y: (x > 0) & (y > 0)),
        ("or", lambda x, y: (x > 0) | (y > 0)),
    ):
        ds = load_dataset(name, {"seed": 4})
        for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
            assert np.array_equal(y, rule(x[:, 0], x[:, 1]).astype(int)), name


def test_geometric_rules_on_dataset_points():
    r_half = 0.7978845608  # sqrt(2 / pi): the disc covering half of the 2x2 square
    rules = {
        "center_circle": lambda x, y: np.hypot(x, y) < r_half,
        "small_center_circle": lambda x, y: np.hypot(x, y) < 0.4,
        "cross": lambda x, y: (np.abs(x) < 0.3) | (np.abs(y) < 0.3),
        "square": lambda x, y: (np.abs(x) < 0.7) & (np.abs(y) < 0.7),
        "pie_slice": lambda x, y: x > np.abs(y),
        "triangle": lambda x, y: (y > -0.8)
        & (y < -0.8 + (1.7 / 0.9) * (x + 0.9))
        & (y < -0.8 + (1.7 / 0.9) * (0.9 - x)),
        "checkerboard": lambda x, y: sum((v > t).astype(int) for v in (x, y)
                                         for t in (-0.5, 0.0, 0.5)) % 2 == 1,
    }
    for name, rule in rules.items():
        ds = load_dataset(name, {"seed": 2})
        expected = rule(ds.x_train[:, 0], ds.x_train[:, 1]).astype(int)
        assert np.array_equal(ds.y_train, expected), name


def test_random_parameter_rules_on_dataset_points():
    ds = load_dataset("circle", {"seed": 9})
    c, r = ds.meta["params"]["center"], ds.meta["params"]["radius"]
    assert all(-0.5 <= v <= 0.5 for v in c) and 0.3 <= r <= 0.7
    inside = (ds.x_test[:, 0] - c[0]) ** 2 + (ds.x_test[:, 1] - c[1]) ** 2 < r**2
    assert np.array_equal(ds.y_test, inside.astype(int))

    ds = load_dataset("random_xor", {"seed": 9})
    (cx, cy), a = ds.meta["params"]["center"], ds.meta["params"]["angle"]
    dx, dy = ds.x_train[:, 0] - cx, ds.x_train[:, 1] - cy
    u = dx * math.cos(a) + dy * math.sin(a)  # coordinates in the frame rotated by a
    v = -dx * math.sin(a) + dy * math.cos(a)
    assert np.array_equal(ds.y_train, ((u > 0) != (v > 0)).astype(int))

    ds = load_dataset("halfplane", {"seed": 9})
    a, b = ds.meta["params"]["normal_angle"], ds.meta["params"]["offset"]
    side = ds.x_train[:, 0] * math.cos(a) + ds.x_train[:, 1] * math.sin(a) > b
    assert np.array_equal(ds.y_train, side.astype(int))


@pytest.mark.parametrize(
    "name, points, labels, options",
    [
        ("xor", [(0.5, 0.5), (0.5, -0.5), (-0.5, -0.5), (-0.5, 0.5)], [0, 1, 0, 1], {}),
        ("and", [(0.5, 0.5), (0.5, -0.5), (-0.5, -0.5), (-0.5, 0.5)], [1, 0, 0, 0], {}),
        ("or", [(0.5, 0.5), (0.5, -0.5), (-0.5, -0.5), (-0.5, 0.5)], [1, 1, 0, 1], {}),
        ("center_circle", [(0, 0), (0.75, 0), (0.85, 0), (0.9, 0.9)], [1, 1, 0, 0], {}),
        ("small_center_circle", [(0.3, 0), (0, -0.39), (0.5, 0)], [1, 1, 0], {}),
        ("center_circle", [(0.25, 0), (0.35, 0)], [1, 0], {"radius": 0.3}),
        ("cross", [(0.1, 0.9), (0.9, -0.1), (0.5, 0.5), (-0.5, -0.5)], [1, 1, 0, 0], {}),
        ("triangle", [(0, 0), (0, -0.7), (0, 0.95), (0.8, 0.5), (0, -0.85)], [1, 1, 0, 0, 0], {}),
        ("square", [(0.6, 0.6), (0.75, 0), (0, -0.69)], [1, 0, 1], {}),
        ("pie_slice", [(0.9, 0.1), (0.9, -0.5), (0.1, 0.9), (-0.9, 0)], [1, 1, 0, 0], {}),
        ("pie_slice", [(0.1, 0.9), (0.9, 0.1)], [1, 0], {"direction_deg": 90}),
        ("checkerboard", [(-0.9, -0.9), (-0.4, -0.9), (0.1, 0.1), (0.9, -0.9)], [0, 1, 0, 1], {}),
        ("checkerboard", [(-0.5, -0.5), (0.5, -0.5)], [0, 1], {"cells": 2}),
    ],
)
def test_label_rules_on_hand_picked_points(name, points, labels, options):
    assert label_points(name, np.array(points, dtype=float), **options).tolist() == labels


def test_class_balance_matches_areas():
    ds = load_dataset("center_circle", {"n_train": 4000, "n_test": 4000})
    assert abs(ds.y_train.mean() - 0.5) < 0.04
    ds = load_dataset("small_center_circle", {"n_train": 4000})
    assert abs(ds.y_train.mean() - math.pi * 0.16 / 4) < 0.03  # disc area / square area
    ds = load_dataset("and", {"n_train": 4000})
    assert abs(ds.y_train.mean() - 0.25) < 0.04


def test_two_moons_lie_on_the_make_moons_curves():
    ds = load_dataset("two_moons", {"noise": 0.0, "n_train": 201, "seed": 3})
    # undo the documented affine map back to sklearn's coordinates
    X = ds.x_train[:, 0] * 1.75 + 0.5
    Y = ds.x_train[:, 1] * 1.75 + 0.25
    upper, lower = ds.y_train == 0, ds.y_train == 1
    assert np.allclose(X[upper] ** 2 + Y[upper] ** 2, 1.0)  # (cos t, sin t)
    assert np.allclose((X[lower] - 1) ** 2 + (Y[lower] - 0.5) ** 2, 1.0)  # (1-cos t, .5-sin t)
    assert (Y[upper] >= -1e-12).all() and (Y[lower] <= 0.5 + 1e-12).all()
    noisy = load_dataset("two_moons", {"seed": 3})
    assert noisy.x_train[noisy.y_train == 0, 1].mean() > noisy.x_train[noisy.y_train == 1, 1].mean()


def test_blobs5_are_five_tight_separated_clusters():
    ds = load_dataset("blobs5", {"seed": 6, "n_train": 1000})
    counts = np.bincount(ds.y_train, minlength=5)
    assert counts.tolist() == [200] * 5
    means = np.array([ds.x_train[ds.y_train == k].mean(axis=0) for k in range(5)])
    spreads = [ds.x_train[ds.y_train == k].std(axis=0).mean() for k in range(5)]
    assert all(0.08 < s < 0.16 for s in spreads)  # cluster_std 0.12
    dists = np.hypot(*(means[:, None, :] - means[None, :, :]).transpose(2, 0, 1))
    assert dists[~np.eye(5, dtype=bool)].min() > 0.3


def test_too_few_points_to_hold_both_classes():
    with pytest.raises(DataError) as err:
        load_dataset("and", {"n_train": 1})
    assert "n_train" in str(err.value) and "class" in str(err.value)


@pytest.mark.parametrize(
    "options, option, bad",
    [
        ({"n_train": 0}, "n_train", "0"),
        ({"n_test": 2.5}, "n_test", "2.5"),
        ({"seed": -1}, "seed", "-1"),
        ({"seed": True}, "seed", "True"),
        ({"noise": "lots"}, "noise", "lots"),
    ],
)
def test_bad_option_values(options, option, bad):
    with pytest.raises(SpecError) as err:
        load_dataset("two_moons", options, path="$.dataset")
    msg = str(err.value)
    assert f"$.dataset.options.{option}" in msg and bad in msg and "two_moons" in msg


# ---------------------------------------------------------------------------
# registry front door


def test_unknown_option_lists_valid_options():
    with pytest.raises(SpecError) as err:
        load_dataset("xor", {"n_trian": 10}, path="$.dataset")
    msg = str(err.value)
    assert "'n_trian'" in msg and "$.dataset.options.n_trian" in msg
    for valid in ("n_test", "n_train", "seed"):
        assert valid in msg


def test_unknown_dataset_lists_names():
    with pytest.raises(SpecError) as err:
        load_dataset("mnits", path="$.dataset")
    msg = str(err.value)
    assert "'mnits'" in msg and "$.dataset.name" in msg and "mnist" in msg and "xor" in msg


def test_options_must_be_a_mapping():
    with pytest.raises(SpecError) as err:
        load_dataset("xor", [("seed", 1)])
    assert "options" in str(err.value)


def test_dataset_options_lists_defaults():
    assert dataset_options("xor") == {"seed": 0, "n_train": 1024, "n_test": 1024}
    assert dataset_options("center_circle")["radius"] == pytest.approx(0.7978845608)
    opts = dataset_options("digits")
    assert opts == {"classes": None, "test_fraction": 0.3, "split_seed": 0, "scale": "unit"}
    assert dataset_options("emnist")["split"] == "letters"


def test_dataset_rejects_inconsistent_arrays():
    ok = dict(name="t", x_train=np.zeros((3, 2)), y_train=np.array([0, 1, 0]),
              x_test=np.zeros((2, 2)), y_test=np.array([1, 0]), n_classes=2)
    assert Dataset(**ok).n_features == 2
    for change, word in (
        ({"x_test": np.zeros((2, 3))}, "features"),
        ({"y_train": np.array([0, 1])}, "labels"),
        ({"y_test": np.array([0, 2])}, "label 2"),
        ({"x_train": np.array([[0.0, np.nan]] * 3)}, "NaN"),
        ({"y_train": np.array([0.0, 1.0, 0.0])}, "integer"),
    ):
        with pytest.raises(DataError) as err:
            Dataset(**{**ok, **change})
        assert word in str(err.value) and "'t'" in str(err.value)


# ---------------------------------------------------------------------------
# sklearn digits


@pytest.fixture(scope="module")
def sk_digits():
    from sklearn.datasets import load_digits

    b = load_digits()
    return b.data.astype(int), b.target.astype(int)


def test_digits_default_split(sk_digits):
    data, target = sk_digits
    ds = load_dataset("digits")
    assert ds.n_classes == 10 and ds.n_features == 64
    # stratified: round(0.3 * count) test images per digit
    expected_test = sum(int(round(0.3 * c)) for c in np.bincount(target))
    assert ds.n_test == expected_test
    assert ds.n_train + ds.n_test == len(target)
    assert ds.x_train.min() >= 0 and ds.x_train.max() <= 1
    assert np.allclose(ds.x_train * 16, np.round(ds.x_train * 16))
    for k in range(10):
        n_k = (target == k).sum()
        assert (ds.y_test == k).sum() == int(round(0.3 * n_k))
    tr, te = ds.meta["train_index"], ds.meta["test_index"]
    assert not set(tr) & set(te) and len(set(tr) | set(te)) == len(target)
    assert np.array_equal(ds.x_test * 16, data[te]) and np.array_equal(ds.y_test, target[te])


def test_digits_split_is_fixed_unless_asked():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    c = load_dataset("digits", {"split_seed": 1})
    assert a.meta["test_index"] != c.meta["test_index"]


def test_digits_subset_remaps_labels(sk_digits):
    data, target = sk_digits
    ds = load_dataset("digits", {"classes": [9, 5, 6, 7, 8]})
    assert ds.n_classes == 5 and ds.meta["classes"] == [5, 6, 7, 8, 9]
    assert set(ds.y_train.tolist()) == {0, 1, 2, 3, 4}
    originals = {}
    for row, t in zip(data, target):
        originals.setdefault(row.tobytes(), set()).add(int(t))
    for x, y in zip(ds.x_train * 16, ds.y_train):
        assert (5 + int(y)) in originals[np.round(x).astype(int).tobytes()]
    n_expected = int(np.isin(target, [5, 6, 7, 8, 9]).sum())
    assert ds.n_train + ds.n_test == n_expected

    pair = load_dataset("digits", {"classes": [7, 3]})
    idx = np.array(pair.meta["train_index"])
    assert np.array_equal(target[idx], np.where(pair.y_train == 0, 3, 7))


def test_digits_halves_share_the_full_split():
    full = load_dataset("digits")
    low = load_dataset("digits_0_4")
    explicit = load_dataset("digits", {"classes": [0, 1, 2, 3, 4]})
    assert low.name == "digits_0_4" and low.n_classes == 5
    assert np.array_equal(low.x_train, explicit.x_train)
    assert np.array_equal(low.y_test, explicit.y_test)
    assert set(low.meta["test_index"]) <= set(full.meta["test_index"])
    high = load_dataset("digits_5_9")
    assert high.meta["classes"] == [5, 6, 7, 8, 9]
    assert not set(high.meta["train_index"]) & set(low.meta["train_index"])


def test_digits_standard_scale():
    ds = load_dataset("digits", {"scale": "standard"})
    std = ds.x_train.std(axis=0)
    varying = std > 0
    assert np.allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-9)
    assert np.allclose(std[varying], 1.0)
    assert varying.sum() < 64  # some corner pixels are always blank in train


@pytest.mark.parametrize(
    "options, words",
    [
        ({"classes": [3, 11]}, ["classes", "11", "0..9"]),
        ({"classes": [1, 1, 2]}, ["classes", "more than once"]),
        ({"classes": [2]}, ["classes", "at least two"]),
        ({"classes": "0-4"}, ["classes", "'0-4'"]),
        ({"scale": "minmax"}, ["scale", "'minmax'", "standard", "unit"]),
        ({"test_fraction": 1.0}, ["test_fraction", "1.0"]),
    ],
)
def test_digits_bad_options(options, words):
    with pytest.raises(SpecError) as err:
        load_dataset("digits", options)
    for w in words:
        assert w in str(err.value)


# ---------------------------------------------------------------------------
# IDX files (written here by hand, following the format description)

_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def idx_bytes(arr: np.ndarray, kind: str) -> bytes:
    header = struct.pack(">BBBB", 0, 0, _CODES[kind], arr.ndim)
    header += b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + np.ascontiguousarray(arr, dtype=">" + kind).tobytes()


def write(path: Path, payload: bytes) -> Path:
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "kind, values",
    [
        ("u1", np.arange(2 * 3 * 4).reshape(2, 3, 4) * 10),
        ("i1", np.array([[-128, -1], [0, 127]])),
        ("i2", np.array([-30000, 2, 30000])),
        ("i4", np.array([[-(2**31)], [2**31 - 1]])),
        ("f4", np.array([1.5, -0.25, 3e38])),
        ("f8", np.array([[math.pi, -1e300]])),
    ],
)
def test_read_idx_round_trip(tmp_path, kind, values, suffix):
    p = write(tmp_path / f"a-{kind}{suffix}", idx_bytes(values, kind))
    got = read_idx(p)
    assert got.shape == values.shape
    assert got.dtype == np.dtype(kind)
    assert np.array_equal(got, values.astype(kind))
    got[...] = 0  # a writable copy


def test_read_idx_mnist_like_header_fields(tmp_path):
    # the classic MNIST label header: magic 0x00000801, then N
    p = write(tmp_path / "labels", bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 0, 9]))
    assert read_idx(p).tolist() == [7, 0, 9]


@pytest.mark.parametrize(
    "payload, word",
    [
        (bytes([0, 0, 8]), "truncated"),
        (bytes([0, 0, 8, 3, 0, 0, 0, 2]), "truncated"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2, 3]), "truncated"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 2, 1, 2, 3]), "trailing"),
        (bytes([8, 3, 0, 0, 0, 0, 0, 1, 5]), "magic number 0x08030000"),
        (bytes([0, 0, 7, 1, 0, 0, 0, 1, 5]), "0x07"),
        (bytes([0, 0, 8, 0]), "0 dimensions"),
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path, payload, word):
    p = write(tmp_path / "broken-idx3-ubyte", payload)
    with pytest.raises(DataError) as err:
        read_idx(p)
    assert word in str(err.value) and str(p) in str(err.value)


def test_read_idx_broken_gzip_and_missing(tmp_path):
    good = gzip.compress(idx_bytes(np.zeros((5, 5), np.uint8), "u1"))
    p = write(tmp_path / "cut.gz", b"")
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError) as err:
        read_idx(p)
    assert "gzip" in str(err.value) and str(p) in str(err.value)
    with pytest.raises(DataError) as err:
        read_idx(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err.value)


# ---------------------------------------------------------------------------
# MNIST-family loaders on tiny synthetic files

MNIST_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TRAIN_LABELS = [3, 1, 4, 1, 5, 9, 2, 6]
TEST_LABELS = [0, 1, 2, 3]


def ramp(k: int, side: int = 6) -> np.ndarray:
    """Image k: pixel (i, j) = side*i + j + k (not symmetric, so transposes show)."""
    i, j = np.mgrid[0:side, 0:side]
    return (side * i + j + k).astype(np.uint8)


def write_set(directory: Path, names, train_imgs, train_labels, test_imgs, test_labels,
              gz=(False, True, True, False)) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    arrays = [(np.asarray(train_imgs, np.uint8), "u1"), (np.asarray(train_labels, np.uint8), "u1"),
              (np.asarray(test_imgs, np.uint8), "u1"), (np.asarray(test_labels, np.uint8), "u1")]
    for name, (arr, kind), z in zip(names, arrays, gz):
        write(directory / (name + (".gz" if z else "")), idx_bytes(arr, kind))
    return directory


@pytest.fixture
def mnist_dir(tmp_path):
    return write_set(tmp_path / "m", MNIST_NAMES, [ramp(k) for k in range(8)], TRAIN_LABELS,
                     [ramp(100 + k) for k in range(4)], TEST_LABELS)


def test_mnist_reads_plain_and_gz_files(mnist_dir):
    ds = load_dataset("mnist", {"data_dir": str(mnist_dir)})
    assert ds.n_classes == 10 and ds.n_train == 8 and ds.n_test == 4 and ds.n_features == 36
    assert ds.y_train.tolist() == TRAIN_LABELS and ds.y_test.tolist() == TEST_LABELS
    assert np.allclose(ds.x_train[2], ramp(2).ravel() / 255.0)
    assert np.allclose(ds.x_test[3], ramp(103).ravel() / 255.0)
    assert ds.meta["image_shape"] == [6, 6]


def test_mnist_crop_and_block_average(mnist_dir):
    ds = load_dataset("mnist", {"data_dir": str(mnist_dir), "crop": 4, "size": 2})
    # crop keeps rows/cols 1..4 of 6*i + j; 2x2 block means of that window:
    # (7+8+13+14)/4, (9+10+15+16)/4, (19+20+25+26)/4, (21+22+27+28)/4
    assert np.allclose(ds.x_train[0], np.array([10.5, 12.5, 22.5, 24.5]) / 255.0)
    assert ds.meta["image_shape"] == [2, 2]
    odd = load_dataset("mnist", {"data_dir": str(mnist_dir), "crop": 5})
    # margin 1 is odd: the window starts at row/col 0, dropping the last row/col
    assert np.allclose(odd.x_train[0], ramp(0)[:5, :5].ravel() / 255.0)


def test_mnist_crop_then_bilinear(mnist_dir):
    ds = load_dataset("mnist", {"data_dir": str(mnist_dir), "crop": 3, "size": 2})
    # window rows/cols 1..3: value 6a + b + 7 at local (a, b); samples at a, b in {0.25, 1.75}
    assert np.allclose(ds.x_train[0], np.array([8.75, 10.25, 17.75, 19.25]) / 255.0)


def test_resize_bilinear_cross_term():
    a, b = np.mgrid[0:3, 0:3]
    img = (20 * a * b + 30 * a + 3 * b).astype(float)[None]
    out = resize_images(img, 2)
    # bilinear interpolation is exact on 20ab + 30a + 3b at (0.25|1.75, 0.25|1.75)
    assert np.allclose(out[0], [[9.5, 21.5], [62.0, 119.0]])


def test_mnist_paper_geometry(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    d = write_set(tmp_path / "p", MNIST_NAMES, imgs, [0, 1, 2], imgs, [3, 4, 5])
    ds = load_dataset("mnist", {"data_dir": str(d), "crop": 20, "size": 10})
    assert ds.n_features == 100
    assert ds.x_train[1, 0] == pytest.approx(imgs[1, 4:6, 4:6].mean() / 255.0)
    assert ds.x_train[1, 99] == pytest.approx(imgs[1, 22:24, 22:24].mean() / 255.0)
    half = load_dataset("mnist", {"data_dir": str(d), "size": 14})
    assert half.x_test[2, 15] == pytest.approx(imgs[2, 2:4, 2:4].mean() / 255.0)


def test_mnist_class_subset_and_limits(mnist_dir):
    ds = load_dataset("mnist", {"data_dir": str(mnist_dir), "classes": [5, 1]})
    # train labels 3,1,4,1,5,9,2,6 -> images 1, 3 (digit 1) and 4 (digit 5)
    assert ds.n_classes == 2 and ds.meta["classes"] == [1, 5]
    assert ds.y_train.tolist() == [0, 0, 1]
    assert np.allclose(ds.x_train * 255, np.stack([ramp(1), ramp(3), ramp(4)]).reshape(3, -1))
    assert ds.y_test.tolist() == [0]
    lim = load_dataset("mnist", {"data_dir": str(mnist_dir), "classes": [1, 5],
                                 "limit_train": 2, "limit_test": 3})
    assert np.allclose(lim.x_train * 255, np.stack([ramp(1), ramp(3)]).reshape(2, -1))
    half = load_dataset("mnist_0_4", {"data_dir": str(mnist_dir)})
    assert half.y_train.tolist() == [3, 1, 4, 1, 2]


def test_mnist_family_from_env_dir(tmp_path, monkeypatch):
    root = tmp_path / "root"
    write_set(root / "mnist", MNIST_NAMES, [ramp(0), ramp(1)], [0, 1], [ramp(2), ramp(3)], [1, 0])
    write_set(root / "fashion_mnist", MNIST_NAMES, [ramp(5), ramp(6)], [8, 9],
              [ramp(7), ramp(8)], [9, 8])
    monkeypatch.setenv("BLURSIM_DATA_DIR", str(root))
    assert load_dataset("mnist").y_test.tolist() == [1, 0]
    fm = load_dataset("fashion_mnist", {"classes": [8, 9]})
    assert fm.y_train.tolist() == [0, 1] and fm.meta["class_names"] == ["Bag", "Ankle boot"]
    assert np.allclose(fm.x_train[0] * 255, ramp(5).ravel())


def test_mnist_missing_files_message(tmp_path, monkeypatch):
    monkeypatch.delenv("BLURSIM_DATA_DIR", raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as err:
        load_dataset("mnist", {"data_dir": str(empty)})
    msg = str(err.value)
    for name in MNIST_NAMES:
        assert name in msg
    assert str(empty) in msg and "data_dir" in msg and "BLURSIM_DATA_DIR" in msg
    with pytest.raises(DataError) as err:
        load_dataset("fashion_mnist")
    msg = str(err.value)
    assert "data_dir" in msg and "BLURSIM_DATA_DIR" in msg and "fashion_mnist" in msg


def test_mnist_one_missing_file_is_named(mnist_dir):
    (mnist_dir / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as err:
        load_dataset("mnist", {"data_dir": str(mnist_dir)})
    msg = str(err.value)
    assert "t10k-labels-idx1-ubyte[.gz] not found" in msg and str(mnist_dir) in msg


def test_mnist_corrupt_header_names_file(mnist_dir):
    bad = mnist_dir / "train-images-idx3-ubyte"
    bad.write_bytes(bytes([0, 0, 0x42, 3]) + bytes(12))
    with pytest.raises(DataError) as err:
        load_dataset("mnist", {"data_dir": str(mnist_dir)})
    assert str(bad) in str(err.value) and "0x42" in str(err.value)


def test_mnist_mismatched_files(mnist_dir):
    write(mnist_dir / "t10k-labels-idx1-ubyte", idx_bytes(np.array([1, 2], np.uint8), "u1"))
    with pytest.raises(DataError) as err:
        load_dataset("mnist", {"data_dir": str(mnist_dir)})
    assert "4 images" in str(err.value) and "2 labels" in str(err.value)


def test_mnist_crop_larger_than_image(mnist_dir):
    with pytest.raises(SpecError) as err:
        load_dataset("mnist", {"data_dir": str(mnist_dir), "crop": 7}, path="$.dataset")
    assert "$.dataset.options.crop" in str(err.value) and "6x6" in str(err.value)


def emnist_names(split):
    return tuple(f"emnist-{split}-{p}-{k}" for p in ("train", "test")
                 for k in ("images-idx3-ubyte", "labels-idx1-ubyte"))


def test_emnist_letters_transposed_and_shifted(tmp_path):
    imgs = [ramp(k) for k in range(4)]
    stored = [im.T for im in imgs]  # EMNIST stores each image transposed
    d = write_set(tmp_path / "e", emnist_names("letters"), stored, [1, 26, 3, 2],
                  stored[:2], [2, 1], gz=(True, True, True, True))
    ds = load_dataset("emnist", {"data_dir": str(d)})
    assert ds.n_classes == 26
    assert ds.y_train.tolist() == [0, 25, 2, 1] and ds.y_test.tolist() == [1, 0]
    assert np.allclose(ds.x_train[1] * 255, ramp(1).ravel())
    sub = load_dataset("emnist", {"data_dir": str(d), "classes": list(range(10))})
    assert sub.n_classes == 10 and sub.y_train.tolist() == [0, 2, 1]


def test_emnist_bad_split_and_bad_labels(tmp_path):
    with pytest.raises(SpecError) as err:
        load_dataset("emnist", {"split": "letter"})
    for s in ("balanced", "byclass", "bymerge", "digits", "letters", "mnist"):
        assert s in str(err.value)
    d = write_set(tmp_path / "b", emnist_names("balanced"), [ramp(0), ramp(1)], [3, 50],
                  [ramp(2)], [4])
    with pytest.raises(DataError) as err:
        load_dataset("emnist", {"split": "balanced", "data_dir": str(d)})
    msg = str(err.value)
    assert "emnist-balanced-train-labels-idx1-ubyte" in msg and "0..46" in msg
