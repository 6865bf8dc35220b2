"""A learnable toy set for tests: class prototypes plus Gaussian noise.

    prototypes[k] ~ N(0, 1)^shape            drawn from default_rng(seed)
    y             = a permutation of (0, 1, ..., classes-1, 0, 1, ...)  (balanced)
    x[i]          = prototypes[y[i]] + noise * N(0, 1)^shape

The prototypes depend only on ``seed``, so the "train" and "test" splits share
them; the labels and noise of a split are drawn from
``default_rng([seed, 0])`` (train) or ``default_rng([seed, 1])`` (test).
With the default ``noise=1.0`` and shape (1, 8, 8) a linear classifier
separates the classes almost perfectly.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .dataset import Dataset, check_float_dtype, check_int, check_split


def make_synthetic(
    n: int,
    shape: Sequence[int] = (1, 8, 8),
    classes: int = 10,
    seed: int = 0,
    dtype=np.float64,
    noise: float = 1.0,
    split: str = "train",
) -> Dataset:
    """n samples of x (n, *shape) and balanced labels y (n,) int64; see module docstring."""
    n = check_int("n", n, 1)
    classes = check_int("classes", classes, 2)
    seed = check_int("seed", seed, 0)
    dt = check_float_dtype(dtype)
    check_split(split)
    shape = tuple(shape)
    if len(shape) == 0 or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise ValueError(f"shape={shape!r} must be a non-empty tuple of ints >= 1, e.g. (1, 8, 8)")
    shape = tuple(int(d) for d in shape)
    noise = float(noise)
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise={noise} is out of range; allowed: finite float >= 0")

    prototypes = np.random.default_rng(seed).standard_normal((classes,) + shape)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    y = rng.permutation(np.arange(n, dtype=np.int64) % classes)
    x = prototypes[y] + noise * rng.standard_normal((n,) + shape)
    return Dataset(
        x=x.astype(dt),
        y=y.astype(np.int64),
        classes=classes,
        name=f"synthetic/{split}",
    )
