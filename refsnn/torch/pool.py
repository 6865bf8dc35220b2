"""Max pooling whose gradient goes to the first maximum of a window in exact arithmetic (docs/golden.md 6.10).

After a quantized conv the values a pool sees lie on a lattice, so two positions of a window often hold
the same number in exact arithmetic and only rounding decides which one is "the first maximum" (the one
refsnn's and torch's pools route the gradient to). ``TieMaxPool2d`` makes that choice independent of
the summation order: the forward is ``torch.nn.functional.max_pool2d``; the backward sends each window's
gradient to the first position (row-major window order, as refsnn.kernels.pool) whose value lies within
``tie`` (relative) of the window's maximum.  With ``tie = 0`` it is torch's own pool.  A window without such
a position (its maximum NaN, or an infinite maximum whose floor ``y - tie |y|`` is NaN) sends its gradient
to its first position.

Two backward passes compute that rule and agree bit for bit (tests/test_torch_pool.py):

* ``tie_grad_literal``: every window as a column (``F.unfold``, k*k values per output), a one-hot of the
  first near position, ``F.fold`` back: the rule as written, about 9x the input's memory for k = 3;
* ``tie_grad`` (the one ``TieMaxPool2d`` uses): a loop over the k*k window offsets in row-major order with
  strided slices of the unpadded input, a running "already taken" mask per output, and slice-adds into the
  input gradient: O(input) memory, nothing device-specific.  The adds reach each input position in offset
  order, the order in which ``F.fold`` sums them, so the two are the same bits.

``python -m refsnn.torch.poolbench`` measures both against ``F.max_pool2d``.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: the relative gap under which two values of a window are one maximum (refsnn.golden.train_step's POOL_TIE)
TIE = 1e-5


def floor_of_max(y, tie: float):
    """The smallest value within ``tie`` (relative) of each window maximum ``y``: ``y - tie |y|``."""
    return y - tie * torch.abs(y)


def windows(x, k: int, s: int, p: int):
    """The windows of a k x k, stride s, padding p pool as (N, C, k*k, L) columns, row-major window order;
    padding is -inf (it never wins a window that holds a number)."""
    N, C, H, W = x.shape
    xp = F.pad(x, (p, p, p, p), value=float("-inf")).reshape(N * C, 1, H + 2 * p, W + 2 * p)
    return F.unfold(xp, k, stride=s).reshape(N, C, k * k, -1)


def near_max(x, y, k: int, s: int, p: int, tie: float):
    """(N, C, k*k, L) bool: the positions of each window within ``tie`` of its maximum ``y`` (docs/golden.md 6.10)."""
    N, C = x.shape[:2]
    return windows(x, k, s, p) >= floor_of_max(y.reshape(N, C, 1, -1), tie)


def tie_grad_literal(x, y, gy, k: int, s: int, p: int, tie: float):
    """The pool's input gradient, the rule as written: one-hot of the first near position per window, folded."""
    N, C, H, W = x.shape
    near = near_max(x, y, k, s, p, tie)
    # the first position within tie of the maximum takes the window's gradient (all False: the first position)
    first = torch.argmax(near.to(torch.uint8), dim=2, keepdim=True)
    onehot = torch.zeros(near.shape, dtype=x.dtype, device=x.device).scatter_(2, first, 1.0)
    g = (onehot * gy.reshape(N, C, 1, -1)).reshape(N * C, k * k, -1)
    gx = F.fold(g, (H + 2 * p, W + 2 * p), k, stride=s).reshape(N, C, H + 2 * p, W + 2 * p)
    return gx[:, :, p:p + H, p:p + W]


def _span(n_out: int, size: int, s: int, p: int, d: int):
    """The outputs [lo, hi) whose window offset d falls inside the input (not in the padding), and its first row."""
    lo = max(0, -(-(p - d) // s))
    hi = min(n_out, (size - 1 + p - d) // s + 1)
    return lo, max(lo, hi), lo * s + d - p


def tie_grad(x, y, gy, k: int, s: int, p: int, tie: float):
    """The pool's input gradient by window offsets: ``tie_grad_literal``'s result in O(input) memory."""
    H, W = x.shape[2:]
    Ho, Wo = y.shape[2:]
    gx = torch.zeros_like(x)
    floor = floor_of_max(y, tie)
    # a padding position (-inf) is near only a window whose maximum is -inf; such a window never reaches gx
    pad_near = floor == float("-inf")
    any_pad_near = bool(pad_near.any()) if p else False
    # no position is near a NaN floor (a NaN maximum; inf - 0 * inf): the first position takes it (as argmax)
    taken = torch.isnan(floor)
    first = taken.clone()
    for off in range(k * k):
        di, dj = divmod(off, k)
        (i0, i1, r), (j0, j1, c) = _span(Ho, H, s, p, di), _span(Wo, W, s, p, dj)
        rows, cols = slice(r, r + s * (i1 - i0 - 1) + 1, s), slice(c, c + s * (j1 - j0 - 1) + 1, s)
        inside = (slice(None), slice(None), slice(i0, i1), slice(j0, j1))
        if any_pad_near:
            # the outputs whose offset (di, dj) lies in the padding: a -inf maximum is taken there (and dropped)
            outside = pad_near.clone()
            outside[inside] = False
            taken |= outside
        # the window value at offset (di, dj) of every output: a strided slice of the input
        near = x[:, :, rows, cols] >= floor[inside]
        # the first near offset of a window takes its gradient; later ones find it taken
        take = near & ~taken[inside]
        if off == 0:
            take |= first[inside]
        taken[inside] |= near
        gx[:, :, rows, cols] += gy[inside] * take.to(gy.dtype)
    return gx


class _TieMax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, k, s, p, tie):
        y = F.max_pool2d(x, k, s, p)
        ctx.save_for_backward(x, y)
        ctx.args = (k, s, p, tie)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, y = ctx.saved_tensors
        return tie_grad(x, y, gy, *ctx.args), None, None, None, None


class TieMaxPool2d(nn.Module):
    """``nn.MaxPool2d(k, stride, padding)`` with the gradient to the first maximum of a window within ``tie``."""

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0, tie: float = TIE):
        super().__init__()
        for name, v in (("kernel_size", kernel_size), ("stride", stride if stride is not None else kernel_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TieMaxPool2d: {name} must be an integer >= 1, got {v!r}")
        if not (isinstance(tie, float) and 0 <= tie < 1):
            raise ValueError(f"TieMaxPool2d: tie must be a float in [0, 1), got {tie!r}")
        self.kernel_size, self.stride, self.padding, self.tie = kernel_size, stride or kernel_size, padding, tie

    def forward(self, x):
        return _TieMax.apply(x, self.kernel_size, self.stride, self.padding, self.tie)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, tie={self.tie:g}"
