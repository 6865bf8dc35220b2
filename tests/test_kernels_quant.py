"""Tests of refsnn.kernels.quant: the weight quantizer (Eq. 6) and its gradients (docs/method.md §6.4).

1. numba == NumPy twin, bit for bit, on every output.
2. NumPy twin == an independent per-element transcription of docs/method.md §3 and §6.4 (float64).
3. Finite differences of the frozen-residual surrogate ``s (clip(x, q_min, q_max) + r)``,
   ``r = level - clip(x)`` frozen at the point, ``q = 2^{B-1} - 1`` read at a real B. The
   quantizer itself is piecewise constant in w, so its own finite differences are 0 almost
   everywhere; the STE/LSQ gradients are exactly the derivatives of this surrogate (see the
   module docstring of tests/test_kernels_neuron.py). Needs no x within 1e-3 of +-q.
4. Properties, conventions and bad input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refsnn.kernels import quant as qk

SETTINGS = dict(derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
DTYPES = (np.float32, np.float64)
LN2 = math.log(2.0)


def levels(B):
    """(q_min, q_max) from docs/method.md §3 (not from the kernel)."""
    return (-1, 1) if B == 1 else (-(2 ** (B - 1) - 1), 2 ** (B - 1) - 1)


def make(rng, shape, per_channel, B, dtype, ties=True, tiny_steps=True):
    C = shape[0]
    step = rng.uniform(0.05, 0.5, size=C if per_channel else ()).astype(dtype)
    step = np.asarray(step)
    if per_channel and tiny_steps and C > 1:
        step[rng.integers(C)] = rng.choice([1e-7, -0.3, 0.0])  # below eps: clamped
    s = np.maximum(step, 1e-5).astype(np.float64)
    s_b = s.reshape((C,) + (1,) * (len(shape) - 1)) if per_channel else s
    _, q = levels(B)
    w = rng.uniform(-1.6, 1.6, size=shape) * q * s_b
    if ties and w.size > 2:
        k = rng.integers(-2 * q - 2, 2 * q + 3, size=shape) / 2
        w = np.where(rng.random(shape) < 0.3, k * s_b, w)
    return w.astype(dtype), step


def assert_same(a, b):
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x, y), (x, y)


shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)


@settings(max_examples=150, **SETTINGS)
@given(shape=shapes, per_channel=st.booleans(), B=st.integers(1, 8), dtype=st.sampled_from(DTYPES),
       lsq=st.booleans(), factor=st.sampled_from([2.0, 1.0]), seed=st.integers(0, 2**32 - 1))
def test_numba_equals_numpy_bitwise(shape, per_channel, B, dtype, lsq, factor, seed):
    rng = np.random.default_rng(seed)
    w, step = make(rng, shape, per_channel, B, dtype)
    gwq = rng.standard_normal(shape).astype(dtype)
    a = qk.weight_quant_forward(w, step, B)
    b = qk.weight_quant_forward(w, step, B, impl="numpy")
    assert_same((a,), (b,))
    assert a.shape == w.shape and a.dtype == w.dtype
    kw = dict(bit_grad_lsq=lsq, one_bit_factor=factor)
    ga = qk.weight_quant_backward(gwq, w, step, B, **kw)
    gb = qk.weight_quant_backward(gwq, w, step, B, impl="numpy", **kw)
    assert_same(ga, gb)
    assert ga[0].shape == w.shape and ga[1].shape == step.shape and ga[2].shape == ()
    assert ga[0].dtype == ga[1].dtype == ga[2].dtype == w.dtype


def reference(w, step, B, gwq, lsq, factor):
    """Eq. 6 and docs/method.md §6.4 element by element, with Python floats."""
    C = step.size
    per = w.size // C
    q_min, q_max = levels(B)
    wf, gf = w.reshape(-1).tolist(), gwq.reshape(-1).tolist()
    steps = step.reshape(-1).tolist()
    wq, gw = [], []
    sum_m, sum_k = [0.0] * C, 0.0
    for i, (wi, gi) in enumerate(zip(wf, gf)):
        c = i // per
        s = max(steps[c], 1e-5)
        x = wi / s
        if B == 1:
            level = 1.0 if x > 0 else -1.0
        else:
            level = float(min(max(math.copysign(math.floor(abs(x) + 0.5), x), q_min), q_max))
        wq.append(s * level)
        inside = q_min <= x <= q_max
        gw.append(gi if inside else 0.0)
        m = level - x if inside else (q_max if x > q_max else q_min)
        sum_m[c] += gi * m
        F = factor if B == 1 else q_max + 1
        if not inside:
            sum_k += gi * math.copysign(1.0, x) * s * F * LN2
    g = 1.0 / math.sqrt(per * q_max)
    gstep = [g * sm if st_ >= 1e-5 else 0.0 for sm, st_ in zip(sum_m, steps)]
    gbits = (g if lsq else 1.0) * sum_k
    return (np.array(wq).reshape(w.shape), np.array(gw).reshape(w.shape),
            np.array(gstep).reshape(step.shape), gbits)


@settings(max_examples=80, **SETTINGS)
@given(shape=shapes, per_channel=st.booleans(), B=st.integers(1, 8), lsq=st.booleans(),
       factor=st.sampled_from([2.0, 1.0]), seed=st.integers(0, 2**32 - 1))
def test_twin_matches_independent_transcription(shape, per_channel, B, lsq, factor, seed):
    rng = np.random.default_rng(seed)
    w, step = make(rng, shape, per_channel, B, np.float64)  # ties included: both use half-away
    gwq = rng.standard_normal(shape)
    wq = qk.weight_quant_forward(w, step, B, impl="numpy")
    gw, gstep, gbits = qk.weight_quant_backward(gwq, w, step, B, bit_grad_lsq=lsq, one_bit_factor=factor,
                                                impl="numpy")
    r_wq, r_gw, r_gstep, r_gbits = reference(w, step, B, gwq, lsq, factor)
    assert np.array_equal(wq, r_wq) and np.array_equal(gw, r_gw)
    np.testing.assert_allclose(gstep, r_gstep, rtol=1e-10, atol=1e-12)
    assert float(gbits) == pytest.approx(r_gbits, rel=1e-10, abs=1e-12)


@settings(max_examples=60, **SETTINGS)
@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple), per_channel=st.booleans(),
       B=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_gradients_match_finite_differences_of_the_surrogate(shape, per_channel, B, seed):
    rng = np.random.default_rng(seed)
    w, step = make(rng, shape, per_channel, B, np.float64, ties=False, tiny_steps=False)
    q_min, q_max = levels(B)
    C = step.size
    step_b = step.reshape((C,) + (1,) * (w.ndim - 1)) if per_channel else step
    x = w / step_b
    keep = np.minimum(np.abs(x - q_min), np.abs(x - q_max)) > 1e-3
    w = np.where(keep, w, w + 0.01 * step_b)  # move away from the clip kinks
    x = w / step_b
    assert np.all(np.minimum(np.abs(x - q_min), np.abs(x - q_max)) > 1e-3)
    gwq = rng.standard_normal(shape)
    wq = qk.weight_quant_forward(w, step, B, impl="numpy")
    gw, gstep, gbits = qk.weight_quant_backward(gwq, w, step, B, bit_grad_lsq=False, impl="numpy")
    resid = wq / step_b - np.clip(x, q_min, q_max)  # frozen rounding residual

    def L(w_=w, s_=step, B_=float(B)):
        sb = s_.reshape(step_b.shape)
        q = 1.0 if B == 1 else 2.0 ** (B_ - 1.0) - 1.0
        return float(np.sum(gwq * sb * (np.clip(w_ / sb, -q, q) + resid)))

    assert L() == pytest.approx(float(np.sum(gwq * wq)), rel=1e-12, abs=1e-12)
    eps = 1e-7

    def fd(f, a, i):
        ap, am = a.copy(), a.copy()
        ap.reshape(-1)[i] += eps
        am.reshape(-1)[i] -= eps
        return (f(ap) - f(am)) / (2 * eps)

    fd_w = np.array([fd(lambda a: L(w_=a), w, i) for i in range(w.size)]).reshape(w.shape)
    np.testing.assert_allclose(gw, fd_w, rtol=1e-6, atol=1e-6)
    g = 1.0 / math.sqrt((w.size // C) * q_max)
    fd_s = np.array([fd(lambda a: L(s_=a), np.atleast_1d(step).copy(), c) for c in range(C)])
    np.testing.assert_allclose(np.atleast_1d(gstep) / g, fd_s, rtol=1e-5, atol=1e-6)
    if B >= 2:  # the {-1, +1} levels of B = 1 are not the smooth 2^{B-1} - 1
        fd_B = (L(B_=B + eps) - L(B_=B - eps)) / (2 * eps)
        assert float(gbits) == pytest.approx(fd_B, rel=1e-5, abs=1e-6)


@settings(max_examples=60, **SETTINGS)
@given(shape=shapes, per_channel=st.booleans(), B=st.integers(1, 8), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**32 - 1))
def test_grid_range_and_symmetry(shape, per_channel, B, dtype, seed):
    rng = np.random.default_rng(seed)
    w, step = make(rng, shape, per_channel, B, dtype)
    C = step.size
    s = np.maximum(step, dtype(1e-5))
    s_b = s.reshape((C,) + (1,) * (w.ndim - 1)) if per_channel else s
    q_min, q_max = levels(B)
    wq = qk.weight_quant_forward(w, step, B)
    k = np.rint(wq / s_b)
    assert np.array_equal(wq, s_b * k)
    assert k.min() >= q_min and k.max() <= q_max
    if B == 1:
        assert set(np.unique(k)) <= {-1.0, 1.0}
        assert np.array_equal(wq == s_b, w > 0)  # sgn(0) = -1
    # odd: f(-w) = -f(w), ties included (round half away from zero); B = 1 except at w = 0
    wqm = qk.weight_quant_forward(-w, step, B)
    nz = w != 0
    assert np.array_equal(wqm[nz], -wq[nz])


def test_small_steps_are_clamped_and_get_no_gradient():
    w = np.array([[0.3, -2e-5, 4e-5], [0.1, 0.2, -0.3]])
    step = np.array([1e-7, 0.1])
    wq = qk.weight_quant_forward(w, step, 3)
    assert np.array_equal(wq[0], qk.weight_quant_forward(w[:1], np.array([1e-5]), 3)[0])
    gw, gstep, _ = qk.weight_quant_backward(np.ones_like(w), w, step, 3)
    assert gstep[0] == 0 and gstep[1] != 0
    # step exactly eps still gets its gradient
    _, gstep, _ = qk.weight_quant_backward(np.ones_like(w), w, np.array([1e-5, 0.1]), 3)
    assert gstep[0] != 0


def test_one_bit_and_conventions():
    w = np.array([-0.5, -0.05, 0.0, 0.05, 0.5])
    step = np.array(0.2)
    assert qk.weight_quant_forward(w, step, 1).tolist() == [-0.2, -0.2, -0.2, 0.2, 0.2]
    # x = w / 0.2 = -2.5, -0.25, 0, 0.25, 2.5; outside [-1, 1]: -2.5 and 2.5
    g = np.array([1.0, 0, 0, 0, 3.0])
    base = qk.weight_quant_backward(g, w, step, 1)
    c1 = qk.weight_quant_backward(g, w, step, 1, bit_grad_lsq=False)
    c2 = qk.weight_quant_backward(g, w, step, 1, one_bit_factor=1.0)
    # C1 and C2 change the bit gradient only
    assert_same(c1[:2], base[:2])
    assert_same(c2[:2], base[:2])
    assert float(c1[2]) == pytest.approx((-1 + 3) * 0.2 * 2 * LN2)
    assert float(base[2]) == pytest.approx(float(c1[2]) / math.sqrt(5 * 1))
    assert float(c2[2]) == pytest.approx(float(base[2]) / 2)
    # B_w = 1 step gradient: inside sgn(x) - x, outside +-1
    assert float(base[1]) == pytest.approx((1 * -1 + 3 * 1) / math.sqrt(5))
    # per-channel: N = elements per channel
    w2 = np.array([[3.0, 0.1], [0.2, -5.0]])
    gs = qk.weight_quant_backward(np.ones_like(w2), w2, np.array([1.0, 1.0]), 2)[1]
    # B = 2: q = 1; channel 0: x = 3 (above: 1), 0.1 (inside: 0 - 0.1); channel 1: 0.2 -> -0.2, -5 -> -1
    np.testing.assert_allclose(gs, np.array([0.9, -1.2]) / math.sqrt(2 * 1))


@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_bad_input(impl):
    w = np.ones((3, 2))
    with pytest.raises(ValueError, match=r"step must be 0-d .* length w.shape\[0\].*\(2,\)"):
        qk.weight_quant_forward(w, np.ones(2), 2, impl=impl)
    with pytest.raises(ValueError, match=r"bits = 0 is out of range.*1\.\.24"):
        qk.weight_quant_forward(w, np.array(0.1), 0, impl=impl)
    with pytest.raises(ValueError, match=r"bits = 25 is out of range"):
        qk.weight_quant_forward(w, np.array(0.1), np.array(25), impl=impl)
    with pytest.raises(TypeError, match=r"bits must be an int"):
        qk.weight_quant_forward(w, np.array(0.1), 2.0, impl=impl)
    bad = w.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"w must be finite; w\[1, 1\] = nan"):
        qk.weight_quant_forward(bad, np.array(0.1), 2, impl=impl)
    with pytest.raises(ValueError, match=r"step must be finite; step = inf"):
        qk.weight_quant_forward(w, np.array(np.inf), 2, impl=impl)
    with pytest.raises(ValueError, match=r"gwq must be finite"):
        qk.weight_quant_backward(bad, w, np.array(0.1), 2, impl=impl)
    with pytest.raises(ValueError, match=r"gwq must have shape \(3, 2\)"):
        qk.weight_quant_backward(np.ones(6), w, np.array(0.1), 2, impl=impl)
    with pytest.raises(ValueError, match=r"one_bit_factor must be"):
        qk.weight_quant_backward(w, w, np.array(0.1), 2, one_bit_factor=-1.0, impl=impl)
    with pytest.raises(TypeError, match=r"w has dtype float64 but step has dtype float32"):
        qk.weight_quant_forward(w, np.array(0.1, dtype=np.float32), 2, impl=impl)
    with pytest.raises(TypeError, match=r"gwq has dtype float32 but w has dtype float64"):
        qk.weight_quant_backward(w.astype(np.float32), w, np.array(0.1), 2, impl=impl)
    with pytest.raises(ValueError, match=r"w must have at least one element"):
        qk.weight_quant_forward(np.ones((0, 2)), np.array(0.1), 2, impl=impl)
