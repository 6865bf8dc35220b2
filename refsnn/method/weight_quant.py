"""The weight quantizer (Eq. 6) as a tape op, with its LSQ gradients (Eq. 18-19, App. A.8-A.9).

    x_i = w_i / S_q
    B_w >= 2:  q = 2^{B_w-1} - 1,  w_q,i = S_q clip(round(x_i), -q, q)        (Eq. 6)
    B_w  = 1:  w_q,i = S_q sgn(x_i)
    dL/dw_i    = dL/dw_q,i [q_min <= x_i <= q_max]                           (Eq. 18)
    dL/dS_q    = g sum_i dL/dw_q,i m_i                                       (Eq. 19, App. A.8)
    dL/dBhat_w = g_B sum_i dL/dw_q,i sign(x_i) S_q (q_max + 1) ln2 [outside]  (App. A.9)

Official convention: C6 (conv kernels: dL/dS_q = g (g M_c) sum ...) and C7 (N = w.size in g).

The arithmetic lives in ``refsnn.kernels.quant`` (numba, with its literal NumPy twin).
"""
from __future__ import annotations

import numpy as np

from ..autograd.tensor import Tensor, primitive
from ..kernels import quant as _k
from .conventions import PAPER, Convention, check_convention


def weight_grid(B: int) -> tuple:
    """(q_min, q_max) of the weight grid (Eq. 6): {-1, +1} at B = 1, {-q..q} with q = 2^{B-1}-1 otherwise."""
    return _k.weight_levels(int(B))


@primitive
def _wq(ctx, w, step, bits, *, convention, impl):
    ctx.B = int(bits)
    # Eq. 6 (in the kernel): w_q = S_q clip(round(w / S_q), q_min, q_max), or S_q sgn(w / S_q) at B_w = 1
    return _k.weight_quant_forward(w, step, ctx.B, impl=impl)


@_wq.defvjp
def wq_vjp(ctx, g):
    """Eq. 18-19, App. A.8-A.9 (in the kernel)."""
    c = ctx.kwargs["convention"]
    w, step, bits = ctx.inputs
    # C6: the release's step gradient g (g M_c) sum applies to convolution kernels (more than 2 dims) only
    gw, gstep, gbits = _k.weight_quant_backward(np.ascontiguousarray(g), w, step, ctx.B,
                                                bit_grad_lsq=c.bit_grad_lsq, one_bit_factor=c.one_bit_factor,
                                                conv_spread=c.conv_step_spread and w.ndim > 2,
                                                g_whole_tensor=c.step_g_whole_tensor, impl=ctx.kwargs["impl"])
    return gw, gstep, np.asarray(gbits, dtype=bits.dtype).reshape(bits.shape)


def quantize_weight(w, step, bits, *, convention: Convention = PAPER, impl: str = "numba") -> Tensor:
    """Eq. 6 with LSQ gradients.  ``step``: 0-d (layer-wise) or (C_out,) (per output channel), > 0;
    ``bits``: 0-d float tensor holding the integer width B_w (from ``parametrized_width``, Eq. 11);
    ``convention``: a Convention (C1-C2 select the bit gradient)."""
    check_convention(convention, "quantize_weight: convention")
    sv = step.data if isinstance(step, Tensor) else np.asarray(step)
    wv = w.data if isinstance(w, Tensor) else np.asarray(w)
    if not (sv.ndim == 0 or (sv.ndim == 1 and sv.shape[0] == wv.shape[0])):
        raise ValueError(f"quantize_weight: step must be a scalar or have shape ({wv.shape[0]},) "
                         f"(one per output channel), got shape {sv.shape}")
    if not (np.isfinite(sv).all() and (sv > 0).all()):
        raise ValueError(f"quantize_weight: the step S_q must be finite and > 0, got {sv!r}")
    bv = bits.data if isinstance(bits, Tensor) else np.asarray(bits)
    if bv.size != 1 or not float(bv).is_integer() or float(bv) < 1:
        raise ValueError(f"quantize_weight: bits must be one integer >= 1, got {bv!r}")
    return _wq(w, step, bits, convention=convention, impl=impl)
