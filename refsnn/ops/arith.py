"""Elementwise, reduction and shape ops: a forward and its VJP each.

Every VJP reduces a broadcast gradient back to its input's shape with
``unbroadcast``.  Python operators on ``Tensor`` (``+ - * / ** @``, unary ``-``,
indexing) are attached at the bottom of this file.
"""
from __future__ import annotations

import numpy as np

from ..autograd.tensor import Tensor, primitive, unbroadcast


def _axes(axis, ndim: int, op: str):
    """Normalise ``axis`` (None, int or tuple of ints) to a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (int(axis),)
    out = []
    for a in axis:
        if not isinstance(a, (int, np.integer)) or not -ndim <= a < max(ndim, 1):
            raise ValueError(f"{op}: axis {a!r} is out of range for a tensor with {ndim} dimensions "
                             f"(allowed {-ndim}..{ndim - 1})")
        out.append(int(a) % max(ndim, 1))
    return tuple(sorted(set(out)))


# -- binary arithmetic --------------------------------------------------------
@primitive
def add(ctx, a, b):
    """a + b (broadcasting)."""
    return a + b


@add.defvjp
def add_vjp(ctx, g):
    a, b = ctx.inputs
    return unbroadcast(g, a.shape), unbroadcast(g, b.shape)


@primitive
def sub(ctx, a, b):
    """a - b (broadcasting)."""
    return a - b


@sub.defvjp
def sub_vjp(ctx, g):
    a, b = ctx.inputs
    return unbroadcast(g, a.shape), unbroadcast(-g, b.shape)


@primitive
def mul(ctx, a, b):
    """a * b (broadcasting)."""
    return a * b


@mul.defvjp
def mul_vjp(ctx, g):
    a, b = ctx.inputs
    return unbroadcast(g * b, a.shape), unbroadcast(g * a, b.shape)


@primitive
def div(ctx, a, b):
    """a / b (broadcasting)."""
    return a / b


@div.defvjp
def div_vjp(ctx, g):
    a, b = ctx.inputs
    return unbroadcast(g / b, a.shape), unbroadcast(-g * a / (b * b), b.shape)


# -- unary --------------------------------------------------------------------
@primitive
def neg(ctx, a):
    """-a."""
    return -a


@neg.defvjp
def neg_vjp(ctx, g):
    return (-g,)


@primitive
def pow(ctx, a, *, exponent):  # noqa: A001 - the op's name
    """a ** exponent for a scalar (Python number) exponent."""
    if not isinstance(exponent, (int, float, np.integer, np.floating)) or not np.isfinite(exponent):
        raise TypeError(f"pow: exponent must be a finite Python number, got {exponent!r}")
    return a ** a.dtype.type(exponent)


@pow.defvjp
def pow_vjp(ctx, g):
    (a,) = ctx.inputs
    p = ctx.kwargs["exponent"]
    return (g * p * a ** a.dtype.type(p - 1),)


@primitive
def exp(ctx, a):
    """e^a."""
    return np.exp(a)


@exp.defvjp
def exp_vjp(ctx, g):
    return (g * ctx.out,)


@primitive
def log(ctx, a):
    """Natural logarithm."""
    return np.log(a)


@log.defvjp
def log_vjp(ctx, g):
    (a,) = ctx.inputs
    return (g / a,)


@primitive
def abs(ctx, a):  # noqa: A001 - the op's name
    """|a|; the gradient at 0 is taken as 0."""
    return np.abs(a)


@abs.defvjp
def abs_vjp(ctx, g):
    (a,) = ctx.inputs
    return (g * np.sign(a),)


@primitive
def relu(ctx, a):
    """max(a, 0); the gradient at 0 is taken as 0."""
    return np.maximum(a, 0)


@relu.defvjp
def relu_vjp(ctx, g):
    (a,) = ctx.inputs
    return (g * (a > 0),)


# -- reductions ---------------------------------------------------------------
@primitive
def sum(ctx, a, *, axis=None, keepdims=False):  # noqa: A001 - the op's name
    """Sum over ``axis`` (None: all)."""
    ctx.axes = _axes(axis, a.ndim, "sum")
    return np.sum(a, axis=ctx.axes, keepdims=keepdims)


@sum.defvjp
def sum_vjp(ctx, g):
    (a,) = ctx.inputs
    if not ctx.kwargs.get("keepdims", False):
        g = np.expand_dims(g, ctx.axes)
    return (np.broadcast_to(g, a.shape).copy(),)


@primitive
def mean(ctx, a, *, axis=None, keepdims=False):
    """Mean over ``axis`` (None: all)."""
    ctx.axes = _axes(axis, a.ndim, "mean")
    ctx.count = int(np.prod([a.shape[i] for i in ctx.axes])) if a.ndim else 1
    return np.mean(a, axis=ctx.axes, keepdims=keepdims)


@mean.defvjp
def mean_vjp(ctx, g):
    (a,) = ctx.inputs
    if not ctx.kwargs.get("keepdims", False):
        g = np.expand_dims(g, ctx.axes)
    return (np.broadcast_to(g / ctx.count, a.shape).copy(),)


@primitive
def amax(ctx, a, *, axis=None, keepdims=False):
    """Maximum over ``axis`` (None: all); ``Tensor.max``.  Ties share the gradient equally (as ``torch.amax``)."""
    ctx.axes = _axes(axis, a.ndim, "amax")
    if a.size == 0:
        raise ValueError(f"amax: the tensor of shape {a.shape} is empty; a maximum needs at least one element")
    return np.max(a, axis=ctx.axes, keepdims=keepdims)


@amax.defvjp
def amax_vjp(ctx, g):
    (a,) = ctx.inputs
    out = ctx.out
    if not ctx.kwargs.get("keepdims", False):
        g, out = np.expand_dims(g, ctx.axes), np.expand_dims(out, ctx.axes)
    winners = a == out
    # d max / d a_i = 1 / (number of maxima) at every maximum, 0 elsewhere
    return (g * winners / winners.sum(axis=ctx.axes, keepdims=True),)


def argmax(a, axis=None, keepdims: bool = False) -> Tensor:
    """Index of the (first) maximum along ``axis`` (None: of the flattened tensor); int64, no gradient."""
    data = a.data if isinstance(a, Tensor) else np.asarray(a)
    if axis is not None:
        axis = _axes(axis, data.ndim, "argmax")
        if len(axis) != 1:
            raise ValueError(f"argmax: axis must be None or one int, got {axis!r}")
        axis = axis[0]
    if data.size == 0:
        raise ValueError(f"argmax: the tensor of shape {data.shape} is empty")
    return Tensor(np.asarray(np.argmax(data, axis=axis, keepdims=keepdims), dtype=np.int64))


# -- shapes -------------------------------------------------------------------
@primitive
def reshape(ctx, a, *, shape):
    """The same elements in a new shape (one -1 allowed)."""
    try:
        return np.reshape(a, shape)
    except ValueError:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {a.shape} ({a.size} elements) "
                         f"into shape {tuple(shape)}") from None


@reshape.defvjp
def reshape_vjp(ctx, g):
    return (np.reshape(g, ctx.inputs[0].shape),)


@primitive
def transpose(ctx, a, *, axes=None):
    """Permute the axes (None: reverse them)."""
    if axes is not None and sorted(int(i) % max(a.ndim, 1) for i in axes) != list(range(a.ndim)):
        raise ValueError(f"transpose: axes {tuple(axes)} are not a permutation of 0..{a.ndim - 1}")
    return np.transpose(a, axes)


@transpose.defvjp
def transpose_vjp(ctx, g):
    axes = ctx.kwargs.get("axes")
    inverse = None if axes is None else np.argsort([int(i) % g.ndim for i in axes])
    return (np.transpose(g, inverse),)


def flatten(a, start_dim: int = 1, end_dim: int = -1) -> Tensor:
    """Merge the dimensions ``start_dim..end_dim`` into one (default: all but the batch axis, as ``nn.Flatten``).

    ``Tensor.flatten()`` defaults to ``start_dim=0`` (everything), as ``torch.flatten``.
    """
    shape = tuple(a.shape)
    n = max(len(shape), 1)
    for name, d in (("start_dim", start_dim), ("end_dim", end_dim)):
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not -n <= d < n:
            raise ValueError(f"flatten: {name}={d!r} is out of range for shape {shape} (allowed {-n}..{n - 1})")
    start, end = int(start_dim) % n, int(end_dim) % n
    if start > end:
        raise ValueError(f"flatten: start_dim={start_dim} comes after end_dim={end_dim} for shape {shape}")
    return reshape(a, shape=shape[:start] + (-1,) + shape[end + 1:])


@primitive
def concatenate(ctx, *arrays, axis=0):
    """Join tensors along ``axis``."""
    if not arrays:
        raise ValueError("concatenate: needs at least one tensor")
    try:
        return np.concatenate(arrays, axis=axis)
    except ValueError as e:
        raise ValueError(f"concatenate: shapes {[x.shape for x in arrays]} do not fit along axis {axis}: {e}") from None


@concatenate.defvjp
def concatenate_vjp(ctx, g):
    axis = ctx.kwargs.get("axis", 0)
    bounds = np.cumsum([x.shape[axis] for x in ctx.inputs])[:-1]
    return tuple(np.split(g, bounds, axis=axis))


@primitive
def getitem(ctx, a, *, index):
    """a[index] (basic or advanced indexing)."""
    return a[index]


def _basic_index(index) -> bool:
    """Slices, integers, Ellipsis and None only: each element of ``a`` is picked at most once."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (slice, int, np.integer, type(Ellipsis), type(None))) and not isinstance(i, bool)
               for i in parts)


@getitem.defvjp
def getitem_vjp(ctx, g):
    (a,) = ctx.inputs
    ga = np.zeros_like(a)
    index = ctx.kwargs["index"]
    if _basic_index(index):
        ga[index] = g  # a view: no element repeats
    else:
        np.add.at(ga, index, g)  # repeated indices accumulate
    return (ga,)


# -- linear algebra -----------------------------------------------------------
@primitive
def matmul(ctx, a, b):
    """a @ b for 2-D (or batched) operands."""
    if a.ndim < 1 or b.ndim < 1 or a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match "
                         "(the last axis of a must equal the second-to-last of b)")
    return a @ b


@matmul.defvjp
def matmul_vjp(ctx, g):
    a, b = ctx.inputs
    if a.ndim == 1 or b.ndim == 1:
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if a.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        if b.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        ga = g2 @ np.swapaxes(b2, -1, -2)
        gb = np.swapaxes(a2, -1, -2) @ g2
        if a.ndim == 1:
            ga = ga[..., 0, :]
        if b.ndim == 1:
            gb = gb[..., :, 0]
        return unbroadcast(ga, a.shape), unbroadcast(gb, b.shape)
    ga = g @ np.swapaxes(b, -1, -2)
    gb = np.swapaxes(a, -1, -2) @ g
    return unbroadcast(ga, a.shape), unbroadcast(gb, b.shape)


# -- Python operators on Tensor ------------------------------------------------
Tensor.__add__ = lambda a, b: add(a, b)
Tensor.__radd__ = lambda a, b: add(b, a)
Tensor.__sub__ = lambda a, b: sub(a, b)
Tensor.__rsub__ = lambda a, b: sub(b, a)
Tensor.__mul__ = lambda a, b: mul(a, b)
Tensor.__rmul__ = lambda a, b: mul(b, a)
Tensor.__truediv__ = lambda a, b: div(a, b)
Tensor.__rtruediv__ = lambda a, b: div(b, a)
Tensor.__neg__ = lambda a: neg(a)
Tensor.__pow__ = lambda a, p: pow(a, exponent=p)
Tensor.__matmul__ = lambda a, b: matmul(a, b)
Tensor.__rmatmul__ = lambda a, b: matmul(b, a)
Tensor.__getitem__ = lambda a, index: getitem(a, index=index)
Tensor.sum = lambda a, axis=None, keepdims=False: sum(a, axis=axis, keepdims=keepdims)
Tensor.mean = lambda a, axis=None, keepdims=False: mean(a, axis=axis, keepdims=keepdims)
Tensor.reshape = lambda a, *shape: reshape(a, shape=shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)
Tensor.transpose = lambda a, *axes: transpose(a, axes=(axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes) or None)
Tensor.max = lambda a, axis=None, keepdims=False: amax(a, axis=axis, keepdims=keepdims)
Tensor.argmax = lambda a, axis=None, keepdims=False: argmax(a, axis=axis, keepdims=keepdims)
Tensor.flatten = lambda a, start_dim=0, end_dim=-1: flatten(a, start_dim, end_dim)
Tensor.view = Tensor.reshape  # refsnn has no views: the result may share the data array, never the tape node
Tensor.T = property(lambda a: transpose(a, axes=None))
Tensor.exp = lambda a: exp(a)
Tensor.log = lambda a: log(a)
Tensor.relu = lambda a: relu(a)
Tensor.abs = lambda a: abs(a)
