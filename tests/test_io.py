"""blursim.io: strict-JSON copies and atomic writes."""

import json
from pathlib import Path

import numpy as np
import pytest

from blursim.io import atomic_write_json, json_ready


def test_json_ready_converts_numpy_and_drops_non_finite():
    obj = {1: np.float32(0.5), "a": np.array([1.0, np.nan, np.inf]), "b": (np.int64(3), np.bool_(True)),
           "p": Path("x/y"), "n": [float("-inf"), None, "s"]}
    assert json_ready(obj) == {"1": 0.5, "a": [1.0, None, None], "b": [3, True], "p": "x/y",
                               "n": [None, None, "s"]}
    text = json.dumps(json_ready(obj), allow_nan=False)  # strict JSON accepts it
    assert json.loads(text)["b"] == [3, True]


def test_atomic_write_json_refuses_nan_and_leaves_no_file(tmp_path):
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "x.json", {"v": float("nan")})
    assert list(tmp_path.iterdir()) == []
    atomic_write_json(tmp_path / "x.json", json_ready({"v": float("nan")}))
    assert json.loads((tmp_path / "x.json").read_text()) == {"v": None}
