"""Property tests of the theory checks in ``verify/`` (docs/method.md §8).

All hypothesis tests are derandomized and have no deadline; Monte Carlo uses
fixed seeds. Each test states the inequality it asserts, so a wrong derivation
(e.g. using Eq. 22's threshold c' instead of c' + s/2) makes it fail.
"""

from __future__ import annotations

import math
import os
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats

# verify/ lives at the repository root next to refsnn/; make it importable when
# pytest is started as `pytest` (which does not put the root on sys.path).
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from verify import bidirectional, lemma1, theorem1  # noqa: E402
from verify.common import (expected_increase, growth_event, in_intervals,  # noqa: E402
                           levelmap_round, levelmap_sym, pairs, quad_over_cells,
                           quant_pos_floor, quant_pos_round, quant_sym, round_half_away)

SETTINGS = settings(derandomize=True, deadline=None, max_examples=100)
BOUND = 2.0 * float(stats.norm.sf(1.5))


# ----------------------------------------------------------------------------
# exact (rational) reference quantizers for sample-by-sample checks
# ----------------------------------------------------------------------------
def _round_exact(u: Fraction) -> int:
    """round half away from zero on an exact rational."""
    a = abs(u)
    n = math.floor(a)
    r = n + (1 if a - n >= Fraction(1, 2) else 0)
    return r if u >= 0 else -r


def _err_pos_exact(u: Fraction, n_max: int) -> Fraction:
    """(u - clip(round(u), 0, n_max))^2 in step units, exact."""
    return (u - min(max(_round_exact(u), 0), n_max)) ** 2


def _err_sym_exact(u: Fraction, b: int) -> Fraction:
    """Eq. 15 error in step units, exact (b = 1: sign with sgn(0) = -1)."""
    if b == 1:
        return (u - (1 if u > 0 else -1)) ** 2
    q = 2 ** (b - 1) - 1
    return (u - min(max(_round_exact(u), -q), q)) ** 2


def _in_event_exact(u: Fraction, intervals) -> bool:
    for lo, hi, lc, hc in intervals:
        lo_f = Fraction(lo)
        left = u >= lo_f if lc else u > lo_f
        right = True if math.isinf(hi) else (u <= Fraction(hi) if hc else u < Fraction(hi))
        if left and right:
            return True
    return False


pair_st = st.integers(2, 8).flatmap(lambda b: st.tuples(st.just(b), st.integers(1, b - 1)))


# ----------------------------------------------------------------------------
# Flooring vs rounding (App. A.2.1)
# ----------------------------------------------------------------------------
def test_round_half_away_exact_near_half():
    u = np.array([0.49999999999999994, 0.5, 1.5, 2.5, -0.5, -2.5, -0.49999999999999994])
    assert list(round_half_away(u)) == [0.0, 1.0, 2.0, 3.0, -1.0, -3.0, -0.0]
    # the textbook formula rounds the first value the wrong way; this is why it is not used
    assert np.floor(0.49999999999999994 + 0.5) == 1.0


@SETTINGS
@given(num=st.integers(0, 10 ** 6), den=st.integers(1, 10 ** 4), b=st.integers(1, 8))
def test_floor_vs_round_exact_rational(num, den, b):
    """On exact rationals u = x/s in [0, N]: |u - floor u| >= |u - round u|,
    equality iff frac(u) <= 1/2 or u = N (top level)."""
    n_max = 2 ** b - 1
    u = Fraction(num, den)
    if u > n_max:
        u = u - n_max * math.floor(u / n_max) if u % n_max else Fraction(n_max)
    ef = abs(u - min(math.floor(u), n_max))
    er = abs(u - min(max(_round_exact(u), 0), n_max))
    assert ef >= er
    frac = u - math.floor(u)
    assert (ef == er) == (frac <= Fraction(1, 2) or u == n_max)


@SETTINGS
@given(s=st.floats(1e-6, 1e6), t=st.floats(0.0, 1.0), b=st.integers(1, 8))
def test_floor_vs_round_float(s, t, b):
    """x = t * N s in float arithmetic: |x - floor_q(x)| >= |x - round_q(x)| up to a few
    ulps of N s (the only source of violation is rounding of x/s and s*k)."""
    n_max = 2 ** b - 1
    x = np.array([t * n_max * s])
    ef = abs(x - quant_pos_floor(x, s, b))[0]
    er = abs(x - quant_pos_round(x, s, b))[0]
    assert ef >= er - 8 * np.finfo(float).eps * n_max * s


# ----------------------------------------------------------------------------
# Theorem 1: exact event, sample by sample
# ----------------------------------------------------------------------------
def test_generic_event_is_half_line():
    """The case-free cell analysis gives exactly (N' + 1/2, inf) for every pair."""
    for b, bp in pairs():
        assert theorem1.event_intervals(b, bp) == [(2 ** bp - 0.5, math.inf, False, False)]
        assert theorem1.p_exact_generic(b, bp) == pytest.approx(theorem1.p_exact_closed(b, bp),
                                                               abs=1e-14)


@SETTINGS
@given(pr=pair_st, num=st.integers(0, 4 * 256 * 64), den=st.sampled_from([1, 2, 4, 3, 64, 1000]))
def test_theorem1_event_exact_rational(pr, num, den):
    """For exact u = x/s (including ties): Err' > Err  <=>  u in the derived union."""
    b, bp = pr
    u = Fraction(num, den)
    grows = _err_pos_exact(u, 2 ** bp - 1) > _err_pos_exact(u, 2 ** b - 1)
    assert grows == _in_event_exact(u, theorem1.event_intervals(b, bp))
    assert grows == (u > Fraction(2 * (2 ** bp - 1) + 1, 2))       # hand-derived form


@SETTINGS
@given(pr=pair_st, sigma=st.floats(1e-3, 1e3), seed=st.integers(0, 2 ** 32 - 1))
def test_theorem1_event_float_samples(pr, sigma, seed):
    """Float samples, quantizers in x units: (Err' > Err) == (x/s in event), except within
    1e-12 (relative) of the event's endpoint, where float rounding of x/s and s*k may decide
    a tie either way."""
    b, bp = pr
    s = 3.0 * sigma / (2 ** b - 1)
    thr = 2 ** bp - 0.5
    rng = np.random.default_rng(seed)
    x = np.abs(rng.normal(0.0, sigma, 3000))
    edge = s * thr
    x = np.concatenate([x, [edge, np.nextafter(edge, 0), np.nextafter(edge, np.inf),
                            s * (2 ** bp - 1), s * (2 ** b - 1), 0.0]])
    grows = (x - quant_pos_round(x, s, bp)) ** 2 > (x - quant_pos_round(x, s, b)) ** 2
    char = in_intervals(x / s, theorem1.event_intervals(b, bp))
    near_edge = np.abs(x / s - thr) <= 1e-12 * thr
    assert np.array_equal(grows[~near_edge], char[~near_edge])


@SETTINGS
@given(pr=pair_st, num=st.integers(-4 * 128 * 64, 4 * 128 * 64),
       den=st.sampled_from([1, 2, 4, 3, 64, 1000]))
def test_bidirectional_event_exact_rational(pr, num, den):
    """Signed exact u = x/s: Err' > Err  <=>  |u| in the derived union (incl. b' = 1 sign)."""
    b, bp = pr
    u = Fraction(num, den)
    grows = _err_sym_exact(u, bp) > _err_sym_exact(u, b)
    ev = growth_event(levelmap_sym(b), levelmap_sym(bp))
    assert ev == bidirectional.closed_event(b, bp)
    # u = 0: sgn(0) = -1 gives error 1 > 0, and 0 is in [0, 1/2) -- consistent
    assert grows == _in_event_exact(abs(u), ev)


@SETTINGS
@given(pr=pair_st, sigma=st.floats(1e-3, 1e3), seed=st.integers(0, 2 ** 32 - 1))
def test_bidirectional_event_float_samples(pr, sigma, seed):
    b, bp = pr
    s = bidirectional.step(b, sigma)
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, sigma, 3000)
    grows = (x - quant_sym(x, s, bp)) ** 2 > (x - quant_sym(x, s, b)) ** 2
    ev = bidirectional.closed_event(b, bp)
    u = np.abs(x) / s
    char = in_intervals(u, ev)
    ends = np.array([e for lo, hi, _, _ in ev for e in (lo, hi) if np.isfinite(e) and e > 0])
    near = np.any(np.abs(u[:, None] - ends[None, :]) <= 1e-12 * ends[None, :], axis=1)
    assert np.array_equal(grows[~near], char[~near])


# ----------------------------------------------------------------------------
# Exact probability vs Monte Carlo, with a bound derived from the sample size
# ----------------------------------------------------------------------------
M = 20_000
DELTA = 1e-6
# Hoeffding: P(|p_hat - p| >= t) <= 2 exp(-2 M t^2) = DELTA
HOEFFDING_T = math.sqrt(math.log(2.0 / DELTA) / (2.0 * M))     # ~0.019


@settings(derandomize=True, deadline=None, max_examples=40)
@given(pr=pair_st, sigma=st.floats(1e-2, 1e2), seed=st.integers(0, 2 ** 32 - 1))
def test_exact_probability_matches_mc(pr, sigma, seed):
    """|MC - P_exact| <= Hoeffding t (false-alarm probability <= 1e-6 per example);
    sigma random, so this also checks that P does not depend on sigma."""
    b, bp = pr
    ph, _ = theorem1.mc_growth(b, bp, M, np.random.default_rng(seed), sigma=sigma)
    assert abs(ph - theorem1.p_exact_closed(b, bp)) <= HOEFFDING_T


@settings(derandomize=True, deadline=None, max_examples=40)
@given(pr=pair_st, seed=st.integers(0, 2 ** 32 - 1))
def test_bidirectional_probability_matches_mc(pr, seed):
    b, bp = pr
    ph = bidirectional.mc_growth(b, bp, M, np.random.default_rng(seed))
    assert abs(ph - bidirectional.p_exact_closed(b, bp)) <= HOEFFDING_T


def test_mc_rejects_eq22_where_gap_is_large():
    """Power of the check above: wherever Eq. 22 differs from the exact value by more
    than 2t, the same Monte Carlo rejects Eq. 22 (so the MC test would catch the
    paper's threshold used as 'exact')."""
    rng = np.random.default_rng(12345)
    tested = 0
    for b, bp in pairs():
        gap = theorem1.p_paper(b, bp) - theorem1.p_exact_closed(b, bp)
        if gap > 2 * HOEFFDING_T:
            ph, _ = theorem1.mc_growth(b, bp, M, rng)
            assert abs(ph - theorem1.p_paper(b, bp)) > HOEFFDING_T
            tested += 1
    assert tested >= 5


# ----------------------------------------------------------------------------
# How the paper's expression relates to the exact one (as REPORT.md says)
# ----------------------------------------------------------------------------
def test_eq22_is_strict_upper_bound_positive():
    for b, bp in pairs():
        pp, pe = theorem1.p_paper(b, bp), theorem1.p_exact_closed(b, bp)
        assert pp > pe
        # the gap is exactly the half-normal mass of (c', c' + s/2]
        c = 3.0 * (2 ** bp - 1) / (2 ** b - 1)
        s = 3.0 / (2 ** b - 1)
        mass = 2.0 * (stats.norm.cdf(c + s / 2) - stats.norm.cdf(c))
        assert pp - pe == pytest.approx(mass, rel=1e-9, abs=1e-15)


def test_bidirectional_relation():
    for b, bp in pairs():
        pp, pe = bidirectional.p_paper(b, bp), bidirectional.p_exact_closed(b, bp)
        assert (pp < pe) if bp == 1 else (pp > pe)


def test_lemma1_tight_exactly_at_one_bit_drops():
    assert round(BOUND, 4) == 0.1336
    for b, bp in pairs():
        pe = theorem1.p_exact_closed(b, bp)
        assert theorem1.p_paper(b, bp) > BOUND
        if bp == b - 1:
            assert pe == BOUND            # bit-exact: the threshold is exactly 1.5 sigma
        else:
            assert pe > BOUND
    res = {r.claim: r for r in lemma1.run(quick=True)}
    assert res["Lemma 1 (Eq. 23) vs exact P"].verdict == "tight"
    assert all(r.passed for r in res.values())


@settings(derandomize=True, deadline=None, max_examples=15)
@given(pr=pair_st)
def test_expected_increase_cell_sum_vs_quad(pr):
    b, bp = pr
    old, new = levelmap_round(2 ** b - 1), levelmap_round(2 ** bp - 1)
    tau = (2 ** b - 1) / 3.0
    an = expected_increase(old, new, tau)
    qd = quad_over_cells([old, new], lambda u, k, kp: (u - kp) ** 2 - (u - k) ** 2, tau)
    assert an > 0
    assert an == pytest.approx(qd, rel=1e-8)
