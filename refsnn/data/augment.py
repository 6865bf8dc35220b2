"""Per-batch augmentation: random crop with padding, then horizontal flip.

This is the usual CIFAR recipe (pad 4, crop back to the original size, flip
left-right with probability 1/2), written as one vectorised gather over the
whole batch. All randomness comes from the Generator passed in, in this order:

    dy   = rng.integers(0, 2*pad + 1, size=B)   # crop row offset into the padded image
    dx   = rng.integers(0, 2*pad + 1, size=B)   # crop column offset
    flip = rng.random(B) < flip_prob             # mirror this sample left-right

so another implementation can reproduce the exact same batch from the same
Generator state.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np

from .dataset import check_int


class RandomCropFlip:
    """Random crop with constant padding ``pad`` followed by a random horizontal flip.

    Parameters
    ----------
    pad : padding (pixels) on every side before cropping back to (H, W); 0 disables the crop.
    flip_prob : probability in [0, 1] of mirroring a sample left-right.
    fill : padding value, a scalar or one value per channel. ``0.0`` pads with
        zeros of the (normalised) array; `load_cifar` passes ``-mean_c / std_c``
        so that the padding is a black raw pixel, as with torchvision's
        ``RandomCrop(32, padding=4)`` applied before ``Normalize``.

    Call as ``aug(x, rng)`` with x of shape (B, C, H, W); returns a new array of
    the same shape and dtype; ``x`` is not modified.
    """

    def __init__(self, pad: int = 4, flip_prob: float = 0.5, fill: Union[float, Sequence[float]] = 0.0):
        self.pad = check_int("pad", pad, 0)
        flip_prob = float(flip_prob)
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"flip_prob={flip_prob} is out of range; allowed: [0, 1]")
        self.flip_prob = flip_prob
        fill_arr = np.asarray(fill, dtype=np.float64)
        if fill_arr.ndim > 1 or not np.all(np.isfinite(fill_arr)):
            raise ValueError(f"fill={fill!r} must be a finite scalar or a 1-D sequence (one per channel)")
        self.fill = fill_arr

    def __repr__(self) -> str:
        fill = self.fill.tolist()
        return f"RandomCropFlip(pad={self.pad}, flip_prob={self.flip_prob}, fill={fill})"

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not isinstance(x, np.ndarray) or x.ndim != 4:
            raise ValueError(
                f"RandomCropFlip expects x of shape (B, C, H, W), got shape {getattr(x, 'shape', None)}"
            )
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        b, c, h, w = x.shape
        if self.fill.ndim == 1 and self.fill.shape[0] != c:
            raise ValueError(f"fill has {self.fill.shape[0]} values but x has {c} channels")
        p = self.pad

        # Pad once: (B, C, H + 2p, W + 2p), border filled with `fill` (per channel).
        padded = np.empty((b, c, h + 2 * p, w + 2 * p), dtype=x.dtype)
        padded[...] = self.fill.reshape(1, -1, 1, 1) if self.fill.ndim == 1 else self.fill
        padded[:, :, p : p + h, p : p + w] = x

        dy = rng.integers(0, 2 * p + 1, size=b)
        dx = rng.integers(0, 2 * p + 1, size=b)
        flip = rng.random(b) < self.flip_prob

        rows = dy[:, None] + np.arange(h)[None, :]  # (B, H): source row of each output row
        cols = dx[:, None] + np.arange(w)[None, :]  # (B, W): source column of each output column
        cols = np.where(flip[:, None], cols[:, ::-1], cols)  # flip = read the crop right-to-left
        return padded[
            np.arange(b)[:, None, None, None],
            np.arange(c)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]
