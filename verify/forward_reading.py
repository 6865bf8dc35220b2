"""An independent NumPy reading of the forward pass (Eq. 6, 12-15), written from docs/method.md and not from
the library, for the finite-difference checks of ``verify.gradients``: the spike levels and emission,
the neuron at a point and its straight-through surrogate (the forward with the regime of every element
frozen, whose exact derivative is what the STE/LSQ gradients claim to be), and the same for the weight
quantizer (the surrogates are described in the module docstring of ``verify.gradients``).
"""
from __future__ import annotations

import numpy as np


def _round_away(u):
    return np.sign(u) * np.floor(np.abs(u) + 0.5)


def spike_grid(B: int, domain: str):
    if domain == "positive":
        return 0, 2 ** B - 1
    return (-1, 1) if B == 1 else (-(2 ** (B - 1) - 1), 2 ** (B - 1) - 1)


def emit(u, B, domain, rounding):
    """Integer spike of Eq. 14 (positive; floor(u + 1/2) or floor(u)) / Eq. 15 (bidirectional)."""
    lo, hi = spike_grid(B, domain)
    if domain == "positive":
        return np.clip(np.floor(u + (0.5 if rounding == "round" else 0.0)), lo, hi)
    if B == 1:
        return np.where(u > 0, 1.0, -1.0)
    return np.clip(_round_away(u) if rounding == "round" else np.floor(u), lo, hi)


def bit_factor(B: int, q_max: int, conv) -> float:
    """F in dq/dB = F ln2: q_max + 1, or the convention's factor at B = 1 (C2)."""
    return float(conv.one_bit_factor) if B == 1 else float(q_max + 1)


def neuron_point(I, V, B, T, domain, rounding, tau, conv):
    """Run Eq. 13-15 at the evaluation point and record what the surrogate freezes."""
    inv_tau = 1.0 / tau
    rec = {"regime": [], "c": [], "const": [], "q0": [], "qmin0": [], "F": [], "B0": list(B[:T])}
    v_prev = np.zeros_like(I)
    S_prev = np.zeros_like(I)
    total = np.zeros_like(I)
    for t in range(T):
        carry = inv_tau * (v_prev - S_prev) if conv.reset_decay else inv_tau * v_prev - S_prev
        v = carry + I
        lo, hi = spike_grid(int(B[t]), domain)
        u = v / V[t]
        S = emit(u, int(B[t]), domain, rounding)
        regime = np.where(u > hi, 1, np.where(u < lo, -1, 0))
        rec["regime"].append(regime)
        rec["c"].append(S - u)
        rec["const"].append(carry)
        rec["q0"].append(hi)
        rec["qmin0"].append(lo)
        rec["F"].append(bit_factor(int(B[t]), hi, conv))
        Shat = V[t] * S
        total = total + Shat
        v_prev, S_prev = v, Shat
    rec["y"] = total / T
    return rec


def neuron_surrogate(I, V, Bc, Tc, rec, domain, tau, conv):
    """The STE/LSQ surrogate of the neuron (module docstring), as a function of real I, V, B, T."""
    inv_tau = 1.0 / tau
    T0 = len(rec["regime"])
    v_prev = np.zeros_like(I)
    S_prev = np.zeros_like(I)
    total = np.zeros_like(I)
    for t in range(T0):
        if conv.bptt:
            carry = inv_tau * (v_prev - S_prev) if conv.reset_decay else inv_tau * v_prev - S_prev
        else:
            carry = rec["const"][t]
        v = carry + I
        q = rec["q0"][t] + rec["F"][t] * (2.0 ** (Bc[t] - rec["B0"][t]) - 1.0)
        qmin = 0.0 if domain == "positive" else -q
        reg = rec["regime"][t]
        Shat = np.where(reg == 0, v + V[t] * rec["c"][t], np.where(reg > 0, V[t] * q, V[t] * qmin))
        total = total + Shat
        v_prev, S_prev = v, Shat
    return total / Tc


def weight_point(w, S, B):
    """x0, regime, residual m of Eq. 6 at the evaluation point (S: scalar or per output channel)."""
    Sb = np.asarray(S).reshape((-1,) + (1,) * (w.ndim - 1)) if np.ndim(S) else S
    x = w / Sb
    q = 1 if B == 1 else 2 ** (B - 1) - 1
    lvl = np.where(x > 0, 1.0, -1.0) if B == 1 else np.clip(_round_away(x), -q, q)
    regime = np.where(x > q, 1, np.where(x < -q, -1, 0))
    return {"x": x, "regime": regime, "m": lvl - x, "q0": q, "B0": B, "wq": Sb * lvl}


def weight_surrogate(w, S, Bc, rec, F):
    Sb = np.asarray(S).reshape((-1,) + (1,) * (w.ndim - 1)) if np.ndim(S) else S
    q = rec["q0"] + F * (2.0 ** (Bc - rec["B0"]) - 1.0)
    reg = rec["regime"]
    return np.where(reg == 0, w + Sb * rec["m"], np.where(reg > 0, Sb * q, -Sb * q))
