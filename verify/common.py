"""Shared pieces of the theory checks: the result record, the quantizers of
docs/method.md (Eq. 6, 14, 15 and the Theorem 1 quantizer), exact interval
machinery for half-normal data, and Monte Carlo helpers.

Everything here works in *step units*: ``u = x / s`` (for signed data
``u = |x| / s``).  A quantizer is then an integer level function ``k(u)`` that
is constant on half-open cells ``[a_i, a_{i+1})`` of the non-negative half
line.  For a half-normal ``x = |N(0, sigma^2)|`` the variable ``u`` is
half-normal with scale ``tau = sigma / s``, so every probability or moment of a
quantity that is piecewise polynomial in ``u`` is a finite sum of truncated
normal moments over cells.  That is how the modules compute their exact values,
independently of the hand-derived closed forms they also state.

Only NumPy and SciPy are used; ``refsnn`` is deliberately not imported so that
these checks stay an independent reading of the paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy import integrate, stats

#: A Monte Carlo estimate is called consistent with a reference value when it
#: lies within Z_TOL standard errors plus ABS_SLACK of it.
Z_TOL = 5.0
ABS_SLACK = 1e-12


# --------------------------------------------------------------------------- #
# Result record
# --------------------------------------------------------------------------- #
@dataclass
class Result:
    """One checked statement.

    claim     short name of the paper's statement (e.g. "Theorem 1 (Eq. 22)")
    method    how it was checked ("analytic + MC (n=10^6)", ...)
    values    the numbers, as a short human readable string
    verdict   what the check says about the paper's statement: "exact",
              "approximate", "bound", "strict", "tight", "holds", "violated",
              "fails"
    statement one sentence a reader can quote
    passed    True when the computation confirms the verdict (analytic values
              agree with each other and with Monte Carlo within Z_TOL standard
              errors, and the stated relation holds); False means the check
              itself found something unexpected
    data      machine-readable numbers for the report tables and figures
    """

    claim: str
    method: str
    values: str
    verdict: str
    statement: str
    passed: bool
    data: dict = field(default_factory=dict, repr=False)


# --------------------------------------------------------------------------- #
# Rounding and the quantizers of docs/method.md
# --------------------------------------------------------------------------- #
def round_half_away(u):
    """round-half-away-from-zero (docs/method.md notation section), computed exactly.

    ``sign(u) * floor(|u| + 1/2)`` is the textbook formula, but forming
    ``|u| + 1/2`` in floating point rounds ``0.49999999999999994`` up to 1.0.
    Here the fractional part ``|u| - floor(|u|)`` is formed exactly (Sterbenz)
    and compared with 1/2, so ties and near-ties are decided correctly.
    """
    u = np.asarray(u, dtype=np.float64)
    a = np.abs(u)
    f = np.floor(a)
    r = f + (a - f >= 0.5)
    return np.copysign(r, u)


def n_levels_pos(b: int) -> int:
    """Largest level of the positive b-bit grid: 2^b - 1 (Eq. 14, Theorem 1)."""
    if b < 1:
        raise ValueError(f"bit width b={b} must be >= 1")
    return 2 ** b - 1


def q_sym(b: int) -> int:
    """Largest magnitude level of the symmetric b-bit grid (Eq. 15): 2^{b-1}-1, or 1 for b=1."""
    if b < 1:
        raise ValueError(f"bit width b={b} must be >= 1")
    return 1 if b == 1 else 2 ** (b - 1) - 1


def quant_pos_round(x, s: float, b: int):
    """Theorem 1 quantizer: x_q = s * clip(round(x/s), 0, 2^b - 1)."""
    return s * np.clip(round_half_away(np.asarray(x) / s), 0, n_levels_pos(b))


def quant_pos_floor(x, s: float, b: int):
    """Flooring quantizer of Eq. 5 on the same grid: s * clip(floor(x/s), 0, 2^b - 1)."""
    return s * np.clip(np.floor(np.asarray(x) / s), 0, n_levels_pos(b))


def quant_sym(x, s: float, b: int):
    """Bidirectional quantizer of Eq. 15.

    b >= 2: s * clip(round(x/s), -q, q), q = 2^{b-1} - 1;
    b == 1: s * sgn(x/s) with sgn(0) = -1 (Eq. 15: +1 if x > 0 else -1).
    """
    x = np.asarray(x, dtype=np.float64)
    if b == 1:
        return s * np.where(x / s > 0, 1.0, -1.0)
    q = q_sym(b)
    return s * np.clip(round_half_away(x / s), -q, q)


# --------------------------------------------------------------------------- #
# Level functions on u >= 0 (step units) with their cell breakpoints
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class LevelMap:
    """A quantizer seen on u >= 0: integer level k(u), constant on [a_i, a_{i+1}).

    ``breaks`` are the interior cell boundaries (sorted, > 0); ``level`` maps an
    array of u to levels; ``name`` is for messages.
    """

    name: str
    breaks: tuple
    level: Callable[[np.ndarray], np.ndarray]


def levelmap_round(n_max: int) -> LevelMap:
    """k(u) = min(round(u), n_max): positive grid (Theorem 1) or magnitude of a
    symmetric grid with q = n_max (Eq. 15, b >= 2). Breaks at r + 1/2."""
    return LevelMap(f"round,clip {n_max}", tuple(r + 0.5 for r in range(n_max)),
                    lambda u: np.minimum(round_half_away(u), n_max))


def levelmap_floor(n_max: int) -> LevelMap:
    """k(u) = min(floor(u), n_max): flooring grid (Eq. 5). Breaks at integers."""
    return LevelMap(f"floor,clip {n_max}", tuple(float(r) for r in range(1, n_max + 1)),
                    lambda u: np.minimum(np.floor(u), n_max))


def levelmap_sign() -> LevelMap:
    """Magnitude of the 1-bit bidirectional quantizer (Eq. 15, sgn): always 1."""
    return LevelMap("sgn", tuple(), lambda u: np.ones_like(np.asarray(u, dtype=float)))


def levelmap_sym(b: int) -> LevelMap:
    """Magnitude level map of the b-bit bidirectional quantizer (Eq. 15)."""
    return levelmap_sign() if b == 1 else levelmap_round(q_sym(b))


def cells(*maps: LevelMap):
    """Common refinement of the maps' cells: list of (a, b, levels...) with
    a < b, b possibly inf. Levels are evaluated strictly inside each cell."""
    pts = sorted(set([0.0]).union(*[set(m.breaks) for m in maps]))
    pts.append(math.inf)
    out = []
    for a, b in zip(pts[:-1], pts[1:]):
        mid = np.array([a + 0.5 if math.isinf(b) else 0.5 * (a + b)])
        out.append((a, b) + tuple(float(m.level(mid)[0]) for m in maps))
    return out


# Intervals are tuples (lo, hi, lo_closed, hi_closed) in u units.
def growth_event(old: LevelMap, new: LevelMap):
    """Exact set {u >= 0 : (u - k_new(u))^2 > (u - k_old(u))^2} as merged intervals.

    On a cell both levels are constants k, k'. There
    (u-k')^2 - (u-k)^2 = (k - k')(2u - k - k'), linear in u, so the strict
    inequality holds on {u > m} if k > k', on {u < m} if k < k', nowhere if
    k = k', with m = (k + k')/2 (at u = m the two errors tie).
    """
    pieces = []
    for a, b, k, kp in cells(old, new):
        if k == kp:
            continue
        m = 0.5 * (k + kp)
        if k > kp:      # u in (max(a, m), b) -- open at m, closed at a if a > m
            lo, lo_c = (a, True) if a > m else (m, False)
            hi, hi_c = b, False
        else:           # u in [a, min(b, m))
            lo, lo_c = a, True
            hi, hi_c = (b, False) if b < m else (m, False)
        if lo < hi:
            pieces.append((lo, hi, lo_c, hi_c))
    return merge_intervals(pieces)


def merge_intervals(pieces):
    """Merge sorted touching intervals (lo, hi, lo_closed, hi_closed)."""
    out = []
    for p in sorted(pieces, key=lambda t: (t[0], not t[2])):
        if out and (p[0] < out[-1][1] or (p[0] == out[-1][1] and (out[-1][3] or p[2]))):
            lo, hi, lc, hc = out[-1]
            if p[1] > hi or (p[1] == hi and p[3]):
                hi, hc = p[1], p[3]
            out[-1] = (lo, hi, lc, hc)
        else:
            out.append(p)
    return out


def in_intervals(u, intervals):
    """Vectorised membership test of u in a union of intervals."""
    u = np.asarray(u, dtype=np.float64)
    hit = np.zeros(u.shape, dtype=bool)
    for lo, hi, lc, hc in intervals:
        left = (u >= lo) if lc else (u > lo)
        right = (u <= hi) if hc else (u < hi)
        hit |= left & right
    return hit


def fmt_intervals(intervals, unit: str = "s") -> str:
    """Human readable union of intervals, e.g. '(1.5 s, inf)'."""
    def f(v):
        return "inf" if math.isinf(v) else f"{v:g} {unit}"
    parts = [("[" if lc else "(") + f(lo) + ", " + f(hi) + ("]" if hc else ")")
             for lo, hi, lc, hc in intervals]
    return " U ".join(parts) if parts else "empty"


# --------------------------------------------------------------------------- #
# Half-normal interval masses and moments, in step units
# --------------------------------------------------------------------------- #
def _phi(z):
    return 0.0 if math.isinf(z) else float(stats.norm.pdf(z))


def hn_mass(lo: float, hi: float, tau: float) -> float:
    """P(lo < u < hi) for u = |N(0, tau^2)|, 0 <= lo <= hi <= inf (survival form)."""
    return 2.0 * (float(stats.norm.sf(lo / tau)) - float(stats.norm.sf(hi / tau)))


def hn_moments(lo: float, hi: float, tau: float):
    """(M0, M1, M2) = E[u^j; lo < u < hi] for u = |N(0, tau^2)| (truncated normal moments).

    With alpha = lo/tau, beta = hi/tau and standard normal phi, Phi:
      M0 = 2 (Phi(beta) - Phi(alpha))
      M1 = 2 tau (phi(alpha) - phi(beta))
      M2 = 2 tau^2 [(Phi(beta) - Phi(alpha)) + alpha phi(alpha) - beta phi(beta)]
    """
    al, be = lo / tau, hi / tau
    d = float(stats.norm.sf(al)) - float(stats.norm.sf(be))
    pa, pb = _phi(al), _phi(be)
    bpb = 0.0 if math.isinf(be) else be * pb
    return 2.0 * d, 2.0 * tau * (pa - pb), 2.0 * tau * tau * (d + al * pa - bpb)


def intervals_mass(intervals, tau: float) -> float:
    """Half-normal mass of a union of disjoint intervals (endpoints have measure 0)."""
    return sum(hn_mass(lo, hi, tau) for lo, hi, _, _ in intervals)


def expected_sq_error(q: LevelMap, tau: float) -> float:
    """E[(u - k(u))^2] for u = |N(0, tau^2)|, exact sum over cells (units of s^2)."""
    tot = 0.0
    for a, b, k in cells(q):
        m0, m1, m2 = hn_moments(a, b, tau)
        tot += m2 - 2.0 * k * m1 + k * k * m0
    return tot


def expected_increase(old: LevelMap, new: LevelMap, tau: float) -> float:
    """E[(u - k_new)^2 - (u - k_old)^2] exactly (units of s^2).

    Per cell (k - k')(2 M1 - (k + k') M0): the two errors are never formed
    separately, so no cancellation between two large numbers."""
    tot = 0.0
    for a, b, k, kp in cells(old, new):
        if k != kp:
            m0, m1, _ = hn_moments(a, b, tau)
            tot += (k - kp) * (2.0 * m1 - (k + kp) * m0)
    return tot


def hn_pdf(u, tau: float):
    return 2.0 / tau * stats.norm.pdf(np.asarray(u) / tau)


def quad_over_cells(maps: Sequence[LevelMap], g, tau: float) -> float:
    """Numerical cross-check: sum over cells of quad(g(u, levels) * pdf(u)).

    ``g(u, *levels)`` is evaluated with the cell's constant levels, so each
    integrand is smooth on its cell."""
    tot = 0.0
    for c in cells(*maps):
        a, b, lv = c[0], c[1], c[2:]
        val, _ = integrate.quad(lambda u: g(u, *lv) * float(hn_pdf(u, tau)), a, b,
                                epsabs=1e-15, epsrel=1e-12, limit=200)
        tot += val
    return tot


# --------------------------------------------------------------------------- #
# Monte Carlo helpers
# --------------------------------------------------------------------------- #
def binom_se(p: float, n: int) -> float:
    """Standard error of a proportion with true value p from n draws."""
    return math.sqrt(max(p * (1.0 - p), 0.0) / n)


def mean_se(v: np.ndarray):
    """(mean, standard error of the mean) of a sample."""
    v = np.asarray(v, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))


def consistent(est: float, ref: float, se: float, z: float = Z_TOL,
               slack: float = ABS_SLACK) -> bool:
    """|est - ref| <= z * se + slack."""
    return abs(est - ref) <= z * se + slack


def zscore(est: float, ref: float, se: float) -> float:
    return (est - ref) / se if se > 0 else (0.0 if est == ref else math.inf)


def pairs(bmax: int = 8, bmin: int = 2):
    """All (b, b') with bmin <= b <= bmax and 1 <= b' < b."""
    return [(b, bp) for b in range(bmin, bmax + 1) for bp in range(1, b)]


def md_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def cli_main(run) -> None:
    """Command line of a claim module: ``python -m verify.<module> [--full] [--seed N]``."""
    import argparse
    import time
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="full Monte Carlo sizes (slow)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.time()
    res = run(quick=not args.full, seed=args.seed)
    for r in res:
        print(f"[{'PASS' if r.passed else 'FAIL'}] {r.claim} | {r.verdict} | {r.values}")
    print(f"({time.time() - t0:.1f} s, {'full' if args.full else 'quick'} mode)")
    raise SystemExit(0 if all(r.passed for r in res) else 1)


def save_figure(fig, fig_dir: str, name: str) -> str:
    """Lay out, write ``fig_dir/name`` as a 120-dpi PNG, close the figure; return the path."""
    import os

    import matplotlib.pyplot as plt
    fig.tight_layout()
    path = os.path.join(fig_dir, name)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
