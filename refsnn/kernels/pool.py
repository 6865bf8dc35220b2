"""2-D max and average pooling (NCHW) and their gradients.

Symbols::

    x (N, C, H, W), y (N, C, Ho, Wo), kernel (kh, kw), stride (sh, sw), padding (ph, pw)
    Ho = (H + 2*ph - kh)//sh + 1, and padding <= kernel_size // 2 (as in PyTorch)
    window(i, j) = { (i*sh + p - ph, j*sw + q - pw) : 0 <= p < kh, 0 <= q < kw }

    max pool      y[n,c,i,j]      = max over window(i,j) of x[n,c,.,.]   (padding acts as -inf)
                  argmax[n,c,i,j] = flat index h*W + w in the (H, W) plane of x of the maximum;
                                    ties -> the first position in row-major window order (p, then q);
                                    a NaN in the window wins (the first NaN), so NaN propagates
    max backward  gx[n,c].flat[argmax[n,c,i,j]] += gy[n,c,i,j]
    avg pool      y[n,c,i,j]      = (1 / (kh*kw)) * sum over window(i,j) of xpad[n,c,.,.]
                                    (zeros in the padding, count_include_pad=True)
    avg backward  gxpad[n,c, i*sh+p, j*sw+q] += gy[n,c,i,j] / (kh*kw);  gx = gxpad without padding

Every function has ``impl="numpy"`` (the literal specification, one loop over the
window offsets (p, q) on strided slices) and ``impl="numba"`` (default, plain loops
in numba, single-threaded). Both visit the terms of every sum in the same order, so
max pooling, its backward and both average-pool passes agree bit for bit between
the two (the tests require it for all but the average-pool forward, where "to
rounding" is the contract).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from refsnn.kernels import checks as chk

__all__ = [
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
]


# ----------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------


def _geometry(x_shape, kernel_size, stride, padding):
    """Normalise the pool arguments and return (kh, kw, sh, sw, ph, pw, Ho, Wo)."""
    kh, kw = chk.pair(kernel_size, "kernel_size", minimum=1)
    sh, sw = chk.pair(stride, "stride", minimum=1)
    ph, pw = chk.pair(padding, "padding", minimum=0)
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(
            f"padding must be at most kernel_size // 2 = {(kh // 2, kw // 2)} "
            f"(as in PyTorch), got padding={(ph, pw)} for kernel_size={(kh, kw)}"
        )
    H, W = x_shape[2], x_shape[3]
    if H < 1 or W < 1:
        raise ValueError(f"x must have H >= 1 and W >= 1 (a window must see a real value), got shape {tuple(x_shape)}")
    Ho = chk.out_size(H, kh, sh, ph, "H")
    Wo = chk.out_size(W, kw, sw, pw, "W")
    return kh, kw, sh, sw, ph, pw, Ho, Wo


def _window(a, p, q, sh, sw, Ho, Wo):
    """The strided slice a[..., i*sh+p, j*sw+q] for i < Ho, j < Wo (a view)."""
    return a[..., p : p + sh * (Ho - 1) + 1 : sh, q : q + sw * (Wo - 1) + 1 : sw]


# ----------------------------------------------------------------------------
# max pooling
# ----------------------------------------------------------------------------


def _max_forward_numpy(x, kh, kw, sh, sw, ph, pw, Ho, Wo):
    N, C, H, W = x.shape
    pad = ((0, 0), (0, 0), (ph, ph), (pw, pw))
    xpad = np.pad(x, pad, constant_values=-np.inf)
    # index[h, w] = h*W + w, and -1 in the padding (which can never be selected)
    index_pad = np.pad(np.arange(H * W, dtype=np.int64).reshape(H, W), pad[2:], constant_values=-1)
    y = np.full((N, C, Ho, Wo), -np.inf, dtype=x.dtype)
    argmax = np.full((N, C, Ho, Wo), -1, dtype=np.int64)
    for p in range(kh):
        for q in range(kw):
            v = _window(xpad, p, q, sh, sw, Ho, Wo)
            idx = _window(index_pad, p, q, sh, sw, Ho, Wo)
            # take v if it is a real input value and it is the first one seen, strictly
            # larger than the running max, or the first NaN
            take = (idx >= 0) & ((argmax < 0) | (v > y) | (np.isnan(v) & ~np.isnan(y)))
            y = np.where(take, v, y)
            argmax = np.where(take, idx, argmax)
    return y, argmax


@njit(cache=True, parallel=True)
def _max_forward_kernel(x, kh, kw, sh, sw, ph, pw, y, argmax):
    """The planes (n, c) in parallel: each writes only y[n, c], argmax[n, c]."""
    N, C, H, W = x.shape
    Ho, Wo = y.shape[2], y.shape[3]
    for nc in prange(N * C):
        n = nc // C
        c = nc - n * C
        for i in range(Ho):
            for j in range(Wo):
                best = x[n, c, 0, 0]
                arg = -1
                for p in range(kh):
                    h = i * sh + p - ph
                    if h < 0 or h >= H:
                        continue
                    for q in range(kw):
                        w = j * sw + q - pw
                        if w < 0 or w >= W:
                            continue
                        v = x[n, c, h, w]
                        if arg < 0 or v > best or (np.isnan(v) and not np.isnan(best)):
                            best = v
                            arg = h * W + w
                y[n, c, i, j] = best
                argmax[n, c, i, j] = arg
    return y, argmax


def _max_forward_numba(x, kh, kw, sh, sw, ph, pw, Ho, Wo):
    N, C = x.shape[:2]
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    argmax = np.empty((N, C, Ho, Wo), dtype=np.int64)
    return _max_forward_kernel(x, kh, kw, sh, sw, ph, pw, y, argmax)


def _max_backward_numpy(gy, argmax, x_shape):
    N, C, H, W = x_shape
    gx = np.zeros((N * C, H * W), dtype=gy.dtype)
    plane = np.arange(N * C)[:, None]  # row of gx for each (n, c)
    # gx[n,c].flat[argmax[n,c,i,j]] += gy[n,c,i,j], accumulated in (i, j) order
    np.add.at(gx, (plane, argmax.reshape(N * C, -1)), gy.reshape(N * C, -1))
    return gx.reshape(x_shape)


@njit(cache=True, parallel=True)
def _max_backward_kernel(gy, argmax, gx):
    """The planes in parallel: each adds only into its own row gx[nc], in (i, j) order as the twin."""
    NC, HW = gx.shape
    P = argmax.shape[1]
    for nc in prange(NC):
        for k in range(P):
            gx[nc, argmax[nc, k]] += gy[nc, k]
    return gx


def _max_backward_numba(gy, argmax, x_shape):
    N, C, H, W = x_shape
    gx = np.zeros((N * C, H * W), dtype=gy.dtype)
    _max_backward_kernel(gy.reshape(N * C, -1), argmax.reshape(N * C, -1), gx)
    return gx.reshape(x_shape)


def max_pool2d_forward(x, kernel_size, stride, padding, impl="numba"):
    """y[n,c,i,j] = max over window(i,j) of x[n,c], with argmax (int64 flat index h*W + w).

    Padding acts as -inf (never selected); ties go to the first position in row-major
    window order. Returns (y, argmax), both C-contiguous of shape (N, C, Ho, Wo).
    """
    chk.check_impl(impl)
    chk.float_array(x, "x")
    kh, kw, sh, sw, ph, pw, Ho, Wo = _geometry(x.shape, kernel_size, stride, padding)
    x = np.ascontiguousarray(x)
    f = _max_forward_numba if impl == "numba" else _max_forward_numpy
    y, argmax = f(x, kh, kw, sh, sw, ph, pw, Ho, Wo)
    return np.ascontiguousarray(y), np.ascontiguousarray(argmax)


def max_pool2d_backward(gy, argmax, x_shape, impl="numba"):
    """gx[n,c].flat[argmax[n,c,i,j]] += gy[n,c,i,j]; gx has shape x_shape."""
    chk.check_impl(impl)
    chk.float_array(gy, "gy")
    x_shape = chk.shape4(x_shape, "x_shape")
    if not isinstance(argmax, np.ndarray) or argmax.dtype != np.int64:
        got = argmax.dtype if isinstance(argmax, np.ndarray) else type(argmax).__name__
        raise TypeError(f"argmax must be an int64 ndarray, got {got}")
    chk.expect_shape(argmax, "argmax", gy.shape, "the shape of gy")
    if tuple(gy.shape[:2]) != x_shape[:2]:
        raise ValueError(f"gy has (N, C) = {gy.shape[:2]} but x_shape has (N, C) = {x_shape[:2]}")
    HW = x_shape[2] * x_shape[3]
    if argmax.size and (argmax.min() < 0 or argmax.max() >= HW):
        raise ValueError(
            f"argmax must lie in [0, H*W) = [0, {HW}), got values in "
            f"[{argmax.min()}, {argmax.max()}]"
        )
    gy = np.ascontiguousarray(gy)
    argmax = np.ascontiguousarray(argmax)
    f = _max_backward_numba if impl == "numba" else _max_backward_numpy
    return np.ascontiguousarray(f(gy, argmax, x_shape))


# ----------------------------------------------------------------------------
# average pooling (count_include_pad=True)
# ----------------------------------------------------------------------------


def _avg_forward_numpy(x, kh, kw, sh, sw, ph, pw, Ho, Wo):
    N, C = x.shape[:2]
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    s = np.zeros((N, C, Ho, Wo), dtype=x.dtype)
    for p in range(kh):
        for q in range(kw):
            s += _window(xpad, p, q, sh, sw, Ho, Wo)  # s[n,c,i,j] += xpad[n,c,i*sh+p,j*sw+q]
    return s / x.dtype.type(kh * kw)


@njit(cache=True)
def _avg_sum_kernel(x, kh, kw, sh, sw, ph, pw, s):
    """s[n,c,i,j] = sum_{p,q} xpad[n,c,i*sh+p,j*sw+q], summed in (p, q) order; s zeroed."""
    N, C, H, W = x.shape
    Ho, Wo = s.shape[2], s.shape[3]
    for nc in range(N * C):
        n = nc // C
        c = nc - n * C
        for p in range(kh):
            for q in range(kw):
                for i in range(Ho):
                    h = i * sh + p - ph
                    for j in range(Wo):
                        w = j * sw + q - pw
                        if 0 <= h < H and 0 <= w < W:
                            s[n, c, i, j] += x[n, c, h, w]
                        else:
                            s[n, c, i, j] += 0.0  # the zero padding, added like the twin does
    return s


def _avg_forward_numba(x, kh, kw, sh, sw, ph, pw, Ho, Wo):
    N, C = x.shape[:2]
    s = _avg_sum_kernel(x, kh, kw, sh, sw, ph, pw, np.zeros((N, C, Ho, Wo), dtype=x.dtype))
    return s / x.dtype.type(kh * kw)


def _avg_backward_numpy(gy, x_shape, kh, kw, sh, sw, ph, pw, Ho, Wo):
    N, C, H, W = x_shape
    g = gy / gy.dtype.type(kh * kw)
    gxpad = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=gy.dtype)
    for p in range(kh):
        for q in range(kw):
            # gxpad[n,c,i*sh+p, j*sw+q] += gy[n,c,i,j] / (kh*kw)
            _window(gxpad, p, q, sh, sw, Ho, Wo)[...] += g
    return gxpad[:, :, ph : ph + H, pw : pw + W]


@njit(cache=True)
def _avg_backward_kernel(g, kh, kw, sh, sw, ph, pw, gx):
    """gx[n,c,i*sh+p-ph, j*sw+q-pw] += g[n,c,i,j], in (p, q, i, j) order; gx zeroed."""
    N, C, H, W = gx.shape
    Ho, Wo = g.shape[2], g.shape[3]
    for nc in range(N * C):
        n = nc // C
        c = nc - n * C
        for p in range(kh):
            for q in range(kw):
                for i in range(Ho):
                    h = i * sh + p - ph
                    if h < 0 or h >= H:
                        continue
                    for j in range(Wo):
                        w = j * sw + q - pw
                        if 0 <= w < W:
                            gx[n, c, h, w] += g[n, c, i, j]
    return gx


def _avg_backward_numba(gy, x_shape, kh, kw, sh, sw, ph, pw, Ho, Wo):
    g = gy / gy.dtype.type(kh * kw)
    gx = np.zeros(x_shape, dtype=gy.dtype)
    return _avg_backward_kernel(g, kh, kw, sh, sw, ph, pw, gx)


def avg_pool2d_forward(x, kernel_size, stride, padding, impl="numba"):
    """y[n,c,i,j] = (1/(kh*kw)) * sum_{p,q} xpad[n,c,i*sh+p, j*sw+q]  (zero padding counted)."""
    chk.check_impl(impl)
    chk.float_array(x, "x")
    kh, kw, sh, sw, ph, pw, Ho, Wo = _geometry(x.shape, kernel_size, stride, padding)
    x = np.ascontiguousarray(x)
    f = _avg_forward_numba if impl == "numba" else _avg_forward_numpy
    return np.ascontiguousarray(f(x, kh, kw, sh, sw, ph, pw, Ho, Wo))


def avg_pool2d_backward(gy, x_shape, kernel_size, stride, padding, impl="numba"):
    """gxpad[n,c,i*sh+p, j*sw+q] += gy[n,c,i,j] / (kh*kw); gx = gxpad without padding."""
    chk.check_impl(impl)
    chk.float_array(gy, "gy")
    x_shape = chk.shape4(x_shape, "x_shape")
    kh, kw, sh, sw, ph, pw, Ho, Wo = _geometry(x_shape, kernel_size, stride, padding)
    chk.expect_shape(gy, "gy", (x_shape[0], x_shape[1], Ho, Wo), "(N, C, Ho, Wo) from x_shape")
    gy = np.ascontiguousarray(gy)
    f = _avg_backward_numba if impl == "numba" else _avg_backward_numpy
    return np.ascontiguousarray(f(gy, x_shape, kh, kw, sh, sw, ph, pw, Ho, Wo))
