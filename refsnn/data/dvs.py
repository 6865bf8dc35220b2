"""CIFAR10-DVS and DVS128 Gesture from a local copy in their released formats (docs/method.md §14).

Nothing is downloaded. Frames are computed once per (copy, split, settings) and cached as
``.npz`` in ``cache_dir`` (default: refsnn.data.event_digits.default_cache_dir()).

CIFAR10-DVS (Li et al. 2017), ``root`` laid out as released::

    root/airplane/cifar10_airplane_0.aedat ... root/truck/cifar10_truck_999.aedat   (AEDAT 2.0 or 3.1)

10 classes of 1000 recordings of 128x128. Split (**Decision**, as SpikingJelly's
``split_to_train_test_set(0.9, ...)``): per class, files sorted by the number in their name,
the first ``floor(0.9 n)`` train, the rest test. Frames: T slices of equal event count
(``split_by``), events binned to ``size`` x ``size`` (the release resizes to 48x48).

DVS128 Gesture (Amir et al. 2017), ``root`` laid out as released::

    root/trials_to_train.txt, root/trials_to_test.txt      one ``userNN_lighting.aedat`` per line
    root/userNN_lighting.aedat                             AEDAT 3.1
    root/userNN_lighting_labels.csv                        header, then ``class,startTime_usec,endTime_usec``

11 classes (1..11 in the csv, 0..10 here); users 1-23 train, 24-29 test (the two lists).
A sample is the events with ``start <= t < end``; frames by the rule of App. A.5.4
(:func:`refsnn.data.events.gesture_frames`), binned to ``size`` x ``size``.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np

from .aedat import read_aedat
from .dataset import Dataset, check_float_dtype, check_int, check_split
from .event_digits import default_cache_dir
from .events import SPLIT_BY, bin_events, gesture_frames, to_frames

CIFAR10_DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
GESTURE_CLASSES = 11
SENSOR = 128
CIFAR10_DVS_LAYOUT = "root/<class>/cifar10_<class>_<i>.aedat for the 10 classes " + ", ".join(CIFAR10_DVS_CLASSES)
GESTURE_LAYOUT = ("root/trials_to_train.txt, root/trials_to_test.txt, root/userNN_<lighting>.aedat and "
                  "root/userNN_<lighting>_labels.csv")


def _cached(cache_dir, tag: str, parts: tuple, build):
    """Load ``(x, y)`` from ``cache_dir/<tag>-<key>.npz`` or build and save it."""
    key = hashlib.sha256(repr(parts).encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"{tag}-{key}.npz"
    if path.exists():
        with np.load(path) as z:
            return z["x"], z["y"]
    x, y = build()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, x=x, y=y)
    os.replace(tmp, path)
    return x, y


def _check_common(root, split, T, size, dtype):
    check_split(split)
    T = check_int("T", T, 1)
    size = check_int("size", size, 1)
    if size > SENSOR:
        raise ValueError(f"size={size} is out of range; allowed: 1..{SENSOR}")
    root = Path(root) if root is not None else None
    if root is None or not root.is_dir():
        raise ValueError(f"root={root!r} is not a directory")
    return root, T, size, check_float_dtype(dtype)


def _file_number(p: Path) -> int:
    m = re.search(r"(\d+)\.aedat$", p.name)
    return int(m.group(1)) if m else -1


def load_cifar10_dvs(root, split: str = "train", T: int = 10, split_by: str = "number", size: int = 48,
                     dtype=np.float32, cache_dir=None, train_fraction: float = 0.9) -> Dataset:
    """CIFAR10-DVS frames: x (N, T, 2, size, size) event counts, y (N,) int64 (see the module docstring)."""
    root, T, size, dt = _check_common(root, split, T, size, dtype)
    if split_by not in SPLIT_BY:
        raise ValueError(f"split_by={split_by!r} is not valid; allowed: {SPLIT_BY}")
    files = []
    for c, name in enumerate(CIFAR10_DVS_CLASSES):
        folder = root / name
        found = sorted(folder.glob("*.aedat"), key=lambda p: (_file_number(p), p.name)) if folder.is_dir() else []
        if not found:
            raise ValueError(f"CIFAR10-DVS copy at {root}: no .aedat files in {folder}; expected layout: "
                             f"{CIFAR10_DVS_LAYOUT}")
        k = int(np.floor(train_fraction * len(found)))
        files += [(p, c) for p in (found[:k] if split == "train" else found[k:])]

    def build():
        x = np.stack([to_frames(bin_events(read_aedat(p), SENSOR, SENSOR, size), T, size, size, split_by, dt)
                      for p, _ in files]) if files else np.zeros((0, T, 2, size, size), dt)
        return x, np.array([c for _, c in files], dtype=np.int64)

    parts = ("cifar10_dvs", str(root.resolve()), split, T, split_by, size, str(dt), train_fraction,
             [(p.name, p.stat().st_size) for p, _ in files])
    x, y = _cached(cache_dir, "cifar10_dvs", parts, build)
    return Dataset(x=x, y=y, classes=10, name=f"cifar10_dvs/{split}", class_names=CIFAR10_DVS_CLASSES)


def _read_labels(path: Path) -> np.ndarray:
    """Rows (class 1..11, start_us, end_us) of a DVS128 Gesture ``*_labels.csv``."""
    if not path.is_file():
        raise ValueError(f"DVS128 Gesture: missing label file {path}; expected layout: {GESTURE_LAYOUT}")
    try:
        rows = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    except ValueError as e:
        raise ValueError(f"DVS128 Gesture: {path} is not 'class,startTime_usec,endTime_usec' rows: {e}") from None
    if rows.shape[1] != 3 or (rows[:, 0] < 1).any() or (rows[:, 0] > GESTURE_CLASSES).any() \
            or (rows[:, 2] <= rows[:, 1]).any():
        raise ValueError(f"DVS128 Gesture: {path}: need 3 columns, class in 1..{GESTURE_CLASSES}, end > start")
    return rows


def load_dvs_gesture(root, split: str = "train", T: int = 16, size: int = 128, dtype=np.float32,
                     cache_dir=None) -> Dataset:
    """DVS128 Gesture frames: x (N, T, 2, size, size), y (N,) int64, by the rule of App. A.5.4."""
    root, T, size, dt = _check_common(root, split, T, size, dtype)
    listing = root / ("trials_to_train.txt" if split == "train" else "trials_to_test.txt")
    if not listing.is_file():
        raise ValueError(f"DVS128 Gesture copy at {root}: missing {listing.name}; expected layout: {GESTURE_LAYOUT}")
    trials = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
    if not trials:
        raise ValueError(f"DVS128 Gesture copy at {root}: {listing.name} lists no recording")
    for name in trials:
        if not (root / name).is_file():
            raise ValueError(f"DVS128 Gesture copy at {root}: {listing.name} lists {name}, which is missing; "
                             f"expected layout: {GESTURE_LAYOUT}")

    def build():
        xs, ys = [], []
        for name in trials:
            events = read_aedat(root / name)
            for c, start, end in _read_labels(root / name.replace(".aedat", "_labels.csv")):
                lo, hi = np.searchsorted(events["t"], [start, end], side="left")
                sample = bin_events(events[lo:hi], SENSOR, SENSOR, size)
                xs.append(gesture_frames(sample, T, size, size, dtype=dt))
                ys.append(c - 1)
        return np.stack(xs), np.array(ys, dtype=np.int64)

    parts = ("dvs_gesture", str(root.resolve()), split, T, size, str(dt),
             [(n, (root / n).stat().st_size) for n in trials])
    x, y = _cached(cache_dir, "dvs_gesture", parts, build)
    return Dataset(x=x, y=y, classes=GESTURE_CLASSES, name=f"dvs_gesture/{split}")
