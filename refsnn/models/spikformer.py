"""Spikformer with adaptive bits (docs/method.md §13; paper Sec. 5.2.2, Table 5, App. A.7).

Spikformer-L-D = Spiking Patch Splitting (SPS) + L encoder blocks + head, after
Zhou et al. 2022 (arXiv:2209.15425).  Every conv and linear is a spiking weight
layer (a refined neuron at its input, quantized weights, docs/method.md §5.3); BN and the
residual additions act on the analog maps, as in the ResNets.

    SPS       four 3x3 convs C->D/8->D/4->D/2->D, each + BN; max pool 3x3/2/1 after
              the third and fourth ("cifar", 32x32 -> 8x8 = 64 tokens) or after every
              conv ("imagenet" and "dvs", 224 -> 14x14, 128 -> 8x8, 48 -> 3x3 tokens);
              relative position embedding x = x + BN(conv3x3(x)); pixels -> tokens.
    block     x = x + SSA(x);  x = x + MLP(x);   MLP = BN(fc2(BN(fc1(x)))), D -> 4D -> D
    SSA       [q k v] = BN(x [W_q W_k W_v])        one layer "qkv" D -> 3D: one input neuron (decision)
              Q = N_q(q), K = N_k(k), V = N_v(v)   neuron-only layers, own widths, one shared T_l
              A = Q K^T * scale  (per head)        O = A V      out = BN(O W_o)
    head      mean over tokens, spiking linear D -> classes

Layer names: ``sps.conv0`` (the stem: bidirectional neuron, Eq. 15) .. ``sps.conv3``,
``sps.rpe``, ``blocks.{i}.attn.qkv``, ``blocks.{i}.attn.q_neuron`` / ``k_neuron`` /
``v_neuron``, ``blocks.{i}.attn.proj``, ``blocks.{i}.mlp.fc1``, ``blocks.{i}.mlp.fc2``, ``head``.
Linear layers followed by BN have no bias (BN's shift replaces it); the head has one.

Sequential mode (``temporal_mode="sequential"``, docs/method.md §14, model-wide): the input is (N, T, C, H, W)
frames or (N, C, H, W) images repeated T times; every layer runs on the T*N maps / token sets (BN over
(T, N, ...); Q K^T and A V per step and per sample), the Q/K/V neurons have no T parameter (T fixed),
and the head's logits (its neuron fires per step) are averaged over T.
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..nn import BatchNorm2d, Identity, MaxPool2d, Module, Sequential, SpikingConfig, TokenBatchNorm, shared_time
from ._builder import LayerBuilder, mean_over_steps, time_flat
from .resnet import CIFAR_CONFIG, IMAGENET_CONFIG

#: After which of the four SPS convs a 3x3/2/1 max pool halves the map (docs/method.md §13).
SPS_POOLS = {"cifar": (False, False, True, True), "imagenet": (True, True, True, True),
             "dvs": (True, True, True, True)}

#: The DVS Spikformer's default settings: the ImageNet ones in sequential mode with T = 16 steps fixed
#: (docs/method.md §14; the Spikformer release's event runs use 16 frames).
DVS_CONFIG = IMAGENET_CONFIG.replace(temporal_mode="sequential", time_steps=16.0, time_bound=16)


def _pos_int(v, name: str, owner: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{owner}: {name} must be an integer >= 1, got {v!r}")
    return int(v)


def _pooled(size: int) -> int:
    """Output size of a 3x3 max pool with stride 2 and padding 1."""
    return (size + 2 - 3) // 2 + 1


def _check_tokens(x, n_tokens: int, dim: int, owner: str) -> None:
    if x.ndim != 3 or x.shape[1] != n_tokens or x.shape[2] != dim:
        raise ValueError(f"{owner}: expected tokens of shape (N, {n_tokens}, {dim}) (N samples, {n_tokens} tokens, "
                         f"D = {dim}), got {tuple(x.shape)}; the token count is fixed by the input size the model "
                         f"was built for")


class SPS(Module):
    """Spiking Patch Splitting: 3x3 conv + BN stages with max pools, relative position embedding, tokens."""

    def __init__(self, builder: LayerBuilder, in_channels: int, dim: int, img_size: int, variant: str):
        super().__init__()
        if variant not in SPS_POOLS:
            raise ValueError(f"{builder.model_name}: sps must be one of {list(SPS_POOLS)}, got {variant!r}")
        pools = SPS_POOLS[variant]
        factor = 2 ** sum(pools)
        if img_size % factor:
            raise ValueError(f"{builder.model_name}: input size {img_size} does not give whole patches: the "
                             f"'{variant}' SPS halves the map {sum(pools)} times, so the size must be a multiple "
                             f"of {factor}")
        if dim % 8:
            raise ValueError(f"{builder.model_name}: D = {dim} must be a multiple of 8 (SPS widths D/8, D/4, D/2, D)")
        self.img_size, self.in_channels, self.pools = img_size, in_channels, pools
        widths = (in_channels, dim // 8, dim // 4, dim // 2, dim)
        for i in range(4):
            setattr(self, f"conv{i}", builder.conv(f"sps.conv{i}", widths[i], widths[i + 1], 3, stride=1, padding=1))
            setattr(self, f"bn{i}", BatchNorm2d(widths[i + 1], dtype=builder.dtype))
            setattr(self, f"pool{i}", MaxPool2d(3, stride=2, padding=1) if pools[i] else Identity())
        self.rpe = builder.conv("sps.rpe", dim, dim, 3, stride=1, padding=1)
        self.rpe_bn = BatchNorm2d(dim, dtype=builder.dtype)
        side = img_size
        for p in pools:
            side = _pooled(side) if p else side
        self.grid = side
        self.n_tokens = side * side

    def forward(self, x):
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.in_channels, self.img_size, self.img_size):
            raise ValueError(f"SPS: expected input (N, {self.in_channels}, {self.img_size}, {self.img_size}), got "
                             f"{tuple(x.shape)}; build the model with img_size matching the data")
        for i in range(4):
            x = getattr(self, f"pool{i}")(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
        # relative position embedding: x + BN(conv3x3(x))
        x = x + self.rpe_bn(self.rpe(x))
        return F.map_to_tokens(x)


class SSA(Module):
    """Spiking self-attention with Q/K/V neurons of their own widths and one shared T (docs/method.md §13)."""

    def __init__(self, builder: LayerBuilder, prefix: str, dim: int, heads: int, n_tokens: int, scale: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"{builder.model_name}: D = {dim} is not divisible by heads = {heads}")
        self.dim, self.heads, self.n_tokens, self.scale = dim, heads, n_tokens, float(scale)
        dt = builder.dtype
        # decision (docs/method.md §13): W_q, W_k, W_v read the same input -> one layer D -> 3D, one input neuron
        self.qkv = builder.linear(f"{prefix}.qkv", dim, 3 * dim, bias=False, sample_ndim=2)
        self.qkv_bn = TokenBatchNorm(3 * dim, dtype=dt)
        # one temporal length T_l for N_q, N_k, N_v (paper); its options come from the q neuron's config;
        # sequential mode (docs/method.md §14): T is the fixed time_steps, no T parameter at all
        q_cfg = builder.config_for(f"{prefix}.q_neuron")
        self.time = None if q_cfg.sequential else shared_time(q_cfg, dt)
        for n in ("q", "k", "v"):
            setattr(self, f"{n}_neuron", builder.neuron(f"{prefix}.{n}_neuron", time=self.time, sample_ndim=2))
        bounds = {n.config.time_bound for n in (self.q_neuron, self.k_neuron, self.v_neuron)}
        if len(bounds) > 1:
            raise ValueError(f"{builder.model_name}: {prefix}: the Q/K/V neurons share one T and need one time_bound, "
                             f"got {sorted(bounds)} from layer_configs")
        self.proj = builder.linear(f"{prefix}.proj", dim, dim, bias=False, sample_ndim=2)
        self.proj_bn = TokenBatchNorm(dim, dtype=dt)

    def forward(self, x):
        _check_tokens(x, self.n_tokens, self.dim, "SSA")
        D = self.dim
        qkv = self.qkv_bn(self.qkv(x))
        # Q = N_q(BN(x W_q)), K = N_k(BN(x W_k)), V = N_v(BN(x W_v)), each split into heads
        q = F.split_heads(self.q_neuron(qkv[:, :, :D]), self.heads)
        k = F.split_heads(self.k_neuron(qkv[:, :, D:2 * D]), self.heads)
        v = F.split_heads(self.v_neuron(qkv[:, :, 2 * D:]), self.heads)
        # A = Q K^T * scale;  O = A V   (per head: (N, H, L, d) @ (N, H, d, L), then (N, H, L, L) @ (N, H, L, d))
        a = F.matmul(q, F.transpose(k, axes=(0, 1, 3, 2))) * self.scale
        o = F.merge_heads(F.matmul(a, v))
        return self.proj_bn(self.proj(o))


class MLP(Module):
    """fc1 D -> hidden, BN, fc2 hidden -> D, BN (spiking linears: the neurons sit at their inputs)."""

    def __init__(self, builder: LayerBuilder, prefix: str, dim: int, hidden: int):
        super().__init__()
        self.fc1 = builder.linear(f"{prefix}.fc1", dim, hidden, bias=False, sample_ndim=2)
        self.bn1 = TokenBatchNorm(hidden, dtype=builder.dtype)
        self.fc2 = builder.linear(f"{prefix}.fc2", hidden, dim, bias=False, sample_ndim=2)
        self.bn2 = TokenBatchNorm(dim, dtype=builder.dtype)

    def forward(self, x):
        return self.bn2(self.fc2(self.bn1(self.fc1(x))))


class EncoderBlock(Module):
    """x = x + SSA(x); x = x + MLP(x) (docs/method.md §13)."""

    def __init__(self, builder: LayerBuilder, prefix: str, dim: int, heads: int, n_tokens: int, mlp_ratio: int,
                 scale: float):
        super().__init__()
        self.attn = SSA(builder, f"{prefix}.attn", dim, heads, n_tokens, scale)
        self.mlp = MLP(builder, f"{prefix}.mlp", dim, dim * mlp_ratio)

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class Spikformer(Module):
    """SPS, L encoder blocks, mean over tokens, spiking linear head (docs/method.md §13)."""

    def __init__(self, builder: LayerBuilder, depth: int, dim: int, heads: int, img_size: int, in_channels: int,
                 num_classes: int, sps: str, mlp_ratio: int, scale: float):
        super().__init__()
        name = builder.model_name
        depth, dim, heads = (_pos_int(v, n, name) for v, n in ((depth, "L"), (dim, "D"), (heads, "heads")))
        img_size, in_channels = _pos_int(img_size, "img_size", name), _pos_int(in_channels, "in_channels", name)
        num_classes, mlp_ratio = _pos_int(num_classes, "num_classes", name), _pos_int(mlp_ratio, "mlp_ratio", name)
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"{name}: scale must be a finite number > 0, got {scale!r}")
        if dim % heads:
            raise ValueError(f"{name}: D = {dim} is not divisible by heads = {heads} (each head needs D / heads "
                             f"features)")
        self.depth, self.dim, self.heads = depth, dim, heads
        self.sps = SPS(builder, in_channels, dim, img_size, sps)
        self.n_tokens = self.sps.n_tokens
        self.blocks = Sequential(*[EncoderBlock(builder, f"blocks.{i}", dim, heads, self.n_tokens, mlp_ratio, scale)
                                   for i in range(depth)])
        self.head = builder.linear("head", dim, num_classes)
        builder.finish(self)
        # docs/method.md §14: model-wide temporal mode; in sequential mode T is a fixed setting
        self.sequential, self.time_steps = builder.temporal_mode()

    def forward(self, x):
        """Squeeze mode: x (N, C, H, W) -> logits (N, classes). Sequential mode (docs/method.md §14): x (N, T, C, H, W)
        frames or (N, C, H, W) images repeated T times; every layer runs on the T*N maps / token sets (BN over
        (T, N, ...), attention per step and per sample) and the logits are averaged over T."""
        if self.sequential:
            x, N = time_flat(x, self.time_steps, type(self).__name__)
        x = self.blocks(self.sps(x))
        # head: mean over tokens, then the classifier (on each of the T*N token sets in sequential mode)
        out = self.head(F.mean(x, axis=1))
        if self.sequential:
            # docs/method.md §14: the head averages over T (the logits: the head's neuron runs per step)
            out = mean_over_steps(out, self.time_steps, N)
        return out


def spikformer(L: int, D: int, heads: int, img_size: int = 32, in_channels: int = 3, num_classes: int = 10,
               sps: str = "cifar", mlp_ratio: int = 4, scale: float = 0.125, config=None, layer_configs=None,
               input_neuron: bool = True, seed: int = 0, dtype=np.float64, name: str = "spikformer") -> Spikformer:
    """Spikformer-L-D with ``heads`` heads (docs/method.md §13); ``sps``: "cifar", "imagenet" or "dvs".

    ``config`` defaults to the paper's CIFAR settings (W/S/T 4/4/2) for sps="cifar" and to its
    ImageNet settings (4/4/1, T_bound 2) otherwise; ``layer_configs`` as for the ResNets
    (``refsnn.models._builder``).  The stem ``sps.conv0`` has the bidirectional neuron.
    """
    default = CIFAR_CONFIG if sps == "cifar" else IMAGENET_CONFIG
    cfg = default if config is None else config
    b = LayerBuilder(name, cfg, layer_configs, input_neuron, seed, dtype, stem_name="sps.conv0")
    return Spikformer(b, L, D, heads, img_size, in_channels, num_classes, sps, mlp_ratio, scale)


def spikformer_4_384(num_classes=10, config=None, layer_configs=None, input_neuron=True, seed=0,
                     dtype=np.float64) -> Spikformer:
    """Spikformer-4-384 on CIFAR (Table 5): 32x32, 4 blocks, D = 384, 12 heads, 64 tokens."""
    return spikformer(4, 384, 12, 32, 3, num_classes, "cifar", config=config, layer_configs=layer_configs,
                      input_neuron=input_neuron, seed=seed, dtype=dtype, name="spikformer_4_384")


def spikformer_8_512(num_classes=1000, config=None, layer_configs=None, input_neuron=True, seed=0,
                     dtype=np.float64) -> Spikformer:
    """Spikformer-8-512 on ImageNet (App. A.7): 224x224, 8 blocks, D = 512, 8 heads, 14x14 tokens."""
    return spikformer(8, 512, 8, 224, 3, num_classes, "imagenet", config=config, layer_configs=layer_configs,
                      input_neuron=input_neuron, seed=seed, dtype=dtype, name="spikformer_8_512")


def spikformer_dvs(num_classes=10, img_size=128, config=None, layer_configs=None, input_neuron=True, seed=0,
                   dtype=np.float64, temporal_mode="sequential") -> Spikformer:
    """The DVS Spikformer (Tables 6-7): 2 blocks, D = 256, 16 heads, 2-channel 128x128 (or 48x48) event frames.

    Sequential mode by default (docs/method.md §14): T is the constant ``time_steps`` of the config, the input
    (N, T, 2, H, W) event frames (or (N, 2, H, W) repeated T times), the logits averaged over T.
    ``temporal_mode`` sets the mode of the whole model and wins over ``config.temporal_mode``;
    ``config`` defaults to :data:`DVS_CONFIG` (the ImageNet settings with T = 16 fixed) in sequential mode
    and to the ImageNet settings (learned T) with ``temporal_mode="squeeze"``, where the frames enter as
    one 2-channel image. The DVS release scales attention by 0.25.
    """
    if temporal_mode not in ("sequential", "squeeze"):
        raise ValueError(f"spikformer_dvs: temporal_mode must be 'sequential' or 'squeeze', got {temporal_mode!r}")
    if config is None:
        config = DVS_CONFIG if temporal_mode == "sequential" else IMAGENET_CONFIG
    config = config.replace(temporal_mode=temporal_mode)
    return spikformer(2, 256, 16, img_size, 2, num_classes, "dvs", scale=0.25, config=config,
                      layer_configs=layer_configs, input_neuron=input_neuron, seed=seed, dtype=dtype,
                      name="spikformer_dvs")


def tiny_spikformer(num_classes=10, config=None, layer_configs=None, input_neuron=True, seed=0,
                    dtype=np.float64) -> Spikformer:
    """refsnn's small Spikformer for the embedded 8x8 digits (not from the paper).

    1 block, D = 32, 2 heads; CIFAR SPS 1 -> 4 -> 8 -> 16 -> 32 with two pools: 2x2 = 4 tokens.
    """
    return spikformer(1, 32, 2, 8, 1, num_classes, "cifar", config=config, layer_configs=layer_configs,
                      input_neuron=input_neuron, seed=seed, dtype=dtype, name="tiny_spikformer")
