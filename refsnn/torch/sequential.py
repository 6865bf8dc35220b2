"""Sequential mode in torch (docs/method.md §14): a current per step, no squeeze; and the prior-art neuron (Eq. 3-5).

The same arithmetic as ``refsnn.kernels.neuron_seq`` (its NumPy twin, symbol by symbol) as one
``torch.autograd.Function``; T = ``I.shape[0]`` is a constant of the run (no T gradient).  Also the
time-major helpers the sequential layers and models share (``time_flat``, ``mean_over_steps``).
"""
from __future__ import annotations

import math

import torch

from ..method.conventions import PAPER, Convention, check_convention
from ..method.neuron import DOMAINS, ROUNDINGS, spike_grid
from .functions import emit, refined_h, step_grads


def seq_membrane(I, v_th, amp, bits, domain: str, shift: float, tau: float, reset_decay: bool):
    """Eq. 13-15 per step with I^t (Eq. 3-5 with ``amp`` = alpha): ``(Shat, v)``, both of I's shape (no tape)."""
    inv_tau = 1.0 / tau
    v_prev = torch.zeros_like(I[0])
    Shat_prev = torch.zeros_like(I[0])
    vs, outs = [], []
    for t in range(I.shape[0]):
        if reset_decay:
            # Eq. 13, official code (C4): v^t = (1/tau) (v^{t-1} - Shat^{t-1}) + I^t
            v_t = inv_tau * (v_prev - Shat_prev) + I[t]
        else:
            # Eq. 13 / Eq. 4: v^t = (1/tau) v^{t-1} + I^t - Shat^{t-1}
            v_t = inv_tau * v_prev - Shat_prev + I[t]
        # Eq. 14 / Eq. 15 / Eq. 5 with u = v^t / V_th^t;  Shat^t = V_th^t S^t (Eq. 14) or alpha^t S^t (Eq. 3-4)
        Shat = amp[t] * emit(v_t / v_th[t], bits[t], domain, shift)
        vs.append(v_t)
        outs.append(Shat)
        v_prev, Shat_prev = v_t, Shat
    return torch.stack(outs), torch.stack(vs)


class SequentialNeuron(torch.autograd.Function):
    """docs/method.md §14: Eq. 13-15 per step (Eq. 3-5 with alpha); gradients §6.1-6.3 per step, §6.6 (C3/C4)."""

    @staticmethod
    def forward(ctx, I, v_th, bits, alpha, domain, shift, tau, conv: Convention, ranks: int):
        T = I.shape[0]
        B = [int(b) for b in bits[:T].tolist()]
        amp = v_th if alpha is None else alpha
        Shat, v = seq_membrane(I, v_th, amp, B, domain, shift, tau, conv.reset_decay)
        ctx.save_for_backward(v, v_th, amp)
        ctx.args = (B, domain, shift, tau, conv, bits.shape[0], ranks, alpha is not None)
        return Shat

    @staticmethod
    def backward(ctx, gO):
        v, v_th, A = ctx.saved_tensors
        B, domain, shift, tau, c, n_bits, ranks, prior = ctx.args
        T = gO.shape[0]
        inv_tau = 1.0 / tau
        # N: the elements of one step (batch included; the global batch of a data-parallel run)
        N = gO[0].numel() * ranks
        g_vth, g_alpha = torch.zeros_like(v_th), torch.zeros_like(A)
        g_bits = torch.zeros(n_bits, dtype=gO.dtype, device=gO.device)
        gI = torch.empty_like(gO)
        gv_next = torch.zeros_like(gO[0])
        # dv^{t+1}/dShat^t = -1 (Eq. 13), or -1/tau with the decayed reset (C4)
        r = inv_tau if c.reset_decay else 1.0
        for t in reversed(range(T)):
            q_min, q_max = spike_grid(B[t], domain)
            u = v[t] / v_th[t]
            # Eq. 13 reset path: dL/dShat^t = dL/dShat^t (from above) - r dL/dv^{t+1}  (bptt, C3)
            gS = gO[t] - r * gv_next if c.bptt else gO[t]
            S = emit(u, B[t], domain, shift)
            # Eq. 20: dS^t/du = [q_min <= u <= q_max]
            inside = (q_min <= u) & (u <= q_max)
            gain = A[t] / v_th[t]
            if prior:
                # Eq. 3-5 with alpha held fixed: dShat/dV_th = -(alpha/V_th) u inside, 0 outside (Decision)
                h = torch.where(inside, -(gain * u), torch.zeros_like(u))
            else:
                h = refined_h(u, S, inside, q_min, q_max)
            # App. A.6-A.7 / A.12-A.13, Eq. 16-17 / App. A.10-A.11 with the amplitude a^t
            g_vth[t], g_bits[t] = step_grads(gS, h, u, inside, A[t], B[t], q_max, N, c, domain)
            # Eq. 3: dL/dalpha^t = sum_j dL/dShat_j^t S_j^t (an amplitude: no LSQ scale)
            g_alpha[t] = (gS * S).sum()
            ind = inside.to(gO.dtype)
            # Eq. 20 (times alpha/V_th for Eq. 3-5) + Eq. 13 carry (bptt, C3)
            d = gS * ind * gain if prior else gS * ind
            gv = d + inv_tau * gv_next if c.bptt else d
            # docs/method.md §6.6: dv^t/dI^t = 1
            gI[t] = gv
            gv_next = gv
        return gI, g_vth, g_bits, (g_alpha if prior else None), None, None, None, None, None


def sequential_neuron(I, v_th, bits, *, domain: str = "positive", rounding: str = "round", tau: float = 1.0,
                      convention: Convention = PAPER, alpha=None, ranks: int = 1) -> torch.Tensor:
    """``refsnn.method.sequential_neuron`` in torch (docs/method.md §14): ``Shat^t`` for every step of ``I`` (T, ...),
    no squeeze, no T gradient; ``alpha`` (T_bound,) > 0: the prior-art neuron of Eq. 3-5; ``ranks`` as for
    :func:`refsnn.torch.functions.spiking_neuron` (N = one step's elements of the global batch)."""
    if domain not in DOMAINS:
        raise ValueError(f"sequential_neuron: domain must be one of {DOMAINS}, got {domain!r}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"sequential_neuron: rounding must be one of {tuple(ROUNDINGS)}, got {rounding!r}")
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau >= 1):
        raise ValueError(f"sequential_neuron: tau must be a finite number >= 1 (1 = IF neuron), got {tau!r}")
    if v_th.dim() != 1 or not bool((v_th > 0).all()):
        raise ValueError(f"sequential_neuron: thresholds v_th must be a 1-D tensor of values > 0, got "
                         f"{v_th.detach().cpu().tolist()!r}")
    if I.dim() < 1 or not 1 <= I.shape[0] <= v_th.shape[0]:
        raise ValueError(f"sequential_neuron: I must have shape (T, ...) with 1 <= T <= {v_th.shape[0]}, got "
                         f"{tuple(I.shape)}")
    b = bits.detach()
    if b.shape != v_th.shape or not bool((b == torch.round(b)).all()) or bool((b < 1).any()):
        raise ValueError(f"sequential_neuron: bits must be integers >= 1 with the shape of v_th, got {b.cpu().tolist()!r}")
    if alpha is not None and (alpha.shape != v_th.shape or not bool((torch.isfinite(alpha) & (alpha > 0)).all())):
        raise ValueError(f"sequential_neuron: alpha must be finite amplitudes > 0 with the shape of v_th, got "
                         f"{alpha.detach().cpu().tolist()!r}")
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise ValueError(f"sequential_neuron: ranks must be an integer >= 1, got {ranks!r}")
    conv = check_convention(convention, "sequential_neuron: convention")
    return SequentialNeuron.apply(I, v_th, bits, alpha, domain, ROUNDINGS[rounding], float(tau), conv, ranks)


def time_flat(x: torch.Tensor, T: int, owner: str, channels: int | None = None):
    """docs/method.md §14: (N, C, H, W) images repeated T times, or (N, T, C, H, W) frames -> (T*N, C, H, W), N.
    ``channels``: the C the model's first layer takes (a frame shape that does not match is a ValueError)."""
    if channels is not None and x.dim() in (4, 5) and x.shape[-3] != channels:
        raise ValueError(f"{owner} (sequential, T = {T}): input x has {x.shape[-3]} channels per frame, the model "
                         f"takes {channels} (shape {tuple(x.shape)})")
    if x.dim() == 4:
        return torch.cat([x] * T, dim=0), x.shape[0]
    if x.dim() == 5 and x.shape[1] == T:
        N = x.shape[0]
        return x.transpose(0, 1).reshape((T * N,) + tuple(x.shape[2:])), N
    raise ValueError(f"{owner} (sequential, T = {T}): input must be (N, C, H, W) static images or "
                     f"(N, T, C, H, W) frames with T = {T}, got shape {tuple(x.shape)}")


def mean_over_steps(out: torch.Tensor, T: int, N: int) -> torch.Tensor:
    """docs/method.md §14: the head's (T*N, classes) outputs averaged over the T steps."""
    return out.reshape(T, N, out.shape[1]).mean(dim=0)
