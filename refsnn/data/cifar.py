"""CIFAR-10 / CIFAR-100 from a local copy of the standard "python version".

Nothing is ever downloaded. ``root`` is the folder holding the pickles, or its
parent containing the folder as extracted from the official archive
(``cifar-10-batches-py`` / ``cifar-100-python``):

    CIFAR-10 : data_batch_1 .. data_batch_5 (train), test_batch (test), batches.meta (optional)
    CIFAR-100: train, test, meta (optional)

Each data pickle is a dict with bytes keys: ``b"data"`` a uint8 array (N, 3072)
holding per row the 1024 red, then 1024 green, then 1024 blue values of a
32x32 image in row-major order, and ``b"labels"`` (CIFAR-10) or
``b"fine_labels"`` (CIFAR-100) a list of N ints.

Security: the files are read with ``pickle.load(f, encoding="bytes")``.
Unpickling can execute arbitrary code; only point ``root`` at a copy you trust
(e.g. the archive from https://www.cs.toronto.edu/~kriz/cifar.html, checked
against its published md5).

Normalisation: ``x = (raw / 255 - mean_c) / std_c`` per channel c, computed in
float64 and then cast to ``dtype``, with the per-channel mean and population
std of each set's 50 000 training images (values below, the constants most
CIFAR code uses). Note: some code instead uses std (0.2023, 0.1994, 0.2010) for
CIFAR-10; pass ``mean=``/``std=`` to `load_cifar` to match such code.

Memory: the whole split is normalised eagerly; CIFAR train in float64 takes
50000 * 3072 * 8 B = 1.23 GB (0.61 GB in float32).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from .augment import RandomCropFlip
from .dataset import Dataset, check_float_dtype, check_split

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

_SPECS = {
    "cifar10": dict(
        subdir="cifar-10-batches-py",
        train=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test=("test_batch",),
        meta="batches.meta",
        label_key=b"labels",
        names_key=b"label_names",
        classes=10,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
    ),
    "cifar100": dict(
        subdir="cifar-100-python",
        train=("train",),
        test=("test",),
        meta="meta",
        label_key=b"fine_labels",
        names_key=b"fine_label_names",
        classes=100,
        mean=CIFAR100_MEAN,
        std=CIFAR100_STD,
    ),
}

_CHUNK = 4096  # rows normalised at a time, to bound float64 temporaries


def _resolve_dir(root, name: str) -> Path:
    spec = _SPECS[name]
    if root is None:
        raise ValueError(f"{name}: root=None; pass the folder holding the {name} python-version pickles")
    root = Path(os.fspath(root)).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"{name}: directory {str(root)!r} does not exist; expected a folder with "
            f"{', '.join(spec['train'] + spec['test'])} (or its parent holding {spec['subdir']}/)"
        )
    nested = root / spec["subdir"]
    if not (root / spec["test"][0]).exists() and nested.is_dir():
        return nested
    return root


def _unpickle(path: Path, what: str):
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
    except FileNotFoundError:
        raise
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, ... from a broken file
        raise ValueError(f"{path}: not a readable {what} pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict with bytes keys in a {what} pickle, got {type(obj).__name__}")
    return obj


def _read_batch(path: Path, name: str) -> Tuple[np.ndarray, np.ndarray]:
    spec = _SPECS[name]
    label_key = spec["label_key"]
    what = f"{name} batch"
    d = _unpickle(path, what)
    missing = [k for k in (b"data", label_key) if k not in d]
    if missing:
        raise ValueError(
            f"{path}: {what} dict lacks keys {missing}; expected keys b'data' and {label_key!r}, "
            f"found {sorted(d.keys(), key=repr)}"
        )
    data = d[b"data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        raise ValueError(
            f"{path}: b'data' must be a uint8 array of shape (N, 3072), got "
            f"{type(data).__name__} {getattr(data, 'dtype', '')} {getattr(data, 'shape', '')}"
        )
    try:
        labels = np.asarray(d[label_key])
    except Exception as exc:
        raise ValueError(f"{path}: {label_key!r} is not a list of ints ({exc})") from exc
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{path}: {label_key!r} must be {data.shape[0]} ints (one per row of b'data'), "
            f"got {labels.dtype} with shape {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= spec["classes"]):
        raise ValueError(
            f"{path}: labels span [{labels.min()}, {labels.max()}], allowed [0, {spec['classes'] - 1}]"
        )
    return data, labels.astype(np.int64)


def _read_class_names(path: Path, name: str) -> Optional[Tuple[str, ...]]:
    if not path.exists():
        return None
    spec = _SPECS[name]
    d = _unpickle(path, f"{name} meta")
    names = d.get(spec["names_key"])
    if not isinstance(names, (list, tuple)) or len(names) != spec["classes"]:
        raise ValueError(
            f"{path}: expected key {spec['names_key']!r} with {spec['classes']} class names, "
            f"got {type(names).__name__}"
        )
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


def _check_channel_triple(label: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{label}={value!r} must be 3 finite numbers (one per RGB channel)")
    return arr


def load_cifar(
    root,
    name: str = "cifar10",
    split: str = "train",
    dtype=np.float64,
    augment: Optional[bool] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> Dataset:
    """Load a CIFAR split from ``root`` as x (N, 3, 32, 32) normalised, y (N,) int64.

    augment : None (default) means True for ``split="train"`` and False for
        ``"test"``. When True, the returned Dataset carries
        ``RandomCropFlip(pad=4, flip_prob=0.5, fill=-mean/std)`` (zero padding of
        the raw image), which `DataLoader` applies per batch.
    mean, std : per-channel constants on the [0, 1] scale; default the
        set's constants (`CIFAR10_MEAN`/`CIFAR10_STD` or `CIFAR100_MEAN`/`CIFAR100_STD`).

    Raises FileNotFoundError for a missing directory or file and ValueError for
    a malformed pickle, both naming the path and what was expected. See the
    module docstring for the pickle security caveat.
    """
    if name not in _SPECS:
        raise ValueError(f"name={name!r} is not a CIFAR set; allowed: {', '.join(map(repr, _SPECS))}")
    check_split(split)
    dt = check_float_dtype(dtype)
    spec = _SPECS[name]
    m = _check_channel_triple("mean", spec["mean"] if mean is None else mean)
    s = _check_channel_triple("std", spec["std"] if std is None else std)
    if np.any(s <= 0):
        raise ValueError(f"std={s.tolist()} must be > 0 for every channel")

    folder = _resolve_dir(root, name)
    files = spec[split]
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{name} {split}: missing {', '.join(missing)} in {str(folder)!r}; expected files "
            f"{', '.join(files)} (the python-version pickles)"
        )
    parts = [_read_batch(folder / f, name) for f in files]
    raw = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    y = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    class_names = _read_class_names(folder / spec["meta"], name)

    # x = (raw / 255 - mean_c) / std_c, in float64, chunk by chunk, then cast.
    raw = raw.reshape(-1, 3, 32, 32)
    x = np.empty(raw.shape, dtype=dt)
    m4, s4 = m.reshape(1, 3, 1, 1), s.reshape(1, 3, 1, 1)
    for start in range(0, raw.shape[0], _CHUNK):
        block = raw[start : start + _CHUNK].astype(np.float64) / 255.0
        x[start : start + _CHUNK] = (block - m4) / s4

    if augment is None:
        augment = split == "train"
    aug = RandomCropFlip(pad=4, flip_prob=0.5, fill=(-m / s).tolist()) if augment else None
    return Dataset(x=x, y=y, classes=spec["classes"], name=f"{name}/{split}", augment=aug, class_names=class_names)
