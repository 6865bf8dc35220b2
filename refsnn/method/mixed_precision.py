"""The mixed-precision ANN baseline of Table 8 (docs/method.md §15): Uhlich et al. 2019
(arXiv:1905.11452), the "(d, q_max)" parametrization of a uniform quantizer, as two tape ops.

A quantizer has a learnable step ``d > 0`` and a learnable range ``q_max > 0``; its width is derived:

    Q(x)  = sign(xc) * d * floor(|xc| / d + 1/2),   xc = clip(x, q_min, q_max)          (U3 forward)
            q_min = -q_max (signed: weights, a signed input) or 0 (unsigned: ReLU activations)
    b     = ceil(log2(q_max / d + 1)) (+ 1 when signed)                                 (derived width)

Gradients (the paper's straight-through choice for this parametrization):

    dQ/dx     = [q_min <= x <= q_max]
    dQ/dd     = (Q(x) - x) / d     inside,   0 outside
    dQ/dq_max = 0                  inside,   sign(x) outside (x > q_max: +1; signed x < -q_max: -1;
                                              unsigned x < 0: 0, since q_min = 0 does not move)
    db/dd     = -q_max / (d (q_max + d) ln2),   db/dq_max = 1 / ((q_max + d) ln2)   (straight through the ceil)

Both ops are elementwise NumPy (no numba kernel: the baseline runs on the small models only).
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd.tensor import Tensor, primitive

LN2 = math.log(2.0)


def _grid_low(q_max, signed: bool):
    return -q_max if signed else np.zeros_like(q_max)


@primitive
def _uq(ctx, x, d, q_max, *, signed):
    q_min = _grid_low(q_max, signed)
    # U3 forward: xc = clip(x, q_min, q_max)
    xc = np.clip(x, q_min, q_max)
    # U3 forward: Q = sign(xc) d floor(|xc| / d + 1/2)  (round half away from zero on the grid of step d)
    return np.sign(xc) * d * np.floor(np.abs(xc) / d + 0.5)


@_uq.defvjp
def uq_vjp(ctx, g):
    """dQ/dx, dQ/dd, dQ/dq_max of Uhlich et al.'s (d, q_max) parametrization (module docstring)."""
    x, d, q_max = ctx.inputs
    signed = ctx.kwargs["signed"]
    q_min = _grid_low(q_max, signed)
    inside = (x >= q_min) & (x <= q_max)
    # dQ/dx = [q_min <= x <= q_max]
    gx = np.where(inside, g, 0.0)
    # dQ/dd = (Q - x) / d inside, 0 outside
    gd = np.sum(np.where(inside, g * (ctx.out - x) / d, 0.0))
    # dQ/dq_max = +1 above q_max, -1 below -q_max (signed only), 0 inside
    above = x > q_max
    below = (x < q_min) if signed else np.zeros_like(above)
    gq = np.sum(np.where(above, g, 0.0)) - np.sum(np.where(below, g, 0.0))
    return gx.astype(x.dtype), np.asarray(gd, d.dtype).reshape(d.shape), np.asarray(gq, q_max.dtype).reshape(q_max.shape)


@primitive
def _width(ctx, d, q_max, *, signed):
    # derived width: b = ceil(log2(q_max / d + 1)) (+ 1 for a signed grid)
    return np.ceil(np.log2(q_max / d + 1.0)) + (1.0 if signed else 0.0)


@_width.defvjp
def width_vjp(ctx, g):
    """Straight through the ceil: db/dd = -q_max / (d (q_max + d) ln2), db/dq_max = 1 / ((q_max + d) ln2)."""
    d, q_max = ctx.inputs
    # db/dd = -q_max / (d (q_max + d) ln2)
    gd = g * (-q_max / (d * (q_max + d) * LN2))
    # db/dq_max = 1 / ((q_max + d) ln2)
    gq = g / ((q_max + d) * LN2)
    return gd, gq


def _check_pair(d, q_max, owner: str) -> None:
    for name, v in (("d", d), ("q_max", q_max)):
        a = v.data if isinstance(v, Tensor) else np.asarray(v)
        if a.size != 1 or not (np.isfinite(a).all() and (a > 0).all()):
            raise ValueError(f"{owner}: {name} must be one finite number > 0, got {a!r}")


def uniform_quantize(x, d, q_max, *, signed: bool) -> Tensor:
    """Uhlich et al.'s quantizer Q(x; d, q_max) with its straight-through gradients (module docstring).

    ``d``, ``q_max``: 0-d tensors (one per layer and per quantized tensor), > 0; ``signed``: the grid
    is symmetric [-q_max, q_max] (weights, a signed input) or [0, q_max] (ReLU activations)."""
    _check_pair(d, q_max, "uniform_quantize")
    if not isinstance(signed, (bool, np.bool_)):
        raise TypeError(f"uniform_quantize: signed must be True or False, got {signed!r}")
    return _uq(x, d, q_max, signed=bool(signed))


def derived_width(d, q_max, *, signed: bool) -> Tensor:
    """The width of the grid, b = ceil(log2(q_max / d + 1)) (+ 1 signed), straight through the ceil."""
    _check_pair(d, q_max, "derived_width")
    return _width(d, q_max, signed=bool(signed))


def width_value(d: float, q_max: float, signed: bool) -> int:
    """The derived width as an int, without the tape."""
    return int(math.ceil(math.log2(q_max / d + 1.0))) + (1 if signed else 0)
