"""The method's differentiable pieces as ``torch.autograd.Function``s (docs/method.md §3-6).

    round_clip        Eq. 9-11    B = round(clip(Bhat, 1, bound)), straight-through gradient
    WeightQuant       Eq. 6 forward; Eq. 18-19, App. A.8-A.9 backward
    RefinedNeuron     Eq. 12-15 forward (all T steps, squeeze); Eq. 16-17, 20, App. A.6-A.7,
                      A.10-A.13, docs/method.md §6.5-6.6 backward

Each backward is written out, symbol by symbol, as ``refsnn.kernels.neuron`` / ``.quant``
state it (their NumPy twins are the specification; docs/golden.md sections 2-3 the contract).
The conventions C1-C4 (and C6-C7 for the weight step) arrive as one resolved ``refsnn.method.conventions.Convention``:
a new row of that table is one new field read here, nowhere else.
Everything is device-agnostic tensor code in the input's dtype (float32 or float64).
"""
from __future__ import annotations

import math

import torch

from ..method.conventions import PAPER, Convention, check_convention
from ..method.neuron import DOMAINS, ROUNDINGS, spike_grid
from ..method.weight_quant import weight_grid

LN2 = math.log(2.0)
#: lower bound of the weight step in the forward pass (docs/method.md §3)
EPS = 1e-5


# =============================================================================================
# Eq. 9-11: widths and temporal length
# =============================================================================================
class RoundClip(torch.autograd.Function):
    """Eq. 9-11: ``round(clip(Bhat, 1, bound))`` (half to even), gradient straight through.
    Row C11 (official): ``use_abs`` rounds ``clip(|Bhat|, 1, bound)``; ``grad_sign`` multiplies the gradient
    by ``sign(Bhat)`` (the regulating loss's path in the release)."""

    @staticmethod
    def forward(ctx, param, bound, use_abs=False, grad_sign=False):
        ctx.grad_sign = bool(grad_sign)
        if ctx.grad_sign:
            ctx.save_for_backward(param)
        # C11 (official): abs(Bhat) in place of Bhat
        p = torch.abs(param) if use_abs else param
        # Eq. 9 / Eq. 10 / Eq. 11: B = round(clip(Bhat, 1, B_bound))
        return torch.round(torch.clamp(p, 1, bound))

    @staticmethod
    def backward(ctx, g):
        if ctx.grad_sign:
            (param,) = ctx.saved_tensors
            # C11 in the regulating loss (official): straight through clip and round, then d|Bhat|/dBhat
            return g * torch.sign(param), None, None, None
        # Eq. 9-11 backward: dL/dBhat = dL/dB (through the rounding and the clip)
        return g, None, None, None


def round_clip(param: torch.Tensor, bound: int, name: str = "width", use_abs: bool = False,
               grad_sign: bool = False) -> torch.Tensor:
    """Eq. 9 (B_s^t), Eq. 10 (T), Eq. 11 (B_w) with the straight-through gradient (C11: ``use_abs``,
    ``grad_sign``, see :class:`RoundClip`)."""
    if isinstance(bound, bool) or not isinstance(bound, int) or bound < 1:
        raise ValueError(f"{name} bound must be an integer >= 1, got {bound!r}")
    if not bool(torch.isfinite(param).all()):
        raise ValueError(f"{name}: the width parameter is not finite ({param.detach().cpu().tolist()!r})")
    if grad_sign and not use_abs:
        raise ValueError(f"{name}: grad_sign=True needs use_abs=True (it is the derivative of abs, row C11)")
    return RoundClip.apply(param, bound, bool(use_abs), bool(grad_sign))


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """round(x) of docs/method.md: sign(x) * floor(|x| + 1/2)."""
    return torch.sign(x) * torch.floor(torch.abs(x) + 0.5)


# =============================================================================================
# Eq. 6, 18-19, App. A.8-A.9: the weight quantizer
# =============================================================================================
def weight_levels(x: torch.Tensor, B: int) -> torch.Tensor:
    """The integer level of ``x = w / S_q`` (Eq. 6), as floats."""
    if B == 1:
        # Eq. 6, B_w = 1: sgn(x) = +1 if x > 0 else -1
        return torch.where(x > 0, torch.ones_like(x), -torch.ones_like(x))
    q_min, q_max = weight_grid(B)
    # Eq. 6, B_w >= 2: clip(round(x), -q, q)
    return torch.clamp(round_half_away(x), q_min, q_max)


def _per_channel(s: torch.Tensor, ndim: int) -> torch.Tensor:
    return s.reshape(s.shape + (1,) * (ndim - 1)) if s.dim() == 1 else s


class WeightQuant(torch.autograd.Function):
    """Eq. 6 with the LSQ gradients of Eq. 18-19, App. A.8-A.9 (docs/method.md §6.4)."""

    @staticmethod
    def forward(ctx, w, step, bits, conv: Convention):
        B = int(bits.item())
        # docs/method.md §3: s = max(S_q, eps)
        s = torch.clamp(step, min=EPS)
        S_q = _per_channel(s, w.dim())
        # Eq. 6: x_i = w_i / S_q
        x = w / S_q
        ctx.save_for_backward(w, step)
        ctx.B, ctx.conv = B, conv
        # Eq. 6: w_q,i = S_q clip(round(x_i), -q, q)   (B_w = 1: S_q sgn(x_i))
        return S_q * weight_levels(x, B)

    @staticmethod
    def backward(ctx, gwq):
        w, step = ctx.saved_tensors
        B, c = ctx.B, ctx.conv
        S_q = _per_channel(torch.clamp(step, min=EPS), w.dim())
        q_min, q_max = weight_grid(B)
        x = w / S_q
        inside = (q_min <= x) & (x <= q_max)
        # Eq. 18-19 (STE): dL/dw_i = dL/dw_q,i [q_min <= x_i <= q_max]
        gw = gwq * inside.to(w.dtype)
        # App. A.8: m_i = round(x_i) - x_i inside (sgn(x_i) - x_i at B_w = 1), q_max above, q_min below
        m = torch.where(inside, weight_levels(x, B) - x,
                        torch.where(x > q_max, torch.full_like(x, q_max), torch.full_like(x, q_min)))
        # App. A.9: k_i = sign(x_i) S_q F ln2 outside [q_min, q_max]; F = q_max + 1, or C2's factor at B_w = 1
        F = c.one_bit_factor if B == 1 else q_max + 1
        k = torch.where(inside, torch.zeros_like(x), torch.sign(x) * S_q * F * LN2)
        n_steps = step.numel()
        M = w.numel() // n_steps
        # LSQ gradient scale: g = 1 / sqrt(N q_max), N = elements sharing one step (C7: the whole tensor)
        g = 1.0 / math.sqrt((w.numel() if c.step_g_whole_tensor else M) * q_max)
        # C1: g_B = g (paper) or 1 (official code)
        g_B = g if c.bit_grad_lsq else 1.0
        if c.conv_step_spread and w.dim() > 2:
            # C6 (official, conv kernels): dL/dS_q = g (g M_c) sum_i dL/dw_q,i m_i, M_c = w.numel() / C_out
            gstep = (g * (gwq * m).reshape(n_steps, -1).sum(dim=1)) * (g * (w.numel() // w.shape[0]))
        else:
            # docs/method.md §6.4 (App. A.8): dL/dS_q = g sum_i dL/dw_q,i m_i (per channel for a per-channel step)
            gstep = g * (gwq * m).reshape(n_steps, -1).sum(dim=1)
        # Decision (golden.md 2): the clamp max(S_q, eps) passes no gradient where S_q < eps
        gstep = torch.where(step.reshape(-1) < EPS, torch.zeros_like(gstep), gstep).reshape(step.shape)
        # docs/method.md §6.4 (App. A.9): dL/dBhat_w = g_B sum_i dL/dw_q,i k_i
        gbits = (g_B * (gwq * k).sum()).reshape(())
        return gw, gstep, gbits, None


def quantize_weight(w, step, bits, convention: Convention = PAPER) -> torch.Tensor:
    """Eq. 6 with LSQ gradients.  ``step``: 0-d or (C_out,), finite and > 0; ``bits``: 0-d integer-valued tensor;
    ``convention``: a resolved ``refsnn.method.Convention`` (C1, C2)."""
    if not (step.dim() == 0 or (step.dim() == 1 and step.shape[0] == w.shape[0])):
        raise ValueError(f"quantize_weight: step must be a scalar or have shape ({w.shape[0]},), got {tuple(step.shape)}")
    if not bool((torch.isfinite(step) & (step > 0)).all()):
        raise ValueError(f"quantize_weight: the step S_q must be finite and > 0, got {step.detach().cpu().tolist()!r}")
    b = float(bits.item())
    if not b.is_integer() or b < 1:
        raise ValueError(f"quantize_weight: bits must be one integer >= 1, got {b!r}")
    return WeightQuant.apply(w, step, bits, check_convention(convention, "quantize_weight: convention"))


# =============================================================================================
# Eq. 12-17, 20, App. A.6-A.13, docs/method.md §6.5-6.6: the refined neuron with temporal squeezing
# =============================================================================================
def emit(u: torch.Tensor, B: int, domain: str, shift: float) -> torch.Tensor:
    """The integer spike S for ``u = v / V_th`` (Eq. 14, Eq. 15), as floats."""
    q_min, q_max = spike_grid(B, domain)
    if domain == "positive":
        # Eq. 14: S = clip(floor(u + 1/2), 0, 2^B - 1)   (shift 0: Eq. 5, S = clip(floor(u), 0, 2^B - 1))
        return torch.clamp(torch.floor(u + shift), q_min, q_max)
    if B == 1:
        # Eq. 15, B = 1: S = sgn(u)
        return torch.where(u > 0, torch.ones_like(u), -torch.ones_like(u))
    if shift == 0.5:
        # Eq. 15: S = clip(round(u), -q, q)
        return torch.clamp(round_half_away(u), q_min, q_max)
    # Decision (refsnn.kernels.neuron, flooring in the bidirectional domain): S = clip(floor(u), -q, q)
    return torch.clamp(torch.floor(u), q_min, q_max)


def refined_h(u, S, inside, q_min: float, q_max: float) -> torch.Tensor:
    """App. A.6-A.7 / A.12-A.13: dShat/dV_th per element (over the LSQ scale): S - u inside, q_max above,
    q_min below."""
    # App. A.6-A.7 / A.12-A.13: h = S - u inside, q_max above, q_min below
    return torch.where(inside, S - u, torch.where(u > q_max, torch.full_like(u, q_max), torch.full_like(u, q_min)))


def step_grads(gS, h, u, inside, amp, B: int, q_max: float, N: int, c: Convention, domain: str) -> tuple:
    """One step's (dL/dV_th^t, dL/dB^t) from dL/dShat^t (App. A.6-A.7 / A.12-A.13, Eq. 16-17 / App. A.10-A.11),
    given the neuron's h (``refined_h``, or the prior neuron's) and its output amplitude ``amp`` (V_th^t or
    alpha^t); shared by the squeeze and the sequential neurons."""
    # Eq. 16-17 / App. A.10-A.11: k = sign(u) amp F ln2 outside [q_min, q_max] (positive domain: only u > q_max)
    outside = (u > q_max) if domain == "positive" else ~inside
    F = c.one_bit_factor if B == 1 else q_max + 1
    k = torch.where(outside, torch.sign(u) * amp * F * LN2, torch.zeros_like(u))
    # LSQ gradient scale g = 1 / sqrt(N q_max); C1: g_B = g (paper) or 1 (official)
    g = 1.0 / math.sqrt(N * q_max)
    g_B = g if c.bit_grad_lsq else 1.0
    # App. A.6-A.7 / A.12-A.13: dL/dV_th^t = g sum_j dL/dShat_j^t h_j;
    # Eq. 16-17 / App. A.10-A.11: dL/dB^t = g_B sum_j dL/dShat_j^t k_j
    return g * (gS * h).sum(), g_B * (gS * k).sum()


def membrane(I, v_th, bits, T: int, domain: str, shift: float, tau: float, reset_decay: bool):
    """Eq. 13-15 over T steps: ``(y, v)`` with v of shape (T, *I.shape) (no tape; also the observers' X)."""
    inv_tau = 1.0 / tau
    v_prev = torch.zeros_like(I)
    Shat_prev = torch.zeros_like(I)
    total = torch.zeros_like(I)
    vs = []
    for t in range(T):
        if reset_decay:
            # Eq. 13, official code (C4): v^t = (1/tau) (v^{t-1} - Shat^{t-1}) + I
            v_t = inv_tau * (v_prev - Shat_prev) + I
        else:
            # Eq. 13: v^t = (1/tau) v^{t-1} + I - Shat^{t-1}
            v_t = inv_tau * v_prev - Shat_prev + I
        vs.append(v_t)
        # Eq. 14 / Eq. 15 with u = v^t / V_th^t; Shat^t = V_th^t S^t
        Shat = v_th[t] * emit(v_t / v_th[t], bits[t], domain, shift)
        total = total + Shat
        v_prev, Shat_prev = v_t, Shat
    # Eq. 12: y = (1/T) sum_t Shat^t
    return total / T, torch.stack(vs)


class RefinedNeuron(torch.autograd.Function):
    """Eq. 12-15 forward; gradients of docs/method.md §6.1-6.6 under the convention's C1-C4."""

    @staticmethod
    def forward(ctx, I, v_th, bits, T, domain, shift, tau, conv: Convention, ranks: int):
        Ti = int(T.item())
        B = [int(b) for b in bits[:Ti].tolist()]
        y, v = membrane(I, v_th, B, Ti, domain, shift, tau, conv.reset_decay)
        ctx.save_for_backward(v, v_th, y)
        ctx.args = (Ti, B, domain, shift, tau, conv, bits.shape[0], ranks)
        return y

    @staticmethod
    def backward(ctx, gy):
        v, v_th, y = ctx.saved_tensors
        T, B, domain, shift, tau, c, n_bits, ranks = ctx.args
        inv_tau = 1.0 / tau
        # N: the elements of the whole neuron input, batch included -- the global batch of a data-parallel run
        N = gy.numel() * ranks
        g_vth = torch.zeros_like(v_th)
        g_bits = torch.zeros(n_bits, dtype=gy.dtype, device=gy.device)
        gv_next = torch.zeros_like(gy)
        gI = torch.zeros_like(gy)
        # dv^{t+1}/dShat^t = -1 (Eq. 13), or -1/tau with the decayed reset (C4)
        r = inv_tau if c.reset_decay else 1.0
        for t in reversed(range(T)):
            q_min, q_max = spike_grid(B[t], domain)
            u = v[t] / v_th[t]
            # Eq. 12 + Eq. 13: dL/dShat^t = dL/dy (1/T) - r dL/dv^{t+1}  (C3 official: reset detached)
            gS = gy / T - r * gv_next if c.bptt else gy / T
            S = emit(u, B[t], domain, shift)
            # Eq. 20: dShat^t/dv^t = [q_min <= u <= q_max]
            inside = (q_min <= u) & (u <= q_max)
            g_vth[t], g_bits[t] = step_grads(gS, refined_h(u, S, inside, q_min, q_max), u, inside, v_th[t],
                                             B[t], q_max, N, c, domain)
            # Eq. 20 + Eq. 13 carry: dL/dv^t = dL/dShat^t ind + (1/tau) dL/dv^{t+1}  (C3 official: no carry)
            ind = inside.to(gy.dtype)
            gv = gS * ind + inv_tau * gv_next if c.bptt else gS * ind
            # docs/method.md §6.6: dv^t/dI = 1, so dL/dI = sum_t dL/dv^t
            gI = gI + gv
            gv_next = gv
        # docs/method.md §6.5 (Eq. 12 with Eq. 20): dL/dThat = dL/dT = sum_j dL/dy_j (-y_j / T)
        # the sum of g*y cancels strongly; accumulated in float64 (then rounded to the set's dtype) it stays
        # within the float32 tolerance of the golden sets, whatever torch's float32 reduction order
        g_T = (-(gy.double() * y.double()).sum() / T).to(gy.dtype).reshape(())
        return gI, g_vth, g_bits, g_T, None, None, None, None, None


def spiking_neuron(I, v_th, bits, T, *, domain: str = "positive", rounding: str = "round", tau: float = 1.0,
                   convention: Convention = PAPER, ranks: int = 1) -> torch.Tensor:
    """Refined spiking neuron over T steps, returning the squeezed map y (Eq. 12-15).

    ``v_th``, ``bits``: (T_bound,) tensors (thresholds > 0, integer-valued widths from ``round_clip``);
    ``T``: 0-d integer-valued tensor in [1, T_bound].  Same arguments as ``refsnn.method.spiking_neuron``, and
    ``ranks``: how many equal shards (data-parallel ranks) form the global batch, so that the LSQ scale
    ``g = 1/sqrt(N q_max)`` counts the global batch's N (docs/method.md §6.2 with 16; 1 = one process).
    """
    if domain not in DOMAINS:
        raise ValueError(f"spiking_neuron: domain must be one of {DOMAINS}, got {domain!r}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"spiking_neuron: rounding must be one of {tuple(ROUNDINGS)}, got {rounding!r}")
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau >= 1):
        raise ValueError(f"spiking_neuron: tau must be a finite number >= 1 (1 = IF neuron), got {tau!r}")
    if v_th.dim() != 1 or not bool((v_th > 0).all()):
        raise ValueError(f"spiking_neuron: thresholds v_th must be a 1-D tensor of values > 0, got "
                         f"{v_th.detach().cpu().tolist()!r}")
    Tv = float(T.item())
    if not Tv.is_integer() or not 1 <= Tv <= v_th.shape[0]:
        raise ValueError(f"spiking_neuron: T must be an integer in [1, {v_th.shape[0]}], got {Tv!r}")
    b = bits.detach()
    if b.shape != v_th.shape or not bool((b == torch.round(b)).all()) or bool((b < 1).any()):
        raise ValueError(f"spiking_neuron: bits must be integers >= 1 with the shape of v_th, got {b.cpu().tolist()!r}")
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise ValueError(f"spiking_neuron: ranks must be an integer >= 1, got {ranks!r}")
    conv = check_convention(convention, "spiking_neuron: convention")
    return RefinedNeuron.apply(I, v_th, bits, T, domain, ROUNDINGS[rounding], float(tau), conv, ranks)
