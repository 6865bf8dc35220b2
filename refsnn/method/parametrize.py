"""Learnable bit widths and temporal length (Eq. 9-11).

Each integer width has a real parameter (the "hat") and a manually set integer
bound.  The forward pass rounds the clipped parameter; the backward pass is
straight-through: dL/dBhat = dL/dB, through both the rounding and the clip
(METHOD.md section 4; paper and official code agree).
"""
from __future__ import annotations

import numpy as np

from ..autograd.tensor import Tensor, primitive


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


def width_value(param, bound: int) -> np.ndarray:
    """Eq. 9-11 on plain arrays: the integer width(s) round(clip(param, 1, bound)) as int64."""
    data = param.data if isinstance(param, Tensor) else np.asarray(param, dtype=float)
    # Eq. 9-11: B = round(clip(Bhat, 1, B_bound)), round half to even (METHOD.md section 4, Decision)
    return np.round(np.clip(data, 1, bound)).astype(np.int64)


@primitive
def _round_clip(ctx, param, *, bound):
    # Eq. 9 / Eq. 10 / Eq. 11: B = round(clip(Bhat, 1, B_bound)) with numpy's round-half-to-even
    return np.round(np.clip(param, 1, bound))


@_round_clip.defvjp
def round_clip_vjp(ctx, g):
    # Eq. 9-11 backward: straight-through, dL/dBhat = dL/dB (through the rounding and the clip)
    return (g,)


def parametrized_width(param, bound, name: str = "width") -> Tensor:
    """Eq. 9 (spike width B_s^t), Eq. 10 (temporal length T), Eq. 11 (weight width B_w).

    ``round(clip(param, 1, bound))`` as a float tensor holding integers, with the
    straight-through gradient.  ``bound`` must be an integer >= 1 and ``param``
    finite; anything else raises ``ValueError`` naming the value.
    """
    bound = check_bound(bound, f"{name} bound")
    check_finite_param(param, name)
    return _round_clip(param, bound=bound)
