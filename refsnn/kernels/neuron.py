"""The refined spiking neuron: forward (Eq. 12-15) and gradients (Eq. 16-17, 20, App. A.6-A.13).

Three modules: this one (the forward pass, ``neuron_forward``, and the public entry of both),
``refsnn.kernels.neuron_grad`` (the gradients, ``neuron_backward``, re-exported here) and
``refsnn.kernels.spike`` (the spike levels and emission, the argument checks and ``BLOCK``,
shared by both).

Symbols (docs/method.md §5 and §6; one layer, so the index ``l`` is dropped)::

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
    gI    = sum_t gv^t                  (dv^t/dI = 1, docs/method.md §6.6)
    g_vth[t]  = g   sum_j gS_j^t h_j    (App. A.6-A.7 positive, A.12-A.13 bidirectional)
    g_bits[t] = g_B sum_j gS_j^t k_j    (Eq. 16-17 positive, App. A.10-A.11 bidirectional)
    h = S - u inside, q_max above, q_min below  (bidirectional B = 1 inside: sgn(u) - u)
    k = sign(u) V_th^t F ln2 outside [q_min, q_max] (positive domain: only u > q_max), else 0
    F = q_max + 1, or ``one_bit_factor`` when B = 1 (2 = q_max + 1 paper, 1 official: C2)
    g_B = g (paper) or 1 (official: C1)

Conventions (docs/method.md §10) map to flags: C1 ``bit_grad_lsq``, C2 ``one_bit_factor``,
C3 ``bptt``, C4 ``reset_decay``.

Two implementations of every kernel: ``impl="numpy"``, the literal twin that follows the
symbols above line by line (it is the specification), and ``impl="numba"`` (default): the
elements are cut into blocks of BLOCK, the blocks run in parallel, and each block goes
through its T steps while it sits in cache, one branch-free (vectorizable) loop per step.
Both evaluate every per-element expression with the same operations in the same order, in
the input's dtype (no fastmath, so no FMA contraction). The sums over j in ``g_vth`` and
``g_bits`` follow one fixed order (``BLOCK`` in ``refsnn.kernels.spike``: blocks of BLOCK, pairwise
by halving inside a block, the block sums added by one NumPy call), which the numba
kernel follows while it runs, without storing per-element terms. So the two
implementations agree bit for bit on every output (up to the sign of zero, which
``np.array_equal`` ignores).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from refsnn.kernels import checks as chk
from refsnn.kernels.neuron_grad import neuron_backward
from refsnn.kernels.spike import (BLOCK, DOMAINS, MAX_BITS, SHIFTS, check_common, check_finite,
                                  count_nonfinite, emit, emit_numpy, spike_levels, step_constants)

__all__ = ["neuron_forward", "neuron_backward", "spike_levels", "emit_numpy", "DOMAINS", "SHIFTS", "MAX_BITS",
           "BLOCK"]


# ----------------------------------------------------------------------------
# forward: NumPy twin (the specification)
# ----------------------------------------------------------------------------


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
        S = emit_numpy(u, B[t], domain, shift)
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
        S = emit(v / vth, round_away, sgn, shift, q_lo, q_hi)  # Eq. 14 / 15
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
        bad += count_nonfinite(x)
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
    I = chk.float_array(I, "I", None, nonempty=True)
    T, B, shift, tau = check_common(v_th, bits, T, domain, shift, tau, I.dtype, "I")
    reset_decay = bool(reset_decay)
    dt = I.dtype.type
    inv_tau = dt(1.0 / tau)
    if impl == "numpy":
        check_finite(I, "I")
        y, v = _forward_numpy(I, v_th[:T], B, T, domain, dt(shift), inv_tau, reset_decay)
        return np.asarray(y), v
    x = np.ascontiguousarray(I).reshape(-1)
    qmin, qmax = step_constants(v_th, B, T, domain, I.dtype)
    y = np.empty_like(x)
    v = np.empty((T, x.size), dtype=I.dtype)
    bad = _forward_kernel(
        x, np.ascontiguousarray(v_th[:T]), np.array(B, dtype=np.int64), qmin, qmax,
        domain == "bidirectional", dt(shift), inv_tau, reset_decay, dt(T), y, v,
    )
    if bad:
        check_finite(I, "I")
    return y.reshape(I.shape), v.reshape((T,) + I.shape)
