"""Datasets for blursim: the BLUR paper's toy tasks, sklearn digits, the MNIST family, files.

Every dataset is a factory registered in :data:`DATASETS` by name;
:func:`load_dataset` builds one from a name and an options dict (as in a
JSON spec) and :func:`dataset_options` lists a dataset's options with their
defaults. Importing this package registers all of them:

* :mod:`blursim.data.toy` -- 2-D tasks of Fig. 3 / Sec. 4.1 (``xor``,
  ``two_moons``, ``center_circle``, ``blobs5``, ...);
* :mod:`blursim.data.digits` -- scikit-learn's offline 8x8 digits, also
  resampled to other resolutions (``digits_resized``);
* :mod:`blursim.data.mnist_1d` -- MNIST-1D, generated offline (``mnist1d``);
* :mod:`blursim.data.fonts` -- printed letters and digits rendered offline from
  matplotlib's bundled fonts, randomly distorted (``font_letters``, ``font_digits``);
* :mod:`blursim.data.mnist` -- MNIST, Fashion-MNIST and EMNIST read from
  local IDX files (:func:`read_idx`);
* :mod:`blursim.data.tabular` -- scikit-learn's bundled tabular sets
  ``breast_cancer`` and ``wine`` (measurements, no images);
* :mod:`blursim.data.files` -- your own NPZ, NPY or CSV file (``file``), with
  class labels or real-valued target vectors.
"""

from blursim.data.base import DATASETS, Dataset, dataset_options, load_dataset
from blursim.data.idx import read_idx
from blursim.data import digits, files, fonts, mnist, mnist_1d, tabular, toy  # noqa: F401  (register the datasets)

__all__ = ["Dataset", "DATASETS", "load_dataset", "dataset_options", "read_idx"]
