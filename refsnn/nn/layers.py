"""Plain (non-spiking) layers: Linear, Conv2d, BatchNorm1d/2d, TokenBatchNorm, ReLU, pooling, Flatten, Identity."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..autograd.tensor import DEFAULT_DTYPE, check_float_dtype
from ..ops.nn import check_dropout_p
from ..random import resolve as resolve_rng
from .module import Module, Parameter


def positive_int(value, name: str, owner: str) -> int:
    """``value`` as an int if it is an integer >= 1, else a ValueError naming ``owner`` and ``name``."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}: {name} must be an integer >= 1, got {value!r}")
    return int(value)


def kaiming_normal(shape, fan_in: int, rng, dtype) -> np.ndarray:
    """He initialisation for ReLU networks: N(0, 2 / fan_in)."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


class Linear(Module):
    """y = x W^T + b."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None, dtype=DEFAULT_DTYPE):
        super().__init__()
        self.in_features = positive_int(in_features, "in_features", "Linear")
        self.out_features = positive_int(out_features, "out_features", "Linear")
        dtype = check_float_dtype(dtype)
        w = kaiming_normal((out_features, in_features), in_features, resolve_rng(rng), dtype)
        self.weight = Parameter(w, "weight")
        self.bias = Parameter(np.zeros(out_features, dtype), "bias") if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """2-D convolution (cross-correlation), NCHW.

    ``bias=True`` by default, as ``torch.nn.Conv2d``.  (The paper's ``SpikingConv2d``
    keeps ``bias=False``: in its models every convolution is followed by batch norm,
    whose shift makes a bias redundant; no model of refsnn uses this plain layer.)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, bias: bool = True,
                 rng=None, dtype=DEFAULT_DTYPE):
        super().__init__()
        self.in_channels = positive_int(in_channels, "in_channels", "Conv2d")
        self.out_channels = positive_int(out_channels, "out_channels", "Conv2d")
        k = (kernel_size, kernel_size) if isinstance(kernel_size, (int, np.integer)) else tuple(kernel_size)
        for v in k:
            positive_int(v, "kernel_size", "Conv2d")
        self.kernel_size, self.stride, self.padding = k, stride, padding
        dtype = check_float_dtype(dtype)
        fan_in = in_channels * k[0] * k[1]
        w = kaiming_normal((out_channels, in_channels) + k, fan_in, resolve_rng(rng), dtype)
        self.weight = Parameter(w, "weight")
        self.bias = Parameter(np.zeros(out_channels, dtype), "bias") if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class _BatchNorm(Module):
    _ndim = 4

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5, dtype=DEFAULT_DTYPE):
        super().__init__()
        self.num_features = positive_int(num_features, "num_features", type(self).__name__)
        dtype = check_float_dtype(dtype)
        self.momentum, self.eps = float(momentum), float(eps)
        self.weight = Parameter(np.ones(num_features, dtype), "bn")
        self.bias = Parameter(np.zeros(num_features, dtype), "bn")
        self.register_buffer("running_mean", np.zeros(num_features, dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype))

    def forward(self, x):
        if x.ndim != self._ndim:
            raise ValueError(f"{type(self).__name__}: expected a {self._ndim}-D input, got shape {tuple(x.shape)}")
        return F.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var, self.training,
                            self.momentum, self.eps)

    def extra_repr(self):
        return str(self.num_features)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) maps per channel."""
    _ndim = 4


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) features per channel."""
    _ndim = 2


class TokenBatchNorm(_BatchNorm):
    """Batch normalisation of (N, L, D) tokens per feature over the N*L tokens (Spikformer's BatchNorm1d)."""
    _ndim = 3

    def forward(self, x):
        if x.ndim != 3 or x.shape[2] != self.num_features:
            raise ValueError(f"TokenBatchNorm: expected (N, L, {self.num_features}) tokens, got shape {tuple(x.shape)}")
        return F.token_batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var, self.training,
                                  self.momentum, self.eps)


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class Identity(Module):
    def forward(self, x):
        return x


class Flatten(Module):
    def forward(self, x):
        return F.flatten(x)


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(MaxPool2d):
    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


class AdaptiveAvgPool2d(Module):
    """Average pooling to an ``output_size`` grid (int or pair; 1 = global average pooling), as torch."""

    def __init__(self, output_size=1):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class Dropout(Module):
    """Zero each element with probability ``p`` while training, scaling the rest by 1 / (1 - p); identity in eval.

    Masks come from ``rng`` (an int seed or a numpy Generator, kept for the module's
    life) or, by default, from the global generator of ``refsnn.manual_seed``.
    """

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        self.p = check_dropout_p(p, "Dropout")
        self.rng = None if rng is None else resolve_rng(rng)

    def forward(self, x):
        return F.dropout(x, self.p, self.training, rng=self.rng)

    def extra_repr(self):
        return f"p={self.p}"
