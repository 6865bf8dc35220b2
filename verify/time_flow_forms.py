"""The derivation of ``verify.time_flow`` checked on the library: the neuron's gradients through time
under a convention (``neuron_grads``, from ``refsnn.kernels.neuron``), the closed forms of the module
docstring of ``verify.time_flow`` (``closed_form``), both conventions on one (I, dL/dy) pair
(``analyse_case``), and the measurements on random inputs, IF and LIF (``random_inputs``).
"""
from __future__ import annotations

import math

import numpy as np


def _conv(name):
    from refsnn.method.conventions import Convention, get_convention
    if name == "detached":  # the paper with only C3 switched: isolates the membrane detach
        return Convention("detached", bit_grad_lsq=True, one_bit_factor=2.0, bptt=False, reset_decay=False,
                          renewal_formula="paper")
    return get_convention(name)


def neuron_grads(I, gy, V, B, T, domain, convention, tau=1.0):
    """(gI, g_vth[:T], g_bits[:T], v) from the library kernel under a convention."""
    from refsnn.kernels.neuron import neuron_backward, neuron_forward
    c = _conv(convention)
    V = np.ascontiguousarray(V, dtype=np.float64)
    B = np.ascontiguousarray(B, dtype=np.int64)
    _, v = neuron_forward(I, V, B, T, domain=domain, tau=tau, reset_decay=c.reset_decay)
    gI, gV, gB = neuron_backward(gy, v, V, B, T, domain=domain, tau=tau, reset_decay=c.reset_decay, bptt=c.bptt,
                                 bit_grad_lsq=c.bit_grad_lsq, one_bit_factor=c.one_bit_factor)
    return gI, gV[:T], gB[:T], v


def _levels(B, domain):
    if domain == "positive":
        return 0, 2 ** B - 1
    return (-1, 1) if B == 1 else (-(2 ** (B - 1) - 1), 2 ** (B - 1) - 1)


def closed_form(gy, v, V, B, T, domain, convention, tau=1.0):
    """The derivation of the module docstring: per-step masks, gS^t, gI, g_vth, g_bits. For tau = 1 the
    closed forms; for tau != 1 (no closed form) the recursion gS^t = gy/T - gv^{t+1},
    gv^t = gS^t A^t + gv^{t+1}/tau, only to split the gradients into their parts."""
    c = _conv(convention)
    N = gy.size
    A, h, k, qs = [], [], [], []
    for t in range(T):
        lo, hi = _levels(int(B[t]), domain)
        u = v[t] / V[t]
        inside = (lo <= u) & (u <= hi)
        if domain == "positive":
            S = np.clip(np.floor(u + 0.5), lo, hi)
        elif int(B[t]) == 1:
            S = np.where(u > 0, 1.0, -1.0)
        else:
            S = np.clip(np.sign(u) * np.floor(np.abs(u) + 0.5), lo, hi)
        A.append(inside)
        h.append(np.where(inside, S - u, np.where(u > hi, hi, lo)))
        F = c.one_bit_factor if int(B[t]) == 1 else hi + 1
        out = (u > hi) if domain == "positive" else ~inside
        k.append(np.where(out, np.sign(u) * V[t] * F * math.log(2.0), 0.0))
        qs.append(hi)
    A = np.array(A)
    gS = []
    if tau != 1.0:
        gS = [None] * T
        gv_next = np.zeros_like(gy)
        lam = np.zeros_like(gy)
        for t in reversed(range(T)):
            gS[t] = gy / T - gv_next if c.bptt else gy / T
            gv = gS[t] * A[t] + (gv_next / tau if c.bptt else 0.0)
            lam = lam + gv
            gv_next = gv
        gI = lam
    for t in range(T if tau == 1.0 else 0):
        if c.bptt:
            later_out = np.all(~A[t + 1:], axis=0) if t + 1 < T else np.ones_like(gy, dtype=bool)
            gS.append(gy / T * later_out)
        else:
            gS.append(gy / T * np.ones_like(gy))
    if tau != 1.0:
        pass
    elif c.bptt:
        lam = np.zeros(gy.shape)
        for t in range(T):
            lam = np.where(A[t], t + 1, lam)
        gI = gy / T * lam
    else:
        gI = gy / T * A.sum(axis=0)
    g = np.array([1.0 / math.sqrt(N * q) for q in qs])
    gB = g if c.bit_grad_lsq else np.ones(T)
    g_vth = np.array([g[t] * np.sum(gS[t] * h[t]) for t in range(T)])
    g_bits = np.array([gB[t] * np.sum(gS[t] * k[t]) for t in range(T)])
    parts = {"inside": np.array([g[t] * np.sum((gS[t] * h[t])[A[t]]) for t in range(T)]),
             "clip": np.array([g[t] * np.sum((gS[t] * h[t])[~A[t]]) for t in range(T)])}
    live = gy != 0  # elements with an upstream gradient at all (a strided conv leaves some at 0)
    reach = np.array([float(np.mean(gS[t][live] != 0)) if live.any() else 0.0 for t in range(T)])
    # in-range elements whose gradient reaches Shat^t: the only source of the rounding part
    reach_in = np.array([float(np.mean(gS[t][live & A[t]] != 0)) if (live & A[t]).any() else 0.0
                         for t in range(T)])
    return {"gI": gI, "g_vth": g_vth, "g_bits": g_bits, "reach": reach, "reach_in": reach_in, "parts": parts,
            "A": A}


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    den = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), 1e-300)
    return float(np.max(np.abs(a - b))) / den


def analyse_case(I, gy, V, B, T, domain):
    """Both conventions on one (I, dL/dy): library values, closed-form check, summary numbers."""
    out = {}
    for conv in ("paper", "official", "detached"):
        gI, gV, gB, v = neuron_grads(I, gy, V, B, T, domain, conv)
        cf = closed_form(gy, v, V, B, T, domain, conv)
        err = max(_rel(gI, cf["gI"]), _rel(gV, cf["g_vth"]), _rel(gB, cf["g_bits"]) if np.any(gB) or
                  np.any(cf["g_bits"]) else 0.0)
        A = cf["A"]
        out[conv] = {"g_vth": gV, "g_bits": gB, "reach": cf["reach"], "reach_in": cf["reach_in"],
                     "inside_part": cf["parts"]["inside"],
                     "clip_part": cf["parts"]["clip"], "closed_form_err": err,
                     "gI_over_gy": float(np.sum(gI * gy) / np.sum(gy * gy)),
                     "gI_eq_gy": float(np.mean(np.isclose(gI, gy, rtol=1e-12, atol=0)[gy != 0])),
                     "in_range": A.reshape(T, -1).mean(axis=1), "gI": gI}
    p, o, d = out["paper"], out["official"], out["detached"]
    # step T: V_th identical under paper and official (C1/C2 touch only widths, C4 nothing at tau = 1);
    # B identical under paper and the C3-only switch (official also drops the factor g: C1)
    out["last_equal"] = bool(p["g_vth"][-1] == o["g_vth"][-1] and p["g_bits"][-1] == d["g_bits"][-1])
    out["gI_diff"] = float(np.linalg.norm(p["gI"] - o["gI"]) / max(np.linalg.norm(o["gI"]), 1e-300))
    out["gB_official_vs_detached"] = _rel(o["g_bits"], d["g_bits"] / np.array(
        [1.0 / math.sqrt(gy.size * _levels(int(B[t]), domain)[1]) for t in range(T)]))
    for conv in ("paper", "official", "detached"):
        del out[conv]["gI"]
    return out


def random_inputs(n: int, seed: int):
    rng = np.random.default_rng(seed)
    rows = []
    for domain in ("positive", "bidirectional"):
        for Bv in (2, 4):
            for T in (2, 3):
                z = rng.standard_normal(n)
                I = np.maximum(z, 0.0) if domain == "positive" else z
                lo, hi = _levels(Bv, domain)
                V = np.full(3, 2.0 * float(np.mean(np.abs(I))) / math.sqrt(hi))  # docs/method.md §11 (LSQ init)
                gy = rng.standard_normal(n)
                res = analyse_case(I, gy, V, np.full(3, Bv), T, domain)
                rows.append({"domain": domain, "B": Bv, "T": T, **res})
    # LIF (tau = 2), paper convention: partial cancellation (measured, no closed form)
    lif = []
    for T in (2, 3):
        z = rng.standard_normal(n)
        I = np.maximum(z, 0.0)
        V = np.full(3, 2.0 * float(np.mean(I)) / math.sqrt(3))
        gy = rng.standard_normal(n)
        rec = {"T": T}
        for tau in (1.0, 2.0):
            _, gV, _, v = neuron_grads(I, gy, V, np.full(3, 2), T, "positive", "paper", tau=tau)
            cf = closed_form(gy, v, V, np.full(3, 2), T, "positive", "paper", tau=tau)
            rec[tau] = {"g_vth": gV, "inside_part": cf["parts"]["inside"], "reach": cf["reach"],
                        "err": _rel(gV, cf["g_vth"])}
        lif.append(rec)
    return rows, lif
