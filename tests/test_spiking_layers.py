"""SpikingConv2d / SpikingLinear: wiring of the method ops, LSQ initialisation, renewal inside the layer,
the regulating loss over layers, and the conventions row by row (docs/method.md §10)."""
import math
from dataclasses import replace

import numpy as np
import pytest

import refsnn
import refsnn.functional as F
from refsnn.kernels import neuron as kn
from refsnn.kernels import quant as kq
from refsnn.method import regulate
from refsnn.method.conventions import OFFICIAL, PAPER, get_convention
from refsnn.method.neuron import spiking_neuron
from refsnn.method.weight_quant import quantize_weight
from refsnn.nn import SpikingConfig, SpikingConv2d, SpikingLinear


def rand(shape, seed=0, positive=False, rg=True):
    x = np.random.default_rng(seed).standard_normal(shape)
    return refsnn.tensor(np.abs(x) if positive else x, requires_grad=rg)


# -- the ops pass the kernels' gradients through unchanged, and T gets docs/method.md §6.5 -----------
@pytest.mark.parametrize("convention", ["paper", "official"])
def test_neuron_op_wiring(convention):
    I = rand((3, 4, 5), positive=True)
    v_th = refsnn.tensor([0.3, 0.5, 0.4], requires_grad=True)
    bits = refsnn.tensor([2.0, 3.0, 1.0], requires_grad=True)
    T = refsnn.tensor(2.0, requires_grad=True)
    y = spiking_neuron(I, v_th, bits, T, convention=get_convention(convention))
    g = np.random.default_rng(1).standard_normal(y.shape)
    y.backward(g)
    c = OFFICIAL if convention == "official" else PAPER
    y_ref, v = kn.neuron_forward(I.data, v_th.data, np.array([2, 3, 1]), 2, reset_decay=c.reset_decay, impl="numpy")
    gI, gv, gb = kn.neuron_backward(g, v, v_th.data, np.array([2, 3, 1]), 2, bptt=c.bptt, reset_decay=c.reset_decay,
                                    bit_grad_lsq=c.bit_grad_lsq, one_bit_factor=c.one_bit_factor, impl="numpy")
    np.testing.assert_array_equal(y.data, y_ref)
    np.testing.assert_array_equal(I.grad, gI)
    np.testing.assert_array_equal(v_th.grad, gv)
    np.testing.assert_array_equal(bits.grad, gb)
    # docs/method.md §6.5: dL/dThat = sum_j dL/dy_j (-y_j / T)
    assert T.grad == pytest.approx(-np.sum(g * y_ref) / 2)


def test_T_gradient_against_finite_differences_of_the_squeeze():
    """6.5: with the spikes held fixed, y(T) = (1/T) sum_t Shat^t is smooth in T; its derivative is -y/T."""
    I = rand((50,), positive=True)
    v_th = refsnn.tensor([0.3, 0.5, 0.4])
    bits = refsnn.tensor([3.0, 3.0, 3.0])
    T = refsnn.tensor(3.0, requires_grad=True)
    y = spiking_neuron(I, v_th, bits, T)
    (y * y).sum().backward()
    spikes_sum = y.data * 3.0
    eps = 1e-6
    fd = (np.sum((spikes_sum / (3 + eps)) ** 2) - np.sum((spikes_sum / (3 - eps)) ** 2)) / (2 * eps)
    assert T.grad == pytest.approx(fd, rel=1e-6)


def test_weight_quant_op_wiring_and_per_channel():
    w = rand((4, 3, 2, 2))
    for step_shape in [(), (4,)]:
        step = refsnn.tensor(np.full(step_shape, 0.3), requires_grad=True)
        bits = refsnn.tensor(3.0, requires_grad=True)
        w.grad = None
        wq = quantize_weight(w, step, bits)
        g = np.random.default_rng(2).standard_normal(wq.shape)
        wq.backward(g)
        gw, gs, gb = kq.weight_quant_backward(g, w.data, step.data, 3, impl="numpy")
        np.testing.assert_array_equal(wq.data, kq.weight_quant_forward(w.data, step.data, 3, impl="numpy"))
        np.testing.assert_array_equal(w.grad, gw)
        np.testing.assert_array_equal(step.grad, gs)
        assert bits.grad == gb


# -- the layer ----------------------------------------------------------------------------------
def test_layer_gradients_reach_every_parameter_kind():
    cfg = SpikingConfig(weight_bits=2, spike_bits=2, time_steps=2)
    layer = SpikingConv2d(3, 4, 3, padding=1, bias=True, config=cfg)
    x = rand((2, 3, 6, 6), positive=True)
    layer(x)  # LSQ initialisation on this batch; the next batch is wider, so some spikes saturate
    x = refsnn.tensor(x.data * 4, requires_grad=True)
    y = layer(x)
    (y * y).mean().backward()
    kinds = {p.kind: p for p in layer.parameters()}
    assert set(kinds) == {"weight", "bias", "weight_step", "weight_width", "threshold", "spike_width", "time"}
    for kind, p in kinds.items():
        assert p.grad is not None and np.isfinite(p.grad).all(), kind
    assert x.grad is not None and np.abs(x.grad).sum() > 0
    assert np.abs(layer.spike_width.grad).sum() > 0  # 2-bit spikes saturate somewhere
    assert layer.threshold.grad[2] == 0  # the third step is beyond T = 2


def test_lsq_initialisation_on_first_training_batch_only():
    layer = SpikingLinear(10, 3, config=SpikingConfig(weight_bits=3, spike_bits=2))
    x = rand((8, 10), positive=True)
    layer(x)
    # docs/method.md §11: S_q = 2 mean|w| / sqrt(q_max), V_th = 2 mean|a| / sqrt(q_max)
    assert layer.weight_step.data == pytest.approx(2 * np.mean(np.abs(layer.weight.data)) / math.sqrt(3))
    np.testing.assert_allclose(layer.threshold.data, 2 * np.mean(np.abs(x.data)) / math.sqrt(3))
    before = layer.threshold.data.copy()
    layer(rand((8, 10), seed=5, positive=True))
    np.testing.assert_array_equal(layer.threshold.data, before)
    fresh = SpikingLinear(10, 3).eval()
    fresh(x)
    assert not bool(fresh.initialized) and (fresh.threshold.data == 1).all()


def test_renewal_inside_the_layer_fires_only_on_width_change():
    layer = SpikingConv2d(2, 3, 3, padding=1, config=SpikingConfig(spike_bits=4, renewal="both", renewal_K=30))
    x = rand((4, 2, 5, 5), positive=True)
    layer(x)
    assert layer.renewal_events == []
    th = layer.threshold.data.copy()
    layer(x)
    assert layer.renewal_events == [] and np.array_equal(th, layer.threshold.data)
    layer.spike_width.data[1] = 2.2  # step 2's rounded width drops 4 -> 2
    layer.weight_width.data[...] = 2.6  # weight width 4 -> 3
    layer(x)
    kinds = sorted((e[0], e[1], e[2]) for e in layer.renewal_events)
    assert kinds == [("spike", 1, 2), ("weight", 0, 3)]
    assert layer.threshold.data[0] == th[0] and layer.threshold.data[1] != th[1]
    assert int(layer.obs_s_bold[1]) == 2 and int(layer.obs_w_bold[0]) == 3
    layer(x)
    assert layer.renewal_events == []  # nothing changed since


def test_renewal_state_is_saved_and_restored():
    cfg = SpikingConfig(renewal="spike", renewal_K=20)
    a, b = SpikingConv2d(2, 3, 3, config=cfg, rng=1), SpikingConv2d(2, 3, 3, config=cfg, rng=2)
    x = rand((2, 2, 5, 5), positive=True)
    a(x)
    a.spike_width.data[0] = 1.0
    a(x)
    b.load_state_dict(a.state_dict())
    for (n1, v1), (n2, v2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert n1 == n2 and np.array_equal(v1, v2), n1
    assert int(b.obs_s_bold[0]) == 1 and np.isfinite(b.obs_s_vrmax[0])


def test_config_errors():
    with pytest.raises(ValueError, match="spike_bound must be an integer >= 1"):
        SpikingConfig(spike_bound=0)
    with pytest.raises(ValueError, match=r"time_bound \(T_bound\) must be an integer >= 1"):
        SpikingConfig(time_bound=0)
    with pytest.raises(ValueError, match="domain must be one of"):
        SpikingConfig(domain="negative")
    with pytest.raises(ValueError, match="spike_bits must be a finite number"):
        SpikingConfig(spike_bits=float("nan"))
    with pytest.raises(ValueError, match="unknown option"):
        SpikingConfig().replace(bitz=3)
    with pytest.raises(ValueError, match="step S_q must be finite and > 0"):
        quantize_weight(rand((2, 2)), refsnn.tensor(-0.1), refsnn.tensor(2.0))
    with pytest.raises(ValueError, match="thresholds v_th must be"):
        spiking_neuron(rand((3,)), refsnn.tensor([-1.0]), refsnn.tensor([2.0]), refsnn.tensor(1.0))


def test_width_param_nan_in_layer_is_an_error():
    layer = SpikingLinear(3, 2)
    layer.spike_width.data[0] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        layer(rand((2, 3), positive=True))


def test_frozen_widths_get_no_gradient():
    layer = SpikingLinear(4, 2, config=SpikingConfig(learn_weight_bits=False, learn_time=False))
    layer(rand((3, 4), positive=True)).sum().backward()
    assert layer.weight_width.grad is None and layer.time.grad is None and layer.spike_width.grad is not None


# -- Eq. 21 over layers --------------------------------------------------------------------------
def test_regulating_loss_gradient_in_proportion_to_element_share():
    cfg = SpikingConfig(weight_bits=4, spike_bits=4, time_steps=2)
    l1 = SpikingConv2d(2, 4, 3, padding=1, config=cfg, rng=0)   # N_w = 72, N_f = 2*6*6 = 72
    l2 = SpikingLinear(4 * 36, 5, config=cfg, rng=1)             # N_w = 720, N_f = 144
    x = rand((2, 2, 6, 6), positive=True)
    l2(F.flatten(l1(x)))
    targets, pen = regulate.Targets(W=2, S=2, T=1), regulate.Penalties(0.5, 0.3, 0.2)
    loss, avg = regulate.regulating_loss([l1, l2], targets, pen)
    assert avg == {"W": 4.0, "S": 4.0, "T": 2.0}
    assert loss.item() == pytest.approx(0.5 * 2 + 0.3 * 2 + 0.2 * 1)
    loss.backward()
    nw, nf = np.array([72, 720]), np.array([72, 144])
    gw = np.array([l1.weight_width.grad, l2.weight_width.grad])
    np.testing.assert_allclose(gw, 0.5 * nw / nw.sum())
    gt = np.array([l1.time.grad, l2.time.grad])
    np.testing.assert_allclose(gt, 0.2 * nf / nf.sum())
    # S: mean over the T = 2 steps in use, so each step's width gets half of its layer's share
    np.testing.assert_allclose(l1.spike_width.grad, 0.3 * np.array([72, 72, 0]) / 216 / 2)
    np.testing.assert_allclose(l2.spike_width.grad, 0.3 * np.array([144, 144, 0]) / 216 / 2)


# -- conventions, one row at a time ------------------------------------------------------------
def _run(conv, T=2, tau=1.0, B=(2, 2, 2), seed=0):
    conv = get_convention(conv)
    I = rand((40,), seed=seed, positive=True)
    I.data[...] *= 2
    v_th = refsnn.tensor([0.4, 0.5, 0.3], requires_grad=True)
    bits = refsnn.tensor(np.array(B, float), requires_grad=True)
    Tt = refsnn.tensor(float(T), requires_grad=True)
    y = spiking_neuron(I, v_th, bits, Tt, tau=tau, convention=conv)
    y.backward(np.random.default_rng(seed + 1).standard_normal(y.shape))
    w = rand((30,), seed=seed + 2)
    step, wb = refsnn.tensor(0.3, requires_grad=True), refsnn.tensor(float(B[0]), requires_grad=True)
    wq = quantize_weight(w, step, wb, convention=conv)
    wq.backward(np.random.default_rng(seed + 3).standard_normal(wq.shape))
    return {"y": y.data, "gI": I.grad, "gvth": v_th.grad, "gbits": bits.grad, "gT": Tt.grad,
            "wq": wq.data, "gw": w.grad, "gstep": step.grad, "gwbits": wb.grad}


def _differs(a, b):
    return sorted(k for k in a if not np.array_equal(a[k], b[k]))


def test_c1_only_bit_gradients_change():
    out = _differs(_run(PAPER), _run(replace(PAPER, bit_grad_lsq=False)))
    assert out == ["gbits", "gwbits"]


def test_c2_only_one_bit_gradients_change():
    one = (1, 1, 1)
    assert _differs(_run(PAPER, B=one), _run(replace(PAPER, one_bit_factor=1.0), B=one)) == ["gbits", "gwbits"]
    # at B >= 2 the row does not apply
    assert _differs(_run(PAPER, B=(2, 3, 2)), _run(replace(PAPER, one_bit_factor=1.0), B=(2, 3, 2))) == []


def test_c3_only_the_gradients_through_time_change():
    assert _differs(_run(PAPER, T=2), _run(replace(PAPER, bptt=False), T=2)) == ["gI", "gbits", "gvth"]
    assert _differs(_run(PAPER, T=1), _run(replace(PAPER, bptt=False), T=1)) == []  # nothing to carry at T = 1


def test_c4_only_matters_under_decay():
    assert _differs(_run(PAPER, tau=1.0), _run(replace(PAPER, reset_decay=True), tau=1.0)) == []
    d = _differs(_run(PAPER, tau=2.0), _run(replace(PAPER, reset_decay=True), tau=2.0))
    assert "y" in d and not {"wq", "gw", "gstep", "gwbits"} & set(d)
