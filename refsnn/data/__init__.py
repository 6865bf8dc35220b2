"""Datasets and a batch loader, in pure NumPy (no other refsnn import).

    load_digits(split, dtype)                  bundled UCI digits, 8x8, 10 classes (default set)
    load_cifar(root, name, split, dtype, ...)  CIFAR-10/100 from a local python-version copy
    make_synthetic(n, shape, classes, seed, dtype, ...)   toy prototypes + noise
    get_dataset(name, root=None, split="train", **kw)    dispatch on the name
    Dataset, DataLoader, RandomCropFlip

Nothing here downloads anything.
"""

from __future__ import annotations

from .augment import RandomCropFlip
from .cifar import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, load_cifar
from .dataset import Dataset, check_split
from .digits import DIGITS_SHA256, digits_stats, load_digits
from .loader import DataLoader
from .synthetic import make_synthetic

DATASET_NAMES = ("digits", "cifar10", "cifar100", "synthetic")

#: Default sizes of `get_dataset("synthetic", ...)` when ``n`` is not given.
SYNTHETIC_DEFAULT_N = {"train": 1000, "test": 200}


def get_dataset(name: str, root=None, split: str = "train", **kw) -> Dataset:
    """Return the ``split`` of dataset ``name``; extra keywords go to its loader.

    "digits"    -> load_digits(split, **kw)              (root must be None)
    "cifar10"   -> load_cifar(root, "cifar10", split, **kw)
    "cifar100"  -> load_cifar(root, "cifar100", split, **kw)
    "synthetic" -> make_synthetic(n, split=split, **kw)  (n defaults to SYNTHETIC_DEFAULT_N[split])
    """
    if name == "digits":
        if root is not None:
            raise ValueError(f"digits is bundled with refsnn and takes no root (got root={root!r})")
        return load_digits(split=split, **kw)
    if name in ("cifar10", "cifar100"):
        return load_cifar(root, name=name, split=split, **kw)
    if name == "synthetic":
        if root is not None:
            raise ValueError(f"synthetic is generated and takes no root (got root={root!r})")
        n = kw.pop("n", SYNTHETIC_DEFAULT_N[check_split(split)])
        return make_synthetic(n, split=split, **kw)
    raise ValueError(f"unknown dataset name={name!r}; valid names: {', '.join(DATASET_NAMES)}")


__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DATASET_NAMES",
    "DIGITS_SHA256",
    "DataLoader",
    "Dataset",
    "RandomCropFlip",
    "digits_stats",
    "get_dataset",
    "load_cifar",
    "load_digits",
    "make_synthetic",
]
