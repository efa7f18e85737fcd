"""The rendered-font datasets (``font_letters``, ``font_digits``; blursim.data.fonts): shapes,
classes, determinism by seed, option errors, and the rendering checked against plain geometry."""

from __future__ import annotations

import numpy as np
import pytest

from blursim.data import load_dataset
from blursim.data.fonts import FONT_FILES, glyph_bank
from blursim.errors import SpecError

SMALL = {"size": 8, "n_train": 52, "n_test": 26}


@pytest.mark.parametrize("name,k,first,size", [("font_letters", 26, "A", 8), ("font_letters", 26, "A", 13),
                                              ("font_digits", 10, "0", 8), ("font_digits", 10, "0", 28)])
def test_shapes_classes_and_range(name, k, first, size):
    d = load_dataset(name, {**SMALL, "size": size})
    assert d.x_train.shape == (52, size * size) and d.x_test.shape == (26, size * size)
    assert d.n_classes == k and d.meta["class_names"][0] == first and len(d.meta["class_names"]) == k
    assert d.x_train.min() >= 0.0 and d.x_train.max() <= 1.0
    # balanced labels: n % k of every class
    assert np.bincount(d.y_train, minlength=k).max() - np.bincount(d.y_train, minlength=k).min() <= 1
    assert d.meta["image_shape"] == [size, size]


def test_deterministic_by_seed_and_splits_differ():
    a = load_dataset("font_letters", {**SMALL, "seed": 3})
    b = load_dataset("font_letters", {**SMALL, "seed": 3})
    c = load_dataset("font_letters", {**SMALL, "seed": 4})
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)
    assert not np.array_equal(a.x_train[:26], a.x_test)  # train and test draw from separate streams
    a.x_train[:] = 0  # the cache hands out copies
    assert load_dataset("font_letters", {**SMALL, "seed": 3}).x_train.max() > 0


def test_images_are_ink_on_blank_and_centred():
    d = load_dataset("font_digits", {"size": 16, "n_train": 100, "n_test": 10, "noise": 0.0,
                                     "translate": 0.0, "rotation": 0.0, "shear": 0.0, "scale": 0.0})
    img = d.x_train.reshape(-1, 16, 16)
    assert img[:, :, 0].max() < 0.05 and img[:, :, -1].max() < 0.05  # a blank border column
    mass = img.sum(axis=(0, 1)) / img.sum()
    centre = float((np.arange(16) * mass).sum())
    assert abs(centre - 7.5) < 1.0


def test_holes_are_rendered_even_odd():
    bank = glyph_bank("OI", 24)
    o = bank[0, 0]  # DejaVuSans "O": ink on the ring, none in the middle
    assert o[12, 12] < 0.05 and o[12, 3:9].max() > 0.9
    # the glyph's larger side fills 0.7 of the image: count rows that hold ink
    rows = np.flatnonzero(bank[0, 1].max(axis=1) > 0.5)
    assert abs((rows[-1] - rows[0] + 1) - 0.7 * 24) <= 2


def test_classes_subset_and_lower_case():
    d = load_dataset("font_letters", {**SMALL, "classes": [0, 25], "case": "lower"})
    assert d.n_classes == 2 and d.meta["class_names"] == ["a", "z"]
    assert set(np.unique(d.y_train)) == {0, 1}


def test_held_out_fonts_are_disjoint():
    d = load_dataset("font_digits", {**SMALL, "test_fonts": "held_out"})
    assert set(d.meta["train_fonts"]).isdisjoint(d.meta["test_fonts"])
    assert set(d.meta["train_fonts"]) | set(d.meta["test_fonts"]) == set(FONT_FILES)


@pytest.mark.parametrize("options,field", [
    ({"size": 7}, "size"), ({"size": 29}, "size"), ({"rotation": 90.0}, "rotation"),
    ({"classes": [3, 26]}, "classes"), ({"case": "title"}, "case"), ({"n_trian": 5}, "n_trian"),
    ({"noise": -0.1}, "noise"), ({"test_fonts": "new"}, "test_fonts"),
])
def test_bad_options_name_the_field(options, field):
    with pytest.raises(SpecError) as err:
        load_dataset("font_letters", options, path="$.dataset")
    msg = str(err.value)
    assert f"$.dataset.options.{field}" in msg and "font_letters" in msg
    assert "Traceback" not in msg
