"""Gradients of the refined spiking neuron (Eq. 16-17, 20, App. A.6-A.13, docs/method.md §6.6).

The symbols, the gradient formulas and the agreement of the two implementations (NumPy twin,
numba kernel, bit for bit) are in the docstring of ``refsnn.kernels.neuron``; the spike levels,
the emission and the argument checks in ``refsnn.kernels.spike``.  ``neuron_backward`` is also
importable from ``refsnn.kernels.neuron``.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
from numba import njit, prange

from refsnn.kernels import checks as chk
from refsnn.kernels.spike import (BLOCK, LN2, check_common, check_finite, count_nonfinite, emit,
                                  emit_numpy, spike_levels, step_constants)

__all__ = ["neuron_backward", "block_partial_sums", "block_sum", "reduce_step_terms", "bit_factor",
           "check_one_bit_factor"]


# ----------------------------------------------------------------------------
# backward: the reduction shared by both implementations
# ----------------------------------------------------------------------------


def block_partial_sums(terms):
    """Block sums of ``terms`` (shape (..., N)) in the fixed order described at ``BLOCK`` (``refsnn.kernels.spike``);
    shape (..., ceil(N/BLOCK)).

    The fused numba kernel sums its terms block by block in exactly this order while it
    runs (so it never stores a per-element term array); this function is the NumPy
    statement of that order. The zero padding adds exact zeros.
    """
    N = terms.shape[-1]
    nblocks = -(-N // BLOCK)
    padded = np.zeros(terms.shape[:-1] + (nblocks * BLOCK,), dtype=terms.dtype)
    padded[..., :N] = terms
    p = padded.reshape(terms.shape[:-1] + (nblocks, BLOCK))
    # pairwise by halving: p[i] = p[i] + p[i + w] for i < w, w = BLOCK/2, BLOCK/4, ..., 1
    w = BLOCK
    while w > 1:
        w //= 2
        p = p[..., :w] + p[..., w : 2 * w]
    return p[..., 0]


def reduce_step_terms(partials, B, T, N, domain, bit_grad_lsq, n_vth, n_bits):
    """``g_vth[t] = g sum_j gS_j^t h_j``, ``g_bits[t] = g_B sum_j gS_j^t k_j`` from block partials.

    ``partials`` (shape (2, T, nblocks), input dtype) holds the block partial sums of the
    per-element terms ``gS h`` (index 0) and ``gS k`` (index 1); one NumPy call, shared by
    both implementations, adds the blocks. ``N`` = number of elements per step (the whole
    input tensor: our **Decision** for a layer-wise threshold). ``g = 1/sqrt(N q_max)``;
    ``g_B = g`` (paper) or 1 (C1).
    """
    dt = partials.dtype.type
    sums = partials.sum(axis=2)
    g_vth = np.zeros(n_vth, dtype=partials.dtype)
    g_bits = np.zeros(n_bits, dtype=partials.dtype)
    for t in range(T):
        _, q_max = spike_levels(B[t], domain)
        # LSQ gradient scale: g = 1 / sqrt(N q_max)
        g = dt(1.0 / math.sqrt(N * q_max))
        # C1: g_B = g (paper) or 1 (official code)
        g_B = g if bit_grad_lsq else dt(1.0)
        # App. A.6-A.7 / A.12-A.13: dL/dV_th^t = g sum_j dL/dShat_j^t h_j
        g_vth[t] = g * sums[0, t]
        # Eq. 16-17 / App. A.10-A.11: dL/dB^t = g_B sum_j dL/dShat_j^t k_j
        g_bits[t] = g_B * sums[1, t]
    return g_vth, g_bits


def check_one_bit_factor(one_bit_factor) -> float:
    """The factor F of C2 as a float, if it is a finite number > 0, else ValueError."""
    if isinstance(one_bit_factor, (bool, np.bool_)) or not isinstance(one_bit_factor, numbers.Real) \
            or not (math.isfinite(one_bit_factor) and one_bit_factor > 0):
        raise ValueError(
            f"one_bit_factor must be a finite number > 0 (2.0 paper, 1.0 official), got {one_bit_factor!r}"
        )
    return float(one_bit_factor)


def bit_factor(B, q_max, one_bit_factor):
    """F in k = sign(u) V_th F ln2: q_max + 1, or ``one_bit_factor`` at B = 1 (C2)."""
    return one_bit_factor if B == 1 else q_max + 1


# ----------------------------------------------------------------------------
# backward: NumPy twin (the specification)
# ----------------------------------------------------------------------------


def _backward_numpy(gy, v, V_th, B, T, domain, shift, inv_tau, reset_decay, bptt, one_bit_factor):
    """Literal NumPy twin of the backward pass, t = T..1. Returns (gI, block partial sums)."""
    dt = gy.dtype.type
    terms = np.empty((2, T) + gy.shape, dtype=gy.dtype)
    # gradient w.r.t. v^{T+1}: nothing beyond the last step
    gv_next = np.zeros_like(gy)
    gI = np.zeros_like(gy)
    # dv^{t+1}/dShat^t = -1 (Eq. 13), or -1/tau with the decayed reset (C4)
    r = inv_tau if reset_decay else dt(1.0)
    for t in reversed(range(T)):
        q_min, q_max = spike_levels(B[t], domain)
        u = v[t] / V_th[t]
        if bptt:
            # Eq. 12 + Eq. 13: dL/dShat^t = dL/dy (1/T) + dL/dv^{t+1} dv^{t+1}/dShat^t
            gS = gy / T - r * gv_next
        else:
            # Eq. 12 only (C3, official code: reset detached)
            gS = gy / T
        S = emit_numpy(u, B[t], domain, shift)
        # Eq. 20: dShat^t/dv^t = [q_min <= u <= q_max]
        inside = (q_min <= u) & (u <= q_max)
        ind = inside.astype(gy.dtype)
        # App. A.6-A.7 / A.12-A.13: h = S - u inside, q_max above, q_min below
        #   (bidirectional B = 1: S = sgn(u), so h = sgn(u) - u inside)
        h = np.where(inside, S - u, np.where(u > q_max, dt(q_max), dt(q_min)))
        # Eq. 16-17 / App. A.10-A.11: k = sign(u) V_th^t (q_max + 1) ln2 outside [q_min, q_max]
        #   (positive domain: only u > q_max; C2: factor one_bit_factor instead of q_max + 1 at B = 1)
        outside = (u > q_max) if domain == "positive" else ~inside
        F = bit_factor(B[t], q_max, one_bit_factor)
        k = np.where(outside, np.sign(u) * V_th[t] * F * LN2, dt(0.0))
        terms[0, t] = gS * h
        terms[1, t] = gS * k
        if bptt:
            # Eq. 20 + Eq. 13 carry: dL/dv^t = dL/dShat^t ind + (1/tau) dL/dv^{t+1}
            gv = gS * ind + inv_tau * gv_next
        else:
            # Eq. 20 (C3, official code: carry detached)
            gv = gS * ind
        # docs/method.md §6.6: dv^t/dI = 1, so dL/dI = sum_t dL/dv^t
        gI = gI + gv
        gv_next = gv
    return gI, block_partial_sums(terms.reshape(2, T, -1))


# ----------------------------------------------------------------------------
# backward: numba kernel
# ----------------------------------------------------------------------------


@njit(cache=True)
def _backward_step(gy, v_t, gI, gv_next, th, tk, vth, q_lo, q_hi, k_hi, k_lo, round_away, sgn, shift,
                   inv_tau, r, bptt, T_f):
    """One step t (going backwards) over the elements of one block (a vectorizable loop).

    ``gv_next`` holds dL/dv^{t+1} and is overwritten with dL/dv^t; ``gI`` accumulates;
    ``th``, ``tk`` receive the terms gS h and gS k. Returns the number of non-finite v^t.
    """
    zero = T_f - T_f
    one = T_f / T_f
    bad = 0
    for i in range(gy.shape[0]):
        vi = v_t[i]
        bad += 0 if np.isfinite(vi) else 1
        u = vi / vth
        gy_T = gy[i] / T_f
        gS = gy_T - r * gv_next[i] if bptt else gy_T
        S = emit(u, round_away, sgn, shift, q_lo, q_hi)
        inside = (q_lo <= u) & (u <= q_hi)
        above = u > q_hi
        ind = one if inside else zero
        h_out = q_hi if above else q_lo
        h = (S - u) if inside else h_out
        k_out = k_hi if above else k_lo
        k = zero if inside else k_out
        th[i] = gS * h
        tk[i] = gS * k
        gv = gS * ind + inv_tau * gv_next[i] if bptt else gS * ind
        gI[i] = gI[i] + gv
        gv_next[i] = gv
    return bad


@njit(cache=True)
def block_sum(terms):
    """Sum of one block's terms (length BLOCK, zero-padded) in the order of
    :func:`block_partial_sums`; overwrites ``terms``."""
    w = terms.shape[0]
    while w > 1:
        w //= 2
        for i in range(w):
            terms[i] = terms[i] + terms[i + w]
    return terms[0]


@njit(cache=True, parallel=True)
def _backward_kernel(gy, v, v_th, bits, qmin, qmax, kmag, bidir, shift, inv_tau, r, bptt, T_f, gI, partials):
    """Fused backward: blocks of BLOCK elements in parallel; per block, steps T..1 (each one
    vectorizable loop), and after each step the block sums of ``gS h`` and ``gS k`` in the
    order of :func:`block_partial_sums`, written to ``partials[:, t, b]``.

    ``kmag[t] = V_th^t F ln2`` (so ``k = +-kmag``, which equals ``sign(u) V_th F ln2``
    evaluated left to right). Returns the number of non-finite gy / v entries seen.
    """
    T = v.shape[0]
    N = gy.shape[0]
    round_away = bidir and shift != 0
    bad = 0
    for b in prange(partials.shape[2]):
        j0 = b * BLOCK
        j1 = min(N, j0 + BLOCK)
        n = j1 - j0
        gyb = gy[j0:j1]
        gIb = gI[j0:j1]
        bad += count_nonfinite(gyb)
        gIb[:] = 0
        # rows: dL/dv^{t+1} (0 after the last step); the terms gS h and gS k, zero-padded to BLOCK
        work = np.zeros((3, BLOCK), dtype=gy.dtype)
        for tt in range(T):
            t = T - 1 - tt
            k_lo = -kmag[t] if bidir else kmag[t] - kmag[t]
            bad += _backward_step(gyb, v[t, j0:j1], gIb, work[0, :n], work[1, :n], work[2, :n], v_th[t],
                                  qmin[t], qmax[t], kmag[t], k_lo, round_away, bidir and bits[t] == 1, shift,
                                  inv_tau, r, bptt, T_f)
            partials[0, t, b] = block_sum(work[1])
            partials[1, t, b] = block_sum(work[2])
            # block_sum overwrote the first n terms; the zero padding beyond n is intact
    return bad


# ----------------------------------------------------------------------------
# backward: public entry
# ----------------------------------------------------------------------------


def neuron_backward(
    gy, v, v_th, bits, T, *, domain="positive", shift=0.5, tau=1.0, reset_decay=False,
    bptt=True, bit_grad_lsq=True, one_bit_factor=2.0, impl="numba",
):
    """Gradients of the refined neuron (Eq. 16-17, 20, App. A.6-A.7, A.10-A.13, docs/method.md §6.6).

    Args:
        gy: dL/dy, shape and dtype of the forward input I.
        v: membrane potentials from :func:`neuron_forward`, shape ``(T, *gy.shape)``.
        v_th, bits, T, domain, shift, tau, reset_decay: as given to :func:`neuron_forward`.
        bptt: True = full chain rule of Eq. 13 through the membrane carry (1/tau) and the
            reset (-1, or -1/tau with ``reset_decay``) (paper); False = carry and reset
            detached, only dv^t/dI = 1 kept (official code, convention C3).
        bit_grad_lsq: True = bit gradient scaled by ``g_B = g = 1/sqrt(N q_max)`` (paper);
            False = ``g_B = 1`` (official code, convention C1).
        one_bit_factor: the factor F replacing ``q_max + 1`` in ``k`` when B = 1:
            2.0 (= q_max + 1, paper, default) or 1.0 (official code, convention C2).
        impl: ``"numba"`` (default) or ``"numpy"``; they agree bit for bit.

    Returns:
        ``(gI, g_vth, g_bits)``: ``gI`` (shape of gy) = dL/dI; ``g_vth`` (length of v_th)
        = dL/dV_th^t; ``g_bits`` (length of bits, dtype of gy) = dL/dB^t (= dL/dBhat^t,
        straight through Eq. 9). Entries ``t >= T`` are 0. N in ``g`` is ``gy.size`` (the
        whole tensor at one step, batch included: our **Decision**).
    """
    impl = chk.check_impl(impl)
    gy = chk.float_array(gy, "gy", None, nonempty=True)
    T, B, shift, tau = check_common(v_th, bits, T, domain, shift, tau, gy.dtype, "gy")
    v = chk.float_array(v, "v", None, nonempty=True)
    chk.same_dtype(gy, "gy", v, "v")
    chk.expect_shape(v, "v", (T,) + gy.shape, "(T, *gy.shape), as returned by neuron_forward")
    one_bit_factor = check_one_bit_factor(one_bit_factor)
    reset_decay, bptt, bit_grad_lsq = bool(reset_decay), bool(bptt), bool(bit_grad_lsq)
    dt = gy.dtype.type
    inv_tau = dt(1.0 / tau)
    if impl == "numpy":
        check_finite(gy, "gy")
        check_finite(v, "v")
        gI, partials = _backward_numpy(
            gy, v, v_th[:T], B, T, domain, dt(shift), inv_tau, reset_decay, bptt, one_bit_factor
        )
        gI = np.asarray(gI)
    else:
        g = np.ascontiguousarray(gy).reshape(-1)
        vv = np.ascontiguousarray(v).reshape(T, -1)
        qmin, qmax = step_constants(v_th, B, T, domain, gy.dtype)
        F = np.array([bit_factor(B[t], int(qmax[t]), one_bit_factor) for t in range(T)], dtype=gy.dtype)
        # sign(u) V_th F ln2, evaluated left to right in the input dtype (sign(u) = +-1 is exact)
        kmag = v_th[:T] * F * dt(LN2)
        gI = np.empty_like(g)
        partials = np.empty((2, T, -(-g.size // BLOCK)), dtype=gy.dtype)
        r = inv_tau if reset_decay else dt(1.0)
        bad = _backward_kernel(
            g, vv, np.ascontiguousarray(v_th[:T]), np.array(B, dtype=np.int64), qmin, qmax, kmag,
            domain == "bidirectional", dt(shift), inv_tau, r, bptt, dt(T), gI, partials,
        )
        if bad:
            check_finite(gy, "gy")
            check_finite(v, "v")
        gI = gI.reshape(gy.shape)
    g_vth, g_bits = reduce_step_terms(partials, B, T, gy.size, domain, bit_grad_lsq, len(v_th), len(bits))
    return gI, g_vth, g_bits
