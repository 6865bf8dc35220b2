"""Event-camera data: event streams, frames, and the slice rule of DVS-Gesture (docs/method.md §14).

An event stream is a structured array of dtype :data:`EVENT_DTYPE` with fields

    t   int64  timestamp in microseconds, >= 0 and non-decreasing
    x   int16  column, 0 <= x < width
    y   int16  row,    0 <= y < height
    p   int8   polarity: 1 = ON (brightness went up), 0 = OFF

:func:`to_frames` integrates a stream into T frames of 2 channels (channel 0 counts OFF
events, channel 1 ON events), the representation of SpikingJelly and Spikformer; a
sequential-mode network reads frame t at step t (docs/method.md §14).
"""

from __future__ import annotations

import numpy as np

from .dataset import check_float_dtype, check_int

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])
SPLIT_BY = ("number", "time")


def make_events(t, x, y, p, *, height: int, width: int) -> np.ndarray:
    """Build and check an event stream from four equally long 1-D arrays (see :func:`check_events`)."""
    arrays = [np.asarray(a) for a in (t, x, y, p)]
    n = arrays[0].shape
    for name, a in zip("txyp", arrays):
        if a.ndim != 1 or a.shape != n or a.dtype.kind not in "iub":
            raise ValueError(f"make_events: {name} must be a 1-D integer array of length {n[0] if n else '?'}, "
                             f"got {a.dtype} with shape {a.shape}")
    ev = np.empty(n[0], dtype=EVENT_DTYPE)
    for name, a in zip("txyp", arrays):
        ev[name] = a
        if not np.array_equal(ev[name], a):
            raise ValueError(f"make_events: {name} has values that do not fit {EVENT_DTYPE[name]}")
    return check_events(ev, height, width)


def check_events(events, height: int, width: int, name: str = "events") -> np.ndarray:
    """Return ``events`` if it is a valid stream for a ``height`` x ``width`` sensor, else raise ValueError.

    Valid: dtype :data:`EVENT_DTYPE`, 1-D; timestamps >= 0 and non-decreasing; coordinates
    on the sensor; polarities 0 or 1.
    """
    height = check_int("height", height, 1)
    width = check_int("width", width, 1)
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE or events.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of dtype {EVENT_DTYPE} (see make_events), got "
                         f"{getattr(events, 'dtype', type(events).__name__)} with shape {getattr(events, 'shape', None)}")
    t, x, y, p = events["t"], events["x"], events["y"], events["p"]
    checks = (
        (t < 0, "t", "timestamps must be >= 0"),
        (x < 0, "x", f"x must be in [0, {width - 1}]"), (x >= width, "x", f"x must be in [0, {width - 1}]"),
        (y < 0, "y", f"y must be in [0, {height - 1}]"), (y >= height, "y", f"y must be in [0, {height - 1}]"),
        ((p != 0) & (p != 1), "p", "polarity must be 0 (OFF) or 1 (ON)"),
    )
    for bad, field, rule in checks:
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{name}: {field}[{i}] = {events[field][i]} is not allowed ({rule}, sensor "
                             f"{height}x{width})")
    if t.size > 1 and (np.diff(t) < 0).any():
        i = int(np.argmax(np.diff(t) < 0)) + 1
        raise ValueError(f"{name}: timestamps must be sorted (non-decreasing); t[{i}] = {t[i]} < t[{i - 1}] = {t[i - 1]}")
    return events


def slice_index(t: np.ndarray, T: int, split_by: str) -> np.ndarray:
    """The frame ``k`` in 0..T-1 that each event of a sorted stream falls into.

    ``split_by="number"``: T slices of (nearly) equal event count, as SpikingJelly: with
    ``n`` events and ``d = n // T``, slice k holds the events ``k d .. k d + d - 1`` and the
    last slice also holds the ``n - T d`` left over (all events, if ``n < T``).
    ``split_by="time"``: T slices of equal duration over ``[t_first, t_last]``:
    ``k = floor((t - t_first) T / (t_last - t_first))``, the last slice closed on the right
    (``k = T`` becomes ``T - 1``); if all events share one timestamp they go to slice 0.
    Integer arithmetic throughout, so the rule is exact.
    """
    n = t.shape[0]
    if split_by == "number":
        d = n // T
        if d == 0:  # fewer events than slices: all of them in the last slice (d = 0 above)
            return np.full(n, T - 1, dtype=np.int64)
        return np.minimum(np.arange(n) // d, T - 1)
    span = int(t[-1] - t[0]) if n else 0
    if span == 0:
        return np.zeros(n, dtype=np.int64)
    return np.minimum(((t - t[0]) * T) // span, T - 1)


def to_frames(events, T: int, height: int, width: int, split_by: str = "number", dtype=np.float64) -> np.ndarray:
    """Integrate an event stream into frames of shape ``(T, 2, height, width)`` (docs/method.md §14).

    ``frames[k, c, y, x]`` = number of events of polarity ``c`` (0 OFF, 1 ON) at pixel (x, y)
    in slice k of :func:`slice_index` (``split_by`` "number" or "time"). An empty stream gives
    zero frames. ``T``: int >= 1. Bad events raise ValueError (see :func:`check_events`).
    """
    T = check_int("T", T, 1)
    if split_by not in SPLIT_BY:
        raise ValueError(f"split_by={split_by!r} is not valid; allowed: {SPLIT_BY}")
    dt = check_float_dtype(dtype)
    check_events(events, height, width)
    k = slice_index(events["t"], T, split_by)
    # one flat bin per (k, c, y, x)
    flat = ((k * 2 + events["p"].astype(np.int64)) * height + events["y"]) * width + events["x"]
    counts = np.bincount(flat, minlength=T * 2 * height * width)
    return counts.reshape(T, 2, height, width).astype(dt)


#: DVS-Gesture (App. A.5.4): target T -> (number of slices cut, number kept from the start).
def gesture_slices(T: int) -> tuple:
    """App. A.5.4: for target T = 1, 2 or x > 2, cut each sample into 4, 10 or 16 slices and keep
    the first 1, 2 or x of them. Returns ``(n_slices, keep)``; T must be in 1..16."""
    T = check_int("T", T, 1)
    if T > 16:
        raise ValueError(f"T={T} is out of range for the DVS-Gesture rule; allowed: 1..16")
    if T == 1:
        return 4, 1
    if T == 2:
        return 10, 2
    return 16, T


def gesture_frames(events, T: int, height: int = 128, width: int = 128, dtype=np.float64) -> np.ndarray:
    """Frames of one DVS-Gesture sample under the rule of :func:`gesture_slices`: shape (T, 2, H, W)."""
    n_slices, keep = gesture_slices(T)
    return to_frames(events, n_slices, height, width, split_by="number", dtype=dtype)[:keep]


def bin_events(events, height: int, width: int, size: int) -> np.ndarray:
    """The stream on a ``size`` x ``size`` grid: ``x' = x size // width``, ``y' = y size // height``
    (a pixel of the small grid counts the events of the block of sensor pixels it covers).
    **Decision**: the release resizes CIFAR10-DVS frames to 48x48; binning the events is our
    reading, exact and without interpolation weights."""
    check_events(events, height, width)
    size = check_int("size", size, 1)
    out = events.copy()
    out["x"] = (events["x"].astype(np.int64) * size) // width
    out["y"] = (events["y"].astype(np.int64) * size) // height
    return out
