"""The spiking neuron in sequential mode: a current per time step, no squeeze (docs/method.md §14, §1).

Symbols (docs/method.md §1, §5, §6 and §14; one layer, so the index ``l`` is dropped)::

    I^t          analog input current at step t, t = 1..T  (T = I.shape[0])
    V_th^t       threshold at step t
    a^t          spike amplitude: a^t = V_th^t (refined neuron, Eq. 14)
                 or a^t = alpha^t (prior multi-bit neuron, Eq. 3-5)
    v^0 = 0, Shat^0 = 0
    v^t    = (1/tau) v^{t-1} + I^t - Shat^{t-1}             (Eq. 13 with I^t; Eq. 4 with Shat = alpha S)
           = (1/tau) (v^{t-1} - Shat^{t-1}) + I^t           (official code: C4)
    u      = v^t / V_th^t
    S^t    = clip(floor(u + shift), 0, 2^B - 1)             (Eq. 14, shift 1/2; Eq. 5, shift 0)
    S^t    = clip(round(u), -q, q) / sgn(u)                 (Eq. 15 bidirectional)
    Shat^t = a^t S^t                                        (the layer's output at step t; no Eq. 12)

Gradients, computed backwards for t = T..1 with ``gv^{T+1} = 0``, ``gO^t = dL/dShat^t``
from the layers above, ``ind = [q_min <= u <= q_max]``, ``gain = a^t / V_th^t``
(exactly 1 for the refined neuron, where it is not multiplied in)::

    gS^t  = gO^t - r gv^{t+1}           (reset path of Eq. 13, r = 1 or 1/tau under C4; only with bptt, C3)
    gv^t  = gS^t gain ind + (1/tau) gv^{t+1}   (Eq. 20 + carry of Eq. 13; the carry only with bptt, C3)
    gI^t  = gv^t                        (dv^t/dI^t = 1, docs/method.md §6.6)
    g_vth[t]   = g   sum_j gS_j^t h_j   (App. A.6-A.7, A.12-A.13)
    g_bits[t]  = g_B sum_j gS_j^t k_j   (Eq. 16-17, App. A.10-A.11)
    g_alpha[t] = sum_j gS_j^t S_j^t     (Eq. 3-5 only: dShat/dalpha = S)
    refined:   h = S - u inside, q_max above, q_min below  (bidirectional B = 1: sgn(u) - u)
    prior-art: h = -gain u inside, 0 outside  (dShat/dV_th with alpha held fixed; **Decision**)
    k = sign(u) a^t F ln2 outside [q_min, q_max] (positive: only above), else 0; F as in the squeeze kernel

``g = 1/sqrt(N q_max)`` with ``N`` = the elements of one step (``I[t].size``; batch included),
``g_B = g`` (paper) or 1 (C1). With T = 1 every output equals the squeeze neuron's
(:mod:`refsnn.kernels.neuron`) bit for bit.

Two implementations: ``impl="numpy"`` (the literal twin, the specification) and ``impl="numba"``
(default; blocks of BLOCK elements in parallel, each block through its T steps while in cache).
The per-element expressions are the same operations in the same order; the sums over j follow
the squeeze kernel's fixed order (``block_partial_sums`` / ``block_sum``), so both agree bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from refsnn.kernels import checks as chk
from refsnn.kernels import neuron_grad as ng
from refsnn.kernels import spike as sp

__all__ = ["seq_neuron_forward", "seq_neuron_backward"]

LN2 = sp.LN2
BLOCK = sp.BLOCK


def _check_input(I, v_th, bits, domain, shift, tau, amplitude, name):
    """Validate; return (T, B list, shift, tau, amplitude-or-None, prior flag)."""
    I = chk.float_array(I, name, None, nonempty=True)
    if I.ndim < 1:
        raise ValueError(f"{name} must have a leading time axis (shape (T, ...)), got a 0-d array")
    T = I.shape[0]
    T, B, shift, tau = sp.check_common(v_th, bits, T, domain, shift, tau, I.dtype, name)
    if amplitude is None:
        return T, B, shift, tau, None
    a = chk.float_array(amplitude, "amplitude", None, nonempty=True)
    chk.same_dtype(I, name, a, "amplitude")
    if a.ndim != 1 or len(a) < T:
        raise ValueError(f"amplitude must be 1-D with length >= T = {T} (one alpha per step), got shape {a.shape}")
    for t in range(T):
        if not (np.isfinite(a[t]) and a[t] > 0):
            raise ValueError(f"amplitude[{t}] = {a[t]} is not allowed: amplitudes alpha must be finite and > 0")
    return T, B, shift, tau, a


# ----------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------


def _forward_numpy(I, V_th, A, B, domain, shift, inv_tau, reset_decay):
    """Literal NumPy twin of the sequential forward (Eq. 13-15, or Eq. 3-5). Returns (Shat, v)."""
    T = I.shape[0]
    v = np.empty_like(I)
    Shat_all = np.empty_like(I)
    # Eq. 13: v^0 = 0, Shat^0 = 0
    v_prev = np.zeros_like(I[0])
    Shat_prev = np.zeros_like(I[0])
    for t in range(T):
        if reset_decay:
            # Eq. 13, official code (C4): v^t = (1/tau) (v^{t-1} - Shat^{t-1}) + I^t
            v_t = inv_tau * (v_prev - Shat_prev) + I[t]
        else:
            # Eq. 13 / Eq. 4: v^t = (1/tau) v^{t-1} + I^t - Shat^{t-1}   (summed as in the squeeze kernel)
            v_t = inv_tau * v_prev - Shat_prev + I[t]
        v[t] = v_t
        u = v_t / V_th[t]
        # Eq. 14 / Eq. 15 / Eq. 5: S^t = clip(round or floor(u), q_min, q_max)
        S = sp.emit_numpy(u, B[t], domain, shift)
        # Eq. 14: Shat^t = V_th^t S^t (refined);  Eq. 3-4: Shat^t = alpha^t S^t (prior art)
        Shat = A[t] * S
        Shat_all[t] = Shat
        v_prev, Shat_prev = v_t, Shat
    return Shat_all, v


@njit(cache=True, parallel=True)
def _forward_kernel(I, v_th, amp, bits, qmin, qmax, bidir, shift, inv_tau, reset_decay, out, v):
    """Blocks of BLOCK elements in parallel; per block the T steps in order (Eq. 13-15).
    Returns the number of non-finite inputs."""
    T, N = I.shape
    round_away = bidir and shift != 0
    bad = 0
    for b in prange((N + BLOCK - 1) // BLOCK):
        j0 = b * BLOCK
        j1 = min(N, j0 + BLOCK)
        state = np.zeros((2, j1 - j0), dtype=I.dtype)  # v^{t-1}, Shat^{t-1}; both 0 at t = 0
        vp = state[0]
        shp = state[1]
        for t in range(T):
            x = I[t, j0:j1]
            bad += sp.count_nonfinite(x)
            vt_out = v[t, j0:j1]
            o = out[t, j0:j1]
            vth, a, lo, hi = v_th[t], amp[t], qmin[t], qmax[t]
            sgn = bidir and bits[t] == 1
            for i in range(j1 - j0):
                v_c4 = inv_tau * (vp[i] - shp[i]) + x[i]  # Eq. 13 (C4)
                v_paper = inv_tau * vp[i] - shp[i] + x[i]  # Eq. 13
                vv = v_c4 if reset_decay else v_paper
                vt_out[i] = vv
                S = sp.emit(vv / vth, round_away, sgn, shift, lo, hi)  # Eq. 14 / 15 / 5
                sh = a * S  # Shat^t = a^t S^t
                o[i] = sh
                vp[i] = vv
                shp[i] = sh
    return bad


def seq_neuron_forward(I, v_th, bits, *, domain="positive", shift=0.5, tau=1.0, reset_decay=False,
                       amplitude=None, impl="numba"):
    """Sequential spiking neuron, step by step, no squeeze (docs/method.md §14; Eq. 13-15, or Eq. 3-5).

    Args:
        I: currents ``I^t``, shape ``(T, ...)`` (float32/float64); T = ``I.shape[0]``.
        v_th: 1-D thresholds ``V_th^t``, length >= T, first T finite and > 0.
        bits: 1-D integer spike widths ``B^t``, length >= T, first T in 1..24.
        domain, shift, tau, reset_decay: as :func:`refsnn.kernels.neuron.neuron_forward`
            (shift 0.5 rounds, Eq. 14; 0.0 floors, Eq. 5; reset_decay = convention C4).
        amplitude: None = refined neuron, ``Shat^t = V_th^t S^t`` (Eq. 14); a 1-D array
            ``alpha^t`` (length >= T, > 0) = the prior multi-bit neuron of Eq. 3-5,
            ``Shat^t = alpha^t S^t`` and reset by ``alpha^t S^t`` (use with shift 0.0).
        impl: ``"numba"`` or ``"numpy"`` (the literal twin); bit for bit equal.

    Returns:
        ``(Shat, v)``, both of the shape of I: ``Shat[t] = a^t S^t`` and the membrane
        potentials ``v^t`` before firing (for the backward pass and the observers, Alg. 1).
    """
    impl = chk.check_impl(impl)
    T, B, shift, tau, a = _check_input(I, v_th, bits, domain, shift, tau, amplitude, "I")
    dt = I.dtype.type
    inv_tau = dt(1.0 / tau)
    A = v_th[:T] if a is None else a[:T]
    if impl == "numpy":
        chk.check_finite(I, "I")
        return _forward_numpy(I, v_th[:T], A, B, domain, dt(shift), inv_tau, bool(reset_decay))
    x = np.ascontiguousarray(I).reshape(T, -1)
    qmin, qmax = sp.step_constants(v_th, B, T, domain, I.dtype)
    out = np.empty_like(x)
    v = np.empty_like(x)
    bad = _forward_kernel(x, np.ascontiguousarray(v_th[:T]), np.ascontiguousarray(A), np.array(B, dtype=np.int64),
                          qmin, qmax, domain == "bidirectional", dt(shift), inv_tau, bool(reset_decay), out, v)
    if bad:
        chk.check_finite(I, "I")
    return out.reshape(I.shape), v.reshape(I.shape)


# ----------------------------------------------------------------------------
# backward
# ----------------------------------------------------------------------------


def _backward_numpy(gO, v, V_th, A, prior, B, domain, shift, inv_tau, reset_decay, bptt, one_bit_factor):
    """Literal NumPy twin of the sequential backward, t = T..1. Returns (gI, block partial sums)."""
    dt = gO.dtype.type
    T = gO.shape[0]
    terms = np.empty((3,) + gO.shape, dtype=gO.dtype)
    gI = np.empty_like(gO)
    # gradient w.r.t. v^{T+1}: nothing beyond the last step
    gv_next = np.zeros_like(gO[0])
    # dv^{t+1}/dShat^t = -1 (Eq. 13), or -1/tau with the decayed reset (C4)
    r = inv_tau if reset_decay else dt(1.0)
    for t in reversed(range(T)):
        q_min, q_max = sp.spike_levels(B[t], domain)
        u = v[t] / V_th[t]
        # Eq. 13 reset path: dL/dShat^t = dL/dShat^t (from above) + dL/dv^{t+1} dv^{t+1}/dShat^t  (bptt, C3)
        gS = gO[t] - r * gv_next if bptt else gO[t]
        S = sp.emit_numpy(u, B[t], domain, shift)
        # Eq. 20: dS^t/du = [q_min <= u <= q_max]
        inside = (q_min <= u) & (u <= q_max)
        ind = inside.astype(gO.dtype)
        if prior:
            gain = A[t] / V_th[t]
            # Eq. 3-5 with alpha held fixed: dShat/dV_th = -(alpha/V_th) u inside, 0 outside (Decision)
            h = np.where(inside, -(gain * u), dt(0.0))
        else:
            # App. A.6-A.7 / A.12-A.13: h = S - u inside, q_max above, q_min below
            h = np.where(inside, S - u, np.where(u > q_max, dt(q_max), dt(q_min)))
        # Eq. 16-17 / App. A.10-A.11: k = sign(u) a^t F ln2 outside [q_min, q_max] (positive: above)
        outside = (u > q_max) if domain == "positive" else ~inside
        F = ng.bit_factor(B[t], q_max, one_bit_factor)
        k = np.where(outside, np.sign(u) * A[t] * F * LN2, dt(0.0))
        terms[0, t] = gS * h
        terms[1, t] = gS * k
        # Eq. 3: dShat^t/dalpha^t = S^t
        terms[2, t] = gS * S
        # Eq. 20 (times alpha/V_th for Eq. 3-5) + Eq. 13 carry (bptt, C3)
        d = gS * ind * gain if prior else gS * ind
        gv = d + inv_tau * gv_next if bptt else d
        # docs/method.md §6.6: dv^t/dI^t = 1
        gI[t] = gv
        gv_next = gv
    return gI, ng.block_partial_sums(terms.reshape(3, T, -1))


@njit(cache=True, parallel=True)
def _backward_kernel(gO, v, v_th, amp, prior, bits, qmin, qmax, kmag, bidir, shift, inv_tau, r, bptt, gI, partials):
    """Blocks of BLOCK elements in parallel; per block the steps T..1, and after each step the
    block sums of ``gS h``, ``gS k``, ``gS S`` in the order of ``block_partial_sums``.
    ``kmag[t] = a^t F ln2``. Returns the number of non-finite gO / v entries."""
    T, N = gO.shape
    round_away = bidir and shift != 0
    bad = 0
    for b in prange(partials.shape[2]):
        j0 = b * BLOCK
        j1 = min(N, j0 + BLOCK)
        n = j1 - j0
        work = np.zeros((4, BLOCK), dtype=gO.dtype)  # dL/dv^{t+1}; terms gS h, gS k, gS S (zero padded)
        gvn = work[0]
        for tt in range(T):
            t = T - 1 - tt
            go = gO[t, j0:j1]
            vt = v[t, j0:j1]
            gi = gI[t, j0:j1]
            bad += sp.count_nonfinite(go) + sp.count_nonfinite(vt)
            vth, lo, hi, km = v_th[t], qmin[t], qmax[t], kmag[t]
            zero = vth - vth
            one = vth / vth
            gain = amp[t] / vth
            k_lo = -km if bidir else zero
            sgn = bidir and bits[t] == 1
            for i in range(n):
                u = vt[i] / vth
                gS = go[i] - r * gvn[i] if bptt else go[i]
                S = sp.emit(u, round_away, sgn, shift, lo, hi)
                inside = (lo <= u) & (u <= hi)
                above = u > hi
                ind = one if inside else zero
                h_ref = (S - u) if inside else (hi if above else lo)
                h_pri = -(gain * u) if inside else zero
                h = h_pri if prior else h_ref
                k = zero if inside else (km if above else k_lo)
                work[1, i] = gS * h
                work[2, i] = gS * k
                work[3, i] = gS * S
                d = gS * ind * gain if prior else gS * ind
                gv = d + inv_tau * gvn[i] if bptt else d
                gi[i] = gv
                gvn[i] = gv
            partials[0, t, b] = ng.block_sum(work[1])
            partials[1, t, b] = ng.block_sum(work[2])
            partials[2, t, b] = ng.block_sum(work[3])
            # block_sum overwrote the first n terms; the zero padding beyond n is intact
    return bad


def seq_neuron_backward(gO, v, v_th, bits, *, domain="positive", shift=0.5, tau=1.0, reset_decay=False,
                        amplitude=None, bptt=True, bit_grad_lsq=True, one_bit_factor=2.0, impl="numba"):
    """Gradients of the sequential neuron per step (docs/method.md §6.1-6.3, §6.6; Eq. 16-17, 20, App. A.6-A.13).

    Args:
        gO: dL/dShat, shape ``(T, ...)`` (the forward input's shape and dtype).
        v: membrane potentials from :func:`seq_neuron_forward`, shape of gO.
        v_th, bits, domain, shift, tau, reset_decay, amplitude: as in the forward call.
        bptt: full chain rule through carry and reset (paper) or both detached (official, C3).
        bit_grad_lsq: ``g_B = g`` (paper) or 1 (official, C1).
        one_bit_factor: F at B = 1: 2.0 (paper) or 1.0 (official, C2).

    Returns:
        ``(gI, g_vth, g_bits, g_alpha)``: gI of gO's shape; g_vth and g_bits of the lengths of
        v_th and bits (entries ``t >= T`` are 0); g_alpha of the length of ``amplitude``, or
        None for the refined neuron. ``N`` in ``g`` is ``gO[0].size`` (one step).
    """
    impl = chk.check_impl(impl)
    T, B, shift, tau, a = _check_input(gO, v_th, bits, domain, shift, tau, amplitude, "gO")
    v = chk.float_array(v, "v", None, nonempty=True)
    chk.same_dtype(gO, "gO", v, "v")
    chk.expect_shape(v, "v", gO.shape, "the shape of gO, as returned by seq_neuron_forward")
    one_bit_factor = ng.check_one_bit_factor(one_bit_factor)
    dt = gO.dtype.type
    inv_tau = dt(1.0 / tau)
    prior = a is not None
    A = v_th[:T] if a is None else a[:T]
    r = inv_tau if reset_decay else dt(1.0)
    if impl == "numpy":
        chk.check_finite(gO, "gO")
        chk.check_finite(v, "v")
        gI, partials = _backward_numpy(gO, v, v_th[:T], A, prior, B, domain, dt(shift), inv_tau, bool(reset_decay),
                                       bool(bptt), float(one_bit_factor))
    else:
        g = np.ascontiguousarray(gO).reshape(T, -1)
        qmin, qmax = sp.step_constants(v_th, B, T, domain, gO.dtype)
        F = np.array([ng.bit_factor(B[t], int(qmax[t]), float(one_bit_factor)) for t in range(T)], dtype=gO.dtype)
        # a^t F ln2, evaluated left to right in the input dtype as in the twin (sign(u) = +-1 is exact)
        kmag = np.ascontiguousarray(A) * F * dt(LN2)
        gI = np.empty_like(g)
        partials = np.empty((3, T, -(-g.shape[1] // BLOCK)), dtype=gO.dtype)
        bad = _backward_kernel(g, np.ascontiguousarray(v).reshape(T, -1), np.ascontiguousarray(v_th[:T]),
                               np.ascontiguousarray(A), prior, np.array(B, dtype=np.int64), qmin, qmax, kmag,
                               domain == "bidirectional", dt(shift), inv_tau, r, bool(bptt), gI, partials)
        if bad:
            chk.check_finite(gO, "gO")
            chk.check_finite(v, "v")
        gI = gI.reshape(gO.shape)
    n_step = gO[0].size
    g_vth, g_bits = ng.reduce_step_terms(partials[:2], B, T, n_step, domain, bool(bit_grad_lsq), len(v_th), len(bits))
    if not prior:
        return gI, g_vth, g_bits, None
    g_alpha = np.zeros(len(a), dtype=gO.dtype)
    # Eq. 3: dL/dalpha^t = sum_j dL/dShat_j^t S_j^t  (an amplitude, not a quantizer step: no LSQ scale)
    g_alpha[:T] = partials[2].sum(axis=1)
    return gI, g_vth, g_bits, g_alpha
