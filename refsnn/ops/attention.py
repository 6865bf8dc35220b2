"""Ops of spiking self-attention (docs/method.md §13): tokens <-> heads, tokens <-> maps, BN over token features.

Layouts (Spikformer's, per time-squeezed sample):

    tokens  (N, L, D)      N samples, L tokens, D features
    heads   (N, H, L, d)   H heads of d = D / H features each; feature j of head h is token feature h*d + j
    map     (N, D, h, w)   the SPS output, L = h * w tokens in row-major order

Each op is a composition of ``reshape`` / ``transpose`` / ``batch_norm``, so its
gradient is theirs (each checked against finite differences in tests/test_ops.py);
these functions add the argument checks and name the layouts.  The products of
attention themselves are ``matmul`` on (N, H, L, d) @ (N, H, d, L) operands (BLAS
through ``np.matmul``).
"""
from __future__ import annotations

import numpy as np

from ..autograd.tensor import Tensor
from .arith import reshape, transpose
from .nn import batch_norm


def _check_tokens(x, op: str) -> tuple:
    if x.ndim != 3:
        raise ValueError(f"{op}: input must have 3 dimensions (N, L, D) = (samples, tokens, features), "
                         f"got shape {tuple(x.shape)}")
    return tuple(x.shape)


def split_heads(x, heads: int) -> Tensor:
    """(N, L, D) -> (N, H, L, D/H): head h takes token features h*d .. h*d + d - 1 (Spikformer's split)."""
    n, L, D = _check_tokens(x, "split_heads")
    if isinstance(heads, bool) or not isinstance(heads, (int, np.integer)) or heads < 1:
        raise ValueError(f"split_heads: heads must be an integer >= 1, got {heads!r}")
    if D % heads:
        raise ValueError(f"split_heads: the feature size D = {D} is not divisible by heads = {heads} "
                         f"(each head needs D / heads features)")
    # (N, L, D) -> (N, L, H, d) -> (N, H, L, d)
    return transpose(reshape(x, shape=(n, L, int(heads), D // int(heads))), axes=(0, 2, 1, 3))


def merge_heads(x) -> Tensor:
    """(N, H, L, d) -> (N, L, H*d): the inverse of ``split_heads``."""
    if x.ndim != 4:
        raise ValueError(f"merge_heads: input must have 4 dimensions (N, H, L, d), got shape {tuple(x.shape)}")
    n, h, L, d = x.shape
    return reshape(transpose(x, axes=(0, 2, 1, 3)), shape=(n, L, h * d))


def map_to_tokens(x) -> Tensor:
    """(N, D, h, w) -> (N, h*w, D): every pixel of the SPS output map is one token (row-major order)."""
    if x.ndim != 4:
        raise ValueError(f"map_to_tokens: input must have 4 dimensions (N, D, h, w), got shape {tuple(x.shape)}")
    n, D, h, w = x.shape
    return transpose(reshape(x, shape=(n, D, h * w)), axes=(0, 2, 1))


def token_batch_norm(x, gamma, beta, running_mean, running_var, training: bool, momentum: float = 0.1,
                     eps: float = 1e-5) -> Tensor:
    """Batch normalisation of (N, L, D) tokens per feature, over all N*L tokens of the batch.

    This is Spikformer's ``BatchNorm1d(D)`` applied to the (N, D, L) transpose of
    the tokens: mean and variance of feature j over the N*L values x[:, :, j]; the
    running variance is unbiased with m = N*L, as in PyTorch.  ``gamma``, ``beta``
    and the running statistics have shape (D,); see ``batch_norm`` for the rest.
    """
    n, L, D = _check_tokens(x, "token_batch_norm")
    # the N*L tokens are the batch of a 2-D batch norm over D features
    y = batch_norm(reshape(x, shape=(n * L, D)), gamma, beta, running_mean, running_var, training, momentum, eps)
    return reshape(y, shape=(n, L, D))
