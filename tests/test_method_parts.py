"""Parametrization (Eq. 9-11), renewal (Alg. 1-2, Eq. 24-25), switching off, conventions, budget (Eq. 7-8)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import refsnn
from refsnn.method import budget as B
from refsnn.method import renewal as R
from refsnn.method.conventions import OFFICIAL, PAPER, get_convention
from refsnn.method.parametrize import parametrized_width, width_value

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)


# -- Eq. 9-11 -----------------------------------------------------------------------
@SETTINGS
@given(st.floats(-1e6, 1e6, allow_nan=False), st.integers(1, 16))
def test_width_in_range_for_any_parameter(p, bound):
    b = parametrized_width(refsnn.tensor([p]), bound).data[0]
    assert 1 <= b <= bound and b == int(b)
    assert width_value(np.array([p]), bound)[0] == b


def test_width_rounds_half_to_even_and_is_straight_through():
    x = refsnn.tensor([0.2, 1.5, 2.5, 3.49, 7.0, 2.7], requires_grad=True)
    b = parametrized_width(x, 6)
    np.testing.assert_array_equal(b.data, [1, 2, 2, 3, 6, 3])
    g = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    b.backward(g)
    np.testing.assert_array_equal(x.grad, g)  # dL/dBhat = dL/dB, through rounding AND clip


@pytest.mark.parametrize("bound", [0, -1, 2.5, "3", True])
def test_bad_bound_is_an_error(bound):
    with pytest.raises(ValueError, match="bound must be an integer >= 1"):
        parametrized_width(refsnn.tensor([2.0]), bound)


def test_nonfinite_width_param_is_an_error():
    with pytest.raises(ValueError, match="not finite"):
        parametrized_width(refsnn.tensor([np.nan]), 4)


# -- Alg. 2 ---------------------------------------------------------------------------
def _grid_search_reference(X, q_min, q_max, K, p):
    """A second transcription of Alg. 2, element by element."""
    X = list(np.ravel(X))
    R_ = max(X) - min(X)
    best, out = math.inf, None
    neg = any(x < 0 for x in X)
    for k in range(1, K + 1):
        hi = k * R_ / K
        lo = -hi if neg else 0.0
        s = (hi - lo) / (q_max - q_min)
        err = 0.0
        for x in X:
            r = math.copysign(math.floor(abs(x / s) + 0.5), x / s)
            err += abs(s * min(max(r, q_min), q_max) - x) ** p
        score = err / len(X)
        if score < best:
            best, out = score, (lo, hi)
    return out


@pytest.mark.parametrize("seed,q_min,q_max,neg", [(0, 0, 3, False), (1, -7, 7, True), (2, 0, 15, False), (3, -1, 1, True)])
def test_grid_search_matches_a_second_transcription(seed, q_min, q_max, neg):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal(200) if neg else np.abs(rng.standard_normal(200))
    lo, hi, _ = R.grid_search(X, q_min, q_max, K=40, p=2.4)
    rlo, rhi = _grid_search_reference(X, q_min, q_max, 40, 2.4)
    assert (lo, hi) == pytest.approx((rlo, rhi), rel=1e-12)


def test_grid_search_no_spread_and_bad_args():
    assert R.grid_search(np.ones(5), 0, 3)[2] == math.inf
    with pytest.raises(ValueError, match="K must be an integer >= 1"):
        R.grid_search(np.ones(5), 0, 3, K=0)
    with pytest.raises(ValueError, match="p must be"):
        R.grid_search(np.ones(5), 0, 3, p=-1)


# -- Alg. 1, Eq. 24-25 ------------------------------------------------------------------
def test_observer_fires_only_when_width_changes():
    X = np.abs(np.random.default_rng(0).standard_normal(1000))
    same = R.observe(X, 4, 4, math.inf, -math.inf, 0, 15)
    assert not same.fired and same.step is None and same.v_rmin == math.inf
    res = R.observe(X, 2, 4, math.inf, -math.inf, 0, 3, K=50)
    assert res.fired and res.b_old == 2
    lo, hi, _ = R.grid_search(X, 0, 3, K=50)
    assert (res.v_rmin, res.v_rmax) == (lo, hi)  # Eq. 24 from +inf/-inf
    assert res.step == pytest.approx((hi - lo) / 3)  # Eq. 25
    # Eq. 24 keeps the running extremes of earlier renewals
    res2 = R.observe(X * 0.1, 1, 2, res.v_rmin, res.v_rmax, 0, 1, K=50)
    assert res2.v_rmax == res.v_rmax and res2.step == pytest.approx(res.v_rmax / 1)


def test_renewed_step_lowers_error_after_width_drop_on_half_normal():
    rng = np.random.default_rng(1)
    X = np.abs(rng.standard_normal(20000))
    for b, b2 in [(4, 2), (4, 1), (3, 2), (6, 3)]:
        s_old = 3.0 / (2 ** b - 1)  # the "statistically optimal" step of the old width
        res = R.observe(X, b2, b, math.inf, -math.inf, 0, 2 ** b2 - 1, K=100)

        def mse(s):
            return np.mean((s * np.clip(R.round_half_away(X / s), 0, 2 ** b2 - 1) - X) ** 2)
        assert res.fired and mse(res.step) < mse(s_old), (b, b2)


def test_switching_off_rule():
    # never before min_epochs
    assert not R.should_switch_off(13, 14, current=2.0, initial=4.0, target=2.0)
    # at min_epochs: on while |cur - tar| >= 0.24 |init - tar|
    assert not R.should_switch_off(14, 14, current=2.48, initial=4.0, target=2.0)
    assert not R.should_switch_off(14, 14, current=2.0 + 0.24 * 2.0, initial=4.0, target=2.0)
    assert R.should_switch_off(14, 14, current=2.47, initial=4.0, target=2.0)


def test_release_switching_off_rule():
    # signed, threshold 0.24 (init - target); the average rounded to 3 decimals first
    assert not R.should_switch_off_release(14, 15, 2.0, 4.0, 2.0)                # too early
    assert R.should_switch_off_release(15, 15, 2.4794, 4.0, 2.0)                  # rounds to 2.479: below 0.48
    assert not R.should_switch_off_release(15, 15, 2.4796, 4.0, 2.0)              # rounds to 2.48: not below
    assert R.should_switch_off(15, 15, 2.4796, 4.0, 2.0)                          # (the paper's does not round)
    assert R.should_switch_off_release(15, 15, 0.5, 4.0, 2.0)                     # far below the target: signed
    assert not R.should_switch_off(15, 15, 0.5, 4.0, 2.0)                         # (the paper's is absolute)
    # growing widths (init < target): the signed test fires while W is still 0.48 or more BELOW the target
    assert R.should_switch_off_release(15, 15, 2.0, 2.0, 4.0)
    assert not R.should_switch_off_release(15, 15, 3.9, 2.0, 4.0)
    assert R.should_switch_off(15, 15, 3.9, 2.0, 4.0) and not R.should_switch_off(15, 15, 2.0, 2.0, 4.0)
    assert R.should_switch_off_release(0, 15, 9.0, 4.0, 4.0)                      # init == target: at once


def test_renewal_mode_validation():
    with pytest.raises(ValueError, match="renewal mode must be one of"):
        R.check_renewal_mode("sometimes")


# -- conventions -------------------------------------------------------------------------
def test_conventions_rows():
    assert (PAPER.bit_grad_lsq, OFFICIAL.bit_grad_lsq) == (True, False)           # C1
    assert (PAPER.one_bit_factor, OFFICIAL.one_bit_factor) == (2.0, 1.0)          # C2
    assert (PAPER.bptt, OFFICIAL.bptt) == (True, False)                           # C3
    assert (PAPER.reset_decay, OFFICIAL.reset_decay) == (False, True)             # C4
    assert (PAPER.renewal_formula, OFFICIAL.renewal_formula) == ("paper", "official")  # C5
    with pytest.raises(ValueError, match="convention must be one of"):
        get_convention("pytorch")


def test_c5_renewal_formula_differs_only_off_the_grid_search_ranges():
    # ranges produced by Alg. 2 contain 0 (positive) or are symmetric: both formulas agree
    assert R.renewed_step(0.0, 3.0, 0, 3, "paper") == R.renewed_step(0.0, 3.0, 0, 3, "official")
    assert R.renewed_step(-2.0, 2.0, -7, 7, "paper") == R.renewed_step(-2.0, 2.0, -7, 7, "official", symmetric=True)
    # a range that excludes 0 or is asymmetric: they differ
    assert R.renewed_step(0.5, 3.0, 0, 3, "paper") != R.renewed_step(0.5, 3.0, 0, 3, "official")
    assert R.renewed_step(-1.0, 2.0, -7, 7, "paper") != R.renewed_step(-1.0, 2.0, -7, 7, "official", symmetric=True)


# -- Eq. 7-8 ------------------------------------------------------------------------------
def test_budget_formulas_by_hand():
    a = B.LayerCost("a", "conv", macs=100, n_w=10, n_f=50, B_w=4, B_s=[4, 2, 6], T=2)
    b = B.LayerCost("b", "linear", macs=20, n_w=30, n_f=10, B_w=2, B_s=[1], T=1)
    stem = B.LayerCost("stem", "conv", macs=1000, n_w=5, n_f=999, B_w=8, B_s=[], T=1, spiking=False)
    assert a.bit_budget == 4 * (4 + 2) and a.s_ace == 100 * 24
    assert a.s_ace_star == 100 * 4 * (4 + 1)  # max_t B_s + ceil(log2 T)
    m = B.model_cost([stem, a, b])
    assert m.W == pytest.approx((8 * 5 + 4 * 10 + 2 * 30) / 45)
    assert m.S == pytest.approx((3 * 50 + 1 * 10) / 60)   # the stem (no input neuron) is left out
    assert m.T == pytest.approx((2 * 50 + 1 * 10) / 60)
    assert m.bit_budget == pytest.approx(m.W * m.S * m.T)
    assert m.s_ace == 2400 + 20 * 2 and m.macs == 1120
    assert m.size_mb == pytest.approx((40 + 40 + 60) / 8 / 1e6)
    u = B.model_cost(B.uniform([stem, a, b], 16, 1, 4))
    assert u.s_ace == (100 + 20) * 16 * 4 and u.W == 16 and u.S == 1 and u.T == 4
    assert B.parse_wst("16/1/4") == (16, 1, 4)
    with pytest.raises(ValueError, match="16/1/4"):
        B.parse_wst("16-1-4")
