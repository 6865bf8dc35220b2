"""Table 8's quantizer (Uhlich et al. 2019, refsnn.method.mixed_precision) and the ANN built on it.

The quantizer is piecewise constant in x, d and q_max, so its own finite differences are 0 almost
everywhere.  Its straight-through gradients are exactly the derivatives of the frozen-residual surrogate

    inside  (q_min <= x <= q_max):  x + d * r,    r = (Q - x) / d frozen at the point
    outside:                        sign(x) q_max + c  (signed),  q_max + c (unsigned, x > q_max),  c (x < 0)
                                    with c = Q - (that clip value) frozen at the point

so ``fn = Q + (surrogate - Q)`` (the bracket a constant on the tape) is checked by refsnn's gradcheck:
the tape gives the op's VJP, the central differences see the surrogate.  Likewise the width through
``log2(q_max / d + 1)`` plus its frozen ceil residual.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import refsnn
from refsnn.autograd import gradcheck
from refsnn.autograd.tensor import Tensor, no_grad
from refsnn.method.mixed_precision import derived_width, uniform_quantize, width_value

SETTINGS = dict(derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))


def reference(x, d, q, signed):
    """Per-element transcription of the module docstring's forward."""
    out = np.empty_like(x)
    for i, v in enumerate(x.ravel()):
        lo = -q if signed else 0.0
        vc = min(max(v, lo), q)
        out.ravel()[i] = math.copysign(1.0, vc) * d * math.floor(abs(vc) / d + 0.5) if vc != 0 else 0.0
    return out


def point(seed, n, signed):
    rng = np.random.default_rng(seed)
    d = rng.uniform(0.05, 0.3)
    q = d * rng.uniform(2.5, 7.5)
    x = rng.normal(0, q, n) if signed else rng.normal(q / 2, q, n)
    lo = -q if signed else 0.0
    # keep away from the kinks (the clip ends and the rounding ties) so the surrogate is smooth there
    for edge in (lo, q):
        x = np.where(np.abs(x - edge) < 1e-3, x + 5e-3, x)
    return x, d, q


@settings(max_examples=40, **SETTINGS)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 12), signed=st.booleans())
def test_forward_matches_the_literal_transcription(seed, n, signed):
    x, d, q = point(seed, n, signed)
    got = uniform_quantize(refsnn.tensor(x), refsnn.tensor(d), refsnn.tensor(q), signed=signed).data
    np.testing.assert_array_equal(got, reference(x, d, q, signed))


@settings(max_examples=40, **SETTINGS)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 10), signed=st.booleans())
def test_ste_gradients_match_finite_differences_of_the_surrogate(seed, n, signed):
    x0, d0, q0 = point(seed, n, signed)
    Q0 = reference(x0, d0, q0, signed)
    lo0 = -q0 if signed else 0.0
    inside = (x0 >= lo0) & (x0 <= q0)
    r = (Q0 - x0) / d0
    clip0 = np.clip(x0, lo0, q0)
    c = Q0 - clip0

    def surrogate(x, d, q):
        lo = -q if signed else 0.0
        outside_val = np.where(x0 > q0, q, np.where(x0 < lo0, lo, 0.0)) + c
        return np.where(inside, x + d * r, outside_val)

    def fn(x, d, q):
        out = uniform_quantize(x, d, q, signed=signed)
        with no_grad():
            shift = surrogate(x.data, float(d.data), float(q.data)) - out.data
        return out + Tensor(shift)

    args = [refsnn.tensor(x0, requires_grad=True), refsnn.tensor(d0, requires_grad=True),
            refsnn.tensor(q0, requires_grad=True)]
    assert gradcheck(fn, args, eps=1e-7, atol=1e-6, rtol=1e-5)


@settings(max_examples=40, **SETTINGS)
@given(d=st.floats(0.01, 1.0), ratio=st.floats(0.3, 60.0), signed=st.booleans())
def test_width_is_derived_and_its_gradient_goes_straight_through_the_ceil(d, ratio, signed):
    q = d * ratio
    smooth = math.log2(ratio + 1.0)
    if abs(smooth - round(smooth)) < 1e-6:
        return
    b = derived_width(refsnn.tensor(d), refsnn.tensor(q), signed=signed)
    assert float(b.data) == math.ceil(smooth) + signed == width_value(d, q, signed)
    frozen = float(b.data) - smooth

    def fn(d_, q_):
        out = derived_width(d_, q_, signed=signed)
        with no_grad():
            shift = math.log2(float(q_.data) / float(d_.data) + 1.0) + frozen - float(out.data)
        return out + shift

    assert gradcheck(fn, [refsnn.tensor(d, requires_grad=True), refsnn.tensor(q, requires_grad=True)],
                     eps=1e-8, atol=1e-6, rtol=1e-5)


def test_gradients_have_the_papers_values_at_a_hand_point():
    x = refsnn.tensor(np.array([-2.0, -0.26, 0.26, 0.9, 2.0]), requires_grad=True)
    d = refsnn.tensor(0.25, requires_grad=True)
    q = refsnn.tensor(1.0, requires_grad=True)
    out = uniform_quantize(x, d, q, signed=True)
    np.testing.assert_allclose(out.data, [-1.0, -0.25, 0.25, 1.0, 1.0])
    out.backward(np.ones(5))
    np.testing.assert_array_equal(x.grad, [0, 1, 1, 1, 0])
    # dQ/dd = (Q - x)/d inside: (0.01 - 0.01 + 0.1) / 0.25
    assert float(d.grad) == pytest.approx((0.01 - 0.01 + 0.1) / 0.25)
    assert float(q.grad) == pytest.approx(-1.0 + 1.0)   # sign(x) outside: -1 and +1


def test_unsigned_grid_and_bad_input():
    out = uniform_quantize(refsnn.tensor(np.array([-1.0, 0.4, 5.0])), refsnn.tensor(0.5), refsnn.tensor(2.0),
                           signed=False)
    np.testing.assert_array_equal(out.data, [0.0, 0.5, 2.0])
    with pytest.raises(ValueError, match="d must be"):
        uniform_quantize(refsnn.tensor(np.ones(2)), refsnn.tensor(0.0), refsnn.tensor(1.0), signed=True)
    with pytest.raises(ValueError, match="q_max must be"):
        derived_width(refsnn.tensor(0.1), refsnn.tensor(np.nan), signed=True)
    with pytest.raises(TypeError, match="signed"):
        uniform_quantize(refsnn.tensor(np.ones(2)), refsnn.tensor(0.1), refsnn.tensor(1.0), signed="yes")


def test_ann_layers_penalty_reaches_every_quantizer_parameter():
    from refsnn.ablate.ann import ann_costs, quant_layers, tiny_resnet_ann
    from refsnn.method.regulate import Penalties, Targets, regulating_loss
    m = tiny_resnet_ann(10, seed=0)
    x = np.random.default_rng(0).normal(size=(4, 1, 8, 8))
    m(refsnn.tensor(x))
    layers = [l for _, l in quant_layers(m)]
    assert len(layers) == 7
    costs = ann_costs(m)
    assert costs["W"] == pytest.approx(4.0) and costs["S"] == pytest.approx(4.0, abs=0.1) and costs["T"] == 1.0
    loss, avg = regulating_loss(layers, Targets(2.0, 2.0, 1.0), Penalties(0.1, 0.1, 0.0))
    loss.backward()
    for l in layers:
        for p in (l.wq.log_d, l.wq.log_q, l.aq.log_d, l.aq.log_q):
            assert p.grad is not None and float(p.grad) != 0.0
        assert float(l.wq.log_d.grad) < 0 < float(l.wq.log_q.grad)   # lowering W: larger d, smaller q_max
