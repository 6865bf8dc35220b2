"""The refined spiking neuron: forward (Eq. 12-15) and gradients (Eq. 16-17, 20, App. A.6-A.13).

Symbols (METHOD.md sections 5 and 6; one layer, so the index ``l`` is dropped)::

    I            analog input current, the same at every step: I^t = I      (5.1)
    V_th^t       threshold = spike amplitude at step t, t = 1..T            (5.1)
    B^t          spike bit width at step t                                  (Eq. 14, 15)
    v^0 = 0, Shat^0 = 0
    v^t    = (1/tau) v^{t-1} + I - Shat^{t-1}               (Eq. 13, paper)
           = (1/tau) (v^{t-1} - Shat^{t-1}) + I             (Eq. 13, official code: C4)
    u      = v^t / V_th^t
    S^t    = clip(floor(u + shift), 0, 2^B - 1)             (Eq. 14 positive; shift 1/2, or 0 = Eq. 5)
    S^t    = clip(round(u), -q, q), q = 2^{B-1} - 1         (Eq. 15 bidirectional, B >= 2)
    S^t    = sgn(u)                                         (Eq. 15 bidirectional, B = 1)
    Shat^t = V_th^t S^t
    y      = (1/T) sum_t Shat^t                             (Eq. 12, temporal squeezing)

``round(x) = sign(x) floor(|x| + 1/2)`` (half away from zero), ``sgn(x) = +1 if x > 0 else -1``.
Levels: positive ``q_min = 0, q_max = 2^B - 1``; bidirectional ``q_min = -q, q_max = q``
(``-1, 1`` for B = 1).

Gradients, with ``ind = [q_min <= u <= q_max]``, ``N`` = number of elements of I and
``g = 1 / sqrt(N q_max)`` (LSQ scale), computed backwards for t = T..1 with
``gv^{T+1} = 0``::

    gS^t  = gy / T  - r gv^{t+1}        (Eq. 12 + reset path of Eq. 13, r = 1, or 1/tau under C4;
                                          the second term only with bptt, C3)
    gv^t  = gS^t ind + (1/tau) gv^{t+1} (Eq. 20 + carry of Eq. 13; the carry only with bptt, C3)
    gI    = sum_t gv^t                  (dv^t/dI = 1, METHOD.md 6.6)
    g_vth[t]  = g   sum_j gS_j^t h_j    (App. A.6-A.7 positive, A.12-A.13 bidirectional)
    g_bits[t] = g_B sum_j gS_j^t k_j    (Eq. 16-17 positive, App. A.10-A.11 bidirectional)
    h = S - u inside, q_max above, q_min below  (bidirectional B = 1 inside: sgn(u) - u)
    k = sign(u) V_th^t F ln2 outside [q_min, q_max] (positive domain: only u > q_max), else 0
    F = q_max + 1, or ``one_bit_factor`` when B = 1 (2 = q_max + 1 paper, 1 official: C2)
    g_B = g (paper) or 1 (official: C1)

Conventions (METHOD.md section 10) map to flags: C1 ``bit_grad_lsq``, C2 ``one_bit_factor``,
C3 ``bptt``, C4 ``reset_decay``.

Two implementations of every kernel: ``impl="numpy"``, the literal twin that follows the
symbols above line by line (it is the specification), and ``impl="numba"`` (default): the
elements are cut into blocks of BLOCK, the blocks run in parallel, and each block goes
through its T steps while it sits in cache, one branch-free (vectorizable) loop per step.
Both evaluate every per-element expression with the same operations in the same order, in
the input's dtype (no fastmath, so no FMA contraction). The sums over j in ``g_vth`` and
``g_bits`` follow one fixed order (:func:`_block_partial_sums`: blocks of BLOCK, pairwise
by halving inside a block, the block sums added by one NumPy call), which the numba
kernel follows while it runs, without storing per-element terms. So the two
implementations agree bit for bit on every output (up to the sign of zero, which
``np.array_equal`` ignores).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from numba import njit, prange

from refsnn.kernels import _checks as chk

__all__ = ["neuron_forward", "neuron_backward", "spike_levels", "DOMAINS", "SHIFTS", "MAX_BITS", "BLOCK"]

LN2 = math.log(2.0)
DOMAINS = ("positive", "bidirectional")
SHIFTS = (0.5, 0.0)
#: largest bit width: 2^B - 1 must be an exact float32 integer.
MAX_BITS = 24


# ----------------------------------------------------------------------------
# levels and argument checks
# ----------------------------------------------------------------------------


def spike_levels(B: int, domain: str) -> tuple[int, int]:
    """``(q_min, q_max)`` of the spike quantizer with bit width ``B`` (Eq. 14, Eq. 15)."""
    if domain == "positive":
        return 0, 2**B - 1  # Eq. 14
    if B == 1:
        return -1, 1  # Eq. 15, B = 1: S = sgn(u) in {-1, +1}
    q = 2 ** (B - 1) - 1  # Eq. 15, B >= 2
    return -q, q


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))


def _check_float(a, name: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype not in chk.FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {a.dtype}")
    if a.size == 0:
        raise ValueError(f"{name} must have at least one element, got shape {a.shape}")
    return a


_check_finite = chk.check_finite


def _check_common(v_th, bits, T, domain, shift, tau, dtype, x_name):
    """Validate the arguments shared by forward and backward; return the python scalars."""
    if not _is_int(T):
        raise TypeError(f"T must be an int, got {T!r}")
    T = int(T)
    v_th = _check_float(v_th, "v_th")
    chk.same_dtype(np.empty(0, dtype), x_name, v_th, "v_th")
    if v_th.ndim != 1:
        raise ValueError(f"v_th must be 1-D (one threshold per time step), got shape {v_th.shape}")
    if not isinstance(bits, np.ndarray) or bits.dtype.kind not in "iu":
        raise TypeError(f"bits must be an integer numpy.ndarray, got {getattr(bits, 'dtype', type(bits).__name__)}")
    if bits.ndim != 1:
        raise ValueError(f"bits must be 1-D (one bit width per time step), got shape {bits.shape}")
    if T < 1 or T > len(v_th) or T > len(bits):
        raise ValueError(
            f"T = {T} is out of range: need 1 <= T <= min(len(v_th), len(bits)) = "
            f"{min(len(v_th), len(bits))}"
        )
    for t in range(T):
        th = v_th[t]
        if not (np.isfinite(th) and th > 0):
            raise ValueError(f"v_th[{t}] = {th} is not allowed: thresholds must be finite and > 0")
        b = int(bits[t])
        if not 1 <= b <= MAX_BITS:
            raise ValueError(f"bits[{t}] = {b} is out of range: bit widths must be in 1..{MAX_BITS}")
    if not isinstance(domain, str) or domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    if isinstance(shift, (bool, np.bool_)) or not isinstance(shift, numbers.Real) or float(shift) not in SHIFTS:
        raise ValueError(f"shift must be 0.5 (rounding, Eq. 14) or 0.0 (flooring, Eq. 5), got {shift!r}")
    if isinstance(tau, (bool, np.bool_)) or not isinstance(tau, numbers.Real) or not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a finite number > 0 (1 = IF neuron), got {tau!r}")
    return T, [int(b) for b in bits[:T]], float(shift), float(tau)


def _step_constants(v_th, B, T, domain, dtype):
    """Per-step q_min, q_max as arrays of the input dtype (exact integers)."""
    levels = [spike_levels(b, domain) for b in B]
    qmin = np.array([lo for lo, _ in levels], dtype=dtype)
    qmax = np.array([hi for _, hi in levels], dtype=dtype)
    return qmin, qmax


# ----------------------------------------------------------------------------
# forward: NumPy twin (the specification)
# ----------------------------------------------------------------------------


def _emit_numpy(u, B, domain, shift):
    """The integer spike S the neuron emits for ``u = v / V_th`` (Eq. 14, Eq. 15), as floats."""
    q_min, q_max = spike_levels(B, domain)
    if domain == "positive":
        # Eq. 14: S = clip(floor(u + 1/2), 0, 2^B - 1)   (shift 0: Eq. 5, S = clip(floor(u), 0, 2^B - 1))
        return np.minimum(np.maximum(np.floor(u + shift), q_min), q_max)
    if B == 1:
        # Eq. 15, B = 1: S = sgn(u), sgn(x) = +1 if x > 0 else -1
        return np.where(u > 0, u.dtype.type(1), u.dtype.type(-1))
    if shift == 0.5:
        # Eq. 15: S = clip(round(u), -q, q), round(x) = sign(x) floor(|x| + 1/2)
        return np.minimum(np.maximum(np.sign(u) * np.floor(np.abs(u) + 0.5), q_min), q_max)
    # Decision (flooring in the bidirectional domain, not in the paper): S = clip(floor(u), -q, q)
    return np.minimum(np.maximum(np.floor(u), q_min), q_max)


def _forward_numpy(I, V_th, B, T, domain, shift, inv_tau, reset_decay):
    """Literal NumPy twin of the forward pass (Eq. 12-15). Returns (y, v)."""
    v = np.empty((T,) + I.shape, dtype=I.dtype)
    # Eq. 13: v^0 = 0, Shat^0 = 0
    v_prev = np.zeros_like(I)
    Shat_prev = np.zeros_like(I)
    total = np.zeros_like(I)
    for t in range(T):
        if reset_decay:
            # Eq. 13, official code (C4): v^t = (1/tau) (v^{t-1} - Shat^{t-1}) + I^t
            v_t = inv_tau * (v_prev - Shat_prev) + I
        else:
            # Eq. 13: v^t = (1/tau) v^{t-1} + I^t - Shat^{t-1}
            #   (summed as ((1/tau) v^{t-1} - Shat^{t-1}) + I, so that tau = 1 is bit-identical to C4)
            v_t = inv_tau * v_prev - Shat_prev + I
        v[t] = v_t
        u = v_t / V_th[t]
        # Eq. 14 (positive) / Eq. 15 (bidirectional): S^t = clip(round(u), q_min, q_max)
        S = _emit_numpy(u, B[t], domain, shift)
        # Eq. 14: Shat^t = V_th^t S^t   (threshold = amplitude)
        Shat = V_th[t] * S
        total = total + Shat
        v_prev, Shat_prev = v_t, Shat
    # Eq. 12: y = (1/T) sum_t Shat^t   (temporal squeezing)
    y = total / T
    return y, v


# ----------------------------------------------------------------------------
# forward: numba kernel
# ----------------------------------------------------------------------------


@njit(cache=True)
def _emit(u, round_away, sgn, shift, q_min, q_max):
    """Scalar twin of :func:`_emit_numpy`, written without branches so that loops vectorize.

    ``round_away`` = bidirectional with shift 1/2; ``sgn`` = bidirectional with B = 1.
    Every value has the dtype of ``u``.
    """
    # Eq. 15: round(u) = sign(u) floor(|u| + 1/2)
    a = np.floor(abs(u) + shift)
    r_away = -a if u < 0 else a
    # Eq. 14 (shift 1/2) / Eq. 5 (shift 0): floor(u + shift)
    r_floor = np.floor(u + shift)
    r = min(max(r_away if round_away else r_floor, q_min), q_max)
    # Eq. 15, B = 1: sgn(u) (q_max = 1, q_min = -1)
    s = q_max if u > 0 else q_min
    return s if sgn else r


@njit(cache=True)
def _count_nonfinite(a):
    """Number of non-finite entries of a 1-D array."""
    count = 0
    for i in range(a.shape[0]):
        count += 0 if np.isfinite(a[i]) else 1
    return count


@njit(cache=True)
def _forward_step(x, v_t, y, v_prev, Shat_prev, vth, q_lo, q_hi, round_away, sgn, shift, inv_tau, reset_decay):
    """One step t over the elements of one block (1-D contiguous slices; a vectorizable loop).

    ``v_prev``, ``Shat_prev`` hold v^{t-1}, Shat^{t-1} and are overwritten with v^t, Shat^t;
    ``y`` accumulates sum_t Shat^t.
    """
    for i in range(x.shape[0]):
        v_c4 = inv_tau * (v_prev[i] - Shat_prev[i]) + x[i]  # Eq. 13 (C4)
        v_paper = inv_tau * v_prev[i] - Shat_prev[i] + x[i]  # Eq. 13
        v = v_c4 if reset_decay else v_paper
        v_t[i] = v
        S = _emit(v / vth, round_away, sgn, shift, q_lo, q_hi)  # Eq. 14 / 15
        Shat = vth * S
        y[i] = y[i] + Shat
        v_prev[i] = v
        Shat_prev[i] = Shat


@njit(cache=True, parallel=True)
def _forward_kernel(I, v_th, bits, qmin, qmax, bidir, shift, inv_tau, reset_decay, T_f, y, v):
    """Fused forward: blocks of BLOCK elements in parallel; the T steps of a block run
    while it sits in cache. Returns the number of non-finite inputs (checked in the same pass).
    """
    T = v.shape[0]
    N = I.shape[0]
    round_away = bidir and shift != 0
    bad = 0
    for b in prange((N + BLOCK - 1) // BLOCK):
        j0 = b * BLOCK
        j1 = min(N, j0 + BLOCK)
        x = I[j0:j1]
        yb = y[j0:j1]
        bad += _count_nonfinite(x)
        # v^0 = 0, Shat^0 = 0 (Eq. 13); y accumulates from 0
        state = np.zeros((2, j1 - j0), dtype=I.dtype)
        yb[:] = 0
        for t in range(T):
            _forward_step(x, v[t, j0:j1], yb, state[0], state[1], v_th[t], qmin[t], qmax[t],
                          round_away, bidir and bits[t] == 1, shift, inv_tau, reset_decay)
        for i in range(j1 - j0):
            yb[i] = yb[i] / T_f  # Eq. 12
    return bad


# ----------------------------------------------------------------------------
# forward: public entry
# ----------------------------------------------------------------------------


def neuron_forward(
    I, v_th, bits, T, *, domain="positive", shift=0.5, tau=1.0, reset_decay=False, impl="numba"
):
    """Refined multi-bit spiking neuron with temporal squeezing (Eq. 12-15).

    Args:
        I: analog input current (any shape, float32 or float64), the same at every step.
        v_th: 1-D thresholds ``V_th^t`` (= spike amplitudes), length >= T, first T > 0.
        bits: 1-D integer spike bit widths ``B^t``, length >= T, first T in 1..24.
        T: number of time steps, 1 <= T <= min(len(v_th), len(bits)).
        domain: ``"positive"`` (Eq. 14, S in 0..2^B-1) or ``"bidirectional"``
            (Eq. 15, S in -q..q with q = 2^{B-1}-1, S = sgn(u) when B = 1).
        shift: 0.5 rounds (Eq. 14, default); 0.0 floors (Eq. 5, the "Flooring" ablation).
            Bidirectional with shift 0.0 is ``clip(floor(u), -q, q)`` for B >= 2 -- our
            **Decision**, the paper does not define it; B = 1 is ``sgn(u)`` for both shifts.
        tau: membrane time constant (1 = IF neuron, the refined default; > 1 = LIF).
        reset_decay: False = paper Eq. 13, ``v^t = (1/tau) v^{t-1} + I - Shat^{t-1}``;
            True = official code (convention C4), ``v^t = (1/tau)(v^{t-1} - Shat^{t-1}) + I``.
            Identical bit for bit when tau = 1.
        impl: ``"numba"`` (default) or ``"numpy"`` (the literal twin); they agree bit for bit.

    Returns:
        ``(y, v)``: ``y`` (shape of I) = Eq. 12 squeezed output ``(1/T) sum_t V_th^t S^t``;
        ``v`` (shape ``(T, *I.shape)``) = membrane potentials ``v^t`` before firing,
        needed by :func:`neuron_backward` and by the renewal observer (Alg. 1).
    """
    impl = chk.check_impl(impl)
    I = _check_float(I, "I")
    T, B, shift, tau = _check_common(v_th, bits, T, domain, shift, tau, I.dtype, "I")
    reset_decay = bool(reset_decay)
    dt = I.dtype.type
    inv_tau = dt(1.0 / tau)
    if impl == "numpy":
        _check_finite(I, "I")
        y, v = _forward_numpy(I, v_th[:T], B, T, domain, dt(shift), inv_tau, reset_decay)
        return np.asarray(y), v
    x = np.ascontiguousarray(I).reshape(-1)
    qmin, qmax = _step_constants(v_th, B, T, domain, I.dtype)
    y = np.empty_like(x)
    v = np.empty((T, x.size), dtype=I.dtype)
    bad = _forward_kernel(
        x, np.ascontiguousarray(v_th[:T]), np.array(B, dtype=np.int64), qmin, qmax,
        domain == "bidirectional", dt(shift), inv_tau, reset_decay, dt(T), y, v,
    )
    if bad:
        _check_finite(I, "I")
    return y.reshape(I.shape), v.reshape((T,) + I.shape)


# ----------------------------------------------------------------------------
# backward: the reduction shared by both implementations
# ----------------------------------------------------------------------------

#: The sums over the elements j (in g_vth and g_bits) are taken in one fixed order:
#: blocks of BLOCK consecutive elements (the last one padded with zeros); inside a block,
#: pairwise by halving (x[i] + x[i + BLOCK/2], then the same on the first half, ...);
#: then one NumPy call adds the block sums.
BLOCK = 1024


def _block_partial_sums(terms):
    """Block sums of ``terms`` (shape (..., N)) in the fixed order above; shape (..., ceil(N/BLOCK)).

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


def _reduce_step_terms(partials, B, T, N, domain, bit_grad_lsq, n_vth, n_bits):
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


def _bit_factor(B, q_max, one_bit_factor):
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
        S = _emit_numpy(u, B[t], domain, shift)
        # Eq. 20: dShat^t/dv^t = [q_min <= u <= q_max]
        inside = (q_min <= u) & (u <= q_max)
        ind = inside.astype(gy.dtype)
        # App. A.6-A.7 / A.12-A.13: h = S - u inside, q_max above, q_min below
        #   (bidirectional B = 1: S = sgn(u), so h = sgn(u) - u inside)
        h = np.where(inside, S - u, np.where(u > q_max, dt(q_max), dt(q_min)))
        # Eq. 16-17 / App. A.10-A.11: k = sign(u) V_th^t (q_max + 1) ln2 outside [q_min, q_max]
        #   (positive domain: only u > q_max; C2: factor one_bit_factor instead of q_max + 1 at B = 1)
        outside = (u > q_max) if domain == "positive" else ~inside
        F = _bit_factor(B[t], q_max, one_bit_factor)
        k = np.where(outside, np.sign(u) * V_th[t] * F * LN2, dt(0.0))
        terms[0, t] = gS * h
        terms[1, t] = gS * k
        if bptt:
            # Eq. 20 + Eq. 13 carry: dL/dv^t = dL/dShat^t ind + (1/tau) dL/dv^{t+1}
            gv = gS * ind + inv_tau * gv_next
        else:
            # Eq. 20 (C3, official code: carry detached)
            gv = gS * ind
        # METHOD.md 6.6: dv^t/dI = 1, so dL/dI = sum_t dL/dv^t
        gI = gI + gv
        gv_next = gv
    return gI, _block_partial_sums(terms.reshape(2, T, -1))


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
        S = _emit(u, round_away, sgn, shift, q_lo, q_hi)
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
def _block_sum(terms):
    """Sum of one block's terms (length BLOCK, zero-padded) in the order of
    :func:`_block_partial_sums`; overwrites ``terms``."""
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
    order of :func:`_block_partial_sums`, written to ``partials[:, t, b]``.

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
        bad += _count_nonfinite(gyb)
        gIb[:] = 0
        # rows: dL/dv^{t+1} (0 after the last step); the terms gS h and gS k, zero-padded to BLOCK
        work = np.zeros((3, BLOCK), dtype=gy.dtype)
        for tt in range(T):
            t = T - 1 - tt
            k_lo = -kmag[t] if bidir else kmag[t] - kmag[t]
            bad += _backward_step(gyb, v[t, j0:j1], gIb, work[0, :n], work[1, :n], work[2, :n], v_th[t],
                                  qmin[t], qmax[t], kmag[t], k_lo, round_away, bidir and bits[t] == 1, shift,
                                  inv_tau, r, bptt, T_f)
            partials[0, t, b] = _block_sum(work[1])
            partials[1, t, b] = _block_sum(work[2])
            # _block_sum overwrote the first n terms; the zero padding beyond n is intact
    return bad


# ----------------------------------------------------------------------------
# backward: public entry
# ----------------------------------------------------------------------------


def neuron_backward(
    gy, v, v_th, bits, T, *, domain="positive", shift=0.5, tau=1.0, reset_decay=False,
    bptt=True, bit_grad_lsq=True, one_bit_factor=2.0, impl="numba",
):
    """Gradients of the refined neuron (Eq. 16-17, 20, App. A.6-A.7, A.10-A.13, METHOD.md 6.6).

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
    gy = _check_float(gy, "gy")
    T, B, shift, tau = _check_common(v_th, bits, T, domain, shift, tau, gy.dtype, "gy")
    v = _check_float(v, "v")
    chk.same_dtype(gy, "gy", v, "v")
    chk.expect_shape(v, "v", (T,) + gy.shape, "(T, *gy.shape), as returned by neuron_forward")
    if isinstance(one_bit_factor, (bool, np.bool_)) or not isinstance(one_bit_factor, numbers.Real) \
            or not (math.isfinite(one_bit_factor) and one_bit_factor > 0):
        raise ValueError(
            f"one_bit_factor must be a finite number > 0 (2.0 paper, 1.0 official), got {one_bit_factor!r}"
        )
    one_bit_factor = float(one_bit_factor)
    reset_decay, bptt, bit_grad_lsq = bool(reset_decay), bool(bptt), bool(bit_grad_lsq)
    dt = gy.dtype.type
    inv_tau = dt(1.0 / tau)
    if impl == "numpy":
        _check_finite(gy, "gy")
        _check_finite(v, "v")
        gI, partials = _backward_numpy(
            gy, v, v_th[:T], B, T, domain, dt(shift), inv_tau, reset_decay, bptt, one_bit_factor
        )
        gI = np.asarray(gI)
    else:
        g = np.ascontiguousarray(gy).reshape(-1)
        vv = np.ascontiguousarray(v).reshape(T, -1)
        qmin, qmax = _step_constants(v_th, B, T, domain, gy.dtype)
        F = np.array([_bit_factor(B[t], int(qmax[t]), one_bit_factor) for t in range(T)], dtype=gy.dtype)
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
            _check_finite(gy, "gy")
            _check_finite(v, "v")
        gI = gI.reshape(gy.shape)
    g_vth, g_bits = _reduce_step_terms(partials, B, T, gy.size, domain, bit_grad_lsq, len(v_th), len(bits))
    return gI, g_vth, g_bits
