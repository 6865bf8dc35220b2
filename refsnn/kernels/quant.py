"""Weight quantizer (Eq. 6) and its gradients (Eq. 18-19, App. A.8-A.9; docs/method.md §3 and §6.4).

Symbols::

    S_q      learnable step, layer-wise (0-d) or one per output channel (1-D, len = w.shape[0])
    s        = max(S_q, eps), eps = 1e-5             (docs/method.md §3: steps kept >= eps in the forward)
    x_i      = w_i / s                                (Eq. 6)
    B_w >= 2:  q = 2^{B_w - 1} - 1;  w_q,i = s clip(round(x_i), -q, q)      (Eq. 6)
    B_w  = 1:  w_q,i = s sgn(x_i)                                           (Eq. 6)
    q_min = -q, q_max = q   (-1, 1 when B_w = 1)
    round(x) = sign(x) floor(|x| + 1/2),  sgn(x) = +1 if x > 0 else -1

Gradients (docs/method.md §6.4), with ``N`` = number of elements sharing one step (``w.size``
layer-wise, ``w.size / w.shape[0]`` per channel) and ``g = 1/sqrt(N q_max)``::

    dL/dw_i    = dL/dw_q,i [q_min <= x_i <= q_max]                        (STE, Eq. 18-19)
    dL/dS_q    = g sum_i dL/dw_q,i m_i                                     (App. A.8)
    m_i        = round(x_i) - x_i inside (sgn(x_i) - x_i when B_w = 1), q_max above, q_min below
    dL/dBhat_w = g_B sum_i dL/dw_q,i sign(x_i) s F ln2 [x_i outside [q_min, q_max]]   (App. A.9)
    F = q_max + 1, or ``one_bit_factor`` when B_w = 1 (2 paper, 1 official: C2); g_B = g or 1 (C1)

The official convention (docs/method.md §10) changes two of these: C6 ``dL/dS_q = g (g M_c) sum_i ...``
for convolution kernels (M_c = w.size / C_out), C7 ``N = w.size`` for per-channel steps.

**Decision**: where ``S_q < eps`` the forward uses eps and the gradient to ``S_q`` is 0
(the clamp ``max(S_q, eps)`` has derivative 0 there).

``impl="numpy"`` is the literal twin; ``impl="numba"`` (default) is one parallel loop over
the elements. Both compute every per-element value with the same operations in the input
dtype and hand the per-element terms to the same NumPy sums, so they agree bit for bit.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from numba import njit, prange

from refsnn.kernels import checks as chk

__all__ = ["weight_quant_forward", "weight_quant_backward", "weight_levels", "EPS", "MAX_BITS"]

LN2 = math.log(2.0)
#: lower bound of the step size in the forward pass (docs/method.md §3)
EPS = 1e-5
MAX_BITS = chk.MAX_BITS


def weight_levels(B: int) -> tuple[int, int]:
    """``(q_min, q_max)`` of the weight quantizer with bit width ``B`` (Eq. 6)."""
    if B == 1:
        return -1, 1
    q = 2 ** (B - 1) - 1
    return -q, q


# ----------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------


_check_finite = chk.check_finite



def _check_args(w, step, bits, w_name="w"):
    """Validate; return (C, M, B): C steps, M elements per step, B the python-int width."""
    w = chk.float_array(w, w_name, None)
    if w.size == 0:
        raise ValueError(f"{w_name} must have at least one element, got shape {w.shape}")
    step = chk.float_array(step, "step", None)
    chk.same_dtype(w, w_name, step, "step")
    if step.ndim == 0:
        C = 1
    elif step.ndim == 1 and w.ndim >= 1 and step.shape[0] == w.shape[0]:
        C = step.shape[0]
    else:
        raise ValueError(
            f"step must be 0-d (layer-wise) or 1-D of length {w_name}.shape[0] "
            f"(per output channel); got step shape {step.shape} for {w_name} shape {w.shape}"
        )
    _check_finite(step, "step")
    if isinstance(bits, np.ndarray) and bits.ndim == 0 and bits.dtype.kind in "iu":
        bits = bits.item()
    if not isinstance(bits, numbers.Integral) or isinstance(bits, (bool, np.bool_)):
        raise TypeError(f"bits must be an int (or a 0-d integer array), got {bits!r}")
    B = int(bits)
    if not 1 <= B <= MAX_BITS:
        raise ValueError(f"bits = {B} is out of range: weight bit widths must be in 1..{MAX_BITS}")
    return C, w.size // C, B


def _clamped_step(step: np.ndarray) -> np.ndarray:
    """docs/method.md §3: s = max(S_q, eps), in the dtype of the step (shape of step)."""
    return np.maximum(step, step.dtype.type(EPS))


def _broadcast(s: np.ndarray, ndim: int) -> np.ndarray:
    """A per-channel step (C,) as (C, 1, ..., 1) against a weight of ``ndim`` dims."""
    return s.reshape(s.shape + (1,) * (ndim - 1)) if s.ndim == 1 else s


# ----------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------


def _levels_numpy(x, B):
    """The integer level the quantizer emits for x (Eq. 6), as floats of x's dtype."""
    dt = x.dtype.type
    if B == 1:
        # Eq. 6, B_w = 1: sgn(x) = +1 if x > 0 else -1
        return np.where(x > 0, dt(1), dt(-1))
    q_min, q_max = weight_levels(B)
    # Eq. 6, B_w >= 2: clip(round(x), -q, q), round(x) = sign(x) floor(|x| + 1/2)
    return np.minimum(np.maximum(np.sign(x) * np.floor(np.abs(x) + 0.5), q_min), q_max)


def _forward_numpy(w, s, B):
    """Literal NumPy twin of Eq. 6."""
    S_q = _broadcast(s, w.ndim)
    # Eq. 6: x_i = w_i / S_q
    x = w / S_q
    # Eq. 6: w_q,i = S_q clip(round(x_i), -q, q)   (B_w = 1: S_q sgn(x_i))
    return S_q * _levels_numpy(x, B)


@njit(cache=True)
def _level(x, one_bit, half, q):
    """Scalar twin of :func:`_levels_numpy` (``half`` = 1/2 and ``q`` in the dtype of x)."""
    if one_bit:
        return q if x > 0 else -q  # q = 1 at B = 1: sgn(x)
    a = np.floor(abs(x) + half)
    r = -a if x < 0 else a
    return min(max(r, -q), q)


@njit(cache=True, parallel=True)
def _forward_kernel(w, s, one_bit, half, q, out):
    C, M = w.shape
    for n in prange(C * M):
        c = n // M
        i = n - c * M
        x = w[c, i] / s[c]  # Eq. 6
        out[c, i] = s[c] * _level(x, one_bit, half, q)


def weight_quant_forward(w, step, bits, *, impl="numba"):
    """Quantized weights ``w_q = s clip(round(w/s), -q, q)`` (Eq. 6; ``s sgn(w/s)`` at B_w = 1).

    Args:
        w: weights (float32 or float64), any shape (``shape[0]`` = output channels).
        step: the step ``S_q``, a 0-d array (layer-wise) or a 1-D array of length
            ``w.shape[0]`` (per output channel), dtype of w. The forward uses
            ``max(S_q, 1e-5)`` (docs/method.md §3).
        bits: the weight bit width ``B_w``, an int in 1..24.
        impl: ``"numba"`` (default) or ``"numpy"`` (the literal twin); bit-identical.

    Returns:
        ``w_q``, shape and dtype of w.
    """
    impl = chk.check_impl(impl)
    C, M, B = _check_args(w, step, bits)
    s = _clamped_step(step)
    if impl == "numpy":
        _check_finite(w, "w")
        return _forward_numpy(w, s, B)
    _check_finite(w, "w")
    dt = w.dtype.type
    out = np.empty((C, M), dtype=w.dtype)
    _, q_max = weight_levels(B)
    _forward_kernel(np.ascontiguousarray(w).reshape(C, M), s.reshape(C), B == 1, dt(0.5), dt(q_max), out)
    return out.reshape(w.shape)


# ----------------------------------------------------------------------------
# backward
# ----------------------------------------------------------------------------


def _bit_factor(B, q_max, one_bit_factor):
    """F in k = sign(x) S_q F ln2: q_max + 1, or ``one_bit_factor`` at B = 1 (C2)."""
    return one_bit_factor if B == 1 else q_max + 1


def _reduce(terms, step, B, M, bit_grad_lsq, N=None, spread=0):
    """``dL/dS_q = g sum_i terms[0]``, ``dL/dB_w = g_B sum_i terms[1]``; shared by both impls.

    ``terms`` has shape (2, C, M) in the input dtype; the sums are NumPy sums in that dtype.
    ``N`` (default ``M``): the count in g (C7); ``spread`` > 0: C6, ``dL/dS_q = g (g spread) sum_i terms[0]``.
    """
    dt = terms.dtype.type
    _, q_max = weight_levels(B)
    # LSQ gradient scale: g = 1 / sqrt(N q_max), N = elements sharing one step (C7: the whole tensor)
    g = dt(1.0 / math.sqrt((M if N is None else N) * q_max))
    # C1: g_B = g (paper) or 1 (official code)
    g_B = g if bit_grad_lsq else dt(1.0)
    if spread:
        # C6 (official, conv kernels): dL/dS_q = g (g M_c) sum_i dL/dw_q,i m_i, M_c = w.size / C_out
        gstep = (g * terms[0].sum(axis=1)) * dt(float(g) * spread)
    else:
        # docs/method.md §6.4 (App. A.8): dL/dS_q = g sum_i dL/dw_q,i m_i
        gstep = g * terms[0].sum(axis=1)
    # Decision: the clamp max(S_q, eps) passes no gradient where S_q < eps
    gstep[step.reshape(-1) < dt(EPS)] = 0
    # docs/method.md §6.4 (App. A.9): dL/dBhat_w = g_B sum_i dL/dw_q,i k_i
    gbits = np.asarray(g_B * terms[1].sum(), dtype=terms.dtype)
    return gstep.reshape(step.shape), gbits


def _backward_numpy(gwq, w, s, B, one_bit_factor):
    """Literal NumPy twin of docs/method.md §6.4. Returns (gw, terms of shape (2, *w.shape))."""
    dt = w.dtype.type
    S_q = _broadcast(s, w.ndim)
    q_min, q_max = weight_levels(B)
    # Eq. 6: x_i = w_i / S_q
    x = w / S_q
    inside = (q_min <= x) & (x <= q_max)
    # docs/method.md §6.4 (Eq. 18-19, STE): dL/dw_i = dL/dw_q,i [q_min <= x_i <= q_max]
    gw = gwq * inside.astype(w.dtype)
    # App. A.8: m_i = round(x_i) - x_i inside (sgn(x_i) - x_i at B_w = 1), q_max above, q_min below
    m = np.where(inside, _levels_numpy(x, B) - x, np.where(x > q_max, dt(q_max), dt(q_min)))
    # App. A.9: k_i = sign(x_i) S_q (q_max + 1) ln2 outside [q_min, q_max]  (C2: F at B_w = 1)
    F = _bit_factor(B, q_max, one_bit_factor)
    k = np.where(inside, dt(0.0), np.sign(x) * S_q * F * LN2)
    terms = np.empty((2,) + w.shape, dtype=w.dtype)
    terms[0] = gwq * m
    terms[1] = gwq * k
    return gw, terms


@njit(cache=True, parallel=True)
def _backward_kernel(gwq, w, s, kmag, one_bit, half, q, gw, terms):
    """``kmag[c] = s_c F ln2``, so ``k = +-kmag`` equals ``sign(x) s F ln2`` evaluated left to right."""
    C, M = w.shape
    zero = half - half
    one = half + half
    for n in prange(C * M):
        c = n // M
        i = n - c * M
        x = w[c, i] / s[c]
        inside = (-q <= x) & (x <= q)
        ind = one if inside else zero
        m_out = q if x > q else -q
        m_in = _level(x, one_bit, half, q) - x
        m = m_in if inside else m_out
        k_out = kmag[c] if x > 0 else -kmag[c]
        k = zero if inside else k_out
        g = gwq[c, i]
        gw[c, i] = g * ind
        terms[0, c, i] = g * m
        terms[1, c, i] = g * k


def weight_quant_backward(
    gwq, w, step, bits, *, bit_grad_lsq=True, one_bit_factor=2.0, conv_spread=False, g_whole_tensor=False,
    impl="numba"
):
    """Gradients of Eq. 6: to the weights, the step and the bit width (docs/method.md §6.4).

    Args:
        gwq: dL/dw_q, shape and dtype of w.
        w, step, bits: as given to :func:`weight_quant_forward`.
        bit_grad_lsq: True = bit gradient scaled by ``g_B = g`` (paper); False = 1 (official, C1).
        one_bit_factor: F replacing ``q_max + 1`` at B_w = 1: 2.0 (paper) or 1.0 (official, C2).
        conv_spread: False = ``dL/dS_q = g sum`` (paper); True = ``g (g M_c) sum`` with
            ``M_c = w.size / w.shape[0]`` (official, C6: the release's convolution step gradient).
        g_whole_tensor: False = N in g counts the weights sharing one step (paper); True = N = w.size
            even for per-channel steps (official, C7).
        impl: ``"numba"`` (default) or ``"numpy"``; bit-identical.

    Returns:
        ``(gw, gstep, gbits)``: gw (shape of w); gstep (shape of step; 0 where step < 1e-5);
        gbits, a 0-d array = dL/dB_w (= dL/dBhat_w, straight through Eq. 11).
        ``N`` in ``g = 1/sqrt(N q_max)`` is the number of weights sharing one step.
    """
    impl = chk.check_impl(impl)
    C, M, B = _check_args(w, step, bits)
    gwq = chk.float_array(gwq, "gwq", None)
    chk.same_dtype(gwq, "gwq", w, "w")
    chk.expect_shape(gwq, "gwq", w.shape, "the shape of w")
    if isinstance(one_bit_factor, (bool, np.bool_)) or not isinstance(one_bit_factor, numbers.Real) \
            or not (math.isfinite(one_bit_factor) and one_bit_factor > 0):
        raise ValueError(
            f"one_bit_factor must be a finite number > 0 (2.0 paper, 1.0 official), got {one_bit_factor!r}"
        )
    _check_finite(w, "w")
    _check_finite(gwq, "gwq")
    s = _clamped_step(step)
    dt = w.dtype.type
    if impl == "numpy":
        gw, terms = _backward_numpy(gwq, w, s, B, float(one_bit_factor))
        terms = terms.reshape(2, C, M)
    else:
        _, q_max = weight_levels(B)
        s_c = np.ascontiguousarray(s.reshape(C))
        F = dt(_bit_factor(B, q_max, float(one_bit_factor)))
        kmag = s_c * F * dt(LN2)
        gw = np.empty((C, M), dtype=w.dtype)
        terms = np.empty((2, C, M), dtype=w.dtype)
        _backward_kernel(
            np.ascontiguousarray(gwq).reshape(C, M), np.ascontiguousarray(w).reshape(C, M),
            s_c, kmag, B == 1, dt(0.5), dt(q_max), gw, terms,
        )
        gw = gw.reshape(w.shape)
    gstep, gbits = _reduce(terms, step, B, M, bool(bit_grad_lsq), N=w.size if g_whole_tensor else None,
                           spread=w.size // w.shape[0] if conv_spread else 0)
    return gw, gstep, gbits
