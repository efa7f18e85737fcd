"""The ``file`` dataset: NPZ / NPY / CSV with labels or target vectors, from Python, from an
experiment document and from the command line (issue 14 item 2)."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from test_meta_train import TINY_NETWORK, tiny_experiment

from blursim.cli.main import main
from blursim.data import load_dataset
from blursim.errors import DataError, SpecError
from blursim.meta import prepare_experiment

ROOT = Path(__file__).resolve().parent.parent


def blobs(rng, n=60, d=2):
    """Three labelled clusters (labels 0, 1, 2 in turn)."""
    y = np.arange(n) % 3
    centres = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.5]])[:, :d]
    return centres[y] + 0.1 * rng.standard_normal((n, d)), y


# --------------------------------------------------------------------- formats


def test_npz_with_an_explicit_test_file(tmp_path):
    rng = np.random.default_rng(0)
    x, y = blobs(rng)
    xt, yt = blobs(rng, 12)
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "test.npz", x=xt, y=yt)
    ds = load_dataset("file", {"path": str(tmp_path / "train.npz"), "test_path": str(tmp_path / "test.npz")})
    assert ds.targets == "labels" and ds.n_classes == 3 and ds.n_features == 2
    assert np.array_equal(ds.x_train, x) and np.array_equal(ds.y_train, y)
    assert np.array_equal(ds.x_test, xt) and np.array_equal(ds.y_test, yt)
    assert set(ds.meta["fingerprint"]) == {"path", "test_path"}


def test_csv_with_header_and_a_seeded_stratified_split(tmp_path):
    rng = np.random.default_rng(1)
    x, y = blobs(rng, 30)
    lines = ["a,b,label"] + [f"{float(r[0])!r},{float(r[1])!r},{int(c)}" for r, c in zip(x, y)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    opts = {"path": str(tmp_path / "d.csv"), "test_fraction": 0.2, "split_seed": 4}
    ds = load_dataset("file", opts)
    assert (ds.n_train, ds.n_test) == (24, 6)
    assert np.bincount(ds.y_test).tolist() == [2, 2, 2]  # round(0.2 * 10) per class
    # every row is one of the file's rows, with its own label
    rows = {tuple(r): int(c) for r, c in zip(x, y)}
    for xs, ys in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert all(rows[tuple(r)] == int(c) for r, c in zip(xs, ys))
    again = load_dataset("file", opts)
    other = load_dataset("file", {**opts, "split_seed": 5})
    assert np.array_equal(again.x_test, ds.x_test) and not np.array_equal(other.x_test, ds.x_test)


def test_npy_with_target_vector_columns(tmp_path):
    rng = np.random.default_rng(2)
    table = rng.normal(size=(20, 5))
    np.save(tmp_path / "r.npy", table)
    ds = load_dataset("file", {"path": str(tmp_path / "r.npy"), "targets": "vectors",
                               "target_columns": 2, "test_fraction": 0.25})
    assert ds.targets == "vectors" and ds.n_classes is None and ds.n_outputs == 2
    assert (ds.n_train, ds.n_test, ds.n_features) == (15, 5, 3)
    both = np.vstack([np.hstack([ds.x_train, ds.y_train]), np.hstack([ds.x_test, ds.y_test])])
    assert sorted(map(tuple, both)) == sorted(map(tuple, table))


def test_npz_vectors_one_per_row_and_n_classes(tmp_path):
    np.savez(tmp_path / "v.npz", x=np.eye(4), y=np.arange(4.0))
    ds = load_dataset("file", {"path": str(tmp_path / "v.npz"), "targets": "vectors"})
    assert ds.n_outputs == 1 and ds.y_train.shape[1] == 1
    np.savez(tmp_path / "l.npz", inputs=np.eye(4), labels=np.array([0, 1, 0, 1]))
    ds = load_dataset("file", {"path": str(tmp_path / "l.npz"), "x_key": "inputs", "y_key": "labels",
                               "n_classes": 5, "test_fraction": 0.5})
    assert ds.n_classes == 5


# ---------------------------------------------------------------------- errors


def _bad(tmp_path, name, write, opts=None, error=DataError):
    p = tmp_path / name
    write(p)
    with pytest.raises(error) as err:
        load_dataset("file", {"path": str(p), **(opts or {})}, path="$.task")
    return str(err.value)


@pytest.mark.parametrize("name, write, opts, words", [
    ("x.npz", lambda p: np.savez(p, x=np.zeros(4), y=np.zeros(4, int)), {}, ["2-D", "(4,)"]),
    ("x.npz", lambda p: np.savez(p, x=np.array([[0.0], [np.nan]]), y=np.array([0, 1])), {}, ["1 NaN"]),
    ("x.npz", lambda p: np.savez(p, x=np.zeros((2, 1)), y=np.array([0.0, 2.5])), {}, ["2.5", "whole number"]),
    ("x.npz", lambda p: np.savez(p, x=np.zeros((2, 1)), y=np.array([0, -1])), {}, ["-1", "negative"]),
    ("x.npz", lambda p: np.savez(p, x=np.zeros((3, 1)), y=np.array([0, 1])), {}, ["3 input rows", "2 targets"]),
    ("x.npz", lambda p: np.savez(p, inputs=np.zeros((2, 1))), {}, ["no array 'x'", "'inputs'", "x_key"]),
    ("x.npz", lambda p: np.savez(p, x=np.zeros((2, 1)), y=np.array([0, 3])), {"n_classes": 2},
     ["up to 3", "n_classes is 2"]),
    ("x.npz", lambda p: p.write_bytes(b"not a zip"), {}, ["cannot be read"]),
    ("x.npy", lambda p: np.save(p, np.zeros(5)), {}, ["shape (5,)", "target column"]),
    ("x.csv", lambda p: p.write_text("1,2,0\n3,4\n"), {}, ["line 2", "2 values"]),
    ("x.csv", lambda p: p.write_text("1,2,0\n3,four,1\n"), {}, ["'four'", "not a number"]),
    ("x.csv", lambda p: p.write_text("a,b\n"), {}, ["no data"]),
    ("x.csv", lambda p: p.write_text("1,nan,0\n3,4,1\n"), {}, ["NaN"]),
])
def test_bad_files_are_clear_errors_naming_the_file(tmp_path, name, write, opts, words):
    msg = _bad(tmp_path, name, write, opts)
    assert str(tmp_path / name) in msg or "'file'" in msg, msg
    assert all(w in msg for w in words), msg


def test_missing_file_and_bad_suffix_point_at_the_option(tmp_path):
    for opts, where, word in (({"path": str(tmp_path / "none.npz")}, "path", "does not exist"),
                              ({"path": str(tmp_path / "d.txt")}, "path", ".npz, .npy, .csv"),
                              ({"path": str(tmp_path / "d.npz"), "test_path": str(tmp_path / "dir.npz")},
                               "test_path", "directory")):
        (tmp_path / "d.npz").write_bytes(b"")
        (tmp_path / "dir.npz").mkdir(exist_ok=True)
        with pytest.raises(SpecError) as err:
            load_dataset("file", opts, path="$.task")
        assert f"$.task.options.{where}" in str(err.value) and word in str(err.value)
    with pytest.raises(SpecError, match="required option 'path'"):
        load_dataset("file", {})
    with pytest.raises(SpecError, match="target_columns"):
        load_dataset("file", {"path": "d.csv", "target_columns": 2})


def test_labels_or_features_that_do_not_fit_the_network(tmp_path, capsys):
    rng = np.random.default_rng(3)
    x, y = blobs(rng)
    np.savez(tmp_path / "three.npz", x=x, y=y)  # 3 classes, 2 features
    spec = str(ROOT / "specs" / "mlp_2d.json")  # 2 inputs, 2 outputs
    assert main(["validate", spec, "--task", "file", "--task-opt", f"path={tmp_path / 'three.npz'}"]) == 2
    assert "2 neurons but task 'file' has 3 classes" in capsys.readouterr().err
    np.savez(tmp_path / "wide.npz", x=np.hstack([x, x]), y=y % 2)
    assert main(["validate", spec, "--task", "file", "--task-opt", f"path={tmp_path / 'wide.npz'}"]) == 2
    assert "4 input features" in capsys.readouterr().err
    np.savez(tmp_path / "vec.npz", x=x, y=np.zeros((len(x), 2)))
    assert main(["validate", spec, "--task", "file", "--task-opt", f"path={tmp_path / 'vec.npz'}",
                 "--task-opt", "targets=vectors"]) == 2
    assert "'error_softmax' needs class labels" in capsys.readouterr().err


# -------------------------------------------------------------- command line


def regression_file(path, n=400, seed=0):
    """y = a smooth function of x, two targets."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 2))
    y = np.stack([np.sin(2 * x[:, 0]) + 0.5 * x[:, 1], x[:, 0] * x[:, 1]], axis=1)
    np.savez(path, x=x, y=y)
    return path


def test_regression_from_the_command_line_lowers_the_mse(tmp_path, capsys):
    """Acceptance: a regression task with real-valued targets trains with the backprop genome
    (error_mse) to a lower MSE than at step 0, from the command line, on a file written here."""
    f = regression_file(tmp_path / "reg.npz")
    rc = main(["run", str(ROOT / "specs" / "regression_2d.json"), "--task", "file",
               "--task-opt", f"path={f}", "--task-opt", "targets=vectors",
               "--preset", "backprop", "--lr", "0.1", "--steps", "300", "--batch", "32",
               "--eval-every", "100", "--replicas", "2", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == [0, 100, 200, 300] and "accuracy_mean" not in out
    mse = out["mse_mean"]
    assert mse[-1] < 0.5 * mse[0], mse
    rc = main(["run", str(ROOT / "specs" / "regression_2d.json"), "--task", "file",
               "--task-opt", f"path={f}", "--task-opt", "targets=vectors",
               "--preset", "backprop", "--steps", "2"])
    text = capsys.readouterr().out
    assert rc == 0 and "mean squared error" in text and "final mse" in text


def test_binary_file_task_on_one_logistic_output(tmp_path, capsys):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 2))
    np.savez(tmp_path / "bin.npz", x=x, y=(x[:, 0] + x[:, 1] > 0).astype(int))
    spec = json.loads((ROOT / "specs" / "mlp_2d.json").read_text())
    spec["populations"][2]["size"] = 1  # one output neuron, error_softmax: logistic regression
    (tmp_path / "logistic.json").write_text(json.dumps(spec))
    rc = main(["run", str(tmp_path / "logistic.json"), "--task", "file", "--task-opt",
               f"path={tmp_path / 'bin.npz'}", "--preset", "backprop", "--lr", "0.5",
               "--steps", "60", "--eval-every", "60", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accuracy_mean"][-1] > 0.9 and out["cross_entropy_mean"][-1] < out["cross_entropy_mean"][0]


# ------------------------------------------------------------------ experiments


def _regression_experiment(data_path, metric="mse"):
    net = copy.deepcopy(TINY_NETWORK)
    net["rules"]["feedback"] = "error_mse"
    exp = tiny_experiment(network=net)
    task = {"name": "file", "options": {"path": data_path, "targets": "vectors"}}
    exp["training_tasks"] = [task]
    exp["validation_tasks"] = [dict(task, label="held_out")]
    exp["fitness"] = {"metric": metric}
    return exp


def test_experiment_paths_are_relative_to_it_and_hashed_by_content(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        (d / "data").mkdir(parents=True)
        regression_file(d / "data" / "reg.npz")
        (d / "exp.json").write_text(json.dumps(_regression_experiment("data/reg.npz"), indent=2))
    sa, sb = prepare_experiment(a / "exp.json"), prepare_experiment(b / "exp.json")
    assert sa.train_tasks[0].options["path"] == str(a / "data" / "reg.npz")
    assert sa.spec_hash == sb.spec_hash  # the same data in another place
    regression_file(b / "data" / "reg.npz", seed=1)
    assert prepare_experiment(b / "exp.json").spec_hash != sa.spec_hash  # other data


def test_experiment_file_errors_are_located(tmp_path):
    (tmp_path / "exp.json").write_text(json.dumps(_regression_experiment("data/none.npz"), indent=2))
    with pytest.raises(SpecError) as err:
        prepare_experiment(tmp_path / "exp.json")
    e = err.value
    assert e.path == "$.training_tasks[0].options.path" and ", line " in e.source and "does not exist" in e.message
    regression_file(tmp_path / "reg.npz")
    (tmp_path / "exp.json").write_text(json.dumps(_regression_experiment("reg.npz", "accuracy"), indent=2))
    with pytest.raises(SpecError) as err:
        prepare_experiment(tmp_path / "exp.json")
    assert err.value.path == "$.fitness.metric" and "target vectors" in err.value.message


def test_meta_training_on_a_regression_task_uses_minus_mse_as_fitness(tmp_path):
    regression_file(tmp_path / "reg.npz", n=120)
    exp = _regression_experiment("reg.npz")
    exp["generations"] = 2
    (tmp_path / "exp.json").write_text(json.dumps(exp, indent=2))
    rc = main(["meta-train", str(tmp_path / "exp.json"), "--out", str(tmp_path / "run"), "--quiet"])
    assert rc == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    last = records[-1]
    assert last["generation"] == 2 and last["fitness"]["best"] < 0  # minus a mean squared error
    mse = last["mean"]["train"]["file"]
    assert mse > 0 and last["mean"]["fitness"] == pytest.approx(-mse)
    assert (tmp_path / "run" / "meta_training.png").exists()
