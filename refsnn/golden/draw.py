"""Inputs of the golden cases, drawn away from every discrete decision of the method.

A port in another precision must make the same discrete choices as refsnn (which level
a value rounds to, whether it is clipped, which grid candidate wins), otherwise its
outputs differ by a whole quantization step and no tolerance can be meaningful.  So
every value that is rounded or compared to a clip boundary is kept at a distance of
at least a *margin* from the points where the choice changes (``docs/golden.md``,
"Margins"):

* every pre-rounding value ``u`` -- ``v^t / V_th^t`` of a spike quantizer (every step,
  under both conventions), ``w / S_q`` of a weight quantizer, a width parameter
  ``Bhat`` / ``That`` before Eq. 9-11 -- lies at least ``margin`` away from every
  point where its quantizer changes a discrete choice: the multiples of 1/2 between
  ``q_min`` and ``q_max`` (``1`` and the bound for a width).  Rounding ties
  (half-integers), flooring steps (integers), the clip boundaries and the sign decision
  at 0 are all such points (``crit_distance``).  The only exception is an exact 0
  that comes from an exact 0 input (ReLU zeros): it is 0 in every precision.
* a ReLU input is at least ``margin_relu`` away from 0 (or exactly 0);
* the winning candidate of a grid search (Alg. 2) beats every other candidate by a
  relative score gap of at least ``margin_grid``.

Every drawn float is representable in float32, so the float64 and float32 sets hold
the same inputs exactly.
"""
from __future__ import annotations

import zlib

import numpy as np

from ..kernels import neuron as _kn
from ..method.renewal import round_half_away

#: distance of drawn pre-rounding values from the nearest multiple of 1/2 (in units of the step)
MARGIN = 0.01
#: relative score gap of the winning grid candidate in the drawn grid searches
MARGIN_GRID = 1e-3


def case_rng(seed: int, name: str) -> np.random.Generator:
    """The generator of one case: a function of the set's seed and the case name only."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def f32(a) -> np.ndarray:
    """The nearest float32 values, as float64 (so both precisions hold the same numbers)."""
    return np.asarray(a, dtype=np.float64).astype(np.float32).astype(np.float64)


def half_distance(u) -> np.ndarray:
    """Distance of each value to the nearest multiple of 1/2."""
    u = np.asarray(u, dtype=np.float64)
    return np.abs(2.0 * u - np.round(2.0 * u)) / 2.0


def crit_distance(u, q_min, q_max) -> np.ndarray:
    """Distance of each value ``u`` to the nearest point where a quantizer with levels q_min..q_max changes
    a discrete choice: the multiples of 1/2 in [q_min, q_max] (rounding ties, flooring steps, the clip
    boundaries q_min and q_max, the sign at 0)."""
    u = np.asarray(u, dtype=np.float64)
    return np.where(u < q_min, q_min - u, np.where(u > q_max, u - q_max, half_distance(u)))


def gaussian(rng, shape) -> np.ndarray:
    return f32(rng.standard_normal(shape))


def width_hat(rng, B: int, bound: int) -> float:
    """A width parameter that rounds (Eq. 9-11) to ``B``: B +- 0.15..0.35 (clipped ones included)."""
    off = rng.uniform(0.15, 0.35) * (1 if rng.random() < 0.5 else -1)
    if B == 1:
        off = -abs(off) if rng.random() < 0.5 else abs(off)       # below 1: exercises the clip
    if B == bound:
        off = abs(off) if rng.random() < 0.5 else -abs(off)       # above the bound: clip
    return float(f32(B + off))


# ---------------------------------------------------------------------------------------------
# spike quantizer inputs
# ---------------------------------------------------------------------------------------------
def neuron_u(I, v_th, bits, T, domain, shift, tau, reset_decay) -> np.ndarray:
    """``u^t = v^t / V_th^t`` for t < T (shape (T, *I.shape)), float64, by the kernel's NumPy twin."""
    _, v = _kn.neuron_forward(np.asarray(I, np.float64), np.asarray(v_th, np.float64), np.asarray(bits, np.int64),
                              int(T), domain=domain, shift=shift, tau=float(tau), reset_decay=reset_decay,
                              impl="numpy")
    return v / np.asarray(v_th, np.float64)[:T].reshape((T,) + (1,) * np.ndim(I))


def spike_distance(u, I, bits, domain) -> np.ndarray:
    """``crit_distance`` of every u^t (shape (T, ...)) on the grid of its step; exact zeros of exact-zero inputs
    are exempt (distance inf)."""
    d = np.empty(u.shape)
    for t in range(u.shape[0]):
        q_min, q_max = _kn.spike_levels(int(bits[t]), domain)
        d[t] = crit_distance(u[t], q_min, q_max)
    d[(u == 0) & (np.asarray(I) == 0)] = np.inf
    return d


def neuron_min_distance(I, v_th, bits, T, domain, shift, tau) -> float:
    """The smallest ``spike_distance`` of any u^t under both reset conventions (C4)."""
    worst = np.inf
    for reset_decay in (False, True):
        u = neuron_u(I, v_th, bits, T, domain, shift, tau, reset_decay)
        worst = min(worst, float(spike_distance(u, I, bits, domain).min()))
    return worst


def neuron_input(rng, shape, v_th, bits, T, domain, shift, tau, margin=MARGIN, zeros=True) -> np.ndarray:
    """Input currents ``I`` whose every ``u^t`` keeps ``margin`` from a multiple of 1/2 (both conventions).

    ``u^1 = I / V_th^1`` spans all regimes: exact zeros (if ``zeros``), below ``q_min``,
    inside, above ``q_max``; elements that violate the margin at any step are redrawn.
    """
    bits = np.asarray(bits, np.int64)
    q_min, q_max = _kn.spike_levels(int(bits[0]), domain)
    n = int(np.prod(shape))

    def draw(m):
        r = rng.random(m)
        if domain == "positive":
            u1 = np.where(r < 0.2, rng.uniform(-1.5, 0.0, m), rng.uniform(0.0, q_max + 2.0, m))
        else:
            u1 = rng.uniform(q_min - 2.0, q_max + 2.0, m)
        if zeros:
            u1 = np.where(r > 1 - 1 / 7, 0.0, u1)
        return f32(u1 * v_th[0])

    I = draw(n)
    for _ in range(1000):
        bad = np.zeros(n, bool)
        for reset_decay in (False, True):
            u = neuron_u(I, v_th, bits, T, domain, shift, tau, reset_decay)
            bad |= (spike_distance(u, I, bits, domain) < margin).any(axis=0)
        if not bad.any():
            return I.reshape(shape)
        I[bad] = draw(int(bad.sum()))
    raise RuntimeError("neuron_input: could not draw inputs away from the ties")  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# weight quantizer inputs
# ---------------------------------------------------------------------------------------------
def weight_ratio(w, step) -> np.ndarray:
    """``x = w / max(S_q, eps)`` (per output channel when ``step`` is 1-D), float64."""
    s = np.maximum(np.asarray(step, np.float64), 1e-5)
    if s.ndim == 1:
        s = s.reshape((-1,) + (1,) * (np.ndim(w) - 1))
    return np.asarray(w, np.float64) / s


def weights(rng, shape, step, B, margin=MARGIN) -> np.ndarray:
    """Weights whose ratios ``w / S_q`` span [q_min - 2, q_max + 2] and keep ``margin`` from a multiple of 1/2."""
    q = 1 if B == 1 else 2 ** (B - 1) - 1
    s = np.asarray(step, np.float64)
    sb = np.broadcast_to(s.reshape((-1,) + (1,) * (len(shape) - 1)) if s.ndim == 1 else s, shape)
    w = f32(rng.uniform(-q - 2.0, q + 2.0, shape) * sb)
    for _ in range(1000):
        bad = crit_distance(weight_ratio(w, step), -q, q) < margin
        if not bad.any():
            return w
        w[bad] = f32(rng.uniform(-q - 2.0, q + 2.0, int(bad.sum())) * sb[bad])
    raise RuntimeError("weights: could not draw weights away from the ties")  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# grid search (Alg. 2)
# ---------------------------------------------------------------------------------------------
def grid_scores(X, q_min, q_max, K, p, symmetric=None, one_bit_sign=False) -> np.ndarray:
    """The score of every candidate k = 1..K of Alg. 2, in the order and arithmetic of
    ``refsnn.method.renewal.grid_search`` (float64); ``one_bit_sign``: row C9 (levels sgn(X/s))."""
    X = np.asarray(X, dtype=np.float64).ravel()
    R = float(X.max()) - float(X.min())
    if symmetric is None:
        symmetric = bool((X < 0).any())
    scores = np.full(int(K), np.inf)
    if not R > 0:
        return scores
    for k in range(1, int(K) + 1):
        hi = k * R / K
        lo = -hi if symmetric else 0.0
        s = (hi - lo) / (q_max - q_min)
        if one_bit_sign:
            Xq = s * np.where(X / s > 0, 1.0, -1.0)
        else:
            Xq = s * np.clip(round_half_away(X / s), q_min, q_max)
        scores[k - 1] = float(np.mean(np.abs(Xq - X) ** p))
    return scores


def grid_gap(scores) -> float:
    """Relative gap between the best and the second-best candidate score."""
    s = np.sort(np.asarray(scores, np.float64))
    if s.size < 2 or not np.isfinite(s[0]):
        return np.inf
    return float((s[1] - s[0]) / s[0]) if s[0] > 0 else np.inf


def grid_input(rng, shape, positive: bool, scale: float, score_sets) -> tuple:
    """X ~ 0.7 scale N(0, 1) (|X| if ``positive``), float32-exact, whose grid search has a clear winner
    (relative gap >= MARGIN_GRID) under every ``(q_min, q_max, K, p, symmetric, one_bit_sign)`` of
    ``score_sets``; returns ``(X, smallest gap)``."""
    for _ in range(1000):
        X = f32(rng.standard_normal(shape) * 0.7 * scale)
        if positive:
            X = np.abs(X)
        gap = min(grid_gap(grid_scores(X, *s[:5], one_bit_sign=s[5])) for s in score_sets)
        if gap >= MARGIN_GRID:
            return X, gap
    raise RuntimeError("could not draw a grid-search input with a clear winner")  # pragma: no cover

