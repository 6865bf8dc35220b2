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

  - 3x3 kernels with stride 1 and at least ``WINOGRAD_MIN_CHANNELS`` input and
    output channels (or fewer than ``IM2COL_MIN_MACS`` multiply-adds) use Winograd's
    minimal filtering F(2x2, 3x3) (Lavin & Gray 2016, ``refsnn.kernels.winograd``):
    16 batched BLAS products with 2.25x fewer multiplications than im2col
    (``conv_path`` states the measured rule, ``path=`` forces a path);
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
from numba import njit, prange

from refsnn.kernels import checks as chk
from refsnn.kernels.winograd import (backward_data_winograd, backward_weight_winograd, backward_winograd,
                                     forward_winograd, winograd_applies)

__all__ = ["conv2d_forward", "conv2d_backward", "conv2d_backward_data", "conv2d_backward_weight", "conv_path",
           "PATHS", "WINOGRAD_MIN_CHANNELS", "IM2COL_MIN_MACS"]


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


@njit(cache=True, parallel=True)
def _im2col(x, kh, kw, sh, sw, ph, pw, Ho, Wo, cols):
    """cols[c,p,q,n,i,j] = xpad[n,c,i*sh+p,j*sw+q]; cols is (C*kh*kw, N*Ho*Wo), C-contiguous; (c, n) in parallel."""
    N, C, H, W = x.shape
    c6 = cols.reshape((C, kh, kw, N, Ho, Wo))
    for cn in prange(C * N):
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


@njit(cache=True, parallel=True)
def _col2im(gcols, kh, kw, sh, sw, ph, pw, Ho, Wo, gx):
    """gx[n,c,i*sh+p-ph, j*sw+q-pw] += gcols[c,p,q,n,i,j] (padding positions dropped); gx zeroed.

    (c, n) in parallel: each writes only its plane gx[n, c], summed in the same order whatever the thread count."""
    N, C, H, W = gx.shape
    g6 = gcols.reshape((C, kh, kw, N, Ho, Wo))
    for cn in prange(C * N):
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


def _backward_data_im2col(gy2, w, x_shape, sh, sw, ph, pw, Ho, Wo):
    """gx from GY2 = _gy_as_matrix(gy)."""
    O, C, kh, kw = w.shape
    gcols = np.dot(w.reshape(O, C * kh * kw).T, gy2)  # (C*kh*kw, N*Ho*Wo)
    gx = np.zeros(x_shape, dtype=gy2.dtype)
    return _col2im(gcols, kh, kw, sh, sw, ph, pw, Ho, Wo, gx)


def _backward_weight_im2col(gy2, x, w_shape, sh, sw, ph, pw, Ho, Wo):
    """gw from GY2 = _gy_as_matrix(gy)."""
    O, C, kh, kw = w_shape
    cols = _im2col_numba(x, kh, kw, sh, sw, ph, pw, Ho, Wo)
    gw = np.dot(gy2, cols.T)  # (O, C*kh*kw)
    return gw.reshape(w_shape)


# ----------------------------------------------------------------------------
# numba dispatch: which fast path (a measured rule)
# ----------------------------------------------------------------------------

#: Winograd F(2x2, 3x3) takes a 3x3 stride-1 conv with at least this many input and output channels.
#: Measured (``refsnn bench conv --paths``, float32, 2 threads): with C or O below ~16 the 16 GEMMs have a
#: thin inner size and the tile transforms dominate, so im2col wins (3-7x on the 1- and 3-channel stems of
#: ResNet-20 and Spikformer's SPS); from 16 channels up Winograd wins (1.3-1.8x on the SPS and ResNet-20
#: shapes at 8x8 to 32x32) or ties (16 channels at 8x8, 32 at 4x4).
WINOGRAD_MIN_CHANNELS = 16
#: ... unless the conv is this small (N*O*C*kh*kw*Ho*Wo multiply-adds): below it either path takes well under
#: a millisecond, and Winograd, the path of every earlier refsnn, keeps the numbers of the tracked golden sets
#: (tiny models whose train steps make rounding decisions on the last bits of these sums).
IM2COL_MIN_MACS = 2 ** 22
#: the fast paths of ``impl="numba"``
PATHS = ("winograd", "im2col")


def conv_path(x_shape, w_shape, stride=(1, 1), padding=(0, 0)) -> str:
    """The fast path the measured rule picks for x (N, C, H, W) and w (O, C, kh, kw): "winograd" or "im2col".

    Winograd for 3x3 stride 1 with C, O >= WINOGRAD_MIN_CHANNELS, and for any smaller 3x3 stride-1 conv
    below IM2COL_MIN_MACS; im2col otherwise."""
    sh, sw, ph, pw, Ho, Wo = _geometry(x_shape, w_shape, stride, padding)
    N, C = x_shape[:2]
    O, _, kh, kw = w_shape
    if not winograd_applies(kh, kw, sh, sw):
        return "im2col"
    if min(C, O) >= WINOGRAD_MIN_CHANNELS or N * O * C * kh * kw * Ho * Wo < IM2COL_MIN_MACS:
        return "winograd"
    return "im2col"


def _resolve_path(path, impl, x_shape, w_shape, sh, sw, ph, pw) -> str | None:
    """``path`` checked against impl and the shape (None: the rule of ``conv_path``); None for impl="numpy"."""
    if impl == "numpy":
        if path is not None:
            raise ValueError(f"path={path!r} selects a fast path of impl='numba'; impl='numpy' has none (pass "
                             f"path=None)")
        return None
    if path is None:
        return conv_path(x_shape, w_shape, (sh, sw), (ph, pw))
    if path not in PATHS:
        raise ValueError(f"path must be None or one of {PATHS}, got {path!r}")
    if path == "winograd" and not winograd_applies(w_shape[2], w_shape[3], sh, sw):
        raise ValueError(f"path='winograd' needs a 3x3 kernel with stride 1, got kernel {tuple(w_shape[2:])} and "
                         f"stride {(sh, sw)}")
    return path


def _forward_numba(x, w, sh, sw, ph, pw, Ho, Wo, path):
    if path == "winograd":
        return forward_winograd(x, w, ph, pw, Ho, Wo)
    return _forward_im2col(x, w, sh, sw, ph, pw, Ho, Wo)


def _backward_numba(gy, x, w, need_x, need_w, sh, sw, ph, pw, Ho, Wo, path):
    """(gx or None, gw or None); the transformed gy (Winograd's Z, im2col's GY2) is computed once for both."""
    if path == "winograd":
        return backward_winograd(gy, x, w, need_x, need_w, ph, pw, Ho, Wo)
    gy2 = _gy_as_matrix(gy)
    gx = _backward_data_im2col(gy2, w, x.shape, sh, sw, ph, pw, Ho, Wo) if need_x else None
    gw = _backward_weight_im2col(gy2, x, w.shape, sh, sw, ph, pw, Ho, Wo) if need_w else None
    return gx, gw


# ----------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------


def conv2d_forward(x, w, stride=(1, 1), padding=(0, 0), impl="numba", path=None):
    """y[n,o,i,j] = sum_{c,p,q} w[o,c,p,q] * xpad[n,c,i*sh+p, j*sw+q]  (no bias).

    x (N, C, H, W), w (O, C, kh, kw) -> y (N, O, Ho, Wo), C-contiguous, dtype of x.
    ``path`` (impl="numba" only): "winograd", "im2col" or None (the rule of ``conv_path``).
    """
    chk.check_impl(impl)
    chk.float_array(x, "x")
    chk.float_array(w, "w")
    chk.same_dtype(x, "x", w, "w")
    sh, sw, ph, pw, Ho, Wo = _geometry(x.shape, w.shape, stride, padding)
    path = _resolve_path(path, impl, x.shape, w.shape, sh, sw, ph, pw)
    x = np.ascontiguousarray(x)
    w = np.ascontiguousarray(w)
    if impl == "numpy":
        return np.ascontiguousarray(_forward_numpy(x, w, sh, sw, ph, pw, Ho, Wo))
    return np.ascontiguousarray(_forward_numba(x, w, sh, sw, ph, pw, Ho, Wo, path))


def conv2d_backward(gy, x, w, stride=(1, 1), padding=(0, 0), impl="numba", path=None, need=(True, True)):
    """(gx, gw) = (dL/dx, dL/dw) for y = conv2d_forward(x, w), each None where ``need`` says False:

        gxpad[n,c,i*sh+p, j*sw+q] += sum_o w[o,c,p,q] gy[n,o,i,j]
        gw[o,c,p,q] = sum_{n,i,j} gy[n,o,i,j] xpad[n,c,i*sh+p, j*sw+q]

    The same numbers as ``conv2d_backward_data`` and ``conv2d_backward_weight`` with the same ``path``; the
    fast paths transform gy once for both.
    """
    chk.check_impl(impl)
    for a, name in ((gy, "gy"), (x, "x"), (w, "w")):
        chk.float_array(a, name)
    chk.same_dtype(gy, "gy", x, "x")
    chk.same_dtype(gy, "gy", w, "w")
    sh, sw, ph, pw, Ho, Wo = _geometry(x.shape, w.shape, stride, padding)
    chk.expect_shape(gy, "gy", (x.shape[0], w.shape[0], Ho, Wo), "(N, O, Ho, Wo) from x and w")
    path = _resolve_path(path, impl, x.shape, w.shape, sh, sw, ph, pw)
    need_x, need_w = (bool(v) for v in need)
    gy, x, w = np.ascontiguousarray(gy), np.ascontiguousarray(x), np.ascontiguousarray(w)
    if impl == "numpy":
        gx = _backward_data_numpy(gy, w, x.shape, sh, sw, ph, pw, Ho, Wo) if need_x else None
        gw = _backward_weight_numpy(gy, x, w.shape, sh, sw, ph, pw, Ho, Wo) if need_w else None
    else:
        gx, gw = _backward_numba(gy, x, w, need_x, need_w, sh, sw, ph, pw, Ho, Wo, path)
    return tuple(None if g is None else np.ascontiguousarray(g) for g in (gx, gw))


def conv2d_backward_data(gy, w, x_shape, stride=(1, 1), padding=(0, 0), impl="numba", path=None):
    """gx = dL/dx for y = conv2d_forward(x, w): gxpad[n,c,i*sh+p, j*sw+q] += sum_o w[o,c,p,q] gy[n,o,i,j].

    gy (N, O, Ho, Wo), w (O, C, kh, kw), x_shape (N, C, H, W) -> gx of shape x_shape.
    x_shape is needed because with stride > 1 several H give the same Ho. ``path`` as for ``conv2d_forward``.
    """
    chk.check_impl(impl)
    chk.float_array(gy, "gy")
    chk.float_array(w, "w")
    chk.same_dtype(gy, "gy", w, "w")
    x_shape = chk.shape4(x_shape, "x_shape")
    sh, sw, ph, pw, Ho, Wo = _geometry(x_shape, w.shape, stride, padding)
    chk.expect_shape(gy, "gy", (x_shape[0], w.shape[0], Ho, Wo), "(N, O, Ho, Wo) from x_shape and w")
    path = _resolve_path(path, impl, x_shape, w.shape, sh, sw, ph, pw)
    gy = np.ascontiguousarray(gy)
    w = np.ascontiguousarray(w)
    if impl == "numpy":
        return np.ascontiguousarray(_backward_data_numpy(gy, w, x_shape, sh, sw, ph, pw, Ho, Wo))
    if path == "winograd":
        return np.ascontiguousarray(backward_data_winograd(gy, w, x_shape, ph, pw, Ho, Wo))
    return np.ascontiguousarray(_backward_data_im2col(_gy_as_matrix(gy), w, x_shape, sh, sw, ph, pw, Ho, Wo))


def conv2d_backward_weight(gy, x, w_shape, stride=(1, 1), padding=(0, 0), impl="numba", path=None):
    """gw = dL/dw for y = conv2d_forward(x, w): gw[o,c,p,q] = sum_{n,i,j} gy[n,o,i,j] xpad[n,c,i*sh+p, j*sw+q].

    gy (N, O, Ho, Wo), x (N, C, H, W), w_shape (O, C, kh, kw) -> gw of shape w_shape. ``path`` as for
    ``conv2d_forward``.
    """
    chk.check_impl(impl)
    chk.float_array(gy, "gy")
    chk.float_array(x, "x")
    chk.same_dtype(gy, "gy", x, "x")
    w_shape = chk.shape4(w_shape, "w_shape")
    sh, sw, ph, pw, Ho, Wo = _geometry(x.shape, w_shape, stride, padding)
    chk.expect_shape(gy, "gy", (x.shape[0], w_shape[0], Ho, Wo), "(N, O, Ho, Wo) from x and w_shape")
    path = _resolve_path(path, impl, x.shape, w_shape, sh, sw, ph, pw)
    gy = np.ascontiguousarray(gy)
    x = np.ascontiguousarray(x)
    if impl == "numpy":
        return np.ascontiguousarray(_backward_weight_numpy(gy, x, w_shape, sh, sw, ph, pw, Ho, Wo))
    if path == "winograd":
        return np.ascontiguousarray(backward_weight_winograd(gy, x, w_shape, ph, pw, Ho, Wo))
    return np.ascontiguousarray(_backward_weight_im2col(_gy_as_matrix(gy), x, w_shape, sh, sw, ph, pw, Ho, Wo))
