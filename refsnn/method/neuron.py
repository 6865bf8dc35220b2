"""The refined multi-bit spiking neuron as a tape op: with temporal squeezing, or sequential (docs/method.md §14).

Forward: Eq. 13 (membrane), Eq. 14 (positive spikes) or Eq. 15 (bidirectional
spikes), Eq. 12 (squeeze y = (1/T) sum_t V_th^t S^t), all T steps in one call.
Backward: Eq. 20 (through the spike), App. A.6-A.7 / A.12-A.13 (thresholds),
Eq. 16 and Eq. 17 / App. A.10-A.11 (spike widths), docs/method.md §6.5 (temporal length) and
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
    sequential_neuron     the tape op of sequential mode (docs/method.md §14): a current per step, no squeeze,
                          Shat^t for every step; also the prior-art neuron of Eq. 3-5 (``alpha``)
    sequential_membrane   its membrane v^t, no tape (the data of the per-step observers, Alg. 1)
"""
from __future__ import annotations

import numpy as np

from ..autograd.tensor import Tensor, primitive
from ..kernels import neuron as _k
from ..kernels import neuron_seq as _kseq
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
    """Eq. 16, Eq. 17, Eq. 20, App. A.6-A.7, A.10-A.13 (in the kernel), and docs/method.md §6.5 for T."""
    kw = ctx.kwargs
    c = kw["convention"]
    I, v_th, bits, T = ctx.inputs
    gI, g_vth, g_bits = _k.neuron_backward(
        np.ascontiguousarray(g), ctx.v, v_th, ctx.B, ctx.T, domain=kw["domain"], tau=kw["tau"], bptt=c.bptt,
        bit_grad_lsq=c.bit_grad_lsq, one_bit_factor=c.one_bit_factor, impl=kw["impl"],
        **kernel_options(kw["rounding"], c))
    # docs/method.md §6.5 (Eq. 12 with Eq. 20): dL/dThat = dL/dT = sum_j dL/dy_j * (-y_j / T)
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
    tau: 1 = IF (default), > 1 = LIF.  convention: a Convention (``PAPER``, ``OFFICIAL``, docs/method.md §10;
    ``refsnn.method.get_convention`` resolves a name).
    """
    vt = _check_neuron_args("spiking_neuron", v_th, bits, domain, rounding, tau, convention)
    Tv = T.data if isinstance(T, Tensor) else np.asarray(T)
    if Tv.size != 1 or not float(Tv).is_integer() or not 1 <= int(Tv) <= len(vt):
        raise ValueError(f"spiking_neuron: T must be an integer in [1, {len(vt)}] (the number of thresholds), got {Tv!r}")
    return _neuron(I, v_th, bits, T, domain=domain, rounding=rounding, tau=float(tau), convention=convention,
                   impl=impl)


def _check_neuron_args(fn, v_th, bits, domain, rounding, tau, convention):
    """Checks shared by the tape neurons; returns the thresholds as an ndarray."""
    if domain not in DOMAINS:
        raise ValueError(f"{fn}: domain must be one of {DOMAINS}, got {domain!r}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"{fn}: rounding must be one of {tuple(ROUNDINGS)}, got {rounding!r}")
    if not (isinstance(tau, (int, float, np.integer, np.floating)) and np.isfinite(tau) and tau >= 1):
        raise ValueError(f"{fn}: tau must be a finite number >= 1 (1 = IF neuron), got {tau!r}")
    check_convention(convention, f"{fn}: convention")
    vt = v_th.data if isinstance(v_th, Tensor) else np.asarray(v_th)
    if vt.ndim != 1 or not (vt > 0).all():
        raise ValueError(f"{fn}: thresholds v_th must be a 1-D array of values > 0, got {vt!r}")
    bv = bits.data if isinstance(bits, Tensor) else np.asarray(bits)
    if bv.shape != vt.shape or not np.all(bv == np.round(bv)) or (bv < 1).any():
        raise ValueError(f"{fn}: bits must be integers >= 1 with the shape of v_th {vt.shape}, got {bv!r}")
    return vt


# ----------------------------------------------------------------------------------------------------
# sequential mode (docs/method.md §14): a current per step, no squeeze; and the prior-art neuron (Eq. 3-5)
# ----------------------------------------------------------------------------------------------------
@primitive
def _seq_neuron(ctx, I, v_th, bits, *alpha, domain, rounding, tau, convention, impl):
    ctx.B = bits.astype(np.int64)
    # Eq. 13-15 per step with I^t (or Eq. 3-5 with alpha); the kernel's docstring writes each line out
    Shat, ctx.v = _kseq.seq_neuron_forward(I, v_th, ctx.B, domain=domain, tau=tau, impl=impl,
                                           amplitude=alpha[0] if alpha else None,
                                           **kernel_options(rounding, convention))
    return Shat


@_seq_neuron.defvjp
def seq_neuron_vjp(ctx, g):
    """docs/method.md §6.1-6.3 per step and 6.6 through the membrane (C3/C4); dL/dalpha = sum gS S (Eq. 3)."""
    kw = ctx.kwargs
    c = kw["convention"]
    I, v_th, bits, *alpha = ctx.inputs
    gI, g_vth, g_bits, g_alpha = _kseq.seq_neuron_backward(
        np.ascontiguousarray(g), ctx.v, v_th, ctx.B, domain=kw["domain"], tau=kw["tau"],
        amplitude=alpha[0] if alpha else None, bptt=c.bptt, bit_grad_lsq=c.bit_grad_lsq,
        one_bit_factor=c.one_bit_factor, impl=kw["impl"], **kernel_options(kw["rounding"], c))
    grads = (gI, g_vth, g_bits.astype(bits.dtype))
    return grads + ((g_alpha,) if alpha else ())


def sequential_neuron(I, v_th, bits, *, domain: str = "positive", rounding: str = "round", tau: float = 1.0,
                      convention: Convention = PAPER, impl: str = "numba", alpha=None) -> Tensor:
    """The neuron in sequential mode (docs/method.md §14): ``Shat^t = V_th^t S^t`` for every step, no squeeze.

    I: currents ``I^t``, shape ``(T, ...)``; T = ``I.shape[0]`` is a constant of the run, 1 <= T <= len(v_th).
    v_th, bits: V_th^t and B_s^t (Eq. 9) of shape (T_bound,) as for :func:`spiking_neuron`.
    Forward: Eq. 13 with ``I^t``, Eq. 14/15 per step; backward: 6.1-6.3 per step and 6.6 through the
    membrane under the convention (C3 detaches carry and reset, C4 decays the reset). No T gradient.
    alpha: None (the refined neuron) or amplitudes ``alpha^t`` of shape (T_bound,), > 0: the prior
    multi-bit neuron of Eq. 3-5, ``Shat^t = alpha^t S^t`` with reset ``alpha^t S^t`` (use it with
    ``rounding="floor"``, Eq. 5, and e.g. ``tau=2`` for the Table 4 baseline); alpha gets a gradient.
    With T = 1 the output equals :func:`spiking_neuron` with T = 1, bit for bit.
    """
    vt = _check_neuron_args("sequential_neuron", v_th, bits, domain, rounding, tau, convention)
    Id = I.data if isinstance(I, Tensor) else np.asarray(I)
    if Id.ndim < 1 or not 1 <= Id.shape[0] <= len(vt):
        raise ValueError(f"sequential_neuron: I must have shape (T, ...) with 1 <= T <= {len(vt)} (the number of "
                         f"thresholds), got shape {Id.shape}")
    extra = ()
    if alpha is not None:
        av = alpha.data if isinstance(alpha, Tensor) else np.asarray(alpha)
        if av.shape != vt.shape or not (np.isfinite(av) & (av > 0)).all():
            raise ValueError(f"sequential_neuron: alpha must be finite amplitudes > 0 with the shape of v_th "
                             f"{vt.shape}, got {av!r}")
        extra = (alpha,)
    return _seq_neuron(I, v_th, bits, *extra, domain=domain, rounding=rounding, tau=float(tau),
                       convention=convention, impl=impl)


def sequential_membrane(I: np.ndarray, v_th: np.ndarray, bits, *, domain: str, rounding: str, tau: float,
                        convention: Convention, impl: str = "numba", alpha=None) -> np.ndarray:
    """Membrane potentials ``v^t`` (shape of I) of the sequential neuron, without the tape: the data X the
    observer of step t watches (Alg. 1, docs/method.md §14). Plain arrays, as the kernel takes them."""
    # Eq. 13 with I^t (Eq. 4 with alpha): v^t = (1/tau) v^{t-1} + I^t - Shat^{t-1}
    _, v = _kseq.seq_neuron_forward(I, v_th, np.asarray(bits).astype(np.int64), domain=domain, tau=float(tau),
                                    amplitude=alpha, impl=impl, **kernel_options(rounding, convention))
    return v
