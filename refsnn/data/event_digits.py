"""Event digits: a simulated event camera looking at the bundled UCI digits (synthetic, no download).

How a sample is made (all settings in :class:`EventDigitsSettings`):

1. The 8x8 digit (raw 0..16, scaled to intensity ``I = raw / 16``) is upscaled to
   ``size`` x ``size`` by bilinear interpolation (pixel centres aligned).
2. It sits on a dark ``sensor`` x ``sensor`` field and moves along a fixed saccade path,
   as N-MNIST was recorded (Orchard et al. 2015: the sensor moved in three saccades along
   a triangle): offsets (0, 0) -> (A/2, A) -> (A, 0) -> (0, 0) in (dx, dy), ``A = amplitude``
   pixels, each saccade ``saccade_us`` microseconds, simulated in ``steps_per_saccade`` steps;
   the shifted image is sampled bilinearly (zero outside the digit).
3. Each pixel keeps a reference log intensity ``L_ref`` (at t = 0, ``L = log(I + eps)``).
   At each simulation step, where ``L - L_ref`` has crossed ``n`` contrast thresholds
   ``C`` the pixel emits n ON events (n OFF events for a fall) and ``L_ref`` moves by ``n C``
   (the idealised DVS pixel). The events of one step get timestamps spread evenly inside
   the step, ``t_prev + j (t_step - t_prev) / (n + 1)``, j = 1..n.
4. ``C`` varies per pixel (fixed-pattern mismatch of a real sensor): ``C = contrast (1 + mismatch z)``
   with ``z ~ N(0, 1)`` drawn once from ``default_rng(seed)``, the same for every sample.

The whole set (1797 samples) takes about a second; it is cached in ``cache_dir`` (default
:func:`default_cache_dir`) under a name keyed by the settings, so a change of any setting
makes a new file. The split is the bundled digits' split (refsnn.data.digits).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .dataset import Dataset, check_float_dtype, check_int, check_split
from .digits import CLASSES, raw_digits, split_indices
from .events import EVENT_DTYPE, SPLIT_BY, to_frames

#: Bump when the simulation changes, so that old cache files are not reused.
FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """``$REFSNN_CACHE``, else ``$XDG_CACHE_HOME/refsnn``, else ``~/.cache/refsnn`` (never the package)."""
    if os.environ.get("REFSNN_CACHE"):
        return Path(os.environ["REFSNN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "refsnn"


@dataclass(frozen=True)
class EventDigitsSettings:
    size: int = 12                 # digit upscaled to size x size pixels
    sensor: int = 16               # sensor height = width
    amplitude: float = 2.0         # saccade displacement A in pixels
    steps_per_saccade: int = 8     # simulation steps per saccade
    saccade_us: int = 100_000      # duration of one saccade in microseconds (N-MNIST: about 100 ms)
    contrast: float = 0.2          # contrast threshold C on the log intensity
    mismatch: float = 0.05         # relative per-pixel std of C
    eps: float = 0.1               # L = log(I + eps)
    seed: int = 0

    def __post_init__(self):
        check_int("size", self.size, 2)
        check_int("sensor", self.sensor, 2)
        check_int("steps_per_saccade", self.steps_per_saccade, 1)
        check_int("saccade_us", self.saccade_us, 1)
        check_int("seed", self.seed, 0)
        for name in ("amplitude", "contrast", "mismatch", "eps"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0):
                raise ValueError(f"EventDigitsSettings: {name}={v!r} must be a finite number >= 0")
        if self.contrast <= 0 or self.eps <= 0:
            raise ValueError(f"EventDigitsSettings: contrast and eps must be > 0, got {self.contrast}, {self.eps}")
        if self.size + self.amplitude > self.sensor:
            raise ValueError(f"EventDigitsSettings: size + amplitude = {self.size + self.amplitude} must fit the "
                             f"sensor ({self.sensor} pixels)")
        if self.contrast * (1 - 3 * self.mismatch) <= 0:
            raise ValueError(f"EventDigitsSettings: mismatch={self.mismatch} too large for contrast={self.contrast}")

    def key(self) -> str:
        """Sixteen hex digits of the sha256 of the settings and FORMAT_VERSION (the cache file name)."""
        blob = json.dumps(dict(asdict(self), format=FORMAT_VERSION), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _bilinear(img: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sample images (N, h, w) at real coordinates (rows (R,), cols (C,)); zero outside. Shape (N, R, C)."""
    N, h, w = img.shape
    pad = np.zeros((N, h + 2, w + 2), dtype=np.float64)
    pad[:, 1:-1, 1:-1] = img
    r = np.clip(rows + 1.0, 0.0, h + 1.0)
    c = np.clip(cols + 1.0, 0.0, w + 1.0)
    r0 = np.minimum(np.floor(r).astype(np.int64), h)
    c0 = np.minimum(np.floor(c).astype(np.int64), w)
    fr = (r - r0)[:, None]
    fc = (c - c0)[None, :]
    a = pad[:, r0][:, :, c0]
    b = pad[:, r0][:, :, c0 + 1]
    cc = pad[:, r0 + 1][:, :, c0]
    d = pad[:, r0 + 1][:, :, c0 + 1]
    return (1 - fr) * ((1 - fc) * a + fc * b) + fr * ((1 - fc) * cc + fc * d)


def _saccade_offsets(s: EventDigitsSettings) -> tuple:
    """(times in us, dx, dy) at the simulation steps 0..3 steps_per_saccade (step 2 of the docstring)."""
    A = float(s.amplitude)
    corners = np.array([(0.0, 0.0), (A / 2, A), (A, 0.0), (0.0, 0.0)])
    K = s.steps_per_saccade
    frac = np.arange(1, K + 1) / K
    path = [corners[:1]]
    for i in range(3):
        path.append(corners[i] + frac[:, None] * (corners[i + 1] - corners[i]))
    path = np.concatenate(path)
    times = np.round(np.arange(3 * K + 1) * (s.saccade_us / K)).astype(np.int64)
    return times, path[:, 0], path[:, 1]


def simulate(images: np.ndarray, settings: EventDigitsSettings) -> tuple:
    """Events of every image (N, 8, 8 intensities in [0, 1]): ``(events, offsets)``; sample i is
    ``events[offsets[i]:offsets[i+1]]``, sorted by (t, y, x)."""
    s = settings
    N, h, w = images.shape
    centres = (np.arange(s.size) + 0.5) * (h / s.size) - 0.5
    big = _bilinear(images, centres, (np.arange(s.size) + 0.5) * (w / s.size) - 0.5)  # step 1
    origin = (s.sensor - s.size - s.amplitude) / 2.0
    C = s.contrast * (1.0 + s.mismatch * np.random.default_rng(s.seed).standard_normal((s.sensor, s.sensor)))
    times, dxs, dys = _saccade_offsets(s)
    grid = np.arange(s.sensor, dtype=np.float64)

    def log_intensity(dx, dy):  # step 2: the digit shifted by (dx, dy) on the sensor
        return np.log(_bilinear(big, grid - origin - dy, grid - origin - dx) + s.eps)

    L_ref = log_intensity(dxs[0], dys[0])
    parts = []
    for k in range(1, len(times)):
        diff = log_intensity(dxs[k], dys[k]) - L_ref
        # step 3: n = number of thresholds crossed, sign = polarity
        n = np.floor(np.abs(diff) / C).astype(np.int64)
        L_ref = L_ref + np.sign(diff) * n * C
        idx = np.nonzero(n)
        cnt = n[idx]
        rep = [np.repeat(a, cnt) for a in idx]
        j = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt) + 1  # j = 1..n within a pixel
        t = times[k - 1] + (j * (times[k] - times[k - 1])) // (np.repeat(cnt, cnt) + 1)
        p = (diff[idx] > 0).astype(np.int64)
        parts.append((rep[0], t, rep[2], rep[1], np.repeat(p, cnt)))
    sample, t, x, y, p = (np.concatenate(a) for a in zip(*parts))
    order = np.lexsort((x, y, t, sample))
    events = np.empty(order.size, dtype=EVENT_DTYPE)
    events["t"], events["x"], events["y"], events["p"] = t[order], x[order], y[order], p[order]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(sample, minlength=N))])
    return events, offsets


def event_digits_streams(settings: EventDigitsSettings | None = None, cache_dir=None) -> tuple:
    """``(events, offsets, labels)`` of all 1797 samples, from the cache or simulated (then cached)."""
    s = settings or EventDigitsSettings()
    if not isinstance(s, EventDigitsSettings):
        raise ValueError(f"settings must be an EventDigitsSettings, got {type(s).__name__}")
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"event_digits-{s.key()}.npz"
    pixels, labels = raw_digits()
    if path.exists():
        with np.load(path) as z:
            if str(z["settings"]) == json.dumps(asdict(s), sort_keys=True):
                return z["events"], z["offsets"], labels
    events, offsets = simulate(pixels.reshape(-1, 8, 8) / 16.0, s)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, events=events, offsets=offsets, settings=json.dumps(asdict(s), sort_keys=True))
    os.replace(tmp, path)
    return events, offsets, labels


def load_event_digits(split: str = "train", T: int = 4, split_by: str = "number", dtype=np.float64,
                      settings: EventDigitsSettings | None = None, cache_dir=None) -> Dataset:
    """The event digits as frames: x (N, T, 2, sensor, sensor) event counts, y (N,) int64.

    Synthetic (see the module docstring); the train/test split is that of ``load_digits``.
    """
    check_split(split)
    T = check_int("T", T, 1)
    if split_by not in SPLIT_BY:
        raise ValueError(f"split_by={split_by!r} is not valid; allowed: {SPLIT_BY}")
    dt = check_float_dtype(dtype)
    s = settings or EventDigitsSettings()
    events, offsets, labels = event_digits_streams(s, cache_dir)
    train_idx, test_idx = split_indices(labels)
    idx = train_idx if split == "train" else test_idx
    x = np.stack([to_frames(events[offsets[i]:offsets[i + 1]], T, s.sensor, s.sensor, split_by, dtype=dt)
                  for i in idx])
    return Dataset(x=x, y=labels[idx].astype(np.int64), classes=CLASSES, name=f"event_digits/{split}",
                   class_names=tuple(str(c) for c in range(CLASSES)))
