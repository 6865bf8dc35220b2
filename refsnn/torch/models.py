"""The models in torch, built by mirroring refsnn's own models module by module.

``get_model(name, **kw)`` builds the refsnn model (``refsnn.models.get_model``: the same
architecture code, configuration rules, layer names and seeded initial weights) and converts
it with :func:`from_refsnn`.  So a torch model and a refsnn model of the same arguments are
the same network with the same parameters, and a state dict moves between them unchanged
(``state_to_numpy`` / ``load_numpy_state``).

The conversion is a table from refsnn module classes to converters (``CONVERTERS``): leaf
modules get their torch counterpart, structural modules (blocks, whole networks) a torch class
with the same forward.  A new refsnn model (Spikformer, sequential mode) plugs in by
``register(refsnn_class, converter)``; :func:`mirror` does the structural part.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import nn as rnn
from ..models import resnet as rres
from ..models.spikformer import MLP as RMLP
from ..models.spikformer import SPS as RSPS
from ..models.spikformer import SSA as RSSA
from ..models.spikformer import EncoderBlock as RBlock
from ..models.spikformer import Spikformer as RSpikformer
from . import spikformer as S
from .layers import SpikingConv2d, SpikingLinear
from .neurons import SpikingNeuron, shared_time
from .pool import TieMaxPool2d
from .sequential import mean_over_steps, time_flat

DTYPES = {np.dtype("float32"): torch.float32, np.dtype("float64"): torch.float64}


# =============================================================================================
# structural modules: the same forward as refsnn.models.resnet
# =============================================================================================
class Shortcut(nn.Module):
    """Projection shortcut: 1x1 conv (stride s) + BN (+ ReLU in the SEW block)."""

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """``out = ReLU(BN(conv2(h)) + sc(x))`` (BasicBlock) or ``ReLU(BN(conv2(h))) + sc(x)`` (SEW), h = ReLU(BN(conv1(x)))."""

    def forward(self, x):
        h = self.relu1(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        if self.sew:
            return self.relu2(h) + self.shortcut(x)   # SEW: ReLU before the addition
        return self.relu2(h + self.shortcut(x))       # BasicBlock: ReLU after the addition


class ResNet(nn.Module):
    """Stem (spiking conv + BN + ReLU [+ max pool]), stages of blocks, global average pool, spiking linear."""

    def forward(self, x):
        if self.sequential:
            # docs/method.md §14: every layer runs on the T*N maps (BN over (T, N, H, W)), the logits averaged over T
            x, N = time_flat(x, self.time_steps, type(self).__name__, channels=self.stem.weight.shape[1])
        x = self.maxpool(self.stem_relu(self.stem_bn(self.stem(x))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        out = self.fc(self.flatten(self.avgpool(x)))
        return mean_over_steps(out, self.time_steps, N) if self.sequential else out


# =============================================================================================
# refsnn module -> torch module
# =============================================================================================
def _spiking(m, ctx):
    if isinstance(m, rnn.SpikingConv2d):
        t = SpikingConv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                          bias=m.bias is not None, config=m.config, dtype=ctx["dtype"], device=ctx["device"])
    else:
        t = SpikingLinear(m.in_features, m.out_features, bias=m.bias is not None, config=m.config,
                          dtype=ctx["dtype"], device=ctx["device"], sample_ndim=m.sample_ndim)
    return t


def _neuron(m, ctx, time=None):
    return SpikingNeuron(m.config, time=time, dtype=ctx["dtype"], device=ctx["device"], sample_ndim=m.sample_ndim)


def _ssa(m, ctx):
    """SSA: the Q/K/V neurons share the block's That (``attn.time``, none in sequential mode)."""
    t = S.SSA()
    t.dim, t.heads, t.n_tokens, t.scale = m.dim, m.heads, m.n_tokens, m.scale
    t.qkv, t.qkv_bn = convert_module(m.qkv, ctx), convert_module(m.qkv_bn, ctx)
    t.time = None if m.time is None else shared_time(m.q_neuron.config, ctx["dtype"], ctx["device"])
    for n in ("q", "k", "v"):
        setattr(t, f"{n}_neuron", _neuron(getattr(m, f"{n}_neuron"), ctx, time=t.time))
    t.proj, t.proj_bn = convert_module(m.proj, ctx), convert_module(m.proj_bn, ctx)
    return t


def _batchnorm(m, ctx):
    if isinstance(m, rnn.TokenBatchNorm):
        cls = S.TokenBatchNorm
    else:
        cls = nn.BatchNorm2d if isinstance(m, rnn.BatchNorm2d) else nn.BatchNorm1d
    return cls(m.weight.shape[0], eps=m.eps, momentum=m.momentum, dtype=ctx["dtype"], device=ctx["device"])


def _pool(m, ctx):
    stride = m.stride if m.stride is not None else m.kernel_size
    if type(m) is rnn.MaxPool2d:
        # the gradient to the first maximum in exact arithmetic, whatever the summation order (refsnn.torch.pool)
        return TieMaxPool2d(m.kernel_size, stride=stride, padding=m.padding)
    return nn.AvgPool2d(m.kernel_size, stride=stride, padding=m.padding)


def mirror(torch_cls, attrs=()):
    """A converter for a structural module: a ``torch_cls`` with the converted children in the same order
    (so the same dotted names) and the plain attributes ``attrs`` copied."""
    def convert(m, ctx):
        t = torch_cls.__new__(torch_cls)
        nn.Module.__init__(t)
        for a in attrs:
            setattr(t, a, getattr(m, a))
        for name, child in children(m):
            setattr(t, name, convert_module(child, ctx))
        return t
    return convert


def children(m) -> list:
    """(name, module) of the direct children of a refsnn module, in definition order."""
    return list(m.named_children())


CONVERTERS = {
    rnn.SpikingConv2d: _spiking, rnn.SpikingLinear: _spiking,
    rnn.BatchNorm2d: _batchnorm, rnn.BatchNorm1d: _batchnorm,
    rnn.ReLU: lambda m, ctx: nn.ReLU(), rnn.Identity: lambda m, ctx: nn.Identity(),
    rnn.Flatten: lambda m, ctx: nn.Flatten(),
    rnn.AdaptiveAvgPool2d: lambda m, ctx: nn.AdaptiveAvgPool2d(m.output_size),
    rnn.MaxPool2d: _pool, rnn.AvgPool2d: _pool,
    rnn.Sequential: lambda m, ctx: nn.Sequential(*[convert_module(c, ctx) for c in m]),
    rres.Shortcut: mirror(Shortcut), rres.BasicBlock: mirror(BasicBlock, ("sew",)),
    rres.ResNet: mirror(ResNet, ("stage_names", "sequential", "time_steps")),
    rnn.TokenBatchNorm: _batchnorm, rnn.SpikingNeuron: _neuron, RSSA: _ssa,
    RSPS: mirror(S.SPS, ("img_size", "in_channels", "pools", "grid", "n_tokens")), RMLP: mirror(S.MLP),
    RBlock: mirror(S.EncoderBlock),
    RSpikformer: mirror(S.Spikformer, ("depth", "dim", "heads", "n_tokens", "sequential", "time_steps")),
}


def register(refsnn_cls, converter) -> None:
    """Teach :func:`from_refsnn` a new refsnn module class: ``converter(module, ctx) -> torch module``
    (``ctx``: ``{"dtype", "device"}``; use :func:`mirror` for a module that only composes others)."""
    CONVERTERS[refsnn_cls] = converter


def convert_module(m, ctx):
    conv = CONVERTERS.get(type(m))
    if conv is None:
        raise TypeError(f"refsnn.torch: no torch counterpart for {type(m).__name__}; register one with "
                        "refsnn.torch.models.register")
    return conv(m, ctx)


def from_refsnn(model, device=None) -> nn.Module:
    """The torch twin of a refsnn model: same modules, names, configs, parameters and buffers."""
    state = model.state_dict()
    dtype = next(v.dtype for v in state.values() if v.dtype.kind == "f")
    t = convert_module(model, {"dtype": DTYPES[np.dtype(dtype)], "device": device})
    load_numpy_state(t, state)
    t.train(model.training)
    return t


# =============================================================================================
# state dicts (numpy arrays by refsnn's names) <-> torch
# =============================================================================================
def _skip(name: str) -> bool:
    return name.endswith("num_batches_tracked")   # torch's BN counter: no refsnn counterpart, unused (momentum set)


def state_to_numpy(model: nn.Module) -> dict:
    """The model's state as refsnn names it: ``{name: ndarray}`` (DDP's ``module.`` and BN's counter dropped)."""
    inner = getattr(model, "module", model)
    return {k: v.detach().cpu().numpy().copy() for k, v in inner.state_dict().items() if not _skip(k)}


def load_numpy_state(model: nn.Module, state: dict) -> None:
    """Load a refsnn state dict (``{name: ndarray}``); every name must match, shapes must agree."""
    inner = getattr(model, "module", model)
    own = inner.state_dict()
    expected = {k for k in own if not _skip(k)}
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise ValueError(f"load_numpy_state: missing keys {sorted(missing)}, unexpected keys {sorted(unexpected)}")
    with torch.no_grad():
        for k, v in state.items():
            dst = own[k]
            v = np.asarray(v)
            if tuple(v.shape) != tuple(dst.shape):
                raise ValueError(f"load_numpy_state: {k!r} has shape {v.shape}, the model expects {tuple(dst.shape)}")
            dst.copy_(torch.from_numpy(np.array(v, copy=True)).to(dtype=dst.dtype, device=dst.device))


def to_refsnn(model: nn.Module, refsnn_model) -> None:
    """Copy a torch model's state into a refsnn model of the same architecture (dtypes follow the refsnn model)."""
    target = refsnn_model.state_dict()
    state = state_to_numpy(model)
    refsnn_model.load_state_dict({k: np.asarray(v).astype(target[k].dtype) if k in target else v
                                  for k, v in state.items()})


def get_model(name: str, dtype=torch.float64, device=None, **kw) -> nn.Module:
    """``refsnn.models.get_model(name, **kw)`` in torch (``num_classes``, ``config``, ``layer_configs``,
    ``input_neuron``, ``seed``); ``dtype`` torch.float32 / float64, ``device`` any torch device."""
    from ..models import get_model as refsnn_model
    np_dtype = {torch.float32: np.float32, torch.float64: np.float64}.get(dtype)
    if np_dtype is None:
        raise ValueError(f"get_model: dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return from_refsnn(refsnn_model(name, dtype=np_dtype, **kw), device=device)
