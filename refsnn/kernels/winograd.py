"""Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, 2016): the fast path of ``refsnn.kernels.conv``
for 3x3 kernels with stride 1 (``winograd_applies``), forward and both gradients.

Split the output into 2x2 tiles t = (n, ti, tj); tile t reads the 4x4 patch
d_t = xpad[n, :, 2ti : 2ti+4, 2tj : 2tj+4]. With the constant matrices

  B^T = [[1, 0,-1, 0],     G = [[1,   0,   0  ],     A^T = [[1, 1, 1, 0],
         [0, 1, 1, 0],          [1/2, 1/2, 1/2],            [0, 1,-1,-1]]
         [0,-1, 1, 0],          [1/2,-1/2, 1/2],
         [0, 1, 0,-1]]          [0,   0,   1  ]]

the 2x2 output tile is exactly (in exact arithmetic)

  y_t[o] = A^T [ sum_c (G w[o,c] G^T) * (B^T d_t[c] B) ] A        (* elementwise)

i.e. with U[e,o,c] = (G w[o,c] G^T)[e], V[e,c,t] = (B^T d_t[c] B)[e] for the
16 positions e of a 4x4 tile:  M[e] = U[e] @ V[e]  (16 GEMMs, 2.25x fewer
multiplications than im2col; ``refsnn.kernels.blas.stacked_matmul`` runs them). Both gradients are the adjoint of that formula:
with Z[e,o,t] = (A gy_t[o] A^T)[e],

  gd_t[c] = B [ sum_o U[e,o,c] Z[e,o,t] ]_e B^T   (scattered back, tiles overlap)
  gw[o,c] = G^T [ sum_t Z[e,o,t] V[e,c,t] ]_e G

The twin of these functions is the literal NumPy convolution of ``refsnn.kernels.conv`` (``impl="numpy"``);
they agree with it to rounding (the same sums, taken in a different order).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from refsnn.kernels.blas import stacked_matmul

__all__ = ["winograd_applies", "forward_winograd", "backward_data_winograd", "backward_weight_winograd",
           "backward_winograd"]


_WG = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


@njit(cache=True, parallel=True)
def _wino_input(x, ph, pw, th, tw, V):
    """V[4a+b, c, t] = (B^T d B)[a, b],  d = xpad[n, c, 2ti:2ti+4, 2tj:2tj+4],  t = (n, ti, tj).

    Channels in parallel: each c writes only V[:, c], so the result does not depend on the thread count."""
    N, C, H, W = x.shape
    for c in prange(C):
        xp = np.zeros((2 * th + 2, 2 * tw + 2), dtype=x.dtype)  # one plane of xpad, whole tiles
        s = np.empty((4, 2 * tw + 2), dtype=x.dtype)
        for n in range(N):
            xp[ph : ph + H, pw : pw + W] = x[n, c]  # the padding stays zero
            for ti in range(th):
                r = xp[2 * ti : 2 * ti + 4]
                for k in range(2 * tw + 2):  # s = B^T r, all columns at once
                    s[0, k] = r[0, k] - r[2, k]
                    s[1, k] = r[1, k] + r[2, k]
                    s[2, k] = r[2, k] - r[1, k]
                    s[3, k] = r[1, k] - r[3, k]
                t0 = (n * th + ti) * tw
                for a in range(4):  # V = s B, tile by tile
                    for tj in range(tw):
                        d0, d1, d2, d3 = s[a, 2 * tj], s[a, 2 * tj + 1], s[a, 2 * tj + 2], s[a, 2 * tj + 3]
                        V[4 * a + 0, c, t0 + tj] = d0 - d2
                        V[4 * a + 1, c, t0 + tj] = d1 + d2
                        V[4 * a + 2, c, t0 + tj] = d2 - d1
                        V[4 * a + 3, c, t0 + tj] = d1 - d3
    return V


@njit(cache=True, parallel=True)
def _wino_output(M, th, tw, y):
    """y[n, o, 2ti:2ti+2, 2tj:2tj+2] = A^T m A,  m[a, b] = M[4a+b, o, t]  (cropped to Ho x Wo); o in parallel."""
    N, O, Ho, Wo = y.shape
    for o in prange(O):
        r = np.empty((4, 2 * tw), dtype=M.dtype)  # m A for one row of tiles
        yt = np.empty((2, 2 * tw), dtype=M.dtype)  # A^T m A for one row of tiles
        for n in range(N):
            for ti in range(th):
                t0 = (n * th + ti) * tw
                for a in range(4):  # r = m A: columns m0 + m1 + m2 and m1 - m2 - m3 of m
                    for tj in range(tw):
                        m0, m1 = M[4 * a + 0, o, t0 + tj], M[4 * a + 1, o, t0 + tj]
                        m2, m3 = M[4 * a + 2, o, t0 + tj], M[4 * a + 3, o, t0 + tj]
                        r[a, 2 * tj] = m0 + m1 + m2
                        r[a, 2 * tj + 1] = m1 - m2 - m3
                for k in range(2 * tw):  # yt = A^T r: the same combination of the rows of r
                    yt[0, k] = r[0, k] + r[1, k] + r[2, k]
                    yt[1, k] = r[1, k] - r[2, k] - r[3, k]
                rows = min(2, Ho - 2 * ti)
                y[n, o, 2 * ti : 2 * ti + rows, :] = yt[:rows, :Wo]
    return y


@njit(cache=True, parallel=True)
def _wino_grad_output(gy, th, tw, Z):
    """Z[4a+b, o, t] = (A g A^T)[a, b],  g = gy[n, o, 2ti:2ti+2, 2tj:2tj+2]  (zero beyond Ho, Wo); o in parallel."""
    N, O, Ho, Wo = gy.shape
    for o in prange(O):
        g = np.zeros((2 * th, 2 * tw), dtype=gy.dtype)  # one plane of gy, whole tiles
        s = np.empty((4, 2 * tw), dtype=gy.dtype)  # A g for one row of tiles
        for n in range(N):
            g[:Ho, :Wo] = gy[n, o]  # the extension stays zero
            for ti in range(th):
                g0, g1 = g[2 * ti], g[2 * ti + 1]
                for k in range(2 * tw):  # s = A g: rows g0, g0 + g1, g0 - g1, -g1
                    s[0, k] = g0[k]
                    s[1, k] = g0[k] + g1[k]
                    s[2, k] = g0[k] - g1[k]
                    s[3, k] = -g1[k]
                t0 = (n * th + ti) * tw
                for a in range(4):  # Z = s A^T: the same combination of the columns of s
                    for tj in range(tw):
                        u, v = s[a, 2 * tj], s[a, 2 * tj + 1]
                        Z[4 * a + 0, o, t0 + tj] = u
                        Z[4 * a + 1, o, t0 + tj] = u + v
                        Z[4 * a + 2, o, t0 + tj] = u - v
                        Z[4 * a + 3, o, t0 + tj] = -v
    return Z


@njit(cache=True, parallel=True)
def _wino_scatter(D, ph, pw, th, tw, gx):
    """gx[n, c] = crop of  sum_t (B m B^T) placed at xpad[2ti:2ti+4, 2tj:2tj+4],  m[a, b] = D[4a+b, c, t].

    Channels in parallel: each c sums its own plane in the same order whatever the thread count."""
    N, C, H, W = gx.shape
    for c in prange(C):
        gp = np.empty((2 * th + 2, 2 * tw + 2), dtype=D.dtype)  # gradient w.r.t. one plane of xpad
        r = np.empty((4, 4 * tw), dtype=D.dtype)  # m B^T for one row of tiles, 4 columns per tile
        for n in range(N):
            gp[:] = 0
            for ti in range(th):
                t0 = (n * th + ti) * tw
                for a in range(4):  # r = m B^T: columns m0, m1 - m2 + m3, m1 + m2 - m0, -m3 of m
                    for tj in range(tw):
                        m0, m1 = D[4 * a + 0, c, t0 + tj], D[4 * a + 1, c, t0 + tj]
                        m2, m3 = D[4 * a + 2, c, t0 + tj], D[4 * a + 3, c, t0 + tj]
                        r[a, 4 * tj + 0] = m0
                        r[a, 4 * tj + 1] = m1 - m2 + m3
                        r[a, 4 * tj + 2] = m1 + m2 - m0
                        r[a, 4 * tj + 3] = -m3
                for tj in range(tw):  # B r: the same combination of the rows, added into gp
                    for k in range(4):
                        j = 2 * tj + k
                        r0, r1, r2, r3 = r[0, 4 * tj + k], r[1, 4 * tj + k], r[2, 4 * tj + k], r[3, 4 * tj + k]
                        gp[2 * ti + 0, j] += r0
                        gp[2 * ti + 1, j] += r1 - r2 + r3
                        gp[2 * ti + 2, j] += r1 + r2 - r0
                        gp[2 * ti + 3, j] += -r3
            gx[n, c] = gp[ph : ph + H, pw : pw + W]
    return gx


def _wino_tiles(N, Ho, Wo):
    th, tw = (Ho + 1) // 2, (Wo + 1) // 2
    return th, tw, N * th * tw


def _wino_weight(w):
    """U[4a+b, o, c] = (G w[o,c] G^T)[a, b] = sum_{p,q} G[a,p] G[b,q] w[o,c,p,q]: one product with kron(G, G)."""
    O, C = w.shape[:2]
    GG = np.kron(_WG, _WG).astype(w.dtype)  # (16, 9): GG[4a+b, 3p+q] = G[a,p] G[b,q]
    return np.dot(GG, w.reshape(O * C, 9).T).reshape(16, O, C)


def _wino_input_numba(x, ph, pw, Ho, Wo):
    N, C = x.shape[:2]
    th, tw, T = _wino_tiles(N, Ho, Wo)
    return _wino_input(x, ph, pw, th, tw, np.empty((16, C, T), dtype=x.dtype))


def _wino_grad_output_numba(gy):
    N, O, Ho, Wo = gy.shape
    th, tw, T = _wino_tiles(N, Ho, Wo)
    return _wino_grad_output(gy, th, tw, np.empty((16, O, T), dtype=gy.dtype))


def forward_winograd(x, w, ph, pw, Ho, Wo):
    N = x.shape[0]
    O = w.shape[0]
    th, tw, T = _wino_tiles(N, Ho, Wo)
    M = stacked_matmul(_wino_weight(w), _wino_input_numba(x, ph, pw, Ho, Wo))  # (16, O, T)
    return _wino_output(M, th, tw, np.empty((N, O, Ho, Wo), dtype=x.dtype))


def _data_from_z(Z, w, x_shape, ph, pw, Ho, Wo):
    th, tw, T = _wino_tiles(x_shape[0], Ho, Wo)
    U_t = _wino_weight(w).transpose(0, 2, 1)  # (16, C, O), a transposed view (BLAS reads it as is)
    D = stacked_matmul(U_t, Z)  # (16, C, T)
    return _wino_scatter(D, ph, pw, th, tw, np.empty(x_shape, dtype=Z.dtype))  # fills every plane


def _weight_from_z(Z, x, w_shape, ph, pw, Ho, Wo):
    V = _wino_input_numba(x, ph, pw, Ho, Wo)  # (16, C, T)
    Wg = stacked_matmul(Z, V.transpose(0, 2, 1))  # (16, O, C)
    # gw[o,c] = G^T Wg[:, o, c] G, i.e. gw[o,c,p,q] = sum_{a,b} G[a,p] G[b,q] Wg[4a+b, o, c]
    GG = np.kron(_WG, _WG).astype(x.dtype)
    return np.dot(Wg.reshape(16, -1).T, GG).reshape(w_shape)


def backward_data_winograd(gy, w, x_shape, ph, pw, Ho, Wo):
    return _data_from_z(_wino_grad_output_numba(gy), w, x_shape, ph, pw, Ho, Wo)


def backward_weight_winograd(gy, x, w_shape, ph, pw, Ho, Wo):
    return _weight_from_z(_wino_grad_output_numba(gy), x, w_shape, ph, pw, Ho, Wo)


def backward_winograd(gy, x, w, need_x, need_w, ph, pw, Ho, Wo):
    """(gx or None, gw or None) from one transform Z of gy (the same numbers as the two functions above)."""
    Z = _wino_grad_output_numba(gy)  # (16, O, T)
    gx = _data_from_z(Z, w, x.shape, ph, pw, Ho, Wo) if need_x else None
    gw = _weight_from_z(Z, x, w.shape, ph, pw, Ho, Wo) if need_w else None
    return gx, gw


def winograd_applies(kh, kw, sh, sw):
    """Whether a (kh, kw) kernel with stride (sh, sw) takes the Winograd path: 3x3, stride 1."""
    return kh == 3 and kw == 3 and sh == 1 and sw == 1
