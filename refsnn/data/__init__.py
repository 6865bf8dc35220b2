"""Datasets and a batch loader, in pure NumPy (no other refsnn import).

    load_digits(split, dtype)                  bundled UCI digits, 8x8, 10 classes (default set)
    load_cifar(root, name, split, dtype, ...)  CIFAR-10/100 from a local python-version copy
    make_synthetic(n, shape, classes, seed, dtype, ...)   toy prototypes + noise
    load_event_digits(split, T, split_by, ...)  synthetic event-camera digits (simulated, cached)
    load_cifar10_dvs(root, ...), load_dvs_gesture(root, ...)   local copies of the event data sets
    to_frames, gesture_frames, make_events      event streams -> frames (events.py)
    get_dataset(name, root=None, split="train", **kw)    dispatch on the name
    Dataset, DataLoader, RandomCropFlip

Nothing here downloads anything.
"""

from __future__ import annotations

from .augment import RandomCropFlip
from .cifar import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, load_cifar
from .dataset import Dataset, check_split
from .digits import DIGITS_SHA256, digits_stats, load_digits
from .dvs import load_cifar10_dvs, load_dvs_gesture
from .event_digits import EventDigitsSettings, default_cache_dir, load_event_digits
from .events import EVENT_DTYPE, gesture_frames, gesture_slices, make_events, to_frames
from .loader import DataLoader
from .synthetic import make_synthetic

DATASET_NAMES = ("digits", "cifar10", "cifar100", "synthetic", "event_digits", "cifar10_dvs", "dvs_gesture")
#: Data sets whose samples are event frames (N, T, 2, H, W) for sequential mode (docs/method.md §14).
EVENT_DATASETS = ("event_digits", "cifar10_dvs", "dvs_gesture")

#: Default sizes of `get_dataset("synthetic", ...)` when ``n`` is not given.
SYNTHETIC_DEFAULT_N = {"train": 1000, "test": 200}


def get_dataset(name: str, root=None, split: str = "train", **kw) -> Dataset:
    """Return the ``split`` of dataset ``name``; extra keywords go to its loader.

    "digits"    -> load_digits(split, **kw)              (root must be None)
    "cifar10"   -> load_cifar(root, "cifar10", split, **kw)
    "cifar100"  -> load_cifar(root, "cifar100", split, **kw)
    "synthetic" -> make_synthetic(n, split=split, **kw)  (n defaults to SYNTHETIC_DEFAULT_N[split])
    "event_digits" -> load_event_digits(split, **kw)     (root must be None)
    "cifar10_dvs"  -> load_cifar10_dvs(root, split, **kw)
    "dvs_gesture"  -> load_dvs_gesture(root, split, **kw)
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
    if name == "event_digits":
        if root is not None:
            raise ValueError(f"event_digits is simulated and takes no root (got root={root!r})")
        return load_event_digits(split=split, **kw)
    if name == "cifar10_dvs":
        return load_cifar10_dvs(root, split=split, **kw)
    if name == "dvs_gesture":
        return load_dvs_gesture(root, split=split, **kw)
    raise ValueError(f"unknown dataset name={name!r}; valid names: {', '.join(DATASET_NAMES)}")


__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DATASET_NAMES",
    "DIGITS_SHA256",
    "EVENT_DATASETS",
    "EVENT_DTYPE",
    "EventDigitsSettings",
    "DataLoader",
    "Dataset",
    "RandomCropFlip",
    "default_cache_dir",
    "digits_stats",
    "gesture_frames",
    "gesture_slices",
    "get_dataset",
    "load_cifar",
    "load_digits",
    "load_cifar10_dvs",
    "load_dvs_gesture",
    "load_event_digits",
    "make_events",
    "make_synthetic",
    "to_frames",
]
