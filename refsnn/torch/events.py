"""Event frames in torch (docs/method.md §14): ``refsnn.data.events.to_frames`` for tensors on any device.

An event stream (``t``, ``x``, ``y``, ``p``: 1-D integer tensors, checked by refsnn's ``check_events``
rules when built with ``refsnn.data.make_events``) integrated into T frames of 2 channels (OFF, ON
counts). The slice rule is refsnn's, in integer arithmetic, so the frames are exact (golden case
``to_frames``); the port's data path may bin on the device the model runs on.
"""
from __future__ import annotations

import torch

from ..data.events import SPLIT_BY


def slice_index(t: torch.Tensor, T: int, split_by: str) -> torch.Tensor:
    """The frame k in 0..T-1 of each event of a sorted stream (``refsnn.data.events.slice_index``)."""
    n = t.shape[0]
    if split_by == "number":
        d = n // T
        if d == 0:  # fewer events than slices: all of them in the last slice
            return torch.full((n,), T - 1, dtype=torch.int64, device=t.device)
        # slice k holds events k d .. k d + d - 1; the last one also the n - T d left over
        return torch.clamp(torch.arange(n, device=t.device) // d, max=T - 1)
    span = int(t[-1] - t[0]) if n else 0
    if span == 0:
        return torch.zeros(n, dtype=torch.int64, device=t.device)
    # k = floor((t - t_first) T / (t_last - t_first)), the last slice closed on the right
    return torch.clamp(((t.long() - t[0].long()) * T) // span, max=T - 1)


def to_frames(t, x, y, p, T: int, height: int, width: int, split_by: str = "number",
              dtype=torch.float64) -> torch.Tensor:
    """Frames (T, 2, height, width): ``frames[k, c, y, x]`` = events of polarity c at (x, y) in slice k."""
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"to_frames: T must be an integer >= 1, got {T!r}")
    if split_by not in SPLIT_BY:
        raise ValueError(f"to_frames: split_by={split_by!r} is not valid; allowed: {SPLIT_BY}")
    k = slice_index(t, T, split_by)
    # one flat bin per (k, c, y, x)
    flat = ((k * 2 + p.long()) * height + y.long()) * width + x.long()
    counts = torch.bincount(flat, minlength=T * 2 * height * width)
    return counts.reshape(T, 2, height, width).to(dtype)
