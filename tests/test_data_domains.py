"""Datasets that are not the meta-training images (issue 15): MNIST-1D, the digits at other
resolutions, and the five-class blobs on a five-output head (Fig. 3 "blob5x1")."""

import random
import sys
from pathlib import Path

import numpy as np
import pytest

from blursim.cli.main import main
from blursim.data import load_dataset
from blursim.errors import DataError, SpecError

ROOT = Path(__file__).resolve().parent.parent

mnist1d_package = pytest.importorskip("mnist1d")


# ------------------------------------------------------------------- MNIST-1D


def test_mnist1d_is_a_balanced_40_feature_ten_class_set():
    ds = load_dataset("mnist1d", {"n_samples": 500})
    assert ds.n_features == 40 and ds.n_classes == 10
    assert (ds.n_train, ds.n_test) == (400, 100)  # the first 80% of the shuffled signals
    counts = np.bincount(np.concatenate([ds.y_train, ds.y_test]), minlength=10)
    assert counts.tolist() == [50] * 10
    x = np.concatenate([ds.x_train, ds.x_test])
    assert abs(x.mean()) < 1e-9 and abs(x.std() - 1.0) < 1e-9  # centred, unit std over the set
    assert "mnist1d" in ds.meta["source"] and ds.meta["seed"] == 42


def test_mnist1d_defaults_are_the_generators_published_configuration():
    from mnist1d.data import get_dataset_args

    ref = get_dataset_args(as_dict=True)
    from blursim.data import dataset_options

    opts = dataset_options("mnist1d")
    assert (opts["seed"], opts["n_samples"], opts["train_fraction"], opts["shuffle_seq"]) == (
        ref["seed"], ref["num_samples"], ref["train_split"], ref["shuffle_seq"])
    assert (ref["seed"], ref["num_samples"], ref["final_seq_length"]) == (42, 5000, 40)


def test_mnist1d_is_seeded_and_leaves_the_global_rngs_alone():
    np.random.seed(123)
    random.seed(7)
    np_before, py_before = np.random.get_state(), random.getstate()
    a = load_dataset("mnist1d", {"n_samples": 200, "seed": 3})
    np_after, py_after = np.random.get_state(), random.getstate()
    assert np.array_equal(np_before[1], np_after[1]) and np_before[2] == np_after[2]
    assert py_before == py_after
    b = load_dataset("mnist1d", {"n_samples": 200, "seed": 3})
    c = load_dataset("mnist1d", {"n_samples": 200, "seed": 4})
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)


def test_mnist1d_is_a_hard_benchmark_for_a_linear_model():
    """MNIST-1D's point (Greydanus 2020): a linear classifier reaches about a third, far
    from what it reaches on the 8x8 digit images (over 0.9)."""
    from sklearn.linear_model import LogisticRegression

    ds = load_dataset("mnist1d", {"n_samples": 2000})
    clf = LogisticRegression(max_iter=2000).fit(ds.x_train, ds.y_train)
    acc = clf.score(ds.x_test, ds.y_test)
    assert 0.2 < acc < 0.5, acc
    digits = load_dataset("digits")
    assert LogisticRegression(max_iter=2000).fit(digits.x_train, digits.y_train).score(
        digits.x_test, digits.y_test) > 0.9


def test_mnist1d_shuffle_seq_permutes_positions_only():
    plain = load_dataset("mnist1d", {"n_samples": 200})
    shuffled = load_dataset("mnist1d", {"n_samples": 200, "shuffle_seq": True})
    assert np.array_equal(plain.y_train, shuffled.y_train)
    cols = {plain.x_train[:, j].tobytes(): j for j in range(40)}
    perm = [cols.get(shuffled.x_train[:, j].tobytes()) for j in range(40)]
    assert None not in perm and sorted(perm) == list(range(40)) and perm != list(range(40))


def test_mnist1d_class_subset_and_bad_options():
    ds = load_dataset("mnist1d", {"n_samples": 200, "classes": [7, 2]})
    full = load_dataset("mnist1d", {"n_samples": 200})
    keep = np.isin(full.y_train, [2, 7])
    assert np.array_equal(ds.x_train, full.x_train[keep])
    assert np.array_equal(ds.y_train, np.where(full.y_train[keep] == 2, 0, 1))
    for bad, where in (({"n_samples": 205}, "n_samples"), ({"seed": -1}, "seed"),
                       ({"classes": [1, 10]}, "classes"), ({"train_fraction": 1.0}, "train_fraction")):
        with pytest.raises(SpecError) as err:
            load_dataset("mnist1d", bad, path="$.task")
        assert f"$.task.options.{where}" in str(err.value)


def test_mnist1d_without_the_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)  # import fails
    with pytest.raises(DataError) as err:
        load_dataset("mnist1d", {"n_samples": 30, "seed": 99})  # not cached
    assert ".[datasets]" in str(err.value) and "pip install" in str(err.value)


# ---------------------------------------------------- digits at other sizes


@pytest.fixture(scope="module")
def raw_digits():
    from sklearn.datasets import load_digits

    return load_digits().images.astype(np.float64)  # (1797, 8, 8), values 0..16


def test_digits_resized_to_8_is_digits():
    a, b = load_dataset("digits_resized", {"size": 8}), load_dataset("digits")
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)


def test_digits_resized_to_4_averages_2x2_blocks(raw_digits):
    ds = load_dataset("digits_resized", {"size": 4})
    assert ds.n_features == 16 and ds.meta["image_shape"] == [4, 4]
    assert ds.meta["train_index"] == load_dataset("digits").meta["train_index"]
    for row, i in ((0, ds.meta["train_index"][0]), (5, ds.meta["train_index"][5])):
        img = raw_digits[i]
        for r in range(4):
            for c in range(4):
                block = img[2 * r:2 * r + 2, 2 * c:2 * c + 2]
                assert ds.x_train[row, 4 * r + c] == pytest.approx(block.mean() / 16.0, abs=1e-15)


def test_digits_resized_to_16_interpolates_bilinearly(raw_digits):
    """Output pixel i of 16 samples source coordinate (i + 0.5) / 2 - 0.5, clamped."""
    ds = load_dataset("digits_resized", {"size": 16})
    assert ds.n_features == 256
    img = raw_digits[ds.meta["test_index"][3]] / 16.0
    out = ds.x_test[3].reshape(16, 16)
    assert out[0, 0] == pytest.approx(img[0, 0])  # coordinate -0.25 clamps to 0
    assert out[15, 15] == pytest.approx(img[7, 7])  # 7.25 clamps to 7
    # out[2, 5]: rows at 0.75 (0.25 of row 0, 0.75 of row 1), columns at 2.25 (0.75 of 2, 0.25 of 3)
    want = sum(wr * wc * img[r, c] for r, wr in ((0, 0.25), (1, 0.75)) for c, wc in ((2, 0.75), (3, 0.25)))
    assert out[2, 5] == pytest.approx(want, abs=1e-15)


def test_digits_resized_rejects_sizes_out_of_range():
    with pytest.raises(SpecError) as err:
        load_dataset("digits_resized", {"size": 1})
    assert "options.size" in str(err.value)


# ------------------------------------------------------------- blob5x1


def test_blobs5_runs_on_the_five_output_toy_network(capsys):
    rc = main(["run", str(ROOT / "specs" / "toy_blur_5out.json"), "--task", "blobs5",
               "--task-opt", "n_train=200", "--task-opt", "n_test=100", "--preset", "random",
               "--steps", "2", "--json"])
    assert rc == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "blobs5" and len(out["accuracy_mean"]) == 3
    rc = main(["run", str(ROOT / "specs" / "toy_blur.json"), "--task", "blobs5", "--preset", "random",
               "--steps", "1"])
    assert rc == 2 and "5 classes" in capsys.readouterr().err


# --------------------------------------------- tabular sets without images


@pytest.mark.parametrize("name,loader,shape,counts", [
    ("breast_cancer", "load_breast_cancer", (569, 30), [212, 357]),
    ("wine", "load_wine", (178, 13), [59, 71, 48]),
])
def test_tabular_sets_are_sklearns_rows_split_stratified_and_scaled_by_train_only(name, loader, shape, counts):
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loader)()
    ds = load_dataset(name)
    assert bunch.data.shape == shape and ds.n_features == shape[1] and ds.n_classes == len(counts)
    tr, te = np.asarray(ds.meta["train_index"]), np.asarray(ds.meta["test_index"])
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(shape[0]))  # a partition of the rows
    for c, n in enumerate(counts):  # 30% of each class in the test split
        assert (bunch.target[te] == c).sum() == round(0.3 * n)
    assert np.array_equal(ds.y_train, bunch.target[tr]) and np.array_equal(ds.y_test, bunch.target[te])
    # z-scores with the train split's own mean and std, applied to the test rows too
    raw_tr, raw_te = bunch.data[tr], bunch.data[te]
    mu, sd = raw_tr.mean(axis=0), raw_tr.std(axis=0)
    assert np.allclose(ds.x_train, (raw_tr - mu) / sd) and np.allclose(ds.x_test, (raw_te - mu) / sd)
    assert np.allclose(ds.x_train.mean(axis=0), 0, atol=1e-12) and np.allclose(ds.x_train.std(axis=0), 1)
    assert not np.allclose(ds.x_test.mean(axis=0), 0, atol=1e-6)  # the test split did not set the scale
    unit = load_dataset(name, {"scale": "unit"})
    assert unit.x_train.min(axis=0).tolist() == [0.0] * shape[1]
    assert np.allclose(unit.x_train.max(axis=0), 1.0)


def test_tabular_split_seed_and_bad_options():
    a, b = load_dataset("wine", {"split_seed": 1}), load_dataset("wine")
    assert a.meta["test_index"] != b.meta["test_index"]
    with pytest.raises(SpecError) as err:
        load_dataset("breast_cancer", {"scale": "minmax"}, path="$.task")
    assert "$.task.options.scale" in str(err.value)


def test_a_constant_feature_is_only_shifted():
    from blursim.data.tabular import scale_by_train

    tr = np.array([[1.0, 5.0], [3.0, 5.0]])
    te = np.array([[2.0, 6.0]])
    for scale, want in (("standard", [[0.0, 1.0]]), ("unit", [[0.5, 1.0]])):
        _, out = scale_by_train(tr, te, scale)
        assert out.tolist() == want
