"""Learnable bit widths and temporal length (Eq. 9-11).

Each integer width has a real parameter (the "hat") and a manually set integer
bound.  The forward pass rounds the clipped parameter; the backward pass is
straight-through: dL/dBhat = dL/dB, through both the rounding and the clip
(docs/method.md §4; paper and official code agree).  Row C11 of the
official convention takes abs(Bhat) first for B_w and B_s^t (not for T).
"""
from __future__ import annotations

import numpy as np

from ..autograd.tensor import Tensor, primitive
from ..kernels.checks import MAX_BITS  # noqa: F401  (the kernels' largest width: the bound of every B, Eq. 9-11)


def check_bound(bound, name: str = "bound") -> int:
    """A width bound must be an integer >= 1."""
    if isinstance(bound, (bool, np.bool_)) or not isinstance(bound, (int, np.integer, float, np.floating)) \
            or not float(bound).is_integer() or bound < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {bound!r}")
    return int(bound)


def check_finite_param(param, name: str) -> None:
    data = param.data if isinstance(param, Tensor) else np.asarray(param)
    if not np.isfinite(data).all():
        raise ValueError(f"{name}: the width parameter is not finite ({data.ravel()[~np.isfinite(data.ravel())][0]!r}); "
                         "it must be a real number (it is clipped to [1, bound] in the forward pass)")


def width_value(param, bound: int, use_abs: bool = False) -> np.ndarray:
    """Eq. 9-11 on plain arrays: the integer width(s) round(clip(param, 1, bound)) as int64.

    ``use_abs=True`` (convention row C11, official): round(clip(abs(param), 1, bound))."""
    data = param.data if isinstance(param, Tensor) else np.asarray(param, dtype=float)
    if use_abs:
        # C11 (official): the release widths come from abs(Bhat)
        data = np.abs(data)
    # Eq. 9-11: B = round(clip(Bhat, 1, B_bound)), round half to even (docs/method.md §4, Decision)
    return np.round(np.clip(data, 1, bound)).astype(np.int64)


@primitive
def _round_clip(ctx, param, *, bound, use_abs, grad_sign):
    # C11 (official): abs(Bhat) in place of Bhat
    p = np.abs(param) if use_abs else param
    # Eq. 9 / Eq. 10 / Eq. 11: B = round(clip(Bhat, 1, B_bound)) with numpy's round-half-to-even
    return np.round(np.clip(p, 1, bound))


@_round_clip.defvjp
def round_clip_vjp(ctx, g):
    if ctx.kwargs["grad_sign"]:
        # C11 in the regulating loss (official): straight through clip and round, then d abs(Bhat) / dBhat
        return (g * np.sign(ctx.inputs[0]),)
    # Eq. 9-11 backward: straight-through, dL/dBhat = dL/dB (through the rounding and the clip)
    return (g,)


def parametrized_width(param, bound, name: str = "width", use_abs: bool = False, grad_sign: bool = False) -> Tensor:
    """Eq. 9 (spike width B_s^t), Eq. 10 (temporal length T), Eq. 11 (weight width B_w).

    ``round(clip(param, 1, bound))`` as a float tensor holding integers, with the
    straight-through gradient.  ``bound`` must be an integer >= 1 and ``param``
    finite; anything else raises ``ValueError`` naming the value.

    Convention row C11 (official): ``use_abs=True`` rounds ``clip(abs(param), 1, bound)``, the
    gradient still straight through to ``param``; ``grad_sign=True`` (with ``use_abs``) multiplies
    it by ``sign(param)``, as the release's regulating loss does.
    """
    bound = check_bound(bound, f"{name} bound")
    check_finite_param(param, name)
    if grad_sign and not use_abs:
        raise ValueError(f"{name}: grad_sign=True needs use_abs=True (it is the derivative of abs, row C11)")
    return _round_clip(param, bound=bound, use_abs=bool(use_abs), grad_sign=bool(grad_sign))
