"""Neural-network ops: linear, conv2d, batch_norm, pools, dropout, softmax, log_softmax, cross_entropy, mse_loss.

Each is a forward (calling a kernel from ``refsnn.kernels`` where there is a hot
loop) and a named VJP.  Arguments are checked here, at the public boundary.
"""
from __future__ import annotations

import numpy as np

from ..autograd.tensor import Tensor, primitive
from ..kernels import conv as _conv
from ..kernels import pool as _pool
from ..random import resolve as resolve_rng


def _pair(value, name: str, op: str, minimum: int) -> tuple:
    """An int or a pair of ints >= minimum, as a 2-tuple."""
    vals = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(vals) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vals):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in vals):
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return int(vals[0]), int(vals[1])


def _check_ndim(x, ndims, name: str, op: str, layout: str):
    if x.ndim not in ndims:
        raise ValueError(f"{op}: {name} must have {' or '.join(map(str, ndims))} dimensions ({layout}), "
                         f"got shape {tuple(x.shape)}")


# -- linear -------------------------------------------------------------------
@primitive
def _linear(ctx, x, w, *bias):
    # (..., in) inputs as one 2-D (rows, in) matrix: one BLAS call for all tokens of all samples
    x2 = x.reshape(-1, x.shape[-1])
    y = x2 @ w.T + bias[0] if bias else x2 @ w.T
    return y.reshape(x.shape[:-1] + (w.shape[0],))


@_linear.defvjp
def linear_vjp(ctx, g):
    x, w = ctx.inputs[:2]
    g2 = g.reshape(-1, g.shape[-1])
    gx = (g2 @ w).reshape(x.shape)
    gw = g2.T @ x.reshape(-1, x.shape[-1])
    grads = (gx, gw)
    if len(ctx.inputs) == 3:
        grads += (g2.sum(axis=0),)
    return grads


def linear(x, w, bias=None) -> Tensor:
    """y = x w^T + bias, with x (..., in), w (out, in), bias (out,)."""
    if w.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out, in), got shape {tuple(w.shape)}")
    if x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear: input has {x.shape[-1] if x.ndim else 0} features (shape {tuple(x.shape)}), "
                         f"the weight expects {w.shape[1]} (weight shape {tuple(w.shape)})")
    if bias is not None:
        if tuple(bias.shape) != (w.shape[0],):
            raise ValueError(f"linear: bias must have shape ({w.shape[0]},), got {tuple(bias.shape)}")
        return _linear(x, w, bias)
    return _linear(x, w)


# -- conv2d -------------------------------------------------------------------
@primitive
def _conv2d(ctx, x, w, *bias, stride, padding, impl):
    y = _conv.conv2d_forward(x, w, stride=stride, padding=padding, impl=impl)
    if bias:
        y += bias[0].reshape(1, -1, 1, 1)
    return y


@_conv2d.defvjp
def conv2d_vjp(ctx, g):
    x, w = ctx.inputs[:2]
    kw = dict(stride=ctx.kwargs["stride"], padding=ctx.kwargs["padding"], impl=ctx.kwargs["impl"])
    g = np.ascontiguousarray(g)
    grads = _conv.conv2d_backward(g, x, w, **kw, need=ctx.needs_grad[:2])
    if len(ctx.inputs) == 3:
        grads += (g.sum(axis=(0, 2, 3)),)
    return grads


def conv2d(x, w, bias=None, stride=1, padding=0, impl: str = "numba") -> Tensor:
    """2-D cross-correlation, NCHW: y[n,o,i,j] = sum_{c,p,q} w[o,c,p,q] x_pad[n,c,i*sh+p,j*sw+q] + b[o]."""
    _check_ndim(x, (4,), "input", "conv2d", "N, C, H, W")
    _check_ndim(w, (4,), "weight", "conv2d", "C_out, C_in, kh, kw")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"conv2d: input has {x.shape[1]} channels, the weight expects {w.shape[1]} "
                         f"(input shape {tuple(x.shape)}, weight shape {tuple(w.shape)})")
    stride = _pair(stride, "stride", "conv2d", 1)
    padding = _pair(padding, "padding", "conv2d", 0)
    for axis, name in ((2, "height"), (3, "width")):
        k, pad = w.shape[axis], padding[axis - 2]
        if x.shape[axis] + 2 * pad < k:
            raise ValueError(f"conv2d: the padded input {name} {x.shape[axis]}+2*{pad} is smaller than the kernel "
                             f"{name} {k}")
    if bias is not None:
        if tuple(bias.shape) != (w.shape[0],):
            raise ValueError(f"conv2d: bias must have shape ({w.shape[0]},), got {tuple(bias.shape)}")
        return _conv2d(x, w, bias, stride=stride, padding=padding, impl=impl)
    return _conv2d(x, w, stride=stride, padding=padding, impl=impl)


# -- batch norm ---------------------------------------------------------------
@primitive
def _batch_norm(ctx, x, gamma, beta, *, running_mean, running_var, training, momentum, eps):
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    shape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
    if training:
        mu = x.mean(axis=axes)
        var = x.var(axis=axes)  # biased: used to normalise
        m = x.size // x.shape[1]
        if running_mean is not None:
            # running statistics use the unbiased variance, as PyTorch does
            running_mean *= 1 - momentum
            running_mean += momentum * mu
            running_var *= 1 - momentum
            running_var += momentum * var * (m / (m - 1))
    else:
        mu, var = running_mean, running_var
    inv_std = 1.0 / np.sqrt(var + x.dtype.type(eps))
    xhat = (x - mu.reshape(shape)) * inv_std.reshape(shape)
    ctx.xhat, ctx.inv_std, ctx.axes, ctx.shape = xhat, inv_std, axes, shape
    return xhat * gamma.reshape(shape) + beta.reshape(shape)


@_batch_norm.defvjp
def batch_norm_vjp(ctx, g):
    x, gamma, _ = ctx.inputs
    xhat, inv_std, axes, shape = ctx.xhat, ctx.inv_std, ctx.axes, ctx.shape
    ggamma = (g * xhat).sum(axis=axes)
    gbeta = g.sum(axis=axes)
    gxhat = g * gamma.reshape(shape)
    if ctx.kwargs["training"]:
        m = x.size // x.shape[1]
        gx = (inv_std.reshape(shape) / m) * (m * gxhat - gxhat.sum(axis=axes).reshape(shape)
                                               - xhat * (gxhat * xhat).sum(axis=axes).reshape(shape))
    else:
        gx = gxhat * inv_std.reshape(shape)
    return gx, ggamma, gbeta


def batch_norm(x, gamma, beta, running_mean, running_var, training: bool, momentum: float = 0.1,
               eps: float = 1e-5) -> Tensor:
    """Batch normalisation over (N,) or (N, H, W) per channel, for 2-D (N, C) or 4-D (N, C, H, W) input.

    In training the batch statistics normalise and ``running_mean`` /
    ``running_var`` (ndarrays, updated in place; may be None) move by
    ``momentum`` towards the batch mean and the *unbiased* batch variance.
    In evaluation the running statistics normalise.
    """
    _check_ndim(x, (2, 4), "input", "batch_norm", "N, C or N, C, H, W")
    c = x.shape[1]
    for name, t in (("gamma", gamma), ("beta", beta)):
        if tuple(t.shape) != (c,):
            raise ValueError(f"batch_norm: {name} must have shape ({c},), got {tuple(t.shape)}")
    for name, t in (("running_mean", running_mean), ("running_var", running_var)):
        if t is not None and (not isinstance(t, np.ndarray) or t.shape != (c,) or t.dtype != x.dtype):
            raise ValueError(f"batch_norm: {name} must be an ndarray of shape ({c},) and dtype {x.dtype}, "
                             f"got {type(t).__name__} {getattr(t, 'shape', '')} {getattr(t, 'dtype', '')}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: evaluation (training=False) needs running_mean and running_var")
    if training and x.size // c < 2:
        raise ValueError(f"batch_norm: training needs more than one value per channel, got input shape {tuple(x.shape)}")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"batch_norm: momentum must be in [0, 1], got {momentum}")
    if not eps > 0:
        raise ValueError(f"batch_norm: eps must be > 0, got {eps}")
    return _batch_norm(x, gamma, beta, running_mean=running_mean, running_var=running_var,
                       training=bool(training), momentum=float(momentum), eps=float(eps))


# -- pooling ------------------------------------------------------------------
@primitive
def _max_pool2d(ctx, x, *, kernel_size, stride, padding, impl):
    y, ctx.argmax = _pool.max_pool2d_forward(x, kernel_size, stride, padding, impl=impl)
    return y


@_max_pool2d.defvjp
def max_pool2d_vjp(ctx, g):
    return (_pool.max_pool2d_backward(np.ascontiguousarray(g), ctx.argmax, ctx.inputs[0].shape,
                                      impl=ctx.kwargs["impl"]),)


@primitive
def _avg_pool2d(ctx, x, *, kernel_size, stride, padding, impl):
    return _pool.avg_pool2d_forward(x, kernel_size, stride, padding, impl=impl)


@_avg_pool2d.defvjp
def avg_pool2d_vjp(ctx, g):
    kw = ctx.kwargs
    return (_pool.avg_pool2d_backward(np.ascontiguousarray(g), ctx.inputs[0].shape, kw["kernel_size"],
                                      kw["stride"], kw["padding"], impl=kw["impl"]),)


def _pool_args(op, x, kernel_size, stride, padding):
    _check_ndim(x, (4,), "input", op, "N, C, H, W")
    k = _pair(kernel_size, "kernel_size", op, 1)
    s = k if stride is None else _pair(stride, "stride", op, 1)
    p = _pair(padding, "padding", op, 0)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{op}: padding {p} must be at most half the kernel size {k}")
    if x.shape[2] + 2 * p[0] < k[0] or x.shape[3] + 2 * p[1] < k[1]:
        raise ValueError(f"{op}: input {tuple(x.shape[2:])} padded by {p} is smaller than the kernel {k}")
    return k, s, p


def max_pool2d(x, kernel_size, stride=None, padding=0, impl: str = "numba") -> Tensor:
    """Max over k x k windows (padding counts as -inf); the gradient goes to the first maximum."""
    k, s, p = _pool_args("max_pool2d", x, kernel_size, stride, padding)
    return _max_pool2d(x, kernel_size=k, stride=s, padding=p, impl=impl)


def avg_pool2d(x, kernel_size, stride=None, padding=0, impl: str = "numba") -> Tensor:
    """Mean over k x k windows (zero padding included in the count, like PyTorch's default)."""
    k, s, p = _pool_args("avg_pool2d", x, kernel_size, stride, padding)
    return _avg_pool2d(x, kernel_size=k, stride=s, padding=p, impl=impl)


def _adaptive_bins(n_in: int, n_out: int) -> list:
    """The windows [start, end) of adaptive pooling: start = floor(i n_in / n_out), end = ceil((i + 1) n_in / n_out)."""
    return [((i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)) for i in range(n_out)]


@primitive
def _adaptive_avg_pool2d(ctx, x, *, output_size):
    oh, ow = output_size
    ctx.bins = _adaptive_bins(x.shape[2], oh), _adaptive_bins(x.shape[3], ow)
    out = np.empty(x.shape[:2] + (oh, ow), dtype=x.dtype)
    for i, (h0, h1) in enumerate(ctx.bins[0]):
        for j, (w0, w1) in enumerate(ctx.bins[1]):
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return out


@_adaptive_avg_pool2d.defvjp
def adaptive_avg_pool2d_vjp(ctx, g):
    (x,) = ctx.inputs
    gx = np.zeros_like(x)
    for i, (h0, h1) in enumerate(ctx.bins[0]):
        for j, (w0, w1) in enumerate(ctx.bins[1]):
            # each input of a window gets g / (window size); overlapping windows add up
            gx[:, :, h0:h1, w0:w1] += g[:, :, i, j, None, None] / ((h1 - h0) * (w1 - w0))
    return (gx,)


def adaptive_avg_pool2d(x, output_size=1) -> Tensor:
    """Average pooling to an ``output_size`` (int or pair) grid, as ``torch.nn.functional.adaptive_avg_pool2d``.

    Window i of an axis of length n covers [floor(i n / o), ceil((i + 1) n / o)).
    Output size 1 (global average pooling, what the models use) is one mean.
    """
    from .arith import mean
    _check_ndim(x, (4,), "input", "adaptive_avg_pool2d", "N, C, H, W")
    oh, ow = _pair(output_size, "output_size", "adaptive_avg_pool2d", 1)
    if (oh, ow) == (1, 1):
        return mean(x, axis=(2, 3), keepdims=True)
    if oh > x.shape[2] or ow > x.shape[3]:
        raise ValueError(f"adaptive_avg_pool2d: output_size {(oh, ow)} is larger than the input's "
                         f"{tuple(x.shape[2:])}; it must be at most the input size")
    return _adaptive_avg_pool2d(x, output_size=(oh, ow))


# -- softmax and loss ---------------------------------------------------------
@primitive
def _log_softmax(ctx, x, *, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


@_log_softmax.defvjp
def log_softmax_vjp(ctx, g):
    axis = ctx.kwargs["axis"]
    return (g - np.exp(ctx.out) * g.sum(axis=axis, keepdims=True),)


@primitive
def _softmax(ctx, x, *, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@_softmax.defvjp
def softmax_vjp(ctx, g):
    s = ctx.out
    # d s_i / d x_j = s_i (delta_ij - s_j)  =>  g_x = s * (g - sum(g * s))
    return (s * (g - (g * s).sum(axis=ctx.kwargs["axis"], keepdims=True)),)


def softmax(x, axis: int = -1) -> Tensor:
    """exp(x) / sum exp(x) along ``axis``, computed stably (the max is subtracted first)."""
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"softmax: axis {axis} is out of range for shape {tuple(x.shape)}")
    return _softmax(x, axis=axis)


def log_softmax(x, axis: int = -1) -> Tensor:
    """log(exp(x) / sum exp(x)) along ``axis``, computed stably."""
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"log_softmax: axis {axis} is out of range for shape {tuple(x.shape)}")
    return _log_softmax(x, axis=axis)


@primitive
def _nll(ctx, logp, *, labels):
    return -logp[np.arange(len(labels)), labels].mean()


@_nll.defvjp
def nll_vjp(ctx, g):
    (logp,) = ctx.inputs
    labels = ctx.kwargs["labels"]
    gl = np.zeros_like(logp)
    gl[np.arange(len(labels)), labels] = -g / len(labels)
    return (gl,)


def cross_entropy(logits, labels) -> Tensor:
    """Mean over the batch of -log softmax(logits)[label]; ``labels`` are integers in [0, classes)."""
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be 2-D (batch, classes), got shape {tuple(logits.shape)}")
    labels = labels.data if isinstance(labels, Tensor) else np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: labels must be integers, got dtype {labels.dtype}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"cross_entropy: labels must have shape ({logits.shape[0]},), got {labels.shape}")
    if logits.shape[0] == 0:
        raise ValueError("cross_entropy: the batch is empty (logits of shape "
                         f"{tuple(logits.shape)}); the mean over N = 0 samples is undefined")
    n_cls = logits.shape[1]
    if labels.size and (labels.min() < 0 or labels.max() >= n_cls):
        bad = labels[(labels < 0) | (labels >= n_cls)][0]
        raise ValueError(f"cross_entropy: label {int(bad)} is out of range; labels must be in [0, {n_cls - 1}]")
    data = logits.data if isinstance(logits, Tensor) else np.asarray(logits)
    if not np.isfinite(data).all():
        raise ValueError("cross_entropy: the logits contain NaN or inf (NaN in a loss); "
                         "check the learning rate and the inputs")
    return _nll(log_softmax(logits, axis=1), labels=labels.astype(np.int64))


def mse_loss(input, target, reduction: str = "mean") -> Tensor:
    """(input - target)^2 averaged (``"mean"``), summed (``"sum"``) or kept elementwise (``"none"``), as torch.

    ``target`` may be a Tensor (its gradient is computed too) or an array of the same shape.
    """
    from .arith import mean, mul, sub, sum
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"mse_loss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if tuple(np.shape(target.data if isinstance(target, Tensor) else target)) != tuple(input.shape):
        raise ValueError(f"mse_loss: target has shape {tuple(np.shape(getattr(target, 'data', target)))}, "
                         f"input {tuple(input.shape)}; they must be equal (no broadcasting, unlike torch's warning)")
    d = sub(input, target)
    sq = mul(d, d)
    if reduction == "none":
        return sq
    return mean(sq) if reduction == "mean" else sum(sq)


def check_dropout_p(p, owner: str) -> float:
    """A dropout probability must be a number in [0, 1)."""
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not 0 <= p < 1:
        raise ValueError(f"{owner}: p must be a number in [0, 1), got {p!r}")
    return float(p)


def dropout(x, p: float = 0.5, training: bool = True, rng=None) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1 / (1 - p) (inverted dropout); identity
    when ``training`` is False or p = 0.  The mask is drawn from ``rng`` (default: the global generator of
    ``refsnn.manual_seed``)."""
    from .arith import mul
    p = check_dropout_p(p, "dropout")
    if not training or p == 0:
        return x
    data = x.data if isinstance(x, Tensor) else np.asarray(x)
    keep = resolve_rng(rng).random(data.shape) >= p
    return mul(x, keep.astype(data.dtype) / data.dtype.type(1 - p))
