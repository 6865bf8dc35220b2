"""The `Dataset` record and the argument checks shared by the data package.

A `Dataset` is only arrays plus a name: no lazy loading, no transforms hidden
in `__getitem__`. Everything a batch goes through between the array and the
model is visible in `DataLoader.__iter__` (index -> copy -> optional augment).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np

#: Signature of an augmentation: ``augment(x_batch, rng) -> new x_batch`` with
#: the same shape and dtype; it must not modify ``x_batch`` in place and must
#: draw all of its randomness from ``rng`` (a ``numpy.random.Generator``).
Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_float_dtype(dtype) -> np.dtype:
    """Return ``np.dtype(dtype)`` if it is float32 or float64, else raise ValueError."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"dtype={dtype!r} is not a NumPy dtype; allowed: float32, float64") from exc
    if dt not in FLOAT_DTYPES:
        raise ValueError(f"dtype={dt} is not supported; allowed: float32, float64")
    return dt


def check_int(name: str, value, minimum: int) -> int:
    """Return ``int(value)`` if it is an integer (not bool) >= minimum, else raise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}={value!r} must be an int >= {minimum}")
    if value < minimum:
        raise ValueError(f"{name}={value} is out of range; allowed: int >= {minimum}")
    return int(value)


def check_split(split: str) -> str:
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is not valid; allowed: 'train', 'test'")
    return split


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image set held in memory.

    Attributes
    ----------
    x : ndarray, shape (N, C, H, W), float32 or float64 (already normalised)
    y : ndarray, shape (N,), int64, values in [0, classes)
    classes : number of classes
    name : e.g. ``"digits/train"``
    augment : optional per-batch augmentation (see `Augment`), applied by
        `DataLoader` unless the loader is given its own ``augment``.
    class_names : optional tuple of ``classes`` strings.
    """

    x: np.ndarray
    y: np.ndarray
    classes: int
    name: str
    augment: Optional[Augment] = None
    class_names: Optional[Tuple[str, ...]] = None

    def __post_init__(self):
        if not isinstance(self.x, np.ndarray) or self.x.ndim < 2:
            raise ValueError(
                f"Dataset {self.name!r}: x must be an ndarray of shape (N, ...), "
                f"got {type(self.x).__name__} with shape {getattr(self.x, 'shape', None)}"
            )
        if not isinstance(self.y, np.ndarray) or self.y.dtype != np.int64 or self.y.ndim != 1:
            raise ValueError(
                f"Dataset {self.name!r}: y must be a 1-D int64 ndarray, got "
                f"{getattr(self.y, 'dtype', type(self.y).__name__)} with shape {getattr(self.y, 'shape', None)}"
            )
        if self.y.shape[0] != self.x.shape[0]:
            raise ValueError(
                f"Dataset {self.name!r}: x has {self.x.shape[0]} samples but y has {self.y.shape[0]}"
            )
        check_int("classes", self.classes, 1)
        if self.y.size and (self.y.min() < 0 or self.y.max() >= self.classes):
            raise ValueError(
                f"Dataset {self.name!r}: labels span [{self.y.min()}, {self.y.max()}], "
                f"allowed range is [0, {self.classes - 1}]"
            )
        if self.augment is not None and not callable(self.augment):
            raise TypeError(f"Dataset {self.name!r}: augment={self.augment!r} is not callable")
        if self.class_names is not None and len(self.class_names) != self.classes:
            raise ValueError(
                f"Dataset {self.name!r}: {len(self.class_names)} class_names for {self.classes} classes"
            )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, x={self.x.shape} {self.x.dtype}, "
            f"classes={self.classes}, augment={self.augment!r})"
        )
