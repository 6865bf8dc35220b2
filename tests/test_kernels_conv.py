"""Tests of refsnn.kernels.conv: numba vs the NumPy twin, and the twin vs independent references."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refsnn.kernels.conv import (WINOGRAD_MIN_CHANNELS, conv2d_backward, conv2d_backward_data,
                                 conv2d_backward_weight, conv2d_forward, conv_path)

DTYPES = [np.float64, np.float32]
# tolerance relative to the sum of |terms| of each output element ("agree to rounding")
RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}
SETTINGS = settings(max_examples=100, deadline=None, derandomize=True)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@st.composite
def conv_cases(draw):
    """(x, w, stride, padding) with 1x1 .. 7x7 kernels, strides 1-3, paddings 0/1/3, odd sizes, both dtypes."""
    kh, kw = draw(st.sampled_from([(1, 1), (3, 3), (3, 3), (7, 7), (2, 3), (5, 1)]))
    sh, sw = draw(st.sampled_from([(1, 1), (1, 1), (2, 2), (2, 1), (3, 2)]))
    ph, pw = draw(st.sampled_from([(0, 0), (1, 1), (3, 3), (0, 1), (1, 3)]))
    H = draw(st.integers(max(1, kh - 2 * ph), max(1, kh - 2 * ph) + 7))
    W = draw(st.integers(max(1, kw - 2 * pw), max(1, kw - 2 * pw) + 7))
    N, C, O = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((O, C, kh, kw)).astype(dtype)
    stride = draw(st.sampled_from([(sh, sw), sh])) if sh == sw else (sh, sw)
    padding = draw(st.sampled_from([(ph, pw), ph])) if ph == pw else (ph, pw)
    return x, w, stride, padding


def _gy(x, w, stride, padding, seed=1):
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    Ho = (x.shape[2] + 2 * ph - w.shape[2]) // sh + 1
    Wo = (x.shape[3] + 2 * pw - w.shape[3]) // sw + 1
    rng = np.random.default_rng(seed)
    return rng.standard_normal((x.shape[0], w.shape[0], Ho, Wo)).astype(x.dtype)


def paths(w, stride):
    """Every fast path that applies to (w, stride): Winograd only for 3x3 stride 1, whatever the channel counts."""
    (sh, sw), (kh, kw) = _pair(stride), w.shape[2:]
    return ("winograd", "im2col") if (kh, kw, sh, sw) == (3, 3, 1, 1) else ("im2col",)


def assert_close_to_rounding(a, b, abs_terms):
    """|a - b| <= rtol * (sum of |terms|) elementwise; abs_terms is that sum for each element."""
    assert a.dtype == b.dtype and a.shape == b.shape
    tol = RTOL[a.dtype] * (abs_terms.astype(np.float64) + 1e-30)
    err = np.abs(a.astype(np.float64) - b.astype(np.float64))
    assert np.all(err <= tol), f"max error {err.max():.3g}, max allowed at that point {tol.flat[err.argmax()]:.3g}"


# ----------------------------------------------------------------------------
# numba == NumPy twin
# ----------------------------------------------------------------------------


@SETTINGS
@given(conv_cases())
def test_forward_numba_matches_numpy(case):
    x, w, s, p = case
    y_np = conv2d_forward(x, w, s, p, impl="numpy")
    for path in paths(w, s):
        y_nb = conv2d_forward(x, w, s, p, impl="numba", path=path)
        assert y_nb.dtype == x.dtype and y_nb.flags.c_contiguous
        assert_close_to_rounding(y_nb, y_np, conv2d_forward(np.abs(x), np.abs(w), s, p, impl="numpy"))


@SETTINGS
@given(conv_cases())
def test_backward_data_numba_matches_numpy(case):
    x, w, s, p = case
    gy = _gy(x, w, s, p)
    g_np = conv2d_backward_data(gy, w, x.shape, s, p, impl="numpy")
    terms = conv2d_backward_data(np.abs(gy), np.abs(w), x.shape, s, p, impl="numpy")
    for path in paths(w, s):
        g_nb = conv2d_backward_data(gy, w, x.shape, s, p, impl="numba", path=path)
        assert g_nb.shape == x.shape and g_nb.dtype == x.dtype and g_nb.flags.c_contiguous
        assert_close_to_rounding(g_nb, g_np, terms)


@SETTINGS
@given(conv_cases())
def test_backward_weight_numba_matches_numpy(case):
    x, w, s, p = case
    gy = _gy(x, w, s, p)
    g_np = conv2d_backward_weight(gy, x, w.shape, s, p, impl="numpy")
    terms = conv2d_backward_weight(np.abs(gy), np.abs(x), w.shape, s, p, impl="numpy")
    for path in paths(w, s):
        g_nb = conv2d_backward_weight(gy, x, w.shape, s, p, impl="numba", path=path)
        assert g_nb.shape == w.shape and g_nb.dtype == x.dtype and g_nb.flags.c_contiguous
        assert_close_to_rounding(g_nb, g_np, terms)


@SETTINGS
@given(conv_cases(), st.sampled_from([(True, True), (True, False), (False, True)]))
def test_fused_backward_equals_the_two_gradients(case, need):
    """conv2d_backward (gy transformed once) gives the very numbers of backward-data and backward-weight."""
    x, w, s, p = case
    gy = _gy(x, w, s, p)
    for path in paths(w, s) + (None,):
        gx, gw = conv2d_backward(gy, x, w, s, p, path=path, need=need)
        assert (gx is None, gw is None) == (not need[0], not need[1])
        if need[0]:
            np.testing.assert_array_equal(gx, conv2d_backward_data(gy, w, x.shape, s, p, path=path))
        if need[1]:
            np.testing.assert_array_equal(gw, conv2d_backward_weight(gy, x, w.shape, s, p, path=path))
    gx, gw = conv2d_backward(gy, x, w, s, p, impl="numpy")
    np.testing.assert_array_equal(gx, conv2d_backward_data(gy, w, x.shape, s, p, impl="numpy"))
    np.testing.assert_array_equal(gw, conv2d_backward_weight(gy, x, w.shape, s, p, impl="numpy"))


@pytest.mark.parametrize("x_shape,w_shape,stride,want", [
    ((1, 16, 4, 4), (WINOGRAD_MIN_CHANNELS, WINOGRAD_MIN_CHANNELS, 3, 3), 1, "winograd"),
    ((16, 192, 16, 16), (384, 192, 3, 3), (1, 1), "winograd"),
    ((16, 3, 32, 32), (48, 3, 3, 3), 1, "im2col"),          # the 3-channel stems of SPS and ResNet-20
    ((16, 3, 32, 32), (128, 3, 3, 3), 1, "im2col"),
    ((16, 64, 32, 32), (WINOGRAD_MIN_CHANNELS - 1, 64, 3, 3), 1, "im2col"),  # few outputs: thin GEMMs
    ((64, 1, 8, 8), (16, 1, 3, 3), 1, "winograd"),          # the digits' stem: below IM2COL_MIN_MACS
    ((16, 128, 32, 32), (256, 128, 3, 3), 2, "im2col"),
    ((16, 128, 32, 32), (256, 128, 1, 1), 1, "im2col"),
])
def test_conv_path_rule(x_shape, w_shape, stride, want):
    p = 1 if w_shape[2] == 3 else 0
    assert conv_path(x_shape, w_shape, stride, p) == want
    # the default path is the rule's: the same bits as asking for it
    rng = np.random.default_rng(9)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    np.testing.assert_array_equal(conv2d_forward(x, w, stride, p), conv2d_forward(x, w, stride, p, path=want))


# fixed cases, so the corners are covered whatever hypothesis draws:
# (N, C, O, H, W, kh, kw, stride, padding)
FIXED = [
    (1, 3, 2, 7, 9, 3, 3, 1, 1),  # both paths, odd sizes, batch 1
    (2, 16, 17, 6, 7, 3, 3, 1, 1),  # Winograd by the rule (conv_path)
    (2, 4, 3, 8, 8, 3, 3, 1, 0),
    (2, 2, 3, 5, 6, 3, 3, 1, 3),  # padding 3 > kernel // 2
    (2, 3, 4, 9, 7, 3, 3, 2, 1),  # stride 2
    (2, 3, 4, 9, 8, 1, 1, 2, 0),  # 1x1 stride 2
    (1, 2, 3, 5, 5, 1, 1, 1, 0),
    (2, 2, 2, 11, 9, 7, 7, 2, 3),  # 7x7 stride 2 padding 3
    (1, 2, 2, 1, 1, 7, 7, 1, 3),  # 1x1 image, 7x7 kernel, all but one tap in the padding
    (1, 1, 1, 4, 4, 4, 4, 1, 0),  # output 1x1
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,C,O,H,W,kh,kw,s,p", FIXED)
def test_fixed_shapes_numba_matches_numpy(N, C, O, H, W, kh, kw, s, p, dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((O, C, kh, kw)).astype(dtype)
    gy = _gy(x, w, s, p)
    ax, aw, agy = np.abs(x), np.abs(w), np.abs(gy)
    for path in paths(w, s):
        assert_close_to_rounding(conv2d_forward(x, w, s, p, path=path), conv2d_forward(x, w, s, p, impl="numpy"),
                                 conv2d_forward(ax, aw, s, p, impl="numpy"))
        assert_close_to_rounding(conv2d_backward_data(gy, w, x.shape, s, p, path=path),
                                 conv2d_backward_data(gy, w, x.shape, s, p, impl="numpy"),
                                 conv2d_backward_data(agy, aw, x.shape, s, p, impl="numpy"))
        assert_close_to_rounding(conv2d_backward_weight(gy, x, w.shape, s, p, path=path),
                                 conv2d_backward_weight(gy, x, w.shape, s, p, impl="numpy"),
                                 conv2d_backward_weight(agy, ax, w.shape, s, p, impl="numpy"))


# ----------------------------------------------------------------------------
# the NumPy twin against independent references
# ----------------------------------------------------------------------------


def naive_conv2d(x, w, stride, padding):
    """y[n,o,i,j] = sum_{c,p,q} w[o,c,p,q] * xpad[n,c,i*sh+p, j*sw+q], as 7 nested loops."""
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    y = np.zeros((N, O, Ho, Wo))
    for n in range(N):
        for o in range(O):
            for i in range(Ho):
                for j in range(Wo):
                    for c in range(C):
                        for p in range(kh):
                            for q in range(kw):
                                h, v = i * sh + p - ph, j * sw + q - pw
                                if 0 <= h < H and 0 <= v < W:
                                    y[n, o, i, j] += w[o, c, p, q] * x[n, c, h, v]
    return y


@pytest.mark.parametrize("impl", ["numpy", "numba"])
@pytest.mark.parametrize("stride,padding,k", [(1, 0, 3), (1, 1, 3), (2, 1, 3), ((2, 1), (0, 2), 2), (3, 3, 7), (2, 0, 1)])
def test_forward_against_naive_loops(stride, padding, k, impl):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 7, 8))
    w = rng.standard_normal((2, 3, k, k))
    y = conv2d_forward(x, w, stride, padding, impl=impl)
    np.testing.assert_allclose(y, naive_conv2d(x, w, stride, padding), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 2), (2, 1), ((1, 2), (3, 0))])
def test_forward_against_scipy_correlate(stride, padding):
    signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 9, 8))
    w = rng.standard_normal((4, 3, 3, 2))
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ref = np.array([[sum(signal.correlate(xpad[n, c], w[o, c], mode="valid") for c in range(3))[::sh, ::sw]
                     for o in range(4)] for n in range(2)])
    np.testing.assert_allclose(conv2d_forward(x, w, stride, padding, impl="numpy"), ref, rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(conv_cases(), st.sampled_from(["numpy", "numba"]))
def test_adjoint_identity(case, impl):
    """<conv(x, w), gy> == <x, bwd_data(gy, w)> == <w, bwd_weight(gy, x)> in float64: catches a wrong transpose."""
    x, w, s, p = case
    x, w = x.astype(np.float64), w.astype(np.float64)
    gy = _gy(x, w, s, p)
    y = conv2d_forward(x, w, s, p, impl=impl)
    gx = conv2d_backward_data(gy, w, x.shape, s, p, impl=impl)
    gw = conv2d_backward_weight(gy, x, w.shape, s, p, impl=impl)
    lhs = np.vdot(y, gy)
    scale = np.vdot(conv2d_forward(np.abs(x), np.abs(w), s, p, impl="numpy"), np.abs(gy))
    assert abs(lhs - np.vdot(x, gx)) <= 1e-12 * scale
    assert abs(lhs - np.vdot(w, gw)) <= 1e-12 * scale


def test_float32_is_computed_in_float32_and_close_to_float64():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 8, 10, 10))
    w = rng.standard_normal((4, 8, 3, 3))
    for impl in ("numpy", "numba"):
        y32 = conv2d_forward(x.astype(np.float32), w.astype(np.float32), 1, 1, impl=impl)
        assert y32.dtype == np.float32
        np.testing.assert_allclose(y32, conv2d_forward(x, w, 1, 1, impl="numpy"), rtol=0, atol=1e-4)


def test_non_contiguous_inputs_and_inputs_unchanged():
    rng = np.random.default_rng(6)
    x = np.asfortranarray(rng.standard_normal((2, 3, 6, 5)))[:, :, ::-1]
    w = rng.standard_normal((3, 2, 3, 3)).transpose(1, 0, 2, 3)  # (2, 3, 3, 3), not contiguous
    x0, w0 = x.copy(), w.copy()
    gy = _gy(x, w, 1, 1)
    for impl in ("numpy", "numba"):
        ref = conv2d_forward(np.ascontiguousarray(x), np.ascontiguousarray(w), 1, 1, impl="numpy")
        np.testing.assert_allclose(conv2d_forward(x, w, 1, 1, impl=impl), ref, rtol=1e-12, atol=1e-12)
        conv2d_backward_data(gy, w, x.shape, 1, 1, impl=impl)
        conv2d_backward_weight(gy[:, ::-1][:, ::-1], x, w.shape, 1, 1, impl=impl)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)


def test_tuple_and_int_arguments_agree():
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal((1, 2, 7, 7)), rng.standard_normal((2, 2, 3, 3))
    np.testing.assert_array_equal(conv2d_forward(x, w, 2, 1), conv2d_forward(x, w, (2, 2), [1, 1]))
    np.testing.assert_array_equal(conv2d_forward(x, w, np.int64(2), 1), conv2d_forward(x, w, 2, 1))


# ----------------------------------------------------------------------------
# errors at the boundary
# ----------------------------------------------------------------------------

_x = np.zeros((2, 3, 5, 5))
_w = np.zeros((4, 3, 3, 3))
_gy5 = np.zeros((2, 4, 5, 5))  # output of (_x, _w) with padding 1

ERRORS = [
    (lambda: conv2d_forward(_x[0], _w), ValueError, r"x must be 4-D.*\(3, 5, 5\)"),
    (lambda: conv2d_forward(_x, _w[0]), ValueError, r"w must be 4-D"),
    (lambda: conv2d_forward(_x, np.zeros((4, 2, 3, 3))), ValueError, r"channel mismatch.*C=3.*C=2"),
    (lambda: conv2d_forward(_x, _w, stride=1.5), TypeError, r"stride must be an int.*1\.5"),
    (lambda: conv2d_forward(_x, _w, stride=(1, 2, 3)), TypeError, r"stride must be .* pair"),
    (lambda: conv2d_forward(_x, _w, stride=True), TypeError, r"stride"),
    (lambda: conv2d_forward(_x, _w, stride=0), ValueError, r"stride must be >= 1.*got 0"),
    (lambda: conv2d_forward(_x, _w, stride=(1, -2)), ValueError, r"stride must be >= 1.*-2"),
    (lambda: conv2d_forward(_x, _w, padding=-1), ValueError, r"padding must be >= 0.*-1"),
    (lambda: conv2d_forward(_x, _w, padding="same"), TypeError, r"padding.*'same'"),
    (lambda: conv2d_forward(_x, np.zeros((4, 3, 7, 3))), ValueError, r"kernel size 7 along H is larger than the padded input 5"),
    (lambda: conv2d_forward(_x, np.zeros((4, 3, 3, 8)), padding=1), ValueError, r"kernel size 8 along W.*5 \+ 2\*1 = 7"),
    (lambda: conv2d_forward(_x, _w, impl="cuda"), ValueError, r"impl must be one of .*numba.*numpy.*'cuda'"),
    (lambda: conv2d_forward(_x.astype(np.float16), _w.astype(np.float16)), TypeError, r"x must have dtype float32 or float64, got float16"),
    (lambda: conv2d_forward(_x.astype(np.int64), _w), TypeError, r"x must have dtype .* got int64"),
    (lambda: conv2d_forward(_x, _w.astype(np.float32)), TypeError, r"x has dtype float64 but w has dtype float32"),
    (lambda: conv2d_forward(_x.tolist(), _w), TypeError, r"x must be a numpy.ndarray, got list"),
    (lambda: conv2d_backward_data(_gy5, _w, (2, 3, 5), 1, 1), TypeError, r"x_shape must be a tuple of 4 ints"),
    (lambda: conv2d_backward_data(_gy5, _w, (2, 3, 5, 0), 1, 1), ValueError, r"x_shape must have positive entries"),
    (lambda: conv2d_backward_data(_gy5, _w, (2, 3, 5, 5), 1, 0), ValueError, r"gy must have shape \(2, 4, 3, 3\).*got \(2, 4, 5, 5\)"),
    (lambda: conv2d_backward_data(_gy5, _w, (2, 2, 5, 5), 1, 1), ValueError, r"channel mismatch"),
    (lambda: conv2d_backward_data(_gy5.astype(np.float32), _w, _x.shape, 1, 1), TypeError, r"gy has dtype float32 but w has dtype float64"),
    (lambda: conv2d_backward_data(_gy5, _w, _x.shape, 1, 1, impl=None), ValueError, r"impl"),
    (lambda: conv2d_backward_weight(_gy5, _x, (4, 3, 3), 1, 1), TypeError, r"w_shape must be a tuple of 4 ints"),
    (lambda: conv2d_backward_weight(_gy5, _x, (4, 3, 3, 3), 2, 1), ValueError, r"gy must have shape \(2, 4, 3, 3\)"),
    (lambda: conv2d_backward_weight(_gy5, _x.astype(np.float32), (4, 3, 3, 3), 1, 1), TypeError, r"gy has dtype float64 but x has dtype float32"),
    (lambda: conv2d_backward_weight(_gy5, _x[..., 0], (4, 3, 3, 3), 1, 1), ValueError, r"x must be 4-D"),
    (lambda: conv2d_backward_weight(_gy5, _x, (4, 3, 3, 3), 1, -1), ValueError, r"padding must be >= 0"),
    (lambda: conv2d_forward(_x, _w, 2, 1, path="winograd"), ValueError, r"path='winograd' needs a 3x3 kernel with stride 1.*\(2, 2\)"),
    (lambda: conv2d_forward(_x, _w, path="fft"), ValueError, r"path must be None or one of \('winograd', 'im2col'\), got 'fft'"),
    (lambda: conv2d_forward(_x, _w, impl="numpy", path="im2col"), ValueError, r"path='im2col'.*impl='numpy' has none"),
    (lambda: conv2d_backward(_gy5, _x, _w, 1, 0), ValueError, r"gy must have shape \(2, 4, 3, 3\)"),
    (lambda: conv2d_backward(_gy5, _x, _w.astype(np.float32), 1, 1), TypeError, r"gy has dtype float64 but w has dtype float32"),
]


@pytest.mark.parametrize("call,exc,match", ERRORS)
def test_errors_name_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("path", ["winograd", "im2col"])
def test_parallel_kernels_give_the_same_bits_on_any_thread_count(path):
    """The transforms and im2col / col2im split work over channels only: 1 thread = all threads, bit for bit."""
    import numba
    rng = np.random.default_rng(10)
    x = rng.standard_normal((3, 17, 9, 10)).astype(np.float32)
    w = rng.standard_normal((18, 17, 3, 3)).astype(np.float32)
    gy = _gy(x, w, 1, 1)

    def run():
        return (conv2d_forward(x, w, 1, 1, path=path),) + conv2d_backward(gy, x, w, 1, 1, path=path)

    many = run()
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one = run()
    finally:
        numba.set_num_threads(old)
    for a, b in zip(many, one):
        np.testing.assert_array_equal(a, b)
