"""2-D convolution (cross-correlation, NCHW) and its two gradients.

Symbols (the same in every function below)::

    x    (N, C, H, W)       input              w  (O, C, kh, kw)  weight
    y    (N, O, Ho, Wo)     output             gy = dL/dy, gx = dL/dx, gw = dL/dw
    (sh, sw) stride, (ph, pw) zero padding,    Ho = (H + 2*ph - kh)//sh + 1
    xpad = x with ph zero rows above/below and pw zero columns left/right

    forward          y[n,o,i,j]  = sum_{c,p,q}  w[o,c,p,q] * xpad[n,c,i*sh+p, j*sw+q]
    backward data    gxpad[n,c,i*sh+p, j*sw+q] += sum_o w[o,c,p,q] * gy[n,o,i,j]
                     gx = gxpad without its padding
    backward weight  gw[o,c,p,q] = sum_{n,i,j} gy[n,o,i,j] * xpad[n,c,i*sh+p, j*sw+q]

No bias: the op adds it. Every function has two implementations:

* ``impl="numpy"``: the literal specification -- one loop over the kernel
  offsets (p, q), each step an einsum over channels on a strided slice of xpad.
* ``impl="numba"`` (default): the fast path. It agrees with the NumPy twin to
  rounding (the same sums, taken in a different order):

  - 3x3 kernels with stride 1 use Winograd's minimal filtering F(2x2, 3x3)
    (Lavin & Gray 2016, ``refsnn.kernels.winograd``): 16 batched BLAS products with
    2.25x fewer multiplications than im2col;
  - every other shape uses im2col / col2im in numba plus one large BLAS product.
    The im2col matrix has rows (c, p, q) and columns (n, i, j)::

        cols[(c,p,q), (n,i,j)] = xpad[n, c, i*sh+p, j*sw+q]

    so that, with W2 = w.reshape(O, C*kh*kw) and GY2[o, (n,i,j)] = gy[n,o,i,j],

        y     = W2 @ cols      (then reordered to (N, O, Ho, Wo))
        gw    = GY2 @ cols.T
        gcols = W2.T @ GY2     (then scattered back onto gx with col2im)

All outputs are C-contiguous arrays in the dtype of the inputs (float32 or float64).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from refsnn.kernels import checks as chk
from refsnn.kernels.winograd import (backward_data_winograd, backward_weight_winograd, forward_winograd,
                                     winograd_applies)

__all__ = ["conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight"]


# ----------------------------------------------------------------------------
# argument checks (shared by both implementations)
# ----------------------------------------------------------------------------


def _geometry(x_shape, w_shape, stride, padding):
    """Normalise stride/padding, check x and w agree, return (sh, sw, ph, pw, Ho, Wo)."""
    sh, sw = chk.pair(stride, "stride", minimum=1)
    ph, pw = chk.pair(padding, "padding", minimum=0)
    N, C, H, W = x_shape
    O, Cw, kh, kw = w_shape
    if C != Cw:
        raise ValueError(
            f"channel mismatch: x has C={C} channels (shape {tuple(x_shape)}) but "
            f"w expects C={Cw} (shape {tuple(w_shape)})"
        )
    Ho = chk.out_size(H, kh, sh, ph, "H")
    Wo = chk.out_size(W, kw, sw, pw, "W")
    return sh, sw, ph, pw, Ho, Wo


# ----------------------------------------------------------------------------
# NumPy twin: the literal specification
# ----------------------------------------------------------------------------


def _pad(x, ph, pw):
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def _window(a, p, q, sh, sw, Ho, Wo):
    """The strided slice a[..., i*sh+p, j*sw+q] for i < Ho, j < Wo (a view)."""
    return a[:, :, p : p + sh * (Ho - 1) + 1 : sh, q : q + sw * (Wo - 1) + 1 : sw]


def _forward_numpy(x, w, sh, sw, ph, pw, Ho, Wo):
    N = x.shape[0]
    O, C, kh, kw = w.shape
    xpad = _pad(x, ph, pw)
    y = np.zeros((N, O, Ho, Wo), dtype=x.dtype)
    for p in range(kh):
        for q in range(kw):
            # y[n,o,i,j] += sum_c w[o,c,p,q] * xpad[n,c,i*sh+p, j*sw+q]
            y += np.einsum("oc,ncij->noij", w[:, :, p, q], _window(xpad, p, q, sh, sw, Ho, Wo),
                           optimize=True)
    return y


def _backward_data_numpy(gy, w, x_shape, sh, sw, ph, pw, Ho, Wo):
    N, C, H, W = x_shape
    O, _, kh, kw = w.shape
    gxpad = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=gy.dtype)
    for p in range(kh):
        for q in range(kw):
            # gxpad[n,c,i*sh+p, j*sw+q] += sum_o w[o,c,p,q] * gy[n,o,i,j]
            _window(gxpad, p, q, sh, sw, Ho, Wo)[...] += np.einsum(
                "oc,noij->ncij", w[:, :, p, q], gy, optimize=True)
    return np.ascontiguousarray(gxpad[:, :, ph : ph + H, pw : pw + W])


def _backward_weight_numpy(gy, x, w_shape, sh, sw, ph, pw, Ho, Wo):
    O, C, kh, kw = w_shape
    xpad = _pad(x, ph, pw)
    gw = np.zeros((O, C, kh, kw), dtype=x.dtype)
    for p in range(kh):
        for q in range(kw):
            # gw[o,c,p,q] = sum_{n,i,j} gy[n,o,i,j] * xpad[n,c,i*sh+p, j*sw+q]
            gw[:, :, p, q] = np.einsum("noij,ncij->oc", gy, _window(xpad, p, q, sh, sw, Ho, Wo),
                                       optimize=True)
    return gw


# ----------------------------------------------------------------------------
# numba: im2col / col2im + one GEMM
# ----------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _valid_cols(W, Wo, q, sw, pw):
    """Range [j_lo, j_hi) of output columns j whose input column j*sw+q-pw is inside [0, W)."""
    # j*sw + q - pw >= 0   <=>  j >= ceil((pw - q) / sw)
    j_lo = min(Wo, max(0, -((q - pw) // sw)))
    # j*sw + q - pw <= W-1 <=>  j <= floor((W - 1 - q + pw) / sw)
    last = W - 1 - q + pw
    j_hi = min(Wo, last // sw + 1) if last >= 0 else 0
    return j_lo, max(j_lo, j_hi)


@njit(cache=True)
def _im2col(x, kh, kw, sh, sw, ph, pw, Ho, Wo, cols):
    """cols[c,p,q,n,i,j] = xpad[n,c,i*sh+p,j*sw+q]; cols is (C*kh*kw, N*Ho*Wo), C-contiguous."""
    N, C, H, W = x.shape
    c6 = cols.reshape((C, kh, kw, N, Ho, Wo))
    for cn in range(C * N):
        c = cn // N
        n = cn - c * N
        for p in range(kh):
            for q in range(kw):
                j_lo, j_hi = _valid_cols(W, Wo, q, sw, pw)
                for i in range(Ho):
                    ii = i * sh + p - ph
                    row = c6[c, p, q, n, i]
                    if ii < 0 or ii >= H:
                        row[:] = 0
                        continue
                    for j in range(j_lo):
                        row[j] = 0
                    for j in range(j_lo, j_hi):
                        row[j] = x[n, c, ii, j * sw + q - pw]
                    for j in range(j_hi, Wo):
                        row[j] = 0
    return cols


@njit(cache=True)
def _col2im(gcols, kh, kw, sh, sw, ph, pw, Ho, Wo, gx):
    """gx[n,c,i*sh+p-ph, j*sw+q-pw] += gcols[c,p,q,n,i,j] (padding positions dropped); gx zeroed."""
    N, C, H, W = gx.shape
    g6 = gcols.reshape((C, kh, kw, N, Ho, Wo))
    for cn in range(C * N):
        c = cn // N
        n = cn - c * N
        for p in range(kh):
            for q in range(kw):
                j_lo, j_hi = _valid_cols(W, Wo, q, sw, pw)
                for i in range(Ho):
                    ii = i * sh + p - ph
                    if ii < 0 or ii >= H:
                        continue
                    for j in range(j_lo, j_hi):
                        gx[n, c, ii, j * sw + q - pw] += g6[c, p, q, n, i, j]
    return gx


def _im2col_numba(x, kh, kw, sh, sw, ph, pw, Ho, Wo):
    N, C = x.shape[:2]
    cols = np.empty((C * kh * kw, N * Ho * Wo), dtype=x.dtype)
    return _im2col(x, kh, kw, sh, sw, ph, pw, Ho, Wo, cols)


def _gy_as_matrix(gy):
    """GY2[o, (n,i,j)] = gy[n,o,i,j] as a C-contiguous (O, N*Ho*Wo) matrix."""
    N, O, Ho, Wo = gy.shape
    return np.ascontiguousarray(gy.transpose(1, 0, 2, 3)).reshape(O, N * Ho * Wo)


def _forward_im2col(x, w, sh, sw, ph, pw, Ho, Wo):
    N = x.shape[0]
    O, C, kh, kw = w.shape
    cols = _im2col_numba(x, kh, kw, sh, sw, ph, pw, Ho, Wo)
    y2 = np.dot(w.reshape(O, C * kh * kw), cols)  # (O, N*Ho*Wo)
    return np.ascontiguousarray(y2.reshape(O, N, Ho, Wo).transpose(1, 0, 2, 3))


def _backward_data_im2col(gy, w, x_shape, sh, sw, ph, pw, Ho, Wo):
    O, C, kh, kw = w.shape
    gcols = np.dot(w.reshape(O, C * kh * kw).T, _gy_as_matrix(gy))  # (C*kh*kw, N*Ho*Wo)
    gx = np.zeros(x_shape, dtype=gy.dtype)
    return _col2im(gcols, kh, kw, sh, sw, ph, pw, Ho, Wo, gx)


def _backward_weight_im2col(gy, x, w_shape, sh, sw, ph, pw, Ho, Wo):
    O, C, kh, kw = w_shape
    cols = _im2col_numba(x, kh, kw, sh, sw, ph, pw, Ho, Wo)
    gw = np.dot(_gy_as_matrix(gy), cols.T)  # (O, C*kh*kw)
    return gw.reshape(w_shape)


# ----------------------------------------------------------------------------
# numba dispatch
# ----------------------------------------------------------------------------


def _forward_numba(x, w, sh, sw, ph, pw, Ho, Wo):
    if winograd_applies(w.shape[2], w.shape[3], sh, sw):
        return forward_winograd(x, w, ph, pw, Ho, Wo)
    return _forward_im2col(x, w, sh, sw, ph, pw, Ho, Wo)


def _backward_data_numba(gy, w, x_shape, sh, sw, ph, pw, Ho, Wo):
    if winograd_applies(w.shape[2], w.shape[3], sh, sw):
        return backward_data_winograd(gy, w, x_shape, ph, pw, Ho, Wo)
    return _backward_data_im2col(gy, w, x_shape, sh, sw, ph, pw, Ho, Wo)


def _backward_weight_numba(gy, x, w_shape, sh, sw, ph, pw, Ho, Wo):
    if winograd_applies(w_shape[2], w_shape[3], sh, sw):
        return backward_weight_winograd(gy, x, w_shape, ph, pw, Ho, Wo)
    return _backward_weight_im2col(gy, x, w_shape, sh, sw, ph, pw, Ho, Wo)


# ----------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------


def conv2d_forward(x, w, stride=(1, 1), padding=(0, 0), impl="numba"):
    """y[n,o,i,j] = sum_{c,p,q} w[o,c,p,q] * xpad[n,c,i*sh+p, j*sw+q]  (no bias).

    x (N, C, H, W), w (O, C, kh, kw) -> y (N, O, Ho, Wo), C-contiguous, dtype of x.
    """
    chk.check_impl(impl)
    chk.float_array(x, "x")
    chk.float_array(w, "w")
    chk.same_dtype(x, "x", w, "w")
    sh, sw, ph, pw, Ho, Wo = _geometry(x.shape, w.shape, stride, padding)
    x = np.ascontiguousarray(x)
    w = np.ascontiguousarray(w)
    f = _forward_numba if impl == "numba" else _forward_numpy
    return np.ascontiguousarray(f(x, w, sh, sw, ph, pw, Ho, Wo))


def conv2d_backward_data(gy, w, x_shape, stride=(1, 1), padding=(0, 0), impl="numba"):
    """gx = dL/dx for y = conv2d_forward(x, w): gxpad[n,c,i*sh+p, j*sw+q] += sum_o w[o,c,p,q] gy[n,o,i,j].

    gy (N, O, Ho, Wo), w (O, C, kh, kw), x_shape (N, C, H, W) -> gx of shape x_shape.
    x_shape is needed because with stride > 1 several H give the same Ho.
    """
    chk.check_impl(impl)
    chk.float_array(gy, "gy")
    chk.float_array(w, "w")
    chk.same_dtype(gy, "gy", w, "w")
    x_shape = chk.shape4(x_shape, "x_shape")
    sh, sw, ph, pw, Ho, Wo = _geometry(x_shape, w.shape, stride, padding)
    chk.expect_shape(gy, "gy", (x_shape[0], w.shape[0], Ho, Wo), "(N, O, Ho, Wo) from x_shape and w")
    gy = np.ascontiguousarray(gy)
    w = np.ascontiguousarray(w)
    f = _backward_data_numba if impl == "numba" else _backward_data_numpy
    return np.ascontiguousarray(f(gy, w, x_shape, sh, sw, ph, pw, Ho, Wo))


def conv2d_backward_weight(gy, x, w_shape, stride=(1, 1), padding=(0, 0), impl="numba"):
    """gw = dL/dw for y = conv2d_forward(x, w): gw[o,c,p,q] = sum_{n,i,j} gy[n,o,i,j] xpad[n,c,i*sh+p, j*sw+q].

    gy (N, O, Ho, Wo), x (N, C, H, W), w_shape (O, C, kh, kw) -> gw of shape w_shape.
    """
    chk.check_impl(impl)
    chk.float_array(gy, "gy")
    chk.float_array(x, "x")
    chk.same_dtype(gy, "gy", x, "x")
    w_shape = chk.shape4(w_shape, "w_shape")
    sh, sw, ph, pw, Ho, Wo = _geometry(x.shape, w_shape, stride, padding)
    chk.expect_shape(gy, "gy", (x.shape[0], w_shape[0], Ho, Wo), "(N, O, Ho, Wo) from x and w_shape")
    gy = np.ascontiguousarray(gy)
    x = np.ascontiguousarray(x)
    f = _backward_weight_numba if impl == "numba" else _backward_weight_numpy
    return np.ascontiguousarray(f(gy, x, w_shape, sh, sw, ph, pw, Ho, Wo))
