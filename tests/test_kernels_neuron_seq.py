"""Tests of refsnn.kernels.neuron_seq: the sequential neuron (docs/method.md §14; Eq. 3-5, 13-15, 16-17, 20).

1. numba == NumPy twin bit for bit, every flag, refined and prior-art neuron.
2. Against the squeeze kernel: T = 1 is the same neuron bit for bit; a constant current
   I^t = I with dL/dShat^t = gy/T reproduces the squeezed neuron's y and every gradient.
3. Finite differences of the frozen-residual surrogate (see tests/test_kernels_neuron.py),
   run through the T-step membrane with a different current at every step, for both neurons.
4. Conventions and bad input.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from refsnn.kernels import neuron as nk
from refsnn.kernels import neuron_seq as ns
from test_kernels_neuron import levels, q_of_real_B  # the levels as docs/method.md writes them

SETTINGS = dict(derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
DTYPES = (np.float32, np.float64)


def make_inputs(rng, shape, T, domain, dtype, extra=0, prior=False):
    v_th = rng.uniform(0.2, 1.5, size=T + extra).astype(dtype)
    bits = rng.integers(1, 7, size=T + extra).astype(np.int64)
    lo = -1.5 if domain == "bidirectional" else -0.6
    I = (rng.uniform(lo, 1.6, size=(T,) + shape) * float(v_th[0]) * levels(int(bits[0]), domain)[1]).astype(dtype)
    alpha = rng.uniform(0.3, 1.2, size=T + extra).astype(dtype) if prior else None
    return I, v_th, bits, alpha


def assert_same(a, b):
    for x, y in zip(a, b):
        if x is None or y is None:
            assert x is None and y is None
            continue
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x, y), (x, y)


def run_both(I, v_th, bits, alpha, gO, fkw, bkw):
    f = [ns.seq_neuron_forward(I, v_th, bits, amplitude=alpha, impl=i, **fkw) for i in ("numba", "numpy")]
    assert_same(*f)
    b = [ns.seq_neuron_backward(gO, f[0][1], v_th, bits, amplitude=alpha, impl=i, **fkw, **bkw)
         for i in ("numba", "numpy")]
    assert_same(*b)
    return f[0], b[0]


@settings(max_examples=120, **SETTINGS)
@given(
    shape=st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple),
    T=st.integers(1, 4),
    domain=st.sampled_from(nk.DOMAINS),
    shift=st.sampled_from([0.5, 0.0]),
    tau=st.sampled_from([1.0, 2.0]),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**32 - 1),
)
def test_numba_equals_numpy_bitwise(shape, T, domain, shift, tau, flags, dtype, seed):
    rng = np.random.default_rng(seed)
    reset_decay, bptt, lsq, prior = flags
    I, v_th, bits, alpha = make_inputs(rng, shape, T, domain, dtype, extra=1, prior=prior)
    gO = rng.standard_normal(I.shape).astype(dtype)
    (Shat, v), (gI, g_vth, g_bits, g_a) = run_both(
        I, v_th, bits, alpha, gO, dict(domain=domain, shift=shift, tau=tau, reset_decay=reset_decay),
        dict(bptt=bptt, bit_grad_lsq=lsq))
    assert Shat.shape == v.shape == gI.shape == I.shape
    assert g_vth.shape == v_th.shape and not g_vth[T:].any() and not g_bits[T:].any()
    assert (g_a is None) == (not prior)


@pytest.mark.parametrize("dtype", DTYPES)
def test_numba_equals_numpy_several_blocks_every_flag(dtype):
    rng = np.random.default_rng(11)
    n = 2 * nk.BLOCK + 33
    for domain, shift, tau, rd, bptt, lsq, factor, prior in itertools.product(
            nk.DOMAINS, (0.5, 0.0), (1.0, 2.0), (False, True), (False, True), (False, True), (2.0, 1.0),
            (False, True)):
        I, v_th, _, alpha = make_inputs(rng, (n,), 3, domain, dtype, prior=prior)
        bits = np.array([1, 3, 6], dtype=np.int64)
        gO = rng.standard_normal(I.shape).astype(dtype)
        run_both(I, v_th, bits, alpha, gO, dict(domain=domain, shift=shift, tau=tau, reset_decay=rd),
                 dict(bptt=bptt, bit_grad_lsq=lsq, one_bit_factor=factor))


@settings(max_examples=60, **SETTINGS)
@given(
    n=st.integers(1, 3000),
    T=st.integers(1, 3),
    domain=st.sampled_from(nk.DOMAINS),
    shift=st.sampled_from([0.5, 0.0]),
    tau=st.sampled_from([1.0, 2.0]),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**32 - 1),
)
def test_constant_current_reproduces_the_squeeze_neuron(n, T, domain, shift, tau, flags, dtype, seed):
    """I^t = I and dL/dShat^t = gy/T: mean_t Shat^t = y (Eq. 12) and every gradient is the squeeze one;
    with T = 1 this is the squeeze neuron itself."""
    rng = np.random.default_rng(seed)
    reset_decay, bptt, lsq = flags
    I1, v_th, bits, _ = make_inputs(rng, (n,), 1, domain, dtype, extra=T - 1)
    I = np.broadcast_to(I1[0], (T, n)).copy()
    fkw = dict(domain=domain, shift=shift, tau=tau, reset_decay=reset_decay)
    y, v = nk.neuron_forward(I1[0], v_th, bits, T, **fkw)
    Shat, vs = ns.seq_neuron_forward(I, v_th, bits, **fkw)
    assert np.array_equal(vs, v)
    total = np.zeros_like(y)
    for t in range(T):
        total = total + Shat[t]
    assert np.array_equal(total / dtype(T), y)
    gy = rng.standard_normal(n).astype(dtype)
    bkw = dict(fkw, bptt=bptt, bit_grad_lsq=lsq)
    gI, g_vth, g_bits = nk.neuron_backward(gy, v, v_th, bits, T, **bkw)
    gO = np.broadcast_to(gy / dtype(T), (T, n)).copy()
    sI, s_vth, s_bits, _ = ns.seq_neuron_backward(gO, vs, v_th, bits, **bkw)
    acc = np.zeros_like(gy)
    for t in reversed(range(T)):
        acc = acc + sI[t]
    assert np.array_equal(acc, gI)
    assert np.array_equal(s_vth, g_vth) and np.array_equal(s_bits, g_bits)


# ----------------------------------------------------------------------------
# finite differences of the frozen-residual surrogate
# ----------------------------------------------------------------------------


def surrogate_loss(I, v_th, alpha, B_real, B_int, gO, resid, carry, *, domain, tau, reset_decay):
    """L = sum_{t,j} gO_j^t Shat_j^t, S = clip(u, q_min, q_max) + r (r frozen); carry frozen if given."""
    T = I.shape[0]
    v, Shat, L = np.zeros_like(I[0]), np.zeros_like(I[0]), 0.0
    for t in range(T):
        if carry is not None:
            v = carry[t] + I[t]
        elif reset_decay:
            v = (v - Shat) / tau + I[t]
        else:
            v = v / tau + I[t] - Shat
        q_min, q_max = q_of_real_B(B_real[t], B_int[t], domain)
        S = np.clip(v / v_th[t], q_min, q_max) + resid[t]
        Shat = (v_th[t] if alpha is None else alpha[t]) * S
        L += float(np.sum(gO[t] * Shat))
    return L


@settings(max_examples=60, **SETTINGS)
@given(
    n=st.integers(1, 4),
    T=st.integers(1, 4),
    domain=st.sampled_from(nk.DOMAINS),
    shift=st.sampled_from([0.5, 0.0]),
    tau=st.sampled_from([1.0, 2.0]),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    seed=st.integers(0, 2**32 - 1),
)
def test_gradients_match_finite_differences_of_the_surrogate(n, T, domain, shift, tau, flags, seed):
    rng = np.random.default_rng(seed)
    reset_decay, bptt, prior = flags
    I, v_th, bits, alpha = make_inputs(rng, (n,), T, domain, np.float64, prior=prior)
    gO = rng.standard_normal(I.shape)
    kw = dict(domain=domain, shift=shift, tau=tau, reset_decay=reset_decay, amplitude=alpha)
    Shat, v = ns.seq_neuron_forward(I, v_th, bits, impl="numpy", **kw)
    B_int = [int(b) for b in bits]
    resid, edge = [], np.inf
    for t in range(T):
        u = v[t] / v_th[t]
        q_min, q_max = levels(B_int[t], domain)
        edge = min(edge, float(np.min(np.minimum(np.abs(u - q_min), np.abs(u - q_max)))))
        S = Shat[t] / (v_th[t] if alpha is None else alpha[t])
        resid.append(np.round(S) - np.clip(u, q_min, q_max))
    assume(edge > 1e-3)
    gI, g_vth, g_bits, g_a = ns.seq_neuron_backward(gO, v, v_th, bits, bptt=bptt, bit_grad_lsq=False,
                                                     impl="numpy", **kw)
    carry = None if bptt else [v[t] - I[t] for t in range(T)]
    B_real = np.array(B_int, dtype=float)

    def L(I_=I, v_th_=v_th, a_=alpha, B_=B_real):
        return surrogate_loss(I_, v_th_, a_, B_, B_int, gO, resid, carry, domain=domain, tau=tau,
                              reset_decay=reset_decay)

    assert L() == pytest.approx(float(np.sum(gO * Shat)), rel=1e-12, abs=1e-12)
    eps = 1e-7

    def fd(f, x, i):
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        return (f(xp) - f(xm)) / (2 * eps)

    fd_I = np.array([fd(lambda a: L(I_=a), I, idx) for idx in np.ndindex(I.shape)]).reshape(I.shape)
    np.testing.assert_allclose(gI, fd_I, rtol=1e-5, atol=1e-6)
    g = np.array([1 / math.sqrt(n * levels(b, domain)[1]) for b in B_int])
    np.testing.assert_allclose(g_vth[:T] / g, [fd(lambda a: L(v_th_=a), v_th, t) for t in range(T)],
                               rtol=1e-5, atol=1e-6)
    if prior:
        np.testing.assert_allclose(g_a[:T], [fd(lambda a: L(a_=a), alpha, t) for t in range(T)], rtol=1e-5, atol=1e-6)
    for t in range(T):
        if domain == "bidirectional" and B_int[t] == 1:
            continue  # the +-1 levels of Eq. 15 at B = 1 are not the smooth 2^{B-1} - 1
        assert g_bits[t] == pytest.approx(fd(lambda a: L(B_=a), B_real, t), rel=1e-5, abs=1e-6)


# ----------------------------------------------------------------------------
# properties, conventions, bad input
# ----------------------------------------------------------------------------


def test_prior_art_neuron_eq_3_5_by_hand():
    """Eq. 3-5 with tau = 2, flooring, alpha = 0.5, V_th = 1, B = 2, one element: written out."""
    I = np.array([[1.7], [0.4], [2.9]])
    v_th, bits, alpha = np.array([1.0, 1.0, 1.0]), np.array([2, 2, 2]), np.array([0.5, 0.5, 0.5])
    Shat, v = ns.seq_neuron_forward(I, v_th, bits, shift=0.0, tau=2.0, amplitude=alpha)
    # t=1: v = 1.7, S = floor(1.7) = 1; t=2: v = 0.85 + 0.4 - 0.5 = 0.75, S = 0;
    # t=3: v = 0.375 + 2.9 - 0 = 3.275, S = clip(3, 0, 3) = 3
    np.testing.assert_allclose(v[:, 0], [1.7, 0.75, 3.275], rtol=1e-15)
    np.testing.assert_array_equal(Shat[:, 0], [0.5, 0.0, 1.5])


@pytest.mark.parametrize("dtype", DTYPES)
def test_official_detach_keeps_only_the_direct_path(dtype):
    """C3: with carry and reset detached, gI^t = dL/dShat^t [q_min <= u^t <= q_max]."""
    rng = np.random.default_rng(5)
    I, v_th, bits, _ = make_inputs(rng, (200,), 4, "positive", dtype)
    gO = rng.standard_normal(I.shape).astype(dtype)
    _, v = ns.seq_neuron_forward(I, v_th, bits)
    gI = ns.seq_neuron_backward(gO, v, v_th, bits, bptt=False)[0]
    for t in range(4):
        u = v[t] / v_th[t]
        assert np.array_equal(gI[t], gO[t] * ((u >= 0) & (u <= 2 ** int(bits[t]) - 1)).astype(dtype))
    assert not np.array_equal(ns.seq_neuron_backward(gO, v, v_th, bits)[0], gI)


GOOD = dict(I=np.array([[0.1, 0.7], [0.3, 0.2]]), v_th=np.array([0.5, 0.5]), bits=np.array([2, 2]))


@pytest.mark.parametrize("impl", ["numba", "numpy"])
@pytest.mark.parametrize("change, match", [
    (dict(I=np.zeros((3, 2))), r"T = 3 is out of range"),
    (dict(I=np.array(1.0)), r"I must have a leading time axis"),
    (dict(I=np.array([[0.1, np.inf], [0.0, 0.0]])), r"I must be finite; I\[0, 1\]"),
    (dict(v_th=np.array([0.5, 0.0])), r"v_th\[1\] = 0.0"),
    (dict(amplitude=np.array([0.5])), r"amplitude must be 1-D with length >= T = 2"),
    (dict(amplitude=np.array([0.5, -1.0])), r"amplitude\[1\] = -1.0"),
    (dict(domain="both"), r"domain must be one of"),
])
def test_rejects_bad_input(change, match, impl):
    kw = dict(GOOD, **change)
    with pytest.raises(ValueError, match=match):
        ns.seq_neuron_forward(kw.pop("I"), kw.pop("v_th"), kw.pop("bits"), impl=impl, **kw)


def test_backward_rejects_bad_input():
    Shat, v = ns.seq_neuron_forward(GOOD["I"], GOOD["v_th"], GOOD["bits"])
    with pytest.raises(ValueError, match=r"v must have shape \(2, 2\)"):
        ns.seq_neuron_backward(Shat, v[:1], GOOD["v_th"], GOOD["bits"])
    with pytest.raises(TypeError, match=r"gO has dtype float32 but v has dtype float64"):
        ns.seq_neuron_backward(Shat.astype(np.float32), v, GOOD["v_th"].astype(np.float32), GOOD["bits"])
    with pytest.raises(ValueError, match=r"one_bit_factor must be"):
        ns.seq_neuron_backward(Shat, v, GOOD["v_th"], GOOD["bits"], one_bit_factor=-1.0)
