"""The refined multi-bit spiking neuron with temporal squeezing as a tape op.

Forward: Eq. 13 (membrane), Eq. 14 (positive spikes) or Eq. 15 (bidirectional
spikes), Eq. 12 (squeeze y = (1/T) sum_t V_th^t S^t), all T steps in one call.
Backward: Eq. 20 (through the spike), App. A.6-A.7 / A.12-A.13 (thresholds),
Eq. 16 and Eq. 17 / App. A.10-A.11 (spike widths), METHOD.md 6.5 (temporal length) and
6.6 (through the membrane), under the paper or the official convention (C1-C4).
The arithmetic lives in ``refsnn.kernels.neuron`` (numba, with its literal
NumPy twin); this file wires it to the tape, and is the only way the layers reach it.

Public functions (``convention`` is a resolved :class:`~refsnn.method.conventions.Convention`):

    spiking_neuron        the tape op: squeezed output y (Eq. 12-15) with every gradient
    membrane_potentials   the membrane v^t before firing (Eq. 13), no tape (the data X of the
                          spike observers, Alg. 1, and of the golden cases)
    emitted_spikes        the integer spikes S^t a membrane v^t emits (Eq. 14, Eq. 15)
    kernel_options        the kernel arguments a rounding and a convention select (shift, C4);
                          derived here once
"""
from __future__ import annotations

import numpy as np

from ..autograd.tensor import Tensor, primitive
from ..kernels import neuron as _k
from .conventions import PAPER, Convention, check_convention

DOMAINS = _k.DOMAINS
ROUNDINGS = {"round": 0.5, "floor": 0.0}


def spike_grid(B: int, domain: str) -> tuple:
    """(q_min, q_max) of the spike grid: Eq. 14 positive {0..2^B-1}; Eq. 15 bidirectional {-q..q} or {-1, 1}."""
    return _k.spike_levels(int(B), domain)


def kernel_options(rounding: str, convention: Convention) -> dict:
    """The kernel's ``shift`` (rounding: 1/2, flooring Eq. 5: 0) and ``reset_decay`` (C4) -- derived only here."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {tuple(ROUNDINGS)}, got {rounding!r}")
    return {"shift": ROUNDINGS[rounding], "reset_decay": check_convention(convention).reset_decay}


def membrane_potentials(I, v_th, bits, T, *, domain: str, rounding: str, tau: float, convention: Convention,
                        impl: str = "numba") -> np.ndarray:
    """The membrane potentials v^t before firing, shape ``(T, *I.shape)`` (Eq. 13 with Eq. 14-15 for the resets).

    Plain arrays, no tape: ``I`` the input current, ``v_th`` the thresholds, ``bits`` the integer spike widths
    (both of length >= T), as the kernel takes them.
    """
    # Eq. 13: v^t = (1/tau) v^{t-1} + I - Shat^{t-1} (the kernel writes out C4's variant)
    _, v = _k.neuron_forward(I, v_th, bits, T, domain=domain, tau=tau, impl=impl,
                             **kernel_options(rounding, convention))
    return v


def emitted_spikes(u: np.ndarray, B: int, *, domain: str, rounding: str) -> np.ndarray:
    """The integer spike S (as floats of u's dtype) emitted for ``u = v^t / V_th^t`` at width ``B``."""
    # Eq. 14 (positive) / Eq. 15 (bidirectional): S = clip(round(u), q_min, q_max), or sgn(u) at B = 1
    return _k.emit_numpy(u, int(B), domain, u.dtype.type(ROUNDINGS[rounding]))


@primitive
def _neuron(ctx, I, v_th, bits, T, *, domain, rounding, tau, convention, impl):
    ctx.T = int(T)
    ctx.B = bits.astype(np.int64)
    # Eq. 12-15: membrane over T steps, spikes, squeeze (the kernel's docstring writes each line out)
    y, ctx.v = _k.neuron_forward(I, v_th, ctx.B, ctx.T, domain=domain, tau=tau, impl=impl,
                                 **kernel_options(rounding, convention))
    return y


@_neuron.defvjp
def neuron_vjp(ctx, g):
    """Eq. 16, Eq. 17, Eq. 20, App. A.6-A.7, A.10-A.13 (in the kernel), and METHOD.md 6.5 for T."""
    kw = ctx.kwargs
    c = kw["convention"]
    I, v_th, bits, T = ctx.inputs
    gI, g_vth, g_bits = _k.neuron_backward(
        np.ascontiguousarray(g), ctx.v, v_th, ctx.B, ctx.T, domain=kw["domain"], tau=kw["tau"], bptt=c.bptt,
        bit_grad_lsq=c.bit_grad_lsq, one_bit_factor=c.one_bit_factor, impl=kw["impl"],
        **kernel_options(kw["rounding"], c))
    # METHOD.md 6.5 (Eq. 12 with Eq. 20): dL/dThat = dL/dT = sum_j dL/dy_j * (-y_j / T)
    g_T = -np.sum(g * ctx.out) / ctx.T
    return gI, g_vth, g_bits.astype(bits.dtype), np.asarray(g_T, dtype=T.dtype)


def spiking_neuron(I, v_th, bits, T, *, domain: str = "positive", rounding: str = "round", tau: float = 1.0,
                   convention: Convention = PAPER, impl: str = "numba") -> Tensor:
    """Refined spiking neuron over all T steps, returning the squeezed map y (Eq. 12-15).

    I: analog input (any shape), the same current at every step.
    v_th: thresholds V_th^t, shape (T_bound,), all > 0.
    bits: spike widths B_s^t as a float tensor of integers (from ``parametrized_width``, Eq. 9), shape (T_bound,).
    T: the temporal length T_l as a 0-d float tensor holding an integer (Eq. 10), 1 <= T <= T_bound.
    domain: "positive" (Eq. 14) or "bidirectional" (Eq. 15); rounding: "round" (shift 1/2) or "floor" (shift 0).
    tau: 1 = IF (default), > 1 = LIF.  convention: a Convention (``PAPER``, ``OFFICIAL``, METHOD.md section 10;
    ``refsnn.method.get_convention`` resolves a name).
    """
    if domain not in DOMAINS:
        raise ValueError(f"spiking_neuron: domain must be one of {DOMAINS}, got {domain!r}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"spiking_neuron: rounding must be one of {tuple(ROUNDINGS)}, got {rounding!r}")
    if not (isinstance(tau, (int, float, np.integer, np.floating)) and np.isfinite(tau) and tau >= 1):
        raise ValueError(f"spiking_neuron: tau must be a finite number >= 1 (1 = IF neuron), got {tau!r}")
    check_convention(convention, "spiking_neuron: convention")
    vt = v_th.data if isinstance(v_th, Tensor) else np.asarray(v_th)
    if vt.ndim != 1 or not (vt > 0).all():
        raise ValueError(f"spiking_neuron: thresholds v_th must be a 1-D array of values > 0, got {vt!r}")
    Tv = T.data if isinstance(T, Tensor) else np.asarray(T)
    bv = bits.data if isinstance(bits, Tensor) else np.asarray(bits)
    if Tv.size != 1 or not float(Tv).is_integer() or not 1 <= int(Tv) <= len(vt):
        raise ValueError(f"spiking_neuron: T must be an integer in [1, {len(vt)}] (the number of thresholds), got {Tv!r}")
    if bv.shape != vt.shape or not np.all(bv == np.round(bv)) or (bv < 1).any():
        raise ValueError(f"spiking_neuron: bits must be integers >= 1 with the shape of v_th {vt.shape}, got {bv!r}")
    return _neuron(I, v_th, bits, T, domain=domain, rounding=rounding, tau=float(tau), convention=convention,
                   impl=impl)
