"""Convention rows C6-C11 (docs/method.md §10, refsnn/method/conventions.py): each test flips ONE row of the
paper convention and names exactly the arrays that change (the C1-C5 flips are in tests/test_golden.py)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from refsnn.autograd.tensor import tensor
from refsnn.method import renewal as R
from refsnn.method.conventions import OFFICIAL, PAPER, ROWS, flip_row, get_convention
from refsnn.method.parametrize import parametrized_width, width_value
from refsnn.method.regulate import Penalties, Targets, regulating_loss
from refsnn.method.weight_quant import quantize_weight, weight_grid
from refsnn.nn.spiking import SpikingConfig, SpikingConv2d, SpikingLinear


def test_rows_table_and_flip():
    assert [r for r, _ in ROWS] == [f"C{i}" for i in range(1, 12)]
    for row, field in ROWS:
        assert getattr(PAPER, field) != getattr(OFFICIAL, field), row
        for base, other in ((PAPER, OFFICIAL), (OFFICIAL, PAPER)):
            f = flip_row(base, row)
            assert getattr(f, field) == getattr(other, field)
            assert all(getattr(f, g) == getattr(base, g) for _, g in ROWS if g != field)
            assert get_convention(f) is f
    with pytest.raises(ValueError, match="row must be one of"):
        flip_row(PAPER, "C12")


def changed(a: dict, b: dict) -> set:
    assert a.keys() == b.keys()
    return {k for k in a if not np.array_equal(a[k], b[k])}


# ---------------------------------------------------------------------------------------- C6, C7: step gradient
def weight_quant_run(shape, per_channel, B, convention, seed=0):
    rng = np.random.default_rng(seed)
    C = shape[0]
    step = rng.uniform(0.02, 0.08, C) if per_channel else np.float64(rng.uniform(0.02, 0.08))
    w = tensor(rng.standard_normal(shape) * 0.1, requires_grad=True)
    s = tensor(np.asarray(step), requires_grad=True)
    bh = tensor(np.array(B + 0.2), requires_grad=True)
    wq = quantize_weight(w, s, parametrized_width(bh, 6), convention=convention)
    wq.backward(rng.standard_normal(shape))
    return {"w_q": wq.data, "grad.w": w.grad, "grad.step": s.grad, "grad.width": bh.grad}


@pytest.mark.parametrize("B", [1, 2, 3, 6])
def test_C6_conv_step_gradient(B):
    q_max = weight_grid(B)[1]
    conv = flip_row(PAPER, "C6")
    a, b = weight_quant_run((4, 2, 3, 3), False, B, PAPER), weight_quant_run((4, 2, 3, 3), False, B, conv)
    assert changed(a, b) == {"grad.step"}
    # layer-wise: ratio sqrt(C_in k^2 / (C_out q_max)) (2.1213 at B = 1-2, 1.2247 at B = 3, 0.3810 at B = 6)
    np.testing.assert_allclose(b["grad.step"] / a["grad.step"], math.sqrt(18 / (4 * q_max)), rtol=1e-13)
    # per channel (C7 paper: N = C_in k^2): g^2 M_c = 1/q_max against g = 1/sqrt(M_c q_max)
    a, b = weight_quant_run((4, 2, 3, 3), True, B, PAPER), weight_quant_run((4, 2, 3, 3), True, B, conv)
    assert changed(a, b) == {"grad.step"}
    np.testing.assert_allclose(b["grad.step"] / a["grad.step"], math.sqrt(18 / q_max), rtol=1e-13)
    # a linear weight is plain LSQ in both
    assert changed(weight_quant_run((5, 12), False, B, PAPER), weight_quant_run((5, 12), False, B, conv)) == set()


@pytest.mark.parametrize("shape", [(4, 2, 3, 3), (5, 12)])
def test_C7_per_channel_g_counts_the_whole_tensor(shape):
    # paper + C7: g = 1/sqrt(N q_max) with N = w.size; C1 paper scales the bit gradient by the same g
    c7 = flip_row(PAPER, "C7")
    a, b = weight_quant_run(shape, True, 3, PAPER), weight_quant_run(shape, True, 3, c7)
    assert changed(a, b) == {"grad.step", "grad.width"}
    np.testing.assert_allclose(b["grad.step"] / a["grad.step"], math.sqrt(1 / shape[0]), rtol=1e-13)
    np.testing.assert_allclose(b["grad.width"] / a["grad.width"], math.sqrt(1 / shape[0]), rtol=1e-13)
    # official - C7 (C1 official: g_B = 1): the step gradient alone
    o7 = flip_row(OFFICIAL, "C7")
    a, b = weight_quant_run(shape, True, 3, o7), weight_quant_run(shape, True, 3, OFFICIAL)
    assert changed(a, b) == {"grad.step"}
    # linear: g alone, ratio sqrt(1/C_out); conv (C6 official: g twice): ratio 1/C_out
    ratio = math.sqrt(1 / shape[0]) if len(shape) == 2 else 1 / shape[0]
    np.testing.assert_allclose(b["grad.step"] / a["grad.step"], ratio, rtol=1e-13)
    # one layer-wise step: the elements sharing it are the whole tensor already
    assert changed(weight_quant_run(shape, False, 3, PAPER), weight_quant_run(shape, False, 3, c7)) == set()


# ---------------------------------------------------------------------------------------- C8, C9, C5: observers
def observer_run(Xs, Bs, convention, b0=4, conv=False, step0=0.05):
    b_old, vmin, vmax, step = b0, math.inf, -math.inf, step0
    rows = {k: [] for k in ("fired", "step", "b_old", "v_rmin", "v_rmax")}
    for X, B in zip(Xs, Bs):
        r = R.observe_weight(X, B, b_old, vmin, vmax, step, conv=conv, K=50, p=2.4, convention=convention)
        b_old, vmin, vmax = r.b_old, r.v_rmin, r.v_rmax
        step = r.step if r.fired else step
        for k, v in (("fired", r.fired), ("step", step), ("b_old", b_old), ("v_rmin", vmin), ("v_rmax", vmax)):
            rows[k].append(v)
    return {k: np.array(v) for k, v in rows.items()}


def draws(seed, n, positive):
    rng = np.random.default_rng(seed)
    Xs = [rng.standard_normal((6, 8)) * rng.uniform(0.05, 0.3) for _ in range(n)]
    return [np.abs(X) for X in Xs] if positive else Xs


def test_C8_weight_observer_symmetric_grid():
    c8, Bs = flip_row(PAPER, "C8"), [3, 3, 2, 4, 5]
    Xs = draws(1, 5, positive=True)
    a, b = observer_run(Xs, Bs, PAPER), observer_run(Xs, Bs, c8)
    assert changed(a, b) == {"step", "v_rmin", "v_rmax"}
    assert (a["v_rmin"] == 0).all() and (b["v_rmin"] == -b["v_rmax"]).all()
    # mixed-sign data: the paper's Alg. 2 already chooses lo = -hi
    Xs = draws(2, 5, positive=False)
    assert changed(observer_run(Xs, Bs, PAPER), observer_run(Xs, Bs, c8)) == set()


def test_C9_one_bit_grid_scored_with_sgn():
    c9 = flip_row(PAPER, "C9")
    Xs, Bs = draws(3, 4, positive=False), [1, 2, 1, 1]
    a, b = observer_run(Xs, Bs, PAPER), observer_run(Xs, Bs, c9)
    assert changed(a, b) == {"step", "v_rmax", "v_rmin"}
    # the first renewal is at B = 1: both V'_max and the step differ from the start
    assert a["step"][0] != b["step"][0]
    # B = 2 is the ternary grid {-1, 0, 1} on the same (q_min, q_max): C9 does not act there
    Xs, Bs = draws(4, 3, positive=False), [2, 3, 2]
    assert changed(observer_run(Xs, Bs, PAPER), observer_run(Xs, Bs, c9)) == set()
    # the scoring levels themselves
    X = np.array([-0.3, 0.0, 0.05, 0.9])
    lo, hi, _ = R.grid_search(X, -1, 1, 10, 2.0, symmetric=True, one_bit_sign=True)
    s = hi
    assert np.array_equal(s * np.where(X / s > 0, 1, -1), [-s, -s, s, s])
    with pytest.raises(ValueError, match="one_bit_sign needs the 1-bit grid"):
        R.grid_search(X, -3, 3, one_bit_sign=True)


def test_C10_conv_weight_step_rescaled_on_a_width_change():
    c10, Bs = flip_row(PAPER, "C10"), [3, 3, 2, 4, 1]
    Xs = draws(5, 5, positive=False)
    a, b = observer_run(Xs, Bs, PAPER, conv=True), observer_run(Xs, Bs, c10, conv=True)
    assert changed(a, b) == {"step", "v_rmin", "v_rmax"}
    # C10: no running range; the step follows the grid spans 4 -> 3 -> 2 -> 4 -> 1: 14 -> 6 -> 2 -> 14 -> 2
    assert np.isinf(b["v_rmin"]).all() and np.isinf(b["v_rmax"]).all()
    np.testing.assert_allclose(b["step"], 0.05 * np.array([6, 6, 2, 14, 2]) / 14, rtol=1e-15)
    assert np.array_equal(a["fired"], b["fired"]) and np.array_equal(a["b_old"], b["b_old"])
    # a linear layer keeps Alg. 1-2
    assert changed(observer_run(Xs, Bs, PAPER), observer_run(Xs, Bs, c10)) == set()


def layer_run(cls, convention, width_after):
    cfg = SpikingConfig(convention=convention, renewal="both", renewal_K=20, weight_bits=4.0, spike_bits=3.0)
    layer = (SpikingConv2d(3, 4, 3, padding=1, config=cfg, rng=0, dtype=np.float64) if cls == "conv"
             else SpikingLinear(12, 5, config=cfg, rng=0, dtype=np.float64))
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 5) if cls == "conv" else (2, 12))
    layer.train()
    layer(tensor(x))
    layer.weight_width.data[...] = width_after
    layer(tensor(x))
    return {"weight_step": layer.weight_step.data.copy(), "obs_w_vrmin": layer.obs_w_vrmin.copy(),
            "obs_w_vrmax": layer.obs_w_vrmax.copy(), "obs_w_bold": layer.obs_w_bold.copy(),
            "threshold": layer.threshold.data.copy()}


def test_C10_in_the_layers():
    c10 = flip_row(PAPER, "C10")
    a, b = layer_run("conv", PAPER, 2.0), layer_run("conv", c10, 2.0)
    assert changed(a, b) == {"weight_step", "obs_w_vrmin", "obs_w_vrmax"}
    assert changed(layer_run("linear", PAPER, 2.0), layer_run("linear", c10, 2.0)) == set()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10 ** 6), n=st.integers(1, 6), conv=st.booleans())
def test_C5_is_inert_under_the_official_weight_and_spike_observers(seed, n, conv):
    """With C8 (and C10 for convolutions) official, every weight running range is symmetric, every positive
    spike range starts at 0: the two forms of Eq. 25 agree (the official floor at eps aside)."""
    rng = np.random.default_rng(seed)
    Xs = [rng.standard_normal((4, 6)) * rng.uniform(0.05, 1.0) for _ in range(n)]
    Xs = [np.abs(X) if rng.random() < 0.5 else X for X in Xs]
    Bs = [int(b) for b in rng.integers(1, 7, n)]
    a, b = observer_run(Xs, Bs, OFFICIAL, conv=conv), observer_run(Xs, Bs, flip_row(OFFICIAL, "C5"), conv=conv)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-14, err_msg=k)
    # the positive spike observer: lo = 0 always
    b_old, vmin, vmax = 4, math.inf, -math.inf
    for X, B in zip(Xs, Bs):
        q = (0, 2 ** B - 1)
        ra = R.observe(np.abs(X), B, b_old, vmin, vmax, *q, symmetric=False, formula="official")
        rb = R.observe(np.abs(X), B, b_old, vmin, vmax, *q, symmetric=False, formula="paper")
        assert (ra.fired, ra.v_rmin, ra.v_rmax) == (rb.fired, rb.v_rmin, rb.v_rmax)
        if ra.fired:
            assert math.isclose(ra.step, rb.step, rel_tol=1e-14)
        b_old, vmin, vmax = ra.b_old, ra.v_rmin, ra.v_rmax


# ---------------------------------------------------------------------------------------- C11: widths from |Bhat|
def test_C11_widths_from_abs():
    c11 = flip_row(PAPER, "C11")
    for bhat, paper, official in ((-2.6, 1, 3), (-0.4, 1, 1), (2.6, 3, 3), (-9.0, 1, 6)):
        assert width_value(np.array(bhat), 6) == paper
        assert width_value(np.array(bhat), 6, use_abs=c11.width_abs) == official
        # the quantizer's path: straight through to Bhat; the regulating loss's: times sign(Bhat)
        for grad_sign, factor in ((False, 1.0), (True, np.sign(bhat))):
            p = tensor(np.array(bhat), requires_grad=True)
            B = parametrized_width(p, 6, use_abs=True, grad_sign=grad_sign)
            B.backward(np.array(2.5))
            assert float(B.data) == official and float(p.grad) == 2.5 * factor
    with pytest.raises(ValueError, match="grad_sign=True needs use_abs=True"):
        parametrized_width(tensor(np.array(1.0)), 6, grad_sign=True)


def regulate_run(convention, bhat_w):
    cfg = SpikingConfig(convention=convention, renewal="none")
    layer = SpikingLinear(12, 5, config=cfg, rng=0, dtype=np.float64)
    layer.weight_width.data[...] = bhat_w
    layer.train()
    out = layer(tensor(np.random.default_rng(2).standard_normal((2, 12))))
    loss, avg = regulating_loss([layer], Targets(3.0, 2.0, 1.0), Penalties(1.0, 1.0, 1.0))
    (loss + (out * out).sum() * 1e-3).backward()
    return {"W": np.array(avg["W"]), "out": out.data, "grad.weight_width": layer.weight_width.grad,
            "grad.weight": layer.weight.grad, "grad.spike_width": layer.spike_width.grad}


def test_C11_in_the_layers_and_the_regulating_loss():
    c11 = flip_row(PAPER, "C11")
    a, b = regulate_run(PAPER, -2.4), regulate_run(c11, -2.4)
    # B_w = 1 (paper) vs 2 (official): the average, the output and every gradient through w_q change
    assert changed(a, b) == {"W", "out", "grad.weight_width", "grad.weight"}
    assert float(a["W"]) == 1.0 and float(b["W"]) == 2.0
    # a positive Bhat: nothing changes
    assert changed(regulate_run(PAPER, 2.4), regulate_run(c11, 2.4)) == set()


def spike_layer_run(convention, width_after):
    cfg = SpikingConfig(convention=convention, renewal="spike", renewal_K=30, domain="bidirectional",
                        spike_bits=3.0, temporal_wise=False)
    layer = SpikingLinear(12, 5, config=cfg, rng=0, dtype=np.float64)
    x = np.random.default_rng(3).standard_normal((4, 12))
    layer.train()
    layer(tensor(x))
    layer.spike_width.data[...] = width_after
    layer(tensor(x))
    return {"threshold": layer.threshold.data.copy(), "obs_s_vrmin": layer.obs_s_vrmin.copy(),
            "obs_s_vrmax": layer.obs_s_vrmax.copy(), "weight_step": layer.weight_step.data.copy()}


def test_C9_in_a_bidirectional_spike_observer():
    c9 = flip_row(PAPER, "C9")
    a, b = spike_layer_run(PAPER, 1.0), spike_layer_run(c9, 1.0)
    assert changed(a, b) == {"threshold", "obs_s_vrmin", "obs_s_vrmax"}
    # a drop to 2 bits (ternary grid): C9 does not act
    assert changed(spike_layer_run(PAPER, 2.0), spike_layer_run(c9, 2.0)) == set()
