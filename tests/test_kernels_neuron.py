"""Tests of refsnn.kernels.neuron: the refined spiking neuron (Eq. 12-17, 20, App. A.6-A.13).

Four kinds of check:

1. numba == NumPy twin, bit for bit (np.array_equal), on every output, for every flag.
2. NumPy twin == an independent per-element transcription of docs/method.md written here with
   Python floats (float64; elementwise outputs to 1e-12, sums to 1e-10 relative).
3. Finite differences. The forward pass is piecewise constant in I and V_th, so its true
   derivative is 0 almost everywhere and finite differences of the forward pass say nothing
   about the straight-through (STE/LSQ) gradients. What the STE gradients ARE, exactly, is
   the derivative of a *frozen-residual surrogate*: every spike
   ``S = clip(round(u), q_min, q_max)`` is replaced by ``clip(u, q_min, q_max) + r`` with the
   rounding residual ``r = S - clip(u, q_min, q_max)`` frozen at the point of evaluation, and
   ``q_max = 2^B - 1`` (or ``2^{B-1} - 1``) read as a smooth function of a real B. At the
   point itself the surrogate equals the neuron. Its derivative in u is
   ``[q_min <= u <= q_max]`` (Eq. 20); in V_th it is ``S - u`` inside, ``q_max``/``q_min``
   outside (App. A.6-A.7, A.12-A.13); in B it is ``sign(u) V_th (q_max + 1) ln2`` outside
   (Eq. 16-17, A.10-A.11). So central differences of the surrogate, run through the whole
   T-step membrane dynamics (Eq. 13), must match gI, g_vth / g and g_bits (with g_B = 1).
   Under ``bptt=False`` (C3) the surrogate also freezes the carried membrane and the reset,
   as the official code does. The check needs no u within 1e-3 of a clip boundary (there
   the surrogate has a kink); rounding ties do not matter since the residual is frozen.
4. Properties and conventions, and bad input.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from refsnn.kernels import neuron as nk

SETTINGS = dict(derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
DTYPES = (np.float32, np.float64)
LN2 = math.log(2.0)


def levels(B, domain):
    """(q_min, q_max), written from docs/method.md §5.1-5.2 (not from the kernel)."""
    if domain == "positive":
        return 0, 2**B - 1
    if B == 1:
        return -1, 1
    return -(2 ** (B - 1) - 1), 2 ** (B - 1) - 1


def make_inputs(rng, shape, T, extra, domain, dtype, bits_range=(1, 6), ties=True):
    """Input, per-step thresholds (all different), bit widths; u spans below/inside/above."""
    n_th = T + extra
    v_th = rng.uniform(0.2, 1.5, size=n_th).astype(dtype)
    bits = rng.integers(bits_range[0], bits_range[1] + 1, size=n_th).astype(np.int64)
    _, q0 = levels(int(bits[0]), domain)
    lo = -1.5 if domain == "bidirectional" else -0.6
    I = np.asarray(rng.uniform(lo, 1.6, size=shape) * float(v_th[0]) * q0).astype(dtype)
    if ties and I.size > 2:
        # some exact grid points and half-way points (rounding ties)
        idx = rng.choice(I.size, size=I.size // 3, replace=False)
        I.reshape(-1)[idx] = (v_th[0] * (rng.integers(-2 * q0, 2 * q0 + 1, size=idx.size) / 2)).astype(dtype)
    return I, v_th, bits


def both(fn, *args, **kw):
    return fn(*args, impl="numba", **kw), fn(*args, impl="numpy", **kw)


def assert_same(a, b):
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x, y), (x, y)


def run_both(I, v_th, bits, T, gy, domain, shift, tau, reset_decay, bptt, lsq, factor):
    fkw = dict(domain=domain, shift=shift, tau=tau, reset_decay=reset_decay)
    f_nb, f_np = both(nk.neuron_forward, I, v_th, bits, T, **fkw)
    assert_same(f_nb, f_np)
    assert f_nb[0].shape == I.shape and f_nb[1].shape == (T,) + I.shape
    assert f_nb[0].dtype == I.dtype == f_nb[1].dtype
    bkw = dict(fkw, bptt=bptt, bit_grad_lsq=lsq, one_bit_factor=factor)
    b_nb, b_np = both(nk.neuron_backward, gy, f_nb[1], v_th, bits, T, **bkw)
    assert_same(b_nb, b_np)
    gI, g_vth, g_bits = b_nb
    assert gI.shape == I.shape and g_vth.shape == v_th.shape and g_bits.shape == bits.shape
    assert g_vth.dtype == g_bits.dtype == I.dtype
    assert not g_vth[T:].any() and not g_bits[T:].any()
    return f_nb, b_nb


# ----------------------------------------------------------------------------
# 1. numba == numpy, bit for bit
# ----------------------------------------------------------------------------


@settings(max_examples=150, **SETTINGS)
@given(
    shape=st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple),
    T=st.integers(1, 3),
    extra=st.integers(0, 2),
    domain=st.sampled_from(nk.DOMAINS),
    shift=st.sampled_from([0.5, 0.0]),
    tau=st.sampled_from([1.0, 2.0]),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    factor=st.sampled_from([2.0, 1.0]),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**32 - 1),
)
def test_numba_equals_numpy_bitwise(shape, T, extra, domain, shift, tau, flags, factor, dtype, seed):
    rng = np.random.default_rng(seed)
    I, v_th, bits = make_inputs(rng, shape, T, extra, domain, dtype)
    gy = np.asarray(rng.standard_normal(I.shape)).astype(dtype)
    reset_decay, bptt, lsq = flags
    run_both(I, v_th, bits, T, gy, domain, shift, tau, reset_decay, bptt, lsq, factor)


@pytest.mark.parametrize("dtype", DTYPES)
def test_numba_equals_numpy_every_flag_combination_several_blocks(dtype):
    """All 128 flag combinations per dtype, on a tensor spanning three summation blocks."""
    rng = np.random.default_rng(7)
    n = 2 * nk.BLOCK + 77
    for domain, shift, tau, reset_decay, bptt, lsq, factor in itertools.product(
        nk.DOMAINS, (0.5, 0.0), (1.0, 2.0), (False, True), (False, True), (False, True), (2.0, 1.0)
    ):
        I, v_th, _ = make_inputs(rng, (n,), 3, 0, domain, dtype)
        bits = np.array([1, 3, 6], dtype=np.int64)
        gy = rng.standard_normal(n).astype(dtype)
        run_both(I, v_th, bits, 3, gy, domain, shift, tau, reset_decay, bptt, lsq, factor)


# ----------------------------------------------------------------------------
# 2. independent transcription (per element, Python floats)
# ----------------------------------------------------------------------------


def emit_ref(u, B, domain, shift):
    """S^t from docs/method.md Eq. 14 / Eq. 15 (bidirectional flooring: clip(floor(u), -q, q))."""
    q_min, q_max = levels(B, domain)
    if domain == "positive":
        return float(min(max(math.floor(u + shift), q_min), q_max))
    if B == 1:
        return 1.0 if u > 0 else -1.0
    r = math.copysign(math.floor(abs(u) + 0.5), u) if shift == 0.5 else math.floor(u)
    return float(min(max(r, q_min), q_max))


def reference(I, v_th, bits, T, gy, *, domain, shift, tau, reset_decay, bptt, lsq, factor):
    """Forward (Eq. 12-15) and backward (docs/method.md §6.1-6.3, §6.6) element by element."""
    x = [float(a) for a in I.reshape(-1)]
    g = [float(a) for a in gy.reshape(-1)]
    N = len(x)
    y, V, gI = [], [[0.0] * N for _ in range(T)], []
    sum_h, sum_k = [0.0] * T, [0.0] * T
    for j in range(N):
        v, Shat, acc, us, Ss = 0.0, 0.0, 0.0, [], []
        for t in range(T):
            vt = float(v_th[t])
            v = (v - Shat) / tau + x[j] if reset_decay else v / tau + x[j] - Shat  # Eq. 13
            V[t][j] = v
            u = v / vt
            S = emit_ref(u, int(bits[t]), domain, shift)  # Eq. 14 / 15
            Shat = vt * S
            acc += Shat
            us.append(u)
            Ss.append(S)
        y.append(acc / T)  # Eq. 12
        gv_next, total = 0.0, 0.0
        for t in reversed(range(T)):
            vt, B = float(v_th[t]), int(bits[t])
            q_min, q_max = levels(B, domain)
            u, S = us[t], Ss[t]
            gS = g[j] / T
            if bptt:
                gS -= gv_next / tau if reset_decay else gv_next  # reset path of Eq. 13
            inside = q_min <= u <= q_max
            h = S - u if inside else (q_max if u > q_max else q_min)
            out_k = (u > q_max) if domain == "positive" else not inside
            F = factor if B == 1 else q_max + 1
            k = math.copysign(1.0, u) * vt * F * LN2 if out_k else 0.0
            sum_h[t] += gS * h
            sum_k[t] += gS * k
            gv = gS * (1.0 if inside else 0.0) + (gv_next / tau if bptt else 0.0)  # Eq. 20 + carry
            total += gv
            gv_next = gv
        gI.append(total)
    g_vth = np.zeros(len(v_th))
    g_bits = np.zeros(len(bits))
    for t in range(T):
        gscale = 1.0 / math.sqrt(N * levels(int(bits[t]), domain)[1])
        g_vth[t] = gscale * sum_h[t]
        g_bits[t] = (gscale if lsq else 1.0) * sum_k[t]
    return np.array(y), np.array(V), np.array(gI), g_vth, g_bits


def margins(v, v_th, bits, T, domain, shift):
    """Smallest distance of any u to a rounding tie and to a clip boundary."""
    tie, edge = np.inf, np.inf
    for t in range(T):
        u = v[t].astype(np.float64) / float(v_th[t])
        q_min, q_max = levels(int(bits[t]), domain)
        frac = (np.abs(u) if domain == "bidirectional" else u) + shift
        tie = min(tie, float(np.min(np.abs(frac - np.round(frac)))))
        edge = min(edge, float(np.min(np.minimum(np.abs(u - q_min), np.abs(u - q_max)))))
    return tie, edge


@settings(max_examples=80, **SETTINGS)
@given(
    n=st.integers(1, 7),
    T=st.integers(1, 3),
    domain=st.sampled_from(nk.DOMAINS),
    shift=st.sampled_from([0.5, 0.0]),
    tau=st.sampled_from([1.0, 2.0]),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    factor=st.sampled_from([2.0, 1.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_twin_matches_independent_transcription(n, T, domain, shift, tau, flags, factor, seed):
    rng = np.random.default_rng(seed)
    I, v_th, bits = make_inputs(rng, (n,), T, 1, domain, np.float64, ties=False)
    gy = rng.standard_normal(n)
    reset_decay, bptt, lsq = flags
    y, v = nk.neuron_forward(I, v_th, bits, T, domain=domain, shift=shift, tau=tau,
                             reset_decay=reset_decay, impl="numpy")
    tie, edge = margins(v, v_th, bits, T, domain, shift)
    assume(tie > 1e-6 and edge > 1e-6)
    gI, g_vth, g_bits = nk.neuron_backward(gy, v, v_th, bits, T, domain=domain, shift=shift, tau=tau,
                                           reset_decay=reset_decay, bptt=bptt, bit_grad_lsq=lsq,
                                           one_bit_factor=factor, impl="numpy")
    ry, rv, rgI, rg_vth, rg_bits = reference(I, v_th, bits, T, gy, domain=domain, shift=shift, tau=tau,
                                             reset_decay=reset_decay, bptt=bptt, lsq=lsq, factor=factor)
    np.testing.assert_allclose(v, rv, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, ry, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gI, rgI, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g_vth, rg_vth, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g_bits, rg_bits, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------
# 3. finite differences of the frozen-residual surrogate
# ----------------------------------------------------------------------------


def q_of_real_B(B_real, B_int, domain):
    """(q_min, q_max) with q_max = 2^B - 1 / 2^{B-1} - 1 read at a real B (bidirectional B=1: +-1)."""
    if domain == "positive":
        return 0.0, 2.0**B_real - 1.0
    if B_int == 1:
        return -1.0, 1.0
    q = 2.0 ** (B_real - 1.0) - 1.0
    return -q, q


def surrogate_loss(I, v_th, B_real, B_int, T, gy, resid, carry, *, domain, tau, reset_decay):
    """L = sum_j gy_j y_j with S = clip(u, q_min, q_max) + r (r frozen); carry frozen if given."""
    v, Shat, total = np.zeros_like(I), np.zeros_like(I), np.zeros_like(I)
    for t in range(T):
        if carry is not None:
            v = carry[t] + I
        elif reset_decay:
            v = (v - Shat) / tau + I
        else:
            v = v / tau + I - Shat
        q_min, q_max = q_of_real_B(B_real[t], B_int[t], domain)
        S = np.clip(v / v_th[t], q_min, q_max) + resid[t]
        Shat = v_th[t] * S
        total = total + Shat
    return float(np.sum(gy * total / T))


@settings(max_examples=60, **SETTINGS)
@given(
    n=st.integers(1, 5),
    T=st.integers(1, 3),
    domain=st.sampled_from(nk.DOMAINS),
    shift=st.sampled_from([0.5, 0.0]),
    tau=st.sampled_from([1.0, 2.0]),
    reset_decay=st.booleans(),
    bptt=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_gradients_match_finite_differences_of_the_surrogate(n, T, domain, shift, tau, reset_decay, bptt, seed):
    rng = np.random.default_rng(seed)
    I, v_th, bits = make_inputs(rng, (n,), T, 0, domain, np.float64, ties=False)
    gy = rng.standard_normal(n)
    kw = dict(domain=domain, shift=shift, tau=tau, reset_decay=reset_decay)
    y, v = nk.neuron_forward(I, v_th, bits, T, impl="numpy", **kw)
    _, edge = margins(v, v_th, bits, T, domain, shift)
    assume(edge > 1e-3)
    gI, g_vth, g_bits = nk.neuron_backward(gy, v, v_th, bits, T, bptt=bptt, bit_grad_lsq=False,
                                           one_bit_factor=2.0, impl="numpy", **kw)
    B_int = [int(b) for b in bits]
    resid, carry = [], []
    for t in range(T):
        u = v[t] / v_th[t]
        q_min, q_max = levels(B_int[t], domain)
        S = np.array([emit_ref(a, B_int[t], domain, shift) for a in u])
        resid.append(S - np.clip(u, q_min, q_max))
        carry.append(v[t] - I)
    carry = None if bptt else carry
    B_real = [float(b) for b in B_int]

    def L(I_=I, v_th_=v_th, B_=B_real):
        return surrogate_loss(I_, v_th_, B_, B_int, T, gy, resid, carry, domain=domain, tau=tau,
                              reset_decay=reset_decay)

    assert L() == pytest.approx(float(np.sum(gy * y)), rel=1e-12, abs=1e-12)  # surrogate == neuron here
    eps = 1e-7

    def fd(f, x, i):
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        return (f(xp) - f(xm)) / (2 * eps)

    fd_I = [fd(lambda a: L(I_=a), I, j) for j in range(n)]
    np.testing.assert_allclose(gI, fd_I, rtol=1e-5, atol=1e-6)
    N = I.size
    fd_V = [fd(lambda a: L(v_th_=a), v_th, t) for t in range(T)]
    g = np.array([1 / math.sqrt(N * levels(b, domain)[1]) for b in B_int])
    np.testing.assert_allclose(g_vth[:T] / g, fd_V, rtol=1e-5, atol=1e-6)
    for t in range(T):
        if domain == "bidirectional" and B_int[t] == 1:
            continue  # the +-1 levels of Eq. 15 at B = 1 are not the smooth 2^{B-1} - 1
        fd_B = fd(lambda a: L(B_=list(a)), np.array(B_real), t)
        assert g_bits[t] == pytest.approx(fd_B, rel=1e-5, abs=1e-6)


# ----------------------------------------------------------------------------
# 4. properties
# ----------------------------------------------------------------------------


@settings(max_examples=60, **SETTINGS)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=2).map(tuple),
    domain=st.sampled_from(nk.DOMAINS),
    shift=st.sampled_from([0.5, 0.0]),
    B=st.integers(1, 6),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**32 - 1),
)
def test_outputs_on_the_grid_and_in_range(shape, domain, shift, B, dtype, seed):
    """T = 1: y = V_th S with S an integer in [q_min, q_max]. T > 1: y within T-average bounds."""
    rng = np.random.default_rng(seed)
    I, v_th, _ = make_inputs(rng, shape, 3, 0, domain, dtype)
    bits = np.full(3, B, dtype=np.int64)
    q_min, q_max = levels(B, domain)
    for impl in ("numba", "numpy"):
        y, _ = nk.neuron_forward(I, v_th, bits, 1, domain=domain, shift=shift, impl=impl)
        S = np.rint(y / v_th[0])
        assert np.array_equal(y, v_th[0] * S)
        assert S.min() >= q_min and S.max() <= q_max
        if domain == "bidirectional" and B == 1:
            assert set(np.unique(S)) <= {-1.0, 1.0}
        y3, _ = nk.neuron_forward(I, v_th, bits, 3, domain=domain, shift=shift, impl=impl)
        assert y3.max() <= q_max * v_th.max() * (1 + 1e-6) and y3.min() >= q_min * v_th.max() * (1 + 1e-6)


def test_one_bit_cases():
    v_th = np.array([0.5])
    one = np.array([1])
    I = np.array([-1.0, -0.2, 0.0, 0.2, 0.26, 0.7, 5.0])
    y, _ = nk.neuron_forward(I, v_th, one, 1, domain="positive")
    assert y.tolist() == [0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5]  # round(u) clipped to {0, 1}
    y, _ = nk.neuron_forward(I, v_th, one, 1, domain="positive", shift=0.0)
    assert y.tolist() == [0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5]  # floor(u) clipped to {0, 1}
    for shift in (0.5, 0.0):
        y, _ = nk.neuron_forward(I, v_th, one, 1, domain="bidirectional", shift=shift)
        assert y.tolist() == [-0.5, -0.5, -0.5, 0.5, 0.5, 0.5, 0.5]  # sgn(u), sgn(0) = -1
    # bit gradient at B = 1: factor (q_max + 1) = 2 (paper) vs 1 (official, C2)
    gy = np.ones_like(I)
    _, v = nk.neuron_forward(I, v_th, one, 1, domain="bidirectional")
    _, _, gb2 = nk.neuron_backward(gy, v, v_th, one, 1, domain="bidirectional", bit_grad_lsq=False)
    _, _, gb1 = nk.neuron_backward(gy, v, v_th, one, 1, domain="bidirectional", bit_grad_lsq=False,
                                   one_bit_factor=1.0)
    # outside [-1, 1]: u = -2, 1.4, 10, so sum_j gy_j/T sign(u_j) V_th F ln2 = (-1 + 1 + 1) 0.5 F ln2
    assert gb2[0] == pytest.approx(0.5 * 2 * LN2) and gb1[0] == pytest.approx(0.5 * 1 * LN2)
    # positive domain: only u > q_max counts (u = -2 is not "outside" for the bit width)
    _, v = nk.neuron_forward(I, v_th, one, 1, domain="positive")
    _, _, gbp = nk.neuron_backward(gy, v, v_th, one, 1, domain="positive", bit_grad_lsq=False)
    assert gbp[0] == pytest.approx(2 * 0.5 * 2 * LN2)


@settings(max_examples=60, **SETTINGS)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=2).map(tuple),
    T=st.integers(1, 3),
    tau=st.sampled_from([1.0, 2.0]),
    reset_decay=st.booleans(),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**32 - 1),
)
def test_bidirectional_rounding_neuron_is_odd(shape, T, tau, reset_decay, dtype, seed):
    """f(-I) = -f(I) bit for bit, for every T (not only T = 1), ties included.

    Round-half-away-from-zero is odd, negation is exact in floating point and every
    operation of Eq. 13 commutes with it, so by induction over t, v^t(-I) = -v^t(I) and
    S^t(-I) = -S^t(I). The one exception is B = 1 where some v^t is exactly 0
    (sgn(0) = -1 on both sides); here B >= 2. The flooring variant (shift 0) is not odd.
    """
    rng = np.random.default_rng(seed)
    I, v_th, bits = make_inputs(rng, shape, T, 0, "bidirectional", dtype, bits_range=(2, 6))
    kw = dict(domain="bidirectional", tau=tau, reset_decay=reset_decay)
    y, v = nk.neuron_forward(I, v_th, bits, T, **kw)
    ym, vm = nk.neuron_forward(-I, v_th, bits, T, **kw)
    assert np.array_equal(ym, -y) and np.array_equal(vm, -v)
    # B = 1 away from v = 0
    ones = np.ones(T, dtype=np.int64)
    y1, v1 = nk.neuron_forward(I, v_th, ones, T, **kw)
    if np.all(v1 != 0):
        assert np.array_equal(nk.neuron_forward(-I, v_th, ones, T, **kw)[0], -y1)
    # flooring is not odd: floor(-0.3) = -1 but -floor(0.3) = 0
    x = np.array([0.3], dtype=dtype)
    one = np.array([1.0], dtype=dtype)
    two = np.array([3], dtype=np.int64)
    yf = nk.neuron_forward(x, one, two, 1, domain="bidirectional", shift=0.0)[0]
    yfm = nk.neuron_forward(-x, one, two, 1, domain="bidirectional", shift=0.0)[0]
    assert yf[0] == 0 and yfm[0] == -1


@settings(max_examples=60, **SETTINGS)
@given(
    n=st.integers(1, 50),
    domain=st.sampled_from(nk.DOMAINS),
    B=st.integers(2, 6),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**32 - 1),
)
def test_flooring_error_at_least_rounding_error(n, domain, B, dtype, seed):
    """App. A.2.1 pointwise, T = 1, same grid: |I - y_floor| >= |I - y_round| (away from ties)."""
    rng = np.random.default_rng(seed)
    I, v_th, _ = make_inputs(rng, (n,), 1, 0, domain, dtype, ties=False)
    bits = np.array([B])
    y_r, v = nk.neuron_forward(I, v_th, bits, 1, domain=domain, shift=0.5)
    y_f, _ = nk.neuron_forward(I, v_th, bits, 1, domain=domain, shift=0.0)
    u = v[0].astype(np.float64) / float(v_th[0])
    keep = np.abs(np.abs(u) - np.floor(np.abs(u)) - 0.5) > 1e-3
    I64 = I.astype(np.float64)
    assert np.all(np.abs(I64 - y_f)[keep] >= np.abs(I64 - y_r)[keep])


@pytest.mark.parametrize("dtype", DTYPES)
def test_conventions_differ_exactly_where_they_should(dtype):
    rng = np.random.default_rng(3)
    for domain in nk.DOMAINS:
        I, v_th, bits = make_inputs(rng, (300,), 3, 0, domain, dtype)
        bits[:] = [1, 4, 2]
        gy = rng.standard_normal(I.shape).astype(dtype)

        def fb(**kw):
            fkw = {k: kw.pop(k) for k in ("tau", "reset_decay") if k in kw}
            y, v = nk.neuron_forward(I, v_th, bits, 3, domain=domain, **fkw)
            return (y, v) + nk.neuron_backward(gy, v, v_th, bits, 3, domain=domain, **fkw, **kw)

        base = fb()
        # C4: with tau = 1 the decayed reset is the same computation, bit for bit
        assert_same(fb(reset_decay=True), base)
        # ... but not with tau = 2 (the forward differs)
        assert not np.array_equal(fb(tau=2.0, reset_decay=True)[1], fb(tau=2.0)[1])
        # C1: only g_bits changes, by the factor g = 1/sqrt(N q_max)
        c1 = fb(bit_grad_lsq=False)
        assert_same(c1[:4], base[:4])
        g = np.array([1 / math.sqrt(I.size * levels(int(b), domain)[1]) for b in bits], dtype=dtype)
        np.testing.assert_allclose(base[4], g * c1[4], rtol=1e-6)
        # C2: only g_bits at the steps with B = 1 changes (halved)
        c2 = fb(one_bit_factor=1.0)
        assert_same(c2[:4], base[:4])
        assert np.array_equal(c2[4][1:], base[4][1:])
        np.testing.assert_allclose(c2[4][0], base[4][0] / 2, rtol=1e-6)
        # C3: bptt=False keeps only dv^t/dI: gI = sum_t gy/T [q_min <= u <= q_max]
        c3 = fb(bptt=False)
        assert_same(c3[:2], base[:2])
        total = np.zeros_like(I)
        for t in reversed(range(3)):
            q_min, q_max = levels(int(bits[t]), domain)
            u = base[1][t] / v_th[t]
            total = total + (gy / 3) * ((q_min <= u) & (u <= q_max)).astype(dtype)
        assert np.array_equal(c3[2], total)
        assert not np.array_equal(c3[2], base[2])
        # ... and with T = 1 there is nothing to detach
        y1, v1 = nk.neuron_forward(I, v_th, bits, 1, domain=domain)
        assert_same(nk.neuron_backward(gy, v1, v_th, bits, 1, domain=domain, bptt=False),
                    nk.neuron_backward(gy, v1, v_th, bits, 1, domain=domain))


def test_zero_dim_and_non_contiguous_input():
    v_th = np.array([0.5, 0.25])
    bits = np.array([3, 3])
    y, v = nk.neuron_forward(np.array(1.3), v_th, bits, 2)
    assert y.shape == () and v.shape == (2,)
    assert_same((y, v), nk.neuron_forward(np.array(1.3), v_th, bits, 2, impl="numpy"))
    a = np.arange(24.0).reshape(4, 6)[:, ::2] / 7
    assert_same(nk.neuron_forward(a, v_th, bits, 2), nk.neuron_forward(a, v_th, bits, 2, impl="numpy"))


# ----------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------

GOOD = dict(I=np.array([0.1, 0.7]), v_th=np.array([0.5, 0.5]), bits=np.array([2, 2]), T=2)


@pytest.mark.parametrize("impl", ["numba", "numpy"])
@pytest.mark.parametrize(
    "change, match",
    [
        (dict(v_th=np.array([0.5, -0.5])), r"v_th\[1\] = -0.5.*finite and > 0"),
        (dict(v_th=np.array([0.0, 0.5])), r"v_th\[0\] = 0.0.*finite and > 0"),
        (dict(v_th=np.array([np.nan, 0.5])), r"v_th\[0\] = nan"),
        (dict(bits=np.array([2, 0])), r"bits\[1\] = 0 is out of range.*1\.\.24"),
        (dict(bits=np.array([25, 2])), r"bits\[0\] = 25 is out of range"),
        (dict(T=0), r"T = 0 is out of range.*1 <= T <= min"),
        (dict(T=3), r"T = 3 is out of range.*= 2"),
        (dict(domain="negative"), r"domain must be one of .*'negative'"),
        (dict(shift=0.25), r"shift must be 0.5 .* or 0.0 .*0.25"),
        (dict(tau=0.0), r"tau must be a finite number > 0.*0.0"),
        (dict(I=np.array([0.1, np.inf])), r"I must be finite; I\[1\] = .*inf"),
        (dict(I=np.array([np.nan, 0.1])), r"I must be finite; I\[0\] = .*nan"),
    ],
)
def test_forward_rejects_bad_input(change, match, impl):
    kw = dict(GOOD, **change)
    extra = {k: kw.pop(k) for k in ("domain", "shift", "tau") if k in kw}
    with pytest.raises(ValueError, match=match):
        nk.neuron_forward(kw["I"], kw["v_th"], kw["bits"], kw["T"], impl=impl, **extra)


@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_backward_rejects_bad_input(impl):
    I, v_th, bits = GOOD["I"], GOOD["v_th"], GOOD["bits"]
    y, v = nk.neuron_forward(I, v_th, bits, 2)
    with pytest.raises(ValueError, match=r"gy must be finite; gy\[0\]"):
        nk.neuron_backward(np.array([np.nan, 1.0]), v, v_th, bits, 2, impl=impl)
    with pytest.raises(ValueError, match=r"v must be finite; v\[1, 1\]"):
        nk.neuron_backward(y, np.array([[0.0, 1.0], [2.0, np.inf]]), v_th, bits, 2, impl=impl)
    with pytest.raises(ValueError, match=r"v must have shape \(2, 2\)"):
        nk.neuron_backward(y, v[:1], v_th, bits, 2, impl=impl)
    with pytest.raises(ValueError, match=r"one_bit_factor must be .* got 0"):
        nk.neuron_backward(y, v, v_th, bits, 2, one_bit_factor=0, impl=impl)
    with pytest.raises(ValueError, match=r"bits\[0\] = -1 is out of range"):
        nk.neuron_backward(y, v, v_th, np.array([-1, 2]), 2, impl=impl)


def test_type_errors():
    I, v_th, bits = GOOD["I"], GOOD["v_th"], GOOD["bits"]
    with pytest.raises(TypeError, match=r"I has dtype float32 but v_th has dtype float64"):
        nk.neuron_forward(I.astype(np.float32), v_th, bits, 2)
    y, v = nk.neuron_forward(I, v_th, bits, 2)
    with pytest.raises(TypeError, match=r"gy has dtype float64 but v has dtype float32"):
        nk.neuron_backward(y, v.astype(np.float32), v_th, bits, 2)
    with pytest.raises(TypeError, match=r"I must have dtype float32 or float64, got int64"):
        nk.neuron_forward(np.array([1, 2]), v_th, bits, 2)
    with pytest.raises(TypeError, match=r"bits must be an integer"):
        nk.neuron_forward(I, v_th, np.array([2.0, 2.0]), 2)
    with pytest.raises(TypeError, match=r"T must be an int"):
        nk.neuron_forward(I, v_th, bits, 2.0)
    with pytest.raises(ValueError, match=r"impl must be one of"):
        nk.neuron_forward(I, v_th, bits, 2, impl="torch")
