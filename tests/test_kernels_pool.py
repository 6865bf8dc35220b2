"""Tests of refsnn.kernels.pool: numba vs the NumPy twin, and the twin vs independent references."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refsnn.kernels.pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)

DTYPES = [np.float64, np.float32]
SETTINGS = settings(max_examples=100, deadline=None, derandomize=True)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@st.composite
def pool_cases(draw, ties=False):
    """(x, kernel_size, stride, padding) with padding <= kernel // 2; ties=True draws small integers."""
    kh, kw = draw(st.sampled_from([(1, 1), (2, 2), (3, 3), (2, 3), (3, 1), (5, 5)]))
    sh, sw = draw(st.sampled_from([(1, 1), (2, 2), (3, 3), (1, 2)]))
    ph = draw(st.integers(0, kh // 2))
    pw = draw(st.integers(0, kw // 2))
    H = draw(st.integers(max(1, kh - 2 * ph), max(1, kh - 2 * ph) + 6))
    W = draw(st.integers(max(1, kw - 2 * pw), max(1, kw - 2 * pw) + 6))
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if ties:
        x = rng.integers(-2, 3, size=(N, C, H, W)).astype(dtype)
    else:
        x = rng.standard_normal((N, C, H, W)).astype(dtype)
    k = (kh, kw) if kh != kw else draw(st.sampled_from([kh, (kh, kw)]))
    s = (sh, sw) if sh != sw else draw(st.sampled_from([sh, (sh, sw)]))
    return x, k, s, (ph, pw)


def _out_shape(x_shape, k, s, p):
    (kh, kw), (sh, sw), (ph, pw) = _pair(k), _pair(s), _pair(p)
    return (x_shape[0], x_shape[1], (x_shape[2] + 2 * ph - kh) // sh + 1, (x_shape[3] + 2 * pw - kw) // sw + 1)


def naive_max_pool(x, k, s, p):
    """First strict maximum in row-major window order over the real (non-padding) positions."""
    (kh, kw), (sh, sw), (ph, pw) = _pair(k), _pair(s), _pair(p)
    N, C, H, W = x.shape
    shape = _out_shape(x.shape, k, s, p)
    y = np.empty(shape, dtype=x.dtype)
    arg = np.empty(shape, dtype=np.int64)
    for n, c, i, j in np.ndindex(*shape):
        best, best_idx = None, None
        for a in range(kh):
            for b in range(kw):
                h, v = i * sh + a - ph, j * sw + b - pw
                if 0 <= h < H and 0 <= v < W and (best is None or x[n, c, h, v] > best):
                    best, best_idx = x[n, c, h, v], h * W + v
        y[n, c, i, j], arg[n, c, i, j] = best, best_idx
    return y, arg


def naive_avg_pool(x, k, s, p):
    (kh, kw), (sh, sw), (ph, pw) = _pair(k), _pair(s), _pair(p)
    N, C, H, W = x.shape
    shape = _out_shape(x.shape, k, s, p)
    y = np.zeros(shape)
    for n, c, i, j in np.ndindex(*shape):
        for a in range(kh):
            for b in range(kw):
                h, v = i * sh + a - ph, j * sw + b - pw
                if 0 <= h < H and 0 <= v < W:
                    y[n, c, i, j] += x[n, c, h, v]
    return y / (kh * kw)


# ----------------------------------------------------------------------------
# max pooling
# ----------------------------------------------------------------------------


@SETTINGS
@given(st.one_of(pool_cases(), pool_cases(ties=True)))
def test_max_pool_numba_equals_numpy_and_naive(case):
    x, k, s, p = case
    y_np, a_np = max_pool2d_forward(x, k, s, p, impl="numpy")
    y_nb, a_nb = max_pool2d_forward(x, k, s, p, impl="numba")
    assert y_nb.dtype == x.dtype and a_nb.dtype == np.int64 and y_nb.flags.c_contiguous
    np.testing.assert_array_equal(y_nb, y_np)
    np.testing.assert_array_equal(a_nb, a_np)
    y_ref, a_ref = naive_max_pool(x, k, s, p)
    np.testing.assert_array_equal(y_np, y_ref)
    np.testing.assert_array_equal(a_np, a_ref)  # ties -> first index in row-major window order


@SETTINGS
@given(st.one_of(pool_cases(), pool_cases(ties=True)))
def test_max_pool_backward_numba_equals_numpy(case):
    x, k, s, p = case
    y, arg = max_pool2d_forward(x, k, s, p, impl="numpy")
    gy = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype)
    g_np = max_pool2d_backward(gy, arg, x.shape, impl="numpy")
    g_nb = max_pool2d_backward(gy, arg, x.shape, impl="numba")
    assert g_nb.dtype == x.dtype and g_nb.shape == x.shape and g_nb.flags.c_contiguous
    np.testing.assert_array_equal(g_nb, g_np)  # same additions in the same order: bit for bit


@pytest.mark.parametrize("impl", ["numpy", "numba"])
@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 1, 1), (3, 2, 1), ((3, 2), (1, 2), (1, 0))])
def test_max_pool_backward_finite_differences(k, s, p, impl):
    rng = np.random.default_rng(2)
    shape = (2, 2, 5, 6)
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.1  # distinct values: no ties
    y, arg = max_pool2d_forward(x, k, s, p, impl=impl)
    gy = rng.standard_normal(y.shape)
    gx = max_pool2d_backward(gy, arg, x.shape, impl=impl)
    eps = 1e-4
    num = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        num[idx] = (np.vdot(max_pool2d_forward(xp, k, s, p, impl=impl)[0], gy)
                    - np.vdot(max_pool2d_forward(xm, k, s, p, impl=impl)[0], gy)) / (2 * eps)
    np.testing.assert_allclose(gx, num, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("impl", ["numpy", "numba"])
def test_max_pool_padding_is_minus_infinity(impl):
    x = np.full((1, 1, 3, 3), -5.0)
    x[0, 0, 2, 2] = -7.0
    y, arg = max_pool2d_forward(x, 3, 2, 1, impl=impl)
    np.testing.assert_array_equal(y, np.full((1, 1, 2, 2), -5.0))  # never the padding's 0 or -inf
    np.testing.assert_array_equal(arg, [[[[0, 1], [3, 4]]]])  # first real position of each window
    xinf = np.full((1, 1, 2, 2), -np.inf, dtype=np.float32)
    y, arg = max_pool2d_forward(xinf, 3, 1, 1, impl=impl)
    np.testing.assert_array_equal(arg, [[[[0, 0], [0, 0]]]])  # all -inf: the first real position


@pytest.mark.parametrize("impl", ["numpy", "numba"])
def test_max_pool_nan_propagates(impl):
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 1, 2] = np.nan
    y, arg = max_pool2d_forward(x, 2, 2, 0, impl=impl)
    assert np.isnan(y[0, 0, 0, 0]) and arg[0, 0, 0, 0] == 5
    assert np.isnan(y[0, 0, 0, 1]) and arg[0, 0, 0, 1] == 6
    assert y[0, 0, 1, 1] == 15.0


# ----------------------------------------------------------------------------
# average pooling
# ----------------------------------------------------------------------------


@SETTINGS
@given(pool_cases())
def test_avg_pool_numba_matches_numpy_and_naive(case):
    x, k, s, p = case
    y_np = avg_pool2d_forward(x, k, s, p, impl="numpy")
    y_nb = avg_pool2d_forward(x, k, s, p, impl="numba")
    assert y_nb.dtype == x.dtype and y_nb.flags.c_contiguous
    tol = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}[x.dtype]
    scale = avg_pool2d_forward(np.abs(x), k, s, p, impl="numpy")
    assert np.all(np.abs(y_nb.astype(float) - y_np) <= tol * scale + 1e-30)
    assert np.all(np.abs(naive_avg_pool(x.astype(float), k, s, p) - y_np) <= tol * scale + 1e-30)


@SETTINGS
@given(pool_cases())
def test_avg_pool_backward_numba_equals_numpy_and_adjoint(case):
    x, k, s, p = case
    gy = np.random.default_rng(3).standard_normal(_out_shape(x.shape, k, s, p)).astype(x.dtype)
    g_np = avg_pool2d_backward(gy, x.shape, k, s, p, impl="numpy")
    g_nb = avg_pool2d_backward(gy, x.shape, k, s, p, impl="numba")
    assert g_nb.dtype == x.dtype and g_nb.shape == x.shape and g_nb.flags.c_contiguous
    np.testing.assert_array_equal(g_nb, g_np)  # same additions in the same order: bit for bit
    # adjoint identity in float64: <avg(x), gy> == <x, avg_backward(gy)>
    x64, gy64 = x.astype(np.float64), gy.astype(np.float64)
    lhs = np.vdot(avg_pool2d_forward(x64, k, s, p, impl="numpy"), gy64)
    rhs = np.vdot(x64, avg_pool2d_backward(gy64, x.shape, k, s, p, impl="numpy"))
    assert abs(lhs - rhs) <= 1e-12 * (np.abs(x64).sum() * np.abs(gy64).sum() + 1e-30)


def test_avg_pool_counts_padding():
    x = np.ones((1, 1, 2, 2))
    for impl in ("numpy", "numba"):
        y = avg_pool2d_forward(x, 3, 1, 1, impl=impl)
        np.testing.assert_array_equal(y, np.full((1, 1, 2, 2), 4 / 9))  # count_include_pad=True


# ----------------------------------------------------------------------------
# errors at the boundary
# ----------------------------------------------------------------------------

_x = np.zeros((2, 3, 6, 6))
_y, _arg = max_pool2d_forward(_x, 2, 2, 0)

ERRORS = [
    (lambda: max_pool2d_forward(_x[0], 2, 2, 0), ValueError, r"x must be 4-D"),
    (lambda: avg_pool2d_forward(_x[0], 2, 2, 0), ValueError, r"x must be 4-D"),
    (lambda: max_pool2d_forward(np.zeros((1, 1, 0, 3)), 2, 2, 1), ValueError, r"x must have H >= 1 and W >= 1.*\(1, 1, 0, 3\)"),
    (lambda: max_pool2d_forward(_x, 0, 2, 0), ValueError, r"kernel_size must be >= 1.*got 0"),
    (lambda: max_pool2d_forward(_x, 2.0, 2, 0), TypeError, r"kernel_size must be an int"),
    (lambda: avg_pool2d_forward(_x, 2, 0, 0), ValueError, r"stride must be >= 1"),
    (lambda: avg_pool2d_forward(_x, 2, (2, 1.0), 0), TypeError, r"stride must be an int"),
    (lambda: max_pool2d_forward(_x, 2, 2, -1), ValueError, r"padding must be >= 0"),
    (lambda: max_pool2d_forward(_x, 3, 1, 2), ValueError, r"padding must be at most kernel_size // 2.*padding=\(2, 2\)"),
    (lambda: avg_pool2d_forward(_x, (2, 4), 1, (1, 3)), ValueError, r"padding must be at most kernel_size // 2 = \(1, 2\)"),
    (lambda: max_pool2d_forward(_x, (7, 2), 1, 0), ValueError, r"kernel size 7 along H is larger than the padded input"),
    (lambda: avg_pool2d_forward(_x, 2, 2, 0, impl="c"), ValueError, r"impl must be one of"),
    (lambda: max_pool2d_forward(_x.astype(np.float16), 2, 2, 0), TypeError, r"x must have dtype float32 or float64, got float16"),
    (lambda: avg_pool2d_forward(_x.astype(np.int32), 2, 2, 0), TypeError, r"got int32"),
    (lambda: max_pool2d_backward(_y, _arg.astype(np.int32), _x.shape), TypeError, r"argmax must be an int64 ndarray, got int32"),
    (lambda: max_pool2d_backward(_y, _arg[:, :, :2], _x.shape), ValueError, r"argmax must have shape"),
    (lambda: max_pool2d_backward(_y, _arg + 36, _x.shape), ValueError, r"argmax must lie in \[0, H\*W\) = \[0, 36\)"),
    (lambda: max_pool2d_backward(_y, _arg, (2, 4, 6, 6)), ValueError, r"gy has \(N, C\) = \(2, 3\) but x_shape has \(N, C\) = \(2, 4\)"),
    (lambda: max_pool2d_backward(_y, _arg, (2, 3, 6)), TypeError, r"x_shape must be a tuple of 4 ints"),
    (lambda: max_pool2d_backward(_y.astype(np.float16), _arg, _x.shape), TypeError, r"gy must have dtype"),
    (lambda: max_pool2d_backward(_y, _arg, _x.shape, impl="fast"), ValueError, r"impl"),
    (lambda: avg_pool2d_backward(_y, _x.shape, 3, 1, 1), ValueError, r"gy must have shape \(2, 3, 6, 6\).*got \(2, 3, 3, 3\)"),
    (lambda: avg_pool2d_backward(_y, _x.shape, 2, 2, 2), ValueError, r"padding must be at most"),
    (lambda: avg_pool2d_backward(_y.tolist(), _x.shape, 2, 2, 0), TypeError, r"gy must be a numpy.ndarray"),
]


@pytest.mark.parametrize("call,exc,match", ERRORS)
def test_errors_name_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
