"""Spikformer in torch (docs/method.md §13, §14): the structural modules of ``refsnn.models.spikformer``.

``refsnn.torch.models`` converts a refsnn Spikformer module by module into these classes (same
children, same names, same attributes), so ``get_model("tiny_spikformer")`` and the other
Spikformers are refsnn's networks with refsnn's state-dict names:

    SPS       four spiking 3x3 convs + BN (+ max pools), relative position embedding x + BN(conv(x)), tokens
    SSA       [q k v] = BN(x W_qkv);  Q = N_q(q), K = N_k(k), V = N_v(v) (own widths, one shared That:
              ``attn.time``);  A = Q K^T * scale per head (batched matmul over heads);  O = A V;  BN(O W_o)
    block     x = x + SSA(x);  x = x + MLP(x),  MLP = BN(fc2(BN(fc1(x))))
    head      mean over tokens, spiking linear (sequential mode: the logits averaged over T)

BN of tokens (``TokenBatchNorm``) normalises each feature over all N*L tokens (T*N*L in sequential mode),
as Spikformer's ``BatchNorm1d`` on the (N, D, L) transpose.
"""
from __future__ import annotations

import torch
from torch import nn

from .sequential import mean_over_steps, time_flat


class TokenBatchNorm(nn.BatchNorm1d):
    """``refsnn.nn.TokenBatchNorm``: (N, L, D) tokens, each feature normalised over the N*L tokens."""

    def forward(self, x):
        if x.dim() != 3 or x.shape[2] != self.num_features:
            raise ValueError(f"TokenBatchNorm: expected (N, L, {self.num_features}) tokens, got shape {tuple(x.shape)}")
        n, L, D = x.shape
        # the N*L tokens are the batch of a batch norm over D features
        return super().forward(x.reshape(n * L, D)).reshape(n, L, D)


def split_heads(x, heads: int):
    """(N, L, D) -> (N, H, L, D/H): head h takes features h*d .. h*d + d - 1 (Spikformer's split)."""
    n, L, D = x.shape
    return x.reshape(n, L, heads, D // heads).transpose(1, 2)


def merge_heads(x):
    """(N, H, L, d) -> (N, L, H*d), the inverse of ``split_heads``."""
    n, h, L, d = x.shape
    return x.transpose(1, 2).reshape(n, L, h * d)


def map_to_tokens(x):
    """(N, D, h, w) -> (N, h*w, D): every pixel of the SPS output map is one token (row-major order)."""
    n, D, h, w = x.shape
    return x.reshape(n, D, h * w).transpose(1, 2)


def check_tokens(x, n_tokens: int, dim: int, owner: str) -> None:
    if x.dim() != 3 or x.shape[1] != n_tokens or x.shape[2] != dim:
        raise ValueError(f"{owner}: expected tokens of shape (N, {n_tokens}, {dim}), got {tuple(x.shape)}")


class SPS(nn.Module):
    """Spiking Patch Splitting: 3x3 conv + BN stages with max pools, relative position embedding, tokens."""

    def forward(self, x):
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.in_channels, self.img_size, self.img_size):
            raise ValueError(f"SPS: expected input (N, {self.in_channels}, {self.img_size}, {self.img_size}), got "
                             f"{tuple(x.shape)}")
        for i in range(4):
            x = getattr(self, f"pool{i}")(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
        # relative position embedding: x + BN(conv3x3(x))
        x = x + self.rpe_bn(self.rpe(x))
        return map_to_tokens(x)


class SSA(nn.Module):
    """Spiking self-attention: Q/K/V neurons with their own widths and one shared T (docs/method.md §13)."""

    def forward(self, x):
        check_tokens(x, self.n_tokens, self.dim, "SSA")
        D = self.dim
        qkv = self.qkv_bn(self.qkv(x))
        # Q = N_q(BN(x W_q)), K = N_k(BN(x W_k)), V = N_v(BN(x W_v)), each split into heads
        q = split_heads(self.q_neuron(qkv[:, :, :D]), self.heads)
        k = split_heads(self.k_neuron(qkv[:, :, D:2 * D]), self.heads)
        v = split_heads(self.v_neuron(qkv[:, :, 2 * D:]), self.heads)
        # A = Q K^T * scale;  O = A V   (batched over samples and heads)
        a = torch.matmul(q, k.transpose(2, 3)) * self.scale
        o = merge_heads(torch.matmul(a, v))
        return self.proj_bn(self.proj(o))


class MLP(nn.Module):
    """fc1 D -> hidden, BN, fc2 hidden -> D, BN."""

    def forward(self, x):
        return self.bn2(self.fc2(self.bn1(self.fc1(x))))


class EncoderBlock(nn.Module):
    """x = x + SSA(x); x = x + MLP(x)."""

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class Spikformer(nn.Module):
    """SPS, L encoder blocks, mean over tokens, spiking linear head (docs/method.md §13; §14 sequential mode)."""

    def forward(self, x):
        if self.sequential:
            # docs/method.md §14: (N, C, H, W) images repeated T times or (N, T, C, H, W) frames -> (T*N, C, H, W)
            x, N = time_flat(x, self.time_steps, type(self).__name__)
        x = self.blocks(self.sps(x))
        # head: mean over tokens, then the classifier (on each of the T*N token sets in sequential mode)
        out = self.head(x.mean(dim=1))
        if self.sequential:
            # docs/method.md §14: the logits averaged over T
            out = mean_over_steps(out, self.time_steps, N)
        return out
