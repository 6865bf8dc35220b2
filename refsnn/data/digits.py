"""The embedded default dataset: UCI optical handwritten digits (8x8, 10 classes).

The file ``digits.csv.gz`` ships inside the package (attribution in this
folder's README.md), so a fresh install trains without any download.

Split (fixed, stratified)
-------------------------
For each class c = 0..9 in turn, one generator ``np.random.default_rng(SPLIT_SEED)``
permutes the row indices of that class and the first
``floor(TEST_FRACTION * n_c + 1/2)`` of them go to the test split. Both splits
are then sorted by row index. Counts:

    class  0   1   2   3   4   5   6   7   8   9   total
    n_c   178 182 177 183 181 182 181 179 174 180  1797
    test   36  36  35  37  36  36  36  36  35  36   359
    train 142 146 142 146 145 146 145 143 139 144  1438

Normalisation
-------------
One scalar mean and one scalar std (population std, ddof=0), computed in
float64 over every pixel of the TRAIN split (raw 0..16 values), are applied to
both splits: ``x = (raw - mean) / std``, then cast to ``dtype``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from importlib import resources
from typing import Tuple

import numpy as np

from .dataset import Dataset, check_float_dtype, check_split

DIGITS_FILE = "digits.csv.gz"
DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
N_SAMPLES = 1797
CLASSES = 10
SPLIT_SEED = 0
TEST_FRACTION = 0.2


def _read_digits_bytes() -> bytes:
    """The raw bytes of the bundled csv.gz (a seam the tests replace)."""
    return resources.files(__package__).joinpath(DIGITS_FILE).read_bytes()


def _load_raw() -> Tuple[np.ndarray, np.ndarray]:
    """Verified raw pixels (1797, 64) int64 in 0..16 and labels (1797,) int64."""
    blob = _read_digits_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != DIGITS_SHA256:
        raise ValueError(
            f"bundled {DIGITS_FILE} (package refsnn.data) is corrupted: sha256 is {digest}, "
            f"expected {DIGITS_SHA256}; reinstall refsnn or restore the file"
        )
    table = np.loadtxt(io.BytesIO(gzip.decompress(blob)), delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape != (N_SAMPLES, 65):
        raise ValueError(f"{DIGITS_FILE}: expected shape ({N_SAMPLES}, 65), got {table.shape}")
    return table[:, :64], table[:, 64]


def raw_digits() -> Tuple[np.ndarray, np.ndarray]:
    """The verified bundled table: raw pixels (1797, 64) int64 in 0..16 and labels (1797,) int64."""
    return _load_raw()


def split_indices(y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Stratified (train_idx, test_idx), both sorted; see the module docstring."""
    rng = np.random.default_rng(SPLIT_SEED)
    test = []
    for c in range(CLASSES):
        rows = np.flatnonzero(y == c)
        k = int(np.floor(TEST_FRACTION * rows.size + 0.5))
        test.append(rng.permutation(rows)[:k])
    test_idx = np.sort(np.concatenate(test))
    train_mask = np.ones(y.shape[0], dtype=bool)
    train_mask[test_idx] = False
    return np.flatnonzero(train_mask), test_idx


def digits_stats() -> Tuple[float, float]:
    """(mean, std) of the raw train pixels, the normalisation used by `load_digits`."""
    pixels, labels = _load_raw()
    train_idx, _ = split_indices(labels)
    raw = pixels[train_idx].astype(np.float64)
    return float(raw.mean()), float(raw.std())


def load_digits(split: str = "train", dtype=np.float64) -> Dataset:
    """Load the bundled digits split as x (N, 1, 8, 8) normalised, y (N,) int64.

    Raises ValueError if the bundled file's sha256 differs from `DIGITS_SHA256`.
    Never downloads anything.
    """
    check_split(split)
    dt = check_float_dtype(dtype)
    pixels, labels = _load_raw()
    train_idx, test_idx = split_indices(labels)
    raw_train = pixels[train_idx].astype(np.float64)
    mean, std = raw_train.mean(), raw_train.std()
    idx = train_idx if split == "train" else test_idx
    x = ((pixels[idx].astype(np.float64) - mean) / std).astype(dt).reshape(-1, 1, 8, 8)
    return Dataset(
        x=x,
        y=labels[idx].astype(np.int64),
        classes=CLASSES,
        name=f"digits/{split}",
        class_names=tuple(str(c) for c in range(CLASSES)),
    )
