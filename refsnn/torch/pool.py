"""Max pooling whose gradient goes to the first maximum of a window in exact arithmetic (docs/golden.md 6.10).

After a quantized conv the values a pool sees lie on a lattice, so two positions of a window often hold
the same number in exact arithmetic and only rounding decides which one is "the first maximum" (the one
refsnn's and torch's pools route the gradient to). ``TieMaxPool2d`` makes that choice independent of
the summation order: the forward is ``torch.nn.functional.max_pool2d``; the backward sends each window's
gradient to the first position (row-major window order, as refsnn.kernels.pool) whose value lies within
``tie`` (relative) of the window's maximum.  With ``tie = 0`` it is torch's own pool.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: the relative gap under which two values of a window are one maximum (refsnn.golden.train_step's POOL_TIE)
TIE = 1e-5


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
        k, s, p, tie = ctx.args
        N, C, H, W = x.shape
        # windows (N, C, k*k, L) in row-major window order; padding never wins (-inf)
        cols = F.unfold(F.pad(x, (p, p, p, p), value=float("-inf")).reshape(N * C, 1, H + 2 * p, W + 2 * p), k,
                        stride=s).reshape(N, C, k * k, -1)
        top = y.reshape(N, C, 1, -1)
        # the positions within tie of the maximum; the first of them takes the gradient
        near = cols >= top - tie * torch.abs(top)
        first = torch.argmax(near.to(torch.uint8), dim=2, keepdim=True)
        onehot = torch.zeros_like(cols).scatter_(2, first, 1.0)
        g = (onehot * gy.reshape(N, C, 1, -1)).reshape(N * C, k * k, -1)
        gx = F.fold(g, (H + 2 * p, W + 2 * p), k, stride=s).reshape(N, C, H + 2 * p, W + 2 * p)
        return gx[:, :, p:p + H, p:p + W], None, None, None, None


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
